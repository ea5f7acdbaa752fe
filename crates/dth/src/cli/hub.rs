//! `dth serve` and `dth worker`: open the store, build the runtime, and run the scheduler, the workers
//! and the HTTP API until SIGTERM or Ctrl-C, then shut down gracefully (no more claims, items in flight
//! finish or are given back).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use dth_runtime::access::{AccessConfig, PasswordPolicy};
use dth_runtime::{Config, Hub, SmtpConfig};
use dth_store::{MasterKey, Store};
use tokio_util::sync::CancellationToken;

pub(crate) const SERVE_EXAMPLES: &str = "\
Examples:
  # The hub on this machine: state in ./dth-data/dth.db, API on 127.0.0.1:8080. The first start
  # creates the admin account admin@localhost and prints its temporary password once.
  dth serve
  # Sign in, set a new password, create an API token: see docs/signin.md. Then:
  curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\
       -d @task.json http://127.0.0.1:8080/api/v1/tasks

  # Behind a TLS proxy, with sign-in through an OpenID Connect provider (Keycloak here)
  DTH_OIDC_CLIENT_SECRET=… dth serve --public-url https://dth.example.com \\
      --oidc-issuer https://sso.example.com/realms/ops --oidc-client-id dth --oidc-name Keycloak

  # Several hubs and workers sharing PostgreSQL (the schedule fires once, in the leader)
  DTH_MASTER_KEY=… dth serve --store postgres://dth@db.internal/dth --listen 0.0.0.0:8080

  # Email alarms through a mail server
  dth serve --smtp-host smtp.example.com --smtp-port 587 --smtp-starttls \\
      --smtp-user dth --smtp-from dth@example.com   # password in DTH_SMTP_PASSWORD";

pub(crate) const WORKER_EXAMPLES: &str = "\
Examples:
  # An extra worker on another machine (same master key as the hub)
  DTH_MASTER_KEY=… dth worker --store postgres://dth@db.internal/dth --concurrency 64";

/// Where state lives and how this process works on items.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Directory for the SQLite store and the master key file.
    #[arg(
        long,
        env = "DTH_DATA_DIR",
        default_value = "dth-data",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
    /// Store URL: sqlite://FILE or postgres://USER@HOST/DB [default: sqlite://DATA_DIR/dth.db].
    #[arg(long, env = "DTH_STORE", value_name = "URL")]
    store: Option<String>,
    /// Items worked on at once by this process.
    #[arg(long, default_value_t = 32, value_name = "N")]
    concurrency: usize,
    /// Seconds a claimed item stays ours without a heartbeat; another worker takes it after that.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    lease: u64,
    /// Seconds before a failed item is tried again (doubling each attempt, up to 15 minutes).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    retry_delay: u64,
    /// Name of this process in leases and events [default: HOST:PID].
    #[arg(long, env = "DTH_WORKER_ID", value_name = "NAME")]
    worker_id: Option<String>,
}

/// `dth serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Address of the HTTP API.
    #[arg(
        long,
        env = "DTH_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    listen: String,
    /// Run no workers in this process (only the API and the scheduler).
    #[arg(long)]
    no_workers: bool,
    /// Mail server for email alarms.
    #[arg(long, env = "DTH_SMTP_HOST", value_name = "HOST")]
    smtp_host: Option<String>,
    /// Mail server port.
    #[arg(long, env = "DTH_SMTP_PORT", default_value_t = 25, value_name = "PORT")]
    smtp_port: u16,
    /// Require STARTTLS with the mail server.
    #[arg(long)]
    smtp_starttls: bool,
    /// Mail server login.
    #[arg(long, env = "DTH_SMTP_USER", value_name = "USER")]
    smtp_user: Option<String>,
    /// Mail server password.
    #[arg(
        long,
        env = "DTH_SMTP_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    smtp_password: Option<String>,
    /// Sender address of alarm emails.
    #[arg(
        long,
        env = "DTH_SMTP_FROM",
        default_value = "dth@localhost",
        value_name = "ADDRESS"
    )]
    smtp_from: String,
    #[command(flatten)]
    access: AccessArgs,
}

/// Sign-in: the first admin, passwords, sessions, OpenID Connect (docs/signin.md).
#[derive(Debug, Args)]
pub struct AccessArgs {
    /// The address people use to reach the hub (behind a proxy: https://dth.example.com)
    /// [default: http://LISTEN]. Cookies are Secure when it is https.
    #[arg(long, env = "DTH_PUBLIC_URL", value_name = "URL")]
    public_url: Option<url::Url>,
    /// Email of the admin account created at the first start (no user yet).
    #[arg(
        long,
        env = "DTH_ADMIN_EMAIL",
        default_value = "admin@localhost",
        value_name = "EMAIL"
    )]
    admin_email: String,
    /// Fewest characters of a new password.
    #[arg(long, default_value_t = 8, value_name = "N")]
    password_min_length: usize,
    /// Character classes a new password needs: a comma list of upper, lower, digit, symbol
    /// ('' for none).
    #[arg(
        long,
        default_value = "upper,lower,digit,symbol",
        value_name = "CLASSES"
    )]
    password_require: String,
    /// Minutes a session may go unused before it ends.
    #[arg(long, default_value_t = 120, value_name = "MINUTES")]
    session_idle: u64,
    /// Hours a session lasts at most.
    #[arg(long, default_value_t = 12, value_name = "HOURS")]
    session_max: u64,
}

/// `dth worker` flags.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
}

impl RuntimeArgs {
    async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        let url = match &self.store {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("dth.db").display()),
        };
        std::fs::create_dir_all(&self.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                self.data_dir.display()
            )
        })?;
        let key = MasterKey::from_env_or_file(&self.data_dir)?;
        let store = dth_store::open(&url, key)
            .await
            .with_context(|| format!("cannot open the store {}", redact_url(&url)))?;
        Ok(store)
    }

    fn config(&self) -> anyhow::Result<Config> {
        if self.lease < 3 {
            bail!("--lease must be at least 3 seconds");
        }
        let mut c = Config {
            concurrency: self.concurrency.max(1),
            lease: Duration::from_secs(self.lease),
            retry_base: Duration::from_secs(self.retry_delay),
            ..Config::default()
        };
        if let Some(id) = &self.worker_id {
            c.worker_id = id.clone();
        }
        Ok(c)
    }
}

/// Runs the hub.
pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let store = args.runtime.open().await?;
    let mut config = args.runtime.config()?;
    config.smtp = args.smtp_host.clone().map(|host| SmtpConfig {
        host,
        port: args.smtp_port,
        starttls: args.smtp_starttls,
        username: args.smtp_user.clone(),
        password: args.smtp_password.clone(),
        from: args.smtp_from.clone(),
    });
    config.access = args.access.config()?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let public_url = match &args.access.public_url {
        Some(u) => u.clone(),
        None => url::Url::parse(&format!("http://{}/", listener.local_addr()?))?,
    };
    eprintln!(
        "dth: hub on {} (listening on {}, store: {}, worker {})",
        public_url.as_str().trim_end_matches('/'),
        listener.local_addr()?,
        store.backend(),
        config.worker_id
    );
    let hub = Hub::new(store, config);
    if let Some(password) = hub.ensure_admin(&args.access.admin_email).await? {
        eprintln!(
            "dth: created the first admin account {}",
            args.access.admin_email
        );
        println!("dth: temporary password (shown once): {password}");
        eprintln!(
            "dth: sign in at {public_url} as {} — you will be asked to set a new password",
            args.access.admin_email
        );
    }
    let web = dth_web::WebConfig::new(&public_url);
    let shutdown = shutdown_on_signal();
    let mut jobs = tokio::task::JoinSet::new();
    jobs.spawn(Arc::clone(&hub).run_scheduler(shutdown.clone()));
    if !args.no_workers {
        jobs.spawn(Arc::clone(&hub).run_workers(shutdown.clone()));
    }
    let api = dth_web::serve(Arc::clone(&hub), web, listener, shutdown.clone()).await;
    shutdown.cancel();
    while jobs.join_next().await.is_some() {}
    api.context("the HTTP API failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Runs workers only.
pub async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let store = args.runtime.open().await?;
    let config = args.runtime.config()?;
    eprintln!(
        "dth: worker {} on the {} store",
        config.worker_id,
        store.backend()
    );
    let hub = Hub::new(store, config);
    hub.run_workers(shutdown_on_signal()).await;
    Ok(ExitCode::SUCCESS)
}

impl AccessArgs {
    fn config(&self) -> anyhow::Result<AccessConfig> {
        let policy = PasswordPolicy::parse(self.password_min_length, &self.password_require)
            .map_err(|e| anyhow::anyhow!("--password-require: {e}"))?;
        if self.session_idle == 0 || self.session_max == 0 {
            bail!("--session-idle and --session-max must be at least 1");
        }
        let env_token = match std::env::var("DTH_API_TOKEN") {
            Ok(t) if t.len() >= 16 => Some(t),
            Ok(_) => bail!("DTH_API_TOKEN must have at least 16 characters"),
            Err(_) => None,
        };
        Ok(AccessConfig {
            policy,
            session_idle: Duration::from_secs(self.session_idle * 60),
            session_max: Duration::from_secs(self.session_max * 3600),
            env_token,
            ..AccessConfig::default()
        })
    }
}

/// A token cancelled on SIGTERM or Ctrl-C.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match &mut term { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        }
        eprintln!("dth: shutting down");
        t.cancel();
    });
    token
}

/// A store URL without its password.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

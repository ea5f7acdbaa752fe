//! `dth serve` and `dth worker`: open the store, build the runtime, and run the scheduler, the workers
//! and the HTTP API until SIGTERM or Ctrl-C, then shut down gracefully (no more claims, items in flight
//! finish or are given back).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use dth_model::Role;
use dth_runtime::access::{AccessConfig, OidcAccounts, PasswordPolicy};
use dth_runtime::{Config, Hub, SmtpConfig};
use dth_store::{MasterKey, Store};
use dth_web::auth::oidc::{OidcLogin, OidcSettings};
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

  # Prometheus metrics at http://127.0.0.1:8080/metrics, behind a bearer token (open without one)
  DTH_METRICS_TOKEN=… dth serve

  # Email alarms through a mail server
  dth serve --smtp-host smtp.example.com --smtp-port 587 --smtp-starttls \\
      --smtp-user dth --smtp-from dth@example.com   # password in DTH_SMTP_PASSWORD";

pub(crate) const WORKER_EXAMPLES: &str = "\
Examples:
  # An extra worker on another machine (same master key as the hub)
  DTH_MASTER_KEY=… dth worker --store postgres://dth@db.internal/dth --concurrency 64

  # The same, with its metrics at http://0.0.0.0:9464/metrics for Prometheus
  DTH_MASTER_KEY=… dth worker --store postgres://dth@db.internal/dth --metrics-listen 0.0.0.0:9464";

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
    #[arg(long, default_value_t = 64, value_name = "N")]
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
    #[command(flatten)]
    metrics: MetricsArgs,
    /// Print the queue depth (ready, delayed, leased items) every 60 s to stdout as a CloudWatch
    /// Embedded Metric Format line in this namespace, for scaling workers on AWS (docs/deploy.md).
    #[arg(long, env = "DTH_EMF_NAMESPACE", value_name = "NAME")]
    emf_namespace: Option<String>,
}

/// `GET /metrics` (docs/hub.md, "Metrics").
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Environment variable holding the bearer token `GET /metrics` requires; when it is unset or
    /// empty, /metrics is open to whoever reaches the port. The token is read from the
    /// environment only, never from a flag, and never logged.
    #[arg(long, default_value = "DTH_METRICS_TOKEN", value_name = "VAR")]
    metrics_token_env: String,
}

impl MetricsArgs {
    /// The token from the environment, if one is set; says on stderr whether /metrics is protected.
    fn token(&self) -> anyhow::Result<Option<dth_web::metrics::MetricsToken>> {
        let token = match std::env::var(&self.metrics_token_env) {
            Ok(t) => dth_web::metrics::MetricsToken::new(t),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("{} is not UTF-8 text", self.metrics_token_env)
            }
        };
        if token.is_some() {
            eprintln!(
                "dth: /metrics needs the bearer token in {}",
                self.metrics_token_env
            );
        } else {
            eprintln!(
                "dth: /metrics is open (set {} to require a bearer token)",
                self.metrics_token_env
            );
        }
        Ok(token)
    }
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
    /// Sign-in through this OpenID Connect provider: its issuer URL, as it names itself
    /// (needs --oidc-client-id and DTH_OIDC_CLIENT_SECRET). Register the redirect URI
    /// PUBLIC_URL/auth/oidc/callback there.
    #[arg(long, env = "DTH_OIDC_ISSUER", value_name = "URL")]
    oidc_issuer: Option<String>,
    /// The hub's client id at the provider. Its secret is read from the environment variable
    /// DTH_OIDC_CLIENT_SECRET only, never from a flag.
    #[arg(long, env = "DTH_OIDC_CLIENT_ID", value_name = "ID")]
    oidc_client_id: Option<String>,
    /// Label of the provider's sign-in button.
    #[arg(
        long,
        env = "DTH_OIDC_NAME",
        default_value = "SSO",
        value_name = "LABEL"
    )]
    oidc_name: String,
    /// Scopes asked of the provider, space- or comma-separated (openid is always asked).
    #[arg(
        long,
        env = "DTH_OIDC_SCOPES",
        default_value = "openid email profile",
        value_name = "SCOPES"
    )]
    oidc_scopes: String,
    /// Create an account at the first sign-in of an unknown user (false: only accounts an admin
    /// created, matched by verified email, may sign in).
    #[arg(
        long,
        env = "DTH_OIDC_AUTO_CREATE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "true|false"
    )]
    oidc_auto_create: bool,
    /// Role of accounts created at sign-in, and of mapped users whose groups match nothing.
    #[arg(
        long,
        env = "DTH_OIDC_DEFAULT_ROLE",
        default_value = "viewer",
        value_name = "ROLE"
    )]
    oidc_default_role: String,
    /// ID token claim with the user's groups or roles (a string or an array of strings), read for
    /// --oidc-role-map [default: groups].
    #[arg(long, env = "DTH_OIDC_ROLES_CLAIM", value_name = "CLAIM")]
    oidc_roles_claim: Option<String>,
    /// Roles from the provider's groups, applied at every sign-in (the highest match wins):
    /// 'GROUP=ROLE,GROUP=ROLE', e.g. 'dth-admins=admin,ops=operator'.
    #[arg(long, env = "DTH_OIDC_ROLE_MAP", value_name = "MAP")]
    oidc_role_map: Option<String>,
}

/// `dth worker` flags.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Serve this process's metrics at http://ADDR/metrics (no other route) [default: none].
    #[arg(long, env = "DTH_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,
    #[command(flatten)]
    metrics: MetricsArgs,
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
    // Before any worker runs, so that no count is lost.
    dth_runtime::metrics::install();
    let metrics_token = args.metrics.token()?;
    if let Some(namespace) = &args.emf_namespace {
        dth_runtime::emf::check_namespace(namespace)
            .map_err(|e| anyhow::anyhow!("--emf-namespace: {e}"))?;
    }
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
    let oidc = args.access.oidc_settings()?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let public_url = match &args.access.public_url {
        Some(u) => u.clone(),
        None => url::Url::parse(&format!("http://{}/", listener.local_addr()?))?,
    };
    // Discovery before anything is written: a wrong issuer stops the start.
    let mut web = dth_web::WebConfig::new(&public_url);
    if let Some(token) = metrics_token {
        web = web.with_metrics_token(token);
    }
    if let Some(settings) = oidc {
        let login = OidcLogin::discover(settings, &public_url)
            .await
            .map_err(|e| anyhow::anyhow!("--oidc-issuer: {e}"))?;
        eprintln!(
            "dth: sign-in through {} ({}); redirect URI {}",
            login.name(),
            login.issuer(),
            login.redirect_uri()
        );
        web = web.with_oidc(login);
    }
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

    let shutdown = shutdown_on_signal();
    let mut jobs = tokio::task::JoinSet::new();
    jobs.spawn(Arc::clone(&hub).run_scheduler(shutdown.clone()));
    if !args.no_workers {
        jobs.spawn(Arc::clone(&hub).run_workers(shutdown.clone()));
    }
    if let Some(namespace) = args.emf_namespace.clone() {
        jobs.spawn(Arc::clone(&hub).run_emf_reporter(namespace, shutdown.clone()));
    }
    let api = dth_web::serve(Arc::clone(&hub), web, listener, shutdown.clone()).await;
    shutdown.cancel();
    while jobs.join_next().await.is_some() {}
    api.context("the HTTP API failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Runs workers only.
pub async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let metrics = match &args.metrics_listen {
        Some(addr) => {
            dth_runtime::metrics::install();
            let token = args.metrics.token()?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen: cannot listen on {addr}"))?;
            Some((listener, token))
        }
        None => None,
    };
    let store = args.runtime.open().await?;
    let config = args.runtime.config()?;
    eprintln!(
        "dth: worker {} on the {} store",
        config.worker_id,
        store.backend()
    );
    let hub = Hub::new(store, config);
    let shutdown = shutdown_on_signal();
    let server = metrics.map(|(listener, token)| {
        if let Ok(addr) = listener.local_addr() {
            eprintln!("dth: metrics on http://{addr}/metrics");
        }
        let state = dth_web::metrics::MetricsState {
            hub: Arc::clone(&hub),
            token,
        };
        tokio::spawn(dth_web::metrics::serve(state, listener, shutdown.clone()))
    });
    hub.run_workers(shutdown.clone()).await;
    shutdown.cancel();
    if let Some(server) = server {
        server
            .await
            .context("the metrics server crashed")?
            .context("the metrics server failed")?;
    }
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
            oidc: self.oidc_accounts()?,
            ..AccessConfig::default()
        })
    }

    /// How OpenID Connect identities become accounts, when a provider is configured.
    fn oidc_accounts(&self) -> anyhow::Result<Option<OidcAccounts>> {
        if self.oidc_issuer.is_none() {
            return Ok(None);
        }
        let default_role: Role = self
            .oidc_default_role
            .parse()
            .map_err(|e| anyhow::anyhow!("--oidc-default-role: {e}"))?;
        let role_map = match &self.oidc_role_map {
            Some(map) => {
                parse_role_map(map).map_err(|e| anyhow::anyhow!("--oidc-role-map: {e}"))?
            }
            None => Vec::new(),
        };
        Ok(Some(OidcAccounts {
            auto_create: self.oidc_auto_create,
            default_role,
            role_map,
        }))
    }

    /// The OpenID Connect provider to discover at start-up, when one is configured; the issuer,
    /// client id and secret come together or not at all.
    fn oidc_settings(&self) -> anyhow::Result<Option<OidcSettings>> {
        let secret = std::env::var("DTH_OIDC_CLIENT_SECRET")
            .ok()
            .filter(|s| !s.is_empty());
        let (issuer, client_id) = match (&self.oidc_issuer, &self.oidc_client_id) {
            (None, None) => {
                if secret.is_some() {
                    bail!(
                        "DTH_OIDC_CLIENT_SECRET is set but --oidc-issuer and --oidc-client-id \
                         are not"
                    );
                }
                return Ok(None);
            }
            (Some(_), None) => bail!("--oidc-issuer needs --oidc-client-id (the hub's client id)"),
            (None, Some(_)) => bail!("--oidc-client-id needs --oidc-issuer (the provider's URL)"),
            (Some(i), Some(c)) => (i.trim().to_string(), c.trim().to_string()),
        };
        if issuer.is_empty() || client_id.is_empty() {
            bail!("--oidc-issuer and --oidc-client-id must not be empty");
        }
        let Some(client_secret) = secret else {
            bail!(
                "--oidc-issuer needs the client secret in the environment variable \
                 DTH_OIDC_CLIENT_SECRET"
            );
        };
        let scopes: Vec<String> = self
            .oidc_scopes
            .split([' ', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let roles_claim = self
            .oidc_roles_claim
            .clone()
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| "groups".to_string());
        Ok(Some(OidcSettings {
            issuer,
            client_id,
            client_secret,
            name: self.oidc_name.clone(),
            scopes,
            roles_claim: Some(roles_claim),
        }))
    }
}

/// `GROUP=ROLE,GROUP=ROLE` as pairs (a group name may hold `=`: the last one splits).
fn parse_role_map(map: &str) -> Result<Vec<(String, Role)>, String> {
    map.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (group, role) = pair
                .rsplit_once('=')
                .ok_or_else(|| format!("{pair:?} is not GROUP=ROLE"))?;
            let group = group.trim();
            if group.is_empty() {
                return Err(format!("{pair:?} has no group"));
            }
            let role: Role = role.trim().parse().map_err(|e| format!("{pair:?}: {e}"))?;
            Ok((group.to_string(), role))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_maps_parse() {
        assert_eq!(
            parse_role_map("dth-admins=admin, ops=operator,,cn=x=viewer").unwrap(),
            vec![
                ("dth-admins".to_string(), Role::Admin),
                ("ops".to_string(), Role::Operator),
                ("cn=x".to_string(), Role::Viewer),
            ]
        );
        assert!(parse_role_map("admins").unwrap_err().contains("GROUP=ROLE"));
        assert!(parse_role_map("=admin").is_err());
        assert!(parse_role_map("a=root").is_err());
    }
}

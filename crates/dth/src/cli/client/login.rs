//! `dth login`: signs in with an email and password (`POST /api/v1/session`), sets a new password
//! when the account has a temporary one (`PUT /api/v1/me/password`), creates an API token with the
//! session (`POST /api/v1/tokens`, with the session's `X-CSRF-Token` and an `Origin` of the hub),
//! signs the session out and stores `{server, token}` ([`super::config`]). `dth logout` revokes the
//! token and removes the file.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use reqwest::{Method, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::{self, Secret, StoredLogin};
use super::http::{Auth, HubClient, HubError};
use super::output;

pub(crate) const LOGIN_EXAMPLES: &str = "\
Examples:
  # Sign in on a terminal (asks for the email and the password, which is not echoed)
  dth login --server http://127.0.0.1:8080

  # In a script: the password on stdin. When the account still has its temporary password, the
  # second line of stdin is the new password to set.
  printf '%s\\n' \"$PASSWORD\" | dth login --server https://dth.example.com --email ops@example.com --password-stdin

Signing in creates an API token named dth-cli@HOST (see dth token list) and stores it, with the
hub's URL, in ~/.config/dth/client.json (mode 0600). The commands dth task, secret, user and token
then use it; --server/DTH_SERVER and --token/DTH_TOKEN override it.";

pub(crate) const LOGOUT_EXAMPLES: &str = "\
Examples:
  dth logout            # revoke the stored token on the hub and remove ~/.config/dth/client.json
  dth logout --forget   # the hub is gone: only remove the file (the token stays valid on the hub)";

/// `dth login` flags.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The hub's URL, as in the browser: http://127.0.0.1:8080, https://dth.example.com
    /// [default: the one of the last login].
    #[arg(long, env = "DTH_SERVER", value_name = "URL")]
    server: Option<String>,
    /// The account's email [default: asked].
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
    /// Read the password from the first line of stdin (and a new password, when the account has a
    /// temporary one, from the second).
    #[arg(long)]
    password_stdin: bool,
    /// Name of the API token to create [default: dth-cli@HOST].
    #[arg(long, value_name = "NAME")]
    token_name: Option<String>,
    /// Days until the token expires (1 to 3650) [default: never].
    #[arg(long, value_name = "N")]
    expires_days: Option<u32>,
    /// Print the result as JSON (never the token).
    #[arg(long)]
    json: bool,
}

/// `dth logout` flags.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Only remove the stored login, without revoking the token on the hub.
    #[arg(long)]
    forget: bool,
}

/// The parts of a session answer the CLI reads.
#[derive(Debug, Deserialize)]
struct SessionAnswer {
    user: UserAnswer,
    csrf_token: Secret,
}

#[derive(Debug, Deserialize)]
struct UserAnswer {
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    must_change_password: bool,
}

/// A session: its cookie and CSRF token, and who.
struct Session {
    auth: Auth,
    user: UserAnswer,
}

/// Where passwords come from: the terminal (no echo) or the lines of stdin.
struct Prompter {
    stdin: bool,
}

impl Prompter {
    fn line(&self, what: &str) -> anyhow::Result<Option<String>> {
        let mut line = String::new();
        let n = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .with_context(|| format!("cannot read the {what} from stdin"))?;
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        Ok((n > 0 && !line.is_empty()).then_some(line))
    }

    fn password(&self) -> anyhow::Result<Secret> {
        if self.stdin {
            return self
                .line("password")?
                .map(Secret::new)
                .ok_or_else(|| anyhow!("--password-stdin: stdin has no password line"));
        }
        let p = rpassword::prompt_password("Password: ")
            .context("cannot read the password from the terminal (use --password-stdin)")?;
        Ok(Secret::new(p))
    }

    fn new_password(&self) -> anyhow::Result<Secret> {
        if self.stdin {
            return self.line("new password")?.map(Secret::new).ok_or_else(|| {
                anyhow!(
                    "this account has a temporary password that must be changed first: give the new password on the second line of stdin, or run dth login on a terminal"
                )
            });
        }
        loop {
            let a = rpassword::prompt_password("New password: ")?;
            let b = rpassword::prompt_password("New password again: ")?;
            if a == b && !a.is_empty() {
                return Ok(Secret::new(a));
            }
            eprintln!("dth: the two passwords differ (or are empty); try again");
        }
    }
}

/// Signs in, creates and stores a token.
pub async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let stored = config::load().unwrap_or(None);
    let server = match (&args.server, &stored) {
        (Some(s), _) => config::normalize_server(s)?,
        (None, Some(l)) => l.server.clone(),
        (None, None) => bail!("give the hub's URL: dth login --server http://HOST:PORT"),
    };
    let prompter = Prompter {
        stdin: args.password_stdin,
    };
    let email = match args.email {
        Some(e) => e,
        None if args.password_stdin || !std::io::stdin().is_terminal() => {
            bail!("give --email (the password comes from stdin)")
        }
        None => {
            eprint!("Email: ");
            use std::io::Write;
            std::io::stderr().flush()?;
            prompter
                .line("email")?
                .ok_or_else(|| anyhow!("no email given"))?
        }
    };
    let password = prompter.password()?;
    let anonymous = HubClient::new(&server, Auth::None)?;

    let mut session = sign_in(&anonymous, &email, &password)
        .await
        .map_err(|e| login_error(e, &server))?;
    if session.user.must_change_password {
        eprintln!(
            "dth: {} has a temporary password; set a new one now (it must meet the hub's password policy)",
            session.user.email
        );
        let new = prompter.new_password()?;
        let hub = anonymous.with_auth(session.auth.clone());
        let (headers, body) = hub
            .call_full(
                Method::PUT,
                "/api/v1/me/password",
                Some(&json!({"current_password": password.expose(), "new_password": new.expose()})),
            )
            .await
            .map_err(|e| login_error(e, &server))?;
        session = session_of(&hub, &headers, &body)?;
        eprintln!("dth: password changed");
    }

    let hub = anonymous.with_auth(session.auth.clone());
    let name = args.token_name.unwrap_or_else(default_token_name);
    let mut req = json!({"name": name});
    if let Some(days) = args.expires_days {
        req["expires_in_days"] = json!(days);
    }
    let created = hub
        .call(Method::POST, "/api/v1/tokens", Some(&req))
        .await
        .map_err(|e| login_error(e, &server));
    // The session is not needed any more, whatever happened.
    if let Err(e) = hub.call(Method::DELETE, "/api/v1/session", None).await {
        eprintln!("dth: warning: could not sign the session out: {e}");
    }
    let created = created?;
    let token = created
        .get("token")
        .and_then(Value::as_str)
        .map(Secret::new)
        .ok_or_else(|| anyhow!("the hub's token answer has no token"))?;
    let info = created.get("info").cloned().unwrap_or(Value::Null);
    let login = StoredLogin {
        server: server.clone(),
        token,
        token_id: info.get("id").and_then(Value::as_str).map(str::to_string),
        token_name: Some(name.clone()),
        email: Some(session.user.email.clone()),
    };
    let path = config::save(&login)?;

    // The token of an earlier login of the same account on this hub is no longer kept anywhere.
    if let Some(old) = stored
        && old.server == server
        && old.email.as_deref() == Some(session.user.email.as_str())
        && let Some(old_id) = old.token_id
        && Some(&old_id) != login.token_id.as_ref()
    {
        let hub = anonymous.with_auth(Auth::Bearer(login.token.clone()));
        let _ = hub
            .call(
                Method::DELETE,
                &format!("/api/v1/tokens/{}", super::seg(&old_id)),
                None,
            )
            .await;
    }

    if args.json {
        output::json(&json!({
            "server": server, "email": session.user.email, "role": session.user.role,
            "token_name": name, "token_id": login.token_id, "config": path,
        }));
    } else {
        eprintln!(
            "dth: signed in to {server} as {} ({}); token {name:?} stored in {}",
            session.user.email,
            session.user.role,
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `POST /api/v1/session`.
async fn sign_in(hub: &HubClient, email: &str, password: &Secret) -> Result<Session, HubError> {
    let (headers, body) = hub
        .call_full(
            Method::POST,
            "/api/v1/session",
            Some(&json!({"email": email, "password": password.expose()})),
        )
        .await?;
    session_of(hub, &headers, &body)
}

/// The session of a sign-in or password-change answer: the `dth_session` cookie it sets and the
/// CSRF token of its body.
fn session_of(
    hub: &HubClient,
    headers: &header::HeaderMap,
    body: &Value,
) -> Result<Session, HubError> {
    let answer: SessionAnswer = hub.parse("session", body)?;
    let cookie = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("dth_session="))
        .and_then(|v| v.split(';').next())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| HubError::Unexpected {
            server: hub.server().to_string(),
            what: "no session cookie".into(),
        })?;
    Ok(Session {
        auth: Auth::Session {
            cookie: Secret::new(cookie),
            csrf: answer.csrf_token,
        },
        user: answer.user,
    })
}

/// During sign-in a 401 is a wrong email or password, and a 403 about the origin means the URL
/// is not the hub's public one.
fn login_error(e: HubError, server: &str) -> anyhow::Error {
    match e {
        HubError::Unauthorized { message, .. } => anyhow!("sign-in refused: {message}"),
        HubError::Status { status, message }
            if status == reqwest::StatusCode::FORBIDDEN && message.contains("Origin") =>
        {
            anyhow!(
                "sign-in refused: {message}; give --server the hub's public URL (its --public-url), not {server}"
            )
        }
        e @ HubError::Status { status, .. } if status == reqwest::StatusCode::BAD_REQUEST => {
            anyhow!("{e}")
        }
        e => anyhow!(e),
    }
}

/// `dth-cli@HOST`.
fn default_token_name() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("dth-cli@{host}")
}

/// Revokes the stored token and removes the login.
pub async fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let Some(login) = config::load()? else {
        eprintln!("dth: not logged in (no stored login)");
        return Ok(ExitCode::SUCCESS);
    };
    if !args.forget {
        let hub = HubClient::new(&login.server, Auth::Bearer(login.token.clone()))?;
        let id = match login.token_id.clone() {
            Some(id) => Some(id),
            None => find_token_id(&hub, login.token_name.as_deref()).await?,
        };
        match id {
            Some(id) => {
                match hub
                    .call(
                        Method::DELETE,
                        &format!("/api/v1/tokens/{}", super::seg(&id)),
                        None,
                    )
                    .await
                {
                    Ok(_) => {}
                    // Already revoked or expired, or gone: nothing left to revoke.
                    Err(HubError::Unauthorized { .. }) => {}
                    Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => {}
                    Err(e) => {
                        return Err(anyhow!(
                            "{e}; the login is kept (dth logout --forget removes it without revoking the token)"
                        ));
                    }
                }
            }
            None => bail!(
                "the stored login does not name its token; revoke it with dth token revoke, then run dth logout --forget"
            ),
        }
    }
    config::remove()?;
    if args.forget {
        eprintln!(
            "dth: forgot the login to {}; its token is still valid on the hub",
            login.server
        );
    } else {
        eprintln!("dth: logged out of {}; the token is revoked", login.server);
    }
    Ok(ExitCode::SUCCESS)
}

/// The id of the caller's token of this name.
async fn find_token_id(hub: &HubClient, name: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(name) = name else { return Ok(None) };
    let list = hub.get("/api/v1/tokens").await?;
    Ok(list.as_array().and_then(|a| {
        a.iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|t| t.get("id").and_then(Value::as_str))
            .map(str::to_string)
    }))
}

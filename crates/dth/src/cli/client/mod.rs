//! `dth login`, `dth logout`, `dth task …`, `dth secret …`, `dth user …`, `dth token …`: the CLI as a
//! client of a running hub, through its JSON API under `/api/v1` with an API token.
//!
//! - [`config`]: the stored login (`~/.config/dth/client.json`, mode 0600).
//! - [`http`]: the HTTP client and the one-line errors.
//! - [`login`]: sign-in (with the forced password change), token creation, sign-out.
//! - [`task`], [`secret`], [`user`], [`token`]: one module per area of the API.
//! - [`sse`]: the server-sent events parser of `dth task watch`.
//! - [`output`]: tables, sizes, times, `--json`.
//!
//! Every command prints the hub's JSON with `--json`, otherwise a table or a line for people. A
//! failure is one line on stderr (`dth: …`) and exit status 1. The token is never printed, except
//! by `dth token create`, whose point it is.

use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::Value;

mod config;
mod http;
mod login;
pub(super) mod output;
mod secret;
mod sse;
mod task;
mod token;
mod user;

use config::Secret;
use http::{Auth, HubClient};

pub(crate) use login::{LOGIN_EXAMPLES, LOGOUT_EXAMPLES, LoginArgs, LogoutArgs};
pub(crate) use secret::{SECRET_EXAMPLES, SecretCommand};
pub(crate) use task::{TASK_EXAMPLES, TaskCommand};
pub(crate) use token::{TOKEN_EXAMPLES, TokenCommand};
pub(crate) use user::{USER_EXAMPLES, UserCommand};

/// Which hub, as whom, and how to print: flags of every client command.
#[derive(Debug, Clone, Args)]
pub struct HubFlags {
    /// The hub's URL [default: the one `dth login` stored].
    #[arg(long, env = "DTH_SERVER", global = true, value_name = "URL")]
    server: Option<String>,
    /// API token [default: the one `dth login` stored]. Prefer DTH_TOKEN: a flag shows in `ps`.
    #[arg(
        long,
        env = "DTH_TOKEN",
        global = true,
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print the hub's JSON answers (for scripts) instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

/// A client command with its flags.
#[derive(Debug, Args)]
pub struct ClientArgs<C: Subcommand> {
    #[command(flatten)]
    hub: HubFlags,
    #[command(subcommand)]
    command: C,
}

/// Any client command.
#[derive(Debug)]
pub enum ClientCommand {
    /// `dth login`.
    Login(LoginArgs),
    /// `dth logout`.
    Logout(LogoutArgs),
    /// `dth task …`.
    Task(ClientArgs<TaskCommand>),
    /// `dth secret …`.
    Secret(ClientArgs<SecretCommand>),
    /// `dth user …`.
    User(ClientArgs<UserCommand>),
    /// `dth token …`.
    Token(ClientArgs<TokenCommand>),
}

/// A connected hub and how to print.
pub struct Ctx {
    /// The client, with the token.
    pub hub: HubClient,
    /// `--json`.
    pub json: bool,
}

impl Ctx {
    /// Prints the hub's answer as JSON when `--json`; returns whether it did.
    pub fn printed_json(&self, v: &Value) -> bool {
        if self.json && !v.is_null() {
            output::json(v);
        }
        self.json
    }
}

/// Runs a client command; a failure is printed as one line and gives exit status 1.
pub async fn run(cmd: ClientCommand) -> ExitCode {
    let result = match cmd {
        ClientCommand::Login(a) => login::login(a).await,
        ClientCommand::Logout(a) => login::logout(a).await,
        ClientCommand::Task(a) => match connect(&a.hub) {
            Ok(ctx) => task::run(&ctx, a.command).await,
            Err(e) => Err(e),
        },
        ClientCommand::Secret(a) => match connect(&a.hub) {
            Ok(ctx) => secret::run(&ctx, a.command)
                .await
                .map(|()| ExitCode::SUCCESS),
            Err(e) => Err(e),
        },
        ClientCommand::User(a) => match connect(&a.hub) {
            Ok(ctx) => user::run(&ctx, a.command).await.map(|()| ExitCode::SUCCESS),
            Err(e) => Err(e),
        },
        ClientCommand::Token(a) => match connect(&a.hub) {
            Ok(ctx) => token::run(&ctx, a.command)
                .await
                .map(|()| ExitCode::SUCCESS),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The hub and token to use: flags and `DTH_SERVER`/`DTH_TOKEN` over the stored login. The stored
/// token is only ever sent to the server it was made for.
fn connect(flags: &HubFlags) -> anyhow::Result<Ctx> {
    let stored = config::load()?;
    let server = match (&flags.server, &stored) {
        (Some(s), _) => config::normalize_server(s)?,
        (None, Some(l)) => l.server.clone(),
        (None, None) => {
            return Err(anyhow!(
                "no hub given: run dth login --server URL first, or give --server (DTH_SERVER) and --token (DTH_TOKEN)"
            ));
        }
    };
    let token = match (&flags.token, stored) {
        (Some(t), _) if !t.trim().is_empty() => Some(Secret::new(t.trim())),
        (_, Some(l)) if l.server == server => Some(l.token),
        _ => None,
    };
    let auth = token.map_or(Auth::None, Auth::Bearer);
    Ok(Ctx {
        hub: HubClient::new(&server, auth)?,
        json: flags.json,
    })
}

/// Percent-encodes one path segment (an id or a name from the command line).
pub fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The elements of a JSON array (none for anything else).
pub fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A string field of a JSON answer ("" when absent).
pub fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Asks `question [y/N]` on the terminal; true for yes.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

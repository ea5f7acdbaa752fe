//! `dth token …`: create an API token (printed once, alone on stdout, for scripts), list tokens
//! with their last use, revoke one by id or name.

use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::output::{self, ago};
use super::{Ctx, array, s, seg};

pub(crate) const TOKEN_EXAMPLES: &str = "\
Examples:
  # A read-only token for a dashboard, valid 90 days. The token is printed once, alone on stdout.
  TOKEN=$(dth token create grafana --role viewer --expires-days 90)
  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/api/v1/tasks
  dth token list            # yours; --all: everyone's (admin)
  dth token revoke grafana  # by name or id; it stops working at once";

/// `dth token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for your account; it is printed this once.
    Create {
        /// A name saying what uses it (ci, backup-cron).
        name: String,
        /// Its role, at most yours [default: yours].
        #[arg(long, value_name = "ROLE")]
        role: Option<String>,
        /// Days until it expires (1 to 3650) [default: never].
        #[arg(long, value_name = "N")]
        expires_days: Option<u32>,
    },
    /// List your tokens (never the tokens themselves).
    List {
        /// Every user's tokens (admin).
        #[arg(long)]
        all: bool,
    },
    /// Revoke a token; it stops working at once.
    Revoke {
        /// Token id, or the name of one of your tokens.
        #[arg(value_name = "TOKEN")]
        which: String,
    },
}

/// Runs a token command.
pub async fn run(ctx: &Ctx, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            expires_days,
        } => {
            let mut body = json!({ "name": name });
            if let Some(r) = role {
                body["role"] = json!(r.to_lowercase());
            }
            if let Some(d) = expires_days {
                body["expires_in_days"] = json!(d);
            }
            let v = ctx
                .hub
                .call(Method::POST, "/api/v1/tokens", Some(&body))
                .await?;
            if !ctx.printed_json(&v) {
                let info = v.get("info").cloned().unwrap_or(Value::Null);
                let expires = match info.get("expires_at").and_then(Value::as_i64) {
                    Some(at) => format!("expires {}", output::when(Some(at))),
                    None => "never expires".into(),
                };
                eprintln!(
                    "dth: token {:?} ({}), role {}, {expires}; shown this once:",
                    s(&info, "name"),
                    s(&info, "id"),
                    s(&info, "role")
                );
                println!("{}", s(&v, "token"));
            }
        }
        TokenCommand::List { all } => {
            let path = if all {
                "/api/v1/tokens?all=true"
            } else {
                "/api/v1/tokens"
            };
            let v = ctx.hub.get(path).await?;
            if !ctx.printed_json(&v) {
                let rows = array(&v)
                    .iter()
                    .map(|t| {
                        vec![
                            s(t, "id"),
                            s(t, "name"),
                            s(t, "role"),
                            ago(t.get("created_at").and_then(Value::as_i64)),
                            match t.get("expires_at").and_then(Value::as_i64) {
                                Some(at) => ago(Some(at)),
                                None => "never".into(),
                            },
                            ago(t.get("last_used_at").and_then(Value::as_i64)),
                        ]
                    })
                    .collect();
                output::table(
                    &["id", "name", "role", "created", "expires", "last used"],
                    rows,
                );
            }
        }
        TokenCommand::Revoke { which } => {
            let id = resolve(ctx, &which).await?;
            ctx.hub
                .call(
                    Method::DELETE,
                    &format!("/api/v1/tokens/{}", seg(&id)),
                    None,
                )
                .await?;
            if !ctx.json {
                println!("revoked token {which}");
            }
        }
    }
    Ok(())
}

/// A token id from an id or the name of one of the caller's tokens.
async fn resolve(ctx: &Ctx, given: &str) -> anyhow::Result<String> {
    let list = ctx.hub.get("/api/v1/tokens").await?;
    let tokens = array(&list);
    if tokens.iter().any(|t| s(t, "id") == given) {
        return Ok(given.to_string());
    }
    let named: Vec<&Value> = tokens.iter().filter(|t| s(t, "name") == given).collect();
    match named.as_slice() {
        [one] => Ok(s(one, "id")),
        // Perhaps another user's token (admin): let the hub decide.
        [] => Ok(given.to_string()),
        many => bail!(
            "{} of your tokens are named {given:?}: give one of their ids ({})",
            many.len(),
            many.iter()
                .map(|t| s(t, "id"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

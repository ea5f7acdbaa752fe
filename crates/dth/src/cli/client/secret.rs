//! `dth secret …`: store an access key or a registry login under a name, list the names, delete
//! one. Values are read from a file, stdin or a no-echo prompt, never from a flag, and never shown.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::output::{self, ago};
use super::{Ctx, array, s, seg};

pub(crate) const SECRET_EXAMPLES: &str = "\
Examples:
  # An access key; the secret key is read from stdin (or asked without echo on a terminal)
  printf '%s' \"$AWS_SECRET_ACCESS_KEY\" | dth secret put aws-prod --access-key-id AKIA… --secret-access-key-stdin
  # A registry login
  dth secret put harbor --username robot\\$ci --password-stdin < robot.token
  # The JSON body of PUT /api/v1/secrets/NAME, from a file or stdin (-)
  dth secret put oss-backup --file oss.json
  dth secret list
  dth secret delete aws-prod          # refused (409) while a task refers to it

Tasks refer to a secret by name: \"credentials\": {\"kind\": \"secret\", \"name\": \"aws-prod\"}.";

/// `dth secret` subcommands.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store an access key or a registry login under a name (replacing one of the same name).
    Put {
        /// Name: 1 to 64 of A-Z a-z 0-9 . _ -
        name: String,
        /// The secret as JSON ({"access_key_id", "secret_access_key", "session_token"} or
        /// {"username", "password"}) from this file; - for stdin.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["access_key_id", "username"])]
        file: Option<PathBuf>,
        /// Access key id of an access key.
        #[arg(long, value_name = "ID", conflicts_with = "username")]
        access_key_id: Option<String>,
        /// Read the secret access key from stdin [default: asked without echo].
        #[arg(long, requires = "access_key_id")]
        secret_access_key_stdin: bool,
        /// Session token of temporary credentials, read from the second line of stdin (or asked).
        #[arg(long, requires = "access_key_id")]
        session_token: bool,
        /// User name of a registry login.
        #[arg(long, value_name = "USER")]
        username: Option<String>,
        /// Read the registry password from stdin [default: asked without echo].
        #[arg(long, requires = "username")]
        password_stdin: bool,
    },
    /// List the secrets' names and times (never their values).
    List,
    /// Delete a secret that no task refers to.
    Delete {
        /// Its name.
        name: String,
    },
}

/// Runs a secret command.
pub async fn run(ctx: &Ctx, cmd: SecretCommand) -> anyhow::Result<()> {
    match cmd {
        SecretCommand::Put {
            name,
            file,
            access_key_id,
            secret_access_key_stdin,
            session_token,
            username,
            password_stdin,
        } => {
            let body = if let Some(file) = file {
                read_json(&file)?
            } else if let Some(id) = access_key_id {
                let mut lines = Lines::new(secret_access_key_stdin);
                let key = lines.next("secret access key", "Secret access key: ")?;
                let mut v = json!({"access_key_id": id, "secret_access_key": key});
                if session_token {
                    v["session_token"] = json!(lines.next("session token", "Session token: ")?);
                }
                v
            } else if let Some(user) = username {
                let password = Lines::new(password_stdin).next("password", "Password: ")?;
                json!({"username": user, "password": password})
            } else {
                bail!(
                    "give the secret: --file FILE (JSON, - for stdin), --access-key-id ID, or --username USER"
                );
            };
            ctx.hub
                .call(
                    Method::PUT,
                    &format!("/api/v1/secrets/{}", seg(&name)),
                    Some(&body),
                )
                .await?;
            if !ctx.json {
                println!("stored secret {name}");
            }
        }
        SecretCommand::List => {
            let v = ctx.hub.get("/api/v1/secrets").await?;
            if !ctx.printed_json(&v) {
                let rows = array(&v)
                    .iter()
                    .map(|x| {
                        vec![
                            s(x, "name"),
                            ago(x.get("created_at").and_then(Value::as_i64)),
                            ago(x.get("updated_at").and_then(Value::as_i64)),
                        ]
                    })
                    .collect::<Vec<_>>();
                if rows.is_empty() {
                    eprintln!("dth: no secrets yet (dth secret put NAME …)");
                }
                output::table(&["name", "created", "updated"], rows);
            }
        }
        SecretCommand::Delete { name } => {
            ctx.hub
                .call(
                    Method::DELETE,
                    &format!("/api/v1/secrets/{}", seg(&name)),
                    None,
                )
                .await?;
            if !ctx.json {
                println!("deleted secret {name}");
            }
        }
    }
    Ok(())
}

/// Secret values from the lines of stdin, or asked on the terminal without echo.
struct Lines {
    stdin: bool,
}

impl Lines {
    fn new(stdin: bool) -> Self {
        Lines {
            stdin: stdin || !std::io::stdin().is_terminal(),
        }
    }

    fn next(&mut self, what: &str, prompt: &str) -> anyhow::Result<String> {
        let value = if self.stdin {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .with_context(|| format!("cannot read the {what} from stdin"))?;
            line.trim_end_matches(['\r', '\n']).to_string()
        } else {
            rpassword::prompt_password(prompt)
                .with_context(|| format!("cannot read the {what} from the terminal"))?
        };
        if value.is_empty() {
            return Err(anyhow!("no {what} given"));
        }
        Ok(value)
    }
}

fn read_json(file: &PathBuf) -> anyhow::Result<Value> {
    let mut text = String::new();
    let what = if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        "stdin".to_string()
    } else {
        text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        file.display().to_string()
    };
    // serde_json's message names the line and column, never the content.
    serde_json::from_str(&text).map_err(|e| anyhow!("{what} is not valid JSON: {e}"))
}

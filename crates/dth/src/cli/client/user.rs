//! `dth user …` (admin): invite a user (the temporary password is printed once), list, change role
//! or state, reset a password, unlock, delete. A user is given by id or by email.

use std::io::IsTerminal;

use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::output::{self, ago};
use super::{Ctx, array, confirm, s, seg};

pub(crate) const USER_EXAMPLES: &str = "\
Examples:
  dth user add ops@example.com --role operator --name 'Ops team'   # prints a temporary password once
  dth user list
  dth user role ops@example.com viewer
  dth user disable ops@example.com          # their sessions end; tokens stop working
  dth user enable ops@example.com
  dth user reset-password ops@example.com   # a new temporary password, printed once
  dth user unlock ops@example.com           # after too many failed sign-ins

Roles: viewer (reads), operator (also changes tasks and secrets), admin (also users, audit).";

/// `dth user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Invite a user: the account gets a temporary password, printed once.
    Add {
        /// Email (the sign-in name).
        email: String,
        /// viewer, operator or admin.
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// Name for people [default: the part of the email before @].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// List the users.
    List,
    /// Show one user.
    Show {
        /// User id or email.
        user: String,
    },
    /// Change a user's role.
    Role {
        /// User id or email.
        user: String,
        /// viewer, operator or admin.
        role: String,
    },
    /// Disable a user: their sessions end and their tokens stop working.
    Disable {
        /// User id or email.
        user: String,
    },
    /// Enable a disabled user.
    Enable {
        /// User id or email.
        user: String,
    },
    /// Give a user a new temporary password (printed once); their sessions end.
    ResetPassword {
        /// User id or email.
        user: String,
    },
    /// Lift the lock after too many failed sign-ins.
    Unlock {
        /// User id or email.
        user: String,
    },
    /// Delete a user with their sessions and tokens.
    Delete {
        /// User id or email.
        user: String,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
}

/// Runs a user command.
pub async fn run(ctx: &Ctx, cmd: UserCommand) -> anyhow::Result<()> {
    use UserCommand as C;
    match cmd {
        C::Add { email, role, name } => {
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or(&email).into());
            let v = ctx
                .hub
                .call(
                    Method::POST,
                    "/api/v1/users",
                    Some(&json!({"email": email, "name": name, "role": role.to_lowercase()})),
                )
                .await?;
            if !ctx.printed_json(&v) {
                let user = v.get("user").cloned().unwrap_or(Value::Null);
                println!(
                    "invited {} ({}) as {}; temporary password (shown once): {}",
                    s(&user, "email"),
                    s(&user, "id"),
                    s(&user, "role"),
                    s(&v, "temporary_password")
                );
            }
        }
        C::List => {
            let v = ctx.hub.get("/api/v1/users").await?;
            if !ctx.printed_json(&v) {
                let rows = array(&v)
                    .iter()
                    .map(|u| {
                        vec![
                            s(u, "id"),
                            s(u, "email"),
                            s(u, "name"),
                            s(u, "role"),
                            state(u),
                            ago(u.get("last_signin_at").and_then(Value::as_i64)),
                        ]
                    })
                    .collect();
                output::table(
                    &["id", "email", "name", "role", "state", "last sign-in"],
                    rows,
                );
            }
        }
        C::Show { user } => {
            let id = resolve(ctx, &user).await?;
            let u = ctx.hub.get(&format!("/api/v1/users/{}", seg(&id))).await?;
            if !ctx.printed_json(&u) {
                output::fields(&[
                    ("id", s(&u, "id")),
                    ("email", s(&u, "email")),
                    ("name", s(&u, "name")),
                    ("role", s(&u, "role")),
                    ("state", state(&u)),
                    ("sign-in", sign_in_kinds(&u)),
                    (
                        "last sign-in",
                        output::when(u.get("last_signin_at").and_then(Value::as_i64)),
                    ),
                    (
                        "created",
                        output::when(u.get("created_at").and_then(Value::as_i64)),
                    ),
                ]);
            }
        }
        C::Role { user, role } => {
            patch(ctx, &user, json!({"role": role.to_lowercase()}), "role").await?;
        }
        C::Disable { user } => patch(ctx, &user, json!({"state": "disabled"}), "state").await?,
        C::Enable { user } => patch(ctx, &user, json!({"state": "active"}), "state").await?,
        C::ResetPassword { user } => {
            let id = resolve(ctx, &user).await?;
            let v = ctx
                .hub
                .call(
                    Method::POST,
                    &format!("/api/v1/users/{}/reset-password", seg(&id)),
                    None,
                )
                .await?;
            if !ctx.printed_json(&v) {
                let u = v.get("user").cloned().unwrap_or(Value::Null);
                println!(
                    "new temporary password of {} (shown once): {}",
                    s(&u, "email"),
                    s(&v, "temporary_password")
                );
            }
        }
        C::Unlock { user } => {
            let id = resolve(ctx, &user).await?;
            let v = ctx
                .hub
                .call(
                    Method::POST,
                    &format!("/api/v1/users/{}/unlock", seg(&id)),
                    None,
                )
                .await?;
            if !ctx.printed_json(&v) {
                println!("unlocked {}", s(&v, "email"));
            }
        }
        C::Delete { user, yes } => {
            let id = resolve(ctx, &user).await?;
            if !yes
                && std::io::stdin().is_terminal()
                && !confirm(&format!(
                    "Delete user {user} with their sessions and tokens?"
                ))?
            {
                bail!("nothing deleted");
            }
            ctx.hub
                .call(Method::DELETE, &format!("/api/v1/users/{}", seg(&id)), None)
                .await?;
            if !ctx.json {
                println!("deleted user {user}");
            }
        }
    }
    Ok(())
}

/// `PATCH /api/v1/users/{id}` and a line saying what changed.
async fn patch(ctx: &Ctx, user: &str, body: Value, field: &str) -> anyhow::Result<()> {
    let id = resolve(ctx, user).await?;
    let v = ctx
        .hub
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{}", seg(&id)),
            Some(&body),
        )
        .await?;
    if !ctx.printed_json(&v) {
        println!("{}: {field} {}", s(&v, "email"), s(&v, field));
    }
    Ok(())
}

/// `active`, `disabled`, with `locked` and `must change password` when they apply.
fn state(u: &Value) -> String {
    let mut st = s(u, "state");
    if u.get("locked").and_then(Value::as_bool) == Some(true) {
        st.push_str(", locked");
    }
    if u.get("must_change_password").and_then(Value::as_bool) == Some(true) {
        st.push_str(", temporary password");
    }
    st
}

fn sign_in_kinds(u: &Value) -> String {
    let mut kinds = Vec::new();
    if u.get("has_password").and_then(Value::as_bool) == Some(true) {
        kinds.push("password");
    }
    if u.get("oidc_linked").and_then(Value::as_bool) == Some(true) {
        kinds.push("OpenID Connect");
    }
    kinds.join(", ")
}

/// A user id from an id or an email (looked up in the list).
async fn resolve(ctx: &Ctx, given: &str) -> anyhow::Result<String> {
    if !given.contains('@') {
        return Ok(given.to_string());
    }
    let list = ctx.hub.get("/api/v1/users").await?;
    let found = list.as_array().and_then(|users| {
        users
            .iter()
            .find(|u| s(u, "email").eq_ignore_ascii_case(given))
            .map(|u| s(u, "id"))
    });
    match found {
        Some(id) => Ok(id),
        None => bail!("no user has the email {given} (see dth user list)"),
    }
}

//! The hub's access layer: who may call it and what they did. Sign-in with a password (throttled per
//! account and per client address, then locked), server-side sessions with idle and absolute expiry,
//! per-user API tokens, the `DTH_API_TOKEN` of the process, OpenID Connect identities turned into
//! accounts, user administration, and the audit log.
//!
//! Every call takes the [`Actor`] making it and checks its role here ([`Actor::require`]); the front
//! ends (`dth-web`'s API and portal) only find out who the actor is. Every change is written to the
//! event log with the actor, target and client address. Passwords, session ids and tokens never
//! reach a log line, an error or an event.

use std::time::Duration;

use dth_model::{Actor, AuthMethod, Role};
use dth_store::{
    AuditFilter, Event, NewEvent, NewToken, NewUser, OidcPending, Session, TokenInfo, User,
    UserChange, now_ms,
};

use crate::{Error, Hub};

pub mod password;
pub use password::PasswordPolicy;

/// The longest wait between attempts.
const MAX_DELAY: Duration = Duration::from_secs(300);
/// How often `last_seen_at` / `last_used_at` are written at most.
const TOUCH_EVERY: i64 = 60_000;
/// How long an OpenID Connect sign-in may take at the provider.
const OIDC_PENDING_TTL: i64 = 10 * 60_000;

/// How people sign in and how long sessions last.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// What new passwords must meet.
    pub policy: PasswordPolicy,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub session_max: Duration,
    /// Failed sign-ins in a row (per account or client address) before each further attempt
    /// must wait 1 s, 2 s, 4 s … (at most 5 min).
    pub throttle_after: u32,
    /// Failed sign-ins in a row after which the account is locked until an admin unlocks it.
    pub lock_after: u32,
    /// The process's `DTH_API_TOKEN`: an admin token for automation, never stored.
    pub env_token: Option<String>,
    /// OpenID Connect accounts, when a provider is configured.
    pub oidc: Option<OidcAccounts>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            policy: PasswordPolicy::default(),
            session_idle: Duration::from_secs(2 * 3600),
            session_max: Duration::from_secs(12 * 3600),
            throttle_after: 3,
            lock_after: 10,
            env_token: None,
            oidc: None,
        }
    }
}

/// How OpenID Connect identities become accounts.
#[derive(Debug, Clone)]
pub struct OidcAccounts {
    /// Unknown users are created (with `default_role`); otherwise refused.
    pub auto_create: bool,
    /// Role of created users, and of mapped users whose groups match nothing.
    pub default_role: Role,
    /// `group → role`, applied at every sign-in when not empty (the highest match wins).
    pub role_map: Vec<(String, Role)>,
}

/// A verified OpenID Connect identity (the ID token's claims, checked by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIdentity {
    /// `sub`.
    pub subject: String,
    /// `email`.
    pub email: Option<String>,
    /// `email_verified`.
    pub email_verified: bool,
    /// `name`.
    pub name: Option<String>,
    /// The values of the roles claim.
    pub groups: Vec<String>,
}

/// A new session: the cookie value (shown once), its CSRF token and the user.
#[derive(Clone)]
pub struct SignedIn {
    /// The session id for the cookie.
    pub session_id: String,
    /// The CSRF token state-changing requests must carry.
    pub csrf_token: String,
    /// Absolute expiry.
    pub expires_at: i64,
    /// Who signed in.
    pub user: User,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("user", &self.user.email)
            .finish_non_exhaustive()
    }
}

/// The session behind a cookie, as the web layer needs it.
#[derive(Debug, Clone)]
pub struct SessionActor {
    /// The signed-in user as an actor.
    pub actor: Actor,
    /// The session's CSRF token.
    pub csrf_token: String,
    /// Absolute expiry.
    pub expires_at: i64,
}

/// A user's new password or token, shown once.
pub struct Shown<T> {
    /// What it was made for.
    pub value: T,
    /// The secret (temporary password, token).
    pub secret: String,
}

/// Changes an admin makes to a user.
#[derive(Debug, Clone, Default)]
pub struct UserEdit {
    /// New name.
    pub name: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// Disable (true) or enable (false).
    pub disabled: Option<bool>,
}

fn random_secret(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 24]>()))
}

/// The wait before the next sign-in attempt after `failures` in a row: none for the first
/// `free` failures, then 1 s, 2 s, 4 s … up to 5 minutes.
pub fn signin_delay(failures: u32, free: u32) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let exp = (failures - free).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_DELAY)
}

fn actor_of(user: &User, method: AuthMethod, role: Role, client: Option<String>) -> Actor {
    Actor {
        user_id: Some(user.id.clone()),
        email: user.email.clone(),
        role,
        method,
        client,
        must_change_password: user.must_change_password,
    }
}

fn check_email(email: &str) -> Result<String, Error> {
    let email = email.trim().to_lowercase();
    let ok = email.chars().count() <= 254
        && email
            .split_once('@')
            .is_some_and(|(a, d)| !a.is_empty() && !d.is_empty() && !d.contains('@'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email)
    } else {
        Err(Error::BadRequest(format!(
            "email: {email:?} is not an email address"
        )))
    }
}

impl Hub {
    fn access(&self) -> &AccessConfig {
        &self.config.access
    }

    /// Records what an actor did (audit log); a failure is logged, not returned.
    pub(crate) async fn audit(
        &self,
        actor: &Actor,
        kind: &str,
        task_id: Option<&str>,
        target: Option<&str>,
        message: &str,
    ) {
        let res = self
            .store
            .add_event(NewEvent {
                task_id: task_id.map(str::to_string),
                run_id: None,
                kind: kind.to_string(),
                actor: actor.label(),
                message: message.to_string(),
                target: target.map(str::to_string),
                client: actor.client.clone(),
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(kind, "audit log: {e}");
        }
    }

    /// On the first start (no user at all), creates the admin account with a temporary password,
    /// returned to be shown once (and mailed to the admin when SMTP is configured). `None` when
    /// users exist.
    pub async fn ensure_admin(&self, email: &str) -> Result<Option<String>, Error> {
        if self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let email = check_email(email)?;
        let temporary = password::temporary();
        let created = self
            .store
            .create_user(NewUser {
                email: email.clone(),
                name: "Administrator".into(),
                role: Role::Admin,
                password_hash: Some(password::hash(&temporary)),
                must_change_password: true,
                oidc_subject: None,
            })
            .await;
        let user = match created {
            Ok(user) => user,
            // Another hub starting on the same store at the same moment made it first.
            Err(dth_store::Error::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        self.audit(
            &Actor::system(),
            "user.created",
            None,
            Some(&user.email),
            "first admin account created at the first start",
        )
        .await;
        if self.config.smtp.is_some() {
            let body = format!(
                "The Data Transfer Hub created the admin account {email}.\n\n\
                 Temporary password: {temporary}\n\n\
                 Sign in with it; you will be asked to set a new password.\n"
            );
            let sent = self
                .alarms
                .mail(&email, "[dth] your admin account", body)
                .await;
            if let Err(e) = sent {
                tracing::warn!("mailing the first admin's password: {e}");
            }
        }
        Ok(Some(temporary))
    }

    /// Signs in with an email and password from `client`. Throttled: after a few failures in a
    /// row (per account or per client address) each attempt must wait longer
    /// ([`Error::Throttled`]); after `lock_after` the account is locked.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: &str,
    ) -> Result<SignedIn, Error> {
        let now = now_ms();
        let user = self.store.user_by_email(email).await?;
        let free = self.access().throttle_after;
        let wait = |failures: u32, last: Option<i64>| {
            let until = last.unwrap_or(0) + signin_delay(failures, free).as_millis() as i64;
            (until > now).then(|| Duration::from_millis((until - now) as u64))
        };
        let by_client = self.store.client_failures(client).await?;
        let mut retry_after = by_client.and_then(|(f, at)| wait(f, Some(at)));
        if let Some(u) = &user {
            retry_after = retry_after.max(wait(u.failed_signins, u.last_failed_at));
        }
        let anonymous = Actor {
            user_id: user.as_ref().map(|u| u.id.clone()),
            email: email.trim().to_lowercase(),
            role: Role::Viewer,
            method: AuthMethod::Password,
            client: Some(client.to_string()),
            must_change_password: false,
        };
        if let Some(after) = retry_after {
            self.audit(
                &anonymous,
                "session.throttled",
                None,
                Some(&anonymous.email),
                "sign-in refused: too many failed attempts",
            )
            .await;
            return Err(Error::Throttled {
                retry_after: after.as_secs().max(1),
            });
        }
        let stored = match &user {
            Some(u) => self.store.password_hash(&u.id).await?,
            None => None,
        };
        let ok = password::verify(
            stored.as_deref().unwrap_or(password::decoy_hash()),
            password,
        ) && stored.is_some();
        let Some(user) = user.filter(|_| ok) else {
            let (account, _) = self
                .store
                .record_signin_failure(anonymous.user_id.as_deref(), client)
                .await?;
            if let Some(id) = &anonymous.user_id
                && account >= self.access().lock_after
            {
                let change = UserChange {
                    locked: Some(true),
                    ..UserChange::default()
                };
                self.store.update_user(id, &change).await?;
                self.audit(
                    &anonymous,
                    "user.locked",
                    None,
                    Some(&anonymous.email),
                    &format!("locked after {account} failed sign-ins"),
                )
                .await;
            }
            self.audit(
                &anonymous,
                "session.failed",
                None,
                Some(&anonymous.email),
                "wrong email or password",
            )
            .await;
            return Err(Error::Unauthorized("wrong email or password".into()));
        };
        if user.disabled {
            self.audit(
                &anonymous,
                "session.failed",
                None,
                Some(&user.email),
                "the account is disabled",
            )
            .await;
            return Err(Error::Forbidden(
                "this account is disabled; ask an admin".into(),
            ));
        }
        if user.locked {
            self.audit(
                &anonymous,
                "session.failed",
                None,
                Some(&user.email),
                "the account is locked",
            )
            .await;
            return Err(Error::Forbidden(
                "this account is locked after too many failed sign-ins; ask an admin to unlock it"
                    .into(),
            ));
        }
        self.store.record_signin(&user.id, client).await?;
        self.start_session(&user, AuthMethod::Password, client)
            .await
    }

    async fn start_session(
        &self,
        user: &User,
        method: AuthMethod,
        client: &str,
    ) -> Result<SignedIn, Error> {
        let now = now_ms();
        let session_id = random_secret("");
        let csrf_token = random_secret("");
        let expires_at = now + self.access().session_max.as_millis() as i64;
        let (kind, subject) = match &method {
            AuthMethod::Oidc { subject } => ("oidc", Some(subject.clone())),
            _ => ("password", None),
        };
        self.store
            .create_session(
                &session_id,
                &Session {
                    user_id: user.id.clone(),
                    csrf_token: csrf_token.clone(),
                    method: kind.into(),
                    subject,
                    client: client.to_string(),
                    created_at: now,
                    last_seen_at: now,
                    expires_at,
                },
            )
            .await?;
        let actor = actor_of(user, method, user.role, Some(client.to_string()));
        self.audit(
            &actor,
            "session.created",
            None,
            Some(&user.email),
            &format!("signed in ({kind})"),
        )
        .await;
        Ok(SignedIn {
            session_id,
            csrf_token,
            expires_at,
            user: user.clone(),
        })
    }

    /// The actor of a session cookie, if the session is valid (not expired, idle or revoked, its
    /// user enabled and unlocked).
    pub async fn session_actor(
        &self,
        session_id: &str,
        client: &str,
    ) -> Result<Option<SessionActor>, Error> {
        let Some(s) = self.store.session(session_id).await? else {
            return Ok(None);
        };
        let now = now_ms();
        let idle = self.access().session_idle.as_millis() as i64;
        if now >= s.expires_at || now >= s.last_seen_at + idle {
            self.store.delete_session(session_id).await?;
            return Ok(None);
        }
        let Some(user) = self.store.get_user(&s.user_id).await? else {
            return Ok(None);
        };
        if user.disabled || user.locked {
            return Ok(None);
        }
        if now - s.last_seen_at >= TOUCH_EVERY {
            self.store.touch_session(session_id, now).await?;
        }
        let method = match s.subject {
            Some(subject) if s.method == "oidc" => AuthMethod::Oidc { subject },
            _ => AuthMethod::Password,
        };
        Ok(Some(SessionActor {
            actor: actor_of(&user, method, user.role, Some(client.to_string())),
            csrf_token: s.csrf_token,
            expires_at: s.expires_at,
        }))
    }

    /// Signs out: the session ends at once.
    pub async fn sign_out(&self, actor: &Actor, session_id: &str) -> Result<(), Error> {
        self.store.delete_session(session_id).await?;
        self.audit(
            actor,
            "session.ended",
            None,
            Some(&actor.email),
            "signed out",
        )
        .await;
        Ok(())
    }

    /// The actor of a bearer token: the process's `DTH_API_TOKEN`, or a user's token that is not
    /// expired or revoked and whose user is enabled (its role capped by the user's).
    pub async fn token_actor(&self, secret: &str, client: &str) -> Result<Option<Actor>, Error> {
        if let Some(env) = &self.access().env_token
            && constant_time_eq(env.as_bytes(), secret.as_bytes())
        {
            return Ok(Some(Actor {
                user_id: None,
                email: "env-token".into(),
                role: Role::Admin,
                method: AuthMethod::EnvToken,
                client: Some(client.to_string()),
                must_change_password: false,
            }));
        }
        let Some(t) = self.store.check_token(secret).await? else {
            return Ok(None);
        };
        let now = now_ms();
        if t.expires_at.is_some_and(|e| now >= e) {
            return Ok(None);
        }
        if t.last_used_at.is_none_or(|at| now - at >= TOUCH_EVERY) {
            self.store.touch_token(&t.id, now).await?;
        }
        let method = AuthMethod::Token {
            id: t.id.clone(),
            name: t.name.clone(),
        };
        let Some(user_id) = &t.user_id else {
            // A token from before user accounts: an admin token of no one.
            return Ok(Some(Actor {
                user_id: None,
                email: "legacy".into(),
                role: t.role,
                method,
                client: Some(client.to_string()),
                must_change_password: false,
            }));
        };
        let Some(user) = self.store.get_user(user_id).await? else {
            return Ok(None);
        };
        if user.disabled || user.locked {
            return Ok(None);
        }
        let mut actor = actor_of(
            &user,
            method,
            t.role.min(user.role),
            Some(client.to_string()),
        );
        // A token works for automation even while its user's password is temporary.
        actor.must_change_password = false;
        Ok(Some(actor))
    }

    /// The actor's own account (`None` for the environment token and the system).
    pub async fn me(&self, actor: &Actor) -> Result<Option<User>, Error> {
        match &actor.user_id {
            Some(id) => Ok(self.store.get_user(id).await?),
            None => Ok(None),
        }
    }

    /// Changes the actor's own password: the current one must match and the new one meet the
    /// policy. Allowed with a temporary password (it is how that ends). Every session of the user
    /// ends; the caller's continues under a new id (returned).
    pub async fn change_password(
        &self,
        actor: &Actor,
        current: &str,
        new: &str,
    ) -> Result<SignedIn, Error> {
        let Some(user_id) = &actor.user_id else {
            return Err(Error::Forbidden(
                "this caller has no password to change".into(),
            ));
        };
        if !matches!(actor.method, AuthMethod::Password | AuthMethod::Oidc { .. }) {
            return Err(Error::Forbidden(
                "change a password from a signed-in session, not with an API token".into(),
            ));
        }
        let stored = self.store.password_hash(user_id).await?;
        if !stored.is_some_and(|h| password::verify(&h, current)) {
            self.audit(
                actor,
                "user.password_failed",
                None,
                Some(&actor.email),
                "wrong current password",
            )
            .await;
            return Err(Error::BadRequest("current_password: does not match".into()));
        }
        self.access()
            .policy
            .check(new)
            .map_err(|e| Error::BadRequest(format!("new_password: {e}")))?;
        if new == current {
            return Err(Error::BadRequest(
                "new_password: must differ from the current password".into(),
            ));
        }
        self.store
            .set_password(user_id, &password::hash(new), false)
            .await?;
        self.store.delete_user_sessions(user_id).await?;
        self.audit(
            actor,
            "user.password_changed",
            None,
            Some(&actor.email),
            "password changed; other sessions ended",
        )
        .await;
        let user = self
            .store
            .get_user(user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user_id}")))?;
        let client = actor.client.clone().unwrap_or_default();
        self.start_session(&user, actor.method.clone(), &client)
            .await
    }

    /// Sets or clears (`None`) the language the actor's own account prefers (any signed-in user,
    /// a BCP 47 tag such as `zh-CN`; the front end decides which tags it speaks). Audited.
    pub async fn set_language(&self, actor: &Actor, language: Option<&str>) -> Result<User, Error> {
        actor.require(Role::Viewer)?;
        let Some(user_id) = &actor.user_id else {
            return Err(Error::Forbidden(
                "languages belong to users; sign in as a user to choose one".into(),
            ));
        };
        if let Some(tag) = language {
            let ok = (1..=35).contains(&tag.len())
                && tag.split('-').all(|part| {
                    (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
                });
            if !ok {
                return Err(Error::BadRequest(format!(
                    "language: {tag:?} is not a language tag such as en or zh-CN"
                )));
            }
        }
        let change = UserChange {
            language: Some(language.map(str::to_string)),
            ..UserChange::default()
        };
        let user = self.store.update_user(user_id, &change).await?;
        self.audit(
            actor,
            "user.language",
            None,
            Some(&user.email),
            &match language {
                Some(tag) => format!("language {tag}"),
                None => "language follows the browser".into(),
            },
        )
        .await;
        Ok(user)
    }

    /// Whether the actor may manage users (admin): asked before a request body about users is
    /// read, so a caller without the role learns nothing from its validation.
    pub fn may_manage_users(&self, actor: &Actor) -> Result<(), Error> {
        Ok(actor.require(Role::Admin)?)
    }

    /// Every user (admin).
    pub async fn list_users(&self, actor: &Actor) -> Result<Vec<User>, Error> {
        actor.require(Role::Admin)?;
        Ok(self.store.list_users().await?)
    }

    /// One user (admin).
    pub async fn get_user(&self, actor: &Actor, id: &str) -> Result<User, Error> {
        actor.require(Role::Admin)?;
        self.store
            .get_user(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {id}")))
    }

    /// Invites a user (admin): the account gets a temporary password, shown once (and to be
    /// changed at the first sign-in).
    pub async fn invite_user(
        &self,
        actor: &Actor,
        email: &str,
        name: &str,
        role: Role,
    ) -> Result<Shown<User>, Error> {
        actor.require(Role::Admin)?;
        let email = check_email(email)?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Error::BadRequest("name: give 1 to 200 characters".into()));
        }
        let temporary = password::temporary();
        let user = self
            .store
            .create_user(NewUser {
                email,
                name: name.to_string(),
                role,
                password_hash: Some(password::hash(&temporary)),
                must_change_password: true,
                oidc_subject: None,
            })
            .await?;
        self.audit(
            actor,
            "user.created",
            None,
            Some(&user.email),
            &format!("invited as {role}"),
        )
        .await;
        Ok(Shown {
            value: user,
            secret: temporary,
        })
    }

    /// Whether `user` is the last enabled admin.
    async fn is_last_admin(&self, user: &User) -> Result<bool, Error> {
        if user.role != Role::Admin || user.disabled {
            return Ok(false);
        }
        let admins = self
            .store
            .list_users()
            .await?
            .into_iter()
            .filter(|u| u.role == Role::Admin && !u.disabled)
            .count();
        Ok(admins <= 1)
    }

    /// Changes a user's name, role or state (admin). The last enabled admin cannot be demoted or
    /// disabled. Disabling ends the user's sessions.
    pub async fn edit_user(&self, actor: &Actor, id: &str, edit: UserEdit) -> Result<User, Error> {
        let user = self.get_user(actor, id).await?;
        let demoted = edit.role.is_some_and(|r| r != Role::Admin);
        let disabled = edit.disabled == Some(true);
        if (demoted || disabled) && self.is_last_admin(&user).await? {
            return Err(Error::Conflict(format!(
                "{} is the last admin; make another user admin first",
                user.email
            )));
        }
        if let Some(name) = &edit.name
            && (name.trim().is_empty() || name.chars().count() > 200)
        {
            return Err(Error::BadRequest("name: give 1 to 200 characters".into()));
        }
        let change = UserChange {
            name: edit.name.map(|n| n.trim().to_string()),
            role: edit.role,
            disabled: edit.disabled,
            ..UserChange::default()
        };
        let updated = self.store.update_user(id, &change).await?;
        if disabled {
            self.store.delete_user_sessions(id).await?;
        }
        let mut what = Vec::new();
        if let Some(r) = edit.role {
            what.push(format!("role {r}"));
        }
        if let Some(d) = edit.disabled {
            what.push(if d {
                "disabled".into()
            } else {
                "enabled".into()
            });
        }
        if change.name.is_some() {
            what.push("name changed".into());
        }
        self.audit(
            actor,
            "user.updated",
            None,
            Some(&updated.email),
            &what.join(", "),
        )
        .await;
        Ok(updated)
    }

    /// Gives a user a new temporary password (admin), shown once; their sessions end.
    pub async fn reset_password(&self, actor: &Actor, id: &str) -> Result<Shown<User>, Error> {
        let user = self.get_user(actor, id).await?;
        let temporary = password::temporary();
        self.store
            .set_password(id, &password::hash(&temporary), true)
            .await?;
        self.store.delete_user_sessions(id).await?;
        self.audit(
            actor,
            "user.password_reset",
            None,
            Some(&user.email),
            "temporary password set",
        )
        .await;
        Ok(Shown {
            value: self.get_user(actor, id).await?,
            secret: temporary,
        })
    }

    /// Lifts a lock after failed sign-ins (admin).
    pub async fn unlock_user(&self, actor: &Actor, id: &str) -> Result<User, Error> {
        self.get_user(actor, id).await?;
        let change = UserChange {
            locked: Some(false),
            ..UserChange::default()
        };
        let user = self.store.update_user(id, &change).await?;
        self.audit(actor, "user.unlocked", None, Some(&user.email), "unlocked")
            .await;
        Ok(user)
    }

    /// Deletes a user with their sessions and tokens (admin); never the last admin.
    pub async fn delete_user(&self, actor: &Actor, id: &str) -> Result<(), Error> {
        let user = self.get_user(actor, id).await?;
        if self.is_last_admin(&user).await? {
            return Err(Error::Conflict(format!(
                "{} is the last admin; make another user admin first",
                user.email
            )));
        }
        self.store.delete_user(id).await?;
        self.audit(actor, "user.deleted", None, Some(&user.email), "deleted")
            .await;
        Ok(())
    }

    /// Creates an API token for the actor's own account, shown once: a role no higher than the
    /// actor's (default: the actor's), an optional lifetime in days.
    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        role: Option<Role>,
        expires_in_days: Option<u32>,
    ) -> Result<Shown<TokenInfo>, Error> {
        actor.require(Role::Viewer)?;
        let Some(user_id) = &actor.user_id else {
            return Err(Error::Forbidden(
                "tokens belong to users; sign in as a user to create one".into(),
            ));
        };
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::BadRequest("name: give 1 to 100 characters".into()));
        }
        let role = role.unwrap_or(actor.role);
        if role > actor.role {
            return Err(Error::Forbidden(format!(
                "role: a token's role cannot be above yours ({})",
                actor.role
            )));
        }
        let expires_at = match expires_in_days {
            Some(0) | Some(3651..) => {
                return Err(Error::BadRequest(
                    "expires_in_days: give 1 to 3650, or leave it out for no expiry".into(),
                ));
            }
            Some(d) => Some(now_ms() + i64::from(d) * 86_400_000),
            None => None,
        };
        let secret = random_secret("dth_");
        let info = self
            .store
            .add_token(
                &NewToken {
                    name: name.to_string(),
                    user_id: Some(user_id.clone()),
                    role,
                    expires_at,
                },
                &secret,
            )
            .await?;
        self.audit(
            actor,
            "token.created",
            None,
            Some(&format!("token {} ({})", info.id, info.name)),
            &format!("role {role}"),
        )
        .await;
        Ok(Shown {
            value: info,
            secret,
        })
    }

    /// The actor's tokens, or everyone's (`all`, admin).
    pub async fn list_tokens(&self, actor: &Actor, all: bool) -> Result<Vec<TokenInfo>, Error> {
        actor.require(Role::Viewer)?;
        if all {
            actor.require(Role::Admin)?;
            return Ok(self.store.list_tokens(None).await?);
        }
        match &actor.user_id {
            Some(id) => Ok(self.store.list_tokens(Some(id)).await?),
            None => Ok(Vec::new()),
        }
    }

    /// Revokes a token: the actor's own, or anyone's for an admin.
    pub async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<(), Error> {
        actor.require(Role::Viewer)?;
        let token = self
            .store
            .get_token(id)
            .await?
            .filter(|t| actor.role == Role::Admin || t.user_id == actor.user_id)
            .ok_or_else(|| Error::NotFound(format!("token {id}")))?;
        self.store.revoke_token(id).await?;
        self.audit(
            actor,
            "token.revoked",
            None,
            Some(&format!("token {} ({})", token.id, token.name)),
            "revoked",
        )
        .await;
        Ok(())
    }

    /// The audit log (admin), newest first.
    pub async fn audit_log(
        &self,
        actor: &Actor,
        filter: &AuditFilter,
    ) -> Result<Vec<Event>, Error> {
        actor.require(Role::Admin)?;
        Ok(self.store.audit(filter).await?)
    }

    /// Remembers an OpenID Connect sign-in sent to the provider (its `state`, `nonce` and PKCE
    /// verifier), for [`Hub::oidc_take`].
    pub async fn oidc_begin(&self, state: &str, nonce: &str, verifier: &str) -> Result<(), Error> {
        let pending = OidcPending {
            nonce: nonce.to_string(),
            pkce_verifier: verifier.to_string(),
            expires_at: now_ms() + OIDC_PENDING_TTL,
        };
        Ok(self.store.put_oidc_pending(state, &pending).await?)
    }

    /// Takes the sign-in of a `state` returned by the provider: once only, and not after it expired.
    pub async fn oidc_take(&self, state: &str) -> Result<Option<OidcPending>, Error> {
        Ok(self
            .store
            .take_oidc_pending(state)
            .await?
            .filter(|p| p.expires_at > now_ms()))
    }

    /// Signs in a verified OpenID Connect identity: matched by subject, else by verified email;
    /// unknown users are created (or refused when auto-creation is off); with a role map the role
    /// follows the groups at every sign-in.
    pub async fn oidc_sign_in(&self, id: &OidcIdentity, client: &str) -> Result<SignedIn, Error> {
        let Some(conf) = self.access().oidc.clone() else {
            return Err(Error::BadRequest(
                "OpenID Connect sign-in is not configured".into(),
            ));
        };
        let refuse = |why: String| Error::Forbidden(why);
        let email = match (&id.email, id.email_verified) {
            (Some(e), true) => check_email(e)?,
            (Some(_), false) => {
                return Err(refuse(
                    "the provider has not verified this account's email".into(),
                ));
            }
            (None, _) => return Err(refuse("the provider sent no email for this account".into())),
        };
        let mapped = (!conf.role_map.is_empty()).then(|| {
            conf.role_map
                .iter()
                .filter(|(g, _)| id.groups.iter().any(|x| x == g))
                .map(|(_, r)| *r)
                .max()
                .unwrap_or(conf.default_role)
        });
        let system = Actor {
            client: Some(client.to_string()),
            ..Actor::system()
        };
        let existing = match self.store.user_by_subject(&id.subject).await? {
            Some(u) => Some(u),
            None => self.store.user_by_email(&email).await?,
        };
        let mut user = match existing {
            Some(u) => u,
            None if conf.auto_create => {
                let role = mapped.unwrap_or(conf.default_role);
                let u = self
                    .store
                    .create_user(NewUser {
                        email: email.clone(),
                        name: id.name.clone().unwrap_or_else(|| email.clone()),
                        role,
                        password_hash: None,
                        must_change_password: false,
                        oidc_subject: Some(id.subject.clone()),
                    })
                    .await?;
                self.audit(
                    &system,
                    "user.created",
                    None,
                    Some(&u.email),
                    &format!("created at its first OpenID Connect sign-in as {role}"),
                )
                .await;
                u
            }
            None => {
                let actor = Actor {
                    email: email.clone(),
                    ..system.clone()
                };
                self.audit(
                    &actor,
                    "session.failed",
                    None,
                    Some(&email),
                    "OpenID Connect user unknown and auto-creation is off",
                )
                .await;
                return Err(refuse(format!(
                    "{email} has no account on this hub; ask an admin to create it"
                )));
            }
        };
        if user.oidc_subject.as_deref() != Some(id.subject.as_str()) {
            if user.oidc_subject.is_some() {
                return Err(refuse(
                    "this email belongs to an account linked to another OpenID Connect subject"
                        .into(),
                ));
            }
            self.store.set_oidc_subject(&user.id, &id.subject).await?;
        }
        if let Some(role) = mapped
            && role != user.role
            && !(user.role == Role::Admin && self.is_last_admin(&user).await?)
        {
            let change = UserChange {
                role: Some(role),
                ..UserChange::default()
            };
            user = self.store.update_user(&user.id, &change).await?;
            self.audit(
                &system,
                "user.updated",
                None,
                Some(&user.email),
                &format!("role {role} from the provider's groups"),
            )
            .await;
        }
        if user.disabled {
            return Err(refuse("this account is disabled; ask an admin".into()));
        }
        if user.locked {
            return Err(refuse(
                "this account is locked; ask an admin to unlock it".into(),
            ));
        }
        self.store.record_signin(&user.id, client).await?;
        self.start_session(
            &user,
            AuthMethod::Oidc {
                subject: id.subject.clone(),
            },
            client,
        )
        .await
    }
}

/// Compares two secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_delays_grow_and_are_capped() {
        assert_eq!(signin_delay(0, 3), Duration::ZERO);
        assert_eq!(signin_delay(2, 3), Duration::ZERO);
        assert_eq!(signin_delay(3, 3), Duration::from_secs(1));
        assert_eq!(signin_delay(5, 3), Duration::from_secs(4));
        assert_eq!(signin_delay(40, 3), MAX_DELAY);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

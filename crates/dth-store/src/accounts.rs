//! Who may call the hub: users (with their argon2id password hash, which only
//! [`AccountStore::password_hash`] reads), server-side sessions, per-user API tokens, sign-in
//! failure counters per account and per client address, and OpenID Connect sign-ins in flight.
//! Session ids, API tokens and OIDC `state` values are stored as SHA-256 hashes only.
//!
//! The trait, and its SQL written once as a macro expanded for each backend's pool type
//! (`sqlite.rs`, `postgres.rs`); `$N` placeholders bind by number on both.

use async_trait::async_trait;
use dth_model::Role;
use serde::{Deserialize, Serialize};

use crate::{Error, Millis, Result};

/// A user account. Holds no password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Id (UUID).
    pub id: String,
    /// Email, lowercased; unique.
    pub email: String,
    /// Name for people.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Disabled accounts cannot sign in, and their sessions and tokens stop working.
    pub disabled: bool,
    /// The password is temporary: it must be replaced before anything else.
    pub must_change_password: bool,
    /// Whether a local password is set.
    pub has_password: bool,
    /// The OpenID Connect `sub` this account signed in with.
    pub oidc_subject: Option<String>,
    /// Preferred language (`en`, `zh-CN`); `None`: from the browser.
    pub language: Option<String>,
    /// Failed sign-ins in a row.
    pub failed_signins: u32,
    /// The last failed sign-in.
    pub last_failed_at: Option<Millis>,
    /// Locked after too many failures, until an admin unlocks it.
    pub locked: bool,
    /// The last sign-in.
    pub last_signin_at: Option<Millis>,
    /// Creation.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// A user to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Email (lowercased by the store).
    pub email: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// argon2id hash of the password; `None` for OIDC-only accounts.
    pub password_hash: Option<String>,
    /// The password is temporary.
    pub must_change_password: bool,
    /// OIDC subject, for accounts created at an OIDC sign-in.
    pub oidc_subject: Option<String>,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChange {
    /// New name.
    pub name: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// Lock or unlock (unlocking clears the failure counter).
    pub locked: Option<bool>,
    /// Preferred language (`Some(None)` clears it).
    pub language: Option<Option<String>>,
}

/// A session as stored (by the hash of its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its user.
    pub user_id: String,
    /// The per-session CSRF token state-changing requests must carry.
    pub csrf_token: String,
    /// `password` or `oidc`.
    pub method: String,
    /// The OIDC subject of an `oidc` session.
    pub subject: Option<String>,
    /// The client address that signed in.
    pub client: String,
    /// Sign-in time.
    pub created_at: Millis,
    /// Last request (updated at most once a minute).
    pub last_seen_at: Millis,
    /// Absolute expiry.
    pub expires_at: Millis,
}

/// An API token's metadata (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Its user; `None` for a token from before user accounts (an admin token).
    pub user_id: Option<String>,
    /// Role in effect (at most the user's).
    pub role: Role,
    /// Creation.
    pub created_at: Millis,
    /// Expiry; `None`: never.
    pub expires_at: Option<Millis>,
    /// Last use (updated at most once a minute).
    pub last_used_at: Option<Millis>,
}

/// A token to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Name.
    pub name: String,
    /// Its user.
    pub user_id: Option<String>,
    /// Role.
    pub role: Role,
    /// Expiry.
    pub expires_at: Option<Millis>,
}

/// An OpenID Connect sign-in in flight. `Debug` hides the verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcPending {
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: String,
    /// When it stops being accepted.
    pub expires_at: Millis,
}

impl std::fmt::Debug for OidcPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcPending")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Users, sessions, tokens, sign-in throttling and OIDC sign-ins in flight.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates a user; [`Error::Conflict`] when the email is taken.
    async fn create_user(&self, user: NewUser) -> Result<User>;
    /// One user.
    async fn get_user(&self, id: &str) -> Result<Option<User>>;
    /// The user with this email (any case).
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// The user who signed in with this OIDC subject.
    async fn user_by_subject(&self, subject: &str) -> Result<Option<User>>;
    /// Every user, by email.
    async fn list_users(&self) -> Result<Vec<User>>;
    /// How many users exist.
    async fn count_users(&self) -> Result<u64>;
    /// Applies changes; [`Error::NotFound`] when there is no such user.
    async fn update_user(&self, id: &str, change: &UserChange) -> Result<User>;
    /// Sets the password hash and whether it is temporary.
    async fn set_password(&self, id: &str, hash: &str, temporary: bool) -> Result<()>;
    /// The password hash, for checking a sign-in only.
    async fn password_hash(&self, id: &str) -> Result<Option<String>>;
    /// Records the OIDC subject of a user.
    async fn set_oidc_subject(&self, id: &str, subject: &str) -> Result<()>;
    /// Deletes a user with their sessions and tokens; false when there was none.
    async fn delete_user(&self, id: &str) -> Result<bool>;

    /// Counts a failed sign-in for the account (when known) and the client address; returns the
    /// failures in a row of each.
    async fn record_signin_failure(
        &self,
        user_id: Option<&str>,
        client: &str,
    ) -> Result<(u32, u32)>;
    /// Failures in a row from a client address and the last one's time.
    async fn client_failures(&self, client: &str) -> Result<Option<(u32, Millis)>>;
    /// A successful sign-in: clears both counters, sets `last_signin_at`.
    async fn record_signin(&self, user_id: &str, client: &str) -> Result<()>;

    /// Stores a session under the hash of `id`.
    async fn create_session(&self, id: &str, session: &Session) -> Result<()>;
    /// The session of a cookie value, if it exists (expired or not: the caller decides).
    async fn session(&self, id: &str) -> Result<Option<Session>>;
    /// Sets a session's `last_seen_at`.
    async fn touch_session(&self, id: &str, at: Millis) -> Result<()>;
    /// Ends a session; false when there was none.
    async fn delete_session(&self, id: &str) -> Result<bool>;
    /// Ends every session of a user; returns how many.
    async fn delete_user_sessions(&self, user_id: &str) -> Result<u64>;

    /// Stores a token's hash; returns its metadata.
    async fn add_token(&self, token: &NewToken, secret: &str) -> Result<TokenInfo>;
    /// The token's metadata if it is known and not revoked (expired or not: the caller decides).
    async fn check_token(&self, secret: &str) -> Result<Option<TokenInfo>>;
    /// Sets a token's `last_used_at`.
    async fn touch_token(&self, id: &str, at: Millis) -> Result<()>;
    /// Tokens not revoked, of one user or of everyone, newest first.
    async fn list_tokens(&self, user_id: Option<&str>) -> Result<Vec<TokenInfo>>;
    /// One token (not revoked).
    async fn get_token(&self, id: &str) -> Result<Option<TokenInfo>>;
    /// Revokes a token; false when there was none (or it was revoked already).
    async fn revoke_token(&self, id: &str) -> Result<bool>;

    /// Stores an OIDC sign-in in flight under the hash of its `state`; drops expired ones.
    async fn put_oidc_pending(&self, state: &str, pending: &OidcPending) -> Result<()>;
    /// Takes (reads and deletes: once only) the sign-in of a `state`.
    async fn take_oidc_pending(&self, state: &str) -> Result<Option<OidcPending>>;
}

/// Columns of `users`, in [`UserRow`] order.
pub(crate) const USER_COLS: &str = "id, email, name, role, disabled, \
     CAST(CASE WHEN password_hash IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_password, \
     must_change_password, \
     oidc_subject, language, failed_signins, last_failed_at, locked, last_signin_at, created_at, \
     updated_at";
/// Columns of `sessions`, in [`SessionRow`] order.
pub(crate) const SESSION_COLS: &str =
    "user_id, csrf_token, method, subject, client, created_at, last_seen_at, expires_at";
/// Columns of `api_tokens`, in [`TokenRow`] order.
pub(crate) const TOKEN_COLS: &str = "id, name, user_id, role, created_at, expires_at, last_used_at";

fn role(what: &str, s: &str) -> Result<Role> {
    s.parse().map_err(|_| {
        Error::Db(format!(
            "{what} has role {s:?}, which this version does not know"
        ))
    })
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    email: String,
    name: String,
    role: String,
    disabled: i64,
    has_password: i64,
    must_change_password: i64,
    oidc_subject: Option<String>,
    language: Option<String>,
    failed_signins: i64,
    last_failed_at: Option<Millis>,
    locked: i64,
    last_signin_at: Option<Millis>,
    created_at: Millis,
    updated_at: Millis,
}

impl TryFrom<UserRow> for User {
    type Error = Error;
    fn try_from(r: UserRow) -> Result<User> {
        Ok(User {
            role: role(&format!("user {}", r.id), &r.role)?,
            id: r.id,
            email: r.email,
            name: r.name,
            disabled: r.disabled != 0,
            has_password: r.has_password != 0,
            must_change_password: r.must_change_password != 0,
            oidc_subject: r.oidc_subject,
            language: r.language,
            failed_signins: u32::try_from(r.failed_signins).unwrap_or(u32::MAX),
            last_failed_at: r.last_failed_at,
            locked: r.locked != 0,
            last_signin_at: r.last_signin_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    user_id: String,
    csrf_token: String,
    method: String,
    subject: Option<String>,
    client: String,
    created_at: Millis,
    last_seen_at: Millis,
    expires_at: Millis,
}

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Session {
        Session {
            user_id: r.user_id,
            csrf_token: r.csrf_token,
            method: r.method,
            subject: r.subject,
            client: r.client,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            expires_at: r.expires_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: String,
    name: String,
    user_id: Option<String>,
    role: String,
    created_at: Millis,
    expires_at: Option<Millis>,
    last_used_at: Option<Millis>,
}

impl TryFrom<TokenRow> for TokenInfo {
    type Error = Error;
    fn try_from(r: TokenRow) -> Result<TokenInfo> {
        Ok(TokenInfo {
            role: role(&format!("token {}", r.id), &r.role)?,
            id: r.id,
            name: r.name,
            user_id: r.user_id,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
        })
    }
}

/// Whether a database error is a unique-constraint violation (both backends).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Implements [`AccountStore`] for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_account_store {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn user_where(
                &self,
                cond: &str,
                value: &str,
            ) -> $crate::Result<Option<$crate::User>> {
                let sql = format!(
                    "SELECT {} FROM users WHERE {cond} = $1",
                    $crate::accounts::USER_COLS
                );
                let row: Option<$crate::accounts::UserRow> = sqlx::query_as(&sql)
                    .bind(value)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::rows::db("read a user"))?;
                row.map(TryInto::try_into).transpose()
            }
        }

        #[async_trait::async_trait]
        impl $crate::AccountStore for $store {
            async fn create_user(&self, user: $crate::NewUser) -> $crate::Result<$crate::User> {
                let id = uuid::Uuid::new_v4().to_string();
                let now = $crate::now_ms();
                let email = user.email.trim().to_lowercase();
                let done = sqlx::query(
                    "INSERT INTO users (id, email, name, role, password_hash, \
                     must_change_password, oidc_subject, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                )
                .bind(&id)
                .bind(&email)
                .bind(&user.name)
                .bind(user.role.name())
                .bind(user.password_hash.as_deref())
                .bind(i64::from(user.must_change_password))
                .bind(user.oidc_subject.as_deref())
                .bind(now)
                .execute(&self.writer)
                .await;
                match done {
                    Err(e) if $crate::accounts::is_unique_violation(&e) => {
                        return Err($crate::Error::Conflict(format!(
                            "a user with email {email} exists already"
                        )));
                    }
                    other => {
                        other.map_err($crate::rows::db(format!("create user {email}")))?;
                    }
                }
                self.user_where("id", &id)
                    .await?
                    .ok_or_else(|| $crate::Error::NotFound { what: "user", id })
            }

            async fn get_user(&self, id: &str) -> $crate::Result<Option<$crate::User>> {
                self.user_where("id", id).await
            }

            async fn user_by_email(&self, email: &str) -> $crate::Result<Option<$crate::User>> {
                self.user_where("email", &email.trim().to_lowercase()).await
            }

            async fn user_by_subject(
                &self,
                subject: &str,
            ) -> $crate::Result<Option<$crate::User>> {
                self.user_where("oidc_subject", subject).await
            }

            async fn list_users(&self) -> $crate::Result<Vec<$crate::User>> {
                let sql = format!(
                    "SELECT {} FROM users ORDER BY email",
                    $crate::accounts::USER_COLS
                );
                let rows: Vec<$crate::accounts::UserRow> = sqlx::query_as(&sql)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::db("list users"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn count_users(&self) -> $crate::Result<u64> {
                let (n,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM users")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::rows::db("count users"))?;
                Ok($crate::rows::to_u64(n))
            }

            async fn update_user(
                &self,
                id: &str,
                change: &$crate::UserChange,
            ) -> $crate::Result<$crate::User> {
                let unlock = change.locked == Some(false);
                let done = sqlx::query(
                    "UPDATE users SET name = COALESCE($2, name), role = COALESCE($3, role), \
                     disabled = COALESCE($4, disabled), locked = COALESCE($5, locked), \
                     failed_signins = CASE WHEN $6 = 1 THEN 0 ELSE failed_signins END, \
                     language = CASE WHEN $7 = 1 THEN $8 ELSE language END, updated_at = $9 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(change.name.as_deref())
                .bind(change.role.map(|r| r.name()))
                .bind(change.disabled.map(i64::from))
                .bind(change.locked.map(i64::from))
                .bind(i64::from(unlock))
                .bind(i64::from(change.language.is_some()))
                .bind(change.language.clone().flatten())
                .bind($crate::now_ms())
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("update user {id}")))?;
                if done.rows_affected() == 0 {
                    return Err($crate::Error::NotFound { what: "user", id: id.to_string() });
                }
                self.user_where("id", id)
                    .await?
                    .ok_or_else(|| $crate::Error::NotFound { what: "user", id: id.to_string() })
            }

            async fn set_password(
                &self,
                id: &str,
                hash: &str,
                temporary: bool,
            ) -> $crate::Result<()> {
                let done = sqlx::query(
                    "UPDATE users SET password_hash = $2, must_change_password = $3, \
                     updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(hash)
                .bind(i64::from(temporary))
                .bind($crate::now_ms())
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("set the password of user {id}")))?;
                if done.rows_affected() == 0 {
                    return Err($crate::Error::NotFound { what: "user", id: id.to_string() });
                }
                Ok(())
            }

            async fn password_hash(&self, id: &str) -> $crate::Result<Option<String>> {
                let row: Option<(Option<String>,)> =
                    sqlx::query_as("SELECT password_hash FROM users WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::rows::db("read a password hash"))?;
                Ok(row.and_then(|(h,)| h))
            }

            async fn set_oidc_subject(&self, id: &str, subject: &str) -> $crate::Result<()> {
                let done = sqlx::query(
                    "UPDATE users SET oidc_subject = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(subject)
                .bind($crate::now_ms())
                .execute(&self.writer)
                .await;
                match done {
                    Err(e) if $crate::accounts::is_unique_violation(&e) => {
                        Err($crate::Error::Conflict(
                            "another user signed in with this OpenID Connect subject".into(),
                        ))
                    }
                    other => {
                        other.map_err($crate::rows::db(format!("set the subject of {id}")))?;
                        Ok(())
                    }
                }
            }

            async fn delete_user(&self, id: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(id)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::rows::db(format!("delete user {id}")))?;
                Ok(done.rows_affected() > 0)
            }

            async fn record_signin_failure(
                &self,
                user_id: Option<&str>,
                client: &str,
            ) -> $crate::Result<(u32, u32)> {
                let now = $crate::now_ms();
                let mut account = 0;
                if let Some(id) = user_id {
                    let row: Option<(i64,)> = sqlx::query_as(
                        "UPDATE users SET failed_signins = failed_signins + 1, \
                         last_failed_at = $2 WHERE id = $1 RETURNING failed_signins",
                    )
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&self.writer)
                    .await
                    .map_err($crate::rows::db("count a failed sign-in"))?;
                    account = row.map_or(0, |(n,)| n);
                }
                let (from_client,): (i64,) = sqlx::query_as(
                    "INSERT INTO client_throttle (client, failures, last_failed_at) \
                     VALUES ($1, 1, $2) ON CONFLICT (client) DO UPDATE SET \
                     failures = client_throttle.failures + 1, last_failed_at = excluded.last_failed_at \
                     RETURNING failures",
                )
                .bind(client)
                .bind(now)
                .fetch_one(&self.writer)
                .await
                .map_err($crate::rows::db("count a failed sign-in"))?;
                let n = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
                Ok((n(account), n(from_client)))
            }

            async fn client_failures(
                &self,
                client: &str,
            ) -> $crate::Result<Option<(u32, $crate::Millis)>> {
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT failures, last_failed_at FROM client_throttle WHERE client = $1",
                )
                .bind(client)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::rows::db("read sign-in failures"))?;
                Ok(row.map(|(f, at)| (u32::try_from(f).unwrap_or(u32::MAX), at)))
            }

            async fn record_signin(&self, user_id: &str, client: &str) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE users SET failed_signins = 0, last_signin_at = $2 WHERE id = $1",
                )
                .bind(user_id)
                .bind($crate::now_ms())
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db("record a sign-in"))?;
                sqlx::query("DELETE FROM client_throttle WHERE client = $1")
                    .bind(client)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::rows::db("record a sign-in"))?;
                Ok(())
            }

            async fn create_session(
                &self,
                id: &str,
                s: &$crate::Session,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO sessions (id_hash, user_id, csrf_token, method, subject, client, \
                     created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind($crate::crypto::token_hash(id))
                .bind(&s.user_id)
                .bind(&s.csrf_token)
                .bind(&s.method)
                .bind(s.subject.as_deref())
                .bind(&s.client)
                .bind(s.created_at)
                .bind(s.last_seen_at)
                .bind(s.expires_at)
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db("create a session"))?;
                // Ended sessions go when new ones start.
                sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
                    .bind($crate::now_ms())
                    .execute(&self.writer)
                    .await
                    .map_err($crate::rows::db("drop expired sessions"))?;
                Ok(())
            }

            async fn session(&self, id: &str) -> $crate::Result<Option<$crate::Session>> {
                let sql = format!(
                    "SELECT {} FROM sessions WHERE id_hash = $1",
                    $crate::accounts::SESSION_COLS
                );
                let row: Option<$crate::accounts::SessionRow> = sqlx::query_as(&sql)
                    .bind($crate::crypto::token_hash(id))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::rows::db("read a session"))?;
                Ok(row.map(Into::into))
            }

            async fn touch_session(&self, id: &str, at: $crate::Millis) -> $crate::Result<()> {
                sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1")
                    .bind($crate::crypto::token_hash(id))
                    .bind(at)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::rows::db("touch a session"))?;
                Ok(())
            }

            async fn delete_session(&self, id: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                    .bind($crate::crypto::token_hash(id))
                    .execute(&self.writer)
                    .await
                    .map_err($crate::rows::db("end a session"))?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_user_sessions(&self, user_id: &str) -> $crate::Result<u64> {
                let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::rows::db("end a user's sessions"))?;
                Ok(done.rows_affected())
            }

            async fn add_token(
                &self,
                token: &$crate::NewToken,
                secret: &str,
            ) -> $crate::Result<$crate::TokenInfo> {
                let id = hex::encode(rand::random::<[u8; 8]>());
                sqlx::query(
                    "INSERT INTO api_tokens (id, hash, name, user_id, role, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&id)
                .bind($crate::crypto::token_hash(secret))
                .bind(&token.name)
                .bind(token.user_id.as_deref())
                .bind(token.role.name())
                .bind($crate::now_ms())
                .bind(token.expires_at)
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("store API token {}", token.name)))?;
                self.get_token(&id)
                    .await?
                    .ok_or_else(|| $crate::Error::NotFound { what: "token", id })
            }

            async fn check_token(
                &self,
                secret: &str,
            ) -> $crate::Result<Option<$crate::TokenInfo>> {
                let sql = format!(
                    "SELECT {} FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL",
                    $crate::accounts::TOKEN_COLS
                );
                let row: Option<$crate::accounts::TokenRow> = sqlx::query_as(&sql)
                    .bind($crate::crypto::token_hash(secret))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::rows::db("check an API token"))?;
                row.map(TryInto::try_into).transpose()
            }

            async fn touch_token(&self, id: &str, at: $crate::Millis) -> $crate::Result<()> {
                sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::rows::db("touch an API token"))?;
                Ok(())
            }

            async fn list_tokens(
                &self,
                user_id: Option<&str>,
            ) -> $crate::Result<Vec<$crate::TokenInfo>> {
                let sql = format!(
                    "SELECT {} FROM api_tokens WHERE revoked_at IS NULL \
                     AND ($1 IS NULL OR user_id = $1) ORDER BY created_at DESC, id",
                    $crate::accounts::TOKEN_COLS
                );
                let rows: Vec<$crate::accounts::TokenRow> = sqlx::query_as(&sql)
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::db("list API tokens"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn get_token(&self, id: &str) -> $crate::Result<Option<$crate::TokenInfo>> {
                let sql = format!(
                    "SELECT {} FROM api_tokens WHERE id = $1 AND revoked_at IS NULL",
                    $crate::accounts::TOKEN_COLS
                );
                let row: Option<$crate::accounts::TokenRow> = sqlx::query_as(&sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::rows::db("read an API token"))?;
                row.map(TryInto::try_into).transpose()
            }

            async fn revoke_token(&self, id: &str) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind($crate::now_ms())
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("revoke API token {id}")))?;
                Ok(done.rows_affected() > 0)
            }

            async fn put_oidc_pending(
                &self,
                state: &str,
                p: &$crate::OidcPending,
            ) -> $crate::Result<()> {
                sqlx::query("DELETE FROM oidc_states WHERE expires_at < $1")
                    .bind($crate::now_ms())
                    .execute(&self.writer)
                    .await
                    .map_err($crate::rows::db("drop expired sign-ins"))?;
                sqlx::query(
                    "INSERT INTO oidc_states (state_hash, nonce, pkce_verifier, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind($crate::crypto::token_hash(state))
                .bind(&p.nonce)
                .bind(&p.pkce_verifier)
                .bind(p.expires_at)
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db("store a sign-in in flight"))?;
                Ok(())
            }

            async fn take_oidc_pending(
                &self,
                state: &str,
            ) -> $crate::Result<Option<$crate::OidcPending>> {
                let row: Option<(String, String, i64)> = sqlx::query_as(
                    "DELETE FROM oidc_states WHERE state_hash = $1 \
                     RETURNING nonce, pkce_verifier, expires_at",
                )
                .bind($crate::crypto::token_hash(state))
                .fetch_optional(&self.writer)
                .await
                .map_err($crate::rows::db("take a sign-in in flight"))?;
                Ok(row.map(|(nonce, pkce_verifier, expires_at)| $crate::OidcPending {
                    nonce,
                    pkce_verifier,
                    expires_at,
                }))
            }
        }
    };
}

pub(crate) use impl_account_store;

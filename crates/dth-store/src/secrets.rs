//! Secrets sealed with the master key (XChaCha20-Poly1305, the name bound in as associated data); only [`SecretStore::secret`] opens one, for the runtime.
//!
//! The trait, and its SQL written once as a macro expanded for each backend's pool type
//! (`sqlite.rs`, `postgres.rs`); `$N` placeholders bind by number on both.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Millis, Result};

/// Metadata of a stored secret (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Name.
    pub name: String,
    /// Creation.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// A secret's clear value, for the runtime only. `Debug` prints `[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub Vec<u8>);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Encrypted secrets.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Seals and stores a secret (replacing one of the same name).
    async fn put_secret(&self, name: &str, value: &[u8]) -> Result<()>;
    /// Opens a secret; for the runtime only, never for an API response.
    async fn secret(&self, name: &str) -> Result<Option<SecretValue>>;
    /// Names and times of the secrets.
    async fn list_secrets(&self) -> Result<Vec<SecretInfo>>;
    /// Deletes a secret; false when there was none.
    async fn delete_secret(&self, name: &str) -> Result<bool>;
}

/// Implements [`SecretStore`] for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_secret_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::SecretStore for $store {
            async fn put_secret(&self, name: &str, value: &[u8]) -> $crate::Result<()> {
                let sealed = self.key.seal(name, value)?;
                let now = $crate::now_ms();
                sqlx::query(
                    "INSERT INTO secrets (name, sealed, created_at, updated_at) \
                     VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO UPDATE \
                     SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                )
                .bind(name)
                .bind(sealed)
                .bind(now)
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("store secret {name}")))?;
                Ok(())
            }

            async fn secret(&self, name: &str) -> $crate::Result<Option<$crate::SecretValue>> {
                let row: Option<(Vec<u8>,)> =
                    sqlx::query_as("SELECT sealed FROM secrets WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::rows::db(format!("read secret {name}")))?;
                match row {
                    None => Ok(None),
                    Some((sealed,)) => Ok(Some($crate::SecretValue(self.key.open(name, &sealed)?))),
                }
            }

            async fn list_secrets(&self) -> $crate::Result<Vec<$crate::SecretInfo>> {
                let rows: Vec<$crate::rows::SecretRow> = sqlx::query_as(
                    "SELECT name, created_at, updated_at FROM secrets ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await
                .map_err($crate::rows::db("list secrets"))?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn delete_secret(&self, name: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM secrets WHERE name = $1")
                    .bind(name)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::rows::db(format!("delete secret {name}")))?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use impl_secret_store;

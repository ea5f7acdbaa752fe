//! Who may call the hub: API tokens (stored as SHA-256 hashes).
//!
//! The trait, and its SQL written once as a macro expanded for each backend's pool type
//! (`sqlite.rs`, `postgres.rs`); `$N` placeholders bind by number on both.

use crate::Result;
use async_trait::async_trait;

/// Accounts: API tokens.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Stores a token's hash under a name.
    async fn add_token(&self, name: &str, token: &str) -> Result<()>;
    /// The name of the token, if it is known.
    async fn check_token(&self, token: &str) -> Result<Option<String>>;
    /// How many tokens exist.
    async fn count_tokens(&self) -> Result<u64>;
}

/// Implements [`AccountStore`] for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_account_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::AccountStore for $store {
            async fn add_token(&self, name: &str, token: &str) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO api_tokens (hash, name, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (hash) DO UPDATE SET name = excluded.name",
                )
                .bind($crate::crypto::token_hash(token))
                .bind(name)
                .bind($crate::now_ms())
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("store API token {name}")))?;
                Ok(())
            }

            async fn check_token(&self, token: &str) -> $crate::Result<Option<String>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT name FROM api_tokens WHERE hash = $1")
                        .bind($crate::crypto::token_hash(token))
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::rows::db("check an API token"))?;
                Ok(row.map(|(n,)| n))
            }

            async fn count_tokens(&self) -> $crate::Result<u64> {
                let (n,): (i64,) =
                    sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM api_tokens")
                        .fetch_one(&self.pool)
                        .await
                        .map_err($crate::rows::db("count API tokens"))?;
                Ok($crate::rows::to_u64(n))
            }
        }
    };
}

pub(crate) use impl_account_store;

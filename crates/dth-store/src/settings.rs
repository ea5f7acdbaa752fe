//! Hub-wide settings: JSON documents by name (the price table), with who changed them last.
//!
//! The trait, and its SQL written once as a macro expanded for each backend's pool type
//! (`sqlite.rs`, `postgres.rs`); `$N` placeholders bind by number on both.

use async_trait::async_trait;

use crate::{Millis, Result};

/// One stored setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The document.
    pub value: serde_json::Value,
    /// Last change.
    pub updated_at: Millis,
    /// Who made it (an actor's label).
    pub updated_by: String,
}

/// Settings by name.
#[async_trait]
pub trait SettingStore: Send + Sync {
    /// A setting, `None` when it was never stored.
    async fn setting(&self, name: &str) -> Result<Option<Setting>>;
    /// Stores a setting, replacing the one of the same name.
    async fn put_setting(&self, name: &str, value: &serde_json::Value, by: &str) -> Result<()>;
}

/// Implements [`SettingStore`] for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_setting_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::SettingStore for $store {
            async fn setting(&self, name: &str) -> $crate::Result<Option<$crate::Setting>> {
                let row: Option<(String, i64, String)> = sqlx::query_as(
                    "SELECT value, updated_at, updated_by FROM settings WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::rows::db(format!("read setting {name}")))?;
                row.map(|(value, updated_at, updated_by)| {
                    let value = serde_json::from_str(&value).map_err(|e| {
                        $crate::Error::Db(format!("setting {name} is not valid JSON: {e}"))
                    })?;
                    Ok($crate::Setting {
                        value,
                        updated_at,
                        updated_by,
                    })
                })
                .transpose()
            }

            async fn put_setting(
                &self,
                name: &str,
                value: &serde_json::Value,
                by: &str,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO settings (name, value, updated_at, updated_by) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
                     value = excluded.value, updated_at = excluded.updated_at, \
                     updated_by = excluded.updated_by",
                )
                .bind(name)
                .bind($crate::rows::to_json(value))
                .bind($crate::now_ms())
                .bind(by)
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("store setting {name}")))?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_setting_store;

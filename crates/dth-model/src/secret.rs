//! What a hub secret holds: an access key (object tasks) or a registry login (image tasks). Task
//! specs refer to a secret by name (`{"kind": "secret", "name": …}`); the store keeps the value
//! sealed as the JSON of one of these shapes. `Debug` never shows a secret part.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An S3 access key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    /// Access key id (not only spaces).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"\S"))]
    pub access_key_id: String,
    /// Secret access key.
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    #[serde(default)]
    pub session_token: Option<String>,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .finish()
    }
}

/// A registry login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    /// User name (`AWS`, `_json_key`, a robot account…).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"\S"))]
    pub username: String,
    /// Password or access token.
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub password: String,
}

impl fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// The value of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum SecretValue {
    /// For object tasks.
    AccessKey(AccessKey),
    /// For image tasks.
    RegistryLogin(RegistryLogin),
}

impl SecretValue {
    /// Reads and checks a secret from JSON, the shape chosen by its fields (`username` makes it a
    /// registry login). The error names the field at fault and never quotes a value.
    pub fn from_json(value: serde_json::Value) -> Result<Self, String> {
        let bad = |what: &str, e: serde_json::Error| format!("invalid {what}: {e}");
        if value.get("username").is_some() {
            let login: RegistryLogin =
                serde_json::from_value(value).map_err(|e| bad("registry login", e))?;
            if login.username.trim().is_empty() {
                return Err("username: must not be empty".into());
            }
            if login.password.is_empty() {
                return Err("password: must not be empty".into());
            }
            return Ok(SecretValue::RegistryLogin(login));
        }
        let key: AccessKey = serde_json::from_value(value).map_err(|e| bad("access key", e))?;
        if key.access_key_id.trim().is_empty() {
            return Err("access_key_id: must not be empty".into());
        }
        if key.secret_access_key.is_empty() {
            return Err("secret_access_key: must not be empty".into());
        }
        Ok(SecretValue::AccessKey(key))
    }

    /// The stored form (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a secret value serializes")
    }

    /// The stored form read back; `None` when it is neither shape.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// `access key` or `registry login`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            SecretValue::AccessKey(_) => "access key",
            SecretValue::RegistryLogin(_) => "registry login",
        }
    }
}

/// Checks a secret name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name: {name:?} is not a valid secret name; use 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_follows_the_fields_and_debug_hides_secrets() {
        let key = SecretValue::from_json(serde_json::json!({
            "access_key_id": "AKIA", "secret_access_key": "s3cr3t"
        }))
        .unwrap();
        assert_eq!(key.kind(), "access key");
        assert!(!format!("{key:?}").contains("s3cr3t"));
        assert_eq!(SecretValue::from_bytes(&key.to_bytes()), Some(key));
        let login =
            SecretValue::from_json(serde_json::json!({"username": "u", "password": "pw-1"}))
                .unwrap();
        assert_eq!(login.kind(), "registry login");
        assert!(!format!("{login:?}").contains("pw-1"));
        let e = SecretValue::from_json(serde_json::json!({"username": "u", "password": ""}));
        assert_eq!(e.unwrap_err(), "password: must not be empty");
        let e = SecretValue::from_json(serde_json::json!({"access_key_id": "A"})).unwrap_err();
        assert!(e.contains("secret_access_key"), "{e}");
        assert!(check_secret_name("aws-prod.1").is_ok());
        assert!(check_secret_name("a/b").is_err());
    }
}

//! The stored login: `{server, token, …}` in `$XDG_CONFIG_HOME/dth/client.json` (or
//! `~/.config/dth/client.json`), written by `dth login` and removed by `dth logout`. The file is
//! created with mode 0600 (in a directory made 0700) and replaced atomically; the token in it is a
//! [`Secret`], which never shows in `Debug`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};

/// A value that must not be printed: an API token, a session cookie, a password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// What `dth login` stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredLogin {
    /// The hub's URL, normalised ([`normalize_server`]).
    pub server: String,
    /// The API token.
    pub token: Secret,
    /// The token's id, so `dth logout` can revoke it.
    #[serde(default)]
    pub token_id: Option<String>,
    /// The token's name.
    #[serde(default)]
    pub token_name: Option<String>,
    /// The account signed in.
    #[serde(default)]
    pub email: Option<String>,
}

/// Where the login is kept.
pub fn path() -> anyhow::Result<PathBuf> {
    let dir = dirs::config_dir().ok_or_else(|| {
        anyhow!("cannot find a configuration directory: set HOME or XDG_CONFIG_HOME")
    })?;
    Ok(dir.join("dth").join("client.json"))
}

/// The stored login, if there is one.
pub fn load() -> anyhow::Result<Option<StoredLogin>> {
    let path = path()?;
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let login = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a dth login; run dth login again", path.display()))?;
    Ok(Some(login))
}

/// Stores the login (replacing any), readable by the user only; returns the file's path.
pub fn save(login: &StoredLogin) -> anyhow::Result<PathBuf> {
    let path = path()?;
    write_private(&path, &serde_json::to_vec_pretty(login)?)?;
    Ok(path)
}

/// Removes the stored login; false when there was none.
pub fn remove() -> anyhow::Result<bool> {
    let path = path()?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Writes a file created with mode 0600 next to `path`, then renames it over `path`, so the
/// content is never readable by others, not even for a moment, and never half-written.
fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().expect("a config file has a directory");
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".client.json.{}.tmp", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let _ = fs::remove_file(&tmp);
    let result = options
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(content)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Checks a hub URL and gives it one spelling: `http(s)://host[:port][/path]` without a trailing
/// slash.
pub fn normalize_server(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url.trim()).map_err(|e| {
        anyhow!("--server {url:?}: {e}; give the hub's URL, such as http://127.0.0.1:8080")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(anyhow!(
            "--server {url:?}: give the hub's http:// or https:// URL, such as http://127.0.0.1:8080"
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(anyhow!(
            "--server: give the URL without a user or password (sign in with dth login)"
        ));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_checked_and_spelled_one_way() {
        assert_eq!(
            normalize_server("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            normalize_server("https://dth.example.com/hub/").unwrap(),
            "https://dth.example.com/hub"
        );
        assert!(normalize_server("127.0.0.1:8080").is_err());
        assert!(normalize_server("ftp://x").is_err());
        assert!(normalize_server("http://u:p@x").is_err());
    }

    #[test]
    fn the_file_is_private_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/client.json");
        write_private(&path, b"{}").unwrap();
        write_private(&path, b"{\"x\":1}").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{\"x\":1}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
        assert_eq!(format!("{:?}", Secret::new("tok")), "[REDACTED]");
    }
}

//! The master key, sealing of secrets (XChaCha20-Poly1305, the secret's name as associated data) and
//! the hashing of API tokens (SHA-256). Nothing here prints, logs or returns a clear value in an error.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Environment variable holding the master key (64 hex characters or base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "DTH_MASTER_KEY";
/// Name of the key file in the data directory when [`MASTER_KEY_ENV`] is not set.
pub const MASTER_KEY_FILE: &str = "master.key";

/// Format byte in front of every sealed value: `1` = XChaCha20-Poly1305, 24-byte nonce, then ciphertext.
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 24;

/// The 32-byte key that seals secrets at rest. `Debug` prints `MasterKey([REDACTED])`.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl MasterKey {
    /// A new random key (tests, ephemeral stores).
    pub fn generate() -> MasterKey {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        MasterKey(key.into())
    }

    /// A key from its raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(bytes)
    }

    /// Parses 64 hex characters or the base64 (standard or URL-safe, padded or not) of 32 bytes.
    /// The error never quotes the text.
    pub fn parse(text: &str) -> Result<MasterKey> {
        let text = text.trim();
        if text.len() == 64
            && let Ok(bytes) = hex::decode(text)
            && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Ok(MasterKey(key));
        }
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(bytes) = engine.decode(text)
                && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
            {
                return Ok(MasterKey(key));
            }
        }
        Err(Error::Crypto(
            "the master key is neither 64 hex characters nor the base64 of 32 bytes".into(),
        ))
    }

    /// The key from `DTH_MASTER_KEY`, else from `<dir>/master.key`, which is created (mode 0600,
    /// random key, hex) on first use. A key file readable or writable by group or others is refused.
    pub fn from_env_or_file(dir: &Path) -> Result<MasterKey> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            return MasterKey::parse(&text).map_err(|_| {
                Error::Crypto(format!(
                    "{MASTER_KEY_ENV} is set but is neither 64 hex characters nor the base64 of 32 \
                     bytes; fix or unset it"
                ))
            });
        }
        MasterKey::from_file(&dir.join(MASTER_KEY_FILE))
    }

    /// The key in `path`, created (mode 0600, random key) when the file does not exist.
    pub fn from_file(path: &Path) -> Result<MasterKey> {
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(Error::Crypto(format!(
                        "master key file {} is accessible by group or others (mode {mode:04o}); \
                         run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    )));
                }
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Crypto(format!(
                        "cannot read master key file {}: {e}",
                        path.display()
                    ))
                })?;
                MasterKey::parse(&text).map_err(|_| {
                    Error::Crypto(format!(
                        "master key file {} does not hold 64 hex characters or the base64 of 32 \
                         bytes; restore it from a backup (secrets sealed with another key cannot be \
                         opened)",
                        path.display()
                    ))
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => MasterKey::create_file(path),
            Err(e) => Err(Error::Crypto(format!(
                "cannot read master key file {}: {e}",
                path.display()
            ))),
        }
    }

    fn create_file(path: &Path) -> Result<MasterKey> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Crypto(format!(
                    "cannot create directory {} for the master key: {e}",
                    dir.display()
                ))
            })?;
        }
        let key = MasterKey::generate();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        let mut file = match file {
            Ok(f) => f,
            // Another process created it first: use theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return MasterKey::from_file(path),
            Err(e) => {
                return Err(Error::Crypto(format!(
                    "cannot create master key file {}: {e}",
                    path.display()
                )));
            }
        };
        file.write_all(format!("{}\n", hex::encode(key.0)).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| {
                Error::Crypto(format!(
                    "cannot write master key file {}: {e}",
                    path.display()
                ))
            })?;
        Ok(key)
    }

    /// Seals `value` for the secret `name`: format byte, random nonce, ciphertext.
    pub(crate) fn seal(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| Error::Crypto(format!("cannot seal secret {name}")))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`MasterKey::seal`] made for `name`.
    pub(crate) fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != SEALED_V1 {
            return Err(Error::Crypto(format!(
                "cannot open secret {name}: stored value is not in a known format; put it again"
            )));
        }
        let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::Crypto(format!(
                    "cannot open secret {name}: wrong master key? (check {MASTER_KEY_ENV} or the \
                     {MASTER_KEY_FILE} file in the data directory)"
                ))
            })
    }
}

/// SHA-256 of an API token, lowercase hex: what the store keeps instead of the token.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_name_binding() {
        let key = MasterKey::generate();
        let sealed = key.seal("a", b"hunter2").unwrap();
        assert_eq!(key.open("a", &sealed).unwrap(), b"hunter2");
        // Moved to another name: refused.
        assert!(matches!(key.open("b", &sealed), Err(Error::Crypto(_))));
        let other = MasterKey::generate();
        let err = other.open("a", &sealed).unwrap_err().to_string();
        assert!(
            err.contains("cannot open secret a: wrong master key?"),
            "{err}"
        );
        // Two seals of one value differ (random nonce).
        assert_ne!(sealed, key.seal("a", b"hunter2").unwrap());
    }

    #[test]
    fn parse_hex_and_base64() {
        let raw = [7u8; 32];
        let hex_key = MasterKey::parse(&hex::encode(raw)).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(MasterKey::parse(&b64).unwrap(), hex_key);
        assert_eq!(hex_key, MasterKey::from_bytes(raw));
        let err = MasterKey::parse("not a key at all")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("not a key at all"));
        assert_eq!(format!("{hex_key:?}"), "MasterKey([REDACTED])");
    }

    #[test]
    fn key_file_created_0600_and_reused_and_loose_mode_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(MASTER_KEY_FILE);
        let a = MasterKey::from_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = MasterKey::from_file(&path).unwrap();
        assert_eq!(a, b);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

//! Passwords: the policy a new password must meet, argon2id hashes (PHC strings, salted), and
//! temporary passwords for invitations and resets. Nothing here logs or returns a password.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;

/// What a new password must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Fewest characters.
    pub min_length: usize,
    /// Needs an upper-case letter.
    pub upper: bool,
    /// Needs a lower-case letter.
    pub lower: bool,
    /// Needs a digit.
    pub digit: bool,
    /// Needs a symbol (anything that is not a letter or digit).
    pub symbol: bool,
}

impl Default for PasswordPolicy {
    /// At least 8 characters with upper and lower case, a digit and a symbol.
    fn default() -> Self {
        PasswordPolicy {
            min_length: 8,
            upper: true,
            lower: true,
            digit: true,
            symbol: true,
        }
    }
}

impl PasswordPolicy {
    /// A policy from a minimum length and a comma list of `upper`, `lower`, `digit`, `symbol`.
    pub fn parse(min_length: usize, require: &str) -> Result<Self, String> {
        let mut p = PasswordPolicy {
            min_length,
            upper: false,
            lower: false,
            digit: false,
            symbol: false,
        };
        for class in require.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match class {
                "upper" => p.upper = true,
                "lower" => p.lower = true,
                "digit" => p.digit = true,
                "symbol" => p.symbol = true,
                other => {
                    return Err(format!(
                        "unknown character class {other:?}; use upper, lower, digit or symbol"
                    ));
                }
            }
        }
        Ok(p)
    }

    /// Checks a new password; the error says what is missing (never the password).
    pub fn check(&self, password: &str) -> Result<(), String> {
        let mut missing = Vec::new();
        if password.chars().count() < self.min_length {
            missing.push(format!("at least {} characters", self.min_length));
        }
        let has = |f: fn(char) -> bool| password.chars().any(f);
        if self.upper && !has(char::is_uppercase) {
            missing.push("an upper-case letter".into());
        }
        if self.lower && !has(char::is_lowercase) {
            missing.push("a lower-case letter".into());
        }
        if self.digit && !has(|c| c.is_ascii_digit()) {
            missing.push("a digit".into());
        }
        if self.symbol && !has(|c| !c.is_alphanumeric()) {
            missing.push("a symbol".into());
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("the password needs {}", missing.join(", ")))
        }
    }
}

/// The argon2id hash of a password (PHC string with its salt).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches a stored hash (false for a malformed hash).
pub fn verify(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash no password matches, verified against when an email is unknown, so that a sign-in takes
/// as long whether or not the account exists.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&hex::encode(rand::random::<[u8; 16]>())))
}

/// A random temporary password of 4 groups of 5 letters and digits joined by `-` (about 119 bits),
/// with upper, lower and digit in it, so it meets the default policy.
pub fn temporary() -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    loop {
        let groups: Vec<String> = (0..4)
            .map(|_| {
                (0..5)
                    .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
                    .collect()
            })
            .collect();
        let p = groups.join("-");
        if PasswordPolicy::default().check(&p).is_ok() {
            return p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_what_is_missing() {
        let p = PasswordPolicy::default();
        assert!(p.check("Abcdef1!").is_ok());
        assert_eq!(
            p.check("abc").unwrap_err(),
            "the password needs at least 8 characters, an upper-case letter, a digit, a symbol"
        );
        let relaxed = PasswordPolicy::parse(12, "").unwrap();
        assert!(relaxed.check("aaaaaaaaaaaa").is_ok());
        assert!(relaxed.check("aaaa").is_err());
        assert!(PasswordPolicy::parse(8, "upper,emoji").is_err());
    }

    #[test]
    fn hashes_verify_and_temporaries_meet_the_policy() {
        let h = hash("Correct-horse-1");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "Correct-horse-1"));
        assert!(!verify(&h, "correct-horse-1"));
        assert!(!verify("not a hash", "x"));
        assert!(!verify(decoy_hash(), ""));
        let t = temporary();
        assert_eq!(t.len(), 23);
        assert!(PasswordPolicy::default().check(&t).is_ok());
        assert_ne!(t, temporary());
    }
}

//! Who calls the hub and what they may do: [`Role`] (admin ⊃ operator ⊃ viewer) and [`Actor`], the
//! one value every hub call receives. The hub checks the role ([`Actor::require`]) and records the
//! actor in the audit log; no front end checks roles by itself.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role, ordered: each includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads tasks, runs, items and events.
    Viewer,
    /// Also creates, starts, stops and deletes tasks, retries items, manages secrets.
    Operator,
    /// Also manages users, reads the audit log: everything.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// `viewer`, `operator` or `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown role {s:?}; expected viewer, operator or admin"))
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// A session cookie from a password sign-in.
    Password,
    /// A session cookie from an OpenID Connect sign-in (the provider's subject).
    Oidc {
        /// The `sub` claim.
        subject: String,
    },
    /// A user's API token.
    Token {
        /// Token id.
        id: String,
        /// Token name.
        name: String,
    },
    /// The `DTH_API_TOKEN` of the process (automation, admin).
    EnvToken,
    /// The hub itself (scheduler, workers, first start).
    System,
}

/// The caller of a hub call: a person, a token, or the hub itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user's id; `None` for the environment token and the system.
    pub user_id: Option<String>,
    /// The user's email (or `env-token`, `system`).
    pub email: String,
    /// The role in effect (a token's role may be below its user's).
    pub role: Role,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// The client's address, when the call came over the network.
    pub client: Option<String>,
    /// A temporary password must be replaced before anything else is allowed.
    pub must_change_password: bool,
}

/// Why an actor may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The role is too low.
    #[error("this needs the {needed} role; you are {actual}")]
    Role {
        /// What the call needs.
        needed: Role,
        /// What the caller has.
        actual: Role,
    },
    /// The caller signed in with a temporary password and must set a new one first.
    #[error("set a new password first (PUT /api/v1/me/password)")]
    PasswordChange,
}

impl Actor {
    /// The hub acting on its own (scheduler, first start): admin, never audited as a person.
    pub fn system() -> Actor {
        Actor {
            user_id: None,
            email: "system".into(),
            role: Role::Admin,
            method: AuthMethod::System,
            client: None,
            must_change_password: false,
        }
    }

    /// Whether the actor has at least `role` (and no pending password change).
    pub fn require(&self, role: Role) -> Result<(), Denied> {
        if self.must_change_password {
            return Err(Denied::PasswordChange);
        }
        if self.role < role {
            return Err(Denied::Role {
                needed: role,
                actual: self.role,
            });
        }
        Ok(())
    }

    /// How the audit log names the actor: `user:<email>`, `token:<name> of <email>`, `oidc:<email>`,
    /// `env-token`, `system`.
    pub fn label(&self) -> String {
        match &self.method {
            AuthMethod::Password => format!("user:{}", self.email),
            AuthMethod::Oidc { .. } => format!("oidc:{}", self.email),
            AuthMethod::Token { name, .. } => format!("token:{name} of {}", self.email),
            AuthMethod::EnvToken => "env-token".into(),
            AuthMethod::System => "system".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role) -> Actor {
        Actor {
            user_id: Some("u1".into()),
            email: "a@example.com".into(),
            role,
            method: AuthMethod::Password,
            client: None,
            must_change_password: false,
        }
    }

    #[test]
    fn roles_include_the_lower_ones() {
        assert!(actor(Role::Admin).require(Role::Operator).is_ok());
        assert!(actor(Role::Operator).require(Role::Viewer).is_ok());
        assert_eq!(
            actor(Role::Viewer).require(Role::Operator),
            Err(Denied::Role {
                needed: Role::Operator,
                actual: Role::Viewer
            })
        );
        let mut a = actor(Role::Admin);
        a.must_change_password = true;
        assert_eq!(a.require(Role::Viewer), Err(Denied::PasswordChange));
        assert_eq!("Operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }
}

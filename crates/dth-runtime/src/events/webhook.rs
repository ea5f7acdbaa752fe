//! The events webhook of a task whose source says `events: {"kind": "webhook"}`: MinIO, Ceph RGW
//! or any client posts S3 event JSON to `POST /api/v1/tasks/{id}/events`, authenticated by the
//! task's webhook token — as a bearer token, as the password of HTTP basic auth (Ceph's
//! `http://user:TOKEN@host/…` push endpoints), or as the key of an HMAC-SHA256 of the body sent
//! hex in `X-Dth-Signature: sha256=…`. An operator makes (or replaces) the token; it is shown
//! once and kept sealed in the store.

use dth_model::{Actor, EventSource, Role};
use dth_s3::event::parse_notification;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{EventTask, EventsTaken};
use crate::{Error, Hub};

/// How a webhook call proves it may post events.
#[derive(Clone, Default)]
pub struct WebhookAuth {
    /// The token as given (`Authorization: Bearer TOKEN`, or the basic-auth password).
    pub token: Option<String>,
    /// `X-Dth-Signature`: `sha256=HEX` of the HMAC-SHA256 of the body keyed with the token.
    pub signature: Option<String>,
}

impl std::fmt::Debug for WebhookAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookAuth")
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("signature", &self.signature.is_some())
            .finish()
    }
}

/// The store's name of a task's webhook token; the `:` keeps it apart from every name a user may
/// give a secret.
pub(crate) fn token_secret_name(task_id: &str) -> String {
    format!("webhook:{task_id}")
}

/// Whether a secret name is a webhook token (kept out of the secrets list: the task owns it).
pub(crate) fn is_token_secret(name: &str) -> bool {
    name.starts_with("webhook:")
}

impl Hub {
    /// Makes a new webhook token for a task whose events come by webhook (operator), replacing the
    /// old one; returns it, the only time it is shown.
    pub async fn new_webhook_token(&self, actor: &Actor, task_id: &str) -> Result<String, Error> {
        actor.require(Role::Operator)?;
        self.webhook_task(task_id).await?;
        let token = format!("dthw_{}", hex::encode(rand::random::<[u8; 24]>()));
        self.store
            .put_secret(&token_secret_name(task_id), token.as_bytes())
            .await?;
        self.audit(
            actor,
            "task.webhook_token",
            Some(task_id),
            None,
            "webhook token made",
        )
        .await;
        Ok(token)
    }

    /// Takes a webhook call: checks its token or signature, reads the S3 event JSON and queues the
    /// changes. A wrong or missing token is refused the same way for every task, known or not.
    pub async fn take_webhook(
        &self,
        task_id: &str,
        auth: &WebhookAuth,
        body: &[u8],
    ) -> Result<EventsTaken, Error> {
        let refused = || {
            Error::Unauthorized(
                "the webhook needs the task's token: Authorization: Bearer TOKEN, or \
                 X-Dth-Signature: sha256=HMAC-SHA256(TOKEN, body)"
                    .into(),
            )
        };
        let Some(token) = self.store.secret(&token_secret_name(task_id)).await? else {
            return Err(refused());
        };
        let ok = match (&auth.token, &auth.signature) {
            (Some(given), _) => bool::from(given.as_bytes().ct_eq(&token.0)),
            (None, Some(sig)) => signature_matches(&token.0, body, sig),
            (None, None) => false,
        };
        if !ok {
            return Err(refused());
        }
        let task = self.webhook_task(task_id).await?;
        let text = std::str::from_utf8(body)
            .map_err(|_| Error::BadRequest("the body is not UTF-8 JSON".into()))?;
        let events = parse_notification(text)
            .map_err(|why| Error::BadRequest(format!("not an S3 event notification: {why}")))?;
        self.take_events(&task, &events).await
    }

    /// The task, if its events come by webhook.
    async fn webhook_task(&self, task_id: &str) -> Result<EventTask, Error> {
        let task = self.event_task(task_id).await?;
        if task.events() != Some(&EventSource::Webhook) {
            return Err(Error::Conflict(format!(
                "task {task_id} does not take events by webhook; its source.events must be \
                 {{\"kind\": \"webhook\"}}"
            )));
        }
        Ok(task)
    }
}

/// Whether `sig` (`sha256=HEX`) is the HMAC-SHA256 of `body` keyed with `token`.
fn signature_matches(token: &[u8], body: &[u8], sig: &str) -> bool {
    let Some(given) = sig
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(token) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"tok").unwrap();
        mac.update(b"{}");
        let hexsig = hex::encode(mac.finalize().into_bytes());
        assert!(signature_matches(
            b"tok",
            b"{}",
            &format!("sha256={hexsig}")
        ));
        assert!(!signature_matches(
            b"tok",
            b"{ }",
            &format!("sha256={hexsig}")
        ));
        assert!(!signature_matches(
            b"other",
            b"{}",
            &format!("sha256={hexsig}")
        ));
        assert!(!signature_matches(b"tok", b"{}", &hexsig));
        assert!(!signature_matches(b"tok", b"{}", "sha256=zz"));
        let auth = WebhookAuth {
            token: Some("dthw_secret".into()),
            signature: None,
        };
        assert!(!format!("{auth:?}").contains("dthw_secret"));
    }
}

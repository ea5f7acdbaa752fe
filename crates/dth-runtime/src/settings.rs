//! Hub-wide settings an admin changes at run time: the price table cost estimates use
//! ([`Hub::prices`], [`Hub::put_prices`]), and a test mail through the configured SMTP server
//! ([`Hub::test_mail`]).

use dth_model::{Actor, PriceTable, Role};

use crate::Error;
use crate::hub::Hub;

/// The setting holding the price table.
const PRICES: &str = "prices";

impl Hub {
    /// The price table cost estimates use (viewer): the stored one, or the defaults.
    pub async fn prices(&self, actor: &Actor) -> Result<PriceTable, Error> {
        actor.require(Role::Viewer)?;
        self.price_table().await
    }

    /// Replaces the price table (admin; audited). The JSON is read after the role check.
    pub async fn put_prices(
        &self,
        actor: &Actor,
        table: &serde_json::Value,
    ) -> Result<PriceTable, Error> {
        actor.require(Role::Admin)?;
        let table: PriceTable = serde_path_to_error::deserialize(table)
            .map_err(|e| Error::BadRequest(format!("price table: {}: {}", e.path(), e.inner())))?;
        table.validate().map_err(Error::BadRequest)?;
        let value = serde_json::to_value(&table)
            .map_err(|e| Error::BadRequest(format!("price table: {e}")))?;
        self.store
            .put_setting(PRICES, &value, &actor.label())
            .await?;
        self.audit(
            actor,
            "settings.prices",
            None,
            Some(PRICES),
            &format!("price table replaced ({} entries)", table.prices.len()),
        )
        .await;
        Ok(table)
    }

    pub(crate) async fn price_table(&self) -> Result<PriceTable, Error> {
        match self.store.setting(PRICES).await? {
            Some(s) => serde_json::from_value(s.value)
                .map_err(|e| Error::Conflict(format!("the stored price table is unreadable: {e}"))),
            None => Ok(PriceTable::defaults()),
        }
    }

    /// Sends a test mail through the configured SMTP server (admin; audited) to the address of a
    /// `{"to": …}` body (read after the role check): `Ok` with where it went and how — a mail
    /// server that refuses is an answer, not an error of this call.
    pub async fn test_mail(
        &self,
        actor: &Actor,
        body: &serde_json::Value,
    ) -> Result<(String, Result<(), String>), Error> {
        actor.require(Role::Admin)?;
        let to = match body.as_object().map(|o| (o.len(), o.get("to"))) {
            Some((1, Some(serde_json::Value::String(to)))) => to.clone(),
            _ => {
                return Err(Error::BadRequest(
                    "the body must be {\"to\": \"address\"}".into(),
                ));
            }
        };
        let to = to.as_str();
        let address = to
            .split_once('@')
            .is_some_and(|(a, d)| !a.is_empty() && !d.is_empty() && !d.contains('@'));
        if !address
            || to.chars().count() > 254
            || to.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::BadRequest(format!(
                "to: {to:?} is not an email address"
            )));
        }
        let body = format!(
            "This is a test mail from the Data Transfer Hub at {}, sent by {}.\n\nAlarms of \
             tasks that name this address will arrive like this one.\n",
            self.config.worker_id,
            actor.label()
        );
        let sent = self.alarms.mail(to, "[dth] test mail", body).await;
        let how = match &sent {
            Ok(()) => format!("test mail sent to {to}"),
            Err(e) => format!("test mail to {to} failed: {e}"),
        };
        self.audit(actor, "settings.smtp_test", None, Some(to), &how)
            .await;
        Ok((to.to_string(), sent))
    }
}

//! An SQS queue of S3 event notifications: long-polled receive, and delete once the events a
//! message carries are stored. Messages are never deleted before that, so a crash redelivers them.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use aws_smithy_types::error::display::DisplayErrorContext;
use dth_model::{Credentials, EventSource};

use crate::endpoint::with_credentials;

/// One message received.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    /// The message id (for logs).
    pub id: String,
    /// What deletes it.
    pub receipt: String,
    /// The body: a notification, or anything else someone sent.
    pub body: String,
}

/// A client of one queue.
#[derive(Debug, Clone)]
pub struct EventQueue {
    client: Client,
    url: String,
}

impl EventQueue {
    /// A client of the queue `events` names, with `credentials` (resolved: no hub secret names).
    pub async fn connect(events: &EventSource, credentials: &Credentials) -> Result<Self, String> {
        let (Some(region), Some(endpoint), EventSource::Sqs { queue_url, .. }) =
            (events.sqs_region(), events.sqs_endpoint(), events)
        else {
            return Err("the task's events do not come from an SQS queue".into());
        };
        let loader =
            aws_config::defaults(BehaviorVersion::latest()).region(aws_config::Region::new(region));
        let shared = with_credentials(loader, credentials)
            .map_err(|e| format!("SQS credentials: {e}"))?
            .load()
            .await;
        let conf = aws_sdk_sqs::config::Builder::from(&shared)
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    // Above the 20 s long poll.
                    .read_timeout(Duration::from_secs(40))
                    .build(),
            )
            .build();
        Ok(EventQueue {
            client: Client::from_conf(conf),
            url: queue_url.clone(),
        })
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits up to `wait` (at most 20 s) for up to 10 messages; each stays invisible to other
    /// receivers for `visibility` while its events are stored.
    pub async fn receive(
        &self,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, String> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(visibility.as_secs().clamp(1, 43_200) as i32)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "SQS ReceiveMessage on {}: {}",
                    self.url,
                    DisplayErrorContext(e)
                )
            })?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some(QueueMessage {
                    id: m.message_id.unwrap_or_default(),
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Deletes messages (at most 10) by their receipts; an error names those that failed.
    pub async fn delete(&self, messages: &[&QueueMessage]) -> Result<(), String> {
        if messages.is_empty() {
            return Ok(());
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&m.receipt)
                    .build()
                    .map_err(|e| format!("SQS DeleteMessageBatch: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "SQS DeleteMessageBatch on {}: {}",
                    self.url,
                    DisplayErrorContext(e)
                )
            })?;
        if out.failed.is_empty() {
            return Ok(());
        }
        let failed: Vec<String> = out
            .failed
            .iter()
            .map(|f| format!("{}: {}", f.id, f.message.clone().unwrap_or_default()))
            .collect();
        Err(format!(
            "SQS DeleteMessageBatch on {}: {} not deleted ({})",
            self.url,
            failed.len(),
            failed.join("; ")
        ))
    }
}

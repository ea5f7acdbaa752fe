//! The queue depth as CloudWatch metrics, without an extra service: `dth serve --emf-namespace NAME`
//! prints one line of CloudWatch Embedded Metric Format (EMF) JSON to stdout every
//! [`EMF_EVERY`]. On ECS the `awslogs` log driver ships stdout to CloudWatch Logs, which turns each
//! such line into data points of `ReadyItems`, `DelayedItems` and `LeasedItems` (unit `Count`,
//! dimension `Store`) in that namespace, for alarms and auto scaling (`deploy/aws/dth.yaml`).
//!
//! The numbers are those of the `dth_queue_items` gauge ([`Hub::queue_depth`]): one
//! `item_counts` store call per line. A line is skipped, with a warning, when the store does not
//! answer. The line holds counts only: no task name, key or credential.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::metrics::QueueDepth;

/// How often a line is printed.
pub const EMF_EVERY: Duration = Duration::from_secs(60);
/// The metric names of the line, in the order of the directive: the `ready`, `delayed` and
/// `leased` states of the `dth_queue_items` gauge.
pub const EMF_METRICS: [&str; 3] = ["ReadyItems", "DelayedItems", "LeasedItems"];
/// The one dimension of every metric: the store's backend (`sqlite` or `postgres`).
pub const EMF_DIMENSION: &str = "Store";

/// Checks a CloudWatch namespace: 1 to 255 characters of letters, digits and `. - _ / # :`,
/// not starting with `AWS/` (reserved for AWS services).
pub fn check_namespace(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "a CloudWatch namespace has 1 to 255 characters, not {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".-_/#:".contains(*c)))
    {
        return Err(format!(
            "{name:?} holds {c:?}; a CloudWatch namespace has letters, digits and . - _ / # : only"
        ));
    }
    if name.starts_with("AWS/") {
        return Err(format!(
            "{name:?} starts with AWS/, which is reserved for AWS services"
        ));
    }
    Ok(())
}

/// One EMF line (no line feed) for `depth` read at `timestamp_ms` (Unix milliseconds) from a store
/// of backend `store`.
pub fn emf_line(namespace: &str, store: &str, depth: &QueueDepth, timestamp_ms: i64) -> String {
    let metrics: Vec<_> = EMF_METRICS
        .iter()
        .map(|name| json!({"Name": name, "Unit": "Count"}))
        .collect();
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[EMF_DIMENSION]],
                "Metrics": metrics,
            }],
        },
        EMF_DIMENSION: store,
        EMF_METRICS[0]: depth.ready,
        EMF_METRICS[1]: depth.delayed,
        EMF_METRICS[2]: depth.leased,
    })
    .to_string()
}

impl Hub {
    /// Prints an EMF line of the queue depth to stdout at once and then every [`EMF_EVERY`], until
    /// `shutdown` is cancelled. `namespace` must pass [`check_namespace`].
    pub async fn run_emf_reporter(self: Arc<Self>, namespace: String, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(EMF_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.queue_depth().await {
                Ok(depth) => {
                    let line = emf_line(
                        &namespace,
                        self.store.backend(),
                        &depth,
                        dth_store::now_ms(),
                    );
                    let mut out = std::io::stdout().lock();
                    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                        tracing::warn!("emf: cannot write to stdout: {e}");
                    }
                }
                Err(e) => tracing::warn!("emf: reading the queue depth: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_the_emf_shape_and_the_values() {
        let depth = QueueDepth {
            ready: 120,
            delayed: 3,
            leased: 64,
        };
        let line = emf_line("DataTransferHub", "postgres", &depth, 1_767_225_600_000);
        assert!(!line.contains('\n'), "{line}");
        let got: serde_json::Value = serde_json::from_str(&line).unwrap();
        let want = json!({
            "_aws": {
                "Timestamp": 1_767_225_600_000_i64,
                "CloudWatchMetrics": [{
                    "Namespace": "DataTransferHub",
                    "Dimensions": [["Store"]],
                    "Metrics": [
                        {"Name": "ReadyItems", "Unit": "Count"},
                        {"Name": "DelayedItems", "Unit": "Count"},
                        {"Name": "LeasedItems", "Unit": "Count"},
                    ],
                }],
            },
            "Store": "postgres",
            "ReadyItems": 120,
            "DelayedItems": 3,
            "LeasedItems": 64,
        });
        assert_eq!(got, want);
    }

    #[test]
    fn namespaces_are_checked() {
        assert!(check_namespace("DataTransferHub").is_ok());
        assert!(check_namespace("dth/prod-eu_1#a:b.c").is_ok());
        assert!(check_namespace("").unwrap_err().contains("1 to 255"));
        assert!(check_namespace(&"a".repeat(256)).is_err());
        assert!(check_namespace("dth hub").unwrap_err().contains("' '"));
        assert!(check_namespace("AWS/ECS").unwrap_err().contains("reserved"));
    }
}

//! The live progress bar on a terminal: objects, bytes, rate, ETA and errors, read from the engine's
//! counters a few times a second.

use std::sync::Arc;
use std::time::Duration;

use dth_s3::Stats;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

/// Draws progress until `done` is cancelled. Does nothing when stderr is not a terminal.
pub async fn show(stats: Arc<Stats>, done: CancellationToken) {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if bar.is_hidden() {
        done.cancelled().await;
        return;
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("valid template"),
    );
    loop {
        let s = stats.snapshot();
        bar.set_length(s.planned_bytes);
        bar.set_position(s.transferred_bytes.min(s.planned_bytes));
        bar.set_message(format!(
            "objects {}/{} skipped {} deleted {} errors {}",
            s.copied, s.planned, s.skipped, s.deleted, s.failed
        ));
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    bar.finish_and_clear();
}

//! `--bwlimit`: one token bucket of bytes per second shared by every transfer of a sync. Readers take
//! tokens for each chunk they receive and sleep when the bucket is empty; the bucket holds at most one
//! second of tokens, so bursts stay short.

use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::Mutex;

/// A shared byte-rate limiter.
#[derive(Debug)]
pub struct BandwidthLimit {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl BandwidthLimit {
    /// A limiter of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        BandwidthLimit {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    /// Waits until `n` bytes may pass.
    pub async fn take(&self, n: usize) {
        let wait = {
            let mut s = self.state.lock().await;
            let now = Instant::now();
            let (tokens, last) = &mut *s;
            *tokens =
                (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate);
            *last = now;
            *tokens -= n as f64;
            if *tokens < 0.0 {
                Duration::from_secs_f64(-*tokens / self.rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate() {
        let l = BandwidthLimit::new(1000);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            l.take(1000).await;
        }
        // One second of burst, then four seconds of waiting.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(3900), "{waited:?}");
    }
}

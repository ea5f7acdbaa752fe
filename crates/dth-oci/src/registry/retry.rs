//! Request retries (the first of the two retry layers; item retries live in the store): bounded
//! by count and by total time, with decorrelated jitter, and per-(registry, action) rate windows
//! that halve on 429 and grow back slowly.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Notify;

/// How many times and for how long a request is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// First wait.
    pub base: Duration,
    /// Longest single wait (a `Retry-After` longer than this is cut to it).
    pub max_wait: Duration,
    /// No retry starts after this much time since the first attempt.
    pub total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            base: Duration::from_millis(100),
            max_wait: Duration::from_secs(20),
            total: Duration::from_secs(120),
        }
    }
}

/// Decorrelated jitter: each wait is random between `base` and three times the last wait, capped.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    last: Duration,
    started: Instant,
    attempts: u32,
}

impl Backoff {
    /// Starts counting now.
    pub fn new(policy: RetryPolicy) -> Backoff {
        Backoff {
            policy,
            last: policy.base,
            started: Instant::now(),
            attempts: 0,
        }
    }

    /// The wait before the next attempt, or `None` when the count or the time is used up.
    /// `at_least` (a `Retry-After`) raises the wait, up to the policy's longest wait.
    pub fn next(&mut self, at_least: Option<Duration>) -> Option<Duration> {
        self.next_with(&mut rand::thread_rng(), at_least)
    }

    fn next_with(&mut self, rng: &mut impl Rng, at_least: Option<Duration>) -> Option<Duration> {
        if self.attempts >= self.policy.retries {
            return None;
        }
        let hi = (self.last * 3).max(self.policy.base + Duration::from_millis(1));
        let wait = rng
            .gen_range(self.policy.base..hi)
            .min(self.policy.max_wait);
        let wait = at_least.map_or(wait, |a| a.min(self.policy.max_wait).max(wait));
        if self.started.elapsed() + wait > self.policy.total {
            return None;
        }
        self.attempts += 1;
        self.last = wait;
        Some(wait)
    }

    /// Retries used so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// Parses `Retry-After` (seconds, or an HTTP date is treated as 1 s since clocks may disagree).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    Some(match v.parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => match v.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s),
            _ => Duration::from_secs(1),
        },
    })
}

/// An adaptive concurrency window for one (registry, action): requests wait for a slot; a 429
/// halves the window (once per second) and pauses new requests until its `Retry-After` has passed;
/// each success grows the window by `1/window` up to its ceiling.
#[derive(Debug)]
pub struct RateWindow {
    state: Mutex<WindowState>,
    notify: Notify,
}

#[derive(Debug)]
struct WindowState {
    limit: f64,
    max: f64,
    in_flight: usize,
    paused_until: Option<Instant>,
    last_cut: Option<Instant>,
    throttled: u64,
}

/// A slot in a [`RateWindow`]; dropping it frees the slot.
pub struct Slot<'a> {
    window: &'a RateWindow,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut s = self.window.state.lock().unwrap_or_else(|e| e.into_inner());
        s.in_flight = s.in_flight.saturating_sub(1);
        drop(s);
        self.window.notify.notify_waiters();
    }
}

impl RateWindow {
    /// A window of `max` requests in flight.
    pub fn new(max: usize) -> RateWindow {
        let max = max.max(1) as f64;
        RateWindow {
            state: Mutex::new(WindowState {
                limit: max,
                max,
                in_flight: 0,
                paused_until: None,
                last_cut: None,
                throttled: 0,
            }),
            notify: Notify::new(),
        }
    }

    /// Waits for a slot.
    pub async fn acquire(&self) -> Slot<'_> {
        loop {
            let notified = self.notify.notified();
            let wait = {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                match s.paused_until {
                    Some(t) if t > now => Some(t - now),
                    _ => {
                        if (s.in_flight as f64) < s.limit.floor().max(1.0) {
                            s.in_flight += 1;
                            return Slot { window: self };
                        }
                        None
                    }
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                // Bounded wait: a missed notification costs at most 50 ms.
                None => {
                    let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
                }
            }
        }
    }

    /// Records a 429: halve the window (at most once a second) and pause for `retry_after`.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.throttled += 1;
        if s.last_cut
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            s.limit = (s.limit / 2.0).max(1.0);
            s.last_cut = Some(now);
        }
        let until = now + retry_after.unwrap_or(Duration::from_millis(500));
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Records a success: grow the window by `1/window`.
    pub fn succeeded(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.limit < s.max {
            s.limit = (s.limit + 1.0 / s.limit).min(s.max);
        }
    }

    /// The current window (requests in flight allowed).
    pub fn limit(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .limit
            .floor() as usize
    }

    /// 429 answers seen.
    pub fn throttled_count(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .throttled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let policy = RetryPolicy {
            retries: 6,
            base: Duration::from_millis(100),
            max_wait: Duration::from_secs(2),
            total: Duration::from_secs(60),
        };
        let mut b = Backoff::new(policy);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let waits: Vec<_> = std::iter::from_fn(|| b.next_with(&mut rng, None)).collect();
        assert_eq!(waits.len(), 6);
        assert!(
            waits
                .iter()
                .all(|w| *w >= policy.base && *w <= policy.max_wait),
            "{waits:?}"
        );
        assert!(waits.windows(2).any(|w| w[0] != w[1]));
        // Retry-After raises the wait but never above max_wait.
        let mut b = Backoff::new(policy);
        assert_eq!(
            b.next_with(&mut rng, Some(Duration::from_secs(30))),
            Some(Duration::from_secs(2))
        );
        let w = b.next_with(&mut rng, Some(Duration::from_secs(1))).unwrap();
        assert!(w >= Duration::from_secs(1));
    }

    #[test]
    fn backoff_stops_at_total_time() {
        let mut b = Backoff::new(RetryPolicy {
            retries: 100,
            base: Duration::from_millis(10),
            max_wait: Duration::from_secs(5),
            total: Duration::from_millis(1),
        });
        assert_eq!(b.next(Some(Duration::from_secs(1))), None);
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(parse_retry_after(""), None);
    }

    #[tokio::test]
    async fn window_halves_on_429_and_grows_back() {
        let w = RateWindow::new(8);
        w.throttled(Some(Duration::from_millis(0)));
        assert_eq!(w.limit(), 4);
        w.throttled(None); // same second: no second cut
        assert_eq!(w.limit(), 4);
        for _ in 0..40 {
            w.succeeded();
        }
        assert_eq!(w.limit(), 8);
        assert_eq!(w.throttled_count(), 2);
    }

    #[tokio::test]
    async fn window_caps_in_flight() {
        let w = RateWindow::new(2);
        let a = w.acquire().await;
        let _b = w.acquire().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(80), w.acquire())
                .await
                .is_err()
        );
        drop(a);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), w.acquire())
                .await
                .is_ok()
        );
    }
}

//! Adaptive concurrency: how many objects a sync copies at once, found while it runs. Far endpoints
//! (tens to hundreds of milliseconds per request) need many more objects in flight than near ones to
//! fill the line, and no fixed number suits both, so the limit starts at `transfers` and grows while
//! throughput grows with it, up to `transfers_max`:
//!
//! - every window (three times an object's mean time in flight, within 0.2–2 s, so a step shows in
//!   the next window whatever the distance; and at least a few objects done) the work done (bytes,
//!   plus a fixed cost per object so small objects count) is compared with the window before;
//! - the first window, and every window after a step that gained at least 10 %, double the limit;
//! - a step that did not gain 10 % is taken back (fewer connections for the same speed), and growth
//!   rests for a few windows before it probes one step up again;
//! - only windows that ran saturated (every permit taken at some point) count: when the listing is
//!   slower than the copies, more transfers would not show.
//!
//! The memory budget still bounds bodies in flight: more transfers wait for memory, never exceed it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shortest and longest measurement window.
const WINDOW_MIN: Duration = Duration::from_millis(200);
const WINDOW_MAX: Duration = Duration::from_secs(2);
/// Objects a window needs to be measured.
const MIN_OBJECTS: u64 = 8;
/// Work counted per object besides its bytes (requests cost about this much time on a fast line).
const OBJECT_COST: u64 = 64 * 1024;
/// Windows growth rests after a step was taken back.
const REST: u32 = 8;

/// The limit on objects in flight, grown and shrunk by measured throughput.
#[derive(Debug)]
pub struct Adaptive {
    permits: Arc<Semaphore>,
    state: Mutex<State>,
    floor: usize,
    cap: usize,
}

#[derive(Debug)]
struct State {
    limit: usize,
    /// Permits to retire as they come back (after a shrink).
    debt: usize,
    started: Instant,
    work: u64,
    objects: u64,
    saturated: bool,
    /// Mean time an object holds its turn (moving average).
    lifetime: Duration,
    /// Throughput of the last measured window, and the limit then.
    last: Option<(f64, usize)>,
    /// The limit before the last step, to go back to.
    before_step: Option<usize>,
    rest: u32,
}

/// One object's turn; returns its permit when dropped.
#[derive(Debug)]
pub struct Turn {
    permit: Option<OwnedSemaphorePermit>,
    owner: Arc<Adaptive>,
    since: Instant,
}

impl Turn {
    /// Ends the turn of an object done (copied, deleted or skipped) with its bytes.
    pub fn finish(self, bytes: u64) {
        self.owner.done(bytes, self.since.elapsed());
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut s = self.owner.lock();
        if s.debt > 0
            && let Some(p) = self.permit.take()
        {
            s.debt -= 1;
            p.forget();
        }
    }
}

impl Adaptive {
    /// A limit starting at `floor` that may grow to `cap` (fixed at `floor` when `cap <= floor`).
    pub fn new(floor: usize, cap: usize) -> Arc<Adaptive> {
        let floor = floor.max(1);
        Arc::new(Adaptive {
            permits: Arc::new(Semaphore::new(floor)),
            state: Mutex::new(State {
                limit: floor,
                debt: 0,
                started: Instant::now(),
                work: 0,
                objects: 0,
                saturated: false,
                lifetime: Duration::ZERO,
                last: None,
                before_step: None,
                rest: 0,
            }),
            floor,
            cap: cap.max(floor),
        })
    }

    /// The most objects that can ever be in flight at once.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Waits for a turn.
    pub async fn turn(self: &Arc<Self>) -> Turn {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.lock().saturated = true;
                Arc::clone(&self.permits)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        Turn {
            permit: Some(permit),
            owner: Arc::clone(self),
            since: Instant::now(),
        }
    }

    /// Counts an object done with its bytes and time in flight, and steps the limit when a window
    /// is over.
    fn done(&self, bytes: u64, took: Duration) {
        if self.cap == self.floor {
            return;
        }
        let mut s = self.lock();
        s.work += bytes + OBJECT_COST;
        s.objects += 1;
        s.lifetime = (s.lifetime * 7 + took) / 8;
        let window = (s.lifetime * 3).clamp(WINDOW_MIN, WINDOW_MAX);
        let elapsed = s.started.elapsed();
        if elapsed < window || s.objects < MIN_OBJECTS {
            return;
        }
        let rate = s.work as f64 / elapsed.as_secs_f64();
        let saturated = s.saturated;
        s.started = Instant::now();
        s.work = 0;
        s.objects = 0;
        s.saturated = false;
        if !saturated {
            return;
        }
        let next = match s.last {
            None => grow(s.limit, self.cap),
            // The last window made a step: keep growing while it pays, else take it back and rest.
            Some((prev, at)) if at != s.limit => {
                if rate >= prev * 1.1 {
                    grow(s.limit, self.cap)
                } else {
                    s.rest = REST;
                    s.before_step.take().unwrap_or(self.floor)
                }
            }
            _ if s.rest > 0 => {
                s.rest -= 1;
                s.limit
            }
            // Rested: probe one step up.
            _ => grow(s.limit, self.cap),
        };
        s.last = Some((rate, s.limit));
        if next != s.limit {
            s.before_step = Some(s.limit);
            self.set_limit(&mut s, next);
        }
    }

    fn set_limit(&self, s: &mut State, next: usize) {
        if next > s.limit {
            let mut add = next - s.limit;
            let paid = add.min(s.debt);
            s.debt -= paid;
            add -= paid;
            self.permits.add_permits(add);
        } else {
            let mut cut = s.limit - next;
            // Retire free permits now, the rest as turns end.
            while cut > 0 {
                match self.permits.try_acquire() {
                    Ok(p) => {
                        p.forget();
                        cut -= 1;
                    }
                    Err(_) => break,
                }
            }
            s.debt += cut;
        }
        tracing::debug!(from = s.limit, to = next, "transfers in flight");
        s.limit = next;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Twice as many, at most `cap`.
fn grow(limit: usize, cap: usize) -> usize {
    (limit * 2).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs windows where throughput follows `rate(limit)`, all saturated; returns the limits seen.
    fn drive(a: &Arc<Adaptive>, windows: usize, rate: impl Fn(usize) -> u64) -> Vec<usize> {
        let mut seen = Vec::new();
        for _ in 0..windows {
            {
                let mut s = a.lock();
                s.started = Instant::now() - WINDOW_MAX;
                s.saturated = true;
                s.objects = MIN_OBJECTS;
                s.work = rate(s.limit);
            }
            a.done(0, Duration::from_millis(100));
            seen.push(a.limit());
        }
        seen
    }

    #[test]
    fn grows_while_throughput_follows_and_stops_at_the_cap() {
        let a = Adaptive::new(64, 512);
        // Latency-bound: throughput proportional to objects in flight.
        let seen = drive(&a, 12, |limit| limit as u64 * 1000);
        assert_eq!(&seen[..4], &[128, 256, 512, 512], "{seen:?}");
        assert_eq!(a.permits.available_permits(), 512);
    }

    #[test]
    fn holds_where_more_transfers_stop_paying() {
        let a = Adaptive::new(64, 1024);
        // CPU-bound beyond 150 in flight: flat.
        let seen = drive(&a, 20, |limit| limit.min(150) as u64 * 1000);
        assert_eq!(&seen[..4], &[128, 256, 512, 256], "{seen:?}");
        assert!(
            seen[3..].iter().all(|l| (256..=512).contains(l)),
            "{seen:?}"
        );
    }

    #[test]
    fn takes_back_a_step_that_lost() {
        let a = Adaptive::new(64, 1024);
        // More than 64 in flight gains nothing (a server that is the limit).
        let seen = drive(&a, 10, |limit| if limit > 64 { 60_000 } else { 64_000 });
        assert_eq!(&seen[..2], &[128, 64], "{seen:?}");
        assert!(seen.iter().all(|&l| l <= 128), "{seen:?}");
        assert_eq!(*seen.last().unwrap(), 64, "{seen:?}");
    }

    #[test]
    fn shrinking_retires_permits_as_turns_end() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = Adaptive::new(4, 16);
            let turns: Vec<Turn> = futures::future::join_all((0..4).map(|_| a.turn())).await;
            {
                let mut s = a.lock();
                a.set_limit(&mut s, 2);
            }
            drop(turns);
            assert_eq!(a.permits.available_permits(), 2);
            assert_eq!(a.lock().debt, 0);
        });
    }

    #[test]
    fn fixed_when_the_cap_is_the_floor() {
        let a = Adaptive::new(32, 8);
        assert_eq!(a.cap(), 32);
        assert_eq!(drive(&a, 5, |l| l as u64 * 1000), vec![32; 5]);
    }
}

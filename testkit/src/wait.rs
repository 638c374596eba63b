//! Waiting for a condition, bounded: `wait_until` polls instead of sleeping a fixed time.

use std::thread;
use std::time::{Duration, Instant};

/// Polls `f` every 10 ms until it returns true or `timeout` passes; returns the last result.
/// `f` is always called at least once, and once more at (or just after) the deadline.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

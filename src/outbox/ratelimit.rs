//! A pacing rate limiter: permits are spaced evenly at the configured rate (no bursts), which
//! is what Meta's per-number throughput limit rewards.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct RateLimiter {
    /// Time between two permits.
    interval: Duration,
    /// When the next permit may be used.
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn per_second(rate: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the next permit.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn permits_are_spaced_at_the_configured_rate() {
        let limiter = RateLimiter::per_second(80);
        let start = Instant::now();
        for _ in 0..81 {
            limiter.acquire().await;
        }
        // 81 permits at 80/s: the first is immediate, the 81st one second later.
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }
}

//! Per-IP login throttle: a token bucket per client address, in memory.
//!
//! In memory and per instance on purpose: it needs no round trip and a restart only forgives a
//! few attempts. With N instances behind a balancer an address gets N times the budget; the
//! account lockout (in PostgreSQL) still bounds guessing per account.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Addresses remembered at most; past this, buckets that have refilled are forgotten.
const MAX_TRACKED: usize = 10_000;

pub struct Throttle {
    /// Attempts allowed in a burst (bucket size).
    burst: f64,
    /// Refill rate, attempts per second.
    per_sec: f64,
    /// Tokens left and when they were counted, per address.
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Throttle {
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_sec: f64::from(per_minute) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt from `ip`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            let (burst, per_sec) = (self.burst, self.per_sec);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_allowed_then_attempts_refill_at_the_rate() {
        let t = Throttle::new(3, 6);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(t.check_at(ip, start).is_ok());
        }
        assert_eq!(t.check_at(ip, start), Err(10));
        assert!(
            t.check_at(other, start).is_ok(),
            "other addresses are not affected"
        );
        assert!(t.check_at(ip, start + Duration::from_secs(10)).is_ok());
        assert!(t.check_at(ip, start + Duration::from_secs(11)).is_err());
    }
}

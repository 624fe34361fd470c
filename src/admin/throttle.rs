//! Per-IP login throttle: a token bucket per client address (an IPv6 client by its /64, which one
//! subscriber usually holds whole), in memory, for at most [`MAX_TRACKED`] addresses.
//!
//! In memory and per instance on purpose: it needs no round trip and a restart only forgives a
//! few attempts. With N instances behind a balancer an address gets N times the budget; the
//! account lockout (in PostgreSQL) still bounds guessing per account.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Addresses remembered at most; past this, buckets that have refilled are forgotten (looked
/// for at most once a second), and if none has, an arbitrary one.
const MAX_TRACKED: usize = 10_000;

pub struct Throttle {
    /// Attempts allowed in a burst (bucket size).
    burst: f64,
    /// Refill rate, attempts per second.
    per_sec: f64,
    /// Tokens left and when they were counted, per address; when the last sweep ran.
    buckets: Mutex<(Buckets, Option<Instant>)>,
}

/// Tokens left and when they were counted, per address key.
type Buckets = HashMap<IpAddr, (f64, Instant)>;

/// The key of `ip`'s bucket: an IPv4 address (also written as IPv6), or an IPv6 /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

impl Throttle {
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_sec: f64::from(per_minute) / 60.0,
            buckets: Mutex::new((HashMap::new(), None)),
        }
    }

    /// Takes one attempt from `ip`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let ip = key(ip);
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (buckets, swept) = &mut *guard;
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&ip) {
            let due = swept.is_none_or(|at| now.duration_since(at).as_secs() >= 1);
            if due {
                *swept = Some(now);
                let (burst, per_sec) = (self.burst, self.per_sec);
                buckets.retain(|_, (tokens, at)| {
                    *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
                });
            }
            if buckets.len() >= MAX_TRACKED {
                if let Some(any) = buckets.keys().next().copied() {
                    buckets.remove(&any);
                }
            }
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
    fn an_ipv6_client_is_one_bucket_for_its_whole_64() {
        let t = Throttle::new(2, 1);
        let start = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(t.check_at(a, start).is_ok());
        assert!(t.check_at(b, start).is_ok());
        assert!(t.check_at(a, start).is_err(), "the /64 shares one bucket");
        assert!(t.check_at(elsewhere, start).is_ok());
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_map_never_holds_more_than_its_cap() {
        let t = Throttle::new(1, 1);
        let start = Instant::now();
        for n in 0..(MAX_TRACKED as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            let _ = t.check_at(ip, start);
        }
        assert!(t.buckets.lock().unwrap().0.len() <= MAX_TRACKED);
    }

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

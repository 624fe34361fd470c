//! The hub's circuit breaker around the LLM: after `threshold` consecutive failures (no
//! responders, timeouts, errors) it opens and answers come from the data; after `open_for` one
//! probe is let through (half-open): success closes it, failure opens it again.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

pub struct Breaker {
    /// Failures in a row that open it.
    threshold: u32,
    /// How long it stays open.
    open_for: Duration,
    /// Mutable state, behind a short lock.
    inner: Mutex<Inner>,
}

struct Inner {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            inner: Mutex::new(Inner {
                failures: 0,
                open_until: None,
                probing: false,
            }),
        }
    }

    pub fn state(&self) -> State {
        let inner = self.inner.lock().expect("breaker lock");
        match inner.open_until {
            None => State::Closed,
            Some(until) if Instant::now() < until => State::Open,
            Some(_) => State::HalfOpen,
        }
    }

    /// May a request go to the LLM now? In half-open, only one probe at a time.
    pub fn allow(&self) -> bool {
        let mut inner = self.inner.lock().expect("breaker lock");
        match inner.open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) if inner.probing => false,
            Some(_) => {
                inner.probing = true;
                true
            }
        }
    }

    pub fn success(&self) {
        let mut inner = self.inner.lock().expect("breaker lock");
        inner.failures = 0;
        if inner.open_until.take().is_some() {
            metrics::gauge!("llm_circuit_open").set(0.0);
        }
        inner.probing = false;
    }

    pub fn failure(&self) {
        let mut inner = self.inner.lock().expect("breaker lock");
        inner.failures += 1;
        if inner.probing || inner.failures >= self.threshold {
            inner.open_until = Some(Instant::now() + self.open_for);
            inner.probing = false;
            metrics::counter!("llm_circuit_opened_total").increment(1);
            metrics::gauge!("llm_circuit_open").set(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_probes_once_and_closes_on_success() {
        let b = Breaker::new(3, Duration::from_secs(30));
        for _ in 0..2 {
            assert!(b.allow());
            b.failure();
        }
        assert_eq!(b.state(), State::Closed);
        b.failure();
        assert_eq!(b.state(), State::Open);
        assert!(!b.allow());

        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.allow(), "one probe");
        assert!(!b.allow(), "only one probe at a time");
        b.failure();
        assert_eq!(b.state(), State::Open, "a failed probe reopens");

        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(b.allow());
        b.success();
        assert_eq!(b.state(), State::Closed);
        assert!(b.allow() && b.allow());
    }
}

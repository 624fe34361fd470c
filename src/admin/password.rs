//! Password hashing: argon2id with the configured cost (OWASP: 19 MiB, 2 iterations, 1 lane).
//!
//! A hash takes a core for tens of milliseconds, so it never runs on the async executor: it runs
//! on the blocking pool, and only `auth.max_concurrent_hashes` at a time. A login that cannot get
//! a slot within `auth.hash_wait_ms` is answered 503, so a login flood queues boundedly and the
//! webhook keeps its cores.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::distributions::{Alphanumeric, DistString};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::config::AuthSettings;
use crate::error::{Error, Result};

/// Longest password accepted: argon2 hashes anything, but megabytes of input are a cheap DoS.
pub const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Clone)]
pub struct Hasher {
    /// Cost of new hashes; verification uses the cost stored in each hash.
    params: Params,
    /// Hashing slots.
    permits: Arc<Semaphore>,
    /// How long to wait for a slot.
    wait: Duration,
    /// A hash of a random password, verified when there is no real hash to check (unknown user,
    /// inactive or locked account), so every failed login costs the same time.
    dummy: Arc<String>,
    /// Shortest password accepted.
    min_length: usize,
}

impl Hasher {
    pub fn new(settings: &AuthSettings) -> anyhow::Result<Self> {
        let params = Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let random = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
        let dummy = hash_with(&params, random.as_bytes())?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(settings.max_concurrent_hashes)),
            wait: Duration::from_millis(settings.hash_wait_ms),
            dummy: Arc::new(dummy),
            min_length: settings.password_min_length,
        })
    }

    /// Checks a new password against the policy; the message is for the `password` field.
    pub fn check_policy(&self, password: &SecretString) -> Result<(), String> {
        let p = password.expose_secret();
        let chars = p.chars().count();
        if chars < self.min_length {
            return Err(format!("must be at least {} characters", self.min_length));
        }
        if p.len() > MAX_PASSWORD_BYTES {
            return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
        }
        if p.trim() != p {
            return Err("must not start or end with spaces".to_owned());
        }
        let classes = [
            p.chars().any(|c| c.is_lowercase()),
            p.chars().any(|c| c.is_uppercase()),
            p.chars().any(|c| c.is_ascii_digit()),
            p.chars().any(|c| !c.is_alphanumeric()),
        ];
        if classes.iter().filter(|&&c| c).count() < 2 {
            return Err(
                "must mix at least two of: lower-case, upper-case, digits, symbols".to_owned(),
            );
        }
        Ok(())
    }

    /// A fresh hash of `password` (PHC string with its own salt and cost).
    pub async fn hash(&self, password: SecretString) -> Result<String> {
        let params = self.params.clone();
        self.run(move || hash_with(&params, password.expose_secret().as_bytes()))
            .await?
            .map_err(Error::Internal)
    }

    /// Whether `password` matches `hash`. Without a hash, a dummy is verified (and `false`
    /// returned) so the answer takes as long as a real check.
    pub async fn verify(&self, password: SecretString, hash: Option<String>) -> Result<bool> {
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_str().to_owned());
        let matched = self
            .run(move || {
                let Ok(parsed) = PasswordHash::new(&hash) else {
                    // A stored value that is no PHC string can never match.
                    return false;
                };
                Argon2::default()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
            .await?;
        Ok(real && matched)
    }

    /// Runs `f` on the blocking pool once a slot is free; 503 when none frees up in time.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                metrics::counter!("admin_hash_rejected_total").increment(1);
                Error::Busy
            })?
            .context("hasher closed")?;
        let out = tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .context("password hashing task failed")?;
        Ok(out)
    }
}

fn hash_with(params: &Params, password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// A random password for an admin-initiated reset: 20 alphanumerics (~119 bits).
pub fn generate() -> SecretString {
    SecretString::from(Alphanumeric.sample_string(&mut rand::rngs::OsRng, 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        crate::config::Settings::load_from(&dir, "test", &Default::default())
            .unwrap()
            .auth
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() {
        let h = Hasher::new(&settings()).unwrap();
        let hash = h.hash(SecretString::from("Correct horse 1")).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(h
            .verify(SecretString::from("Correct horse 1"), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!h
            .verify(SecretString::from("correct horse 1"), Some(hash))
            .await
            .unwrap());
        assert!(!h
            .verify(SecretString::from("anything"), None)
            .await
            .unwrap());
    }

    #[test]
    fn the_policy_names_what_is_missing() {
        let h = Hasher::new(&settings()).unwrap();
        assert!(h.check_policy(&SecretString::from("short")).is_err());
        assert!(h
            .check_policy(&SecretString::from("alllowercaseletters"))
            .is_err());
        assert!(h
            .check_policy(&SecretString::from("Long enough pass"))
            .is_ok());
    }
}

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
use sqlx::PgConnection;
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
    /// What a new password must be.
    policy: Arc<Policy>,
}

/// The password policy of `auth.password_*`.
struct Policy {
    min_length: usize,
    /// zxcvbn score, 0 to 4.
    min_strength: u8,
    /// Lower-case.
    forbidden_words: Vec<String>,
    history: u32,
}

/// Characters of a password zxcvbn judges.
const ZXCVBN_CHARS: usize = 128;

/// Whose password it is: their names count as known to an attacker.
pub struct Owner<'a> {
    pub username: &'a str,
    pub full_name: &'a str,
    pub email: Option<&'a str>,
}

impl Owner<'_> {
    /// Lower-case words of the owner's identity a password may not contain: the username, the
    /// email's local part, and each part of those and of the name of at least four characters.
    fn words(&self) -> Vec<String> {
        let local = self.email.and_then(|e| e.split('@').next()).unwrap_or("");
        let mut words: Vec<String> = [self.username, local]
            .into_iter()
            .filter(|w| w.chars().count() >= 3)
            .map(str::to_lowercase)
            .collect();
        for text in [self.username, local, self.full_name] {
            words.extend(
                text.split(|c: char| !c.is_alphanumeric())
                    .filter(|w| w.chars().count() >= 4)
                    .map(str::to_lowercase),
            );
        }
        words.sort();
        words.dedup();
        words
    }
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
            policy: Arc::new(Policy {
                min_length: settings.password_min_length,
                min_strength: settings.password_min_strength,
                forbidden_words: settings
                    .password_forbidden_words
                    .iter()
                    .map(|w| w.trim().to_lowercase())
                    .filter(|w| !w.is_empty())
                    .collect(),
                history: settings.password_history,
            }),
        })
    }

    /// Checks a new password against the policy (length, strength by zxcvbn, none of the owner's
    /// names nor the forbidden words); the message is for the `password` field.
    pub fn check_policy(&self, password: &SecretString, owner: &Owner<'_>) -> Result<(), String> {
        let p = password.expose_secret();
        let policy = &self.policy;
        if p.chars().count() < policy.min_length {
            return Err(format!("must be at least {} characters", policy.min_length));
        }
        if p.len() > MAX_PASSWORD_BYTES {
            return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
        }
        if p.trim() != p {
            return Err("must not start or end with spaces".to_owned());
        }
        let lower = p.to_lowercase();
        let names = owner.words();
        if names.iter().any(|w| lower.contains(w.as_str())) {
            return Err("must not contain your username, name or email".to_owned());
        }
        let forbidden = &policy.forbidden_words;
        if forbidden.iter().any(|w| lower.contains(w.as_str())) {
            return Err("must not contain the company's name".to_owned());
        }
        // zxcvbn's work grows with the length; the first characters decide a weak password.
        let head: String = p.chars().take(ZXCVBN_CHARS).collect();
        let known: Vec<&str> = names.iter().chain(forbidden).map(String::as_str).collect();
        let entropy = zxcvbn::zxcvbn(&head, &known);
        let score = u8::from(entropy.score());
        if score < policy.min_strength {
            let why = entropy
                .feedback()
                .and_then(|f| f.warning())
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            return Err(format!(
                "is too easy to guess (strength {score} of 4, at least {} needed){why}; a few unrelated words make a strong password",
                policy.min_strength
            ));
        }
        Ok(())
    }

    /// Whether `password` is the user's current password or one of their last
    /// `auth.password_history` (each compared by argon2, through the hashing slots).
    pub async fn reused(
        &self,
        conn: &mut PgConnection,
        user_id: i64,
        password: &SecretString,
    ) -> Result<bool> {
        let hashes: Vec<String> = sqlx::query_scalar(
            "(select password_hash from adm_user where id = $1 and password_hash is not null)
             union
             (select password_hash from adm_password_history where user_id = $1
              order by id desc limit $2)",
        )
        .bind(user_id)
        .bind(i64::from(self.policy.history))
        .fetch_all(&mut *conn)
        .await?;
        for hash in hashes {
            if self.verify(password.clone(), Some(hash)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records `hash` as the user's newest password, before it replaces the current one (which
    /// is recorded too, if it was set some other way), and forgets those past the history.
    pub async fn remember(&self, conn: &mut PgConnection, user_id: i64, hash: &str) -> Result<()> {
        sqlx::query(
            "insert into adm_password_history (user_id, password_hash)
             select id, password_hash from adm_user
             where id = $1 and password_hash is not null and not exists (
                 select 1 from adm_password_history h
                 where h.user_id = $1 and h.password_hash = adm_user.password_hash)",
        )
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "insert into adm_password_history (user_id, password_hash)
             select $1, $2 where not exists (
                 select 1 from adm_password_history where user_id = $1 and password_hash = $2)",
        )
        .bind(user_id)
        .bind(hash)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "delete from adm_password_history where user_id = $1 and id not in (
                 select id from adm_password_history where user_id = $1 order by id desc limit $2)",
        )
        .bind(user_id)
        .bind(i64::from(self.policy.history))
        .execute(&mut *conn)
        .await?;
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
    fn the_policy_judges_strength_and_refuses_names() {
        let h = Hasher::new(&settings()).unwrap();
        let owner = Owner {
            username: "budi.santoso",
            full_name: "Budi Santoso",
            email: Some("budi.s@factory.local"),
        };
        let check = |p: &str| h.check_policy(&SecretString::from(p), &owner);
        assert!(check("short").unwrap_err().contains("at least 12"));
        // Character classes do not make a guessable password strong, nor their absence a weak one.
        assert!(check("Password123!").unwrap_err().contains("too easy"));
        assert!(check("qwertyuiop12").unwrap_err().contains("too easy"));
        assert!(check("kopi tubruk gerimis jendela").is_ok());
        assert!(check("Santoso-Kuda-Lari-88").unwrap_err().contains("name"));
        assert!(check("xx budi.s zebra lamp").unwrap_err().contains("name"));
        assert!(check("Sentient kuda lari cepat")
            .unwrap_err()
            .contains("company"));
        assert!(check(" kopi tubruk gerimis jendela").is_err());
    }
}

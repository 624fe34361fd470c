//! Access tokens: JWT signed with HS256 and nothing else; `exp`, `iss` and `aud` required and
//! checked, with at most a few seconds of leeway. The claims name the session, so every request
//! can check that the session is still alive.
//!
//! Refresh tokens: 256 random bits, shown to the client once, stored as their SHA-256.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::AuthSettings;

/// The only algorithm tokens are signed with and accepted in.
const ALGORITHM: Algorithm = Algorithm::HS256;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user's uuid.
    pub sub: Uuid,
    /// The session row (`adm_session.uuid`) the token belongs to.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    /// Access token lifetime in seconds.
    pub access_ttl: i64,
}

impl Tokens {
    pub fn new(settings: &AuthSettings) -> Self {
        let secret = settings.jwt_secret.expose_secret().as_bytes();
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.set_issuer(&[settings.jwt_issuer.as_str()]);
        validation.set_audience(&[settings.jwt_audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = settings.leeway_secs;
        validation.validate_exp = true;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            access_ttl: settings.access_ttl_secs as i64,
        }
    }

    /// A signed access token for `user` in session `sid`.
    pub fn issue(&self, user: Uuid, sid: Uuid) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user,
            sid,
            iat: now,
            exp: now + self.access_ttl,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(ALGORITHM),
            &claims,
            &self.encoding,
        )?)
    }

    /// The claims of a valid token; `None` for anything else (why is only logged at debug).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Some(data.claims),
            Err(e) => {
                tracing::debug!(reason = %e, "access token refused");
                None
            }
        }
    }
}

/// A new refresh token: 32 random bytes from the OS, hex.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What is stored of a refresh token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

//! `X-Hub-Signature-256`: HMAC-SHA256 of the exact raw body with the app secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// True when `header` is `sha256=<hex>` and the hex is the HMAC of `body` under `secret`.
/// The comparison is constant-time (`verify_slice`); the body is never re-serialised.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Whether `header` has the form of a signature (`sha256=` and 64 hex digits), so a request
/// without one can be refused before its body is read.
pub fn well_formed(header: Option<&str>) -> bool {
    header
        .and_then(|h| h.trim().strip_prefix("sha256="))
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The header value Meta would send for `body`: used by `sentient-hub chat`, tests and benches.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let header = sign(b"secret", b"{\"a\":1}");
        assert!(verify(b"secret", b"{\"a\":1}", Some(&header)));
    }

    #[test]
    fn a_known_vector_matches() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog")
        assert_eq!(
            sign(b"key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn wrong_missing_or_malformed_signatures_fail() {
        let header = sign(b"secret", b"body");
        assert!(!verify(b"other", b"body", Some(&header)));
        assert!(!verify(b"secret", b"body ", Some(&header)), "one byte more");
        assert!(!verify(b"secret", b"body", None));
        assert!(!verify(b"secret", b"body", Some("sha1=abcd")));
        assert!(!verify(b"secret", b"body", Some("sha256=not-hex")));
        assert!(!verify(b"secret", b"body", Some("sha256=")));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_signature_verifies_its_own_body_and_no_other(
            secret in proptest::collection::vec(any::<u8>(), 1..64),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            flip in any::<usize>(),
        ) {
            let header = sign(&secret, &body);
            prop_assert!(well_formed(Some(&header)));
            prop_assert!(verify(&secret, &body, Some(&header)));
            let mut other = body.clone();
            if other.is_empty() {
                other.push(0);
            } else {
                let i = flip % other.len();
                other[i] ^= 1;
            }
            prop_assert!(!verify(&secret, &other, Some(&header)));
        }

        #[test]
        fn any_header_is_judged_without_panicking(header in ".{0,200}", body in ".{0,64}") {
            let ok = verify(b"secret", body.as_bytes(), Some(&header));
            prop_assert!(!ok || header.trim() == sign(b"secret", body.as_bytes()));
            if !well_formed(Some(&header)) {
                prop_assert!(!ok);
            }
        }
    }
}

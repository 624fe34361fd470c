//! One-time codes: six digits from the operating system's CSPRNG (~20 bits), stored only as a
//! keyed hash, recognised in what people type ("123 456", "123456.", "kode 123456").

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

/// A fresh six-digit code.
pub fn generate() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// HMAC-SHA256(secret, user_id ":" code) in hex: without the secret, a stolen table does not
/// give the codes away by brute force over the million candidates.
pub fn hash(secret: &[u8], user_id: i64, code: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{user_id}:{code}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether two code hashes are equal, in constant time.
pub fn same(given: &str, stored: &str) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        stored.as_bytes(),
    ))
}

/// The code in a message, if the message is a code and nothing else: six digits, optionally
/// split by spaces or dashes, optionally with a word like "kode"/"code"/"otp" before it and
/// punctuation after it.
pub fn parse(text: &str) -> Option<String> {
    let mut rest = text.trim().to_lowercase();
    for prefix in ["kode otp", "otp code", "kode", "code", "otp"] {
        if let Some(r) = rest.strip_prefix(prefix) {
            rest = r.trim_start_matches([':', ' ']).to_owned();
            break;
        }
    }
    let rest = rest.trim_end_matches(['.', '!', ' ']);
    if rest.is_empty()
        || !rest
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return None;
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    (digits.len() == 6).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> = (0..50).map(|_| generate()).collect();
        assert!(codes
            .iter()
            .all(|c| c.len() == 6 && c.chars().all(|d| d.is_ascii_digit())));
        assert!(codes.len() > 45);
    }

    #[test]
    fn what_people_type_is_recognised() {
        for text in [
            "123456",
            "123 456",
            "123456.",
            " 123-456 ",
            "Kode: 123456",
            "OTP 123 456!",
        ] {
            assert_eq!(parse(text).as_deref(), Some("123456"), "{text}");
        }
        for text in [
            "12345",
            "1234567",
            "stok 123456",
            "123456 berapa",
            "abc",
            "",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn hashes_depend_on_secret_user_and_code() {
        let h = hash(b"k", 1, "123456");
        assert_eq!(h.len(), 64);
        assert_ne!(h, hash(b"other", 1, "123456"));
        assert_ne!(h, hash(b"k", 2, "123456"));
        assert_ne!(h, hash(b"k", 1, "123457"));
    }
}

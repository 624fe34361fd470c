//! Phone numbers in E.164, parsed from what people and Meta write, and masked for logs.

use std::fmt;

/// A phone number in E.164 (`+628110000001`): `+`, a country code not starting with 0, and
/// 8 to 15 digits in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneE164(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a phone number: use E.164 (+6281234567890) or an Indonesian form (0812…, 62812…)")]
pub struct InvalidPhone;

impl PhoneE164 {
    /// Accepts `+62 812-3456-7890`, `+6281234567890`, `6281234567890` (WhatsApp's wa_id),
    /// `081234567890` (Indonesian local form). Spaces, dashes, dots and brackets are ignored.
    pub fn parse(input: &str) -> Result<Self, InvalidPhone> {
        let trimmed = input.trim();
        if trimmed.is_empty()
            || !trimmed
                .chars()
                .all(|c| c.is_ascii_digit() || " +-.()".contains(c))
            || trimmed.chars().filter(|c| *c == '+').count() > 1
            || (trimmed.contains('+') && !trimmed.starts_with('+'))
        {
            return Err(InvalidPhone);
        }
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        let international = if trimmed.starts_with('+') {
            digits
        } else if let Some(local) = digits.strip_prefix('0') {
            // 08… is the Indonesian trunk prefix for +628…
            if local.starts_with('0') {
                return Err(InvalidPhone);
            }
            format!("62{local}")
        } else {
            digits
        };
        if !(8..=15).contains(&international.len()) || international.starts_with('0') {
            return Err(InvalidPhone);
        }
        Ok(Self(format!("+{international}")))
    }

    /// From WhatsApp's digits-only `wa_id`.
    pub fn from_wa_id(wa_id: &str) -> Result<Self, InvalidPhone> {
        if wa_id.is_empty() || !wa_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(InvalidPhone);
        }
        Self::parse(&format!("+{wa_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// WhatsApp's form: digits only.
    pub fn wa_id(&self) -> &str {
        &self.0[1..]
    }

    /// For logs and mails: country code and first digits, then stars, then the last three.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

impl fmt::Display for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `+628110000001` → `+62811****001`; anything short is starred whole.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() < 9 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 9))
}

/// `john.doe@factory.local` → `j***@factory.local`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indonesian_and_international_forms_normalise_to_e164() {
        for input in [
            "+628110000001",
            "628110000001",
            "08110000001",
            "+62 811-000-0001",
            "(0811) 000 0001",
        ] {
            assert_eq!(
                PhoneE164::parse(input).unwrap().as_str(),
                "+628110000001",
                "{input}"
            );
        }
        assert_eq!(
            PhoneE164::parse("+14155550123").unwrap().as_str(),
            "+14155550123"
        );
        assert_eq!(
            PhoneE164::from_wa_id("628110000001").unwrap().wa_id(),
            "628110000001"
        );
    }

    #[test]
    fn garbage_is_refused() {
        for input in [
            "",
            "abc",
            "+",
            "12345",
            "+0812345678",
            "0081234567",
            "62+811000",
            "+62 811 000 0001 2345 678",
            "081x",
        ] {
            assert_eq!(PhoneE164::parse(input), Err(InvalidPhone), "{input}");
        }
        assert!(PhoneE164::from_wa_id("+62811").is_err());
    }

    #[test]
    fn masks_keep_only_what_helps_recognise() {
        assert_eq!(mask_phone("+628110000001"), "+62811****001");
        assert_eq!(mask_email("john.doe@factory.local"), "j***@factory.local");
        assert_eq!(mask_email("nonsense"), "***");
    }
}

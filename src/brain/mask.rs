//! PII masking for an LLM outside the factory: employee names, phone numbers, e-mail addresses
//! and salary figures become placeholders before the request and are restored in the reply.

use std::sync::OnceLock;

use regex::Regex;

/// The replacements made in one request, to undo them in its reply.
#[derive(Debug, Default)]
pub struct Masker {
    /// (placeholder, original), in the order they were made.
    map: Vec<(String, String)>,
}

fn email_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap())
}

fn phone_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\+?\b(?:62|0)8[0-9][0-9 -]{6,13}[0-9]\b").unwrap())
}

fn salary_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"(?i)((?:gaji|salary|upah|wage)[^0-9\n]{0,30}?)((?:Rp\.?\s?)?[0-9][0-9.,]*(?:\s?(?:jt|juta|rb|ribu|M|miliar))?)"#).unwrap()
    })
}

impl Masker {
    fn placeholder(&mut self, kind: &str, original: &str) -> String {
        if let Some((p, _)) = self.map.iter().find(|(_, o)| o == original) {
            return p.clone();
        }
        let n = self
            .map
            .iter()
            .filter(|(p, _)| p.starts_with(&format!("[{kind}_")))
            .count()
            + 1;
        let p = format!("[{kind}_{n}]");
        self.map.push((p.clone(), original.to_owned()));
        p
    }

    /// Replaces the personal data in `text`; `names` are the people's names to hide.
    pub fn mask(&mut self, text: &str, names: &[String]) -> String {
        let mut out = text.to_owned();
        for email in email_re()
            .find_iter(text)
            .map(|m| m.as_str().to_owned())
            .collect::<Vec<_>>()
        {
            let p = self.placeholder("EMAIL", &email);
            out = out.replace(&email, &p);
        }
        for phone in phone_re()
            .find_iter(&out.clone())
            .map(|m| m.as_str().to_owned())
            .collect::<Vec<_>>()
        {
            let p = self.placeholder("PHONE", &phone);
            out = out.replace(&phone, &p);
        }
        let salaries: Vec<String> = salary_re()
            .captures_iter(&out)
            .map(|c| c[2].to_owned())
            .collect();
        for salary in salaries {
            let p = self.placeholder("SALARY", &salary);
            out = out.replacen(&salary, &p, 1);
        }
        let mut names: Vec<&String> = names.iter().filter(|n| n.len() >= 3).collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len())); // "Budi Santoso" before "Budi"
        for name in names {
            if out.contains(name.as_str()) {
                let p = self.placeholder("PERSON", name);
                out = out.replace(name.as_str(), &p);
            }
        }
        out
    }

    /// Restores the originals in a reply.
    pub fn unmask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (p, original) in &self.map {
            out = out.replace(p, original);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_masked_and_restored() {
        let mut m = Masker::default();
        let text = "Pak Budi Santoso (budi@factory.local, +6281234567890) gaji Rp 8.500.000; Budi Santoso shift 2";
        let masked = m.mask(text, &["Budi Santoso".to_owned()]);
        for secret in ["Budi", "budi@factory.local", "6281234567890", "8.500.000"] {
            assert!(!masked.contains(secret), "{secret} leaked: {masked}");
        }
        assert!(masked.contains("[PERSON_1]") && masked.contains("[EMAIL_1]"));
        assert!(masked.contains("[PHONE_1]") && masked.contains("[SALARY_1]"));
        let reply = "Ringkas: [PERSON_1] bisa dihubungi di [PHONE_1]; gaji [SALARY_1].";
        assert_eq!(
            m.unmask(reply),
            "Ringkas: Budi Santoso bisa dihubungi di +6281234567890; gaji Rp 8.500.000."
        );
    }

    #[test]
    fn business_figures_are_left_alone() {
        let mut m = Masker::default();
        let text = "Omzet Rp 697.333.225 dari 70 order; SO-202412-0002";
        assert_eq!(m.mask(text, &[]), text);
    }
}

//! Proactive alerts: the second half of the road. An alert is a row in `ai_alert`, raised by the
//! hub's own [`detect`]ors, written by another service straight into the table, or published on
//! NATS (`alerts.subject`, default `alerts.new`) and stored by [`intake`]. The [`dispatch`] loop
//! then routes each new alert to every user whose role an active `ai_alert_rule` names for its
//! module and severity, who holds `ALERT.READ` and may read the module, on a confirmed device,
//! and writes one outbox row per recipient (held until a mute ends); the outbox sender delivers
//! it like any reply (rate limits, retries, the 24-hour window and its template, delivery
//! statuses), or withdraws it when it was acknowledged meanwhile or the user lost the right to it.
//! A recipient who may acknowledge does so with the message's button ([`ack`]).
//!
//! Exactly once per user: the recipients, their outbox rows and the alert's `is_sent` are written
//! in one transaction on the locked alert row, and `(alert_id, user_id)` is unique.

pub mod ack;
pub mod detect;
pub mod dispatch;
pub mod intake;

/// How urgent an alert is, lowest first (the order routing rules compare by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Lowest first, as stored in `ai_alert.severity` and `ai_alert_rule.min_severity`.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// Reads a severity as people and other services write it: any case, with or without a
    /// leading marker ("🔴 High", as in the blueprint's samples), in English or Indonesian
    /// (rendah, sedang, tinggi, kritis), or as the blueprint's alert types (info = Low,
    /// warning = Medium). `None` for anything else.
    pub fn parse(text: &str) -> Option<Severity> {
        let word = text
            .trim_start_matches(|c: char| !c.is_alphanumeric())
            .trim()
            .to_lowercase();
        match word.as_str() {
            "low" | "rendah" | "info" => Some(Severity::Low),
            "medium" | "sedang" | "warning" => Some(Severity::Medium),
            "high" | "tinggi" => Some(Severity::High),
            "critical" | "kritis" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// This severity and every lower one: the `min_severity` values a rule may have to match.
    pub fn at_or_below(self) -> Vec<&'static str> {
        Severity::ALL
            .iter()
            .filter(|s| **s <= self)
            .map(|s| s.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_are_read_as_people_write_them() {
        assert_eq!(Severity::parse("High"), Some(Severity::High));
        assert_eq!(Severity::parse("critical"), Some(Severity::Critical));
        assert_eq!(Severity::parse("🔴 Critical"), Some(Severity::Critical));
        assert_eq!(Severity::parse("  🟡 Medium "), Some(Severity::Medium));
        assert_eq!(Severity::parse("Kritis"), Some(Severity::Critical));
        assert_eq!(Severity::parse("rendah"), Some(Severity::Low));
        assert_eq!(Severity::parse("Info"), Some(Severity::Low));
        assert_eq!(Severity::parse("warning"), Some(Severity::Medium));
        assert_eq!(Severity::parse("urgent"), None);
        assert_eq!(Severity::parse(""), None);
    }

    #[test]
    fn the_time_on_the_phone_names_its_zone() {
        use chrono::TimeZone;
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 28, 7, 5, 0).unwrap();
        assert_eq!(
            crate::texts::local_time(at, chrono_tz::Asia::Jakarta),
            "28-11-2026 14:05 WIB"
        );
    }

    #[test]
    fn a_rule_matches_alerts_at_or_above_its_minimum() {
        assert_eq!(Severity::High.at_or_below(), ["Low", "Medium", "High"]);
        assert_eq!(Severity::Low.at_or_below(), ["Low"]);
        assert!(Severity::Critical > Severity::High);
    }
}

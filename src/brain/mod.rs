//! The brain: what a question is about (intent), whether the asker may ask it, and the answer.

pub mod intent;

use crate::identity::Caller;
use crate::texts::{self, Lang};
use intent::classify;

/// The answer to an admitted message. Until the brain answers questions from live data, a
/// question the caller may ask gets a fixed acknowledgement; one outside the caller's
/// permissions is refused naming the area, without reading any data.
pub fn respond(caller: &Caller, msg_type: &str, body: Option<&str>, lang: Lang) -> Option<String> {
    match body.map(str::trim).filter(|b| !b.is_empty()) {
        Some(text) => {
            let intent = classify(text);
            if let Some(permission) = intent.permission() {
                if !caller.may(permission) {
                    metrics::counter!("brain_denied_total").increment(1);
                    return Some(texts::denied(lang, intent.area(lang)));
                }
            }
            Some(texts::received(lang).to_owned())
        }
        None => match msg_type {
            "reaction" | "system" | "unsupported" => None,
            _ => Some(texts::text_only(lang).to_owned()),
        },
    }
}

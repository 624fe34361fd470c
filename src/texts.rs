//! Everything the bot says to people, in Indonesian and English, in one place.

use serde::{Deserialize, Serialize};

/// The language of a conversation: the hub answers in the language it was asked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Id,
    En,
}

/// Common English words in short business questions; anything else is taken as Indonesian,
/// the factory's working language.
const ENGLISH_MARKERS: &[&str] = &[
    "the",
    "what",
    "how",
    "is",
    "are",
    "my",
    "show",
    "please",
    "status",
    "of",
    "this",
    "last",
    "month",
    "week",
    "today",
    "which",
    "who",
    "when",
    "where",
    "why",
    "can",
    "you",
    "stock",
    "order",
    "orders",
    "revenue",
    "sales",
    "much",
    "many",
    "hello",
    "hi",
    "thanks",
    "thank",
    "overdue",
    "customers",
    "machine",
    "does",
    "do",
    "did",
    "was",
    "were",
    "and",
];

const INDONESIAN_MARKERS: &[&str] = &[
    "apa",
    "berapa",
    "brp",
    "bagaimana",
    "gmn",
    "gimana",
    "yang",
    "yg",
    "ini",
    "itu",
    "bulan",
    "minggu",
    "hari",
    "lalu",
    "sudah",
    "sdh",
    "udah",
    "belum",
    "blm",
    "tolong",
    "mohon",
    "saya",
    "kita",
    "kami",
    "dan",
    "di",
    "ke",
    "dari",
    "untuk",
    "utk",
    "stok",
    "omzet",
    "piutang",
    "tagihan",
    "mesin",
    "pesanan",
    "kirim",
    "halo",
    "terima",
    "kasih",
    "makasih",
    "siapa",
    "kapan",
    "mana",
    "ada",
    "tidak",
    "gak",
    "nggak",
    "ga",
    "bisa",
    "pak",
    "bu",
];

impl Lang {
    /// A cheap guess from word lists: more English than Indonesian markers → English.
    pub fn detect(text: &str) -> Lang {
        let mut en = 0;
        let mut id = 0;
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let w = word.to_lowercase();
            if ENGLISH_MARKERS.contains(&w.as_str()) {
                en += 1;
            }
            if INDONESIAN_MARKERS.contains(&w.as_str()) {
                id += 1;
            }
        }
        if en > id {
            Lang::En
        } else {
            Lang::Id
        }
    }
}

/// The fixed acknowledgement used until the brain answers questions.
pub fn received(lang: Lang) -> &'static str {
    match lang {
        Lang::Id => "✅ Pesan Anda sudah kami terima. Sentient Hub sedang disiapkan untuk menjawab pertanyaan Anda.",
        Lang::En => "✅ We have received your message. Sentient Hub is being prepared to answer your questions.",
    }
}

/// A message processed long after it was sent (a backlog replayed after an outage).
pub fn stale_notice(lang: Lang, sent_at_local: &str) -> String {
    match lang {
        Lang::Id => format!(
            "Maaf, pesan Anda dari {sent_at_local} baru sampai ke kami sekarang karena gangguan. \
             Jika masih diperlukan, silakan kirim ulang pertanyaannya agar jawabannya memakai data terbaru."
        ),
        Lang::En => format!(
            "Sorry, your message from {sent_at_local} only reached us now because of an outage. \
             If you still need it, please send the question again so the answer uses current data."
        ),
    }
}

/// A message the hub cannot read (media without a caption, location, contacts …).
pub fn text_only(lang: Lang) -> &'static str {
    match lang {
        Lang::Id => {
            "Maaf, saat ini saya hanya bisa membaca pesan teks. Silakan ketik pertanyaan Anda."
        }
        Lang::En => "Sorry, for now I can only read text messages. Please type your question.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_and_indonesian_questions_are_told_apart() {
        assert_eq!(Lang::detect("What is the revenue this month?"), Lang::En);
        assert_eq!(Lang::detect("show overdue customers please"), Lang::En);
        assert_eq!(Lang::detect("omzet bulan ini brp?"), Lang::Id);
        assert_eq!(Lang::detect("status SO-202412-0002 sdh dikirim?"), Lang::Id);
        assert_eq!(Lang::detect("stok motor dc berapa"), Lang::Id);
        // Nothing to go on: the factory's language.
        assert_eq!(Lang::detect("👍"), Lang::Id);
    }
}

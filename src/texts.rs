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
/// Words used by both languages' speakers (status, order, stock, sales) are left out: they
/// tell nothing.
const ENGLISH_MARKERS: &[&str] = &[
    "the",
    "what",
    "how",
    "is",
    "are",
    "my",
    "show",
    "please",
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
    "revenue",
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
    "any",
    "our",
    "we",
    "me",
    "give",
    "tell",
    "about",
    "list",
    "there",
    "have",
    "has",
    "due",
    "with",
    "for",
    "from",
    "all",
    "latest",
    "current",
    "active",
    "should",
    "need",
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
    "dong",
    "deh",
    "nih",
    "aja",
    "saja",
    "kah",
    "ya",
    "sampai",
    "sampe",
    "lagi",
    "kalau",
    "kalo",
];

impl Lang {
    /// A user's stored preference (`adm_user.lang`: `id` or `en`); Indonesian for anything else.
    pub fn from_code(code: &str) -> Lang {
        if code == "en" {
            Lang::En
        } else {
            Lang::Id
        }
    }

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
/// The first message beyond a sender's per-minute allowance.
pub fn slow_down(lang: Lang) -> &'static str {
    match lang {
        Lang::Id => "Pesan Anda datang terlalu cepat. Saya menjawab yang sudah masuk; mohon tunggu sebentar sebelum bertanya lagi. Pertanyaan setelah ini dalam satu menit tidak saya jawab.",
        Lang::En => "Your messages are coming too fast. I am answering the ones already in; please wait a moment before asking again. Further questions within this minute are not answered.",
    }
}

/// The first message beyond `max` held for an unconfirmed device.
pub fn held_full(lang: Lang, max: i64) -> String {
    match lang {
        Lang::Id => format!(
            "Saya sudah menyimpan {max} pertanyaan Anda sampai perangkat ini terverifikasi; pesan ini dan berikutnya tidak disimpan. Ketik kode dari email Anda dulu."
        ),
        Lang::En => format!(
            "I have kept {max} of your questions until this device is verified; this message and later ones are not kept. Type the code from your email first."
        ),
    }
}

/// A question over `brain.max_question_chars`.
pub fn question_too_long(lang: Lang, max_chars: usize) -> String {
    match lang {
        Lang::Id => format!(
            "Maaf, pertanyaan Anda terlalu panjang untuk saya proses (paling banyak {max_chars} karakter). Silakan kirim pertanyaan yang lebih singkat."
        ),
        Lang::En => format!(
            "Sorry, your question is too long for me to handle (at most {max_chars} characters). Please send a shorter question."
        ),
    }
}

pub fn text_only(lang: Lang) -> &'static str {
    match lang {
        Lang::Id => {
            "Maaf, saat ini saya hanya bisa membaca pesan teks. Silakan ketik pertanyaan Anda."
        }
        Lang::En => "Sorry, for now I can only read text messages. Please type your question.",
    }
}

/// Two texts, one per language: the single place where the bot's words live.
fn pick(lang: Lang, id: &str, en: &str) -> String {
    match lang {
        Lang::Id => id.to_owned(),
        Lang::En => en.to_owned(),
    }
}

/// An unknown, deactivated or deleted sender (at most once a day).
pub fn not_registered(lang: Lang) -> String {
    pick(
        lang,
        "Maaf, nomor ini tidak terdaftar untuk Sentient Hub. Silakan hubungi administrator TI perusahaan Anda.",
        "Sorry, this number is not registered for Sentient Hub. Please contact your company's IT administrator.",
    )
}

/// The second factor of an admin API sign-in, sent to the user's confirmed WhatsApp device.
pub fn admin_login_code(lang: Lang, code: &str, address: &str, minutes: u64) -> String {
    match lang {
        Lang::Id => format!(
            "🔐 Kode masuk API admin Sentient Hub: *{code}*\nDiminta dari alamat {address}, berlaku {minutes} menit, sekali pakai. Masukkan di halaman masuk, bukan di chat ini, dan jangan berikan kepada siapa pun. Bukan Anda? Seseorang mengetahui kata sandi Anda: segera ganti dan hubungi administrator TI."
        ),
        Lang::En => format!(
            "🔐 Sentient Hub admin API sign-in code: *{code}*\nRequested from {address}, valid for {minutes} minutes, single use. Enter it on the sign-in page, not in this chat, and never share it. Not you? Someone knows your password: change it now and contact your IT administrator."
        ),
    }
}

/// A code is on its way to the user's mailbox.
pub fn otp_coming(lang: Lang, email_masked: &str, minutes: u64) -> String {
    match lang {
        Lang::Id => format!(
            "🔐 Demi keamanan data pabrik, perangkat ini perlu diverifikasi. Kami sedang mengirim kode 6 digit ke email perusahaan Anda ({email_masked}). Ketik kode tersebut di sini (berlaku {minutes} menit). Pertanyaan Anda kami simpan dan akan dijawab setelah verifikasi."
        ),
        Lang::En => format!(
            "🔐 To protect factory data, this device needs to be verified. We are sending a 6-digit code to your company email ({email_masked}). Type it here (valid for {minutes} minutes). Your question is kept and will be answered after verification."
        ),
    }
}

/// The code mail could not be sent now; the hub keeps trying.
pub fn otp_send_failed(lang: Lang) -> String {
    pick(
        lang,
        "⚠️ Kode verifikasi belum dapat dikirim ke email Anda saat ini. Kami akan mencoba lagi secara otomatis dan memberi tahu Anda. Pertanyaan Anda tetap kami simpan.",
        "⚠️ The verification code could not be sent to your email right now. We will retry automatically and let you know. Your question is kept.",
    )
}

/// The retried mail went out after all.
pub fn otp_sent_later(lang: Lang, email_masked: &str) -> String {
    match lang {
        Lang::Id => format!(
            "📧 Kode verifikasi sudah terkirim ke {email_masked}. Silakan ketik kodenya di sini."
        ),
        Lang::En => format!(
            "📧 The verification code has now been sent to {email_masked}. Please type it here."
        ),
    }
}

/// A message while a code is awaited.
pub fn otp_reminder(lang: Lang, email_masked: &str) -> String {
    match lang {
        Lang::Id => format!("Pesan Anda kami simpan. Silakan ketik kode 6 digit yang dikirim ke {email_masked} terlebih dahulu."),
        Lang::En => format!("Your message is kept. Please first type the 6-digit code sent to {email_masked}."),
    }
}

/// Too many codes in the last hour.
pub fn otp_rate_limited(lang: Lang) -> String {
    pick(
        lang,
        "Terlalu banyak permintaan kode dalam satu jam terakhir. Silakan coba lagi nanti; pertanyaan Anda tetap kami simpan.",
        "Too many codes were requested in the last hour. Please try again later; your question is kept.",
    )
}

/// A wrong code, with the tries left.
pub fn otp_wrong(lang: Lang, left: i32) -> String {
    match lang {
        Lang::Id => format!("❌ Kode salah. Sisa percobaan: {left}."),
        Lang::En => format!("❌ Wrong code. Tries left: {left}."),
    }
}

/// The last wrong try voided the code.
pub fn otp_locked(lang: Lang) -> String {
    pick(
        lang,
        "❌ Kode salah terlalu sering, kode dibatalkan. Kirim pesan apa saja untuk meminta kode baru.",
        "❌ Too many wrong tries; the code is void. Send any message to get a new code.",
    )
}

/// A code that is expired, used or void.
pub fn otp_invalid(lang: Lang) -> String {
    pick(
        lang,
        "Kode tersebut sudah tidak berlaku (kedaluwarsa atau sudah dipakai).",
        "That code is no longer valid (expired or already used).",
    )
}

/// The user has no company email on file.
pub fn no_email(lang: Lang) -> String {
    pick(
        lang,
        "Perangkat ini perlu diverifikasi, tetapi email perusahaan Anda belum terdaftar. Silakan hubungi administrator TI.",
        "This device needs verification, but no company email is registered for you. Please contact your IT administrator.",
    )
}

/// The code was right.
pub fn otp_confirmed(lang: Lang, held: usize) -> String {
    match (lang, held) {
        (Lang::Id, 0) => "✅ Verifikasi berhasil. Silakan ajukan pertanyaan Anda.".to_owned(),
        (Lang::Id, n) => {
            format!("✅ Verifikasi berhasil. Berikut jawaban untuk {n} pesan Anda sebelumnya.")
        }
        (Lang::En, 0) => "✅ Verified. Go ahead and ask your question.".to_owned(),
        (Lang::En, n) => {
            format!("✅ Verified. Here are the answers to your {n} earlier message(s).")
        }
    }
}

/// A question outside the asker's permissions.
pub fn denied(lang: Lang, area: &str) -> String {
    match lang {
        Lang::Id => format!("🔒 Maaf, peran Anda tidak memiliki akses ke data {area}. Hubungi administrator bila Anda memerlukannya."),
        Lang::En => format!("🔒 Sorry, your role has no access to {area} data. Contact your administrator if you need it."),
    }
}

/// Month names, January first.
const BULAN: [&str; 12] = [
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// An instant as people read it: `28-11-2026 14:05 WIB` in `timezone` (when an alert was
/// raised, when a document was approved).
pub fn local_time(at: chrono::DateTime<chrono::Utc>, timezone: chrono_tz::Tz) -> String {
    at.with_timezone(&timezone)
        .format("%d-%m-%Y %H:%M %Z")
        .to_string()
}

/// The name of month `month0` (0 = January) in `lang`: full, or its three-letter short form
/// ("Agu", "Okt", "Des" in Indonesian).
pub fn month_name(lang: Lang, month0: u32, short: bool) -> &'static str {
    let full = match lang {
        Lang::Id => BULAN[month0 as usize % 12],
        Lang::En => MONTHS[month0 as usize % 12],
    };
    match (short, full) {
        (false, _) => full,
        (true, "Agustus") => "Agu",
        (true, f) => &f[..3],
    }
}

/// A figure the hub cannot give yet: what was asked, and what can be asked nearby.
pub fn not_yet(lang: Lang, asked: &str, nearby: &[&str]) -> String {
    let list = nearby.join(", ");
    match (lang, nearby.is_empty()) {
        (Lang::Id, false) => format!("Maaf, saya belum bisa menjawab {asked}. Yang bisa saya jawab di dekatnya: {list}. Ketik \"menu\" untuk contoh pertanyaan."),
        (Lang::Id, true) => format!("Maaf, saya belum bisa menjawab {asked}. Ketik \"menu\" untuk melihat apa yang bisa saya jawab."),
        (Lang::En, false) => format!("Sorry, I can't answer {asked} yet. Nearby, I can answer: {list}. Type \"menu\" for examples."),
        (Lang::En, true) => format!("Sorry, I can't answer {asked} yet. Type \"menu\" to see what I can answer."),
    }
}

/// How a question the LLM helped to read was understood.
pub fn understood_as(lang: Lang, what: &str) -> String {
    match lang {
        Lang::Id => format!("Saya pahami: {what}."),
        Lang::En => format!("I understood: {what}."),
    }
}

/// A code named in a question that no record holds.
pub fn not_found(lang: Lang, code: &str) -> String {
    match lang {
        Lang::Id => format!("Data untuk {code} tidak ditemukan. Mohon periksa kembali kodenya."),
        Lang::En => format!("No record holds {code}. Please check the code."),
    }
}

/// A name fits several masters: which one?
pub fn which_one(lang: Lang, name: &str, choices: &[String]) -> String {
    let list = choices
        .iter()
        .map(|c| format!("• {c}"))
        .collect::<Vec<_>>()
        .join("\n");
    match lang {
        Lang::Id => format!("\"{name}\" cocok dengan beberapa data. Yang mana?\n{list}"),
        Lang::En => format!("\"{name}\" matches more than one record. Which one?\n{list}"),
    }
}

/// Parts of a question outside the asker's permissions, named.
pub fn denied_parts(lang: Lang, parts: &[&str]) -> String {
    let list = parts.join(", ");
    match lang {
        Lang::Id => format!("🔒 Maaf, peran Anda tidak memiliki akses ke {list}. Hubungi administrator bila Anda memerlukannya."),
        Lang::En => format!("🔒 Sorry, your role has no access to {list}. Contact your administrator if you need it."),
    }
}

/// Measures left out of an answer for lack of permission.
pub fn left_out(lang: Lang, parts: &[&str]) -> String {
    let list = parts.join(", ");
    match lang {
        Lang::Id => format!("(Tanpa {list}: di luar akses peran Anda.)"),
        Lang::En => format!("(Without {list}: outside your role's access.)"),
    }
}

/// A mute lifted, or none to lift.
pub fn alerts_unmuted(lang: Lang, was_muted: bool) -> &'static str {
    match (lang, was_muted) {
        (Lang::Id, true) => "🔔 Notifikasi alert aktif kembali.",
        (Lang::Id, false) => "🔔 Notifikasi alert memang sedang aktif.",
        (Lang::En, true) => "🔔 Alert notifications are back on.",
        (Lang::En, false) => "🔔 Alert notifications are already on.",
    }
}

/// A trusted user typed a code: nothing to confirm.
pub fn already_verified(lang: Lang) -> &'static str {
    match lang {
        Lang::Id => {
            "Perangkat Anda sudah terverifikasi; tidak perlu kode. Silakan ajukan pertanyaan."
        }
        Lang::En => "Your device is already verified; no code needed. Go ahead and ask.",
    }
}

/// Alerts muted until a local time.
pub fn alerts_muted(lang: Lang, until_local: &str) -> String {
    match lang {
        Lang::Id => format!("🔕 Notifikasi alert dibisukan sampai pukul {until_local} WIB."),
        Lang::En => format!("🔕 Alert notifications muted until {until_local} WIB."),
    }
}

/// The colour of a severity (Low, Medium, High, Critical), wherever an alert is shown.
pub fn severity_icon(severity: &str) -> &'static str {
    match severity {
        "Critical" => "🔴",
        "High" => "🟠",
        "Medium" => "🟡",
        _ => "🔵",
    }
}

/// A proactive alert pushed to a phone. `severity` is one of Low, Medium, High, Critical;
/// `raised_local` carries its time zone ("28-11-2026 14:05 WIB").
pub fn alert(
    lang: Lang,
    severity: &str,
    origin: &str,
    message: &str,
    raised_local: &str,
) -> String {
    let icon = severity_icon(severity);
    match lang {
        Lang::Id => {
            let level = match severity {
                "Critical" => "KRITIS",
                "High" => "TINGGI",
                "Medium" => "SEDANG",
                _ => "RENDAH",
            };
            format!(
                "{icon} *Alert {level}* · {origin}\n{message}\n\n🕒 {raised_local} · \
                 Balas \"mute alert 2 jam\" untuk membisukan alert."
            )
        }
        Lang::En => format!(
            "{icon} *{} alert* · {origin}\n{message}\n\n🕒 {raised_local} · \
             Reply \"mute alerts 2 hours\" to silence alerts.",
            severity.to_uppercase()
        ),
    }
}

/// The reply button under a pushed alert (at most 20 characters).
pub fn alert_ack_button(lang: Lang) -> &'static str {
    match lang {
        Lang::Id => "✅ Saya tangani",
        Lang::En => "✅ I'm on it",
    }
}

/// The alert was acknowledged from WhatsApp by the one who tapped.
pub fn alert_acked(lang: Lang, origin: &str) -> String {
    match lang {
        Lang::Id => format!("✅ Dicatat: Anda menangani alert {origin}."),
        Lang::En => format!("✅ Noted: you are handling the {origin} alert."),
    }
}

/// Somebody acknowledged the alert before.
pub fn alert_already_acked(lang: Lang, origin: &str, by: &str, at_local: &str) -> String {
    match lang {
        Lang::Id => format!("ℹ️ Alert {origin} sudah ditangani oleh {by} ({at_local})."),
        Lang::En => format!("ℹ️ The {origin} alert is already being handled by {by} ({at_local})."),
    }
}

/// The button named an alert that no longer exists.
pub fn alert_gone(lang: Lang) -> &'static str {
    match lang {
        Lang::Id => "Alert ini sudah tidak ada.",
        Lang::En => "This alert no longer exists.",
    }
}

/// The database could not be read even after retries.
pub fn data_unavailable(lang: Lang) -> &'static str {
    match lang {
        Lang::Id => {
            "Maaf, data pabrik sedang tidak dapat dibaca. Silakan coba lagi beberapa menit lagi."
        }
        Lang::En => {
            "Sorry, the factory data cannot be read right now. Please try again in a few minutes."
        }
    }
}

/// The mark under an answer built from the data without the LLM.
pub fn data_answer_mark(lang: Lang, as_of: &str) -> String {
    match lang {
        Lang::Id => format!("ℹ️ Jawaban langsung dari data per {as_of}."),
        Lang::En => format!("ℹ️ Answer straight from the data as of {as_of}."),
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

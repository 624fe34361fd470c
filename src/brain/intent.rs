//! Intents: what a question is about, and the permission each needs. The mapping from intent to
//! permission lives here and nowhere else.
//!
//! [`classify`] understands the way people type on a phone, in Indonesian, English or both:
//! the text is lower-cased, cut into words (emoji and punctuation go), chat abbreviations are
//! expanded ("brp" → "berapa", "omset" → "omzet"), "-nya"/"di-" are stripped and one typo in a
//! longer word is forgiven. Periods and masters' names are found first ([`super::entities`],
//! [`super::catalog`]); the remaining words and phrases add weights to intents, named things
//! add a smaller hint (an SO number suggests `order_status`), and a few combinations settle
//! the usual ambiguities ("tagihan" + a vendor is payables, "mute" + "alert" is alert_mute).
//! The best score wins; the confidence grows with its size and its lead over the runner-up.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, MasterKind, TypoIndex};
#[cfg(test)]
use super::entities::Period;
use super::entities::{self, DocKind, Entities, MasterRef, MatchedBy};
use crate::texts::Lang;

/// What a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Help,
    OrderStatus,
    DeliveryStatus,
    SalesSummary,
    StockLevel,
    ProductionStatus,
    MachineHealth,
    Receivables,
    Payables,
    PurchaseStatus,
    CashPosition,
    Alerts,
    VendorScore,
    CustomerInsight,
    AlertMute,
    OtpCode,
    GeneralQuestion,
    /// "ringkasan", "dashboard": the executive summary, each line under its own permissions.
    ExecutiveSummary,
    /// "digest jam 6", "stop digest": the asker's morning digest.
    Digest,
    /// "approval", "PO yang perlu saya approve": what waits for the asker's approval.
    Approvals,
    /// Answered by the metrics layer (never a classifier's label: the understanding of a figure
    /// question decides it); each measure and dimension carries its own permission.
    Metric,
}

impl Intent {
    /// The permission code the asker needs; `None` for intents that read no business data.
    pub fn permission(self) -> Option<&'static str> {
        use Intent::*;
        match self {
            OrderStatus | SalesSummary | CustomerInsight => Some("SO.READ"),
            DeliveryStatus => Some("DO.READ"),
            StockLevel => Some("INV.READ"),
            ProductionStatus => Some("WO.READ"),
            MachineHealth => Some("MAINT.READ"),
            Receivables | Payables | CashPosition => Some("FIN.READ"),
            PurchaseStatus | VendorScore => Some("PO.READ"),
            Alerts | AlertMute => Some("ALERT.READ"),
            Help | OtpCode | GeneralQuestion | ExecutiveSummary | Digest | Approvals | Metric => {
                None
            }
        }
    }

    /// What a question naming document `doc` is really about: a document-status question
    /// (order, delivery, purchase) naming a DO or a PO number asks for that delivery or purchase
    /// order, and needs its permission; a purchase question naming an SO asks for the order.
    /// (A delivery question naming an SO asks for that order's deliveries.)
    pub fn for_document(self, doc: Option<&str>) -> Intent {
        use Intent::*;
        match (self, doc) {
            (OrderStatus | PurchaseStatus, Some(d)) if d.starts_with("DO-") => DeliveryStatus,
            (OrderStatus | DeliveryStatus, Some(d)) if d.starts_with("PO-") => PurchaseStatus,
            (PurchaseStatus, Some(d)) if d.starts_with("SO-") => OrderStatus,
            (intent, _) => intent,
        }
    }

    /// The area named in a refusal.
    pub fn area(self, lang: Lang) -> &'static str {
        use Intent::*;
        let (id, en) = match self {
            OrderStatus | SalesSummary | CustomerInsight => ("penjualan", "sales"),
            DeliveryStatus => ("pengiriman", "deliveries"),
            StockLevel => ("stok gudang", "inventory"),
            ProductionStatus => ("produksi", "production"),
            MachineHealth => ("perawatan mesin", "machine maintenance"),
            Receivables | Payables | CashPosition => ("keuangan", "finance"),
            PurchaseStatus | VendorScore => ("pembelian", "purchasing"),
            Alerts | AlertMute => ("peringatan", "alerts"),
            Help | OtpCode | GeneralQuestion | ExecutiveSummary | Digest | Approvals | Metric => {
                ("umum", "general")
            }
        };
        match lang {
            Lang::Id => id,
            Lang::En => en,
        }
    }
}

impl Intent {
    /// Every intent, in declaration order (`intent as usize` indexes it).
    pub const ALL: [Intent; 21] = [
        Intent::Help,
        Intent::OrderStatus,
        Intent::DeliveryStatus,
        Intent::SalesSummary,
        Intent::StockLevel,
        Intent::ProductionStatus,
        Intent::MachineHealth,
        Intent::Receivables,
        Intent::Payables,
        Intent::PurchaseStatus,
        Intent::CashPosition,
        Intent::Alerts,
        Intent::VendorScore,
        Intent::CustomerInsight,
        Intent::AlertMute,
        Intent::OtpCode,
        Intent::GeneralQuestion,
        Intent::ExecutiveSummary,
        Intent::Digest,
        Intent::Approvals,
        Intent::Metric,
    ];

    /// The snake_case name, as in JSON and in `ai_chat.intent`.
    pub fn as_str(self) -> &'static str {
        use Intent::*;
        match self {
            Help => "help",
            OrderStatus => "order_status",
            DeliveryStatus => "delivery_status",
            SalesSummary => "sales_summary",
            StockLevel => "stock_level",
            ProductionStatus => "production_status",
            MachineHealth => "machine_health",
            Receivables => "receivables",
            Payables => "payables",
            PurchaseStatus => "purchase_status",
            CashPosition => "cash_position",
            Alerts => "alerts",
            VendorScore => "vendor_score",
            CustomerInsight => "customer_insight",
            AlertMute => "alert_mute",
            OtpCode => "otp_code",
            GeneralQuestion => "general_question",
            ExecutiveSummary => "executive_summary",
            Digest => "digest",
            Approvals => "approvals",
            Metric => "metric",
        }
    }
}

impl std::fmt::Display for Intent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Intent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Intent::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| format!("unknown intent {s:?}"))
    }
}

/// What a message asks for, what it names, and how sure the classifier is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub intent: Intent,
    pub entities: Entities,
    /// In [0, 1]: how strongly the words point at `intent` and how far ahead of the next-best
    /// intent it is. Below [`MIN_CONFIDENCE`] a business intent becomes `general_question`.
    pub confidence: f32,
    /// The message only names things or a period ("kalau bulan lalu?", "how about
    /// MCH-002?"): no word of its own says what is asked, so a recent previous question's
    /// intent should carry over. `intent` is then what the named things alone suggest
    /// (`general_question` for a bare period).
    pub follow_up: bool,
}

impl Classification {
    /// See [`Classification::follow_up`].
    pub fn is_follow_up_only(&self) -> bool {
        self.follow_up
    }
}

/// Below this confidence a business intent is not trusted and the message is treated as a
/// general question.
pub const MIN_CONFIDENCE: f32 = 0.25;

// ---------------------------------------------------------------------------------------------
// The lexicon
// ---------------------------------------------------------------------------------------------

/// The shipped lexicon, reviewed data (`words/intents.toml`).
const LEXICON_DATA: &str = include_str!("../../words/intents.toml");

/// The lexicon as written in the data file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LexiconData {
    /// Spellings, chat abbreviations and plurals → the one form the lexicon uses.
    canon: BTreeMap<String, String>,
    /// Word classes by name (see [`flag_of`]).
    flags: BTreeMap<String, Vec<String>>,
    words: KnownWords,
    /// Keywords and phrases with the weight each adds to an intent.
    keywords: Vec<Keywords>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownWords {
    /// Ordinary words that carry no intent.
    function: Vec<String>,
    /// Month names and duration units.
    months_and_units: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keywords {
    intent: Intent,
    weight: f32,
    terms: Vec<String>,
}

static DATA: LazyLock<LexiconData> =
    LazyLock::new(|| toml::from_str(LEXICON_DATA).expect("words/intents.toml is valid"));

/// The bit of a word class named in the data file.
fn flag_of(name: &str) -> u16 {
    match name {
        "bill" => BILL,
        "vendor" => VENDOR_WORD,
        "customer" => CUSTOMER_WORD,
        "order" => ORDER_WORD,
        "alert" => ALERT_WORD,
        "mute" => MUTE_WORD,
        "request" => REQUEST_WORD,
        other => panic!("words/intents.toml names an unknown word class {other:?}"),
    }
}

/// Word classes that combine across a message ("tagihan" + a vendor = payables).
const BILL: u16 = 1;
const VENDOR_WORD: u16 = 1 << 1;
const CUSTOMER_WORD: u16 = 1 << 2;
const ORDER_WORD: u16 = 1 << 3;
const ALERT_WORD: u16 = 1 << 4;
const MUTE_WORD: u16 = 1 << 5;
/// Words that make a message a question of its own ("status MCH-001"), not a follow-up.
const REQUEST_WORD: u16 = 1 << 6;

/// Intents and the master kinds their questions usually name, to settle a name shared by
/// several masters ("global": PT Global Tech or PT Global Supply).
fn preferred_kinds(intent: Intent) -> &'static [MasterKind] {
    use Intent::*;
    use MasterKind::*;
    match intent {
        OrderStatus | DeliveryStatus | SalesSummary | CustomerInsight | Receivables => {
            &[Customer, Item]
        }
        Payables | PurchaseStatus | VendorScore => &[Vendor, Item],
        StockLevel => &[Item, Warehouse],
        ProductionStatus => &[Item, Machine],
        MachineHealth | Alerts | AlertMute => &[Machine, Item],
        Help | CashPosition | OtpCode | GeneralQuestion | ExecutiveSummary | Digest | Approvals
        | Metric => &[],
    }
}

/// What a named master or document suggests when no word does.
fn kind_hint(kind: MasterKind) -> (Intent, f32) {
    match kind {
        MasterKind::Customer => (Intent::CustomerInsight, 1.5),
        MasterKind::Item => (Intent::StockLevel, 1.5),
        MasterKind::Vendor => (Intent::VendorScore, 1.5),
        MasterKind::Machine => (Intent::MachineHealth, 1.5),
        MasterKind::Warehouse => (Intent::StockLevel, 3.0),
    }
}

fn doc_hint(kind: DocKind) -> (Intent, f32) {
    match kind {
        DocKind::So => (Intent::OrderStatus, 2.5),
        DocKind::Do => (Intent::DeliveryStatus, 3.0),
        DocKind::Po => (Intent::PurchaseStatus, 3.0),
        DocKind::Wo => (Intent::ProductionStatus, 3.0),
    }
}

#[derive(Debug, Default)]
struct Entry {
    scores: Vec<(Intent, f32)>,
    flags: u16,
}

/// Scores per intent (indexed by `intent as usize`), word classes seen, and whether any word
/// named a business topic.
#[derive(Debug, Default)]
struct Tally {
    scores: [f32; Intent::ALL.len()],
    flags: u16,
    topical: bool,
}

impl Tally {
    fn add(&mut self, entry: &Entry) {
        for &(intent, w) in &entry.scores {
            self.scores[intent as usize] += w;
            self.topical |= intent != Intent::GeneralQuestion;
        }
        self.flags |= entry.flags;
    }
}

#[derive(Debug)]
struct Phrase {
    words: Vec<&'static str>,
    entry: Entry,
}

/// The compiled lexicon: built once, read by every classification.
struct Lexicon {
    canon: HashMap<&'static str, &'static str>,
    /// Every known word: keywords (with scores and flags), function words, period words.
    words: HashMap<&'static str, Entry>,
    /// Phrases by their first word, longest first.
    phrases: HashMap<&'static str, Vec<Phrase>>,
    typos: TypoIndex,
}

static LEXICON: LazyLock<Lexicon> = LazyLock::new(Lexicon::build);

impl Lexicon {
    fn build() -> Lexicon {
        let mut words: HashMap<&'static str, Entry> = HashMap::new();
        let mut phrases: HashMap<Vec<&'static str>, Entry> = HashMap::new();
        fn entry_for<'m>(
            words: &'m mut HashMap<&'static str, Entry>,
            phrases: &'m mut HashMap<Vec<&'static str>, Entry>,
            term: &'static str,
        ) -> &'m mut Entry {
            if term.contains(' ') {
                phrases.entry(term.split(' ').collect()).or_default()
            } else {
                words.entry(term).or_default()
            }
        }
        let data = &*DATA;
        for k in &data.keywords {
            for term in &k.terms {
                entry_for(&mut words, &mut phrases, term)
                    .scores
                    .push((k.intent, k.weight));
            }
        }
        for (name, terms) in &data.flags {
            let flag = flag_of(name);
            for term in terms {
                entry_for(&mut words, &mut phrases, term).flags |= flag;
            }
        }
        let mut phrase_index: HashMap<&'static str, Vec<Phrase>> = HashMap::new();
        for (ws, entry) in phrases {
            for w in &ws {
                words.entry(w).or_default();
            }
            phrase_index
                .entry(ws[0])
                .or_default()
                .push(Phrase { words: ws, entry });
        }
        for list in phrase_index.values_mut() {
            list.sort_by(|a, b| {
                b.words
                    .len()
                    .cmp(&a.words.len())
                    .then(a.words.cmp(&b.words))
            });
        }
        let known = data
            .words
            .function
            .iter()
            .map(String::as_str)
            .chain(entities::PERIOD_WORDS.iter().copied())
            .chain(data.canon.values().map(String::as_str))
            .chain(data.words.months_and_units.iter().map(String::as_str));
        for w in known {
            words.entry(w).or_default();
        }
        let typos = TypoIndex::new(
            words
                .keys()
                .filter(|w| w.chars().all(char::is_alphabetic))
                .map(|w| (*w).to_owned()),
        );
        Lexicon {
            canon: data
                .canon
                .iter()
                .map(|(from, to)| (from.as_str(), to.as_str()))
                .collect(),
            words,
            phrases: phrase_index,
            typos,
        }
    }
}

/// Whether `word` (lower-case) is a word of the lexicon: a keyword, function word, period
/// word. The catalogue does not let such words name a master on their own.
pub(crate) fn is_common_word(word: &str) -> bool {
    LEXICON.words.contains_key(word) || LEXICON.canon.contains_key(word)
}

// ---------------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------------

/// A normalised word of the message.
struct Token<'a> {
    /// Canonical form.
    text: &'a str,
    /// Byte offset in the message, to order entities as written.
    at: usize,
    /// Written in capitals ("DO", not "do").
    upper: bool,
    /// Neither a lexicon word, a catalogue word nor a number: content the classifier does not
    /// understand.
    unknown: bool,
}

/// Normalises one lower-case word: abbreviation map, "-nya"/"di-" affixes, one typo.
/// Longest word (in bytes) that typo correction looks at.
const MAX_TYPO_WORD: usize = 32;

fn normalise<'a>(word: &'a str, catalog: &'a Catalog) -> (&'a str, bool) {
    let lex = &*LEXICON;
    if let Some(c) = lex.canon.get(word) {
        return (c, false);
    }
    if word.bytes().all(|b| b.is_ascii_digit())
        || lex.words.contains_key(word)
        || catalog.knows(word)
    {
        return (word, false);
    }
    let known = |w: &str| lex.words.contains_key(w) || lex.canon.contains_key(w);
    // "stoknya", "omzetnya", "dikirim" → "stok", "omzet", "kirim"
    for stem in [word.strip_suffix("nya"), word.strip_prefix("di")]
        .into_iter()
        .flatten()
    {
        if stem.len() >= 3 {
            if let Some(c) = lex.canon.get(stem) {
                return (c, false);
            }
            if known(stem) || catalog.knows(stem) {
                return (stem, false);
            }
        }
    }
    // Typo correction costs a string per letter, each as long as the word: only words of a
    // length a lexicon or catalogue word can have are tried.
    if (4..=MAX_TYPO_WORD).contains(&word.len()) && word.chars().all(char::is_alphabetic) {
        let variants = if word.chars().count() >= 5 {
            crate::brain::catalog::deletions(word)
        } else {
            Vec::new()
        };
        if let Some(w) = lex.typos.correct(word, &variants) {
            let w = lex.canon.get(w).copied().unwrap_or(w);
            return (w, false);
        }
        if let Some(w) = catalog.correct(word, &variants) {
            return (w, false);
        }
    }
    (word, true)
}

/// Classifies a WhatsApp message: intent, entities, confidence and whether it is a bare
/// follow-up. Deterministic and allocation-light; `catalog` supplies the masters' names.
pub fn classify(text: &str, catalog: &Catalog) -> Classification {
    let raw = text.trim();
    let mut lower = raw.to_owned();
    lower.make_ascii_lowercase();

    if let Some(code) = entities::otp_code(&lower) {
        return Classification {
            intent: Intent::OtpCode,
            entities: Entities {
                otp: Some(code),
                ..Entities::default()
            },
            confidence: 0.99,
            follow_up: false,
        };
    }

    let scan = entities::scan(&lower);
    let mut tokens: Vec<Token<'_>> = Vec::with_capacity(16);
    let bytes = scan.rest.as_bytes();
    let mut start = None;
    for (i, c) in scan
        .rest
        .char_indices()
        .chain(std::iter::once((bytes.len(), ' ')))
    {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            let word = &scan.rest[s..i];
            let (text, unknown) = normalise(word, catalog);
            let upper = raw.as_bytes()[s..i].iter().all(u8::is_ascii_uppercase);
            tokens.push(Token {
                text,
                at: s,
                upper,
                unknown,
            });
        }
    }
    let words: Vec<&str> = tokens.iter().map(|t| t.text).collect();
    let mut taken = vec![false; tokens.len()];

    // periods, then "mesin 3", then names
    let period_hits = entities::periods(&words);
    for p in &period_hits {
        taken[p.span.clone()].fill(true);
    }
    let mut masters: Vec<(usize, Vec<MasterRef>)> = Vec::new();
    for hit in &scan.codes {
        masters.push((
            hit.at,
            vec![MasterRef {
                kind: hit.kind,
                code: hit.code.clone(),
                name: catalog.get(&hit.code).map(|e| e.name.clone()),
                matched: hit.matched.clone(),
                by: MatchedBy::Code,
            }],
        ));
    }
    for i in 0..words.len() {
        if taken[i] || !matches!(words[i], "mesin" | "machine") {
            continue;
        }
        // "mesin 3", "mesin no 3", not "mesin 2 jam"
        let mut j = i + 1;
        if matches!(words.get(j), Some(&("no" | "nomor"))) {
            j += 1;
        }
        let Some(n) = words
            .get(j)
            .filter(|w| w.len() <= 2 && w.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|w| w.parse::<u32>().ok())
        else {
            continue;
        };
        if words
            .get(j + 1)
            .is_some_and(|u| matches!(*u, "jam" | "hari" | "menit" | "kali" | "unit" | "x"))
        {
            continue;
        }
        let code = format!("MCH-{n:03}");
        if let Some(e) = catalog.get(&code) {
            taken[i..=j].fill(true);
            masters.push((
                tokens[i].at,
                vec![MasterRef {
                    kind: e.kind,
                    code: e.code.clone(),
                    name: Some(e.name.clone()),
                    matched: words[i..=j].join(" "),
                    by: MatchedBy::Code,
                }],
            ));
        }
    }
    for hit in catalog.match_names(&words, &taken) {
        taken[hit.span.clone()].fill(true);
        // "mesin cnc", "CNC machine": the word introduces the name, it is not a topic
        if hit.entries.iter().any(|e| e.kind == MasterKind::Machine) {
            let is_machine_word = |k: usize| matches!(words[k], "mesin" | "machine");
            if hit.span.start > 0 && is_machine_word(hit.span.start - 1) {
                taken[hit.span.start - 1] = true;
            }
            if hit.span.end < words.len() && is_machine_word(hit.span.end) {
                taken[hit.span.end] = true;
            }
        }
        masters.push((
            tokens[hit.span.start].at,
            hit.entries
                .iter()
                .map(|e| MasterRef {
                    kind: e.kind,
                    code: e.code.clone(),
                    name: Some(e.name.clone()),
                    matched: hit.matched.clone(),
                    by: MatchedBy::Name,
                })
                .collect(),
        ));
    }
    masters.sort_by_key(|(at, _)| *at);

    // keywords and phrases
    let lex = &*LEXICON;
    let mut tally = Tally::default();
    let mut i = 0;
    'words: while i < words.len() {
        if taken[i] {
            i += 1;
            continue;
        }
        let w = words[i];
        if let Some(list) = lex.phrases.get(w) {
            for p in list {
                let end = i + p.words.len();
                if end <= words.len()
                    && !taken[i..end].contains(&true)
                    && p.words.iter().zip(&words[i..end]).all(|(a, b)| a == b)
                {
                    tally.add(&p.entry);
                    i = end;
                    continue 'words;
                }
            }
        }
        // "SO"/"DO" in capitals are document kinds; "so"/"do" are mostly English words
        let key = match w {
            "so" if tokens[i].upper => "SO",
            "do" if tokens[i].upper => "DO",
            _ => w,
        };
        if let Some(entry) = lex.words.get(key) {
            tally.add(entry);
        }
        i += 1;
    }
    let Tally {
        mut scores,
        flags,
        topical,
    } = tally;

    // what the named things suggest
    let mut has_vendor = flags & VENDOR_WORD != 0;
    let mut has_customer = flags & CUSTOMER_WORD != 0;
    for d in &scan.documents {
        let (intent, w) = doc_hint(d.kind);
        scores[intent as usize] += w;
    }
    for (_, candidates) in &masters {
        let mut kinds: Vec<MasterKind> = candidates.iter().map(|m| m.kind).collect();
        kinds.dedup();
        let share = 1.0 / kinds.len() as f32;
        for kind in kinds {
            let (intent, w) = kind_hint(kind);
            scores[intent as usize] += w * share;
            has_vendor |= kind == MasterKind::Vendor;
            has_customer |= kind == MasterKind::Customer;
        }
    }
    let duration = entities::duration(&words);
    if flags & BILL != 0 && has_vendor {
        scores[Intent::Payables as usize] += 4.0;
    }
    if flags & BILL != 0 && has_customer {
        scores[Intent::Receivables as usize] += 4.0;
    }
    if flags & ORDER_WORD != 0 && has_vendor {
        scores[Intent::PurchaseStatus as usize] += 4.0;
    }
    if flags & MUTE_WORD != 0 {
        if flags & ALERT_WORD != 0 {
            scores[Intent::AlertMute as usize] += 4.0;
        } else if duration.is_some() && masters.is_empty() && scan.documents.is_empty() {
            scores[Intent::AlertMute as usize] += 3.0;
        }
    }

    // decide
    let mut ranked: Vec<(Intent, f32)> = Intent::ALL
        .iter()
        .map(|&i| (i, scores[i as usize]))
        .filter(|(_, s)| *s > 0.0)
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (intent, confidence) = match ranked.first() {
        None => (Intent::GeneralQuestion, 0.5),
        Some(&(best, s1)) => {
            let s2 = ranked.get(1).map_or(0.0, |r| r.1);
            let strength = 1.0 - (-s1 / 2.5).exp();
            let margin = (s1 - s2) / s1;
            let c = strength * (0.5 + 0.5 * margin);
            if best != Intent::GeneralQuestion && c < MIN_CONFIDENCE {
                (Intent::GeneralQuestion, 0.5 * (1.0 - c))
            } else {
                (best, c)
            }
        }
    };
    let has_context = !scan.documents.is_empty()
        || !masters.is_empty()
        || !scan.uuids.is_empty()
        || !period_hits.is_empty();
    let unknown_content = tokens
        .iter()
        .zip(&taken)
        .any(|(t, taken)| t.unknown && !taken);
    let follow_up = has_context && !topical && flags & REQUEST_WORD == 0 && !unknown_content;

    // a shared name keeps the candidates the intent can use
    let preferred = preferred_kinds(intent);
    let mut refs: Vec<MasterRef> = Vec::new();
    for (_, mut candidates) in masters {
        if candidates.len() > 1 {
            let fitting: Vec<MasterRef> = candidates
                .iter()
                .filter(|m| preferred.contains(&m.kind))
                .cloned()
                .collect();
            if !fitting.is_empty() {
                let best_kind = preferred
                    .iter()
                    .find(|k| fitting.iter().any(|m| m.kind == **k))
                    .copied();
                candidates = fitting
                    .into_iter()
                    .filter(|m| Some(m.kind) == best_kind)
                    .collect();
            }
        }
        for m in candidates {
            if !refs.iter().any(|r| r.code == m.code) {
                refs.push(m);
            }
        }
    }

    let mut periods = period_hits.into_iter().map(|p| p.period);
    let period = periods.next();
    let compare_period = periods.find(|p| Some(*p) != period);
    Classification {
        intent,
        entities: Entities {
            documents: scan.documents,
            masters: refs,
            uuids: scan.uuids,
            period,
            compare_period,
            mute_minutes: duration
                .filter(|_| intent == Intent::AlertMute)
                .map(|(m, _)| m),
            otp: None,
        },
        confidence: (confidence * 100.0).round() / 100.0,
        follow_up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str) -> Classification {
        classify(text, &Catalog::blueprint_sample())
    }

    #[test]
    fn finance_questions_need_fin_read() {
        assert_eq!(
            c("piutang yang overdue siapa saja?").intent,
            Intent::Receivables
        );
        assert_eq!(Intent::Receivables.permission(), Some("FIN.READ"));
        assert_eq!(c("omzet bulan ini brp").intent, Intent::SalesSummary);
        assert_eq!(c("halo").intent, Intent::GeneralQuestion);
        assert_eq!(Intent::GeneralQuestion.permission(), None);
    }

    #[test]
    fn intent_names_round_trip() {
        for i in Intent::ALL {
            assert_eq!(i.as_str().parse::<Intent>(), Ok(i));
            assert_eq!(
                serde_json::to_value(i).unwrap(),
                serde_json::json!(i.as_str())
            );
            assert_eq!(Intent::ALL[i as usize], i);
        }
        assert!("omzet".parse::<Intent>().is_err());
    }

    #[test]
    fn phone_typing_is_understood() {
        assert_eq!(c("STOK MOTOR DC BRP??").intent, Intent::StockLevel);
        assert_eq!(c("omzed bln ini 📈").intent, Intent::SalesSummary);
        assert_eq!(c("piutng maju jaya").intent, Intent::Receivables);
        assert_eq!(c("stoknya widget").intent, Intent::StockLevel);
        assert_eq!(
            c("mesin welding sdh diperbaiki blm").intent,
            Intent::MachineHealth
        );
    }

    #[test]
    fn a_six_digit_code_is_an_otp_but_a_document_is_not() {
        let otp = c("123 456");
        assert_eq!(otp.intent, Intent::OtpCode);
        assert_eq!(otp.entities.otp.as_deref(), Some("123456"));
        assert_eq!(c("so 202412 0002").intent, Intent::OrderStatus);
    }

    #[test]
    fn muting_alerts_carries_the_duration() {
        let m = c("matikan alert 2 jam");
        assert_eq!(m.intent, Intent::AlertMute);
        assert_eq!(m.entities.mute_minutes, Some(120));
        assert_eq!(c("ada alert apa").intent, Intent::Alerts);
        assert_eq!(c("matikan mesin cnc?").intent, Intent::MachineHealth);
        assert_eq!(
            c("total penjualan 7 hari terakhir").entities.mute_minutes,
            None
        );
    }

    #[test]
    fn bare_follow_ups_are_marked() {
        let f = c("kalau bulan lalu?");
        assert!(f.follow_up);
        assert_eq!(f.intent, Intent::GeneralQuestion);
        assert_eq!(f.entities.period, Some(Period::LastMonth));
        let m = c("how about MCH-002?");
        assert!(m.follow_up);
        assert_eq!(m.intent, Intent::MachineHealth);
        assert!(!c("omzet bulan lalu").follow_up);
        assert!(!c("status MCH-001").follow_up, "a request of its own");
        assert!(!c("cuaca hari ini gmn").follow_up, "unknown content");
    }

    #[test]
    fn comparisons_carry_two_periods() {
        let e = c("omzet bln ini vs bln lalu").entities;
        assert_eq!(e.period, Some(Period::ThisMonth));
        assert_eq!(e.compare_period, Some(Period::LastMonth));
    }

    #[test]
    fn a_shared_name_is_settled_by_the_intent() {
        let codes = |t: &str| -> Vec<String> {
            c(t).entities
                .masters
                .iter()
                .map(|m| m.code.clone())
                .collect()
        };
        assert_eq!(codes("tagihan global"), ["CUST-005"]);
        assert_eq!(codes("hutang ke global"), ["VND-003"]);
        assert_eq!(codes("global"), ["CUST-005", "VND-003"]);
    }

    #[test]
    fn confidence_is_higher_for_clear_questions() {
        let clear = c("omzet bulan ini brp").confidence;
        let mixed = c("kirim ke sentosa kapan").confidence;
        assert!((0.0..=1.0).contains(&clear) && (0.0..=1.0).contains(&mixed));
        assert!(clear > mixed, "{clear} vs {mixed}");
        assert!(clear >= 0.7, "{clear}");
    }

    #[test]
    fn json_has_intent_entities_and_confidence() {
        let v = serde_json::to_value(c("stok motor dc brp")).unwrap();
        assert_eq!(v["intent"], "stock_level");
        assert_eq!(v["entities"]["masters"][0]["code"], "ITM-005");
        assert!(v["confidence"].as_f64().unwrap() > 0.5);
    }
}

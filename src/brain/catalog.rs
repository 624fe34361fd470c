//! The masters a question may name: customers, items, vendors, machines and warehouses, with
//! the aliases people use for them ("motor dc" for Motor DC 12V, "maju jaya" for PT Maju Jaya,
//! "robot las" for Welding Robot C1). Built once from the live rows and shared; matching a
//! question against it costs a few hash lookups per word.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;

/// The kind of a master row, by table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MasterKind {
    /// `m_cust`
    Customer,
    /// `m_item`
    Item,
    /// `m_vendor`
    Vendor,
    /// `m_machine`
    Machine,
    /// `m_wh`
    Warehouse,
}

impl MasterKind {
    /// The prefix of the kind's codes (`CUST-001`, `WH-A1`).
    pub fn code_prefix(self) -> &'static str {
        match self {
            MasterKind::Customer => "CUST",
            MasterKind::Item => "ITM",
            MasterKind::Vendor => "VND",
            MasterKind::Machine => "MCH",
            MasterKind::Warehouse => "WH",
        }
    }

    fn parse(s: &str) -> Option<MasterKind> {
        match s {
            "customer" => Some(MasterKind::Customer),
            "item" => Some(MasterKind::Item),
            "vendor" => Some(MasterKind::Vendor),
            "machine" => Some(MasterKind::Machine),
            "warehouse" => Some(MasterKind::Warehouse),
            _ => None,
        }
    }
}

/// One master row as the catalogue knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterEntry {
    pub kind: MasterKind,
    /// The row's `code` (`ITM-005`).
    pub code: String,
    /// The row's `name` (`Motor DC 12V`).
    pub name: String,
}

impl MasterEntry {
    pub fn new(kind: MasterKind, code: impl Into<String>, name: impl Into<String>) -> Self {
        MasterEntry {
            kind,
            code: code.into(),
            name: name.into(),
        }
    }
}

/// An alias: the normalised words that name one or more masters.
#[derive(Debug)]
struct Alias {
    words: Vec<String>,
    /// Indexes into `entries`; more than one when the words are shared ("global").
    entries: Vec<usize>,
}

/// A name match in a token sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameHit<'c> {
    /// Token positions covered.
    pub span: std::ops::Range<usize>,
    /// The matched alias, normalised.
    pub matched: String,
    /// Candidate entries (several when the alias is shared).
    pub entries: Vec<&'c MasterEntry>,
}

/// Legal forms and words too generic to name one master on their own.
const GENERIC: &[&str] = &[
    "pt",
    "cv",
    "ud",
    "tbk",
    "pd",
    "fa",
    "gudang",
    "goods",
    "finished",
    "bahan",
    "baku",
    "plant",
    "line",
    "raw",
    "material",
    "indonesia",
    "the",
    "and",
    "dan",
    "co",
    "ltd",
    "inc",
];

/// Indonesian and shop-floor words for words in master names: when a name contains the
/// first, the second names the same master ("plat baja" for Steel Plate 3mm).
const SYNONYMS: &[(&str, &[&str])] = &[
    (
        "steel plate",
        &["plat baja", "pelat baja", "plat besi", "pelat besi"],
    ),
    (
        "welding robot",
        &["robot las", "robot welding", "mesin las"],
    ),
    ("welding", &["las"]),
    (
        "injection molding",
        &["mesin injeksi", "injection moulding"],
    ),
    ("injection", &["injeksi"]),
    ("milling", &["frais"]),
    ("finished goods", &["barang jadi", "fg"]),
    ("bahan baku", &["raw material", "bb"]),
];

/// Lower-case alphanumeric words of a name.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The masters, their codes and aliases.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: Vec<MasterEntry>,
    by_code: HashMap<String, usize>,
    /// Aliases by their first word, longest first.
    aliases: HashMap<String, Vec<Alias>>,
    /// Every alias word: to know a word is not unknown content, and to correct typos.
    typos: TypoIndex,
}

impl Catalog {
    /// Live (not soft-deleted) customers, items, vendors, machines and warehouses.
    #[tracing::instrument(skip_all)]
    pub async fn load(pool: &PgPool) -> anyhow::Result<Catalog> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "select 'customer', code, name from m_cust where deleted_at is null
             union all select 'item', code, name from m_item where deleted_at is null
             union all select 'vendor', code, name from m_vendor where deleted_at is null
             union all select 'machine', code, name from m_machine where deleted_at is null
             union all select 'warehouse', code, name from m_wh where deleted_at is null
             order by 1, 2",
        )
        .fetch_all(pool)
        .await
        .context("cannot load the masters (m_cust, m_item, m_vendor, m_machine, m_wh)")?;
        Ok(Catalog::from_entries(rows.into_iter().filter_map(
            |(kind, code, name)| Some(MasterEntry::new(MasterKind::parse(&kind)?, code, name)),
        )))
    }

    /// A catalogue of the given masters (tests, benchmarks, or masters from elsewhere).
    pub fn from_entries(entries: impl IntoIterator<Item = MasterEntry>) -> Catalog {
        let mut catalog = Catalog::default();
        let mut aliases: HashMap<Vec<String>, Vec<usize>> = HashMap::new();
        for entry in entries {
            let i = catalog.entries.len();
            catalog.by_code.insert(entry.code.to_uppercase(), i);
            for alias in derive_aliases(&entry) {
                let list = aliases.entry(alias).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
            catalog.entries.push(entry);
        }
        let mut vocab = HashSet::new();
        for (words, entries) in aliases {
            vocab.extend(words.iter().cloned());
            catalog
                .aliases
                .entry(words[0].clone())
                .or_default()
                .push(Alias { words, entries });
        }
        for list in catalog.aliases.values_mut() {
            list.sort_by(|a, b| {
                b.words
                    .len()
                    .cmp(&a.words.len())
                    .then(a.words.cmp(&b.words))
            });
        }
        catalog.typos = TypoIndex::new(vocab);
        catalog
    }

    /// The blueprint's sample masters (section 1.8, as loaded by the demo data), for tests
    /// and benchmarks that run without a database.
    pub fn blueprint_sample() -> Catalog {
        use MasterKind::*;
        Catalog::from_entries(
            [
                (Customer, "CUST-001", "PT ABC Manufacturing"),
                (Customer, "CUST-002", "CV XYZ Trading"),
                (Customer, "CUST-003", "PT Maju Jaya"),
                (Customer, "CUST-004", "UD Sentosa"),
                (Customer, "CUST-005", "PT Global Tech"),
                (Item, "ITM-001", "Widget Pro X1"),
                (Item, "ITM-002", "Component Alpha"),
                (Item, "ITM-003", "Assembly Kit B"),
                (Item, "ITM-004", "Steel Plate 3mm"),
                (Item, "ITM-005", "Motor DC 12V"),
                (Vendor, "VND-001", "PT Baja Makmur"),
                (Vendor, "VND-002", "CV Jaya Abadi"),
                (Vendor, "VND-003", "PT Global Supply"),
                (Machine, "MCH-001", "CNC Milling A1"),
                (Machine, "MCH-002", "Injection Molding B2"),
                (Machine, "MCH-003", "Welding Robot C1"),
                (Warehouse, "WH-A1", "Gudang Bahan Baku"),
                (Warehouse, "WH-B1", "Gudang Finished Goods"),
                (Warehouse, "WH-C1", "Gudang WIP"),
            ]
            .map(|(kind, code, name)| MasterEntry::new(kind, code, name)),
        )
    }

    /// Every master, in load order.
    pub fn entries(&self) -> &[MasterEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The master with this code (any case).
    pub fn get(&self, code: &str) -> Option<&MasterEntry> {
        let i = match self.by_code.get(code) {
            Some(i) => *i,
            None => *self.by_code.get(&code.to_uppercase())?,
        };
        self.entries.get(i)
    }

    /// Whether `word` (normalised) is part of some master's alias.
    pub(crate) fn knows(&self, word: &str) -> bool {
        self.typos.contains(word)
    }

    /// The alias word `word` is one typo away from, if exactly one (see [`TypoIndex`]).
    pub(crate) fn correct(&self, word: &str, variants: &[String]) -> Option<&str> {
        self.typos.correct(word, variants)
    }

    /// Names in normalised tokens, longest alias first, left to right. Tokens in `skip` are
    /// already taken (by periods, for instance).
    pub(crate) fn match_names(&self, tokens: &[&str], skip: &[bool]) -> Vec<NameHit<'_>> {
        let mut out = Vec::new();
        let mut i = 0;
        'tokens: while i < tokens.len() {
            if skip.get(i).copied().unwrap_or(false) {
                i += 1;
                continue;
            }
            if let Some(list) = self.aliases.get(tokens[i]) {
                for alias in list {
                    let end = i + alias.words.len();
                    if end <= tokens.len()
                        && (i..end).all(|j| !skip.get(j).copied().unwrap_or(false))
                        && alias.words.iter().zip(&tokens[i..end]).all(|(a, t)| a == t)
                    {
                        out.push(NameHit {
                            span: i..end,
                            matched: alias.words.join(" "),
                            entries: alias.entries.iter().map(|&e| &self.entries[e]).collect(),
                        });
                        i = end;
                        continue 'tokens;
                    }
                }
            }
            i += 1;
        }
        out
    }
}

/// The aliases of one master: its normalised name without legal forms, for all but
/// warehouses every run of two or more of its words and every distinctive single word, plus
/// the synonyms of words it contains.
fn derive_aliases(entry: &MasterEntry) -> Vec<Vec<String>> {
    let name: Vec<String> = words(&entry.name)
        .into_iter()
        .filter(|w| !matches!(w.as_str(), "pt" | "cv" | "ud" | "tbk" | "pd"))
        .collect();
    let mut variants = vec![name.clone()];
    let mut out: Vec<Vec<String>> = Vec::new();
    let joined = name.join(" ");
    for (from, tos) in SYNONYMS {
        if contains_words(&joined, from) {
            for to in *tos {
                variants.push(words(&joined.replacen(from, to, 1)));
                if entry.kind != MasterKind::Warehouse {
                    out.push(words(to));
                }
            }
        }
    }
    for v in variants {
        if v.is_empty() {
            continue;
        }
        if entry.kind == MasterKind::Warehouse {
            out.push(v);
            continue;
        }
        for len in 1..=v.len() {
            for start in 0..=v.len() - len {
                let run = &v[start..start + len];
                if len == 1 {
                    let w = run[0].as_str();
                    let distinctive = w.chars().count() >= 3
                        && w.chars().any(char::is_alphabetic)
                        && !GENERIC.contains(&w)
                        && !super::intent::is_common_word(w);
                    if !distinctive {
                        continue;
                    }
                } else if run.iter().all(|w| GENERIC.contains(&w.as_str())) {
                    continue;
                }
                out.push(run.to_vec());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether `phrase` occurs in `text` as whole words.
fn contains_words(text: &str, phrase: &str) -> bool {
    text.match_indices(phrase).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + phrase.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Words and their one-deletion variants, for correcting one typo (a letter missing, added,
/// replaced, or two letters swapped) in words of five letters or more; four-letter words only
/// when a letter is missing ("alrt"). Shorter words are never corrected: too many are valid.
#[derive(Debug, Default)]
pub(crate) struct TypoIndex {
    words: HashSet<String>,
    /// Variant → the word it comes from; `None` when several words share it.
    deletes: HashMap<String, Option<String>>,
}

impl TypoIndex {
    pub(crate) fn new(words: impl IntoIterator<Item = String>) -> TypoIndex {
        let mut index = TypoIndex {
            words: words.into_iter().collect(),
            deletes: HashMap::new(),
        };
        let mut sorted: Vec<&String> = index.words.iter().collect();
        sorted.sort();
        for w in sorted {
            if w.chars().count() < 5 {
                continue;
            }
            for variant in deletions(w) {
                index
                    .deletes
                    .entry(variant)
                    .and_modify(|v| {
                        if v.as_deref() != Some(w.as_str()) {
                            *v = None;
                        }
                    })
                    .or_insert_with(|| Some(w.clone()));
            }
        }
        index
    }

    pub(crate) fn contains(&self, word: &str) -> bool {
        self.words.contains(word)
    }

    /// The one word `word` is a typo of, given `variants` = [`deletions`] of `word` (computed
    /// once by the caller and shared between indexes; empty for words under five letters).
    pub(crate) fn correct(&self, word: &str, variants: &[String]) -> Option<&str> {
        if word.len() >= 4 {
            if let Some(Some(w)) = self.deletes.get(word) {
                return Some(w);
            }
        }
        for v in variants {
            if v.chars().count() >= 4 {
                if let Some(w) = self.words.get(v.as_str()) {
                    return Some(w);
                }
            }
        }
        for v in variants {
            if let Some(Some(w)) = self.deletes.get(v.as_str()) {
                return Some(w);
            }
        }
        None
    }
}

/// Every variant of `word` with one character deleted.
pub(crate) fn deletions(word: &str) -> Vec<String> {
    word.char_indices()
        .map(|(at, c)| {
            let mut v = String::with_capacity(word.len());
            v.push_str(&word[..at]);
            v.push_str(&word[at + c.len_utf8()..]);
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(catalog: &Catalog, text: &str) -> Vec<Vec<String>> {
        let ws = words(text);
        let tokens: Vec<&str> = ws.iter().map(String::as_str).collect();
        catalog
            .match_names(&tokens, &[])
            .into_iter()
            .map(|h| h.entries.iter().map(|e| e.code.clone()).collect())
            .collect()
    }

    #[test]
    fn names_are_matched_loosely() {
        let c = Catalog::blueprint_sample();
        assert_eq!(find(&c, "stok motor dc brp"), [["ITM-005"]]);
        assert_eq!(find(&c, "order maju jaya"), [["CUST-003"]]);
        assert_eq!(find(&c, "mesin cnc"), [["MCH-001"]]);
        assert_eq!(find(&c, "welding"), [["MCH-003"]]);
        assert_eq!(find(&c, "robot las"), [["MCH-003"]]);
        assert_eq!(find(&c, "hutang baja makmur"), [["VND-001"]]);
        assert_eq!(find(&c, "stok plat baja"), [["ITM-004"]]);
        assert_eq!(find(&c, "isi gudang bahan baku"), [["WH-A1"]]);
        assert_eq!(find(&c, "gudang wip"), [["WH-C1"]]);
        assert_eq!(
            find(&c, "widget pro x1 dan jaya abadi"),
            [["ITM-001"], ["VND-002"]]
        );
    }

    #[test]
    fn a_shared_word_names_every_candidate() {
        let c = Catalog::blueprint_sample();
        assert_eq!(find(&c, "global"), [["CUST-005", "VND-003"]]);
        assert_eq!(find(&c, "jaya"), [["CUST-003", "VND-002"]]);
        assert_eq!(find(&c, "global tech"), [["CUST-005"]]);
    }

    #[test]
    fn generic_and_common_words_name_nothing() {
        let c = Catalog::blueprint_sample();
        assert!(find(&c, "gudang").is_empty());
        assert!(
            find(&c, "bahan baku").is_empty(),
            "a category, not the warehouse"
        );
        assert!(find(&c, "pt").is_empty());
        assert!(find(&c, "is the wo finished").is_empty());
    }

    #[test]
    fn one_typo_in_a_long_word_is_forgiven() {
        let c = Catalog::blueprint_sample();
        let fix = |w: &str| {
            let variants = if w.chars().count() >= 5 {
                deletions(w)
            } else {
                Vec::new()
            };
            c.correct(w, &variants).map(str::to_owned)
        };
        assert_eq!(fix("wleding").as_deref(), Some("welding"));
        assert_eq!(fix("weldng").as_deref(), Some("welding"));
        assert_eq!(fix("weldinng").as_deref(), Some("welding"));
        assert_eq!(fix("makmor").as_deref(), Some("makmur"));
        assert_eq!(fix("motr").as_deref(), Some("motor"));
        assert_eq!(fix("mtor").as_deref(), Some("motor"));
        assert_eq!(fix("mator").as_deref(), Some("motor"));
        assert_eq!(fix("kotr"), None, "four letters: only a missing letter");
        assert_eq!(fix("cnc"), None);
        assert_eq!(fix("xylophone"), None);
    }

    #[test]
    fn codes_are_looked_up_in_any_case() {
        let c = Catalog::blueprint_sample();
        assert_eq!(c.get("itm-005").unwrap().name, "Motor DC 12V");
        assert_eq!(c.get("WH-B1").unwrap().kind, MasterKind::Warehouse);
        assert!(c.get("CUST-009").is_none());
        assert_eq!(c.len(), 19);
    }
}

//! The brain: what a question is about (intent and entities), whether the asker may ask it,
//! live context from the warehouse, the role-toned prompt, the LLM over NATS — and, when the
//! LLM is down, slow, open-circuited or not needed, a deterministic answer from the same data.
//!
//! `answer` takes no database transaction and holds no lock while the model thinks; the worker
//! records the result afterwards (`record`).

pub mod catalog;
pub mod context;
pub mod entities;
pub mod format;
pub mod ground;
pub mod intent;
pub mod mask;
pub mod prompt;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::config::{GroundingFallback, Settings};
use crate::identity::Caller;
use crate::llm::{ChatMessage, ChatReply, ChatRequest};
use crate::startup::AppState;
use crate::texts::{self, Lang};
use context::{Bilingual, Built, Params};
use intent::{classify, Intent};
use prompt::Turn;

/// An inbound message as the brain sees it.
pub struct Question<'a> {
    pub wamid: &'a str,
    pub msg_type: &'a str,
    pub text: Option<&'a str>,
    pub lang: Lang,
    /// The sender's wa_id, for the chat log.
    pub phone: Option<&'a str>,
}

/// How an answer came about (`ai_chat.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The LLM answered from the data.
    Llm,
    /// Answered from the data without the LLM (down, slow, open circuit, ungrounded, or an
    /// intent that needs no reasoning).
    Fallback,
    /// Outside the asker's permissions.
    Denied,
    /// Something must be named first.
    Clarify,
    /// The database failed; the asker got a polite apology.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Llm => "llm",
            Outcome::Fallback => "fallback",
            Outcome::Denied => "denied",
            Outcome::Clarify => "clarify",
            Outcome::Error => "error",
        }
    }
}

/// The brain's answer to one message.
#[derive(Debug, Clone)]
pub struct Answer {
    /// What to send; `None` = nothing (a reaction, a system notice).
    pub text: Option<String>,
    pub intent: Option<Intent>,
    pub outcome: Outcome,
    /// Prompt plus completion tokens of the LLM call, if any.
    pub tokens: i32,
    /// Time spent answering.
    pub latency_ms: i32,
}

/// What a question is about and what it names.
#[derive(Debug, Clone)]
pub struct Understanding {
    pub intent: Intent,
    pub params: Params,
}

/// Classifies `text` and extracts what it names; a bare follow-up ("kalau bulan lalu?") takes
/// the intent (and the document or code, unless it names its own) of the previous turn.
pub fn understand(text: &str, today: NaiveDate, previous: Option<&str>) -> Understanding {
    let intent = classify(text, &catalog::Catalog::default()).intent;
    let params = extract(text, today);
    let names_something = params.doc.is_some() || params.code.is_some() || params.period.is_some();
    if intent == Intent::GeneralQuestion && names_something {
        if let Some(prev) = previous {
            let before = understand(prev, today, None);
            if before.intent != Intent::GeneralQuestion {
                return Understanding {
                    intent: before.intent,
                    params: Params {
                        doc: params.doc.or(before.params.doc),
                        code: params.code.or(before.params.code),
                        period: params.period.or(before.params.period),
                    },
                };
            }
        }
    }
    Understanding { intent, params }
}

/// Document numbers, master codes and the common periods.
fn extract(text: &str, today: NaiveDate) -> Params {
    use std::sync::OnceLock;
    static DOC: OnceLock<regex::Regex> = OnceLock::new();
    static CODE: OnceLock<regex::Regex> = OnceLock::new();
    let doc = DOC.get_or_init(|| {
        regex::Regex::new(r"(?i)\b(SO|PO|DO|WO)[- ]?(\d{6})[- ]?(\d{4})\b").unwrap()
    });
    let code = CODE.get_or_init(|| {
        regex::Regex::new(r"(?i)\b(CUST|ITM|VND|MCH)[- ]?(\d{3})\b|\b(WH)[- ]?([A-C]\d)\b").unwrap()
    });
    let lower = text.to_lowercase();
    // "this month vs last month" is this month: the summary compares with the previous one.
    let this_month =
        lower.contains("bulan ini") || lower.contains("this month") || lower.contains("mtd");
    let period = if this_month {
        Some(context::this_month(today))
    } else if lower.contains("bulan lalu") || lower.contains("last month") {
        use chrono::Datelike;
        let this = today.with_day(1).expect("day 1");
        Some(context::Window {
            from: this - chrono::Months::new(1),
            to: this,
            label_id: "bulan lalu".into(),
            label_en: "last month".into(),
        })
    } else if lower.contains("minggu ini")
        || lower.contains("this week")
        || lower.contains("7 hari")
        || lower.contains("7 days")
    {
        Some(context::last_days(today, 7))
    } else {
        None
    };
    Params {
        doc: doc
            .captures(text)
            .map(|c| format!("{}-{}-{}", c[1].to_uppercase(), &c[2], &c[3])),
        code: code
            .captures(text)
            .map(|c| match (c.get(1), c.get(2), c.get(3), c.get(4)) {
                (Some(k), Some(n), _, _) => format!("{}-{}", k.as_str().to_uppercase(), n.as_str()),
                (_, _, Some(k), Some(n)) => format!(
                    "{}-{}",
                    k.as_str().to_uppercase(),
                    n.as_str().to_uppercase()
                ),
                _ => String::new(),
            })
            .filter(|c| !c.is_empty()),
        period,
    }
}

/// Everything decided before the LLM: intent, permission, context, prompt.
pub enum Prepared {
    /// Answer right away with this text.
    Direct {
        text: String,
        intent: Intent,
        outcome: Outcome,
    },
    /// Data to answer from, and the messages for the LLM.
    Ask {
        intent: Intent,
        snapshot: context::Snapshot,
        messages: Vec<ChatMessage>,
        /// Whether the data answer should be used without asking.
        data_only: bool,
    },
}

/// Prepares the answer to `text` from `caller`: no LLM, no writes.
pub async fn prepare(
    db: &PgPool,
    settings: &Settings,
    caller: &Caller,
    text: &str,
    lang: Lang,
) -> anyhow::Result<Prepared> {
    let now = Utc::now().with_timezone(&settings.app.timezone);
    let today = now.date_naive();
    let history = history(db, settings, caller.user_id).await?;
    let u = understand(text, today, history.last().map(|t| t.question.as_str()));
    if let Some(permission) = u.intent.permission() {
        if !caller.may(permission) {
            metrics::counter!("brain_denied_total").increment(1);
            return Ok(Prepared::Direct {
                text: texts::denied(lang, u.intent.area(lang)),
                intent: u.intent,
                outcome: Outcome::Denied,
            });
        }
    }
    match u.intent {
        Intent::OtpCode => {
            return Ok(Prepared::Direct {
                text: texts::already_verified(lang).to_owned(),
                intent: u.intent,
                outcome: Outcome::Fallback,
            })
        }
        Intent::AlertMute => {
            let hours = mute_hours(text);
            let until = sqlx::query_scalar::<_, chrono::DateTime<Utc>>(
                "insert into wa_alert_mute (user_id, until_at) values ($1, now() + make_interval(hours => $2))
                 on conflict (user_id) do update set until_at = excluded.until_at
                 returning until_at",
            )
            .bind(caller.user_id)
            .bind(hours)
            .fetch_one(db)
            .await
            .context("muting alerts")?;
            let local = until
                .with_timezone(&settings.app.timezone)
                .format("%H:%M")
                .to_string();
            return Ok(Prepared::Direct {
                text: texts::alerts_muted(lang, &local),
                intent: u.intent,
                outcome: Outcome::Fallback,
            });
        }
        _ => {}
    }
    let as_of = now.format("%d-%m-%Y %H:%M WIB").to_string();
    let built = context::build(db, u.intent, &u.params, today, &as_of).await?;
    let snapshot = match built {
        Built::Data(s) => s,
        Built::Clarify(b) => {
            return Ok(Prepared::Direct {
                text: b.get(lang).to_owned(),
                intent: u.intent,
                outcome: Outcome::Clarify,
            })
        }
        Built::NotFound(b) => {
            return Ok(Prepared::Direct {
                text: b.get(lang).to_owned(),
                intent: u.intent,
                outcome: Outcome::Fallback,
            })
        }
    };
    let intent_name = serde_json::to_value(u.intent)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let data_text = serde_json::to_string(&snapshot.data).unwrap_or_default();
    let messages = prompt::build(&prompt::Parts {
        tone: settings.brain.tone_of(&caller.role),
        lang,
        name: &caller.full_name,
        role: &caller.role,
        intent: &intent_name,
        as_of: &snapshot.as_of,
        data: &data_text,
        history: &history,
        question: text,
    });
    let data_only = settings.brain.data_only_intents.contains(&intent_name);
    Ok(Prepared::Ask {
        intent: u.intent,
        snapshot,
        messages,
        data_only,
    })
}

/// What `sentient-hub prompt --phone … "<text>"` prints: the exact messages the LLM would get,
/// or the direct answer when none would be sent.
pub async fn preview(settings: &Settings, phone: &str, text: &str) -> anyhow::Result<String> {
    let phone = crate::domain::phone::PhoneE164::parse(phone)
        .map_err(|e| anyhow::anyhow!("--phone: {e}"))?;
    let db = crate::db::connect(&settings.database).await?;
    let caller = crate::identity::gate::caller_by_phone(&db, &phone)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no active user holds {}", phone.masked()))?;
    let lang = Lang::detect(text);
    let out = match prepare(&db, settings, &caller, text, lang).await? {
        Prepared::Direct {
            text,
            intent,
            outcome,
        } => serde_json::to_string_pretty(&serde_json::json!({
            "intent": intent, "outcome": outcome.as_str(), "answer": text, "llm": false
        }))?,
        Prepared::Ask {
            intent,
            messages,
            data_only,
            snapshot,
        } => serde_json::to_string_pretty(&serde_json::json!({
            "intent": intent, "tone": settings.brain.tone_of(&caller.role), "as_of": snapshot.as_of,
            "llm": !data_only, "messages": messages
        }))?,
    };
    db.close().await;
    Ok(out)
}

/// Answers an admitted message: always an answer or a clear reason.
#[tracing::instrument(skip_all, fields(wamid = q.wamid))]
pub async fn answer(state: &AppState, caller: &Caller, q: &Question<'_>) -> Answer {
    let started = Instant::now();
    let elapsed = |started: Instant| started.elapsed().as_millis().min(i32::MAX as u128) as i32;
    let Some(text) = q.text.map(str::trim).filter(|t| !t.is_empty()) else {
        let text = match q.msg_type {
            "reaction" | "system" | "unsupported" => None,
            _ => Some(texts::text_only(q.lang).to_owned()),
        };
        return Answer {
            text,
            intent: None,
            outcome: Outcome::Fallback,
            tokens: 0,
            latency_ms: 0,
        };
    };
    let prepared = match prepare(&state.db, &state.settings, caller, text, q.lang).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot prepare an answer");
            return Answer {
                text: Some(texts::data_unavailable(q.lang).to_owned()),
                intent: None,
                outcome: Outcome::Error,
                tokens: 0,
                latency_ms: elapsed(started),
            };
        }
    };
    let (intent, snapshot, messages, data_only) = match prepared {
        Prepared::Direct {
            text,
            intent,
            outcome,
        } => {
            return Answer {
                text: Some(text),
                intent: Some(intent),
                outcome,
                tokens: 0,
                latency_ms: elapsed(started),
            }
        }
        Prepared::Ask {
            intent,
            snapshot,
            messages,
            data_only,
        } => (intent, snapshot, messages, data_only),
    };
    let fallback = |tokens: i32| Answer {
        text: Some(data_answer(&snapshot.answer, &snapshot.as_of, q.lang)),
        intent: Some(intent),
        outcome: Outcome::Fallback,
        tokens,
        latency_ms: elapsed(started),
    };
    if data_only || !state.breaker.allow() {
        metrics::counter!("brain_answers_total", "outcome" => "fallback").increment(1);
        return fallback(0);
    }
    match ask_llm(state, caller, q, intent, messages).await {
        Ok((content, tokens)) => {
            let mut numbers = Vec::new();
            ground::context_numbers(&snapshot.data, &mut numbers);
            numbers.extend(
                ground::figures(&snapshot.answer.id)
                    .into_iter()
                    .map(|f| f.value),
            );
            let invented = ground::unsupported(&content, &numbers);
            let policy = state.settings.brain.grounding_fallback;
            let reject = match policy {
                GroundingFallback::Any => !invented.is_empty(),
                GroundingFallback::Money => invented.iter().any(|f| f.money),
                GroundingFallback::Off => false,
            };
            if !invented.is_empty() {
                metrics::counter!("brain_ungrounded_total").increment(1);
                tracing::warn!(figures = ?invented.iter().map(|f| &f.text).collect::<Vec<_>>(), rejected = reject, "LLM answer has figures the data does not support");
            }
            if reject {
                return fallback(tokens);
            }
            metrics::counter!("brain_answers_total", "outcome" => "llm").increment(1);
            Answer {
                text: Some(content),
                intent: Some(intent),
                outcome: Outcome::Llm,
                tokens,
                latency_ms: elapsed(started),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "LLM unavailable; answering from the data");
            metrics::counter!("brain_answers_total", "outcome" => "fallback").increment(1);
            fallback(0)
        }
    }
}

/// The deterministic answer, marked as such.
fn data_answer(answer: &Bilingual, as_of: &str, lang: Lang) -> String {
    format!(
        "{}\n\n{}",
        answer.get(lang),
        texts::data_answer_mark(lang, as_of)
    )
}

/// One request over NATS, masked when the LLM is external; the breaker learns the outcome.
async fn ask_llm(
    state: &AppState,
    caller: &Caller,
    q: &Question<'_>,
    intent: Intent,
    mut messages: Vec<ChatMessage>,
) -> anyhow::Result<(String, i32)> {
    let settings = &state.settings.brain;
    let mut masker = mask::Masker::default();
    if settings.llm_external {
        let names: Vec<String> = sqlx::query_scalar(
            "select name from m_emp where deleted_at is null
             union select full_name from adm_user where deleted_at is null",
        )
        .fetch_all(&state.db)
        .await
        .context("reading names to mask")?;
        for m in &mut messages {
            m.content = masker.mask(&m.content, &names);
        }
    }
    let mut meta = serde_json::Map::new();
    meta.insert("intent".into(), serde_json::to_value(intent)?);
    meta.insert("role".into(), Value::from(caller.role.clone()));
    meta.insert("wamid".into(), Value::from(q.wamid));
    let request = ChatRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        messages,
        max_tokens: Some(settings.max_tokens),
        temperature: Some(settings.temperature),
        meta,
    };
    let timeout = Duration::from_secs(settings.llm_timeout_secs);
    let reply =
        crate::llm::client::ask(&state.nats, &state.settings.llm.subject, &request, timeout).await;
    match reply {
        Ok(ChatReply::Answer(a)) if !a.content.trim().is_empty() => {
            state.breaker.success();
            let tokens = (a.prompt_tokens + a.completion_tokens).min(i32::MAX as u64) as i32;
            Ok((masker.unmask(a.content.trim()), tokens))
        }
        Ok(ChatReply::Answer(_)) => {
            state.breaker.failure();
            anyhow::bail!("the LLM answered nothing")
        }
        Ok(ChatReply::Failure(f)) => {
            state.breaker.failure();
            anyhow::bail!(
                "the LLM worker answered {}: {}",
                f.error.code.as_str(),
                f.error.message
            )
        }
        Err(e) => {
            state.breaker.failure();
            Err(anyhow::Error::new(e))
        }
    }
}

/// The last turns of this user within the configured window, oldest first.
async fn history(db: &PgPool, settings: &Settings, user_id: i64) -> anyhow::Result<Vec<Turn>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select msg_in, msg_out from ai_chat
         where user_id = $1 and msg_in is not null and msg_out is not null
           and ts > now() - make_interval(mins => $2)
         order by ts desc, id desc limit $3",
    )
    .bind(user_id)
    .bind(settings.brain.history_minutes as i32)
    .bind(settings.brain.history_turns)
    .fetch_all(db)
    .await
    .context("reading recent turns")?;
    Ok(rows
        .into_iter()
        .rev()
        .map(|(question, answer)| Turn { question, answer })
        .collect())
}

/// "mute 2 jam", "snooze alerts 30 menit": hours (fractions for minutes), default 2, at most 24.
fn mute_hours(text: &str) -> f64 {
    let re = regex::Regex::new(r"(?i)(\d+)\s*(jam|hours?|hrs?|h|menit|minutes?|mins?|m)\b")
        .expect("valid regex");
    re.captures(text)
        .and_then(|c| {
            let n: f64 = c[1].parse().ok()?;
            let unit = c[2].to_lowercase();
            Some(if unit.starts_with('m') { n / 60.0 } else { n })
        })
        .unwrap_or(2.0)
        .clamp(0.1, 24.0)
}

/// Writes the exchange to `ai_chat` (once per inbound wamid).
pub async fn record(
    tx: &mut sqlx::PgConnection,
    caller: &Caller,
    q: &Question<'_>,
    answer: &Answer,
) -> anyhow::Result<()> {
    let Some(msg_in) = q.text else { return Ok(()) };
    let intent = answer
        .intent
        .and_then(|i| serde_json::to_value(i).ok())
        .and_then(|v| v.as_str().map(str::to_owned));
    sqlx::query(
        "insert into ai_chat (user_id, phone, user_role, msg_in, msg_out, intent, tokens_used,
                              latency_ms, outcome, wamid_in)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         on conflict (wamid_in) do nothing",
    )
    .bind(caller.user_id)
    .bind(q.phone.map(|p| format!("+{p}")))
    .bind(&caller.role)
    .bind(msg_in)
    .bind(&answer.text)
    .bind(intent)
    .bind(answer.tokens)
    .bind(answer.latency_ms)
    .bind(answer.outcome.as_str())
    .bind(q.wamid)
    .execute(&mut *tx)
    .await
    .context("writing ai_chat")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_follow_up_takes_the_previous_intent() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let u = understand("kalau bulan lalu?", today, Some("omzet bulan ini berapa?"));
        assert_eq!(u.intent, Intent::SalesSummary);
        assert_eq!(
            u.params.period.unwrap().from,
            NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()
        );
        let u = understand(
            "how about MCH-002?",
            today,
            Some("reject rate MCH-003 this week"),
        );
        assert_eq!(u.params.code.as_deref(), Some("MCH-002"));
    }

    #[test]
    fn mute_durations_are_read_and_bounded() {
        assert_eq!(mute_hours("mute alert 3 jam"), 3.0);
        assert_eq!(mute_hours("snooze 30 minutes"), 0.5);
        assert_eq!(mute_hours("matikan alert"), 2.0);
        assert_eq!(mute_hours("mute 99 hours"), 24.0);
    }
}

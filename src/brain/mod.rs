//! The brain: what a question is about (intent and entities), whether the asker may ask it,
//! live context from the warehouse, the role-toned prompt, the LLM over NATS — and, when the
//! LLM is down, slow, open-circuited or not needed, a deterministic answer from the same data.
//!
//! [`Brain::answer`] takes no database transaction and holds no lock while the model thinks;
//! the worker records the result afterwards ([`record`]), and the sender tells the chat log the
//! wamid of the sent answer ([`record_sent_answer`]).

pub mod catalog;
pub mod context;
pub mod entities;
pub mod ground;
pub mod intent;
pub mod mask;
pub mod period;
pub mod prompt;
pub mod propose;
pub mod understand;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::PgPool;

use crate::config::{BrainSettings, GroundingFallback};
use crate::domain::Caller;
use crate::executive::{approvals, Executive};
use crate::llm::breaker::Breaker;
use crate::llm::{ChatMessage, ChatReply, ChatRequest};
use crate::metrics::catalogue::CATALOGUE;
use crate::metrics::chart::{self, Chart};
use crate::metrics::compile::{self, Bind};
use crate::metrics::render;
use crate::metrics::run::{self, Rows};
use crate::metrics::spec::Spec;
use crate::outbox::sender::Sent;
use crate::texts::{self, Lang};
use catalog::Catalog;
use context::{Bilingual, Built, Params};
use entities::{Entities, Period};
use intent::{classify, Intent};
use prompt::Turn;
use understand::{Reading, WORDS};

/// The masters' codes and names the classifier matches against: loaded at start, refreshed by
/// a worker (`refresh_catalog`), read without waiting.
#[derive(Clone)]
pub struct SharedCatalog(Arc<RwLock<Arc<Catalog>>>);

impl SharedCatalog {
    pub fn new(catalog: Catalog) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(catalog))))
    }

    pub fn current(&self) -> Arc<Catalog> {
        self.0.read().expect("catalog lock").clone()
    }

    fn replace(&self, catalog: Catalog) {
        *self.0.write().expect("catalog lock") = Arc::new(catalog);
    }

    /// Reads the masters again now (new customers and items are recognised at once).
    pub async fn reload(&self, db: &PgPool) -> anyhow::Result<()> {
        self.replace(Catalog::load(db).await?);
        Ok(())
    }

    /// Reloads the catalogue every five minutes, so new customers and items are recognised.
    pub async fn refresh(self, db: PgPool, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(300)) => {}
            }
            match self.reload(&db).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot refresh the catalogue; keeping the old one")
                }
            }
        }
    }
}

/// Everything the brain decides before the LLM, from the warehouse: no LLM, no writes but the
/// asker's own settings (alert mute, morning digest). Cheap to clone.
#[derive(Clone)]
pub struct Preparer {
    db: PgPool,
    catalog: SharedCatalog,
    settings: Arc<BrainSettings>,
    /// The morning digest's defaults ("digest jam 6", "stop digest") and the approvals' rules.
    executive: Arc<Executive>,
    /// Zone of "today" and of the times in answers.
    timezone: chrono_tz::Tz,
}

impl Preparer {
    pub fn new(
        db: PgPool,
        catalog: SharedCatalog,
        settings: BrainSettings,
        executive: Executive,
        timezone: chrono_tz::Tz,
    ) -> Self {
        Self {
            db,
            catalog,
            settings: Arc::new(settings),
            executive: Arc::new(executive),
            timezone,
        }
    }

    /// The preparer the configuration describes (its brain settings, approvals and timezone).
    pub fn from_settings(
        db: PgPool,
        catalog: SharedCatalog,
        settings: &crate::config::Settings,
    ) -> Self {
        Self::new(
            db,
            catalog,
            settings.brain.clone(),
            Executive::from_settings(settings),
            settings.app.timezone,
        )
    }
}

/// The brain stage: the [`Preparer`], and the LLM over NATS behind a circuit breaker. Cheap to
/// clone.
#[derive(Clone)]
pub struct Brain {
    prep: Preparer,
    nats: async_nats::Client,
    /// `llm.subject`: where the llm-workers listen.
    llm_subject: String,
    /// Keeps the brain from waiting on an LLM that keeps failing.
    breaker: Arc<Breaker>,
}

impl Brain {
    pub fn new(prep: Preparer, nats: async_nats::Client, llm_subject: String) -> Self {
        let breaker = Breaker::new(
            prep.settings.circuit_failures,
            Duration::from_secs(prep.settings.circuit_open_secs),
        );
        Self {
            prep,
            nats,
            llm_subject,
            breaker: Arc::new(breaker),
        }
    }
}

/// An inbound message as the brain sees it.
pub struct Question<'a> {
    pub wamid: &'a str,
    pub msg_type: &'a str,
    pub text: Option<&'a str>,
    pub lang: Lang,
    /// The sender's wa_id, for the chat log.
    pub phone: Option<&'a str>,
    /// The id of the reply button or list row tapped, if the message is a tap.
    pub button: Option<&'a str>,
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
    /// Messages sent instead of `text` when the answer has buttons or a list (Graph API message
    /// objects, in order); `text` is then what the chat log keeps.
    pub messages: Vec<Value>,
    /// A chart sent before `text` (which stays complete without it).
    pub chart: Option<Box<Chart>>,
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

/// Classifies `text` and reads what it names; a follow-up that only names things or a period
/// ("kalau bulan lalu?", "how about MCH-002?") takes the intent — and the document, code or
/// period it does not name itself — of the previous question.
pub fn understand(
    text: &str,
    catalog: &Catalog,
    today: NaiveDate,
    previous: Option<&str>,
) -> Understanding {
    let c = classify(text, catalog);
    let params = params_of(&c.entities, today);
    if c.follow_up {
        if let Some(prev) = previous {
            let before = understand(prev, catalog, today, None);
            if before.intent != Intent::GeneralQuestion {
                let params = Params {
                    doc: params.doc.or(before.params.doc),
                    code: params.code.or(before.params.code),
                    period: params.period.or(before.params.period),
                };
                return Understanding {
                    intent: before.intent.for_document(params.doc.as_deref()),
                    params,
                };
            }
        }
    }
    Understanding {
        intent: c.intent.for_document(params.doc.as_deref()),
        params,
    }
}

/// The entities the context queries take: the first document, the first master, the period.
fn params_of(e: &Entities, today: NaiveDate) -> Params {
    Params {
        doc: e.documents.first().map(|d| d.number.clone()),
        code: e.masters.first().map(|m| m.code.clone()),
        period: e.period.as_ref().map(|p| window(p, today)),
    }
}

/// A period as a date range with its names in both languages.
fn window(p: &Period, today: NaiveDate) -> context::Window {
    use chrono::Datelike;
    let (from, to) = p.range(today);
    let (id, en) = match p {
        Period::Today => ("hari ini".into(), "today".into()),
        Period::Yesterday => ("kemarin".into(), "yesterday".into()),
        Period::ThisWeek => ("minggu ini".into(), "this week".into()),
        Period::LastWeek => ("minggu lalu".into(), "last week".into()),
        Period::ThisMonth => ("bulan ini".into(), "this month".into()),
        Period::LastMonth => ("bulan lalu".into(), "last month".into()),
        Period::ThisYear => ("tahun ini".into(), "this year".into()),
        Period::LastYear => ("tahun lalu".into(), "last year".into()),
        Period::LastDays(n) => (format!("{n} hari terakhir"), format!("the last {n} days")),
        Period::Month { .. } => (
            format!(
                "{} {}",
                texts::month_name(Lang::Id, from.month0(), false),
                from.year()
            ),
            format!(
                "{} {}",
                texts::month_name(Lang::En, from.month0(), false),
                from.year()
            ),
        ),
    };
    context::Window {
        from,
        to,
        label_id: id,
        label_en: en,
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
    /// Answer right away with these messages (buttons, a list); `text` is for the chat log.
    Rich {
        text: String,
        messages: Vec<Value>,
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
        /// For a figure question: the spec, its statement and its rows.
        worked: Option<Box<Worked>>,
        /// For a trend (or a breakdown asked for as a chart): its chart.
        chart: Option<Box<Chart>>,
    },
    /// A figure question the rules cannot map: the LLM may propose a spec
    /// ([`Brain::answer`]); without one, the "not yet" answer.
    Unmapped { not_yet: String, history: Vec<Turn> },
}

/// How a figure question was answered: what `sentient-hub ask` prints, what tests check.
#[derive(Debug, Clone)]
pub struct Worked {
    pub spec: Spec,
    pub sql: String,
    pub binds: Vec<Bind>,
    pub rows: Rows,
}

impl Preparer {
    /// Prepares the answer to `text` from `caller`: no LLM, no writes but the asker's own
    /// settings.
    pub async fn prepare(
        &self,
        caller: &Caller,
        text: &str,
        lang: Lang,
    ) -> anyhow::Result<Prepared> {
        let (db, settings) = (&self.db, &*self.settings);
        if text.chars().nth(settings.max_question_chars).is_some() {
            metrics::counter!("brain_too_long_total").increment(1);
            return Ok(Prepared::Direct {
                text: texts::question_too_long(lang, settings.max_question_chars),
                intent: Intent::GeneralQuestion,
                outcome: Outcome::Clarify,
            });
        }
        let catalog = self.catalog.current();
        let catalog = &*catalog;
        let now = Utc::now().with_timezone(&self.timezone);
        let today = now.date_naive();
        if WORDS.unmutes(text) {
            let lifted =
                sqlx::query("delete from wa_alert_mute where user_id = $1 and until_at > now()")
                    .bind(caller.user_id)
                    .execute(db)
                    .await
                    .context("lifting an alert mute")?
                    .rows_affected()
                    > 0;
            return Ok(Prepared::Direct {
                text: texts::alerts_unmuted(lang, lifted).to_owned(),
                intent: Intent::AlertMute,
                outcome: Outcome::Fallback,
            });
        }
        let history = history(db, settings, caller, catalog, today).await?;
        let c = classify(text, catalog);
        let previous = history.last().map(|t| t.question.as_str());
        match understand::read(text, &c, catalog, today, previous) {
            Reading::Metric(spec) => return self.metric(caller, text, lang, *spec, &history).await,
            Reading::NotYet {
                asked,
                nearby,
                rules_only,
            } => {
                let nearby: Vec<&str> = nearby
                    .iter()
                    .filter_map(|m| CATALOGUE.measure(m))
                    .filter(|m| m.permissions.iter().all(|p| caller.may(p)))
                    .map(|m| m.label.get(lang))
                    .collect();
                let text = texts::not_yet(lang, asked.get(lang), &nearby);
                if rules_only && settings.llm_specs {
                    return Ok(Prepared::Unmapped {
                        not_yet: text,
                        history,
                    });
                }
                metrics::counter!("brain_not_yet_total").increment(1);
                return Ok(Prepared::Direct {
                    text,
                    intent: Intent::Metric,
                    outcome: Outcome::Clarify,
                });
            }
            Reading::AskBack { name, choices } => {
                return Ok(Prepared::Direct {
                    text: texts::which_one(lang, &name, &choices),
                    intent: Intent::Metric,
                    outcome: Outcome::Clarify,
                })
            }
            Reading::Other => {}
        }
        let u = understand(
            text,
            catalog,
            today,
            history.last().map(|t| t.question.as_str()),
        );
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
                // Asked length (default two hours), at most a day.
                let minutes = c.entities.mute_minutes.unwrap_or(120).clamp(5, 24 * 60);
                let until = sqlx::query_scalar::<_, chrono::DateTime<Utc>>(
                "insert into wa_alert_mute (user_id, until_at) values ($1, now() + make_interval(mins => $2))
                 on conflict (user_id) do update set until_at = excluded.until_at
                 returning until_at",
            )
            .bind(caller.user_id)
            .bind(minutes as i32)
            .fetch_one(db)
            .await
            .context("muting alerts")?;
                let local = until
                    .with_timezone(&self.timezone)
                    .format("%H:%M")
                    .to_string();
                return Ok(Prepared::Direct {
                    text: texts::alerts_muted(lang, &local),
                    intent: u.intent,
                    outcome: Outcome::Fallback,
                });
            }
            Intent::Digest => {
                return Ok(Prepared::Direct {
                    text: crate::executive::digest::answer(
                        db,
                        &self.executive.digest,
                        caller.user_id,
                        text,
                        lang,
                        self.timezone,
                    )
                    .await?,
                    intent: u.intent,
                    outcome: Outcome::Fallback,
                });
            }
            Intent::Approvals => {
                return Ok(approval(approvals::list(db, caller, lang).await?));
            }
            Intent::ExecutiveSummary => {
                // Figures only, each under its own permissions: no LLM rewords them.
                let permissions: Vec<String> = caller.permissions.iter().cloned().collect();
                let summary = crate::executive::summary::compute(
                    db,
                    today,
                    crate::executive::summary::Basis::Now,
                    &permissions,
                    Duration::from_millis(settings.metrics_timeout_ms),
                )
                .await?;
                return Ok(Prepared::Direct {
                    text: crate::executive::summary::text(&summary, lang, self.timezone),
                    intent: u.intent,
                    outcome: Outcome::Fallback,
                });
            }
            _ => {}
        }
        let as_of = now.format("%d-%m-%Y %H:%M WIB").to_string();
        let permissions: Vec<String> = caller.permissions.iter().cloned().collect();
        let built = context::build(db, u.intent, &u.params, &permissions, today, &as_of).await?;
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
        let messages = self.messages(caller, lang, &intent_name, &snapshot, &history, text);
        let data_only = settings.data_only_intents.contains(&intent_name);
        Ok(Prepared::Ask {
            intent: u.intent,
            snapshot,
            messages,
            data_only,
            worked: None,
            chart: None,
        })
    }

    /// A figure question: every measure and dimension checked against the asker's permissions
    /// (a forbidden measure is left out with a note when others remain; a forbidden cut or
    /// filter refuses the question, naming it), then one read-only statement, then the answer.
    pub async fn metric(
        &self,
        caller: &Caller,
        text: &str,
        lang: Lang,
        mut spec: Spec,
        history: &[Turn],
    ) -> anyhow::Result<Prepared> {
        let catalogue = &*CATALOGUE;
        let settings = &*self.settings;
        let forbidden = compile::forbidden(catalogue, &spec, |p| caller.may(p));
        if !forbidden.dims.is_empty() || forbidden.measures.len() == spec.measures.len() {
            metrics::counter!("brain_denied_total").increment(1);
            let mut parts: Vec<&str> = forbidden
                .measures
                .iter()
                .map(|(_, l)| l.get(lang))
                .collect();
            parts.extend(forbidden.dims.iter().map(|l| l.get(lang)));
            return Ok(Prepared::Direct {
                text: texts::denied_parts(lang, &parts),
                intent: Intent::Metric,
                outcome: Outcome::Denied,
            });
        }
        spec.measures
            .retain(|m| !forbidden.measures.iter().any(|(n, _)| n == m));
        let now = Utc::now().with_timezone(&self.timezone);
        let today = now.date_naive();
        // The masters a filter names, by code, from the database: a code nobody holds is said
        // so, not answered with a zero.
        let codes: Vec<String> = spec
            .filters
            .iter()
            .filter_map(|f| match f {
                crate::metrics::spec::Filter::Is { dim, values }
                    if matches!(
                        dim.as_str(),
                        "customer" | "item" | "vendor" | "machine" | "warehouse"
                    ) =>
                {
                    Some(values.clone())
                }
                _ => None,
            })
            .flatten()
            .collect();
        let names: std::collections::HashMap<String, String> = if codes.is_empty() {
            Default::default()
        } else {
            sqlx::query_as::<_, (String, String)>(
                "select code, name from m_cust where code = any($1) and deleted_at is null
                 union all select code, name from m_item where code = any($1) and deleted_at is null
                 union all select code, name from m_vendor where code = any($1) and deleted_at is null
                 union all select code, name from m_machine where code = any($1) and deleted_at is null
                 union all select code, name from m_wh where code = any($1) and deleted_at is null",
            )
            .bind(&codes)
            .fetch_all(&self.db)
            .await
            .context("naming the masters of a figure question")?
            .into_iter()
            .collect()
        };
        if let Some(missing) = codes.iter().find(|c| !names.contains_key(*c)) {
            return Ok(Prepared::Direct {
                text: texts::not_found(lang, missing),
                intent: Intent::Metric,
                outcome: Outcome::Fallback,
            });
        }
        let name_of = |code: &str| names.get(code).cloned();
        let permissions: Vec<String> = caller.permissions.iter().cloned().collect();
        let compiled = match compile::compile(
            catalogue,
            &spec,
            today,
            &permissions,
            settings.metrics_row_cap,
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, "a figure question the catalogue cannot express");
                metrics::counter!("brain_not_yet_total").increment(1);
                let asked = render::describe(catalogue, &spec, lang, &name_of);
                return Ok(Prepared::Direct {
                    text: texts::not_yet(lang, &format!("“{asked}”"), &[]),
                    intent: Intent::Metric,
                    outcome: Outcome::Clarify,
                });
            }
        };
        let rows = run::run(
            &self.db,
            &compiled,
            Duration::from_millis(settings.metrics_timeout_ms),
        )
        .await?;
        let mut answer = Bilingual::new(
            render::render(catalogue, &spec, &rows, Lang::Id, &name_of),
            render::render(catalogue, &spec, &rows, Lang::En, &name_of),
        );
        if !forbidden.measures.is_empty() {
            for l in [Lang::Id, Lang::En] {
                let parts: Vec<&str> = forbidden.measures.iter().map(|(_, m)| m.get(l)).collect();
                let note = texts::left_out(l, &parts);
                match l {
                    Lang::Id => answer.id = format!("{}\n{note}", answer.id),
                    Lang::En => answer.en = format!("{}\n{note}", answer.en),
                }
            }
        }
        let as_of = now.format("%d-%m-%Y %H:%M %Z").to_string();
        let chart = if settings.charts && chart::wanted(&spec, &rows, WORDS.asks_chart(text)) {
            self.chart(
                &spec,
                &rows,
                lang,
                names.clone(),
                (&as_of, now.date_naive()),
            )
            .await
        } else {
            None
        };
        let snapshot = context::Snapshot {
            as_of,
            data: render::data(catalogue, &spec, &rows),
            answer,
        };
        let topic = render::describe(catalogue, &spec, lang, &name_of);
        let messages = self.messages(caller, lang, &topic, &snapshot, history, text);
        metrics::counter!("brain_metric_total", "shape" => format!("{:?}", compiled.shape).to_lowercase()).increment(1);
        Ok(Prepared::Ask {
            intent: Intent::Metric,
            snapshot,
            messages,
            data_only: settings
                .data_only_intents
                .iter()
                .any(|i| i == Intent::Metric.as_str()),
            worked: Some(Box::new(Worked {
                spec,
                sql: compiled.sql,
                binds: compiled.binds,
                rows,
            })),
            chart,
        })
    }

    /// The chart of a figure question's rows, drawn off the async threads; `None` (and a
    /// warning) when it cannot be drawn: the text answer goes alone.
    async fn chart(
        &self,
        spec: &Spec,
        rows: &Rows,
        lang: Lang,
        names: std::collections::HashMap<String, String>,
        (as_of, today): (&str, chrono::NaiveDate),
    ) -> Option<Box<Chart>> {
        let (spec, rows, as_of) = (spec.clone(), rows.clone(), as_of.to_owned());
        let started = Instant::now();
        let drawn = tokio::task::spawn_blocking(move || {
            let name_of = |code: &str| names.get(code).cloned();
            chart::draw(&CATALOGUE, &spec, &rows, lang, &name_of, &as_of, today)
        })
        .await;
        metrics::histogram!("brain_chart_seconds").record(started.elapsed().as_secs_f64());
        match drawn {
            Ok(Ok(chart)) => chart.map(Box::new),
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot draw a chart; answering in text only");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "the chart task failed; answering in text only");
                None
            }
        }
    }

    /// The sandwich prompt for `text` from `caller` over `snapshot`, about `topic`.
    fn messages(
        &self,
        caller: &Caller,
        lang: Lang,
        topic: &str,
        snapshot: &context::Snapshot,
        history: &[Turn],
        text: &str,
    ) -> Vec<ChatMessage> {
        let data = serde_json::to_string(&snapshot.data).unwrap_or_default();
        prompt::build(&prompt::Parts {
            tone: self.settings.tone_of(&caller.role),
            lang,
            name: &caller.full_name,
            role: &caller.role,
            intent: topic,
            as_of: &snapshot.as_of,
            data: &data,
            history,
            question: text,
        })
    }

    /// The tone the role's answers take (`brain.tones`).
    pub fn tone_of(&self, role: &str) -> crate::config::Tone {
        self.settings.tone_of(role)
    }
}

impl Brain {
    /// Answers an admitted message: always an answer or a clear reason.
    #[tracing::instrument(skip_all, fields(wamid = q.wamid))]
    pub async fn answer(&self, caller: &Caller, q: &Question<'_>) -> Answer {
        let started = Instant::now();
        // An approval turn: a tap on one of its buttons (answered in the user's language, not
        // the label's), a typed command, or the code or reason of a step the user started.
        let rules = &self.prep.executive.approvals;
        let text = q.text.map(str::trim).filter(|t| !t.is_empty());
        match approvals::turn(
            &self.prep.db,
            rules,
            caller,
            q.wamid,
            q.button,
            text,
            q.lang,
        )
        .await
        {
            Ok(None) => {}
            Ok(Some(reply)) => {
                return self
                    .answer_prepared(caller, q, approval(reply), started)
                    .await
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot answer an approval");
                let prepared = Prepared::Direct {
                    text: texts::data_unavailable(q.lang).to_owned(),
                    intent: Intent::Approvals,
                    outcome: Outcome::Error,
                };
                return self.answer_prepared(caller, q, prepared, started).await;
            }
        }
        let Some(text) = q.text.map(str::trim).filter(|t| !t.is_empty()) else {
            let text = match q.msg_type {
                "reaction" | "system" | "unsupported" => None,
                _ => Some(texts::text_only(q.lang).to_owned()),
            };
            return Answer {
                text,
                messages: Vec::new(),
                chart: None,
                intent: None,
                outcome: Outcome::Fallback,
                tokens: 0,
                latency_ms: 0,
            };
        };
        let prepared = match self.prep.prepare(caller, text, q.lang).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot prepare an answer");
                return Answer {
                    text: Some(texts::data_unavailable(q.lang).to_owned()),
                    messages: Vec::new(),
                    chart: None,
                    intent: None,
                    outcome: Outcome::Error,
                    tokens: 0,
                    latency_ms: elapsed_ms(started),
                };
            }
        };
        // A figure question the rules could not map: the LLM may propose a spec.
        let mut understood: Option<String> = None;
        let prepared = match prepared {
            Prepared::Unmapped { not_yet, history } => {
                let proposed = match self.propose(caller, q, text).await {
                    Some(spec) => {
                        let catalog = self.prep.catalog.current();
                        let name_of = |code: &str| catalog.get(code).map(|e| e.name.clone());
                        understood = Some(texts::understood_as(
                            q.lang,
                            &crate::metrics::render::describe(&CATALOGUE, &spec, q.lang, &name_of),
                        ));
                        self.prep.metric(caller, text, q.lang, spec, &history).await
                    }
                    None => Ok(Prepared::Direct {
                        text: not_yet,
                        intent: Intent::Metric,
                        outcome: Outcome::Clarify,
                    }),
                };
                match proposed {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot answer a proposed spec");
                        return Answer {
                            text: Some(texts::data_unavailable(q.lang).to_owned()),
                            messages: Vec::new(),
                            chart: None,
                            intent: Some(Intent::Metric),
                            outcome: Outcome::Error,
                            tokens: 0,
                            latency_ms: elapsed_ms(started),
                        };
                    }
                }
            }
            p => p,
        };
        let mut answer = self.answer_prepared(caller, q, prepared, started).await;
        if let (Some(note), Some(t)) = (understood, answer.text.as_mut()) {
            *t = format!("{note}\n\n{t}");
        }
        answer
    }

    /// The answer to what [`Preparer::prepare`] prepared: direct, or asked of the LLM and
    /// grounded, or from the data.
    async fn answer_prepared(
        &self,
        caller: &Caller,
        q: &Question<'_>,
        prepared: Prepared,
        started: Instant,
    ) -> Answer {
        let (intent, snapshot, messages, data_only, chart) = match prepared {
            Prepared::Unmapped { not_yet, .. } => {
                return Answer {
                    text: Some(not_yet),
                    messages: Vec::new(),
                    chart: None,
                    intent: Some(Intent::Metric),
                    outcome: Outcome::Clarify,
                    tokens: 0,
                    latency_ms: elapsed_ms(started),
                }
            }
            Prepared::Direct {
                text,
                intent,
                outcome,
            } => {
                return Answer {
                    text: Some(text),
                    messages: Vec::new(),
                    chart: None,
                    intent: Some(intent),
                    outcome,
                    tokens: 0,
                    latency_ms: elapsed_ms(started),
                }
            }
            Prepared::Rich {
                text,
                messages,
                intent,
                outcome,
            } => {
                return Answer {
                    text: Some(text),
                    messages,
                    chart: None,
                    intent: Some(intent),
                    outcome,
                    tokens: 0,
                    latency_ms: elapsed_ms(started),
                }
            }
            Prepared::Ask {
                intent,
                snapshot,
                messages,
                data_only,
                worked: _,
                chart,
            } => (intent, snapshot, messages, data_only, chart),
        };
        let fallback = |tokens: i32| Answer {
            text: Some(data_answer(&snapshot.answer, &snapshot.as_of, q.lang)),
            messages: Vec::new(),
            chart: chart.clone(),
            intent: Some(intent),
            outcome: Outcome::Fallback,
            tokens,
            latency_ms: elapsed_ms(started),
        };
        if data_only || !self.breaker.allow() {
            metrics::counter!("brain_answers_total", "outcome" => "fallback").increment(1);
            return fallback(0);
        }
        match self.ask_llm(caller, q, intent, "answer", messages).await {
            Ok((content, tokens)) => {
                // Support: every numeric field, and the figures of the data answer (derived from
                // those fields: totals, growth, shares); derivations only within one record.
                let mut groups = Vec::new();
                ground::context_groups(&snapshot.data, &mut groups);
                let mut numbers: Vec<f64> = groups.iter().flatten().copied().collect();
                numbers.extend(
                    ground::figures(&snapshot.answer.id)
                        .into_iter()
                        .map(|f| f.value),
                );
                let invented = ground::unsupported(&content, &numbers, &groups);
                let policy = self.prep.settings.grounding_fallback;
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
                    messages: Vec::new(),
                    chart,
                    intent: Some(intent),
                    outcome: Outcome::Llm,
                    tokens,
                    latency_ms: elapsed_ms(started),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "LLM unavailable; answering from the data");
                metrics::counter!("brain_answers_total", "outcome" => "fallback").increment(1);
                fallback(0)
            }
        }
    }
}

impl Brain {
    /// Asks the LLM for a spec of `text` and checks it ([`propose::accept`]); `None` when the
    /// LLM is unavailable, finds it unsupported, or proposes something the catalogue refuses.
    async fn propose(&self, caller: &Caller, q: &Question<'_>, text: &str) -> Option<Spec> {
        if !self.breaker.allow() {
            return None;
        }
        let catalog = self.prep.catalog.current();
        let today = Utc::now().with_timezone(&self.prep.timezone).date_naive();
        let messages = propose::request(text, &catalog, today);
        match self
            .ask_llm(caller, q, Intent::Metric, "spec", messages)
            .await
        {
            Ok((content, _)) => match propose::accept(&content, &catalog, today) {
                Ok(spec) => {
                    metrics::counter!("brain_spec_proposals_total", "outcome" => "accepted")
                        .increment(1);
                    Some(spec)
                }
                Err(e) => {
                    metrics::counter!("brain_spec_proposals_total", "outcome" => "refused")
                        .increment(1);
                    tracing::info!(reason = %e, "the LLM's spec was refused");
                    None
                }
            },
            Err(e) => {
                tracing::info!(error = %e, "no spec from the LLM");
                None
            }
        }
    }
}

/// What an approval step answers: its messages (buttons, a list) or its text.
fn approval(reply: approvals::Reply) -> Prepared {
    let outcome = if reply.refused {
        metrics::counter!("brain_denied_total").increment(1);
        Outcome::Denied
    } else {
        Outcome::Fallback
    };
    if reply.messages.is_empty() {
        Prepared::Direct {
            text: reply.text,
            intent: Intent::Approvals,
            outcome,
        }
    } else {
        Prepared::Rich {
            text: reply.text,
            messages: reply.messages,
            intent: Intent::Approvals,
            outcome,
        }
    }
}

/// Milliseconds since `started`, as `ai_chat.latency_ms` holds them.
pub fn elapsed_ms(started: Instant) -> i32 {
    started.elapsed().as_millis().min(i32::MAX as u128) as i32
}

/// The deterministic answer, marked as such.
fn data_answer(answer: &Bilingual, as_of: &str, lang: Lang) -> String {
    format!(
        "{}\n\n{}",
        answer.get(lang),
        texts::data_answer_mark(lang, as_of)
    )
}

impl Brain {
    /// One request over NATS, masked when the LLM is external; the breaker learns the outcome.
    async fn ask_llm(
        &self,
        caller: &Caller,
        q: &Question<'_>,
        intent: Intent,
        purpose: &str,
        mut messages: Vec<ChatMessage>,
    ) -> anyhow::Result<(String, i32)> {
        let settings = &self.prep.settings;
        let mut masker = mask::Masker::default();
        if settings.llm_external {
            let names: anyhow::Result<Vec<String>> = sqlx::query_scalar(
                "select name from m_emp where deleted_at is null
             union select full_name from adm_user where deleted_at is null",
            )
            .fetch_all(&self.prep.db)
            .await
            .context("reading names to mask");
            // The breaker hears of every request it allowed, or a half-open probe never ends.
            let names = match names {
                Ok(names) => names,
                Err(e) => {
                    self.breaker.failure();
                    return Err(e);
                }
            };
            for m in &mut messages {
                m.content = masker.mask(&m.content, &names);
            }
        }
        let mut meta = serde_json::Map::new();
        meta.insert("intent".into(), serde_json::to_value(intent)?);
        meta.insert("role".into(), Value::from(caller.role.clone()));
        meta.insert("wamid".into(), Value::from(q.wamid));
        // "answer": word an answer from the data; "spec": propose a metrics spec as JSON.
        meta.insert("purpose".into(), Value::from(purpose));
        let request = ChatRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            messages,
            max_tokens: Some(settings.max_tokens),
            temperature: Some(settings.temperature),
            meta,
        };
        let timeout = Duration::from_secs(settings.llm_timeout_secs);
        let reply = crate::llm::client::ask(&self.nats, &self.llm_subject, &request, timeout).await;
        match reply {
            Ok(ChatReply::Answer(a)) if !a.content.trim().is_empty() => {
                self.breaker.success();
                let tokens = (a.prompt_tokens + a.completion_tokens).min(i32::MAX as u64) as i32;
                Ok((masker.unmask(a.content.trim()), tokens))
            }
            Ok(ChatReply::Answer(_)) => {
                self.breaker.failure();
                anyhow::bail!("the LLM answered nothing")
            }
            Ok(ChatReply::Failure(f)) => {
                self.breaker.failure();
                anyhow::bail!(
                    "the LLM worker answered {}: {}",
                    f.error.code.as_str(),
                    f.error.message
                )
            }
            Err(e) => {
                self.breaker.failure();
                Err(anyhow::Error::new(e))
            }
        }
    }
}

/// The last turns of `caller` within the configured window, oldest first — only those the
/// caller may still see: asked under their current role, about an intent whose permission they
/// still hold (a lowered role leaves its earlier answers out of the prompt), and short enough
/// to have been answered.
async fn history(
    db: &PgPool,
    settings: &BrainSettings,
    caller: &Caller,
    catalog: &Catalog,
    today: NaiveDate,
) -> anyhow::Result<Vec<Turn>> {
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "select msg_in, msg_out, intent, user_role from ai_chat
         where user_id = $1 and msg_in is not null and msg_out is not null
           and ts > now() - make_interval(mins => $2)
         order by ts desc, id desc limit $3",
    )
    .bind(caller.user_id)
    .bind(settings.history_minutes as i32)
    .bind(settings.history_turns)
    .fetch_all(db)
    .await
    .context("reading recent turns")?;
    // A figure question is read again: each of its measures and dimensions must still be
    // within the caller's permissions.
    let metric_visible = |question: &str| match understand::read(
        question,
        &classify(question, catalog),
        catalog,
        today,
        None,
    ) {
        Reading::Metric(spec) => {
            compile::forbidden(&CATALOGUE, &spec, |p| caller.may(p)).is_empty()
        }
        _ => true,
    };
    let still_visible = |question: &str, intent: Option<&str>, role: Option<&str>| {
        let intent_ok = match intent {
            None => true,
            Some("metric") => metric_visible(question),
            Some(name) => name
                .parse::<Intent>()
                .is_ok_and(|i| i.permission().is_none_or(|p| caller.may(p))),
        };
        intent_ok && role == Some(caller.role.as_str())
    };
    // A question too long to be answered is not worth its place in the prompt either.
    let answerable = |q: &str| q.chars().nth(settings.max_question_chars).is_none();
    Ok(rows
        .into_iter()
        .rev()
        .filter(|(q, _, intent, role)| {
            answerable(q) && still_visible(q, intent.as_deref(), role.as_deref())
        })
        .map(|(question, answer, _, _)| Turn { question, answer })
        .collect())
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

/// The sender's hook for sent answers: the chat log learns the wamid of the first part of the
/// answer that went out (the chart, or the text when the chart could not go), in the
/// transaction that records the send.
pub fn record_sent_answer<'c>(
    conn: &'c mut sqlx::PgConnection,
    sent: &'c Sent,
) -> BoxFuture<'c, anyhow::Result<()>> {
    Box::pin(async move {
        let Some(wamid_in) = &sent.inbound_wamid else {
            return Ok(());
        };
        sqlx::query("update ai_chat set wamid_out = $2 where wamid_in = $1 and wamid_out is null")
            .bind(wamid_in)
            .bind(&sent.wamid)
            .execute(&mut *conn)
            .await
            .context("recording the wamid of a sent answer")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_follow_up_takes_the_previous_intent() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let catalog = Catalog::blueprint_sample();
        let u = understand(
            "kalau bulan lalu?",
            &catalog,
            today,
            Some("omzet bulan ini berapa?"),
        );
        assert_eq!(u.intent, Intent::SalesSummary);
        assert_eq!(
            u.params.period.unwrap().from,
            NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()
        );
        let u = understand(
            "how about MCH-002?",
            &catalog,
            today,
            Some("reject rate MCH-003 this week"),
        );
        assert_eq!(u.params.code.as_deref(), Some("MCH-002"));
    }
}

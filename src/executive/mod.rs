//! For the people at the top: the executive summary ([`summary`]) — in the chat
//! ("ringkasan", "dashboard") and as `GET /api/v1/dashboard/summary` — and the 7-day cash
//! outlook behind the "saldo kas negatif dalam 7 hari" detector ([`cash`]), and the morning
//! digest that pushes the summary once a day ([`digest`]), and approving POs and sales orders
//! from the chat ([`approvals`]). Every figure is a
//! spec over the metrics catalogue, compiled and run by the metrics layer, and checked against
//! the asker's permissions one by one: a line the asker may not see is left out, never blanked.

pub mod approvals;
pub mod cash;
pub mod digest;
pub mod summary;

use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::metrics::catalogue::CATALOGUE;
use crate::metrics::compile;
use crate::metrics::run::{self, Rows};
use crate::metrics::spec::{Spec, Window};

/// What the chat's executive features take from the settings: the digest's defaults and the
/// approvals' rules.
#[derive(Clone)]
pub struct Executive {
    pub digest: crate::config::DigestSettings,
    pub approvals: approvals::Rules,
}

impl Executive {
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        Executive {
            digest: s.digest.clone(),
            approvals: approvals::Rules {
                settings: s.approvals.clone(),
                otp_secret: s.identity.otp_secret.clone(),
                otp_ttl_secs: s.identity.otp_ttl_secs,
                otp_max_attempts: s.identity.otp_max_attempts,
                otp_max_per_hour: s.identity.otp_max_per_hour,
                timezone: s.app.timezone,
            },
        }
    }
}

/// Rows one summary figure may return (a breakdown by status or severity has a handful).
const ROW_CAP: usize = 50;

/// A figure spec of `measures` over `period` (none: as it stands, for a snapshot), uncut.
fn spec(measures: &[&str], period: Option<Window>) -> Spec {
    Spec {
        measures: measures.iter().map(|m| (*m).to_owned()).collect(),
        group_by: None,
        filters: Vec::new(),
        period,
        compare: None,
        top: None,
    }
}

/// Value `i` of the row with key `key` (`None`: a single figure) in the current period
/// (`current`) or the comparison.
fn value(rows: &Rows, key: Option<&str>, current: bool, i: usize) -> Option<Decimal> {
    rows.rows
        .iter()
        .find(|r| r.current == current && r.key.as_deref() == key)
        .and_then(|r| r.values.get(i).copied().flatten())
}

/// Runs `spec` over the catalogue for an asker holding `permissions`: `None` when a measure or
/// a dimension of it is outside them.
pub async fn figure(
    db: &PgPool,
    spec: &Spec,
    today: NaiveDate,
    permissions: &[String],
    timeout: Duration,
) -> anyhow::Result<Option<Rows>> {
    let catalogue = &*CATALOGUE;
    if !compile::forbidden(catalogue, spec, |p| permissions.iter().any(|h| h == p)).is_empty() {
        return Ok(None);
    }
    let compiled = compile::compile(catalogue, spec, today, permissions, ROW_CAP)
        .with_context(|| format!("compiling the summary's {:?}", spec.measures))?;
    run::run(db, &compiled, timeout).await.map(Some)
}

//! What can be asked: the metrics catalogue (`GET /api/v1/metrics`) — each measure's name, unit,
//! kind, permissions, words and the dimensions it can be cut by; each dimension's permissions
//! and words. Any signed-in admin may read it; `allowed` says whether the caller's own role may
//! ask for it on WhatsApp.

use axum::extract::FromRef;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{AdminState, ApiRouter};
use crate::error::Result;
use crate::metrics::catalogue::{Kind, Unit, CATALOGUE};

pub(crate) fn router<S>() -> ApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AdminState: FromRef<S>,
{
    ApiRouter::new().routes(routes!(catalogue))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Catalogue {
    pub measures: Vec<MeasureOut>,
    pub dimensions: Vec<DimensionOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeasureOut {
    pub name: String,
    pub label_id: String,
    pub label_en: String,
    /// `money`, `quantity`, `count`, `percent`, `minutes` or `score`.
    #[schema(value_type = String)]
    pub unit: Unit,
    /// `flow` (over a period; month to date by default) or `snapshot` (as it stands now).
    #[schema(value_type = String)]
    pub kind: Kind,
    /// Every one of these is needed.
    pub permissions: Vec<String>,
    /// Words that ask for it, in both languages.
    pub synonyms: Vec<String>,
    /// Dimensions it can be cut or filtered by.
    pub dimensions: Vec<String>,
    /// Whether it can be asked by period (it has a date).
    pub has_history: bool,
    pub description: String,
    /// Whether the caller's role may ask for it.
    pub allowed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DimensionOut {
    pub name: String,
    pub label_id: String,
    pub label_en: String,
    pub permissions: Vec<String>,
    pub synonyms: Vec<String>,
    pub allowed: bool,
}

#[utoipa::path(
    get, path = "/api/v1/metrics", tag = "insight",
    responses((status = 200, body = Catalogue)),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn catalogue(caller: Caller) -> Result<Json<Catalogue>> {
    let may = |p: &String| caller.permissions.binary_search(p).is_ok();
    let c = &*CATALOGUE;
    let measures = c
        .measures
        .iter()
        .map(|(name, m)| {
            let view = c.view(&[name]).expect("every measure has a relation");
            let mut dimensions: Vec<String> = view
                .relations
                .iter()
                .flat_map(|(_, r)| r.dims.keys().cloned())
                .collect();
            dimensions.sort_unstable();
            dimensions.dedup();
            MeasureOut {
                name: name.clone(),
                label_id: m.label.id.clone(),
                label_en: m.label.en.clone(),
                unit: m.unit,
                kind: m.kind,
                permissions: m.permissions.clone(),
                synonyms: m.synonyms.clone(),
                dimensions,
                has_history: view.relations.iter().any(|(_, r)| r.time.is_some()),
                description: m.description.clone(),
                allowed: m.permissions.iter().all(may),
            }
        })
        .collect();
    let dimensions = c
        .dimensions
        .iter()
        .map(|(name, d)| DimensionOut {
            name: name.clone(),
            label_id: d.label.id.clone(),
            label_en: d.label.en.clone(),
            permissions: d.permissions.clone(),
            synonyms: d.synonyms.clone(),
            allowed: d.permissions.iter().all(may),
        })
        .collect();
    Ok(Json(Catalogue {
        measures,
        dimensions,
    }))
}

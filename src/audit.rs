//! The audit trail's one writer: every `log_audit` row, from the admin API, the chat gate and
//! the alert acknowledgement, is written by [`record`], inside the caller's transaction, with
//! secrets removed from its snapshots. `GET /api/v1/audit` ([`crate::admin`]) reads them.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// What changed, on which entity.
pub struct Entry<'a> {
    /// Upper-case verb: CREATE, UPDATE, DELETE, LOGIN, LOGOUT, RESET_PWD, …
    pub action: &'a str,
    /// Table of the entity (`adm_user`, `adm_role`, …).
    pub entity_type: &'a str,
    /// Internal id of the entity (for joins; never shown).
    pub entity_id: Option<i64>,
    /// Exposed id of the entity (shown and filterable).
    pub entity_uuid: Option<Uuid>,
    /// Snapshot before the change.
    pub old: Option<Value>,
    /// Snapshot after the change.
    pub new: Option<Value>,
}

/// Keys never written to the audit log, whatever snapshot they come in.
const SECRET_KEYS: &[&str] = &[
    "password",
    "password_hash",
    "refresh_hash",
    "token_hash",
    "refresh_token",
    "access_token",
    "code_hash",
];

/// Removes secrets from a snapshot, at any depth.
pub fn scrub(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !SECRET_KEYS.contains(&k.as_str()));
            map.values_mut().for_each(scrub);
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

/// Writes one audit row. `user_id` is the actor (None for the command line or an anonymous
/// event); `ip` the actor's address.
pub async fn record(
    conn: &mut PgConnection,
    user_id: Option<i64>,
    ip: Option<&str>,
    mut entry: Entry<'_>,
) -> Result<(), sqlx::Error> {
    entry.old.as_mut().map(scrub);
    entry.new.as_mut().map(scrub);
    sqlx::query(
        "insert into log_audit
             (user_id, action, entity_type, entity_id, entity_uuid, old_value, new_value, ip_address)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(user_id)
    .bind(entry.action)
    .bind(entry.entity_type)
    .bind(entry.entity_id)
    .bind(entry.entity_uuid)
    .bind(entry.old)
    .bind(entry.new)
    .bind(ip)
    .execute(conn)
    .await?;
    Ok(())
}

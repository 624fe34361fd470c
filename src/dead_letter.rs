//! The dead-letter table's one writer: input that can never be processed (a signed but
//! unreadable webhook body, an unreadable inbox job, a malformed alert) is kept raw in
//! `wa_dead_letter` with the reason, so it can be read and replayed, and acknowledged where it
//! came from, so nobody retries it for ever.

/// Keeps `body` from `source` (`webhook`, `consumer`, `alerts`) with `reason` and the sender's
/// own reference (a message id), if any.
pub async fn keep<'e>(
    db: impl sqlx::PgExecutor<'e>,
    source: &str,
    reason: &str,
    body: &[u8],
    reference: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("insert into wa_dead_letter (source, reason, body, ref) values ($1, $2, $3, $4)")
        .bind(source)
        .bind(reason)
        .bind(body)
        .bind(reference)
        .execute(db)
        .await?;
    Ok(())
}

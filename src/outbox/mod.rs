//! The outbox: every message the hub sends is a row first, then a Graph API call. The sender
//! loop claims due rows, respects the global rate and each recipient's order and 24-hour window,
//! retries what Meta says is temporary, and records what Meta answered.
//!
//! At most once, by design: a row is marked `sending` (with a lease) before the call. If the
//! process dies after Meta accepted the message but before the hub recorded it, the expired
//! lease turns the row `unknown` — it is never sent again, because a duplicate answer to a
//! director is worse than a missing one. The send carried `biz_opaque_callback_data` = the row's
//! uuid, so Meta's status webhook later moves an `unknown` row to sent/delivered/read when the
//! message did go out; a row that stays `unknown` was most likely lost and is visible to admins.

pub mod ratelimit;
pub mod sender;

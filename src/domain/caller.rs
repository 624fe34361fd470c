//! The person behind a message, once the gate has admitted them.

use std::collections::HashSet;

use crate::texts::Lang;

/// A whitelisted, confirmed user asking something: what the brain may know about them.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `adm_user.id`.
    pub user_id: i64,
    /// For the greeting and the tone.
    pub full_name: String,
    /// `adm_role.code`: drives the tone of answers.
    pub role: String,
    /// Permission codes of the role.
    pub permissions: HashSet<String>,
    /// The user's preferred language (a message's own language wins when answering it).
    pub lang: Lang,
}

impl Caller {
    pub fn may(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }
}

//! `sentient-hub admin unlock`: lifts every login lock of a user (for the admin who locked
//! themselves out, or whom a stranger's guesses did), audited.
//!
//! `sentient-hub admin create-user`: bootstraps the first admin (no user is seeded).
//!
//! `sentient-hub admin reset-password`: a new password for a user who lost theirs (the first
//! admin, who has nobody to reset it through the API): the policy applies, locks are lifted and
//! every session of the user ends, audited.
//!
//! Passwords come from `SENTIENT_ADMIN_PASSWORD` or a prompt on the terminal, never from the
//! command line (it would land in the shell history and the process list) and are never echoed.

use anyhow::{bail, Context};
use clap::Subcommand;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::auth::revoke_user_sessions;
use super::password::{Hasher, Owner};
use super::users::{parse_email, parse_phone, CLEAR_LOCKS};
use crate::audit::{self, Entry};
use crate::config::Settings;
use crate::db;

/// Environment variable that can carry the new admin's password (for scripts).
pub const PASSWORD_VAR: &str = "SENTIENT_ADMIN_PASSWORD";

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a user with a password (e.g. the first SYSADMIN). The password is read from
    /// SENTIENT_ADMIN_PASSWORD or asked for on the terminal.
    CreateUser {
        /// Login name: lower-case letters, digits, '.', '_', '-'.
        #[arg(long)]
        username: String,
        /// Company email.
        #[arg(long)]
        email: String,
        /// Role code, e.g. SYSADMIN.
        #[arg(long, default_value = "SYSADMIN")]
        role: String,
        /// WhatsApp phone (E.164 or Indonesian 08…), optional.
        #[arg(long)]
        phone: Option<String>,
        /// Full name; defaults to the username.
        #[arg(long)]
        full_name: Option<String>,
    },
    /// Set a new password for a user who lost theirs (e.g. the only SYSADMIN), lift their
    /// login locks and end their sessions. The password is read from SENTIENT_ADMIN_PASSWORD or
    /// asked for on the terminal.
    ResetPassword {
        /// Login name or email.
        #[arg(long)]
        username: String,
    },
    /// Lift the login locks of a user (wrong passwords from any address).
    Unlock {
        /// Login name or email.
        #[arg(long)]
        username: String,
    },
}

pub async fn run(settings: &Settings, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Unlock { username } => unlock(settings, &username).await,
        AdminCommand::ResetPassword { username } => reset_password(settings, &username).await,
        AdminCommand::CreateUser {
            username,
            email,
            role,
            phone,
            full_name,
        } => {
            let username = username.trim().to_lowercase();
            let email = parse_email(&email).map_err(|m| anyhow::anyhow!("--email: {m}"))?;
            let phone = phone
                .as_deref()
                .map(parse_phone)
                .transpose()
                .map_err(|m| anyhow::anyhow!("--phone: {m}"))?;
            let hasher = Hasher::new(&settings.auth)?;
            let password = read_password()?;
            let owner = Owner {
                username: &username,
                full_name: full_name.as_deref().unwrap_or(&username),
                email: Some(&email),
            };
            hasher
                .check_policy(&password, &owner)
                .map_err(|m| anyhow::anyhow!("password: {m}"))?;
            let hash = hasher
                .hash(password)
                .await
                .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;

            let pool = db::connect(&settings.database).await?;
            db::migrate(&pool).await?;
            let mut tx = pool.begin().await?;
            let role_id: i64 = sqlx::query_scalar(
                "select id from adm_role where code = upper($1) and deleted_at is null",
            )
            .bind(&role)
            .fetch_optional(&mut *tx)
            .await?
            .with_context(|| format!("--role: no role {role:?}"))?;
            let inserted: Result<(i64, uuid::Uuid), sqlx::Error> = sqlx::query_as(
                "insert into adm_user (username, email, full_name, phone, role_id, password_hash,
                                       password_changed_at)
                 values ($1, $2, $3, $4, $5, $6, now())
                 returning id, uuid",
            )
            .bind(&username)
            .bind(&email)
            .bind(full_name.as_deref().unwrap_or(&username))
            .bind(phone.as_ref().map(|p| p.to_string()))
            .bind(role_id)
            .bind(&hash)
            .fetch_one(&mut *tx)
            .await;
            let (id, uuid) = match inserted {
                Ok(row) => row,
                Err(e) => {
                    if let Some(c) = e.as_database_error().and_then(|d| d.constraint()) {
                        bail!("cannot create the user: constraint {c} (username, email or phone taken, or malformed)");
                    }
                    return Err(e).context("inserting the user");
                }
            };
            hasher
                .remember(&mut tx, id, &hash)
                .await
                .map_err(|e| anyhow::anyhow!("recording the password: {e}"))?;
            let new: Value = sqlx::query_scalar(
                "select to_jsonb(u) - 'password_hash' from adm_user u where id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            audit::record(
                &mut tx,
                None,
                Some("cli"),
                Entry {
                    action: "CREATE",
                    entity_type: "adm_user",
                    entity_id: Some(id),
                    entity_uuid: Some(uuid),
                    old: None,
                    new: Some(new),
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("writing the audit row: {e}"))?;
            tx.commit().await?;
            pool.close().await;
            println!(
                "created user {username} ({uuid}) with role {}",
                role.to_uppercase()
            );
            Ok(())
        }
    }
}

/// The password from the environment, else asked twice on the terminal without echo.
fn read_password() -> anyhow::Result<SecretString> {
    if let Ok(p) = std::env::var(PASSWORD_VAR) {
        if !p.is_empty() {
            return Ok(SecretString::from(p));
        }
    }
    let first = rpassword::prompt_password("Password: ")
        .with_context(|| format!("no terminal to ask for the password; set {PASSWORD_VAR}"))?;
    let again = rpassword::prompt_password("Password (again): ")
        .context("reading the password confirmation")?;
    if first != again {
        bail!("the passwords differ");
    }
    let password = SecretString::from(first);
    if password.expose_secret().is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

/// `admin unlock`: both login locks and counts cleared, with an `UNLOCK` audit row.
async fn unlock(settings: &Settings, login: &str) -> anyhow::Result<()> {
    let login = login.trim().to_lowercase();
    let pool = db::connect(&settings.database).await?;
    let mut tx = pool.begin().await?;
    let row: Option<(i64, uuid::Uuid, Value)> = sqlx::query_as(
        "select id, uuid, to_jsonb(u) - 'password_hash' from adm_user u
         where deleted_at is null and (username = $1 or lower(email) = $1) for update",
    )
    .bind(&login)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, uuid, old)) = row else {
        bail!("no live user has the login {login:?}");
    };
    let new: Value = sqlx::query_scalar(&format!(
        "update adm_user u set {CLEAR_LOCKS}
         where id = $1 returning to_jsonb(u) - 'password_hash'"
    ))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        None,
        Some("cli"),
        Entry {
            action: "UNLOCK",
            entity_type: "adm_user",
            entity_id: Some(id),
            entity_uuid: Some(uuid),
            old: Some(old),
            new: Some(new),
        },
    )
    .await
    .context("writing the audit row")?;
    tx.commit().await?;
    pool.close().await;
    println!("unlocked {login} ({uuid})");
    Ok(())
}

/// `admin reset-password`: the policy (history included), a fresh hash, locks lifted, every
/// session ended, a `RESET_PWD` audit row by the CLI. The user chose the password, so the next
/// login need not change it.
async fn reset_password(settings: &Settings, login: &str) -> anyhow::Result<()> {
    let login = login.trim().to_lowercase();
    let pool = db::connect(&settings.database).await?;
    let found: Option<(i64, uuid::Uuid, String, String, Option<String>)> = sqlx::query_as(
        "select id, uuid, username, full_name, email from adm_user
         where deleted_at is null and (username = $1 or lower(email) = $1)",
    )
    .bind(&login)
    .fetch_optional(&pool)
    .await?;
    let Some((id, uuid, username, full_name, email)) = found else {
        bail!("no live user has the login {login:?}");
    };
    let hasher = Hasher::new(&settings.auth)?;
    let password = read_password()?;
    let owner = Owner {
        username: &username,
        full_name: &full_name,
        email: email.as_deref(),
    };
    hasher
        .check_policy(&password, &owner)
        .map_err(|m| anyhow::anyhow!("password: {m}"))?;
    let mut conn = pool.acquire().await?;
    if hasher
        .reused(&mut conn, id, &password)
        .await
        .map_err(|e| anyhow::anyhow!("checking the password history: {e}"))?
    {
        bail!(
            "password: must differ from the last {} passwords",
            settings.auth.password_history
        );
    }
    drop(conn);
    let hash = hasher
        .hash(password)
        .await
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    let mut tx = pool.begin().await?;
    let old: Value = sqlx::query_scalar(
        "select to_jsonb(u) - 'password_hash' from adm_user u where id = $1 for update",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    hasher
        .remember(&mut tx, id, &hash)
        .await
        .map_err(|e| anyhow::anyhow!("recording the password: {e}"))?;
    let new: Value = sqlx::query_scalar(&format!(
        "update adm_user u set password_hash = $2, password_changed_at = now(),
             must_change_password = false, {CLEAR_LOCKS}
         where id = $1 returning to_jsonb(u) - 'password_hash'"
    ))
    .bind(id)
    .bind(&hash)
    .fetch_one(&mut *tx)
    .await?;
    let revoked = revoke_user_sessions(&mut tx, id, "password_reset")
        .await
        .map_err(|e| anyhow::anyhow!("ending the sessions: {e}"))?;
    audit::record(
        &mut tx,
        None,
        Some("cli"),
        Entry {
            action: "RESET_PWD",
            entity_type: "adm_user",
            entity_id: Some(id),
            entity_uuid: Some(uuid),
            old: Some(old),
            new: Some(serde_json::json!({ "user": new, "revoked_sessions": revoked })),
        },
    )
    .await
    .context("writing the audit row")?;
    tx.commit().await?;
    pool.close().await;
    println!("new password set for {login} ({uuid}); {revoked} session(s) ended");
    Ok(())
}

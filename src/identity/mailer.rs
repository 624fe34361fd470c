//! The OTP mail, bilingual, over SMTP with lettre, or into the local mailbox when no mail
//! server is configured (local mode): a file per mail, and the mail published on NATS for
//! `sentient-hub chat` to show inline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use futures::future::BoxFuture;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::{SmtpSettings, SmtpTls};
use crate::whatsapp::local::{mailbox_subject, wa_id_of};

/// A ready SMTP transport (it connects per send).
#[derive(Clone)]
pub struct Mailer {
    /// lettre's pooled transport.
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// The From header.
    from: Mailbox,
}

/// What the mail says around the code.
pub struct OtpMail<'a> {
    /// Recipient's name.
    pub name: &'a str,
    /// Recipient's address.
    pub to: &'a str,
    /// The code.
    pub code: &'a str,
    /// What the code is for.
    pub purpose: MailPurpose,
    /// Where it was asked from: the phone, masked (chat), or the client's address (admin sign-in).
    pub asked_from: &'a str,
    /// The user's phone, unmasked: the local mailbox shows the mail in that number's chat.
    pub phone: Option<&'a str>,
    /// When it was asked, in the factory's time zone.
    pub asked_at: &'a str,
    /// Validity in minutes.
    pub valid_minutes: u64,
}

/// What a code mail is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailPurpose {
    /// Confirming the WhatsApp device in the chat.
    Chat,
    /// The second factor of an admin API sign-in.
    AdminLogin,
    /// The step-up before approving a document from the chat (`asked_from` names the document).
    Approval,
}

/// The mailer the settings ask for: SMTP when `smtp.host` is set, the local mailbox otherwise
/// (configuration validation allows that only in local mode).
pub fn from_settings(
    settings: &SmtpSettings,
    nats: async_nats::Client,
) -> anyhow::Result<Arc<dyn SendsCodes>> {
    if settings.host.trim().is_empty() {
        tracing::info!(
            dir = %settings.mailbox_dir.display(),
            "no mail server: code mails go to the local mailbox (sentient-hub chat shows them)"
        );
        Ok(Arc::new(LocalMailbox {
            dir: settings.mailbox_dir.clone(),
            from: settings.from.clone(),
            nats,
        }))
    } else {
        Ok(Arc::new(Mailer::new(settings)?))
    }
}

impl Mailer {
    pub fn new(settings: &SmtpSettings) -> anyhow::Result<Self> {
        let builder = match settings.tls {
            SmtpTls::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            }
            SmtpTls::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)?,
        };
        let mut builder = builder
            .port(settings.port)
            .timeout(Some(Duration::from_secs(settings.timeout_secs)));
        if !settings.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                settings.username.clone(),
                settings.password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from: settings
                .from
                .parse()
                .map_err(|e| anyhow::anyhow!("smtp.from: {e}"))?,
        })
    }

    /// Sends the code. The error says what failed, never the code.
    async fn send(&self, mail: &OtpMail<'_>) -> anyhow::Result<()> {
        let to: Mailbox = format!("{} <{}>", mail.name.replace(['<', '>', '"'], ""), mail.to)
            .parse()
            .map_err(|e| anyhow::anyhow!("recipient address: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(SUBJECT)
            .header(ContentType::TEXT_PLAIN)
            .body(body(mail))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| anyhow::anyhow!("SMTP delivery failed: {e}"))?;
        Ok(())
    }
}

/// Local mode's mail: each mail is written to `dir` as `<time>-<id>.eml` and published on
/// the user's phone's [`mailbox_subject`], where `sentient-hub chat` prints it.
pub struct LocalMailbox {
    dir: PathBuf,
    from: String,
    nats: async_nats::Client,
}

impl LocalMailbox {
    async fn keep(&self, mail: &OtpMail<'_>) -> anyhow::Result<()> {
        let text = format!(
            "From: {}\nTo: {} <{}>\nDate: {}\nSubject: {SUBJECT}\n\n{}",
            self.from,
            mail.name,
            mail.to,
            chrono::Utc::now().to_rfc2822(),
            body(mail)
        );
        tokio::fs::create_dir_all(&self.dir)
            .await
            .with_context(|| format!("creating the local mailbox {}", self.dir.display()))?;
        let file = self.dir.join(format!(
            "{}-{}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            uuid::Uuid::new_v4().simple()
        ));
        tokio::fs::write(&file, &text)
            .await
            .with_context(|| format!("writing {}", file.display()))?;
        if let Some(wa_id) = mail.phone.and_then(|p| wa_id_of(p).ok()) {
            self.nats
                .publish(mailbox_subject(&wa_id), text.into())
                .await
                .context("publishing to the local mailbox")?;
        }
        Ok(())
    }
}

impl SendsCodes for LocalMailbox {
    fn send_otp<'a>(&'a self, mail: &'a OtpMail<'_>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.keep(mail))
    }
}

/// The subject line: not the code, which a phone's lock screen would show.
const SUBJECT: &str = "Kode verifikasi Sentient Hub / Verification code";

/// What mails one-time codes: the SMTP [`Mailer`], the [`LocalMailbox`], or a fake in tests.
pub trait SendsCodes: Send + Sync {
    /// Mails `mail`; an error means it did not go out (the gate retries later).
    fn send_otp<'a>(&'a self, mail: &'a OtpMail<'_>) -> BoxFuture<'a, anyhow::Result<()>>;
}

impl SendsCodes for Mailer {
    fn send_otp<'a>(&'a self, mail: &'a OtpMail<'_>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.send(mail))
    }
}

fn body(m: &OtpMail<'_>) -> String {
    match m.purpose {
        MailPurpose::Chat => format!(
            "Halo {name},\n\n\
             Kode verifikasi WhatsApp Sentient Hub Anda: {code}\n\
             Diminta dari nomor {from} pada {at}. Berlaku {minutes} menit, sekali pakai.\n\
             Ketik kode ini di chat WhatsApp Sentient Hub. Jangan berikan kode ini kepada siapa pun.\n\
             Jika bukan Anda yang meminta, abaikan email ini dan segera hubungi administrator TI:\n\
             seseorang mungkin mencoba memakai akun WhatsApp Anda.\n\n\
             ----\n\n\
             Hello {name},\n\n\
             Your Sentient Hub WhatsApp verification code: {code}\n\
             Requested from {from} at {at}. Valid for {minutes} minutes, single use.\n\
             Type this code in the Sentient Hub WhatsApp chat. Never share it with anyone.\n\
             If this was not you, ignore this mail and contact your IT administrator right away:\n\
             someone may be trying to use your WhatsApp account.\n",
            name = m.name,
            code = m.code,
            from = m.asked_from,
            at = m.asked_at,
            minutes = m.valid_minutes,
        ),
        MailPurpose::Approval => format!(
            "Halo {name},\n\n\
             Kode persetujuan Sentient Hub Anda: {code}\n\
             Untuk menyetujui {from} dari WhatsApp, diminta pada {at}. Berlaku {minutes} menit, sekali pakai.\n\
             Ketik kode ini di chat WhatsApp Sentient Hub. Jangan berikan kode ini kepada siapa pun.\n\
             Jika bukan Anda yang meminta, jangan ketik kode ini dan segera hubungi administrator TI:\n\
             seseorang mungkin memegang ponsel Anda.\n\n\
             ----\n\n\
             Hello {name},\n\n\
             Your Sentient Hub approval code: {code}\n\
             For approving {from} from WhatsApp, requested at {at}. Valid for {minutes} minutes, single use.\n\
             Type this code in the Sentient Hub WhatsApp chat. Never share it with anyone.\n\
             If this was not you, do not type the code and contact your IT administrator right away:\n\
             someone may be holding your phone.\n",
            name = m.name,
            code = m.code,
            from = m.asked_from,
            at = m.asked_at,
            minutes = m.valid_minutes,
        ),
        MailPurpose::AdminLogin => format!(
            "Halo {name},\n\n\
             Kode verifikasi Sentient Hub Anda: {code}\n\
             Untuk masuk ke API admin dari alamat {from} pada {at}. Berlaku {minutes} menit, sekali pakai.\n\
             Jangan berikan kode ini kepada siapa pun.\n\
             Jika bukan Anda yang masuk, seseorang mengetahui kata sandi Anda: segera ganti kata sandi\n\
             dan hubungi administrator TI.\n\n\
             ----\n\n\
             Hello {name},\n\n\
             Your Sentient Hub verification code: {code}\n\
             For signing in to the admin API from {from} at {at}. Valid for {minutes} minutes, single use.\n\
             Never share it with anyone.\n\
             If this was not you, someone knows your password: change it right away and contact your\n\
             IT administrator.\n",
            name = m.name,
            code = m.code,
            from = m.asked_from,
            at = m.asked_at,
            minutes = m.valid_minutes,
        ),
    }
}

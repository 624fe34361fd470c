//! The OTP mail, bilingual, over SMTP with lettre.

use std::time::Duration;

use futures::future::BoxFuture;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::{SmtpSettings, SmtpTls};

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
    /// The phone that asked, masked.
    pub phone_masked: &'a str,
    /// When it was asked, in the factory's time zone.
    pub asked_at: &'a str,
    /// Validity in minutes.
    pub valid_minutes: u64,
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
            // Not the code: a phone's lock screen shows the subject line.
            .subject("Kode verifikasi Sentient Hub / Verification code")
            .header(ContentType::TEXT_PLAIN)
            .body(body(mail))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| anyhow::anyhow!("SMTP delivery failed: {e}"))?;
        Ok(())
    }
}

/// What mails one-time codes: the SMTP [`Mailer`], or a fake in tests.
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
    format!(
        "Halo {name},\n\n\
         Kode verifikasi WhatsApp Sentient Hub Anda: {code}\n\
         Diminta dari nomor {phone} pada {at}. Berlaku {minutes} menit, sekali pakai.\n\
         Ketik kode ini di chat WhatsApp Sentient Hub. Jangan berikan kode ini kepada siapa pun.\n\
         Jika bukan Anda yang meminta, abaikan email ini dan segera hubungi administrator TI:\n\
         seseorang mungkin mencoba memakai akun WhatsApp Anda.\n\n\
         ----\n\n\
         Hello {name},\n\n\
         Your Sentient Hub WhatsApp verification code: {code}\n\
         Requested from {phone} at {at}. Valid for {minutes} minutes, single use.\n\
         Type this code in the Sentient Hub WhatsApp chat. Never share it with anyone.\n\
         If this was not you, ignore this mail and contact your IT administrator right away:\n\
         someone may be trying to use your WhatsApp account.\n",
        name = m.name,
        code = m.code,
        phone = m.phone_masked,
        at = m.asked_at,
        minutes = m.valid_minutes,
    )
}

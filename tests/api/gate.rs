//! The gate on its own: `Gate::admit` in a transaction on a fresh database, with a fake mailer
//! that keeps the codes (or refuses to send). No app, no NATS, no waiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use sentient_hub::identity::gate::{Admission, Gate, Inbound};
use sentient_hub::identity::mailer::{OtpMail, SendsCodes};
use sentient_hub::queue::Doorbell;
use sentient_hub::texts::Lang;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{fresh_database, new_sender, TestDb};

/// Keeps every code it is asked to mail; refuses while `down`. With a `probe` pool it checks,
/// while "talking SMTP", that the pool still has a connection to give (`starved` when not).
#[derive(Default)]
struct FakeMailer {
    sent: Mutex<Vec<(String, String)>>,
    down: AtomicBool,
    probe: Mutex<Option<PgPool>>,
    starved: AtomicBool,
}

impl SendsCodes for FakeMailer {
    fn send_otp<'a>(&'a self, mail: &'a OtpMail<'_>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let probe = self.probe.lock().unwrap().clone();
            if let Some(pool) = probe {
                let free = tokio::time::timeout(
                    Duration::from_secs(2),
                    sqlx::query("select 1").execute(&pool),
                )
                .await;
                if !matches!(free, Ok(Ok(_))) {
                    self.starved.store(true, Ordering::SeqCst);
                }
            }
            if self.down.load(Ordering::SeqCst) {
                anyhow::bail!("SMTP delivery failed: connection refused");
            }
            self.sent
                .lock()
                .unwrap()
                .push((mail.to.to_owned(), mail.code.to_owned()));
            Ok(())
        })
    }
}

struct Fixture {
    gate: Gate,
    mailer: Arc<FakeMailer>,
    db: PgPool,
    test_db: TestDb,
}

async fn fixture() -> Fixture {
    let test_db = fresh_database().await;
    let db = PgPool::connect_with(test_db.settings.database.connect_options())
        .await
        .unwrap();
    let mailer = Arc::new(FakeMailer::default());
    let gate = Gate::new(
        mailer.clone(),
        test_db.settings.identity.clone(),
        chrono_tz::Asia::Jakarta,
        Duration::from_secs(5),
        Doorbell::default(),
    );
    Fixture {
        gate,
        mailer,
        db,
        test_db,
    }
}

impl Fixture {
    /// A live user of `role` on a fresh phone; returns the wa_id.
    async fn user(&self, role: &str) -> String {
        let wa_id = new_sender();
        sqlx::query(
            "insert into adm_user (username, email, full_name, phone, role_id)
             values ($1, $1 || '@factory.local', 'Gate Test', '+' || $2,
                     (select id from adm_role where code = $3))",
        )
        .bind(format!("g{wa_id}"))
        .bind(&wa_id)
        .bind(role)
        .execute(&self.db)
        .await
        .unwrap();
        wa_id
    }

    /// What the gate decides for a text `body` from `wa_id`, committed.
    async fn admit(&self, wa_id: &str, wamid: &str, body: &str) -> Admission {
        let payload = json!({ "type": "text", "text": { "body": body } });
        let msg = Inbound {
            wamid,
            sender_key: wa_id,
            wa_id: Some(wa_id),
            bsuid: None,
            identity_hash: None,
            msg_type: "text",
            body: Some(body),
            payload: &payload,
            lang: Lang::detect(body),
        };
        let mut tx = self.db.begin().await.unwrap();
        let admission = self.gate.admit(&mut tx, &msg).await.unwrap();
        tx.commit().await.unwrap();
        admission
    }

    /// What the mailer does after the consumer's commit: sends the due codes.
    async fn mail(&self) -> usize {
        self.gate.send_due_codes(&self.db).await.unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }

    /// Texts queued for `wa_id` that answer no inbound message, oldest first.
    async fn notices(&self, wa_id: &str) -> Vec<String> {
        let payloads: Vec<Value> = sqlx::query_scalar(
            "select payload from wa_outbox where wa_id = $1 and inbound_wamid is null order by id",
        )
        .bind(wa_id)
        .fetch_all(&self.db)
        .await
        .unwrap();
        payloads
            .iter()
            .map(|p| p["text"]["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn codes(&self) -> Vec<String> {
        self.mailer
            .sent
            .lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }
}

#[tokio::test]
async fn gate_refuses_an_unknown_sender_once_a_day_and_audits_every_attempt() {
    let f = fixture().await;
    let stranger = new_sender();
    let first = f.admit(&stranger, "wamid.g.u1", "halo").await;
    let Admission::Refused(Some(text)) = first else {
        panic!("the first attempt gets a refusal");
    };
    assert!(text.contains("tidak terdaftar"), "{text}");
    assert!(matches!(
        f.admit(&stranger, "wamid.g.u2", "halo lagi").await,
        Admission::Refused(None)
    ));
    assert_eq!(
        f.count("select count(*) from log_audit where action = 'WA.DENIED' and entity_type = 'wa_sender'")
            .await,
        2
    );
    assert!(f.codes().is_empty(), "no code for a stranger");
}

#[tokio::test]
async fn gate_holds_a_new_device_until_the_mailed_code_and_then_admits_with_the_role() {
    let f = fixture().await;
    let me = f.user("MANAGER_SALES").await;
    let Admission::Held(reply) = f.admit(&me, "wamid.g.h1", "omzet bulan ini?").await else {
        panic!("a first contact is held");
    };
    assert!(reply.contains("kode"), "{reply}");
    assert!(
        f.codes().is_empty(),
        "nothing is mailed inside the gate's transaction"
    );
    assert_eq!(f.mail().await, 1);
    let codes = f.codes();
    assert_eq!(codes.len(), 1);
    assert_eq!(codes[0].len(), 6);
    assert!(codes[0].chars().all(|c| c.is_ascii_digit()));
    // Only its hash is stored.
    assert_eq!(
        f.count(&format!(
            "select count(*) from wa_otp where code_hash = '{}' or code_hash like '%{}%'",
            codes[0], codes[0]
        ))
        .await,
        0
    );

    let Admission::Code { released, .. } = f.admit(&me, "wamid.g.h2", &codes[0]).await else {
        panic!("a code is checked");
    };
    assert_eq!(released, 0, "no inbox row was held in this test");
    let Admission::Admitted(caller) = f.admit(&me, "wamid.g.h3", "omzet bulan ini?").await else {
        panic!("a confirmed device is admitted");
    };
    assert_eq!(caller.role, "MANAGER_SALES");
    assert!(caller.may("AI.CHAT"));
    assert_eq!(
        f.count("select count(*) from log_audit where action = 'WA.OTP_CONFIRMED'")
            .await,
        1
    );
}

#[tokio::test]
async fn gate_voids_the_code_after_the_allowed_wrong_tries() {
    let f = fixture().await;
    let me = f.user("DIRECTOR").await;
    f.admit(&me, "wamid.g.w0", "stok?").await;
    f.mail().await;
    let right = f.codes()[0].clone();
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let tries = f.test_db.settings.identity.otp_max_attempts;
    for n in 1..=tries {
        let Admission::Code { reply, released } =
            f.admit(&me, &format!("wamid.g.w{n}"), wrong).await
        else {
            panic!("a code is checked");
        };
        assert_eq!(released, 0);
        if n == tries {
            assert!(reply.contains("dibatalkan"), "{reply}");
        }
    }
    // Even the right code no longer opens it.
    let Admission::Code { released, .. } = f.admit(&me, "wamid.g.wr", &right).await else {
        panic!("a code is checked");
    };
    assert_eq!(released, 0);
    assert_eq!(
        f.count("select count(*) from wa_trust where confirmed_at is not null")
            .await,
        0
    );
    assert_eq!(
        f.count("select count(*) from log_audit where action = 'WA.OTP_LOCKED'")
            .await,
        1
    );
}

#[tokio::test]
async fn gate_tells_the_user_when_smtp_fails_and_mails_a_fresh_code_on_retry() {
    let f = fixture().await;
    let me = f.user("DIRECTOR").await;
    f.mailer.down.store(true, Ordering::SeqCst);
    let Admission::Held(reply) = f.admit(&me, "wamid.g.s1", "omzet?").await else {
        panic!("held");
    };
    assert!(reply.contains("sedang mengirim"), "{reply}");
    assert_eq!(f.mail().await, 1, "the first try fails");
    assert_eq!(
        f.count("select count(*) from wa_otp where sent_at is null and last_error is not null")
            .await,
        1
    );
    assert_eq!(f.notices(&me).await.len(), 1);
    assert!(f.notices(&me).await[0].contains("belum dapat dikirim"));
    // A question meanwhile is held with the same news, and no second code.
    let Admission::Held(reply) = f.admit(&me, "wamid.g.s1b", "stok?").await else {
        panic!("held");
    };
    assert!(reply.contains("belum dapat dikirim"), "{reply}");
    assert_eq!(f.count("select count(*) from wa_otp").await, 1);

    f.mailer.down.store(false, Ordering::SeqCst);
    assert_eq!(f.mail().await, 0, "the retry waits for its backoff");
    sqlx::query("update wa_otp set next_try_at = now()")
        .execute(&f.db)
        .await
        .unwrap();
    assert_eq!(f.mail().await, 1);
    assert_eq!(f.codes().len(), 1, "the retry mailed a code");
    // The phone is told, through the outbox, once for the failure and once for the late mail.
    let notices = f.notices(&me).await;
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices[1].contains("sudah terkirim"), "{notices:?}");
    let Admission::Code { .. } = f.admit(&me, "wamid.g.s2", &f.codes()[0]).await else {
        panic!("a code is checked");
    };
    assert_eq!(
        f.count("select count(*) from wa_trust where confirmed_at is not null")
            .await,
        1
    );
}

#[tokio::test]
async fn gate_mails_with_no_database_connection_held() {
    let f = fixture().await;
    // A pool of one: were a transaction open while the mail is sent, the probe would wait.
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(f.test_db.settings.database.connect_options())
        .await
        .unwrap();
    *f.mailer.probe.lock().unwrap() = Some(one.clone());
    let me = f.user("DIRECTOR").await;
    let Admission::Held(_) = f.admit(&me, "wamid.g.p1", "omzet?").await else {
        panic!("held");
    };
    assert_eq!(f.gate.send_due_codes(&one).await.unwrap(), 1);
    assert_eq!(f.codes().len(), 1);
    assert!(
        !f.mailer.starved.load(Ordering::SeqCst),
        "the mail was sent while the mailer held the pool's only connection"
    );
    assert_eq!(
        f.count("select count(*) from wa_otp where sent_at is not null")
            .await,
        1
    );
}

#[tokio::test]
async fn gate_code_claimed_by_a_crashed_mailer_is_mailed_again_after_its_lease() {
    let f = fixture().await;
    let me = f.user("DIRECTOR").await;
    f.admit(&me, "wamid.g.c1", "omzet?").await;
    // A mailer that claimed the code and died before recording anything: a hash, a try, a lease.
    sqlx::query(
        "update wa_otp set code_hash = 'claimed-by-the-dead', send_tries = 1,
             next_try_at = now() + interval '35 seconds'",
    )
    .execute(&f.db)
    .await
    .unwrap();
    assert_eq!(f.mail().await, 0, "leased");
    sqlx::query("update wa_otp set next_try_at = now()")
        .execute(&f.db)
        .await
        .unwrap();
    assert_eq!(f.mail().await, 1);
    let code = f.codes()[0].clone();
    let Admission::Code { reply, .. } = f.admit(&me, "wamid.g.c2", &code).await else {
        panic!("a code is checked");
    };
    assert!(reply.contains("Verifikasi berhasil"), "{reply}");
}

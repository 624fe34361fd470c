//! `spawn_app()`: the real application on a random port, against a fresh PostgreSQL database
//! (dropped when the test ends) and the machine's real NATS.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use secrecy::SecretString;
use sentient_hub::config::Settings;
use sentient_hub::startup::{Application, Stages};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

#[path = "../support/setup.rs"]
mod setup;
use setup::{Isolated, Schema};

pub struct TestApp {
    pub address: String,
    /// A pool on the test's own database, for assertions.
    pub db: PgPool,
    pub client: reqwest::Client,
    /// The fake Graph API the app sends to (None in local mode).
    pub graph: Option<FakeGraph>,
    /// The app's pipeline stages, to drive by hand ([`TestApp::settle`]).
    pub stages: Stages,
    /// The test's database; dropped with the app.
    pub test_db: TestDb,
}

/// A fresh database that is dropped (with force), with the test's streams, when this guard
/// goes away.
pub struct TestDb {
    /// Settings pointing at this database, port 0, no auto-creation.
    pub settings: Settings,
    pub name: String,
    isolated: Isolated,
}

pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Settings as a developer's machine has them (config files + environment), for tests.
pub fn base_settings() -> Settings {
    setup::test_settings()
}

/// A fresh database with every migration applied.
pub async fn fresh_database() -> TestDb {
    test_db(Schema::Migrated).await
}

/// A fresh database without any table: the app migrates it at start.
pub async fn empty_database() -> TestDb {
    test_db(Schema::Empty).await
}

async fn test_db(schema: Schema) -> TestDb {
    let isolated = Isolated::new("sentient_test", schema)
        .await
        .expect("a test database");
    TestDb {
        settings: isolated.settings.clone(),
        name: isolated.name.clone(),
        isolated,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Keeps one stream on the test NATS server for the whole run. Tests create and delete their
/// own streams all the time; when the last one goes, nats-server 2.9 removes the account's
/// stream directory, and a stream created at that moment fails with "could not create storage
/// directory" (seen once in CI). A stream that always exists keeps the directory.
async fn keep_stream_directory(settings: &sentient_hub::config::Settings) {
    static KEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    KEPT.get_or_init(|| async {
        let nats = sentient_hub::queue::connect_nats(&settings.nats)
            .await
            .expect("NATS for the tests");
        async_nats::jetstream::new(nats)
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: "SENTIENT_TEST_KEEP".into(),
                subjects: vec!["sentient.test.keep".into()],
                max_messages: 1,
                ..Default::default()
            })
            .await
            .expect("the tests' lasting stream");
    })
    .await;
}

/// Builds and serves the app on `test_db`, which it owns from then on.
pub async fn start(test_db: TestDb, graph: Option<FakeGraph>) -> TestApp {
    let settings = test_db.settings.clone();
    keep_stream_directory(&settings).await;
    let app = Application::build(settings.clone())
        .await
        .expect("application builds");
    let port = app.port();
    let stages = app.stages();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(settings.database.connect_options())
        .await
        .expect("test pool");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        db,
        client: reqwest::Client::new(),
        graph,
        stages,
        test_db,
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request is sent")
    }

    /// Drops the test's database while the app is still connected to it.
    pub async fn kill_database(&self) {
        setup::drop_database(self.test_db.isolated.admin(), &self.test_db.name).await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside async; a short-lived runtime on its own thread does the cleanup.
        let isolated = &self.isolated;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cleanup runtime")
                    .block_on(isolated.remove());
            });
        });
    }
}

/// The test app secret (config/test.toml).
pub const APP_SECRET: &str = "test-app-secret";

/// Builds the real app with settings changed by `tweak`, against a fresh database and a fake
/// Graph API, and starts serving it.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut test_db = fresh_database().await;
    let graph = FakeGraph::start().await;
    test_db.settings.whatsapp.access_token = SecretString::from("test-graph-token");
    test_db.settings.whatsapp.graph_base_url = graph.address.clone();
    test_db.settings.whatsapp.retry_base_ms = 10;
    test_db.settings.whatsapp.retry_max_ms = 50;
    tweak(&mut test_db.settings);
    start(test_db, Some(graph)).await
}

/// A Graph API double that speaks Meta's JSON: records every request and answers from a script
/// (default: success with a fresh wamid).
#[derive(Clone)]
pub struct FakeGraph {
    pub address: String,
    pub requests: Arc<Mutex<Vec<GraphRequest>>>,
    /// Media uploads (`POST /{version}/{phone}/media`), read from their multipart bodies.
    pub uploads: Arc<Mutex<Vec<GraphUpload>>>,
    /// Answers for the next calls, messages and uploads alike, in order.
    script: Arc<Mutex<VecDeque<(u16, Value)>>>,
}

/// One media upload as Meta would read it.
#[derive(Debug, Clone)]
pub struct GraphUpload {
    pub path: String,
    pub authorization: Option<String>,
    /// The text fields (`messaging_product`, `type`).
    pub fields: std::collections::BTreeMap<String, String>,
    pub file_name: Option<String>,
    pub file_type: Option<String>,
    pub file: Vec<u8>,
    /// The id answered (none when the upload was failed on purpose).
    pub media_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GraphRequest {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

impl FakeGraph {
    pub async fn start() -> Self {
        let fake = FakeGraph {
            address: String::new(),
            requests: Arc::default(),
            uploads: Arc::default(),
            script: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let state = fake.clone();
        let media = fake.clone();
        let app = axum::Router::new()
            .route(
                "/{version}/{phone}/messages",
                axum::routing::post(
                    move |uri: axum::http::Uri,
                          headers: axum::http::HeaderMap,
                          body: axum::body::Bytes| {
                        let state = state.clone();
                        async move { state.answer(uri, headers, body) }
                    },
                ),
            )
            .route(
                "/{version}/{phone}/media",
                axum::routing::post(
                    move |uri: axum::http::Uri,
                          headers: axum::http::HeaderMap,
                          body: axum::body::Bytes| {
                        let media = media.clone();
                        async move { media.upload(uri, headers, body) }
                    },
                ),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGraph { address, ..fake }
    }

    fn answer(
        &self,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, axum::Json<Value>) {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let is_read_receipt = body.get("status").is_some();
        let mut requests = self.requests.lock().unwrap();
        requests.push(GraphRequest {
            path: uri.path().to_owned(),
            authorization: headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned()),
            body,
        });
        if is_read_receipt {
            return (
                axum::http::StatusCode::OK,
                axum::Json(json!({ "success": true })),
            );
        }
        if let Some(scripted) = self.scripted() {
            return scripted;
        }
        let n = requests.len();
        (
            axum::http::StatusCode::OK,
            axum::Json(json!({
                "messaging_product": "whatsapp",
                "contacts": [{ "input": "x", "wa_id": "x" }],
                "messages": [{ "id": format!("wamid.fake.{n}") }]
            })),
        )
    }

    /// A media upload: the multipart body read part by part (a body that is not multipart is
    /// answered 400, as Meta does), recorded, answered `{"id":"media.fake.N"}`.
    fn upload(
        &self,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, axum::Json<Value>) {
        let boundary = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.starts_with("multipart/form-data"))
            .and_then(|v| v.split("boundary=").nth(1))
            .map(|b| b.trim_matches('"').to_owned());
        let Some(boundary) = boundary else {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({ "error": { "message": "not multipart", "type": "OAuthException", "code": 100 } }),
                ),
            );
        };
        let mut upload = GraphUpload {
            path: uri.path().to_owned(),
            authorization: headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned()),
            fields: Default::default(),
            file_name: None,
            file_type: None,
            file: Vec::new(),
            media_id: None,
        };
        let delimiter = format!("--{boundary}");
        for part in split_bytes(&body, delimiter.as_bytes()) {
            let Some(split) = find_bytes(part, b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&part[..split]).to_string();
            let mut content = &part[split + 4..];
            if content.ends_with(b"\r\n") {
                content = &content[..content.len() - 2];
            }
            let attribute = |name: &str| {
                let key = format!("{name}=\"");
                let start = head.find(&key)? + key.len();
                Some(head[start..].split('"').next()?.to_owned())
            };
            let Some(name) = attribute("name") else {
                continue;
            };
            if name == "file" {
                upload.file_name = attribute("filename");
                upload.file_type = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Content-Type: ")
                            .or(l.strip_prefix("content-type: "))
                    })
                    .map(str::to_owned);
                upload.file = content.to_vec();
            } else {
                upload
                    .fields
                    .insert(name, String::from_utf8_lossy(content).into_owned());
            }
        }
        let mut uploads = self.uploads.lock().unwrap();
        if let Some(scripted) = self.scripted() {
            uploads.push(upload);
            return scripted;
        }
        let id = format!("media.fake.{}", uploads.len() + 1);
        upload.media_id = Some(id.clone());
        uploads.push(upload);
        (axum::http::StatusCode::OK, axum::Json(json!({ "id": id })))
    }

    /// The next scripted answer, if one waits.
    fn scripted(&self) -> Option<(axum::http::StatusCode, axum::Json<Value>)> {
        let (status, answer) = self.script.lock().unwrap().pop_front()?;
        Some((
            axum::http::StatusCode::from_u16(status).unwrap(),
            axum::Json(answer),
        ))
    }

    /// Media uploads so far.
    pub fn uploads(&self) -> Vec<GraphUpload> {
        self.uploads.lock().unwrap().clone()
    }

    /// The next call (a send or an upload) is answered `body` with `http_status`.
    pub fn answer_next(&self, http_status: u16, body: Value) {
        self.script.lock().unwrap().push_back((http_status, body));
    }

    /// The next call is answered with Meta's error `code`.
    pub fn fail_next(&self, http_status: u16, code: i64) {
        self.answer_next(
            http_status,
            json!({ "error": {
                "message": format!("error {code}"), "type": "OAuthException", "code": code,
                "error_data": { "messaging_product": "whatsapp", "details": format!("details of {code}") },
                "fbtrace_id": "trace"
            }}),
        );
    }

    /// Message sends (read receipts left out).
    pub fn sends(&self) -> Vec<GraphRequest> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.body.get("status").is_none())
            .cloned()
            .collect()
    }
}

/// The pieces of `bytes` between occurrences of `delimiter`.
fn split_bytes<'a>(bytes: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = bytes;
    while let Some(at) = find_bytes(rest, delimiter) {
        parts.push(&rest[..at]);
        rest = &rest[at + delimiter.len()..];
    }
    parts.push(rest);
    parts
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A Meta-shaped delivery of one text message.
pub fn text_delivery(from: &str, wamid: &str, text: &str, sent_at: i64) -> String {
    sentient_hub::whatsapp::local::text_delivery(
        "000000000000000",
        from,
        "Tester",
        wamid,
        text,
        sent_at,
    )
}

/// A Meta-shaped delivery of a tap on a reply button (`id`, `title`) of one of our messages.
pub fn button_delivery(from: &str, wamid: &str, id: &str, title: &str) -> String {
    sentient_hub::whatsapp::local::button_delivery(
        "000000000000000",
        from,
        "Tester",
        wamid,
        (id, title),
        now(),
    )
}

/// A Meta-shaped status webhook for one of our messages.
pub fn status_delivery(
    wamid: &str,
    status: &str,
    recipient: &str,
    callback: Option<&str>,
) -> String {
    let mut item = json!({
        "id": wamid, "status": status, "timestamp": chrono::Utc::now().timestamp().to_string(),
        "recipient_id": recipient
    });
    if let Some(c) = callback {
        item["biz_opaque_callback_data"] = json!(c);
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "1", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": "000000000000000" },
            "statuses": [item]
        }}]}]
    })
    .to_string()
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A fresh sender id, so tests never share a partition's history.
pub fn new_sender() -> String {
    format!("62812{:08}", rand_u32() % 100_000_000)
}

fn rand_u32() -> u32 {
    Uuid::new_v4().as_u128() as u32
}

impl TestApp {
    /// POSTs `body` to /webhook signed as Meta signs it.
    pub async fn post_webhook(&self, body: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/webhook", self.address))
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                sentient_hub::whatsapp::signature::sign(APP_SECRET.as_bytes(), body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await
            .expect("webhook request is sent")
    }

    pub fn graph(&self) -> &FakeGraph {
        self.graph.as_ref().expect("app has a fake Graph API")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }
}

impl TestApp {
    /// Runs the pipeline by hand until it has nothing left to do: relays committed messages,
    /// processes every unfinished inbox row (as the consumer would for its job), routes due
    /// alerts and sends what is due — while the app's own workers may do the same (every step
    /// is safe to race). Returns once no inbox row waits and no outbox row is due or in flight;
    /// panics after 20 s. A retry due within a second is waited for; rows that wait longer on
    /// purpose (held for a code, a muted alert, Meta's pair-rate pause) do not count.
    pub async fn settle(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let stages = &self.stages;
            let mut moved = stages.relay.relay_once().await.expect("relay round");
            let jobs: Vec<(i64, String)> = sqlx::query_as(
                "select id, wamid from wa_inbox where status in ('pending', 'relayed') order by id",
            )
            .fetch_all(&self.db)
            .await
            .expect("unfinished inbox rows");
            for (id, wamid) in jobs {
                let job = sentient_hub::inbox::relay::Job { id, wamid };
                // A failure stays for the app's own retry, as a NAK would.
                let _ = stages.consumer.process(&job).await;
                moved += 1;
            }
            moved += stages
                .dispatcher
                .dispatch_due()
                .await
                .expect("dispatch round");
            moved += stages.sender.send_due().await.expect("send round");
            let busy = self
                .count(
                    "select (select count(*) from wa_inbox where status in ('pending', 'relayed'))
                          + (select count(*) from wa_outbox
                             where status = 'sending'
                                or (status = 'pending'
                                    and next_try_at <= now() + interval '1 second'))",
                )
                .await;
            if moved == 0 && busy == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the pipeline did not settle in 20 s"
            );
            if moved == 0 {
                // Another worker holds the rest (a send in flight): let it finish.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The texts the fake Graph API received for `to`, oldest first.
pub fn texts_to(app: &TestApp, to: &str) -> Vec<String> {
    app.graph()
        .sends()
        .into_iter()
        .filter(|r| r.body["to"] == to)
        .map(|r| {
            r.body["text"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Polls `check` until it holds, for at most `limit`; a bounded wait for asynchronous pipeline
/// effects, never a timing assertion.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl TestApp {
    /// A new whitelisted user of `role` with a fresh phone; `trusted` = device already
    /// confirmed. Returns the wa_id (phone digits).
    pub async fn user_with_role(&self, role: &str, trusted: bool) -> String {
        let wa_id = new_sender();
        let id: i64 = sqlx::query_scalar(
            "insert into adm_user (username, email, full_name, phone, role_id)
             values ($1, $1 || '@factory.local', 'Test User', '+' || $2,
                     (select id from adm_role where code = $3))
             returning id",
        )
        .bind(format!("u{wa_id}"))
        .bind(&wa_id)
        .bind(role)
        .fetch_one(&self.db)
        .await
        .expect("test user");
        if trusted {
            sqlx::query("insert into wa_trust (user_id, wa_id, confirmed_at, reason) values ($1, $2, now(), 'confirmed')")
                .bind(id)
                .bind(&wa_id)
                .execute(&self.db)
                .await
                .expect("trust");
        }
        wa_id
    }

    /// A director whose device is confirmed: the pipeline answers them at once.
    pub async fn trusted_sender(&self) -> String {
        self.user_with_role("DIRECTOR", true).await
    }
}

/// A real SMTP server (Python's aiosmtpd) of the test's own, storing mails in a maildir.
pub struct SmtpSink {
    child: std::process::Child,
    pub port: u16,
    dir: PathBuf,
}

impl SmtpSink {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("sentient-mail-{}", Uuid::new_v4()));
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (pip install aiosmtpd)");
        let up = port_opens(port).await;
        assert!(up, "aiosmtpd did not start");
        SmtpSink { child, port, dir }
    }

    /// Every mail received so far, raw, oldest first.
    pub fn mails(&self) -> Vec<String> {
        let mut files: Vec<(std::time::SystemTime, String)> =
            std::fs::read_dir(self.dir.join("new"))
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| {
                            let modified = e.metadata().unwrap().modified().unwrap();
                            (modified, std::fs::read_to_string(e.path()).unwrap())
                        })
                        .collect()
                })
                .unwrap_or_default();
        files.sort_by_key(|(t, _)| *t);
        files.into_iter().map(|(_, m)| m).collect()
    }

    /// Waits for the `n`th mail and returns the code in it.
    pub async fn code(&self, n: usize) -> String {
        self.code_after(n, "verification code: ").await
    }

    /// Waits for the `n`th mail and returns the approval (step-up) code in it.
    pub async fn approval_code(&self, n: usize) -> String {
        self.code_after(n, "approval code: ").await
    }

    async fn code_after(&self, n: usize, marker: &str) -> String {
        assert!(
            eventually(Duration::from_secs(20), || async {
                self.mails().len() >= n
            })
            .await,
            "mail {n} never arrived"
        );
        let mail = &self.mails()[n - 1];
        let at = mail.find(marker).expect("code in the mail") + marker.len();
        mail[at..at + 6].to_owned()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether 127.0.0.1:`port` accepts a connection within ten seconds (a child process started).
pub async fn port_opens(port: u16) -> bool {
    eventually(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the fake LLM worker does with a request.
#[derive(Clone)]
pub enum LlmBehaviour {
    /// Answers with this content.
    Answer(String),
    /// Answers after this long.
    Slow(Duration, String),
    /// Answers the contract's error object.
    Error,
    /// Answers with this content, but naming another request (someone else on NATS).
    Impostor(String),
    /// Proposes `spec` when asked for a spec (meta `purpose` = `spec`), words answers with
    /// `wording`.
    Spec { spec: String, wording: String },
}

/// A fake llm-worker on the real NATS: speaks the `ai.llm.chat` contract, records requests.
#[derive(Clone)]
pub struct FakeLlm {
    pub requests: Arc<Mutex<Vec<sentient_hub::llm::ChatRequest>>>,
    behaviour: Arc<Mutex<LlmBehaviour>>,
}

impl FakeLlm {
    pub async fn start(app: &TestApp, behaviour: LlmBehaviour) -> Self {
        let fake = FakeLlm {
            requests: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
        };
        let client = sentient_hub::queue::connect_nats(&app.test_db.settings.nats)
            .await
            .expect("nats");
        let mut sub = client
            .subscribe(app.test_db.settings.llm.subject.clone())
            .await
            .expect("subscribe");
        client.flush().await.expect("flush");
        let me = fake.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(msg) = sub.next().await {
                let Some(reply_to) = msg.reply.clone() else {
                    continue;
                };
                let request: sentient_hub::llm::ChatRequest =
                    serde_json::from_slice(&msg.payload).expect("contract request");
                me.requests.lock().unwrap().push(request.clone());
                let behaviour = me.behaviour.lock().unwrap().clone();
                let client = client.clone();
                tokio::spawn(async move {
                    let body = match behaviour {
                        LlmBehaviour::Answer(content) => answer(&request, &content),
                        LlmBehaviour::Spec { spec, wording } => {
                            if request.meta.get("purpose").and_then(|p| p.as_str()) == Some("spec")
                            {
                                answer(&request, &spec)
                            } else {
                                answer(&request, &wording)
                            }
                        }
                        LlmBehaviour::Slow(delay, content) => {
                            tokio::time::sleep(delay).await;
                            answer(&request, &content)
                        }
                        LlmBehaviour::Impostor(content) => {
                            let mut reply = answer(&request, &content);
                            reply["request_id"] = json!("someone-elses-request");
                            reply
                        }
                        LlmBehaviour::Error => json!({
                            "request_id": request.request_id,
                            "error": { "code": "upstream_http", "message": "HTTP 500" }
                        }),
                    };
                    let _ = client.publish(reply_to, body.to_string().into()).await;
                });
            }
        });
        fake
    }

    pub fn set(&self, behaviour: LlmBehaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

fn answer(request: &sentient_hub::llm::ChatRequest, content: &str) -> Value {
    json!({
        "request_id": request.request_id, "content": content, "model": "fake",
        "prompt_tokens": 120, "completion_tokens": 30
    })
}

/// A fresh database with the demo data, and the brain's preparer on it (masters read after the
/// data is in).
pub async fn demo_preparer() -> (TestDb, PgPool, sentient_hub::brain::Preparer) {
    use sentient_hub::brain::{catalog::Catalog, Preparer, SharedCatalog};
    let test_db = fresh_database().await;
    let db = PgPool::connect_with(test_db.settings.database.connect_options())
        .await
        .unwrap();
    sentient_hub::db::demo::load(&db).await.unwrap();
    let prep = Preparer::from_settings(
        db.clone(),
        SharedCatalog::new(Catalog::load(&db).await.unwrap()),
        &test_db.settings,
    );
    (test_db, db, prep)
}

/// A new user of `role` with the role's permissions, as the brain sees them after the gate.
pub async fn asker(db: &PgPool, role: &str) -> sentient_hub::domain::Caller {
    let permissions: Vec<String> = sqlx::query_scalar(
        "select p.code from adm_role r join adm_role_permission rp on rp.role_id = r.id
         join adm_permission p on p.id = rp.permission_id where r.code = $1",
    )
    .bind(role)
    .fetch_all(db)
    .await
    .unwrap();
    let id: i64 = sqlx::query_scalar(
        "insert into adm_user (username, email, full_name, role_id)
         values ($1, $1 || '@factory.local', 'Asker Test', (select id from adm_role where code = $2))
         returning id",
    )
    .bind(format!("asker_{}", role.to_lowercase()))
    .bind(role)
    .fetch_one(db)
    .await
    .unwrap();
    sentient_hub::domain::Caller {
        user_id: id,
        full_name: "Asker Test".into(),
        role: role.into(),
        permissions: permissions.into_iter().collect(),
        lang: sentient_hub::texts::Lang::Id,
    }
}

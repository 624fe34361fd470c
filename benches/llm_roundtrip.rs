//! LLM round-trip benchmark (not a test): `cargo bench --bench llm_roundtrip`.
//!
//! 1. NATS overhead of the llm-worker, at 1, 16 and 64 requests in flight, one after the other
//!    in the same run, each requester sending its next request when the last is answered.
//!    Printed: requests/s, worker ÷ echo (the target: ≥ 0.8), worker ÷ bridge (what the
//!    worker's own code costs), CPU time of the bench process per request, p50/p99 latency.
//!    Everything but nats-server runs in this process, on the same two cores. Compared:
//!    - echo: a bare async-nats request-reply responder that sends the payload back;
//!    - bridge: the floor of any NATS-to-HTTP bridge: the payload POSTed as is to the fake
//!      upstream, its body published as is (no JSON, no checks, no limit, no metrics);
//!    - worker: the real llm-worker (release build) against a fake OpenAI-compatible server on
//!      loopback that answers every completion at once.
//! 2. When `SENTIENT_LLM_E2E_URL` points at a llama-server (`scripts/tiny-llm.sh serve`): the
//!    real model's generation speed through the worker, tokens/s, one request at a time.
//!
//! Knobs (environment): BENCH_SECS per measurement (default 3), BENCH_LEVELS (default
//! "1,16,64"), BENCH_E2E_REQUESTS (default 5), BENCH_E2E_MAX_TOKENS (default 64).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use sentient_hub::config::Settings;
use sentient_hub::llm::client::{ask, user_prompt};
use sentient_hub::llm::worker::Worker;
use sentient_hub::llm::{ChatMessage, ChatReply, ChatRequest};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One measurement: what came back in the time given.
struct Run {
    per_second: f64,
    /// CPU time of this whole process (requesters, echo, bridge, worker, fake upstream; not
    /// nats-server) per answered request: steadier than req/s when other work shares the cores.
    cpu_us: f64,
    p50_ms: f64,
    p99_ms: f64,
    failures: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = env_or("BENCH_SECS", 3);
    let levels: Vec<usize> = std::env::var("BENCH_LEVELS")
        .unwrap_or_else(|_| "1,16,64".to_owned())
        .split(',')
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let base = Settings::load_from(&dir, "test", &std::env::vars().collect())?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let nats = sentient_hub::startup::connect_nats(&base.nats).await?;

    // The bare echo: a queue subscriber on its own connection (as the worker has) that sends
    // each payload straight back.
    let echo_nats = sentient_hub::startup::connect_nats(&base.nats).await?;
    let echo_subject = format!("bench.{tag}.echo");
    let mut echo = echo_nats
        .queue_subscribe(echo_subject.clone(), format!("bench-{tag}-echo"))
        .await?;
    echo_nats.flush().await?;
    tokio::spawn(async move {
        while let Some(m) = echo.next().await {
            if let Some(reply) = m.reply {
                let _ = echo_nats.publish(reply, m.payload).await;
            }
        }
    });

    // The worker, on its own connection as in production, against an instant fake upstream.
    let upstream = instant_upstream().await?;

    // The floor of any NATS-to-HTTP bridge: the payload forwarded as the HTTP body, the HTTP
    // body published as the reply; no JSON, no checks, no limit, no metrics. What the worker
    // takes beyond this is its own cost; what this takes beyond the echo is the HTTP call.
    let bridge_nats = sentient_hub::startup::connect_nats(&base.nats).await?;
    let bridge_subject = format!("bench.{tag}.bridge");
    let mut bridge = bridge_nats
        .queue_subscribe(bridge_subject.clone(), format!("bench-{tag}-bridge"))
        .await?;
    bridge_nats.flush().await?;
    let bridge_http = reqwest::Client::new();
    let bridge_url = format!("{upstream}/v1/chat/completions");
    tokio::spawn(async move {
        while let Some(m) = bridge.next().await {
            let (nats, http, url) = (bridge_nats.clone(), bridge_http.clone(), bridge_url.clone());
            tokio::spawn(async move {
                let Some(reply) = m.reply else { return };
                let body = match http.post(url).body(m.payload).send().await {
                    Ok(r) => r.bytes().await.unwrap_or_default(),
                    Err(_) => Bytes::new(),
                };
                let _ = nats.publish(reply, body).await;
            });
        }
    });
    let mut settings = base.clone();
    settings.llm.base_url = upstream;
    settings.llm.subject = format!("bench.{tag}.llm.chat");
    settings.llm.queue_group = format!("bench-{tag}-llm");
    settings.llm.metrics_port = 0;
    settings.llm.max_concurrency = levels.iter().copied().max().unwrap_or(64);
    let worker = Worker::build(&settings).await?;
    tokio::spawn(worker.run_until_stopped(std::future::pending()));
    nats.flush().await?;

    let payload = Bytes::from(serde_json::to_vec(&typical_request())?);
    println!("payload: {} bytes; {secs} s per measurement", payload.len());
    // Warm both paths (connections, pools, allocator) before measuring.
    warm_up_check(&nats, &settings.llm.subject, &payload).await;
    measure(
        &nats,
        &echo_subject,
        &payload,
        16,
        Duration::from_millis(500),
        false,
    )
    .await;
    measure(
        &nats,
        &settings.llm.subject,
        &payload,
        16,
        Duration::from_millis(500),
        true,
    )
    .await;

    measure(
        &nats,
        &bridge_subject,
        &payload,
        16,
        Duration::from_millis(500),
        false,
    )
    .await;

    println!(
        "| in flight | req/s echo · bridge · worker | worker ÷ echo | worker ÷ bridge \
         | CPU µs/req echo · bridge · worker | p50 / p99 ms echo · bridge · worker |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for &in_flight in &levels {
        let duration = Duration::from_secs(secs);
        let llm = settings.llm.subject.as_str();
        let e = measure(&nats, &echo_subject, &payload, in_flight, duration, false).await;
        let b = measure(&nats, &bridge_subject, &payload, in_flight, duration, false).await;
        let w = measure(&nats, llm, &payload, in_flight, duration, true).await;
        let failures = e.failures + b.failures + w.failures;
        println!(
            "| {in_flight} | {:.0} · {:.0} · {:.0} | {:.2} | {:.2} | {:.0} · {:.0} · {:.0} | {} · {} · {} |{}",
            e.per_second,
            b.per_second,
            w.per_second,
            w.per_second / e.per_second,
            w.per_second / b.per_second,
            e.cpu_us,
            b.cpu_us,
            w.cpu_us,
            e.latency(),
            b.latency(),
            w.latency(),
            if failures > 0 {
                format!(
                    " failures: echo {} bridge {} worker {}",
                    e.failures, b.failures, w.failures
                )
            } else {
                String::new()
            }
        );
    }

    match std::env::var("SENTIENT_LLM_E2E_URL") {
        Ok(url) => real_model(&base, &nats, &url, &tag).await?,
        Err(_) => println!(
            "real model: skipped (set SENTIENT_LLM_E2E_URL to a llama-server, e.g. \
             scripts/tiny-llm.sh serve 8081 and SENTIENT_LLM_E2E_URL=http://127.0.0.1:8081)"
        ),
    }
    Ok(())
}

/// A request of the size the hub sends: a system prompt and a question.
fn typical_request() -> ChatRequest {
    let mut request = user_prompt("Berapa omzet bulan ini dibanding bulan lalu?");
    request.messages.insert(
        0,
        ChatMessage::new(
            "system",
            "Kamu asisten eksekutif pabrik. Jawab singkat dalam Bahasa Indonesia, hanya dari data \
             berikut. Data: omzet 2026-11 Rp 1.250.000.000; omzet 2026-10 Rp 1.100.000.000.",
        ),
    );
    request.max_tokens = Some(128);
    request.temperature = Some(0.2);
    request
}

/// `in_flight` requesters, each sending its next request when the last is answered, for
/// `duration`. With `check`, a reply that is not an answer counts as a failure.
async fn measure(
    nats: &async_nats::Client,
    subject: &str,
    payload: &Bytes,
    in_flight: usize,
    duration: Duration,
    check: bool,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let cpu_before = process_cpu_seconds();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (nats, subject, payload) = (nats.clone(), subject.to_owned(), payload.clone());
            let (stop, failures) = (stop.clone(), failures.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match nats.request(subject.clone(), payload.clone()).await {
                        Ok(m) if !check || is_answer(&m.payload) => latencies.push(t.elapsed()),
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("requester task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_before;
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    Run {
        per_second: latencies.len() as f64 / elapsed,
        cpu_us: cpu * 1e6 / latencies.len().max(1) as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        failures: failures.load(Ordering::Relaxed),
    }
}

impl Run {
    fn latency(&self) -> String {
        format!("{:.2} / {:.2}", self.p50_ms, self.p99_ms)
    }
}

/// User plus system CPU time of this process so far, from /proc/self/stat (Linux; clock ticks
/// of 1/100 s, the value of CLK_TCK on every Linux x86_64). NaN elsewhere.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which may contain spaces) start at field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

/// Whether a reply is an answer. A byte search, not a parse: the requester's own JSON work would
/// count against the worker's figures (the echo's replies are not checked at all). The warm-up
/// checks replies in full, see [`warm_up_check`].
fn is_answer(payload: &[u8]) -> bool {
    payload.windows(10).any(|w| w == b"\"content\":")
}

/// One request through the worker, its reply parsed in full: the byte search above is only
/// trusted once a real answer has been seen to pass it.
async fn warm_up_check(nats: &async_nats::Client, subject: &str, payload: &Bytes) {
    let reply = nats
        .request(subject.to_owned(), payload.clone())
        .await
        .expect("the worker answers");
    match serde_json::from_slice::<ChatReply>(&reply.payload) {
        Ok(ChatReply::Answer(_)) if is_answer(&reply.payload) => {}
        other => panic!("the worker did not answer the benchmark request: {other:?}"),
    }
}

/// An OpenAI-compatible server on loopback that answers every completion at once with the same
/// pre-serialised body; returns its base URL.
async fn instant_upstream() -> anyhow::Result<String> {
    let body = Bytes::from(
        serde_json::json!({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "instant",
            "choices": [{ "index": 0, "finish_reason": "stop",
                "message": { "role": "assistant",
                             "content": "Omzet November Rp 1,25 M, naik 13,6% dari Oktober." } }],
            "usage": { "prompt_tokens": 64, "completion_tokens": 16, "total_tokens": 80 }
        })
        .to_string(),
    );
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |_: Bytes| {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

/// Tokens/s of the real model through a worker, one request at a time.
async fn real_model(
    base: &Settings,
    nats: &async_nats::Client,
    url: &str,
    tag: &str,
) -> anyhow::Result<()> {
    let requests: usize = env_or("BENCH_E2E_REQUESTS", 5);
    let max_tokens: u32 = env_or("BENCH_E2E_MAX_TOKENS", 64);
    let mut settings = base.clone();
    settings.llm.base_url = url.to_owned();
    settings.llm.subject = format!("bench.{tag}.llm.real");
    settings.llm.queue_group = format!("bench-{tag}-llm-real");
    settings.llm.metrics_port = 0;
    settings.llm.request_timeout_secs = 120;
    let worker = Worker::build(&settings).await?;
    tokio::spawn(worker.run_until_stopped(std::future::pending()));
    let prompts = [
        "Write three sentences about a factory that makes electric motors.",
        "Explain what a sales order is, in a short paragraph.",
        "List five things a factory manager checks every morning.",
    ];
    let (mut tokens, mut seconds, mut prompt_tokens) = (0u64, 0f64, 0u64);
    for i in 0..requests {
        let mut request = user_prompt(prompts[i % prompts.len()]);
        request.max_tokens = Some(max_tokens);
        request.temperature = Some(0.0);
        let t = Instant::now();
        let reply = ask(
            nats,
            &settings.llm.subject,
            &request,
            Duration::from_secs(150),
        )
        .await?;
        let took = t.elapsed().as_secs_f64();
        match reply {
            ChatReply::Answer(a) => {
                tokens += a.completion_tokens;
                prompt_tokens += a.prompt_tokens;
                seconds += took;
                println!(
                    "real model: {} prompt + {} completion tokens in {:.2} s ({:.1} tokens/s)",
                    a.prompt_tokens,
                    a.completion_tokens,
                    took,
                    a.completion_tokens as f64 / took
                );
            }
            ChatReply::Failure(f) => println!("real model: failed: {:?}", f.error),
        }
    }
    println!(
        "real model ({url}): {tokens} completion tokens ({prompt_tokens} prompt) in {seconds:.2} s \
         over NATS = {:.1} tokens/s end to end, one request at a time",
        tokens as f64 / seconds
    );
    Ok(())
}

//! LLM round-trip benchmark (not a test): `cargo bench --bench llm_roundtrip`.
//!
//! 1. NATS overhead of the llm-worker, at 1, 16 and 64 requests in flight, one after the other
//!    in the same run, each requester sending its next request when the last is answered.
//!    Compared, all against the local nats-server:
//!    - echo: a bare async-nats request-reply responder that sends the payload back;
//!    - http: the HTTP hop alone: requesters POST the payload straight to the fake upstream;
//!    - bridge: the floor of any NATS-to-HTTP bridge: the payload POSTed as is to the fake
//!      upstream, its body published as is (no JSON, no checks, no limit, no metrics);
//!    - worker: the real `sentient-hub llm-worker` (the release binary, its own process) against
//!      a fake OpenAI-compatible server on loopback that answers every completion at once.
//!
//!    The requesters run on this process's runtime; echo, bridge and the fake upstream each on
//!    a thread and runtime of their own, as separate servers would. Printed: requests/s, worker ÷
//!    echo (the target: ≥ 0.8), the ceiling of that ratio (below),
//!    worker ÷ bridge (what the worker's own code costs), CPU time of the whole machine per
//!    request (every process, nats-server included), p50/p99 latency.
//!
//!    The ceiling of worker ÷ echo for any bridge using this HTTP client: a request through a
//!    bridge costs at least the CPU of an echo plus that of an HTTP call, so the machine carries
//!    at most cores / (CPU echo + CPU http) of them a second. With one request in flight there
//!    is no queueing, and the two round trips come one after the other: at most
//!    1 / (1/echo + 1/http) a second, whichever is lower. Divided by the echo's rate.
//! 2. When `SENTIENT_LLM_E2E_URL` points at a llama-server (`scripts/tiny-llm.sh serve`): the
//!    real model's generation speed through the worker, tokens/s, one request at a time.
//!
//! Knobs (environment): BENCH_SECS per measurement (default 3), BENCH_LEVELS (default
//! "1,16,64"), BENCH_E2E_REQUESTS (default 5), BENCH_E2E_MAX_TOKENS (default 64).

use std::future::Future;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use sentient_hub::config::Settings;
use sentient_hub::llm::client::{ask, user_prompt};
use sentient_hub::llm::{ChatMessage, ChatReply, ChatRequest};
use support::{env_or, pct};

mod support;

/// One measurement: what came back in the time given.
struct Run {
    per_second: f64,
    /// CPU time of the whole machine (every process, nats-server included) per answered request.
    cpu_us: f64,
    p50_ms: f64,
    p99_ms: f64,
    failures: u64,
}

/// Where a measurement sends its requests.
#[derive(Clone, Copy)]
enum Path<'a> {
    /// A NATS request to this subject; with `check`, a reply that is not an answer fails.
    Nats { subject: &'a str, check: bool },
    /// An HTTP POST of the payload to this URL.
    Http(&'a str),
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
    let nats = sentient_hub::queue::connect_nats(&base.nats).await?;
    let http = reqwest::Client::new();

    // The bare echo: a queue subscriber on its own connection (as the worker has) that sends
    // each payload straight back.
    let echo_nats = sentient_hub::queue::connect_nats(&base.nats).await?;
    let echo_subject = format!("bench.{tag}.echo");
    let mut echo = echo_nats
        .queue_subscribe(echo_subject.clone(), format!("bench-{tag}-echo"))
        .await?;
    echo_nats.flush().await?;
    on_own_thread("echo", async move {
        while let Some(m) = echo.next().await {
            if let Some(reply) = m.reply {
                let _ = echo_nats.publish(reply, m.payload).await;
            }
        }
    });

    let upstream = instant_upstream()?;
    let upstream_url = format!("{upstream}/v1/chat/completions");

    // The floor of any NATS-to-HTTP bridge: the payload forwarded as the HTTP body, the HTTP
    // body published as the reply; no JSON, no checks, no limit, no metrics. What the worker
    // takes beyond this is its own cost; what this takes beyond the echo is the HTTP call.
    let bridge_nats = sentient_hub::queue::connect_nats(&base.nats).await?;
    let bridge_subject = format!("bench.{tag}.bridge");
    let mut bridge = bridge_nats
        .queue_subscribe(bridge_subject.clone(), format!("bench-{tag}-bridge"))
        .await?;
    bridge_nats.flush().await?;
    // Its own client: a connection is driven by the runtime that opened it, and the bridge's
    // must stay on the bridge's thread.
    let (bridge_http, bridge_url) = (reqwest::Client::new(), upstream_url.clone());
    on_own_thread("bridge", async move {
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

    let max_in_flight = levels.iter().copied().max().unwrap_or(64);
    let llm_subject = format!("bench.{tag}.llm.chat");
    let worker = WorkerProcess::start(&nats, &upstream, &llm_subject, &tag, max_in_flight).await?;

    let payload = Bytes::from(serde_json::to_vec(&typical_request())?);
    println!("payload: {} bytes; {secs} s per measurement", payload.len());
    let echo = Path::Nats {
        subject: &echo_subject,
        check: false,
    };
    let hop = Path::Http(&upstream_url);
    let bridge = Path::Nats {
        subject: &bridge_subject,
        check: false,
    };
    let work = Path::Nats {
        subject: &llm_subject,
        check: true,
    };
    // Warm every path (connections, pools, allocator) before measuring.
    warm_up_check(&nats, &llm_subject, &payload).await;
    let warm = 16.min(max_in_flight);
    for path in [echo, hop, bridge, work] {
        measure(
            &nats,
            &http,
            path,
            &payload,
            warm,
            Duration::from_millis(500),
        )
        .await;
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!("{cores} cores");
    println!(
        "| in flight | req/s echo · http · bridge · worker | worker ÷ echo | ceiling | worker ÷ bridge \
         | machine CPU µs/req echo · http · bridge · worker | p50 / p99 ms echo · http · bridge · worker |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &in_flight in &levels {
        let duration = Duration::from_secs(secs);
        let e = measure(&nats, &http, echo, &payload, in_flight, duration).await;
        let h = measure(&nats, &http, hop, &payload, in_flight, duration).await;
        let b = measure(&nats, &http, bridge, &payload, in_flight, duration).await;
        let w = measure(&nats, &http, work, &payload, in_flight, duration).await;
        let by_cpu = cores * 1e6 / (e.cpu_us + h.cpu_us);
        let by_latency = if in_flight == 1 {
            1.0 / (1.0 / e.per_second + 1.0 / h.per_second)
        } else {
            f64::INFINITY
        };
        let ceiling = (by_cpu.min(by_latency) / e.per_second).min(1.0);
        let failures = e.failures + h.failures + b.failures + w.failures;
        println!(
            "| {in_flight} | {:.0} · {:.0} · {:.0} · {:.0} | {:.2} | {:.2} | {:.2} \
             | {:.1} · {:.1} · {:.1} · {:.1} | {} · {} · {} · {} |{}",
            e.per_second,
            h.per_second,
            b.per_second,
            w.per_second,
            w.per_second / e.per_second,
            ceiling,
            w.per_second / b.per_second,
            e.cpu_us,
            h.cpu_us,
            b.cpu_us,
            w.cpu_us,
            e.latency(),
            h.latency(),
            b.latency(),
            w.latency(),
            if failures > 0 {
                format!(
                    " failures: echo {} http {} bridge {} worker {}",
                    e.failures, h.failures, b.failures, w.failures
                )
            } else {
                String::new()
            }
        );
    }
    worker.stop().await?;

    match std::env::var("SENTIENT_LLM_E2E_URL") {
        Ok(url) => real_model(&nats, &url, &tag).await?,
        Err(_) => println!(
            "real model: skipped (set SENTIENT_LLM_E2E_URL to a llama-server, e.g. \
             scripts/tiny-llm.sh serve 8081 and SENTIENT_LLM_E2E_URL=http://127.0.0.1:8081)"
        ),
    }
    Ok(())
}

/// Runs `server` on a thread with a single-threaded runtime of its own, as a separate server
/// process would have its own scheduler; it lives as long as the benchmark.
fn on_own_thread(name: &str, server: impl Future<Output = ()> + Send + 'static) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for a benchmark server");
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || runtime.block_on(server))
        .expect("a thread for a benchmark server");
}

/// The real `sentient-hub llm-worker`, a child process with the test configuration.
struct WorkerProcess {
    child: tokio::process::Child,
}

impl WorkerProcess {
    /// Starts the release binary on `subject` against `base_url` and waits until it answers.
    async fn start(
        nats: &async_nats::Client,
        base_url: &str,
        subject: &str,
        tag: &str,
        max_concurrency: usize,
    ) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sentient-hub"))
            .arg("llm-worker")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("SENTIENT_ENV", "test")
            .env("SENTIENT__LLM__BASE_URL", base_url)
            .env("SENTIENT__LLM__SUBJECT", subject)
            .env("SENTIENT__LLM__QUEUE_GROUP", format!("bench-{tag}-llm"))
            .env("SENTIENT__LLM__METRICS_PORT", "0")
            .env(
                "SENTIENT__LLM__MAX_CONCURRENCY",
                max_concurrency.to_string(),
            )
            .env("SENTIENT__LLM__REQUEST_TIMEOUT_SECS", "150")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting sentient-hub llm-worker")?;
        let mut probe = user_prompt("probe");
        probe.max_tokens = Some(1);
        let deadline = Instant::now() + Duration::from_secs(30);
        // "No responders" until it has subscribed.
        while ask(nats, subject, &probe, Duration::from_secs(5))
            .await
            .is_err()
        {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("the llm-worker exited at start with {status}");
            }
            anyhow::ensure!(Instant::now() < deadline, "the llm-worker never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { child })
    }

    /// SIGTERM, as a service manager would stop it, and its exit.
    async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().context("the llm-worker already exited")?;
        tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        let status = self.child.wait().await?;
        anyhow::ensure!(status.success(), "the llm-worker exited with {status}");
        Ok(())
    }
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

/// `in_flight` requesters on `path`, each sending its next request when the last is answered,
/// for `duration`.
async fn measure(
    nats: &async_nats::Client,
    http: &reqwest::Client,
    path: Path<'_>,
    payload: &Bytes,
    in_flight: usize,
    duration: Duration,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let cpu_before = machine_cpu_seconds();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (nats, http, payload) = (nats.clone(), http.clone(), payload.clone());
            let (stop, failures) = (stop.clone(), failures.clone());
            let target = match path {
                Path::Nats { subject, check } => (subject.to_owned(), Some(check)),
                Path::Http(url) => (url.to_owned(), None),
            };
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = match &target {
                        (subject, Some(check)) => {
                            match nats.request(subject.clone(), payload.clone()).await {
                                Ok(m) => !check || is_answer(&m.payload),
                                Err(_) => false,
                            }
                        }
                        (url, None) => match http.post(url).body(payload.clone()).send().await {
                            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                            _ => false,
                        },
                    };
                    if ok {
                        latencies.push(t.elapsed());
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
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
    let cpu = machine_cpu_seconds() - cpu_before;
    Run {
        per_second: latencies.len() as f64 / elapsed,
        cpu_us: cpu * 1e6 / latencies.len().max(1) as f64,
        p50_ms: pct(&mut latencies, 0.50),
        p99_ms: pct(&mut latencies, 0.99),
        failures: failures.load(Ordering::Relaxed),
    }
}

impl Run {
    fn latency(&self) -> String {
        format!("{:.2} / {:.2}", self.p50_ms, self.p99_ms)
    }
}

/// Busy CPU time of the whole machine so far (all cores, every process), from the first line
/// of /proc/stat (Linux; clock ticks of 1/100 s, the value of CLK_TCK on every Linux x86_64):
/// user, nice, system, irq, softirq and steal. NaN elsewhere.
fn machine_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return f64::NAN;
    };
    let Some(line) = stat.lines().next().filter(|l| l.starts_with("cpu ")) else {
        return f64::NAN;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    match ticks.as_slice() {
        [user, nice, system, _idle, _iowait, irq, softirq, steal, ..] => {
            (user + nice + system + irq + softirq + steal) / 100.0
        }
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

/// An OpenAI-compatible server on loopback, on a thread of its own, that answers every
/// completion at once with the same pre-serialised body; returns its base URL.
fn instant_upstream() -> anyhow::Result<String> {
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
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = format!("http://{}", listener.local_addr()?);
    on_own_thread("upstream", async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        axum::serve(listener, app)
            .await
            .expect("the fake upstream runs");
    });
    Ok(address)
}

/// Tokens/s of the real model through a worker, one request at a time.
async fn real_model(nats: &async_nats::Client, url: &str, tag: &str) -> anyhow::Result<()> {
    let requests: usize = env_or("BENCH_E2E_REQUESTS", 5);
    let max_tokens: u32 = env_or("BENCH_E2E_MAX_TOKENS", 64);
    let subject = format!("bench.{tag}.llm.real");
    let worker = WorkerProcess::start(nats, url, &subject, &format!("{tag}-real"), 1).await?;
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
        let reply = ask(nats, &subject, &request, Duration::from_secs(150)).await?;
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
    worker.stop().await
}

//! The Grafana dashboard cannot rot: every metric it queries is exported by a hub or an
//! llm-worker that has just started (the real binaries, each with its own registry, before any
//! traffic), and every job it filters on is one docker/prometheus/prometheus.yml scrapes.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::helpers::{eventually, free_port, fresh_database};

/// node_exporter's own metrics (v1.8) the dashboard draws for the AI host; no process of ours
/// exports them.
const NODE_EXPORTER: &[&str] = &[
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
];

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression of the dashboard, rows' panels included.
fn expressions(dashboard: &Value) -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(expr.to_owned());
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The metric names `expr` selects: identifiers that are not functions or aggregations (followed
/// by `(`), keywords, label names (inside `{…}` or the list after `by`/`without`/`on`/
/// `ignoring`), strings, durations (`[5m]`) or Grafana variables (`$__rate_interval`).
fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
    ];
    // Written `sum by (le) (…)` as well as `sum(…) by (le)`.
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut label_list_next = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if label_list_next => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                label_list_next = false;
                i += 1;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if KEYWORDS.contains(&word.as_str()) {
                    label_list_next = matches!(
                        word.as_str(),
                        "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                    );
                } else if next != Some(&'(') && !AGGREGATIONS.contains(&word.as_str()) {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The series names of a Prometheus exposition (`name{…} value` and `name value` lines).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn scrape(port: u16) -> Option<String> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    response.status().is_success().then_some(())?;
    response.text().await.ok()
}

#[test]
fn the_expression_reader_finds_metrics_and_skips_the_rest() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{job="hub",route="/webhook"}[$__rate_interval])))"#
        ),
        ["http_request_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names(
            r#"node_memory_MemTotal_bytes{job="node"} - node_memory_MemAvailable_bytes{job="node"}"#
        ),
        [
            "node_memory_MemTotal_bytes",
            "node_memory_MemAvailable_bytes"
        ]
    );
    assert_eq!(
        metric_names("max without (instance) (llm_circuit_open) or on() vector(0)"),
        ["llm_circuit_open"]
    );
}

// Several threads: the children are awaited while the test polls them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exported_by_a_running_hub_or_worker() {
    let db = fresh_database().await;
    let s = &db.settings;
    let (port, internal, worker_port) = (free_port(), free_port(), free_port());
    let child = |command: &str| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sentient-hub"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg(command)
            .env("SENTIENT_ENV", "test")
            .env("DATABASE_URL", s.database.url.expose_secret())
            .env("SENTIENT__SERVER__PORT", port.to_string())
            .env("SENTIENT__SERVER__INTERNAL_PORT", internal.to_string())
            .env("SENTIENT__LLM__METRICS_PORT", worker_port.to_string())
            .env("SENTIENT__INBOX__STREAM", &s.inbox.stream)
            .env("SENTIENT__INBOX__SUBJECT_PREFIX", &s.inbox.subject_prefix)
            .env("SENTIENT__LLM__SUBJECT", &s.llm.subject)
            .env("SENTIENT__ALERTS__STREAM", &s.alerts.stream)
            .env("SENTIENT__ALERTS__SUBJECT", &s.alerts.subject)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd.spawn().expect("the binary starts")
    };
    let _hub = child("serve");
    let _worker = child("llm-worker");
    let mut texts = Vec::new();
    for (what, port) in [("hub", internal), ("llm-worker", worker_port)] {
        assert!(
            eventually(Duration::from_secs(60), || async move {
                scrape(port).await.is_some()
            })
            .await,
            "the {what} never served /metrics on port {port}"
        );
        texts.push(scrape(port).await.unwrap());
    }
    let hub = exported(&texts[0]);
    let worker = exported(&texts[1]);
    assert!(
        hub.contains("process_resident_memory_bytes")
            && worker.contains("process_cpu_seconds_total"),
        "both processes export their own CPU and memory"
    );

    let dashboard: Value =
        serde_json::from_str(&read("docker/grafana/dashboards/sentient-hub.json")).unwrap();
    let expressions = expressions(&dashboard);
    assert!(expressions.len() >= 15, "{} queries", expressions.len());
    let mut missing = BTreeSet::new();
    for expr in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            let ours = hub.contains(&name) || worker.contains(&name);
            if !ours && !NODE_EXPORTER.contains(&name.as_str()) {
                missing.insert(format!("{name} (in {expr})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried by the dashboard but exported by neither process:\n{}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );

    // Every job the dashboard filters on is scraped.
    let prometheus: serde_yaml::Value =
        serde_yaml::from_str(&read("docker/prometheus/prometheus.yml")).unwrap();
    let scraped: BTreeSet<&str> = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|c| c["job_name"].as_str())
        .collect();
    let job = regex::Regex::new(r#"job=~?"([^"]+)""#).unwrap();
    for expr in &expressions {
        let jobs = job
            .captures(expr)
            .unwrap_or_else(|| panic!("no job in {expr}"));
        for name in jobs[1].split('|') {
            assert!(scraped.contains(name), "job {name} is not scraped ({expr})");
        }
    }
}

//! The container set-up, checked statically (no Docker engine runs on the development machines):
//! the Dockerfile copies every path Cargo needs to build, and docker-compose.yml references only
//! services, volumes, files and variables that exist, pins its images, restarts every service,
//! gives each a healthcheck and keeps its ports on 127.0.0.1 unless told otherwise.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The sources of the `COPY` lines of the Dockerfile's first (build) stage.
fn build_stage_copies() -> Vec<String> {
    let dockerfile = read("Dockerfile");
    // Comments come before the first FROM; the build stage is the text up to the second.
    let build = dockerfile.split("\nFROM ").nth(1).expect("a build stage");
    build
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.trim_end_matches('/').to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every path the build reads: the manifest's targets and build script, and what the sources
/// embed with `include_str!` / `include_bytes!` (as paths from the project's root).
fn paths_cargo_needs() -> BTreeSet<String> {
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let mut needed: BTreeSet<String> = ["Cargo.toml", "Cargo.lock", "src"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if root().join("build.rs").exists() {
        needed.insert("build.rs".to_owned());
    }
    needed.insert("migrations".to_owned()); // sqlx::migrate! embeds the folder
    for (kind, dir) in [("bench", "benches"), ("bin", "src/bin"), ("test", "tests")] {
        for target in manifest
            .get(kind)
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
        {
            let path = target
                .get("path")
                .and_then(|p| p.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{dir}/{}.rs", target["name"].as_str().unwrap()));
            needed.insert(path);
        }
    }
    let include = regex::Regex::new(r#"include_(?:str|bytes)!\("([^"]+)"\)"#).unwrap();
    let mut files = vec![root().join("src")];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for found in include.captures_iter(&source) {
            let target = path.parent().unwrap().join(&found[1]);
            let target = normalise(&target);
            needed.insert(
                target
                    .strip_prefix(root())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    needed
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn the_dockerfile_copies_every_path_cargo_needs_to_build() {
    let copies = build_stage_copies();
    let missing: Vec<String> = paths_cargo_needs()
        .into_iter()
        .filter(|needed| {
            !copies
                .iter()
                .any(|c| needed == c || needed.starts_with(&format!("{c}/")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the Dockerfile's build stage does not copy {missing:?} (it copies {copies:?})"
    );
    let dockerfile = read("Dockerfile");
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        runtime.contains("COPY config config")
            && runtime.contains("SENTIENT_CONFIG_DIR=/app/config"),
        "the runtime image carries the configuration files it is pointed at"
    );
}

fn compose(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn services(doc: &Value) -> &serde_yaml::Mapping {
    doc["services"].as_mapping().expect("services")
}

/// `${NAME…}` and `$NAME` references in `text` (not NATS's `$JS.API…` subjects).
fn variables(text: &str) -> BTreeSet<String> {
    regex::Regex::new(r"\$\{?([A-Z][A-Z0-9_]+)(?:[^A-Z0-9_.]|$)")
        .unwrap()
        .captures_iter(text)
        .map(|c| c[1].to_owned())
        .collect()
}

#[test]
fn the_compose_files_reference_only_what_exists_and_every_service_is_run_properly() {
    let base = compose("docker-compose.yml");
    let names: BTreeSet<&str> = services(&base)
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    let volumes: BTreeSet<&str> = base["volumes"]
        .as_mapping()
        .expect("top-level volumes")
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    // A one-shot job (the model pull) runs once: what waits for it waits for its success.
    let one_shots: BTreeSet<&str> = services(&base)
        .values()
        .filter_map(|s| s.get("depends_on").and_then(Value::as_mapping))
        .flat_map(|deps| deps.iter())
        .filter(|(_, how)| how["condition"].as_str() == Some("service_completed_successfully"))
        .filter_map(|(dep, _)| dep.as_str())
        .collect();
    let mut problems = Vec::new();
    for (name, service) in services(&base) {
        let name = name.as_str().unwrap();
        let one_shot = one_shots.contains(name);
        match (
            service.get("image").and_then(Value::as_str),
            service.get("build"),
        ) {
            (Some(image), _) => {
                let tag = image.rsplit_once(':').map(|(_, t)| t);
                if tag.is_none_or(|t| t == "latest" || t.contains('/')) {
                    problems.push(format!("{name}: image {image} is not pinned to a version"));
                }
            }
            (None, Some(_)) => {}
            (None, None) => problems.push(format!("{name}: neither image nor build")),
        }
        let restart = if one_shot { "no" } else { "unless-stopped" };
        if service["restart"].as_str() != Some(restart) {
            problems.push(format!("{name}: not `restart: {restart}`"));
        }
        if service.get("healthcheck").is_none() && !one_shot {
            problems.push(format!("{name}: no healthcheck"));
        }
        let depends: Vec<&str> = match service.get("depends_on") {
            Some(Value::Sequence(list)) => list.iter().filter_map(Value::as_str).collect(),
            Some(Value::Mapping(map)) => map.keys().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for dep in depends {
            if !names.contains(dep) {
                problems.push(format!("{name}: depends on unknown service {dep}"));
            }
        }
        for mount in service["volumes"].as_sequence().into_iter().flatten() {
            let source = mount.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with("./") {
                if !root().join(source).exists() {
                    problems.push(format!("{name}: mounts {source}, which does not exist"));
                }
            } else if source.starts_with('/') {
                // Only the node exporter reads the host, read-only.
                if name != "node-exporter" || !mount.as_str().unwrap().contains(":ro") {
                    problems.push(format!("{name}: mounts the host's {source}"));
                }
            } else if !volumes.contains(source) {
                problems.push(format!("{name}: volume {source} is not declared"));
            }
        }
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let port = port.as_str().unwrap();
            if !(port.starts_with("127.0.0.1:") || port.starts_with("${HUB_BIND:-127.0.0.1}:")) {
                problems.push(format!("{name}: port {port} listens on every interface"));
            }
        }
    }
    for file in ["docker-compose.demo.yml", "docker-compose.gpu.yml"] {
        for name in services(&compose(file)).keys() {
            if !names.contains(name.as_str().unwrap()) {
                problems.push(format!("{file}: unknown service {name:?}"));
            }
        }
    }
    // Every variable the files use is explained in .env.example.
    let example = read(".env.example");
    let documented: BTreeSet<String> = example
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| !k.starts_with('#'))
        .collect();
    let used: BTreeSet<String> = variables(&read("docker-compose.yml"))
        .into_iter()
        .chain(variables(&read("docker/nats.conf")))
        .collect();
    for var in used.difference(&documented) {
        problems.push(format!("${{{var}}} is used but not in .env.example"));
    }
    // nats.conf reads its passwords from the nats service's environment.
    let nats_env = &services(&base)["nats"]["environment"];
    for var in variables(&read("docker/nats.conf")) {
        if nats_env.get(var.as_str()).is_none() {
            problems.push(format!(
                "docker/nats.conf needs {var}, which the nats service lacks"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_healthchecks_call_commands_the_binary_has() {
    let base = compose("docker-compose.yml");
    for (name, service) in services(&base) {
        let Some(test) = service["healthcheck"]["test"].as_sequence() else {
            continue;
        };
        let words: Vec<&str> = test.iter().filter_map(Value::as_str).collect();
        if words.get(1) != Some(&"sentient-hub") {
            continue;
        }
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_sentient-hub"))
            .args(&words[2..])
            .arg("--help")
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{name:?}: `sentient-hub {}` is not a command: {}",
            words[2..].join(" "),
            String::from_utf8_lossy(&status.stderr)
        );
    }
}

//! The one-way rule of `src/lib.rs`'s Layout, checked on the source: a module may name (`use
//! crate::…` or an inline `crate::…` path) only modules written below it in [`ORDER`]. A new
//! import that runs back up the road fails here, naming the file and the line.

use std::path::Path;

/// Top to bottom, as in `lib.rs`'s Layout. Each entry may use the ones after it.
const ORDER: &[&str] = &[
    // the composition root
    "cli",
    "startup",
    // beside the road: HTTP edges
    "http",
    "admin",
    // the road, first stage first
    "inbox",
    "alerts",
    "identity",
    "brain",
    "executive",
    "metrics",
    "llm",
    "outbox",
    "whatsapp",
    // at the road's end
    "archive",
    // ground: used by every stage, using none
    "audit",
    "dead_letter",
    "queue",
    "telemetry",
    "db",
    "domain",
    "texts",
    "error",
    "config",
];

/// Every `crate::<module>` a source text names, with its line, comments left out.
fn named_modules(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let lines: Vec<&str> = source
        .lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect();
    let text = lines.join("\n");
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let mut from = 0;
    while let Some(hit) = text[from..].find("crate::") {
        let at = from + hit;
        from = at + "crate::".len();
        // `sentient_crate::` or `mycrate::` are not ours.
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &text[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::{c, d}, e}`: the first segment of each top-level item.
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ if depth == 0 => item.push(c),
                    _ => {}
                }
            }
            items.push(item);
            for item in items {
                let first = item.trim().split("::").next().unwrap_or_default().trim();
                if !first.is_empty() && first != "self" {
                    found.push((line_of(at), first.to_owned()));
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((line_of(at), name));
            }
        }
    }
    found
}

/// The breaches of [`ORDER`] in the tree under `src`.
fn breaches(src: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a file under src");
        let first = first.as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs");
        if matches!(module, "lib" | "main") {
            continue;
        }
        let Some(own) = rank(module) else {
            out.push(format!(
                "{}: module `{module}` is not in ORDER",
                rel.display()
            ));
            continue;
        };
        let source = std::fs::read_to_string(&file).expect("read source");
        for (line, named) in named_modules(&source) {
            let at = format!("{}:{line}", rel.display());
            match rank(&named) {
                None => out.push(format!("{at}: names `crate::{named}`, not in ORDER")),
                Some(r) if r < own => out.push(format!(
                    "{at}: `{module}` uses `crate::{named}`, which sits above it"
                )),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

#[test]
fn no_module_imports_one_above_it_in_the_written_order() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = breaches(&src);
    assert!(
        found.is_empty(),
        "imports against the order of lib.rs's Layout:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_order_check_sees_a_forbidden_import() {
    let dir = std::env::temp_dir().join(format!("layers-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("outbox")).unwrap();
    std::fs::write(
        dir.join("outbox/sender.rs"),
        "use crate::queue::Doorbell;\n// use crate::alerts::nothing;\nuse crate::{\n    whatsapp,\n    alerts::dispatch,\n};\nfn f() { crate::brain::answer(); }\n",
    )
    .unwrap();
    let found = breaches(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        found,
        [
            "outbox/sender.rs:3: `outbox` uses `crate::alerts`, which sits above it",
            "outbox/sender.rs:7: `outbox` uses `crate::brain`, which sits above it",
        ]
    );
}

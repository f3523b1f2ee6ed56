//! The layering the README's Development map promises, checked on the source:
//!
//! - the pure cores (`src/token/`, `src/tusd/`, `src/policy.rs`) do no I/O and
//!   know no runtime: no `tokio`, `hyper`, `std::fs`, `std::net`, and none of
//!   the modules that act on the world or adapt to it;
//! - nothing below the adapters imports them: only `src/http/`, `src/daemon/`
//!   and `src/cli*` may name `crate::http`, `crate::daemon` or `crate::cli`.
//!
//! Lines of comments and everything from the first `#[cfg(test)]` on are not
//! code the daemon runs, so they are skipped.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(path relative to src/, line number, line)` of the code lines of every file.
fn code_lines() -> Vec<(String, usize, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if rel.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            if line.trim_start().starts_with("//") {
                continue;
            }
            out.push((rel.clone(), i + 1, line.to_string()));
        }
    }
    assert!(out.len() > 1000, "found the sources");
    out
}

#[test]
fn pure_cores_do_no_io_and_know_no_adapter() {
    let core = |rel: &str| rel.starts_with("token/") || rel.starts_with("tusd/") || rel == "policy.rs";
    let forbidden = [
        "tokio",
        "hyper",
        "std::fs",
        "std::net",
        "crate::http",
        "crate::daemon",
        "crate::cli",
        "crate::finalize",
        "crate::state",
        "crate::events",
        "crate::metrics",
        "crate::telemetry",
    ];
    let found: Vec<String> = code_lines()
        .into_iter()
        .filter(|(rel, _, _)| core(rel))
        .filter_map(|(rel, n, line)| {
            let hit = forbidden.iter().find(|f| line.contains(*f))?;
            Some(format!("src/{rel}:{n}: {hit}: {}", line.trim()))
        })
        .collect();
    assert!(found.is_empty(), "pure core reaching out:\n{}", found.join("\n"));
}

#[test]
fn nothing_below_the_adapters_imports_them() {
    let adapter =
        |rel: &str| rel.starts_with("http/") || rel.starts_with("daemon/") || rel.starts_with("cli");
    let found: Vec<String> = code_lines()
        .into_iter()
        .filter(|(rel, _, _)| !adapter(rel) && rel != "lib.rs" && rel != "main.rs")
        .filter(|(_, _, line)| {
            ["crate::http", "crate::daemon", "crate::cli"]
                .iter()
                .any(|m| line.contains(m))
        })
        .map(|(rel, n, line)| format!("src/{rel}:{n}: {}", line.trim()))
        .collect();
    assert!(
        found.is_empty(),
        "a lower layer imports an adapter:\n{}",
        found.join("\n")
    );
}

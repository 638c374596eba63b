//! Code hygiene that a reviewer would otherwise check by hand: every source file
//! says what it owns in a `//!` doc.

/// Every `.rs` file under the repository's folders `dirs`, module directories
/// (`src/ctlog/`) included.
fn rust_files(dirs: &[&str]) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in dirs {
        collect_files(&root.join(dir), &mut files);
    }
    files.retain(|p| p.extension().is_some_and(|e| e == "rs"));
    files
}

/// Every `.rs` file under `src/`.
fn source_files() -> Vec<std::path::PathBuf> {
    let files = rust_files(&["src"]);
    assert!(files.len() > 10, "found only {files:?}");
    files
}

/// The library and binary, the test kit, the tests, the demos, the benchmarks and
/// the fuzz targets: every `.rs` file of the repository.
#[test]
fn every_source_file_starts_with_a_module_doc() {
    let files = rust_files(&["src", "testkit", "tests", "examples", "benches", "fuzz"]);
    assert!(files.len() > 40, "found only {files:?}");
    let mut missing = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.starts_with("//!") {
            missing.push(path.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "files without a //! module doc: {missing:?}"
    );
}

#[test]
fn no_async_runtime_in_our_code() {
    for path in source_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        for word in ["async fn", ".await", "tokio::"] {
            assert!(!text.contains(word), "{} uses {word}", path.display());
        }
    }
}

/// The repository is self-contained: no source, test, example, bench, CI or doc
/// file names a path that climbs out of the checkout (a clean clone has nothing
/// beside it). In Rust code a relative path in `include_str!` or `#[path]` is
/// resolved from its file's folder, any other from the repository root (the working
/// directory of `cargo test`, and `CARGO_MANIFEST_DIR`); in every other file (Cargo
/// manifests, scripts, docs whose commands run from their folder) from its folder.
#[test]
fn nothing_reads_outside_the_repository() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "src", "testkit", "tests", "examples", "benches", ".ci", "fuzz", "deploy",
    ] {
        collect_files(&root.join(dir), &mut files);
    }
    files
        .extend(["Cargo.toml", "Dockerfile", "README.md", "ARCHITECTURE.md"].map(|f| root.join(f)));
    let mut offenders = Vec::new();
    for path in files.iter().filter(|p| p.is_file()) {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let file_dir = path.parent().unwrap();
        for (n, line) in text.lines().enumerate() {
            let file_relative = path.extension().is_none_or(|e| e != "rs")
                || ["include_str!", "include_bytes!", "#[path"]
                    .iter()
                    .any(|m| line.contains(m));
            let base = if file_relative { file_dir } else { root };
            let escapes = relative_paths(line)
                .into_iter()
                .any(|p| !stays_inside(root, base, p));
            if escapes || line.contains(concat!("shared", "/fixtures")) {
                offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "paths outside the repository:\n{}",
        offenders.join("\n")
    );
}

/// The words of a line that contain a `..` path component.
fn relative_paths(line: &str) -> Vec<&str> {
    line.split(|c: char| c.is_whitespace() || "\"'`()[],;".contains(c))
        .filter(|w| w.contains('/') && w.split('/').any(|part| part == ".."))
        .collect()
}

/// Whether `path` (a leading `/` taken as relative) stays within `root` from `base`.
fn stays_inside(root: &std::path::Path, base: &std::path::Path, path: &str) -> bool {
    let mut at: Vec<&std::ffi::OsStr> = base
        .strip_prefix(root)
        .map(|rel| rel.iter().collect())
        .unwrap_or_default();
    for part in path.trim_start_matches('/').split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return false;
                }
            }
            other => at.push(std::ffi::OsStr::new(other)),
        }
    }
    true
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if ["target", "corpus", "artifacts", "fixtures"]
            .iter()
            .any(|skip| name == *skip)
        {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Threads a module doc may name as its owner (ARCHITECTURE.md, "Code map").
const THREADS: [&str; 12] = [
    "`main`",
    "`pipeline`",
    "`signal`",
    "`feed`",
    "`worker-N`",
    "`grace`",
    "`deliver-N`",
    "`timer`",
    "`http-0`",
    "`http-guard`",
    "`backfill`",
    "main thread",
];

/// Every module doc says which thread runs the module, or that it is pure.
#[test]
fn every_module_doc_names_its_thread_or_says_it_is_pure() {
    let mut vague = Vec::new();
    for path in source_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        let says = doc.to_lowercase().contains("pure")
            || doc.contains("callers' threads")
            || doc.contains("caller's thread")
            || THREADS.iter().any(|t| doc.contains(t));
        if !says {
            vague.push(path.display().to_string());
        }
    }
    assert!(
        vague.is_empty(),
        "module docs that name no thread and do not say pure: {vague:?}"
    );
}

/// Only `store.rs` holds SQL (ARCHITECTURE.md, "Architecture invariants").
#[test]
fn no_module_but_store_contains_sql() {
    let statements = [
        "\"SELECT ",
        "\"INSERT ",
        "\"UPDATE ",
        "\"DELETE ",
        "\"WITH ",
        "\"CREATE ",
    ];
    let mut offenders = Vec::new();
    for path in source_files() {
        if path.starts_with(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let upper = line.to_uppercase();
            if statements.iter().any(|s| upper.contains(s)) {
                offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "SQL outside store.rs:\n{}",
        offenders.join("\n")
    );
}

/// No import cycle among `src/` modules: each top-level module's `crate::x`
/// references form a graph without a cycle (so there is an order in which every
/// import points down; ARCHITECTURE.md, "Layers").
#[test]
fn no_import_cycle_among_modules() {
    use std::collections::{BTreeMap, BTreeSet};
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in source_files() {
        let rel = path.strip_prefix(&src).unwrap();
        let module = rel
            .iter()
            .next()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // A module's own unit tests may use modules above it: not an import.
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let deps = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    }
    // Repeatedly remove modules that import nothing left; what remains is a cycle.
    let mut left = graph.clone();
    loop {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !left.contains_key(d)))
            .map(|(m, _)| m.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for m in leaves {
            left.remove(&m);
        }
    }
    assert!(left.is_empty(), "modules in an import cycle: {left:#?}");
    assert!(graph.len() > 15, "found only {:?}", graph.keys());
}

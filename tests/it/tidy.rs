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

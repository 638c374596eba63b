//! The fuzz targets' checks on every committed fuzz input: crash inputs kept
//! under `fuzz/regressions/<target>/` and hand-made seeds under
//! `fuzz/seeds/<target>/`, without libFuzzer (see `fuzz/README.md`).

use std::path::{Path, PathBuf};

// The code each fuzz target runs on one input, shared with `fuzz/`.
use crate::kit::fuzz;

/// Every file under `fuzz/regressions/<target>/` and `fuzz/seeds/<target>/`
/// but dotfiles (`.gitkeep`), sorted, with its bytes.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for kind in ["regressions", "seeds"] {
        let dir = fuzz.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            let dotfile = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if path.is_file() && !dotfile {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

/// Runs `check` on every input of `target`, naming the file of each failure.
fn replay(target: &str, check: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(
        !inputs.is_empty(),
        "no committed inputs for fuzz target {target}"
    );
    let mut failed = Vec::new();
    for (path, bytes) in &inputs {
        if std::panic::catch_unwind(|| check(bytes)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target {target} fails on {failed:?}"
    );
}

#[test]
fn certstream_inputs_parse_without_panicking() {
    replay("certstream", fuzz::certstream);
}

#[test]
fn matcher_inputs_keep_the_invariants() {
    replay("matcher", fuzz::matcher);
}

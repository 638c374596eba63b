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

/// The threads ARCHITECTURE.md's thread table names (its first column, in
/// backticks, e.g. `` `worker-N` ``, `` `tail-<n>` ``).
fn threads_in_architecture() -> Vec<String> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"),
    )
    .unwrap();
    let table = text
        .split("### Threads")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("ARCHITECTURE.md has a Threads table");
    let mut threads = Vec::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split('|').nth(1).unwrap_or("");
        for name in first.split('`').skip(1).step_by(2) {
            threads.push(format!("`{name}`"));
        }
    }
    assert!(
        threads.len() >= 12,
        "threads read from ARCHITECTURE.md: {threads:?}"
    );
    threads
}

/// Every module doc says which thread runs the module (one of ARCHITECTURE.md's
/// thread table), that it runs on its callers' threads, or that it is pure.
#[test]
fn every_module_doc_names_its_thread_or_says_it_is_pure() {
    let threads = threads_in_architecture();
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
            || doc.contains("main thread")
            || threads.iter().any(|t| doc.contains(t.as_str()));
        if !says {
            vague.push(path.display().to_string());
        }
    }
    assert!(
        vague.is_empty(),
        "module docs that name no thread and do not say pure: {vague:?}"
    );
}

/// Every file under `src/` is named in ARCHITECTURE.md's code map (as its path
/// under `src/`, in backticks, in the first column), and every file the map names
/// exists: the map is the code's.
#[test]
fn every_source_file_is_in_the_code_map_and_the_map_has_no_other() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let map = text
        .split("## Code map")
        .nth(1)
        .and_then(|rest| rest.split("**Layers").next())
        .expect("ARCHITECTURE.md has a Code map");
    let named: std::collections::BTreeSet<String> = map
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect();
    let files: std::collections::BTreeSet<String> = source_files()
        .iter()
        .map(|p| {
            p.strip_prefix(root.join("src"))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let unnamed: Vec<&String> = files.difference(&named).collect();
    let gone: Vec<&String> = named.difference(&files).collect();
    assert!(
        unnamed.is_empty() && gone.is_empty(),
        "source files missing from the code map: {unnamed:?}; code map rows with no file: {gone:?}"
    );
}

/// Only `store/` holds SQL (ARCHITECTURE.md, "Architecture invariants").
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

/// No import cycle among the files of `src/` (ARCHITECTURE.md, "Layers"): every
/// file is a node (`src/ctlog/gaps.rs` is `ctlog::gaps`, a folder's `mod.rs` the
/// folder's node; `lib.rs`, which only declares modules and re-exports, and
/// `main.rs`, the binary's own crate, are not), with an edge to every file a path
/// of it names: `crate::…` (in `use` trees, nested groups included, and inline
/// paths such as `crate::a::b::f()`), `super::…` and `self::…` resolved from the
/// file's own module, each to the longest prefix of the path that is a file.
/// Comments, string literals and the unit tests (`#[cfg(test)] mod tests` and what
/// follows) are left out. Fails listing each cycle with the line of each edge.
#[test]
fn no_import_cycle_among_modules() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for path in source_files() {
        let rel = path.strip_prefix(&src).unwrap().to_path_buf();
        if rel == std::path::Path::new("lib.rs") || rel == std::path::Path::new("main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        files.push((rel, text));
    }
    let graph = imports::graph(&files);
    assert!(graph.len() > 25, "found only {:?}", graph.keys());
    let cycles = imports::cycles(&graph);
    assert!(
        cycles.is_empty(),
        "import cycles among the files of src/ (node: file; each edge with the line naming it):\n{}",
        cycles.join("\n")
    );
}

/// The import graph of `src/` for `no_import_cycle_among_modules`: a small reader
/// of Rust paths (not a parser of Rust: it needs only paths, comments and literals).
mod imports {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// A file's edge to another: (target node, where: `file:line`, the path as
    /// written, resolved).
    pub type Edge = (String, String, String);

    /// Node -> its edges to other nodes (the first place naming each target).
    pub type Graph = BTreeMap<String, Vec<Edge>>;

    /// The module a file of `src/` is, as path segments: `ctlog/gaps.rs` is
    /// `["ctlog", "gaps"]`, `ctlog/mod.rs` is `["ctlog"]`.
    pub fn module_of(rel: &Path) -> Vec<String> {
        let mut segments: Vec<String> = rel
            .iter()
            .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if segments.last().is_some_and(|s| s == "mod") {
            segments.pop();
        }
        segments
    }

    /// The graph of `files` (path relative to `src/`, text).
    pub fn graph(files: &[(std::path::PathBuf, String)]) -> Graph {
        let nodes: BTreeSet<Vec<String>> = files.iter().map(|(rel, _)| module_of(rel)).collect();
        let mut graph = Graph::new();
        for (rel, text) in files {
            let module = module_of(rel);
            let node = module.join("::");
            let edges = graph.entry(node.clone()).or_default();
            let code = code_only(text);
            for (path, line) in paths(without_unit_tests(&code), &module) {
                let Some(target) = resolve(&path, &nodes) else {
                    continue;
                };
                if target == node || edges.iter().any(|(t, _, _)| *t == target) {
                    continue;
                }
                let at = format!("src/{}:{line}", rel.display());
                edges.push((target, at, path.join("::")));
            }
        }
        graph
    }

    /// The longest prefix of `path` (from the crate root) that is a node.
    pub fn resolve(path: &[String], nodes: &BTreeSet<Vec<String>>) -> Option<String> {
        (1..=path.len())
            .rev()
            .map(|n| &path[..n])
            .find(|prefix| nodes.contains(*prefix))
            .map(|prefix| prefix.join("::"))
    }

    /// `text` with comments, string, byte-string, raw-string and character literals
    /// replaced by spaces (line feeds kept, so lines still count).
    pub fn code_only(text: &str) -> String {
        let c: Vec<char> = text.chars().collect();
        let mut out: Vec<char> = c.clone();
        let blank = |out: &mut Vec<char>, from: usize, to: usize| {
            for ch in out.iter_mut().take(to).skip(from) {
                if *ch != '\n' {
                    *ch = ' ';
                }
            }
        };
        let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
        let mut i = 0;
        while i < c.len() {
            let at = |k: usize| c.get(k).copied().unwrap_or('\0');
            if at(i) == '/' && at(i + 1) == '/' {
                let end = (i..c.len()).find(|&k| c[k] == '\n').unwrap_or(c.len());
                blank(&mut out, i, end);
                i = end;
            } else if at(i) == '/' && at(i + 1) == '*' {
                let (mut depth, mut k) = (0usize, i);
                while k < c.len() {
                    if at(k) == '/' && at(k + 1) == '*' {
                        depth += 1;
                        k += 2;
                    } else if at(k) == '*' && at(k + 1) == '/' {
                        depth -= 1;
                        k += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        k += 1;
                    }
                }
                blank(&mut out, i, k);
                i = k;
            } else if (at(i) == 'r' || (at(i) == 'b' && at(i + 1) == 'r'))
                && (i == 0 || !ident(at(i - 1)))
                && {
                    let r = if at(i) == 'b' { i + 1 } else { i };
                    let hashes = (r + 1..c.len()).take_while(|&k| c[k] == '#').count();
                    at(r + 1 + hashes) == '"'
                }
            {
                let r = if at(i) == 'b' { i + 1 } else { i };
                let hashes = (r + 1..c.len()).take_while(|&k| c[k] == '#').count();
                let mut k = r + 1 + hashes + 1;
                while k < c.len() {
                    if c[k] == '"' && (k + 1..k + 1 + hashes).all(|h| at(h) == '#') {
                        k += 1 + hashes;
                        break;
                    }
                    k += 1;
                }
                blank(&mut out, i, k);
                i = k;
            } else if at(i) == '"' {
                let mut k = i + 1;
                while k < c.len() && c[k] != '"' {
                    k += if c[k] == '\\' { 2 } else { 1 };
                }
                blank(&mut out, i, k + 1);
                i = k + 1;
            } else if at(i) == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
                // A character literal ('x', '\n', '\u{..}'); not a lifetime ('a).
                let mut k = i + 1;
                while k < c.len() && c[k] != '\'' {
                    k += if c[k] == '\\' { 2 } else { 1 };
                }
                blank(&mut out, i, k + 1);
                i = k + 1;
            } else if ident(at(i)) {
                // A whole identifier (so `br"` inside `abr"` is not taken for a literal).
                while i < c.len() && ident(c[i]) {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        out.into_iter().collect()
    }

    /// `code` up to its unit tests: `#[cfg(test)]` followed by `mod tests`.
    pub fn without_unit_tests(code: &str) -> &str {
        let mut from = 0;
        while let Some(i) = code[from..].find("#[cfg(test)]") {
            let at = from + i;
            let rest = code[at + "#[cfg(test)]".len()..].trim_start();
            if rest.starts_with("mod tests") {
                return &code[..at];
            }
            from = at + 1;
        }
        code
    }

    /// Every path `code` (of the file whose module is `module`) names from
    /// `crate::`, `super::` or `self::`, as segments from the crate root, with its
    /// line: `use` trees expanded (`use crate::{a, b::{c, d}}` names `a`, `b::c`,
    /// `b::d`), inline paths up to their last segment (`crate::a::b::f()` names
    /// `a::b::f`).
    pub fn paths(code: &str, module: &[String]) -> Vec<(Vec<String>, usize)> {
        let c: Vec<char> = code.chars().collect();
        let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
        let mut out = Vec::new();
        let mut i = 0;
        while i < c.len() {
            let word_start = i == 0 || !(ident(c[i - 1]) || c[i - 1] == ':');
            let word: String = c[i..].iter().take_while(|ch| ident(**ch)).collect();
            if word.is_empty() {
                i += 1;
                continue;
            }
            let after = i + word.chars().count();
            let root = match word.as_str() {
                "crate" => Some(Vec::new()),
                "super" => module.split_last().map(|(_, parent)| parent.to_vec()),
                "self" => Some(module.to_vec()),
                _ => None,
            };
            let mut k = skip_ws(&c, after);
            let (Some(mut prefix), true, true) = (root, word_start, starts(&c, k, "::")) else {
                i = after;
                continue;
            };
            k = skip_ws(&c, k + 2);
            // `super::super::…`
            while starts(&c, k, "super") && !ident(c.get(k + 5).copied().unwrap_or(' ')) {
                let next = skip_ws(&c, k + 5);
                if !starts(&c, next, "::") {
                    break;
                }
                prefix.pop();
                k = skip_ws(&c, next + 2);
            }
            let line = c[..i].iter().filter(|ch| **ch == '\n').count() + 1;
            let mut found = Vec::new();
            k = tree(&c, k, prefix, &mut found);
            out.extend(found.into_iter().map(|p| (p, line)));
            i = k.max(after);
        }
        out
    }

    fn skip_ws(c: &[char], mut k: usize) -> usize {
        while k < c.len() && c[k].is_whitespace() {
            k += 1;
        }
        k
    }

    fn starts(c: &[char], k: usize, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(n, ch)| c.get(k + n) == Some(&ch))
    }

    /// Reads a use tree (or a path) at `k` below `prefix`, pushing each complete
    /// path to `out`; returns where it ends.
    fn tree(c: &[char], k: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
        let ident = |ch: char| ch.is_alphanumeric() || ch == '_' || ch == '#';
        let mut k = skip_ws(c, k);
        match c.get(k) {
            Some('{') => {
                k += 1;
                loop {
                    k = skip_ws(c, k);
                    match c.get(k) {
                        None => return k,
                        Some('}') => return k + 1,
                        Some(',') => k += 1,
                        Some(_) => {
                            let before = k;
                            k = tree(c, k, prefix.clone(), out);
                            if k == before {
                                k += 1; // not a tree: skip the character
                            }
                        }
                    }
                }
            }
            Some('*') => {
                out.push(prefix);
                k + 1
            }
            Some(ch) if ident(*ch) => {
                let word: String = c[k..].iter().take_while(|ch| ident(**ch)).collect();
                k += word.chars().count();
                let word = word.trim_start_matches("r#").to_string();
                let mut path = prefix;
                if word != "self" {
                    path.push(word);
                }
                let next = skip_ws(c, k);
                if starts(c, next, "::") {
                    let after = skip_ws(c, next + 2);
                    if matches!(c.get(after), Some('{') | Some('*'))
                        || c.get(after).is_some_and(|ch| ident(*ch))
                    {
                        return tree(c, after, path, out);
                    }
                }
                out.push(path);
                k
            }
            _ => k,
        }
    }

    /// Every cycle of `graph`: one line per strongly connected group of more than
    /// one node, a cycle through it, then each edge inside the group with the file
    /// and line naming it.
    pub fn cycles(graph: &Graph) -> Vec<String> {
        let nodes: Vec<&String> = graph.keys().collect();
        let index: BTreeMap<&String, usize> =
            nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let succ: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                graph[*n]
                    .iter()
                    .filter_map(|(t, _, _)| index.get(t).copied())
                    .collect()
            })
            .collect();
        let mut report = Vec::new();
        for group in strongly_connected(&succ) {
            if group.len() < 2 {
                continue;
            }
            let inside: BTreeSet<usize> = group.iter().copied().collect();
            // A cycle: from the group's first node, follow edges inside the group
            // until a node repeats.
            let mut walk = vec![group[0]];
            loop {
                let here = *walk.last().unwrap();
                let next = succ[here]
                    .iter()
                    .copied()
                    .find(|s| inside.contains(s))
                    .unwrap();
                if let Some(at) = walk.iter().position(|w| *w == next) {
                    walk.drain(..at);
                    walk.push(next);
                    break;
                }
                walk.push(next);
            }
            let cycle: Vec<&str> = walk.iter().map(|i| nodes[*i].as_str()).collect();
            let mut text = format!("cycle: {}", cycle.join(" -> "));
            for &from in &group {
                for (target, at, path) in &graph[nodes[from]] {
                    if index.get(target).is_some_and(|t| inside.contains(t)) {
                        text.push_str(&format!("\n  {} -> {target} ({at}: {path})", nodes[from]));
                    }
                }
            }
            report.push(text);
        }
        report
    }

    /// Tarjan's strongly connected components of the graph `succ` (node ->
    /// successors), each sorted.
    fn strongly_connected(succ: &[Vec<usize>]) -> Vec<Vec<usize>> {
        struct State<'a> {
            succ: &'a [Vec<usize>],
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            on_stack: Vec<bool>,
            stack: Vec<usize>,
            next: usize,
            groups: Vec<Vec<usize>>,
        }
        fn visit(s: &mut State, v: usize) {
            s.index[v] = Some(s.next);
            s.low[v] = s.next;
            s.next += 1;
            s.stack.push(v);
            s.on_stack[v] = true;
            for w in s.succ[v].clone() {
                match s.index[w] {
                    None => {
                        visit(s, w);
                        s.low[v] = s.low[v].min(s.low[w]);
                    }
                    Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(s.low[v]) == s.index[v] {
                let mut group = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack[w] = false;
                    group.push(w);
                    if w == v {
                        break;
                    }
                }
                group.sort_unstable();
                s.groups.push(group);
            }
        }
        let n = succ.len();
        let mut s = State {
            succ,
            index: vec![None; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            next: 0,
            groups: Vec::new(),
        };
        for v in 0..n {
            if s.index[v].is_none() {
                visit(&mut s, v);
            }
        }
        s.groups
    }

    /// The reader's own tests.
    mod reader {
        use super::*;

        fn module(s: &str) -> Vec<String> {
            s.split("::")
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        }

        /// The paths `code` names, from the module `at`, as `a::b` strings.
        fn named(code: &str, at: &str) -> Vec<String> {
            paths(&code_only(code), &module(at))
                .into_iter()
                .map(|(p, _)| p.join("::"))
                .collect()
        }

        #[test]
        fn use_trees_with_nested_groups_expand_to_each_path() {
            assert_eq!(
                named(
                    "use crate::{alert, ctlog::{self, gaps::{Track, Gap}, loglist::*}};\nuse crate::metrics::Metrics as M;",
                    "worker"
                ),
                [
                    "alert",
                    "ctlog",
                    "ctlog::gaps::Track",
                    "ctlog::gaps::Gap",
                    "ctlog::loglist",
                    "metrics::Metrics"
                ]
            );
            assert_eq!(
                named(
                    "use crate::{\n    a::{\n        b,\n        c::d,\n    },\n};",
                    "x"
                ),
                ["a::b", "a::c::d"]
            );
        }

        #[test]
        fn super_and_self_resolve_from_the_files_module() {
            assert_eq!(
                named(
                    "use super::rfc6962::{self, X};\nuse super::LogKind;",
                    "ctlog::entry"
                ),
                ["ctlog::rfc6962", "ctlog::rfc6962::X", "ctlog::LogKind"]
            );
            assert_eq!(named("use super::*;", "certstream::parse"), ["certstream"]);
            assert_eq!(
                named("use self::peek::peek;", "certstream"),
                ["certstream::peek::peek"]
            );
            assert_eq!(
                named("fn f() -> super::super::a::B {}", "x::y::z"),
                ["x::a::B"]
            );
            // A folder's mod.rs is the folder: its super is the crate root.
            assert_eq!(named("use super::alert;", "ctlog"), ["alert"]);
        }

        #[test]
        fn inline_paths_are_read_up_to_their_last_segment() {
            assert_eq!(
                named(
                    "let x = crate::threads::unix_now_ms();\nlet k: crate::ctlog::LogKind = crate::ctlog::gaps::Gap::<u8>::new();",
                    "backfill"
                ),
                ["threads::unix_now_ms", "ctlog::LogKind", "ctlog::gaps::Gap"]
            );
            assert_eq!(named("$crate::metrics::X", "metrics"), ["metrics::X"]);
            // Not a path from the crate: another crate's `crate`-like word, a field.
            assert!(
                named(
                    "let my_crate = certwatch_crate::x; s.self_x; a::super_b",
                    "m"
                )
                .is_empty()
            );
        }

        #[test]
        fn comments_strings_and_characters_name_nothing() {
            let code = "// use crate::a;\n/* crate::b /* nested */ crate::c */\nlet s = \"crate::d\";\nlet r = r#\"crate::e \"q\" \"#;\nlet q = '\"'; let l: &'static str = \"\";\nuse crate::f;";
            assert_eq!(named(code, "m"), ["f"]);
            let lines: Vec<usize> = paths(&code_only(code), &module("m"))
                .into_iter()
                .map(|(_, line)| line)
                .collect();
            assert_eq!(lines, [6], "line numbers survive the blanking");
        }

        #[test]
        fn unit_tests_are_cut_off() {
            let code = "use crate::a;\n#[cfg(test)]\nfn helper() { crate::b::f() }\n#[cfg(test)]\nmod tests {\n    use crate::c;\n}\n";
            assert_eq!(
                paths(without_unit_tests(&code_only(code)), &module("m"))
                    .into_iter()
                    .map(|(p, _)| p.join("::"))
                    .collect::<Vec<_>>(),
                ["a", "b::f"]
            );
        }

        #[test]
        fn each_path_goes_to_the_longest_prefix_that_is_a_file() {
            let nodes: BTreeSet<Vec<String>> = ["ctlog", "ctlog::gaps", "alert"]
                .iter()
                .map(|m| module(m))
                .collect();
            let go = |p: &str| resolve(&module(p), &nodes);
            assert_eq!(
                go("ctlog::gaps::Track::new").as_deref(),
                Some("ctlog::gaps")
            );
            assert_eq!(go("ctlog::LogKind").as_deref(), Some("ctlog"));
            assert_eq!(go("alert").as_deref(), Some("alert"));
            assert_eq!(go("Config"), None, "a re-export of the crate root");
        }

        #[test]
        fn a_cycle_is_found_and_listed_with_its_edges() {
            let files = [
                ("a.rs", "use crate::b::X;"),
                ("b/mod.rs", "pub mod c;\nfn f() { crate::b::c::g() }"),
                ("b/c.rs", "use super::super::a;\nuse crate::d;"),
                ("d.rs", "//! nothing"),
            ]
            .map(|(p, t)| (std::path::PathBuf::from(p), t.to_string()));
            let graph = graph(&files);
            let found = cycles(&graph);
            assert_eq!(found.len(), 1, "{found:#?}");
            assert!(
                found[0].starts_with("cycle: a -> b -> b::c -> a"),
                "{}",
                found[0]
            );
            assert!(
                found[0].contains("b::c -> a (src/b/c.rs:1: a)"),
                "{}",
                found[0]
            );
            assert!(
                found[0].contains("b -> b::c (src/b/mod.rs:2: b::c::g)"),
                "{}",
                found[0]
            );
            assert!(!found[0].contains("-> d"), "d is in no cycle: {}", found[0]);
            let acyclic = [("a.rs", "use crate::b;"), ("b.rs", "")]
                .map(|(p, t)| (std::path::PathBuf::from(p), t.to_string()));
            assert!(cycles(&super::graph(&acyclic)).is_empty());
        }
    }
}

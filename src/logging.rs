//! The process logger: env_logger's format and level, behind a filter that keeps
//! secrets out of every record at every level. Installed once by `main` on the
//! main thread; `log` then calls it from whichever thread logs.
//!
//! certwatch's own records never hold a secret (URLs go through
//! `config::redact_url`, secrets live in `Secret`). Dependencies' records may: at
//! DEBUG ureq logs each request with the webhook's path and query, at TRACE
//! tungstenite logs the feed's request line. So every record from another crate is
//! formatted and has each known secret fragment (a webhook URL's path and query, the
//! feed URL's credentials and query, the DSN's password, the signing keys) replaced
//! by `<redacted>` before it is written; control characters are escaped so no record
//! can forge a log line.

use log::{LevelFilter, Log, Metadata, Record};

/// What the filter removes, longest first so a whole URL goes before its parts.
struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    fn new(mut secrets: Vec<String>) -> Redactor {
        // Short fragments (`/`, `/hook`) would blank ordinary words: keep what is
        // at least 4 characters long.
        secrets.retain(|s| s.chars().count() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        escape_controls(&out)
    }
}

/// Newlines and other control characters as `\n`, `\u{1b}`: one record, one line.
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The installed logger: env_logger for format and levels, the redactor for
/// records of other crates.
struct Redacting {
    inner: env_logger::Logger,
    redactor: Redactor,
}

impl Log for Redacting {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.inner.matches(record) {
            return;
        }
        let ours = record.target().starts_with("certwatch");
        let message = record.args().to_string();
        let message = if ours {
            escape_controls(&message)
        } else {
            self.redactor.redact(&message)
        };
        self.inner.log(
            &Record::builder()
                .metadata(record.metadata().clone())
                .args(format_args!("{message}"))
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the logger at `level` for every crate, with `secrets` (the exact
/// strings to hide) removed from other crates' records.
pub fn init(level: LevelFilter, secrets: Vec<String>) {
    let inner = env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp_millis()
        .build();
    let max = inner.filter();
    let logger = Redacting {
        inner,
        redactor: Redactor::new(secrets),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

/// The fragments of a URL that may be a secret: the whole URL, its `user:password`,
/// its path and its query (each also percent-decoded where that differs).
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some((_, rest)) = url.split_once("://") else {
        return out;
    };
    let (before_fragment, _) = rest.split_once('#').unwrap_or((rest, ""));
    let (before_query, query) = before_fragment
        .split_once('?')
        .unwrap_or((before_fragment, ""));
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        out.push(userinfo.to_string());
        out.extend(userinfo.split(':').map(str::to_string));
    }
    if path.len() > 1 {
        out.push(path.to_string());
    }
    if !query.is_empty() {
        out.push(query.to_string());
        out.extend(
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(_, v)| v.to_string()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_crates_records_lose_every_secret_fragment() {
        let mut secrets = url_secrets("https://hooks.example/hook-SECRETPATH?token=T0KEN");
        secrets.extend(url_secrets(
            "wss://alice:pa55word@feed.example/full-stream?key=K3Y",
        ));
        let r = Redactor::new(secrets);
        let line = r.redact("POST https://hooks.example/hook-SECRETPATH?token=T0KEN HTTP/1.1");
        assert_eq!(line, "POST <redacted> HTTP/1.1");
        let line = r.redact("GET /full-stream?key=K3Y HTTP/1.1\r\nAuthorization: alice pa55word");
        for secret in ["K3Y", "alice", "pa55word", "\r\n"] {
            assert!(!line.contains(secret), "{line}");
        }
        let line = r.redact("request /hook-SECRETPATH with token=T0KEN");
        assert!(
            !line.contains("SECRETPATH") && !line.contains("T0KEN"),
            "{line}"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(escape_controls("plain"), "plain");
    }
}

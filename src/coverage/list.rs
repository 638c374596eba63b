//! The trusted log list in use: read from `CT_LOG_LIST` (a file, or an
//! `http(s)://` URL, bounded in size and time), kept in Postgres
//! (`public.certwatch_log_list`) and read back from there when the source cannot
//! be read, then installed for the sources (per-log series created, `/healthz`
//! coverage on). Runs on the `backfill` thread (at start and daily) and on the main
//! thread for `certwatch backfill`.

use super::Coverage;
use crate::ctlog::loglist::{Log, LogList, LogListError, MAX_LIST_BYTES};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::threads::Health;
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long reading the log list from a URL may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the log list is read again.
pub const LIST_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// Why the list could not be read from its source.
#[derive(Debug)]
pub enum ReadError {
    /// The URL could not be fetched (connection, TLS, timeout, too many redirects).
    Fetch(Box<ureq::Error>),
    /// The URL answered with another status than 2xx.
    Status(u16),
    /// The file could not be opened or read, or the body not read in full.
    Io(String),
    /// What was read is not a usable list.
    Parse(LogListError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Fetch(e) => write!(f, "cannot fetch the log list: {e}"),
            ReadError::Status(status) => write!(f, "cannot fetch the log list: HTTP {status}"),
            ReadError::Io(e) => write!(f, "cannot read the log list: {e}"),
            ReadError::Parse(e) => write!(f, "the log list does not parse: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Why neither the source nor the copy kept in Postgres gave a list.
#[derive(Debug)]
pub struct ListError {
    /// Why the source could not be read.
    pub read: Box<ReadError>,
    /// Why the kept copy could not be used.
    pub kept: Box<KeptError>,
}

/// Why the copy kept in Postgres could not be used.
#[derive(Debug)]
pub enum KeptError {
    /// None was ever kept for this source.
    None,
    /// The database did not answer.
    Store(StoreError),
    /// The kept copy does not parse (a list written by an older version).
    Parse(LogListError),
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kept.as_ref() {
            KeptError::None => write!(f, "{}; no copy kept in the database", self.read),
            KeptError::Store(e) => write!(
                f,
                "{}; the copy kept in the database cannot be read: {e}",
                self.read
            ),
            KeptError::Parse(e) => write!(
                f,
                "{}; the copy kept in the database does not parse either: {e}",
                self.read
            ),
        }
    }
}

impl std::error::Error for ListError {}

/// Reads the log list from a file or an `http(s)://` URL (bounded in size): the
/// list and the bytes it was parsed from.
pub fn read_list(source: &str) -> Result<(LogList, Vec<u8>), ReadError> {
    let bytes = if source.starts_with("http://") || source.starts_with("https://") {
        let agent = crate::outbound::list_agent(LIST_TIMEOUT);
        let mut response = agent
            .get(source)
            .call()
            .map_err(|e| ReadError::Fetch(Box::new(e)))?;
        if !response.status().is_success() {
            return Err(ReadError::Status(response.status().as_u16()));
        }
        response
            .body_mut()
            .with_config()
            .limit(MAX_LIST_BYTES as u64 + 1)
            .read_to_vec()
            .map_err(|e| ReadError::Io(e.to_string()))?
    } else {
        read_regular_file(source)?
    };
    let list = LogList::parse(&bytes).map_err(ReadError::Parse)?;
    Ok((list, bytes))
}

/// A local list file, bounded in size. Opened without blocking and refused unless
/// it is a regular file: a FIFO or a device would block the thread (or never end).
fn read_regular_file(path: &str) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| ReadError::Io(format!("{path}: {e}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(ReadError::Io(format!("{path}: not a regular file")));
    }
    let mut bytes = Vec::new();
    file.take(MAX_LIST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

/// The key of a list source in `public.certwatch_log_list`: a file path as is, a
/// URL without credentials, query or fragment.
fn list_key(source: &str) -> String {
    if source.contains("://") {
        crate::config::redact_url(source, true)
    } else {
        source.to_string()
    }
}

/// Reads the list from its source and keeps a copy in Postgres; when the source
/// cannot be read, falls back to the copy kept by an earlier read (said in the
/// log, with its date).
pub fn read_list_or_kept(store: &Store, source: &str) -> Result<LogList, ListError> {
    let key = list_key(source);
    let read = match read_list(source) {
        Ok((list, bytes)) => {
            if let Err(e) = store.save_log_list(&key, &bytes) {
                log::warn!(
                    "the CT log list is not kept in the database ({e}): a restart that cannot \
                     read CT_LOG_LIST would start without one"
                );
            }
            return Ok(list);
        }
        Err(e) => e,
    };
    let kept = match store.load_log_list(&key) {
        Ok(Some((bytes, when))) => match LogList::parse(&bytes) {
            Ok(list) => {
                log::warn!("{read}; using the copy read on {when}, kept in the database");
                return Ok(list);
            }
            Err(e) => KeptError::Parse(e),
        },
        Ok(None) => KeptError::None,
        Err(e) => KeptError::Store(e),
    };
    Err(ListError {
        read: Box::new(read),
        kept: Box::new(kept),
    })
}

/// The metrics label of a log: its fetch URL without the trailing slash.
pub fn log_label(log: &Log) -> &str {
    log.fetch_base().trim_end_matches('/')
}

/// Installs a list: shared with the sources, per-log series created, coverage on
/// in `/healthz` and the metrics.
pub fn install(coverage: &Coverage, list: LogList, metrics: &Metrics, health: &Health) {
    for log in list.logs() {
        metrics.register_log(log_label(log));
    }
    for skipped in list.skipped() {
        log::warn!(
            "CT log list: {} left out ({}); the other logs are used",
            skipped.at,
            skipped.reason
        );
    }
    metrics.ct_log_list_skipped.set(list.skipped().len() as i64);
    log::info!(
        "trusted CT log list loaded: {} logs (version {}{}); gap tracking and backfill on",
        list.logs().len(),
        list.version().unwrap_or("?"),
        match list.skipped().len() {
            0 => String::new(),
            n => format!(", {n} left out"),
        }
    );
    coverage.logs.store(Some(Arc::new(list)));
    metrics.ct_coverage_enabled.set(1);
    health.coverage.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_kept_under_its_source_without_credentials_or_query() {
        assert_eq!(
            list_key("/etc/certwatch/list.json"),
            "/etc/certwatch/list.json"
        );
        let key = list_key("https://user:secret@lists.example/v3/list.json?token=t#f");
        assert!(!key.contains("secret") && !key.contains("token"), "{key}");
        assert!(key.starts_with("https://") && key.contains("lists.example/v3/list.json"));
    }

    /// Issue 18 item 6: a FIFO (or any other non-regular file) is refused at once
    /// instead of blocking the thread until a writer comes.
    #[test]
    fn a_fifo_or_a_directory_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("certwatch-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("list.json");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.to_str().unwrap().to_string();
        std::thread::spawn(move || {
            let _ = tx.send(read_list(&path).map(|_| ()).map_err(|e| e.to_string()));
        });
        // A blocked open never answers; a refusal answers at once (the bound is
        // only there so that a regression fails rather than hangs).
        let answer = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("read_list blocked on a FIFO");
        let err = answer.expect_err("a FIFO is not a list");
        assert!(err.contains("not a regular file"), "{err}");
        let err = read_list(dir.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::remove_file(&fifo).unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let err = read_list("/nonexistent/certwatch/list.json").unwrap_err();
        assert!(matches!(err, ReadError::Io(_)), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/certwatch/list.json"));
    }
}

//! The shapes of issue 18's coverage attacks, shared by the tests
//! (`tests/it/coverage_attacks.rs`, in-process) and the before/after figures
//! (`examples/coverage_attacks.rs`, against a `certwatch` binary): log entries
//! with watched certificates at chosen indices, huge certificates, certificate
//! messages in either server's dialect sent at a pace the workers take, and a lossy
//! feed's pattern of missing entries.

use crate::bigcert;
use crate::ctlog::{self, FakeEntry, FakeKind, fixture_entries};
use crate::feed::{FakeFeed, FeedCmd};
use std::ops::Range;
use std::time::Duration;

/// The fixture certificate watched (`tiny.example.com`): no other fixture is under it.
pub const WATCHED: &str = "tiny.example.com";

/// `len` log entries: the fixture certificates other than the watched one, in turn,
/// and the watched one at each index of `watched`.
pub fn log_entries(len: usize, watched: &[usize]) -> Vec<FakeEntry> {
    let (hit, others): (Vec<_>, Vec<_>) = fixture_entries()
        .into_iter()
        .partition(|(_, line)| line.contains(&format!("\"{WATCHED}\"")));
    let hit = hit[0].0.clone();
    (0..len)
        .map(|i| {
            if watched.contains(&i) {
                hit.clone()
            } else {
                others[i % others.len()].0.clone()
            }
        })
        .collect()
}

/// An X.509 fixture certificate not under `WATCHED` (its DER) and its chain: the
/// template of made-up certificates.
pub fn x509_template() -> (Vec<u8>, Vec<Vec<u8>>) {
    fixture_entries()
        .into_iter()
        .find_map(|(entry, line)| match entry.kind {
            FakeKind::X509 { der } if !line.contains(WATCHED) => Some((der, entry.chain)),
            _ => None,
        })
        .expect("an X.509 fixture")
}

/// An X.509 entry of the template with serial `serial` and these names.
pub fn entry_with_names(serial: u64, names: impl IntoIterator<Item = String>) -> FakeEntry {
    let (template, chain) = x509_template();
    FakeEntry::x509(
        bigcert::with_names(&template, serial, names),
        chain,
        1_768_478_402_074,
    )
}

/// `count` huge certificates of `names` names each (`<i in hex>.<k>.io`, about 12
/// bytes of DER a name), serials from `first_serial` on, the middle one holding
/// `watched` among them: entries and the largest DER's size.
pub fn huge_entries(
    count: usize,
    names: usize,
    watched: &str,
    first_serial: u64,
) -> (Vec<FakeEntry>, usize) {
    let mut out = Vec::new();
    let mut largest = 0;
    for k in 0..count {
        let list = (0..names).map(move |i| {
            if k == count / 2 && i == names / 2 {
                watched.to_string()
            } else {
                format!("{i:x}.{k}.io")
            }
        });
        let entry = entry_with_names(first_serial + k as u64, list);
        if let FakeKind::X509 { der } = &entry.kind {
            largest = largest.max(der.len());
        }
        out.push(entry);
    }
    (out, largest)
}

/// How a certstream server spells its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// certstream-server-go 1.9+: the log's time in `data.source.timestamp`.
    Go,
    /// certstream-server-rust: `data.submission_timestamp` (a server that drops
    /// cross-log duplicates by design).
    Rust,
}

/// A certificate message for entry `index` of the log at `url` (an unwatched name:
/// the feed's word that the entry exists) in `dialect`.
pub fn frame(dialect: Dialect, url: &str, index: u64) -> String {
    let mut frame = ctlog::unwatched_frame(url, index);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(1.8e9);
    match dialect {
        Dialect::Go => frame["data"]["source"]["timestamp"] = now.into(),
        Dialect::Rust => frame["data"]["submission_timestamp"] = now.into(),
    }
    frame.to_string()
}

/// Sends the entries `indices` of the log at `url` in order, 256 every 100 ms: well
/// within what the workers' queue takes (a dropped frame would be a hole nobody made).
pub fn send_paced(
    feed: &FakeFeed,
    dialect: Dialect,
    url: &str,
    indices: impl IntoIterator<Item = u64>,
) {
    for (n, index) in indices.into_iter().enumerate() {
        feed.send(FeedCmd::Text(frame(dialect, url, index)));
        if n % 256 == 255 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A log's entries and how a lossy feed loses some of them: scattered short runs (1
/// or 2 entries, alternately, one run per `every` entries: about 1.5 / `every` of
/// them), one reconnect (the entries of `reconnect` sent while certwatch was not
/// connected), and a run of three around each watched index.
pub struct Lossy {
    pub len: usize,
    pub missing: Vec<bool>,
    pub reconnect: Range<usize>,
    pub watched: Vec<usize>,
}

impl Lossy {
    pub fn new(len: usize, every: usize, reconnect: Range<usize>, watched: &[usize]) -> Lossy {
        let mut missing = vec![false; len];
        for (n, at) in (every / 2..len - 1).step_by(every).enumerate() {
            for slot in missing.iter_mut().skip(at).take(1 + n % 2) {
                *slot = true;
            }
        }
        for slot in &mut missing[reconnect.clone()] {
            *slot = true;
        }
        for w in watched {
            for slot in &mut missing[w - 1..=w + 1] {
                *slot = true;
            }
        }
        missing[0] = false;
        missing[len - 1] = false;
        Lossy {
            len,
            missing,
            reconnect,
            watched: watched.to_vec(),
        }
    }

    /// Entries the feed never delivers.
    pub fn missing_entries(&self) -> usize {
        self.missing.iter().filter(|m| **m).count()
    }

    /// Separate runs of missing entries outside the reconnect: the feed's own holes.
    pub fn scattered_holes(&self) -> usize {
        (1..self.len)
            .filter(|&i| self.missing[i] && !self.missing[i - 1] && !self.reconnect.contains(&i))
            .count()
    }

    /// Missing entries outside the reconnect, over all entries.
    pub fn scattered_share(&self) -> f64 {
        (self.missing_entries() - self.reconnect.len()) as f64 / self.len as f64
    }

    /// The indices of `range` the feed delivers.
    pub fn delivered(&self, range: Range<usize>) -> impl Iterator<Item = u64> + '_ {
        range.filter(|i| !self.missing[*i]).map(|i| i as u64)
    }
}

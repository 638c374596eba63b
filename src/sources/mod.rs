//! Certificate sources: one module each, every one handing the same
//! `cert::Certificate` to the same single entry of matching and classification.
//!
//! - `feed`: the certstream feed (the `feed` reader thread, the `worker-N` pool, the
//!   servers' dialects: `peek` and `parse`);
//! - `backfill`: the entries the feed skipped, read from the logs themselves (the
//!   `backfill` thread, and the `certwatch backfill` command on the main thread).
//!
//! The shared entry, run on each source's own threads: `matched_names` (the one
//! matching rule: every name against the watch list), `Matched::matches` (what an
//! alert keeps of the match, as `Matches`), and `Intake::hand_over`
//! (`Classifier::consider`, then the grace queue or the held buffer).

pub mod backfill;
pub mod feed;
pub mod tailer;

use crate::alert::DetectedVia;
use crate::cert::{self, Certificate};
use crate::classify::{Classifier, Matches, Next};
use crate::grace::{HeldAlerts, Pending};
use crate::matcher::{EntryId, WatchList};
use crossbeam_channel::Sender;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

/// A matched certificate a source read from a log (backfill, the tailer), on its
/// way from the thread that read it to the one that hands it over (the `backfill`
/// thread, which alone holds the intake's delivery handle).
pub struct Found {
    pub cert: Certificate,
    pub matches: Matches,
    pub via: DetectedVia,
}

/// Reusable buffers of the name matching (`matched_names`, `Matched::matches`).
#[derive(Default)]
pub struct MatchScratch {
    ids: Vec<EntryId>,
    name_ids: Vec<EntryId>,
}

/// The names of a certificate that matched the watch list, borrowed from it.
pub struct Matched<'n> {
    /// Distinct, in the certificate's order.
    pub sans: Vec<&'n str>,
}

/// Matches every name against the watch list; leaves the distinct ids of the
/// entries matched in `scratch` (sorted). `None` when nothing matched. The one
/// matching rule of every source.
pub fn matched_names<'n, S: AsRef<str>>(
    watch: &WatchList,
    names: &'n [S],
    scratch: &mut MatchScratch,
) -> Option<Matched<'n>> {
    scratch.ids.clear();
    let mut sans: Vec<&'n str> = Vec::new();
    for name in names {
        let name = name.as_ref();
        scratch.name_ids.clear();
        if watch.matches(name, &mut scratch.name_ids) {
            sans.push(name);
            scratch.ids.extend_from_slice(&scratch.name_ids);
        }
    }
    if scratch.ids.is_empty() {
        return None;
    }
    scratch.ids.sort_unstable();
    scratch.ids.dedup();
    if sans.len() > 1 {
        let mut seen = HashSet::with_capacity(sans.len());
        sans.retain(|n| seen.insert(*n));
    }
    Some(Matched { sans })
}

impl Matched<'_> {
    /// What an alert keeps of this match, after `matched_names` left the entry ids
    /// in `scratch`: entries sorted and capped, names in order and capped (NUL
    /// replaced).
    pub fn matches(&self, watch: &WatchList, scratch: &MatchScratch) -> Matches {
        let mut entries: Vec<String> = scratch
            .ids
            .iter()
            .map(|id| watch.entry(*id).to_string())
            .collect();
        entries.sort_unstable();
        entries.truncate(cert::MAX_NAMES);
        let names = self
            .sans
            .iter()
            .take(cert::MAX_NAMES)
            .map(|n| cert::replace_nul(n).into_owned())
            .collect();
        Matches { entries, names }
    }
}

/// Where every source hands a matched certificate: classification, then the
/// `grace` thread for what must wait out its grace period, or the held buffer for
/// an alert the database could not take.
#[derive(Clone)]
pub struct Intake {
    pub cls: Arc<Classifier>,
    pub pending: Sender<Pending>,
    pub held: Arc<HeldAlerts>,
}

impl Intake {
    /// Classifies `cert` (found `via` a source at unix time `now`) and does what
    /// classification answers: nothing, hold the alert, or send the sighting to
    /// wait out its grace period.
    pub fn hand_over(&self, cert: Certificate, matches: Matches, via: DetectedVia, now: i64) {
        match self.cls.consider(cert, matches, via, now) {
            Next::Done => {}
            Next::Held(item) => self.held.push(item, &self.cls.metrics),
            Next::Wait(sighting) => {
                let due = Instant::now() + self.cls.grace;
                if self.pending.send(Pending { due, sighting }).is_err() {
                    log::error!(
                        "grace thread is gone; a sighting could not wait out its grace period"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matched_names_and_entries_are_distinct() {
        let (watch, _) = WatchList::build(["a.example", "b.example", "example"]);
        let names: Vec<std::borrow::Cow<'_, str>> = [
            "x.a.example",
            "x.a.example",
            "y.b.example",
            "x.a.example",
            "z.other",
        ]
        .into_iter()
        .map(Into::into)
        .collect();
        let mut scratch = MatchScratch::default();
        let matched = matched_names(&watch, &names, &mut scratch).unwrap();
        assert_eq!(matched.sans, ["x.a.example", "y.b.example"]);
        let matches = matched.matches(&watch, &scratch);
        assert_eq!(matches.entries, ["a.example", "b.example", "example"]);
        assert_eq!(matches.names, ["x.a.example", "y.b.example"]);
        assert!(matched_names(&watch, &names[4..], &mut scratch).is_none());
    }

    #[test]
    fn what_an_alert_keeps_is_capped_with_the_watched_name_in_it() {
        let (watch, _) = WatchList::build(["watched.example"]);
        let mut names: Vec<String> = (0..cert::MAX_NAMES + 7)
            .map(|i| format!("h{i}.watched.example"))
            .collect();
        names.push("x\0.watched.example".into());
        let mut scratch = MatchScratch::default();
        let matched = matched_names(&watch, &names, &mut scratch).expect("a match");
        assert_eq!(matched.sans.len(), cert::MAX_NAMES + 8);
        let matches = matched.matches(&watch, &scratch);
        assert_eq!(matches.entries, ["watched.example"]);
        assert_eq!(matches.names.len(), cert::MAX_NAMES);
        assert_eq!(matches.names[0], "h0.watched.example");
    }
}

//! One second of coverage bookkeeping, run by the `backfill` thread: the per-log
//! counters (`certwatch_ct_log_entries_seen_total`, `…_gap_entries_total`), the lag
//! gauge, `/healthz` coverage (`logs_seen`, `open_gap_entries`, `logs_lagging`), and
//! the dense-feed policy (`CT_FEED_HOLES`) applied to the gaps the tracker found
//! due: `fetch` keeps them, `coalesce` joins a dense log's gaps into stretches,
//! `count` counts a dense log's gaps as `skipped` (but acts as `coalesce` while
//! certwatch's own worker queue drops frames: those holes are certwatch's to fill).

use super::Coverage;
use super::gaps::{self, Gap};
use super::list::log_label;
use crate::config::FeedHoles;
use crate::ctlog::loglist::{LogId, LogList};
use crate::ctlog::tiles;
use crate::metrics::{BackfillOutcome, Metrics};
use crate::threads::Health;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A dense log's gaps are coalesced over this many seen entries (one tile).
pub const COALESCE: u64 = tiles::TILE_WIDTH;

/// How long after certwatch's own worker queue last dropped feed frames the holes
/// of a dense log may be its own.
const OWN_DROPS_HOLD: Duration = Duration::from_secs(120);

/// What the statistics write to.
pub struct Outputs<'a> {
    pub metrics: &'a Metrics,
    pub health: &'a Health,
}

/// What the statistics take besides coverage itself.
#[derive(Clone, Copy, Debug)]
pub struct Inputs {
    /// `CT_FEED_HOLES`.
    pub feed_holes: FeedHoles,
    /// Entries waiting in the backfill queues (part of `open_gap_entries`).
    pub queued_entries: u64,
    /// A certstream feed is read (`CT_SOURCE` certstream or both): which listed
    /// logs it does not deliver is reported.
    pub feed: bool,
    /// A listed usable log the feed has not delivered for this long while it
    /// delivers others is not on the feed (`CT_NOT_ON_FEED_S`, 10 minutes).
    pub not_on_feed_after: Duration,
}

/// The statistics' memory between ticks.
#[derive(Default)]
pub struct Stats {
    /// Per log: (entries seen, gap entries) as last published to the counters.
    published: HashMap<LogId, (u64, u64)>,
    /// Logs already warned about as dense.
    dense_warned: HashSet<LogId>,
    /// Whether certwatch's own worker queue dropped feed frames lately.
    own_drops: OwnDrops,
    /// The tracker's untracked count as last published.
    untracked: u64,
    /// Whether the feed's not deduplicating was logged (since it last was).
    said_not_deduplicating: bool,
    /// Since when the feed has delivered entries (of any log) without a pause
    /// longer than `gaps::LAGGING_AFTER`.
    flowing_since: Option<Instant>,
    /// The logs last said not to be on the feed.
    not_on_feed: Vec<String>,
}

impl Stats {
    /// Publishes this second's statistics (`queued_entries`: entries waiting in the
    /// backfill queue, part of `open_gap_entries`) and returns the gaps due now,
    /// after the dense-feed policy `setting`: the gaps to fetch.
    pub fn tick(
        &mut self,
        coverage: &Coverage,
        list: &LogList,
        out: Outputs<'_>,
        inputs: Inputs,
        now: Instant,
    ) -> Vec<Gap> {
        let (setting, queued_entries) = (inputs.feed_holes, inputs.queued_entries);
        // Without a feed (`CT_SOURCE=logs`) there are no feed holes to weigh.
        let holes = if inputs.feed {
            self.feed_holes_now(
                setting,
                coverage.feed_deduplicates(),
                out.metrics.ct_messages_dropped.get(),
                now,
            )
        } else {
            setting
        };
        let (due, stats) = {
            let mut tracker = coverage.gaps.lock();
            let due = tracker.take_due(now);
            let stats = tracker.stats();
            let untracked = tracker.untracked();
            if untracked > self.untracked {
                if self.untracked == 0 {
                    log::warn!(
                        "the gap tracker holds its most logs ({}): entries of further logs are \
                         not tracked (certwatch_ct_untracked_log_entries_total)",
                        tracker.len()
                    );
                }
                out.metrics
                    .ct_untracked_entries
                    .inc_by(untracked - self.untracked);
                self.untracked = untracked;
            }
            for s in &stats {
                // By the setting, not `holes`: a tracker's coalescing stays once set.
                if s.dense && setting == FeedHoles::Coalesce && !self.dense_warned.contains(&s.log)
                {
                    tracker.set_coalesce(s.log, COALESCE);
                }
            }
            (due, stats)
        };
        let open: u64 = stats.iter().map(|s| s.open_entries).sum::<u64>() + queued_entries;
        out.health.logs_seen.store(stats.len(), Ordering::Relaxed);
        out.health
            .open_gap_entries
            .store(open as i64, Ordering::Relaxed);
        let (now_ms, flowing) = (crate::clock::unix_now_ms(), gaps::feed_flowing(&stats, now));
        let mut lagging = 0;
        let mut dense: HashSet<LogId> = HashSet::new();
        for s in &stats {
            let Some(log) = list.get(&s.log) else {
                continue;
            };
            let label = log_label(log);
            let (seen, gap_entries) = self.published.entry(s.log).or_default();
            let m = out.metrics;
            m.ct_log_entries_seen
                .with_label_values(&[label])
                .inc_by(s.seen.saturating_sub(*seen));
            m.ct_log_gap_entries
                .with_label_values(&[label])
                .inc_by(s.gap_entries.saturating_sub(*gap_entries));
            (*seen, *gap_entries) = (s.seen.max(*seen), s.gap_entries.max(*gap_entries));
            if let Some(lag) = s.lag_seconds(now_ms) {
                m.ct_log_lag_seconds.with_label_values(&[label]).set(lag);
            }
            lagging += usize::from(s.lagging(now, now_ms, flowing));
            if s.dense {
                dense.insert(s.log);
                if self.dense_warned.insert(s.log) {
                    log::warn!(
                        "CT log {label} looks dense: {:.0}% of its recent entries never came on the feed, \
                         in {} gaps (a certstream server that drops cross-log duplicates, such as \
                         certstream-server-rust); CT_FEED_HOLES={} ",
                        s.hole_density * 100.0,
                        s.window_gaps,
                        match (setting, holes) {
                            (FeedHoles::Fetch, _) => "fetch: every gap is fetched",
                            (FeedHoles::Coalesce, _) =>
                                "coalesce: its gaps are fetched in 256-entry stretches",
                            (FeedHoles::Count, FeedHoles::Count) =>
                                "count: its gaps are counted as skipped, not fetched",
                            (FeedHoles::Count, FeedHoles::Fetch) =>
                                "count, but the feed is not a server known to drop cross-log \
                                 duplicates: every gap is fetched",
                            (FeedHoles::Count, FeedHoles::Coalesce) =>
                                "count, but certwatch itself dropped frames lately: its gaps are \
                                 fetched in 256-entry stretches",
                        }
                    );
                }
            }
        }
        lagging += self.publish_tails(coverage, list, &out, now_ms);
        out.health.logs_lagging.store(lagging, Ordering::Relaxed);
        if inputs.feed {
            self.publish_on_feed(list, &stats, &out, (inputs.not_on_feed_after, now));
        }
        let due = match holes {
            FeedHoles::Coalesce => gaps::coalesce(due, COALESCE, |log| dense.contains(log)),
            _ => due,
        };
        if holes != FeedHoles::Count {
            return due;
        }
        due.into_iter()
            .filter(|gap| {
                if !dense.contains(&gap.log) {
                    return true;
                }
                if let Some(log) = list.get(&gap.log) {
                    out.metrics
                        .backfill(log_label(log), BackfillOutcome::Skipped, gap.len());
                    log::debug!(
                        "gap {}..{} of dense log {} counted, not fetched (CT_FEED_HOLES=count)",
                        gap.start,
                        gap.end,
                        log_label(log)
                    );
                }
                false
            })
            .collect()
    }

    /// What the tailers report: each tailed log's lag and whether it is
    /// unreachable, and the logs failing verification or unreachable (`/healthz`). Returns the tailed logs lagging.
    fn publish_tails(
        &mut self,
        coverage: &Coverage,
        list: &LogList,
        out: &Outputs<'_>,
        now_ms: i64,
    ) -> usize {
        let (mut failing, mut unreachable, mut lagging) = (0, 0, 0);
        for (id, tail) in coverage.tails() {
            let Some(log) = list.get(&id) else {
                continue;
            };
            failing += usize::from(tail.failing);
            unreachable += usize::from(tail.unreachable);
            out.metrics
                .ct_log_unreachable
                .with_label_values(&[log_label(log)])
                .set(i64::from(tail.unreachable));
            if let Some(ms) = tail.newest_ms {
                let lag = (now_ms - ms).max(0) / 1000;
                out.metrics
                    .ct_log_lag_seconds
                    .with_label_values(&[log_label(log)])
                    .set(lag);
                lagging += usize::from(lag > gaps::LAGGING_AFTER.as_secs() as i64);
            }
        }
        out.health
            .logs_failing_verification
            .store(failing, Ordering::Relaxed);
        out.health
            .logs_unreachable
            .store(unreachable, Ordering::Relaxed);
        lagging
    }

    /// The blind spot: the listed usable logs the feed has not delivered for
    /// `after` while it delivered others (a server that reads only some
    /// logs, such as one that never reads static-ct logs). Each log's
    /// `certwatch_ct_log_on_feed`, `/healthz` `coverage.logs_not_on_feed`, and a WARN
    /// naming them when the set changes.
    fn publish_on_feed(
        &mut self,
        list: &LogList,
        stats: &[gaps::LogStats],
        out: &Outputs<'_>,
        (after, now): (Duration, Instant),
    ) {
        let flowing = gaps::feed_flowing(stats, now);
        if !flowing {
            self.flowing_since = None;
        } else if self.flowing_since.is_none() {
            self.flowing_since = Some(now);
        }
        let long_enough = self
            .flowing_since
            .is_some_and(|since| now.saturating_duration_since(since) >= after);
        let seen: HashMap<LogId, Option<Instant>> =
            stats.iter().map(|s| (s.log, s.last_seen)).collect();
        let mut missing = Vec::new();
        for log in list.logs() {
            let usable = matches!(
                log.state.map(|s| s.status),
                None | Some(crate::ctlog::loglist::LogStatus::Usable)
                    | Some(crate::ctlog::loglist::LogStatus::Qualified)
            );
            if !usable {
                continue;
            }
            let recent = seen
                .get(&log.id)
                .copied()
                .flatten()
                .is_some_and(|at| now.saturating_duration_since(at) <= after);
            let on_feed = recent || !long_enough;
            out.metrics
                .ct_log_on_feed
                .with_label_values(&[log_label(log)])
                .set(i64::from(on_feed));
            if !on_feed {
                missing.push(log_label(log).to_string());
            }
        }
        out.health
            .logs_not_on_feed
            .store(missing.len(), Ordering::Relaxed);
        if missing != self.not_on_feed {
            if !missing.is_empty() {
                log::warn!(
                    "the feed has not delivered these listed usable CT logs for {} s while it \
                     delivers others, so certificates logged only there are not seen: {}; \
                     CT_SOURCE=both reads them directly",
                    after.as_secs(),
                    missing.join(", ")
                );
            } else {
                log::info!("the feed delivers every listed usable CT log again");
            }
            self.not_on_feed = missing;
        }
    }

    /// `CT_FEED_HOLES` as it applies now. Holes are never taken for holes by design
    /// from their shape alone: `count` acts as `fetch` unless the feed is a server
    /// known to deduplicate (`deduplicating`: certstream-server-rust's dialect), and
    /// as `coalesce` while certwatch's own queue drops frames (`dropped`: the drop
    /// counter's value), so what it dropped itself is fetched (in 256-entry
    /// stretches) rather than counted.
    fn feed_holes_now(
        &mut self,
        setting: FeedHoles,
        deduplicating: bool,
        dropped: u64,
        now: Instant,
    ) -> FeedHoles {
        let (recent, began) = self.own_drops.observe(dropped, now);
        if setting != FeedHoles::Count {
            return setting;
        }
        if !deduplicating {
            if !self.said_not_deduplicating {
                self.said_not_deduplicating = true;
                log::info!(
                    "the feed is not a server known to drop cross-log duplicates \
                     (certstream-server-rust): every gap is fetched (CT_FEED_HOLES=count \
                     counts holes only on such a server's feed)"
                );
            }
            return FeedHoles::Fetch;
        }
        self.said_not_deduplicating = false;
        if !recent {
            return setting;
        }
        if began {
            log::warn!(
                "certwatch dropped feed frames (its workers fell behind): for the next {} s the \
                 gaps of dense logs are fetched in 256-entry stretches, not counted \
                 (CT_FEED_HOLES=count applies again after)",
                OWN_DROPS_HOLD.as_secs()
            );
        }
        FeedHoles::Coalesce
    }
}

/// Whether certwatch itself dropped feed frames lately (its workers fell behind;
/// `certwatch_ct_messages_dropped_total` grew): those holes look like a server
/// that leaves holes by design, but they are certwatch's to fill.
#[derive(Default)]
struct OwnDrops {
    dropped: u64,
    until: Option<Instant>,
}

impl OwnDrops {
    /// Takes the drop counter's value at `now`; returns whether drops are recent
    /// (within `OWN_DROPS_HOLD`) and whether they just began.
    fn observe(&mut self, dropped: u64, now: Instant) -> (bool, bool) {
        let mut began = false;
        if dropped > self.dropped {
            began = self.until.is_none_or(|until| until <= now);
            self.dropped = dropped;
            self.until = Some(now + OWN_DROPS_HOLD);
        }
        (self.until.is_some_and(|until| now < until), began)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_drops_are_recent_for_the_hold_after_the_counter_last_grew() {
        let t0 = Instant::now();
        let mut drops = OwnDrops::default();
        assert_eq!(drops.observe(0, t0), (false, false), "no drop yet");
        assert_eq!(drops.observe(5, t0), (true, true), "drops begin");
        let later = t0 + OWN_DROPS_HOLD / 2;
        assert_eq!(drops.observe(5, later), (true, false), "still recent");
        assert_eq!(drops.observe(9, later), (true, false), "more, same episode");
        let after = later + OWN_DROPS_HOLD;
        assert_eq!(drops.observe(9, after), (false, false), "the hold is over");
        assert_eq!(drops.observe(10, after), (true, true), "a new episode");
    }

    #[test]
    fn count_acts_as_coalesce_only_while_certwatch_drops_frames() {
        let t0 = Instant::now();
        let mut stats = Stats::default();
        let dedup = true;
        assert_eq!(
            stats.feed_holes_now(FeedHoles::Count, dedup, 0, t0),
            FeedHoles::Count
        );
        assert_eq!(
            stats.feed_holes_now(FeedHoles::Count, dedup, 3, t0),
            FeedHoles::Coalesce
        );
        assert_eq!(
            stats.feed_holes_now(FeedHoles::Fetch, dedup, 4, t0),
            FeedHoles::Fetch
        );
        let after = t0 + OWN_DROPS_HOLD + Duration::from_secs(1);
        assert_eq!(
            stats.feed_holes_now(FeedHoles::Count, dedup, 4, after),
            FeedHoles::Count
        );
    }

    /// The sample log list, and what a tick over it writes to.
    struct Ticking {
        list: LogList,
        coverage: Coverage,
        metrics: Metrics,
        health: Health,
    }

    impl Ticking {
        fn new() -> Ticking {
            const SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/loglist_v3_sample.json");
            Ticking {
                list: LogList::parse(SAMPLE).expect("sample list"),
                coverage: Coverage::new(gaps::Settings::default()),
                metrics: Metrics::default(),
                health: Health::default(),
            }
        }

        /// One tick of `stats` with `CT_FEED_HOLES=count`, with or without a feed.
        fn tick(&self, stats: &mut Stats, feed: bool) {
            let inputs = Inputs {
                feed_holes: FeedHoles::Count,
                queued_entries: 0,
                feed,
                not_on_feed_after: Duration::from_secs(600),
            };
            let out = Outputs {
                metrics: &self.metrics,
                health: &self.health,
            };
            stats.tick(&self.coverage, &self.list, out, inputs, Instant::now());
        }
    }

    /// `CT_SOURCE=logs`: no feed, so its dialect is never weighed, nor said in an
    /// INFO line to be a server that does not deduplicate; with a feed it is.
    #[test]
    fn without_a_feed_its_dialect_is_not_weighed() {
        let t = Ticking::new();
        for feed in [false, true] {
            let mut stats = Stats::default();
            t.tick(&mut stats, feed);
            assert_eq!(stats.said_not_deduplicating, feed, "feed {feed}");
        }
    }

    /// What the tailers report reaches `/healthz`: the logs failing verification
    /// and those answering no request, each until the tailer clears it.
    #[test]
    fn tailed_logs_failing_or_unreachable_are_counted_for_healthz() {
        let t = Ticking::new();
        let ids: Vec<LogId> = t.list.logs().iter().map(|l| l.id).take(3).collect();
        let mut stats = Stats::default();
        let tick = |stats: &mut Stats| {
            t.tick(stats, false);
            (
                t.health.logs_failing_verification.load(Ordering::Relaxed),
                t.health.logs_unreachable.load(Ordering::Relaxed),
            )
        };
        assert_eq!(tick(&mut stats), (0, 0));
        t.coverage.note_tail(ids[0], |s| s.unreachable = true);
        t.coverage.note_tail(ids[1], |s| s.unreachable = true);
        t.coverage.note_tail(ids[2], |s| s.failing = true);
        assert_eq!(tick(&mut stats), (1, 2));
        t.coverage.note_tail(ids[0], |s| s.unreachable = false);
        assert_eq!(tick(&mut stats), (1, 1));
    }

    /// Issue 18 item 1: a feed not known to deduplicate never has its holes
    /// counted, however dense they look; `coalesce` and `fetch` stay as set.
    #[test]
    fn count_fetches_every_gap_of_a_feed_not_known_to_deduplicate() {
        let t0 = Instant::now();
        let mut stats = Stats::default();
        for dropped in [0, 5] {
            assert_eq!(
                stats.feed_holes_now(FeedHoles::Count, false, dropped, t0),
                FeedHoles::Fetch
            );
        }
        assert_eq!(
            stats.feed_holes_now(FeedHoles::Coalesce, false, 5, t0),
            FeedHoles::Coalesce
        );
        assert_eq!(
            stats.feed_holes_now(FeedHoles::Count, true, 5, t0 + OWN_DROPS_HOLD * 2),
            FeedHoles::Count
        );
    }
}

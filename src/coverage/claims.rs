//! Range claims: before a gap is fetched it is claimed in Postgres
//! (`public.certwatch_backfill_claims`, advisory-locked per log), so two replicas
//! on one database do not fetch it twice; what another replica holds or finished
//! is left out and counted as `other_replica`. A claim is marked done once its
//! range is fetched or given up on; it expires after `CLAIM_LEASE` (its holder
//! died). Runs on the `backfill` thread; the SQL is the store's, the rule of what
//! is left (`subtract`) is here.

use super::gaps::Gap;
use super::list::log_label;
use crate::ctlog::loglist::Log;
use crate::metrics::{BackfillOutcome, Metrics};
use crate::store::Store;
use std::ops::Range;
use std::time::Duration;

/// How long a range claimed for fetching is this instance's; past it (the instance
/// died) another replica may take it.
pub const CLAIM_LEASE: Duration = Duration::from_secs(600);

/// A part of a gap this instance fetches: its range, and the start of its claim in
/// Postgres when it holds one (none when the database did not answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    pub range: Range<u64>,
    pub claim: Option<u64>,
}

/// Claims a gap: the parts left to this instance. When the database does not
/// answer, the whole gap is fetched unclaimed: coverage comes before saving a
/// replica's work.
pub fn claim(store: &Store, metrics: &Metrics, log: &Log, gap: Gap) -> Vec<Claimed> {
    let id = log.id.to_base64();
    match store.claim_range(&id, gap.start..gap.end, CLAIM_LEASE, subtract) {
        Ok(parts) => {
            let mine: u64 = parts.iter().map(|r| r.end - r.start).sum();
            if mine < gap.len() {
                log::info!(
                    "CT log {}: {} of entries {}..{} are fetched by another replica",
                    log_label(log),
                    gap.len() - mine,
                    gap.start,
                    gap.end
                );
                metrics.backfill(
                    log_label(log),
                    BackfillOutcome::OtherReplica,
                    gap.len() - mine,
                );
            }
            parts
                .into_iter()
                .map(|range| Claimed {
                    claim: Some(range.start),
                    range,
                })
                .collect()
        }
        Err(e) => {
            log::debug!(
                "CT log {}: entries {}..{} fetched without a claim: {e}",
                log_label(log),
                gap.start,
                gap.end
            );
            vec![Claimed {
                range: gap.start..gap.end,
                claim: None,
            }]
        }
    }
}

/// A claimed range is finished (fetched, or failed for good): other replicas skip it.
pub fn finish(store: &Store, log: &Log, claim: Option<u64>) {
    if let Some(start) = claim
        && let Err(e) = store.finish_claim(&log.id.to_base64(), start)
    {
        log::debug!(
            "CT log {}: claim at {start} not marked done: {e}",
            log_label(log)
        );
    }
}

/// The parts of `range` that no range of `taken` covers, in order (`taken` in any
/// order, overlapping or not): what is left of a gap once other replicas' claims
/// are taken out.
pub fn subtract(range: Range<u64>, taken: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut taken: Vec<(u64, u64)> = taken
        .iter()
        .filter(|r| r.start < r.end)
        .map(|r| (r.start, r.end))
        .collect();
    taken.sort_unstable();
    let mut free = Vec::new();
    let mut at = range.start;
    for (start, end) in taken {
        if at >= range.end {
            break;
        }
        if start > at {
            free.push(at..start.min(range.end));
        }
        at = at.max(end);
    }
    if at < range.end {
        free.push(at..range.end);
    }
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_leaves_exactly_the_indices_no_claim_covers() {
        assert_eq!(subtract(10..20, &[]), vec![10..20]);
        assert_eq!(subtract(10..20, &[0..10, 20..30]), vec![10..20]);
        assert_eq!(subtract(10..20, &[15..17, 5..12]), vec![12..15, 17..20]);
        assert_eq!(
            subtract(10..20, std::slice::from_ref(&(0..100))),
            Vec::<std::ops::Range<u64>>::new()
        );
        assert_eq!(
            subtract(10..20, &[12..14, 13..16, 9..9]),
            vec![10..12, 16..20]
        );
        // Against a model: every index of the range, minus the covered ones.
        let mut rng = crate::coverage::gaps::tests::SplitMix(7);
        for _ in 0..500 {
            let start = rng.below(50);
            let end = start + rng.below(50);
            let taken: Vec<Range<u64>> = (0..rng.below(5))
                .map(|_| {
                    let s = rng.below(110);
                    s..s + rng.below(30)
                })
                .collect();
            let want: Vec<u64> = (start..end)
                .filter(|i| !taken.iter().any(|r| r.contains(i)))
                .collect();
            let got = subtract(start..end, &taken);
            assert!(got.windows(2).all(|w| w[0].end < w[1].start), "{got:?}");
            assert!(got.iter().all(|r| r.start < r.end));
            let got: Vec<u64> = got.into_iter().flatten().collect();
            assert_eq!(got, want, "{start}..{end} minus {taken:?}");
        }
    }
}

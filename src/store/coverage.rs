//! Coverage state: the last good CT log list (`public.certwatch_log_list`), each
//! log's position (`certwatch_log_positions`: only forward, but for an explicit
//! reset) and the ranges each replica's backfill claimed or finished
//! (`certwatch_backfill_claims`). Runs on callers' threads: the `backfill`
//! thread, and the `pipeline` thread (positions saved at the drain).

use super::{Store, StoreError};
use std::ops::Range;
use std::time::Duration;

/// Where tailing a log resumes, verified: the first `tree_size` entries were read
/// and shown to belong to a head the log signed; `frontier` is their compact range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFrontier {
    /// The log id in base64.
    pub log_id: String,
    pub log_url: String,
    pub tree_size: u64,
    pub root_hash: [u8; 32],
    /// The compact range's hashes, largest subtree first.
    pub frontier: Vec<[u8; 32]>,
    /// The signed head's timestamp the entries were verified against.
    pub head_timestamp_ms: u64,
}

/// One log's stored position: the index below which every entry of the log was
/// seen, fetched or abandoned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPosition {
    /// The log id in base64, as the list spells it.
    pub log_id: String,
    /// The log's URL (the metrics label), for whoever reads the table.
    pub log_url: String,
    pub position: u64,
}

impl Store {
    /// Keeps `body` as the last good CT log list read from `source`.
    pub fn save_log_list(&self, source: &str, body: &[u8]) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.execute(
                "INSERT INTO public.certwatch_log_list (source, body, fetched_at) VALUES ($1, $2, now())
                 ON CONFLICT (source) DO UPDATE SET body = EXCLUDED.body, fetched_at = now()",
                &[&source, &body],
            )
        })?;
        Ok(())
    }

    /// The last good CT log list read from `source` and when (RFC 3339, UTC), if any.
    pub fn load_log_list(&self, source: &str) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        let rows = self.run(|conn| {
            conn.query(
                "SELECT body, to_char(fetched_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                   FROM public.certwatch_log_list WHERE source = $1",
                &[&source],
            )
        })?;
        Ok(rows.first().map(|r| (r.get(0), r.get(1))))
    }

    /// Stores each log's position in one statement; a stored position only moves
    /// forward (replicas share them).
    pub fn save_positions(&self, positions: &[LogPosition]) -> Result<(), StoreError> {
        if positions.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = positions.iter().map(|p| p.log_id.as_str()).collect();
        let urls: Vec<&str> = positions.iter().map(|p| p.log_url.as_str()).collect();
        let at: Vec<i64> = positions.iter().map(|p| to_i64(p.position)).collect();
        self.run(|conn| {
            conn.execute(
                "INSERT INTO public.certwatch_log_positions AS p (log_id, log_url, position)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[])
                 ON CONFLICT (log_id) DO UPDATE
                    SET position = GREATEST(p.position, EXCLUDED.position),
                        log_url = EXCLUDED.log_url, updated_at = now()
                  WHERE p.position < EXCLUDED.position OR p.log_url <> EXCLUDED.log_url",
                &[&ids, &urls, &at],
            )
        })?;
        Ok(())
    }

    /// Sets a log's stored position, also backwards: after a feed named an index
    /// beyond the log's tree.
    pub fn reset_position(&self, row: &LogPosition) -> Result<(), StoreError> {
        let LogPosition {
            log_id,
            log_url: url,
            position,
        } = row;
        self.run(|conn| {
            conn.execute(
                "INSERT INTO public.certwatch_log_positions (log_id, log_url, position)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (log_id) DO UPDATE
                    SET position = EXCLUDED.position, log_url = EXCLUDED.log_url, updated_at = now()",
                &[log_id, url, &to_i64(*position)],
            )
        })?;
        Ok(())
    }

    /// Every stored position.
    pub fn load_positions(&self) -> Result<Vec<LogPosition>, StoreError> {
        let rows = self.run(|conn| {
            conn.query(
                "SELECT log_id, log_url, position FROM public.certwatch_log_positions",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| LogPosition {
                log_id: r.get(0),
                log_url: r.get(1),
                position: r.get::<_, i64>(2).max(0) as u64,
            })
            .collect())
    }

    /// Claims parts of `range` of a log for this instance's backfill for `lease`:
    /// `left` says what is left of the range once the ranges another replica
    /// claimed (and whose claim has not expired) or finished are taken out (the rule
    /// is coverage's); those parts are claimed and returned. Serialised per log by
    /// an advisory lock, in one transaction; claims older than a day are deleted on
    /// the way.
    pub fn claim_range(
        &self,
        log_id: &str,
        range: Range<u64>,
        lease: Duration,
        left: impl FnOnce(Range<u64>, &[Range<u64>]) -> Vec<Range<u64>>,
    ) -> Result<Vec<Range<u64>>, StoreError> {
        let owner: &str = &self.instance;
        let (from, to) = (to_i64(range.start), to_i64(range.end));
        let lease = lease.as_secs_f64();
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7262013371))",
            &[&log_id],
        )?;
        tx.execute(
            "DELETE FROM public.certwatch_backfill_claims
              WHERE log_id = $1 AND claimed_at < now() - interval '1 day'",
            &[&log_id],
        )?;
        let taken: Vec<Range<u64>> = tx
            .query(
                "SELECT start_index, end_index FROM public.certwatch_backfill_claims
                  WHERE log_id = $1 AND owner <> $2 AND start_index < $4 AND end_index > $3
                    AND (done OR expires_at > now())",
                &[&log_id, &owner, &from, &to],
            )?
            .iter()
            .map(|r| r.get::<_, i64>(0).max(0) as u64..r.get::<_, i64>(1).max(0) as u64)
            .collect();
        let free = left(range, &taken);
        for piece in &free {
            tx.execute(
                "INSERT INTO public.certwatch_backfill_claims AS c
                        (log_id, start_index, end_index, owner, expires_at)
                 VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
                 ON CONFLICT (log_id, start_index, owner) DO UPDATE
                    SET end_index = EXCLUDED.end_index, expires_at = EXCLUDED.expires_at,
                        claimed_at = now(), done = false",
                &[
                    &log_id,
                    &to_i64(piece.start),
                    &to_i64(piece.end),
                    &owner,
                    &lease,
                ],
            )?;
        }
        tx.commit()?;
        Ok(free)
    }

    /// Stores a log's verified frontier; a stored one only moves forward.
    pub fn save_frontier(&self, f: &LogFrontier) -> Result<(), StoreError> {
        let frontier: Vec<u8> = f.frontier.iter().flatten().copied().collect();
        let root: &[u8] = &f.root_hash;
        let ts = to_i64(f.head_timestamp_ms);
        self.run(|conn| {
            conn.execute(
                "INSERT INTO public.certwatch_log_frontiers AS f
                        (log_id, log_url, tree_size, root_hash, frontier, head_timestamp_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (log_id) DO UPDATE
                    SET log_url = EXCLUDED.log_url, tree_size = EXCLUDED.tree_size,
                        root_hash = EXCLUDED.root_hash, frontier = EXCLUDED.frontier,
                        head_timestamp_ms = EXCLUDED.head_timestamp_ms, verified_at = now()
                  WHERE f.tree_size <= EXCLUDED.tree_size",
                &[
                    &f.log_id,
                    &f.log_url,
                    &to_i64(f.tree_size),
                    &root,
                    &frontier,
                    &ts,
                ],
            )
        })?;
        Ok(())
    }

    /// A log's stored frontier, if any (one whose bytes do not fit is none).
    pub fn load_frontier(&self, log_id: &str) -> Result<Option<LogFrontier>, StoreError> {
        let rows = self.run(|conn| {
            conn.query(
                "SELECT log_url, tree_size, root_hash, frontier, head_timestamp_ms
                   FROM public.certwatch_log_frontiers WHERE log_id = $1",
                &[&log_id],
            )
        })?;
        Ok(rows.first().and_then(|r| {
            let root: Vec<u8> = r.get(2);
            let frontier: Vec<u8> = r.get(3);
            Some(LogFrontier {
                log_id: log_id.to_string(),
                log_url: r.get(0),
                tree_size: r.get::<_, i64>(1).max(0) as u64,
                root_hash: root.try_into().ok()?,
                frontier: frontier
                    .chunks_exact(32)
                    .map(|h| h.try_into().expect("32 bytes"))
                    .collect(),
                head_timestamp_ms: r.get::<_, i64>(4).max(0) as u64,
            })
        }))
    }

    /// Takes or renews this instance's lease on tailing a log for `lease`: true
    /// when this instance holds it now (it was free, expired, or already its own).
    pub fn take_lease(&self, log_id: &str, lease: Duration) -> Result<bool, StoreError> {
        let owner: &str = &self.instance;
        let secs = lease.as_secs_f64();
        let rows = self.run(|conn| {
            conn.query(
                "INSERT INTO public.certwatch_log_leases AS l (log_id, owner, expires_at)
                 VALUES ($1, $2, now() + make_interval(secs => $3))
                 ON CONFLICT (log_id) DO UPDATE
                    SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                  WHERE l.owner = EXCLUDED.owner OR l.expires_at < now()
                 RETURNING owner",
                &[&log_id, &owner, &secs],
            )
        })?;
        Ok(!rows.is_empty())
    }

    /// Says this instance is alive, and returns the instances alive (their row
    /// written within `alive`), this one included, sorted.
    pub fn replicas_alive(&self, alive: Duration) -> Result<Vec<String>, StoreError> {
        let owner: &str = &self.instance;
        let secs = alive.as_secs_f64();
        let rows = self.run(|conn| {
            conn.execute(
                "INSERT INTO public.certwatch_replicas (instance, seen_at) VALUES ($1, now())
                 ON CONFLICT (instance) DO UPDATE SET seen_at = now()",
                &[&owner],
            )?;
            conn.execute(
                "DELETE FROM public.certwatch_replicas WHERE seen_at < now() - interval '1 day'",
                &[],
            )?;
            conn.query(
                "SELECT instance FROM public.certwatch_replicas
                  WHERE seen_at > now() - make_interval(secs => $1) ORDER BY instance",
                &[&secs],
            )
        })?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Leaves the replicas alive (at shutdown): the others take this one's logs at
    /// their next look instead of after `alive`.
    pub fn leave_replicas(&self) -> Result<(), StoreError> {
        let owner: &str = &self.instance;
        self.run(|conn| {
            conn.execute(
                "DELETE FROM public.certwatch_replicas WHERE instance = $1",
                &[&owner],
            )
        })?;
        Ok(())
    }

    /// This instance's name in leases and the replicas table.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Gives a lease up (at shutdown): another replica takes the log at once.
    pub fn release_lease(&self, log_id: &str) -> Result<(), StoreError> {
        let owner: &str = &self.instance;
        self.run(|conn| {
            conn.execute(
                "DELETE FROM public.certwatch_log_leases WHERE log_id = $1 AND owner = $2",
                &[&log_id, &owner],
            )
        })?;
        Ok(())
    }

    /// Marks this instance's claim starting at `start` done: other replicas skip it.
    pub fn finish_claim(&self, log_id: &str, start: u64) -> Result<(), StoreError> {
        let owner: &str = &self.instance;
        self.run(|conn| {
            conn.execute(
                "UPDATE public.certwatch_backfill_claims SET done = true
                  WHERE log_id = $1 AND start_index = $2 AND owner = $3",
                &[&log_id, &to_i64(start), &owner],
            )
        })?;
        Ok(())
    }
}

/// A log index as Postgres `bigint` (indices never come near `i64::MAX`).
fn to_i64(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

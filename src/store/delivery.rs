//! Delivery state of alert rows: the targets that accepted each event, the
//! leases that keep a row with the replica delivering it (taken back after a
//! restart), the redelivery sweep's claims and the undelivered backlog. Runs on
//! callers' threads: the target threads (`deliver-N`: each round's outcome), the
//! workers and the grace thread (`worker-N`, `grace`: a held alert written late),
//! the `timer` thread (the sweep, the backlog) and the `pipeline` thread (own
//! leases, at start-up).

use super::{Store, StoreError};
use crate::alert::{Event, Severity};
use std::time::Duration;

/// An undelivered event claimed by the redelivery sweep.
pub struct Claimed {
    pub delivery_id: String,
    pub event: Event,
    /// What the stored body says: the row's severity, `info` once resolved.
    pub severity: Severity,
    /// The stored payload, sent as it is.
    pub body: Vec<u8>,
    /// Keys of the targets that already accepted it.
    pub delivered_targets: Vec<String>,
}

/// How long a freshly written alert belongs to the replica delivering it before
/// another replica's sweep may take it over.
pub const FIRST_DELIVERY_LEASE: Duration = Duration::from_secs(300);

impl Store {
    /// Makes the undelivered rows this instance had leased (a delivery in flight
    /// when it stopped, however it stopped) due now instead of when their lease
    /// ends; returns how many. Another replica's leases are left alone.
    pub fn reclaim_own_leases(&self) -> Result<u64, StoreError> {
        if self.instance.is_empty() {
            return Ok(0);
        }
        let instance: &str = &self.instance;
        self.run(|conn| {
            conn.execute(
                "UPDATE public.alerts SET next_attempt_at = now()
                  WHERE NOT delivered AND lease_owner = $1 AND next_attempt_at > now()",
                &[&instance],
            )
        })
    }

    /// Records one delivery attempt (or round) of an event: the targets that
    /// accepted it this time join `delivered_targets`, the row is `delivered` once
    /// every target in `all_targets` is there. `last_error` takes `error`; an
    /// acceptance that leaves the row undelivered keeps the error another target
    /// left. With `redelivery`, the next attempt is scheduled
    /// `redelivery × 2^redeliveries` ahead (at most an hour, or `redelivery` if
    /// that is longer). Target threads record the same row concurrently: every
    /// value is computed from the row as the update finds it (after waiting for
    /// another update of it), so no acceptance is lost.
    pub fn record_round(
        &self,
        delivery_id: &str,
        event: Event,
        accepted: &[String],
        all_targets: &[String],
        error: Option<&str>,
        redelivery: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.execute(
            "UPDATE public.alerts a
                SET delivered_targets = ARRAY(SELECT DISTINCT k FROM unnest(a.delivered_targets || $3::text[]) k
                                              ORDER BY k),
                    delivered = $4::text[] <@ (a.delivered_targets || $3::text[]),
                    delivered_at = CASE WHEN $4::text[] <@ (a.delivered_targets || $3::text[])
                                        THEN coalesce(a.delivered_at, now()) END,
                    attempts = a.attempts + 1,
                    last_error = CASE WHEN $5::text IS NULL AND NOT $4::text[] <@ (a.delivered_targets || $3::text[])
                                      THEN a.last_error ELSE $5::text END,
                    next_attempt_at = CASE WHEN $6::float8 IS NULL THEN a.next_attempt_at
                        ELSE now() + make_interval(secs => least($6 * power(2, least(a.redeliveries, 20)),
                                                                 greatest($6, 3600))) END
              WHERE a.delivery_id = $1 AND a.event = $2",
            &[
                &delivery_id,
                &event.as_str(),
                &accepted,
                &all_targets,
                &error,
                &redelivery.map(|d| d.as_secs_f64()),
            ],
            )
        })?;
        Ok(())
    }

    /// Claims undelivered events that are due, younger than `max_age`, for this
    /// replica: their next attempt moves `lease` ahead, so no other replica
    /// takes them meanwhile (rows another replica is claiming are skipped).
    pub fn claim_redeliveries(
        &self,
        lease: Duration,
        max_age: Duration,
        batch: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let instance: &str = &self.instance;
        let rows = self.run(|conn| {
            conn.query(
            "UPDATE public.alerts a
                SET next_attempt_at = now() + make_interval(secs => $1), redeliveries = a.redeliveries + 1,
                    lease_owner = $4
               FROM (SELECT id FROM public.alerts
                      WHERE NOT delivered AND payload IS NOT NULL AND delivery_id IS NOT NULL
                        AND created_at > now() - make_interval(secs => $2)
                        AND coalesce(next_attempt_at, created_at) <= now()
                      ORDER BY next_attempt_at NULLS FIRST
                      LIMIT $3
                      FOR UPDATE SKIP LOCKED) due
              WHERE a.id = due.id
          RETURNING a.delivery_id, a.event, a.payload::text, a.delivered_targets, a.severity",
            &[&lease.as_secs_f64(), &max_age.as_secs_f64(), &batch, &instance],
            )
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let event = Event::parse(r.get(1))?;
                Some(Claimed {
                    delivery_id: r.get(0),
                    event,
                    severity: match (event, r.get::<_, Option<&str>>(4)) {
                        (Event::Match, Some("suspicious")) => Severity::Suspicious,
                        _ => Severity::Info,
                    },
                    body: r.get::<_, String>(2).into_bytes(),
                    delivered_targets: r.get(3),
                })
            })
            .collect())
    }

    /// Undelivered events younger than `max_age`: the redelivery backlog.
    pub fn undelivered(&self, max_age: Duration) -> Result<i64, StoreError> {
        let row = self.run(|conn| {
            conn.query_one(
                "SELECT count(*) FROM public.alerts
              WHERE NOT delivered AND payload IS NOT NULL
                AND created_at > now() - make_interval(secs => $1)",
                &[&max_age.as_secs_f64()],
            )
        })?;
        Ok(row.get(0))
    }
}

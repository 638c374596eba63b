//! Alert rows in `public.alerts`: the insert, deduplicated on issuance key and
//! collision fingerprint by the database (`ON CONFLICT DO NOTHING`); the
//! certificates already alerted for an issuance key; the resolution of a
//! suspicious alert whose certificate reached the inventory; retention (old rows
//! pruned in batches). Runs on callers' threads: the workers and the grace thread
//! (`worker-N`, `grace`: insert, dedupe) and the `timer` thread (resolution,
//! cleanup).

use super::{FIRST_DELIVERY_LEASE, Store, StoreError};
use crate::alert::{Identity, SeenCert, SeenCerts, Severity, Sighting, lifetime_days, seen_at};
use crate::cert::EntryType;
use std::time::Duration;

/// A suspicious alert that may have reached the inventory, with what the
/// inventory rule needs of it (`ResolutionCandidate::identity`).
pub struct ResolutionCandidate {
    pub id: i64,
    pub delivery_id: String,
    pub entry_type: EntryType,
    pub fingerprint_sha1: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// The alerted names, normalised, sorted, unique.
    pub names: Vec<String>,
    pub subject_cn: Option<String>,
    pub collision: bool,
    /// The stored webhook body.
    pub payload: Vec<u8>,
}

impl ResolutionCandidate {
    pub fn identity(&self) -> Identity<'_> {
        Identity {
            entry_type: self.entry_type,
            fingerprint_sha1: self.fingerprint_sha1.as_deref(),
            serial: self.serial.as_deref(),
            not_before: self.not_before,
            not_after: self.not_after,
            names: &self.names,
            subject_cn: self.subject_cn.as_deref(),
            collision: self.collision,
        }
    }
}

/// Everything an alert row holds.
pub struct AlertRow<'a> {
    pub sighting: &'a Sighting,
    pub severity: Severity,
    pub delivery_id: &'a str,
    /// The webhook body, kept so redelivery sends the same payload.
    pub body: &'a [u8],
}

impl Store {
    /// Inserts the alert row; `None` when its issuance (and collision
    /// fingerprint) was already recorded.
    pub fn insert_alert(&self, row: &AlertRow<'_>) -> Result<Option<i64>, StoreError> {
        let s = row.sighting;
        let c = &s.cert;
        let lifetime = lifetime_days(c.not_before, c.not_after);
        let seen_at = seen_at(s) as f64;
        let body = std::str::from_utf8(row.body).unwrap_or("{}");
        let instance: &str = &self.instance;
        let rows = self.run(|conn| {
            conn.query(
                "INSERT INTO public.alerts (
                 issuance_key, collision_fingerprint, delivery_id, severity, entry_type,
                 fingerprint_sha1, matched_entries, matched_sans, all_sans, issuer_o, issuer_cn,
                 not_before, not_after, lifetime_days, source_log, source_url, cert_link,
                 cert_index, serial, update_type, seen_at, payload, event, next_attempt_at,
                 issuer_key_id, subject_key_id, issuer_dn, subject_cn, lease_owner, detected_via)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                     to_timestamp($12), to_timestamp($13), $14, $15, $16, $17,
                     $18, $19, $20, to_timestamp($21), $22::text::jsonb, 'match',
                     now() + make_interval(secs => $23), $24, $25, $26, $27, $28, $29)
             ON CONFLICT (issuance_key, collision_fingerprint) DO NOTHING
             RETURNING id",
                &[
                    &s.issuance_key,
                    &s.collision_fingerprint,
                    &row.delivery_id,
                    &row.severity.as_str(),
                    &c.entry_type.as_str(),
                    &c.fingerprint_sha1,
                    &s.matched_entries,
                    &s.matched_sans,
                    &c.all_domains,
                    &c.issuer_o,
                    &c.issuer_cn,
                    &c.not_before.map(|t| t as f64),
                    &c.not_after.map(|t| t as f64),
                    &lifetime,
                    &c.source_name,
                    &c.source_url,
                    &c.cert_link,
                    &c.cert_index.and_then(|i| i64::try_from(i).ok()),
                    &c.serial,
                    &c.entry_type.update_type(),
                    &seen_at,
                    &body,
                    &FIRST_DELIVERY_LEASE.as_secs_f64(),
                    &c.issuer_key_id,
                    &c.subject_key_id,
                    &c.issuer_dn,
                    &c.subject_cn,
                    &instance,
                    &s.detected_via.as_str(),
                ],
            )
        })?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// The certificates already alerted for an issuance key.
    pub fn seen_for_issuance(&self, key: &str) -> Result<SeenCerts, StoreError> {
        let rows = self.run(|conn| {
            conn.query(
                "SELECT entry_type, fingerprint_sha1, issuer_key_id, issuer_dn, issuer_o, subject_key_id
                   FROM public.alerts WHERE issuance_key = $1",
                &[&key],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                let entry: Option<String> = r.get(0);
                let entry_type = if entry.as_deref() == Some("precert") {
                    EntryType::Precert
                } else {
                    EntryType::X509
                };
                SeenCert {
                    entry_type: Some(entry_type),
                    fingerprint: r.get(1),
                    issuer_key_id: r.get(2),
                    issuer_dn: r.get(3),
                    issuer_o: r.get(4),
                    subject_key_id: r.get(5),
                }
            })
            .collect())
    }

    /// Suspicious alerts of the last day that may have reached the inventory since:
    /// a row of `public.certs` has their fingerprint or serial. Whether one has
    /// is decided by `alert::in_inventory`, not here. Only alerts whose match was
    /// delivered (or all, with `observer`, where nothing is delivered).
    pub fn resolution_candidates(
        &self,
        observer: bool,
    ) -> Result<Vec<ResolutionCandidate>, StoreError> {
        let rows = self.run(|conn| {
            conn.query(
                "SELECT a.id, a.delivery_id, a.entry_type, a.fingerprint_sha1, a.serial,
                        extract(epoch FROM a.not_before)::bigint, extract(epoch FROM a.not_after)::bigint,
                        coalesce(a.all_sans, '{}'), a.subject_cn, a.collision_fingerprint <> '', a.payload::text
                   FROM public.alerts a
                  WHERE a.severity = 'suspicious' AND a.event = 'match' AND a.resolved_at IS NULL
                    AND a.payload IS NOT NULL AND (a.delivered OR $1)
                    AND a.created_at > now() - interval '1 day'
                    AND EXISTS (
                        SELECT 1 FROM public.certs c
                         WHERE lower(replace(c.fingerprint_sha1, ':', '')) = a.fingerprint_sha1
                            OR ltrim(lower(replace(c.serial, ':', '')), '0') = lower(a.serial))
                  ORDER BY a.id LIMIT 100",
                &[&observer],
            )
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let entry_type = match r.get::<_, Option<&str>>(2)? {
                    "precert" => EntryType::Precert,
                    "x509" => EntryType::X509,
                    _ => return None,
                };
                let mut names: Vec<String> = r
                    .get::<_, Vec<String>>(7)
                    .iter()
                    .map(|n| crate::cert::normalize_name(n))
                    .collect();
                names.sort();
                names.dedup();
                Some(ResolutionCandidate {
                    id: r.get(0),
                    delivery_id: r.get(1),
                    entry_type,
                    fingerprint_sha1: r.get(3),
                    serial: r.get(4),
                    not_before: r.get(5),
                    not_after: r.get(6),
                    names,
                    subject_cn: r.get(8),
                    collision: r.get(9),
                    payload: r.get::<_, String>(10).into_bytes(),
                })
            })
            .collect())
    }

    /// Turns a suspicious alert into its `resolved` event with `body`, due for
    /// delivery now (or delivered already, with `observer`). False when another
    /// replica or an earlier sweep resolved it first.
    pub fn mark_resolved(&self, id: i64, body: &[u8], observer: bool) -> Result<bool, StoreError> {
        let body = std::str::from_utf8(body).unwrap_or("{}");
        let n = self.run(|conn| {
            conn.execute(
                "UPDATE public.alerts
                    SET resolved_at = now(), event = 'resolved', delivered = $3, delivered_targets = '{}',
                        delivered_at = NULL, attempts = 0, last_error = NULL, next_attempt_at = now(),
                        payload = $2::text::jsonb
                  WHERE id = $1 AND resolved_at IS NULL AND event = 'match'",
                &[&id, &body, &observer],
            )
        })?;
        Ok(n == 1)
    }

    /// Deletes alerts older than `retention`, `batch` rows per statement so no
    /// lock is held long; returns the number deleted.
    pub fn prune_alerts(&self, retention: Duration, batch: i64) -> Result<u64, StoreError> {
        let seconds = retention.as_secs_f64();
        let mut total = 0;
        loop {
            let deleted = self.run(|conn| {
                conn.execute(
                    "DELETE FROM public.alerts WHERE id IN (
                     SELECT id FROM public.alerts
                      WHERE created_at < now() - make_interval(secs => $1)
                      ORDER BY created_at LIMIT $2
                      FOR UPDATE SKIP LOCKED)",
                    &[&seconds, &batch],
                )
            })?;
            total += deleted;
            if deleted < batch as u64 {
                return Ok(total);
            }
        }
    }
}

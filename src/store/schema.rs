//! Schema: whether the database has every table, index and column `schema.sql`
//! creates (the `alerts_open` triage view included), and applying `schema.sql`
//! when it does not, serialised across replicas. Runs on the caller's thread:
//! the `pipeline` thread at start-up, or a test.

use super::{Store, StoreError};

/// The schema, applied at start-up when the database lacks it.
pub const SCHEMA: &str = include_str!("../../schema.sql");

impl Store {
    /// Applies `schema.sql` unless the database already has everything it
    /// creates; serialised across replicas by an advisory lock.
    pub fn ensure_schema(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        if schema_is_current(&mut conn.client)? {
            return Ok(());
        }
        log::info!("applying schema.sql");
        // Statements prepared before the tables change would no longer fit them.
        conn.prepared.clear();
        let mut tx = conn.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock(7262013370)", &[])?;
        tx.batch_execute(SCHEMA).map_err(|e| {
            StoreError::Schema(format!(
                "could not apply schema.sql ({e}); apply it as the table owner: psql \"$POSTGRES_DSN\" -f schema.sql"
            ))
        })?;
        tx.commit()?;
        Ok(())
    }
}

fn schema_is_current(conn: &mut postgres::Client) -> Result<bool, StoreError> {
    let row = conn.query_one(
        "SELECT to_regclass('public.intent_current') IS NOT NULL
            AND to_regclass('public.certs') IS NOT NULL
            AND to_regclass('public.alerts_issuance_uidx') IS NOT NULL
            AND to_regclass('public.alerts_delivery_id_idx') IS NOT NULL
            AND to_regclass('public.alerts_open') IS NOT NULL
            AND to_regclass('public.certwatch_pending') IS NOT NULL
            AND to_regclass('public.certwatch_log_list') IS NOT NULL
            AND to_regclass('public.certwatch_log_positions') IS NOT NULL
            AND to_regclass('public.certwatch_backfill_claims') IS NOT NULL
            AND to_regclass('public.certwatch_log_frontiers') IS NOT NULL
            AND to_regclass('public.certwatch_log_leases') IS NOT NULL
            AND to_regclass('public.certwatch_replicas') IS NOT NULL
            AND (SELECT count(*) FROM information_schema.columns
                  WHERE table_schema = 'public' AND table_name = 'alerts'
                    AND column_name IN ('payload', 'delivery_id', 'collision_fingerprint', 'next_attempt_at',
                                        'event', 'delivered_targets', 'redeliveries', 'resolved_at',
                                        'issuer_key_id', 'subject_key_id', 'issuer_dn', 'subject_cn',
                                        'lease_owner', 'detected_via')) = 14
            AND (SELECT data_type FROM information_schema.columns
                  WHERE table_schema = 'public' AND table_name = 'alerts'
                    AND column_name = 'seen_at') = 'timestamp with time zone'",
        &[],
    )?;
    Ok(row.get(0))
}

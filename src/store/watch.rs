//! Watch list and inventory reads: the `fqdn`s of `public.intent_current`, and
//! `public.certs` (what tells whether it changed, every row streamed for the
//! inventory snapshot, the rows with one fingerprint or serial). Read only. Runs
//! on callers' threads: the `timer` thread (watch-list and inventory refresh) and
//! the workers and grace thread (`worker-N`, `grace`: inventory lookups while
//! classifying).

use super::{Store, StoreError};
use crate::alert::InventoryRow;

impl Store {
    /// Calls `each` with every `fqdn` of `public.intent_current`, streaming the
    /// rows (none is kept); returns how many there were.
    pub fn for_each_watch_entry(&self, mut each: impl FnMut(&str)) -> Result<usize, StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut conn = self.conn()?;
        let params: [&(dyn postgres::types::ToSql + Sync); 0] = [];
        let statement =
            conn.statement("SELECT fqdn FROM public.intent_current WHERE fqdn IS NOT NULL")?;
        let mut rows = conn.client.query_raw(&statement, params)?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            each(row.get::<_, &str>(0));
            count += 1;
        }
        Ok(count)
    }

    /// What tells whether `public.certs` changed: its row count and newest
    /// `added_at` (a row count of 0 means every match would be `suspicious`).
    pub fn inventory_signature(&self) -> Result<(i64, Option<i64>), StoreError> {
        let row = self
            .run(|conn| conn.query_one("SELECT count(*), max(added_at) FROM public.certs", &[]))?;
        Ok((row.get(0), row.get(1)))
    }

    /// Calls `each` with every row of `public.certs` (fingerprint, serial,
    /// validity, SANs), streaming them; returns how many there were.
    pub fn for_each_inventory_row(
        &self,
        mut each: impl FnMut(&str, Option<&str>, i64, i64, &[String]),
    ) -> Result<usize, StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut conn = self.conn()?;
        let params: [&(dyn postgres::types::ToSql + Sync); 0] = [];
        let statement = conn.statement(
            "SELECT fingerprint_sha1, serial, not_before, not_after,
                    CASE WHEN jsonb_typeof(sans) = 'array'
                         THEN ARRAY(SELECT jsonb_array_elements_text(sans)) ELSE '{}'::text[] END
               FROM public.certs",
        )?;
        let mut rows = conn.client.query_raw(&statement, params)?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let sans: Vec<String> = row.get(4);
            each(row.get(0), row.get(1), row.get(2), row.get(3), &sans);
            count += 1;
        }
        Ok(count)
    }

    /// The inventory rows with this SHA-1 fingerprint (lower-case hex) or this
    /// serial (normalised), for `alert::in_inventory` to decide on. Bounded: a
    /// serial shared by more rows than that is an upstream data problem.
    pub fn inventory_candidates(
        &self,
        fingerprint: Option<&str>,
        serial: Option<&str>,
    ) -> Result<Vec<InventoryRow>, StoreError> {
        if fingerprint.is_none() && serial.is_none() {
            return Ok(Vec::new());
        }
        let serial = serial.map(|s| s.to_ascii_lowercase());
        let rows = self.run(|conn| {
            conn.query(
                "SELECT fingerprint_sha1, serial, not_before, not_after,
                        CASE WHEN jsonb_typeof(sans) = 'array'
                             THEN ARRAY(SELECT jsonb_array_elements_text(sans)) ELSE '{}'::text[] END
                   FROM public.certs
                  WHERE lower(replace(fingerprint_sha1, ':', '')) = $1
                     OR ltrim(lower(replace(serial, ':', '')), '0') = $2
                  LIMIT 64",
                &[&fingerprint, &serial],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                InventoryRow::new(
                    r.get::<_, &str>(0),
                    r.get::<_, Option<&str>>(1),
                    r.get(2),
                    r.get(3),
                    &r.get::<_, Vec<String>>(4),
                )
            })
            .collect())
    }
}

//! Pending sightings: `public.certwatch_pending`, where a sighting waiting out
//! its grace period is kept so that a crash or restart does not lose it. Runs on
//! callers' threads: the workers and the grace thread (`worker-N`, `grace`: save
//! and delete while classifying) and the `pipeline` thread (load, at start-up).

use super::{Store, StoreError};
use crate::alert::Sighting;

impl Store {
    /// Keeps a sighting that waits out its grace period, due at `due_at_ms`
    /// (unix milliseconds), so that a crash or restart does not lose it.
    pub fn save_pending(&self, sighting: &Sighting, due_at_ms: i64) -> Result<(), StoreError> {
        let json = serde_json::to_string(sighting).expect("a sighting serialises");
        self.run(|conn| {
            conn.execute(
                "INSERT INTO public.certwatch_pending (issuance_key, collision_fingerprint, due_at, sighting)
                 VALUES ($1, $2, to_timestamp($3::float8 / 1000.0), $4::text::jsonb)
                 ON CONFLICT DO NOTHING",
                &[&sighting.issuance_key, &sighting.collision_fingerprint, &(due_at_ms as f64), &json],
            )
        })?;
        Ok(())
    }

    /// Forgets a pending sighting once it is classified and recorded.
    pub fn delete_pending(
        &self,
        issuance_key: &str,
        collision_fingerprint: &str,
    ) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.execute(
                "DELETE FROM public.certwatch_pending WHERE issuance_key = $1 AND collision_fingerprint = $2",
                &[&issuance_key, &collision_fingerprint],
            )
        })?;
        Ok(())
    }

    /// Every pending sighting with its due time (unix milliseconds), oldest
    /// first, at most `limit`; one that no longer reads as a sighting is logged
    /// and deleted.
    pub fn load_pending(&self, limit: i64) -> Result<Vec<(Sighting, i64)>, StoreError> {
        let rows = self.run(|conn| {
            conn.query(
                "SELECT issuance_key, collision_fingerprint, sighting::text,
                        (extract(epoch FROM due_at) * 1000)::bigint
                   FROM public.certwatch_pending ORDER BY due_at LIMIT $1",
                &[&limit],
            )
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let (key, collision): (String, String) = (row.get(0), row.get(1));
            match serde_json::from_str::<Sighting>(row.get(2)) {
                Ok(sighting) => out.push((sighting, row.get(3))),
                Err(e) => {
                    log::error!("pending sighting {key} cannot be read ({e}); dropped");
                    self.run(|conn| {
                        conn.execute(
                            "DELETE FROM public.certwatch_pending
                              WHERE issuance_key = $1 AND collision_fingerprint = $2",
                            &[&key, &collision],
                        )
                    })?;
                }
            }
        }
        Ok(out)
    }
}

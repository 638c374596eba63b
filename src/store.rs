//! Store: the only module with SQL. Owns the r2d2 Postgres pool and every query:
//! schema check at start-up, watch-list load, inventory lookups, alert rows, and
//! the coverage state (the last good CT log list, per-log positions, backfill
//! claims).
//!
//! Called from the main thread (start-up), the workers and the grace thread
//! (inventory, alert rows), the deliver thread (delivery state) and the timer
//! thread (watch list, cleanup), the backfill thread (coverage state).
//! Connections go back to the pool after each call;
//! none is held across anything but its own query.

use crate::alert::{
    Event, Identity, InventoryRow, SeenCert, SeenCerts, Severity, Sighting, lifetime_days, seen_at,
};
use crate::cert::EntryType;
use r2d2_postgres::PostgresConnectionManager;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The schema, applied at start-up when the database lacks it.
pub const SCHEMA: &str = include_str!("../schema.sql");

/// Opens, checks and wraps the pool's connections; remembers why the last
/// connection attempt failed, and logs the cause when it first appears or changes.
struct Manager {
    inner: PostgresConnectionManager<MakeRustlsConnect>,
    last_failure: Arc<Mutex<Option<ConnectCause>>>,
}

/// A pooled connection and the statements prepared on it: a query whose
/// statement is prepared is one round trip (bind and execute) where an
/// unprepared one is two (parse and describe, then bind and execute), and the
/// server plans it once rather than every time.
pub struct Conn {
    client: postgres::Client,
    prepared: HashMap<&'static str, postgres::Statement>,
}

type Params<'a> = &'a [&'a (dyn postgres::types::ToSql + Sync)];

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    fn query_one(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<postgres::Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_one(&statement, params)
    }

    fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params)
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        let result = self.inner.connect();
        let cause = result.as_ref().err().map(ConnectCause::of);
        let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        if *last != cause {
            match &cause {
                Some(cause) => log::warn!("database connection failed: {cause}"),
                None => log::info!("database connection established"),
            }
            *last = cause;
        }
        drop(last);
        Ok(Conn {
            client: result?,
            prepared: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        self.inner.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        self.inner.has_broken(&mut conn.client)
    }
}

/// After a failed connection attempt, calls fail at once for this long instead of
/// each waiting out the pool timeout: a database outage must not stall the workers.
const BREAKER: Duration = Duration::from_secs(3);

/// A handle on the database; clones share one pool and one breaker.
#[derive(Clone)]
pub struct Store {
    pool: r2d2::Pool<Manager>,
    /// Why the last connection attempt failed (`None` once one succeeds).
    last_failure: Arc<Mutex<Option<ConnectCause>>>,
    /// Unix milliseconds until which the database counts as down.
    down_until_ms: Arc<AtomicU64>,
    /// This instance's name (`lease_owner` of the rows it leases for delivery).
    instance: Arc<str>,
}

/// Every way a database call fails.
#[derive(Debug)]
pub enum StoreError {
    /// No connection could be had from the pool in time: the last attempt's
    /// cause, or `None` when every connection was busy.
    Unavailable(Option<ConnectCause>),
    /// The server rejected or failed a query, or the connection broke.
    Db(postgres::Error),
    /// The schema is missing and could not be applied.
    Schema(String),
    /// `POSTGRES_DSN` does not parse (config validates it first, so only a
    /// caller that skips `Config` meets this).
    InvalidDsn,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(Some(cause)) => write!(f, "database unavailable: {cause}"),
            StoreError::Unavailable(None) => {
                f.write_str("database unavailable: no free connection in time")
            }
            StoreError::Db(e) => write!(f, "database error: {e}"),
            StoreError::Schema(e) => write!(f, "schema: {e}"),
            StoreError::InvalidDsn => f.write_str("POSTGRES_DSN does not parse"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// Whether the server refused this row itself (SQLSTATE class 22, data
    /// exception: an invalid byte sequence, a value out of range; or class 23,
    /// integrity violation), so that writing it again can never work; not a
    /// database that is down, busy or refusing the role, which a retry outlives.
    pub fn rejects_the_row(&self) -> bool {
        match self {
            StoreError::Db(e) => e
                .as_db_error()
                .is_some_and(|db| matches!(&db.code().code()[..2], "22" | "23")),
            _ => false,
        }
    }
}

/// Why a connection to the database failed, in the words an operator acts on.
/// Built from the server's error or the socket's; never holds the DSN or password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectCause {
    /// The server has no database of that name (SQLSTATE 3D000).
    DatabaseMissing(String),
    /// The password or the role was refused (28P01, 28000).
    AuthFailed(String),
    /// The server requires TLS (or refuses it), or the TLS handshake failed.
    Tls(String),
    /// Nothing listens at that host and port.
    Refused(String),
    /// No answer within the connect timeout.
    Timeout,
    /// Anything else: the error as the driver words it.
    Other(String),
}

impl ConnectCause {
    /// Classifies a connection error by its SQLSTATE, else by its I/O cause.
    pub fn of(e: &postgres::Error) -> ConnectCause {
        use postgres::error::SqlState;
        if let Some(db) = e.as_db_error() {
            let message = format!("{}: {}", db.severity(), db.message());
            let code = db.code();
            return if *code == SqlState::INVALID_CATALOG_NAME {
                ConnectCause::DatabaseMissing(message)
            } else if (*code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                || *code == SqlState::INVALID_PASSWORD)
                && db.message().contains("encryption")
            {
                // pg_hba.conf has only hostssl (or only hostnossl) for this client.
                ConnectCause::Tls(message)
            } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                || *code == SqlState::INVALID_PASSWORD
            {
                ConnectCause::AuthFailed(message)
            } else {
                ConnectCause::Other(message)
            };
        }
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        return ConnectCause::Refused(io.to_string());
                    }
                    std::io::ErrorKind::TimedOut => return ConnectCause::Timeout,
                    _ => {}
                }
            }
            let more = cause.to_string();
            if !text.contains(&more) {
                text = format!("{text}: {more}");
            }
            source = cause.source();
        }
        let lower = text.to_ascii_lowercase();
        if lower.contains("timeout") || lower.contains("timed out") {
            ConnectCause::Timeout
        } else if lower.contains("tls") || lower.contains("ssl") {
            ConnectCause::Tls(text)
        } else {
            ConnectCause::Other(text)
        }
    }
}

impl fmt::Display for ConnectCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectCause::DatabaseMissing(m) => write!(f, "database does not exist ({m})"),
            ConnectCause::AuthFailed(m) => write!(f, "authentication failed ({m})"),
            ConnectCause::Tls(m) => write!(f, "TLS required or refused ({m})"),
            ConnectCause::Refused(m) => write!(
                f,
                "connection refused ({m}): is PostgreSQL running at the DSN's host and port?"
            ),
            ConnectCause::Timeout => f.write_str("timed out connecting"),
            ConnectCause::Other(m) => f.write_str(m),
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        StoreError::Db(e)
    }
}

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

/// Everything an alert row holds.
pub struct AlertRow<'a> {
    pub sighting: &'a Sighting,
    pub severity: Severity,
    pub delivery_id: &'a str,
    /// The webhook body, kept so redelivery sends the same payload.
    pub body: &'a [u8],
}

/// r2d2 logs connection failures itself at error level; certwatch counts and
/// logs them where they matter, so the pool's own reports go to debug.
#[derive(Debug)]
struct QuietErrors;

impl r2d2::HandleError<postgres::Error> for QuietErrors {
    fn handle_error(&self, error: postgres::Error) {
        log::debug!("database pool: {error}");
    }
}

impl Store {
    /// Builds the pool without connecting: the first query connects. The DSN is
    /// validated by `Config`; `sslmode=require` encrypts with rustls.
    pub fn new(dsn: &str, max_connections: u32) -> Result<Store, StoreError> {
        let mut config: postgres::Config = dsn.parse().map_err(|_| StoreError::InvalidDsn)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("certwatch");
        }
        if config.get_options().is_none() {
            // A hung query must not pin a pipeline thread.
            config.options("-c statement_timeout=15000");
        }
        config.keepalives_idle(Duration::from_secs(30));
        let tls = MakeRustlsConnect::new(tls_config());
        let last_failure = Arc::new(Mutex::new(None));
        let pool = r2d2::Pool::builder()
            .max_size(max_connections)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(2))
            // Testing every checkout costs a round trip per call; `run` retries
            // on another connection when one turns out to be closed instead.
            .test_on_check_out(false)
            .error_handler(Box::new(QuietErrors))
            .build_unchecked(Manager {
                inner: PostgresConnectionManager::new(config, tls),
                last_failure: last_failure.clone(),
            });
        Ok(Store {
            pool,
            last_failure,
            down_until_ms: Arc::new(AtomicU64::new(0)),
            instance: Arc::from(""),
        })
    }

    /// Names this instance in the delivery leases it takes, so that it can take
    /// back its own leases after a restart (`reclaim_own_leases`).
    pub fn with_instance(mut self, instance: &str) -> Store {
        self.instance = Arc::from(instance);
        self
    }

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

    /// A pooled connection, or `Unavailable` at once while the breaker is open.
    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        let now = now_ms();
        if now < self.down_until_ms.load(Ordering::Relaxed) {
            // A recent attempt failed: not retried until the breaker closes.
            return Err(self.unavailable());
        }
        self.pool.get().map_err(|_| {
            self.down_until_ms
                .store(now_ms() + BREAKER.as_millis() as u64, Ordering::Relaxed);
            self.unavailable()
        })
    }

    /// `Unavailable` with the last connection attempt's cause.
    fn unavailable(&self) -> StoreError {
        let cause = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        StoreError::Unavailable(cause.clone())
    }

    /// Runs `call` on a pooled connection. A connection found closed (the
    /// database restarted, or dropped it, while it sat idle in the pool) is
    /// discarded and `call` runs again on another, at most once per pooled
    /// connection. Every call here is safe to repeat: inserts skip conflicts,
    /// updates and claims converge.
    fn run<T>(
        &self,
        mut call: impl FnMut(&mut Conn) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut tries = self.pool.max_size() + 1;
        loop {
            let mut conn = self.conn()?;
            match call(&mut conn) {
                Err(e) if conn.client.is_closed() && tries > 1 => {
                    log::debug!("database connection was closed ({e}); trying another");
                    tries -= 1;
                }
                result => return Ok(result?),
            }
        }
    }

    /// One round trip; used at start-up and to report reachability.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| c.client.simple_query("SELECT 1").map(drop))
    }

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

    /// Stores each log's position (log id in base64, its URL, the index below which
    /// everything was seen, fetched or abandoned) in one statement; a stored position
    /// only moves forward (replicas share them).
    pub fn save_positions(&self, positions: &[(String, String, u64)]) -> Result<(), StoreError> {
        if positions.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = positions.iter().map(|p| p.0.as_str()).collect();
        let urls: Vec<&str> = positions.iter().map(|p| p.1.as_str()).collect();
        let at: Vec<i64> = positions.iter().map(|p| to_i64(p.2)).collect();
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
    pub fn reset_position(&self, log_id: &str, url: &str, position: u64) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.execute(
                "INSERT INTO public.certwatch_log_positions (log_id, log_url, position)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (log_id) DO UPDATE
                    SET position = EXCLUDED.position, log_url = EXCLUDED.log_url, updated_at = now()",
                &[&log_id, &url, &to_i64(position)],
            )
        })?;
        Ok(())
    }

    /// Every stored position: (log id in base64, position).
    pub fn load_positions(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self.run(|conn| {
            conn.query(
                "SELECT log_id, position FROM public.certwatch_log_positions",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
            .collect())
    }

    /// Claims `[start, end)` of a log for this instance's backfill for `lease`:
    /// returns the parts claimed, which leave out what another replica claimed (and
    /// whose claim has not expired) or finished. Serialised per log by an advisory
    /// lock; claims older than a day are deleted on the way.
    pub fn claim_range(
        &self,
        log_id: &str,
        start: u64,
        end: u64,
        lease: Duration,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let owner: &str = &self.instance;
        let (from, to) = (to_i64(start), to_i64(end));
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
        let taken: Vec<(u64, u64)> = tx
            .query(
                "SELECT start_index, end_index FROM public.certwatch_backfill_claims
                  WHERE log_id = $1 AND owner <> $2 AND start_index < $4 AND end_index > $3
                    AND (done OR expires_at > now())",
                &[&log_id, &owner, &from, &to],
            )?
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0).max(0) as u64,
                    r.get::<_, i64>(1).max(0) as u64,
                )
            })
            .collect();
        let free = crate::coverage::claims::subtract(start..end, &taken);
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
        Ok(free.into_iter().map(|r| (r.start, r.end)).collect())
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

/// TLS for `sslmode=prefer|require`: like libpq at those modes, the channel is
/// encrypted but the server certificate is not verified (libpq verifies only at
/// `verify-ca`/`verify-full`, which the postgres crate does not offer). With
/// `sslmode=disable` the connector is never used.
fn tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
        .with_no_client_auth()
}

/// Accepts any server certificate but still checks the handshake signatures.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! Store: the only module with SQL. Owns the r2d2 Postgres pool and every query,
//! one file per family of queries, each with its own `impl Store` block:
//! `schema` (schema check and apply at start-up), `watch` (watch list and
//! inventory reads), `pending` (sightings waiting out their grace period),
//! `alerts` (alert rows: insert and dedupe, resolution, retention), `delivery`
//! (delivery state, leases, the redelivery sweep) and `coverage` (the last good
//! CT log list, per-log positions, backfill claims). This file is the plumbing
//! they share: the pool and connection setup, statements prepared per
//! connection, the retry on a closed connection, the breaker, the errors; `tls`
//! holds the TLS configuration of the connections (encrypt-only, or verifying
//! the server certificate as `sslmode=verify-ca|verify-full` ask).
//!
//! Called from the `pipeline` thread (start-up, the drain), the workers and the
//! grace thread (inventory, pending sightings, alert rows), the `deliver-N`
//! threads (delivery state), the timer thread (watch list, inventory, sweep,
//! cleanup) and the backfill thread (coverage state).
//! Connections go back to the pool after each call;
//! none is held across anything but its own query.

mod alerts;
mod coverage;
mod delivery;
mod pending;
mod schema;
mod tls;
mod watch;

pub use alerts::{AlertRow, ResolutionCandidate};
pub use coverage::{LogFrontier, LogPosition};
pub use delivery::{Claimed, FIRST_DELIVERY_LEASE};
pub use schema::SCHEMA;

use r2d2_postgres::PostgresConnectionManager;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

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
    /// The DSN's `sslrootcert` file cannot be read or holds no CA certificate
    /// (config checks it first: only a file changed since, or a caller that
    /// skips `Config`, meets this).
    RootCerts(crate::config::RootCertError),
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
            StoreError::RootCerts(e) => write!(f, "{e}"),
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
    /// The server requires TLS (or refuses it), or the TLS handshake failed
    /// for a reason other than those below.
    Tls(String),
    /// The server answered the TLS request with no: `sslmode=require`,
    /// `verify-ca` and `verify-full` never go on unencrypted.
    NoServerTls,
    /// The server certificate does not chain to a trusted root (`sslrootcert`,
    /// or the system roots): rustls' `UnknownIssuer`.
    UnknownCa(String),
    /// The server certificate is not valid for the host name (or IP address)
    /// connected to (`verify-full`); says which name and the names it has.
    WrongHostName(String),
    /// The server certificate was refused for another reason (expired, not
    /// yet valid, not for server use, malformed).
    BadCertificate(String),
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
                // The TLS stream reports the handshake's failure as an I/O error
                // holding rustls' error (not as its source).
                if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
                    && let Some(cause) = ConnectCause::of_tls(tls)
                {
                    return cause;
                }
            }
            if let Some(tls) = cause.downcast_ref::<rustls::Error>()
                && let Some(cause) = ConnectCause::of_tls(tls)
            {
                return cause;
            }
            let more = cause.to_string();
            if more == "server does not support TLS" {
                // The postgres crate's words when the server answers `N` to
                // the TLS request at sslmode=require (verify-* included).
                return ConnectCause::NoServerTls;
            }
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

    /// A refused server certificate, by what is wrong with it.
    fn of_tls(e: &rustls::Error) -> Option<ConnectCause> {
        use rustls::CertificateError as C;
        let rustls::Error::InvalidCertificate(problem) = e else {
            return None;
        };
        Some(match problem {
            C::UnknownIssuer => {
                ConnectCause::UnknownCa("its issuer is none of the trusted roots".to_string())
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                ConnectCause::WrongHostName(problem.to_string())
            }
            other => ConnectCause::BadCertificate(other.to_string()),
        })
    }
}

impl fmt::Display for ConnectCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectCause::DatabaseMissing(m) => write!(f, "database does not exist ({m})"),
            ConnectCause::AuthFailed(m) => write!(f, "authentication failed ({m})"),
            ConnectCause::Tls(m) => write!(f, "TLS required or refused ({m})"),
            ConnectCause::NoServerTls => f.write_str(
                "the server does not support TLS: sslmode=require, verify-ca and verify-full \
                 never connect unencrypted (turn on ssl in postgresql.conf, or fix host and port)",
            ),
            ConnectCause::UnknownCa(m) => write!(
                f,
                "server certificate not trusted: unknown CA ({m}: the DSN's sslrootcert \
                 file, or the public web roots with sslrootcert=system and with verify-full \
                 without sslrootcert)"
            ),
            ConnectCause::WrongHostName(m) => write!(
                f,
                "server certificate does not match the host name ({m}): sslmode=verify-full \
                 checks the DSN's host against the certificate"
            ),
            ConnectCause::BadCertificate(m) => write!(f, "server certificate refused ({m})"),
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
    /// validated by `Config` (and read again here, with libpq's TLS options
    /// translated: `config::PostgresDsn`); TLS is rustls, the server certificate
    /// checked as its `sslmode` and `sslrootcert` ask (`tls`). The root file is
    /// read now.
    pub fn new(dsn: &str, max_connections: u32) -> Result<Store, StoreError> {
        let crate::config::PostgresDsn { mut config, check } =
            crate::config::PostgresDsn::parse(dsn).map_err(|_| StoreError::InvalidDsn)?;
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
        let tls = MakeRustlsConnect::new(tls::tls_config(&check).map_err(StoreError::RootCerts)?);
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
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

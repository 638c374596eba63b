//! A throwaway PostgreSQL database (`TestDb`): created with `schema.sql` applied, dropped
//! `WITH (FORCE)` when the handle drops; the admin DSN the tests start from
//! (`admin_dsn`, `admin_client`, and DSNs derived from it); and the inventory and
//! alert-table helpers (`Inventory`) on it and on a `TestCluster`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cert::Cert;
use crate::cluster::TestCluster;

/// Admin DSN used when `CERTWATCH_TEST_ADMIN_DSN` is not set.
pub const DEFAULT_ADMIN_DSN: &str = "postgresql://postgres@127.0.0.1:5432/postgres";

/// Bound on connecting to PostgreSQL when the DSN sets no `connect_timeout` of its own.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The repository's `schema.sql`, compiled in.
const SCHEMA: &str = include_str!("../../schema.sql");

static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh database, created from an admin DSN with `schema.sql` applied, and dropped
/// (`WITH (FORCE)`) when the handle drops: one per test ([`TestDb::new`]), or one per
/// run of a demo or benchmark ([`TestDb::create`]).
pub struct TestDb {
    name: String,
    dsn: String,
    admin_dsn: String,
    /// Left in place at drop (`HARNESS_KEEP_DB=1`, demos only).
    keep: bool,
}

// No `Default`: creating a database is a side effect that should be spelled `TestDb::new()`.
#[allow(clippy::new_without_default)]
impl TestDb {
    /// For a test: creates `certwatch_test_<pid>_<counter>_<nanos>` from
    /// `CERTWATCH_TEST_ADMIN_DSN` (default [`DEFAULT_ADMIN_DSN`]) and applies
    /// `schema.sql`. Panics (never skips) if PostgreSQL is unreachable.
    pub fn new() -> TestDb {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "certwatch_test_{}_{}_{}",
            std::process::id(),
            DB_COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        TestDb::create_as("CERTWATCH_TEST_ADMIN_DSN", name, false)
            .unwrap_or_else(|e| panic!("TestDb: {e}"))
    }

    /// For a demo or a benchmark: creates `certwatch_<prefix>_<pid>` from
    /// `HARNESS_ADMIN_DSN` (default [`DEFAULT_ADMIN_DSN`]), first dropping a leftover
    /// of that name, and applies `schema.sql`. With `HARNESS_KEEP_DB=1` the database
    /// is kept at drop, and its DSN printed.
    pub fn create(prefix: &str) -> Result<TestDb, String> {
        let name = format!("certwatch_{prefix}_{}", std::process::id());
        let keep = std::env::var("HARNESS_KEEP_DB").as_deref() == Ok("1");
        TestDb::create_as("HARNESS_ADMIN_DSN", name, keep)
    }

    /// Creates `name` from the admin DSN in the environment variable `admin_var`.
    fn create_as(admin_var: &str, name: String, keep: bool) -> Result<TestDb, String> {
        let admin_dsn = admin_dsn_from(admin_var);
        let dsn = dsn_with_dbname(&admin_dsn, &name);

        let mut admin = pg_connect(&admin_dsn).map_err(|e| {
            format!(
                "cannot connect to PostgreSQL with admin DSN `{admin_dsn}`: {}\n\
                 (start PostgreSQL, or point {admin_var} at a reachable server)",
                pg_err(&e)
            )
        })?;
        // A demo's name (no counter) may be left over from an earlier run of that pid.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .map_err(|e| format!("dropping a leftover {name} failed: {}", pg_err(&e)))?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(|e| format!("CREATE DATABASE \"{name}\" failed: {}", pg_err(&e)))?;
        drop(admin);

        // From here on the database exists: if anything below fails, Drop removes it.
        let db = TestDb {
            name,
            dsn,
            admin_dsn,
            keep,
        };
        db.try_client()?
            .batch_execute(SCHEMA)
            .map_err(|e| format!("applying schema.sql to {} failed: {}", db.name, pg_err(&e)))?;
        log::debug!("TestDb: created {}", db.name);
        Ok(db)
    }

    /// DSN of the test database (the admin DSN with the database name replaced).
    pub fn dsn(&self) -> &str {
        &self.dsn
    }

    /// Name of the test database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to the test database on each call.
    pub fn client(&self) -> postgres::Client {
        self.try_client().unwrap_or_else(|e| panic!("TestDb: {e}"))
    }

    /// A new connection to the test database, or why not.
    pub fn try_client(&self) -> Result<postgres::Client, String> {
        pg_connect(&self.dsn).map_err(|e| {
            format!(
                "cannot connect to test database with DSN `{}`: {}",
                self.dsn,
                pg_err(&e)
            )
        })
    }

    /// Runs `sql` (one or more statements) with `batch_execute`; panics with the SQL on error.
    pub fn execute(&self, sql: &str) {
        if let Err(e) = self.client().batch_execute(sql) {
            panic!(
                "TestDb::execute failed on {}: {}\nSQL:\n{sql}",
                self.name,
                pg_err(&e)
            );
        }
    }

    /// Marks `fqdns` as watched:
    /// `INSERT INTO public.intent_current(fqdn) VALUES ... ON CONFLICT DO NOTHING`.
    pub fn watch(&self, fqdns: &[&str]) {
        if fqdns.is_empty() {
            return;
        }
        let placeholders: Vec<String> = (1..=fqdns.len()).map(|i| format!("(${i})")).collect();
        let sql = format!(
            "INSERT INTO public.intent_current(fqdn) VALUES {} ON CONFLICT DO NOTHING",
            placeholders.join(", ")
        );
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = fqdns
            .iter()
            .map(|f| f as &(dyn postgres::types::ToSql + Sync))
            .collect();
        if let Err(e) = self.client().execute(sql.as_str(), &params) {
            panic!(
                "TestDb::watch({fqdns:?}) failed on {}: {}\nSQL: {sql}",
                self.name,
                pg_err(&e)
            );
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.keep {
            println!("HARNESS_KEEP_DB=1: keeping database {}", self.name);
            println!("  POSTGRES_DSN={}", self.dsn);
            return;
        }
        // Never panic here: a panic while already unwinding would abort the whole test binary.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        match pg_connect(&self.admin_dsn) {
            Ok(mut admin) => match admin.batch_execute(&sql) {
                Ok(()) => log::debug!("TestDb: dropped {}", self.name),
                Err(e) => eprintln!("TestDb: `{sql}` failed: {}", pg_err(&e)),
            },
            Err(e) => eprintln!(
                "TestDb: cannot reconnect to admin DSN `{}` to drop {}: {}",
                self.admin_dsn,
                self.name,
                pg_err(&e)
            ),
        }
    }
}

/// The admin DSN from the environment variable `var`, else [`DEFAULT_ADMIN_DSN`].
fn admin_dsn_from(var: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_DSN.to_string())
}

/// The admin DSN the tests create their databases with: `CERTWATCH_TEST_ADMIN_DSN`,
/// else [`DEFAULT_ADMIN_DSN`]. Tests that need the server itself (another database
/// name, another role, `ALTER DATABASE`) start from it, never from a literal address.
pub fn admin_dsn() -> String {
    admin_dsn_from("CERTWATCH_TEST_ADMIN_DSN")
}

/// A new connection with [`admin_dsn`]; panics naming the DSN if it fails.
pub fn admin_client() -> postgres::Client {
    let dsn = admin_dsn();
    pg_connect(&dsn).unwrap_or_else(|e| {
        panic!(
            "cannot connect to PostgreSQL with admin DSN `{dsn}`: {}",
            pg_err(&e)
        )
    })
}

/// `e` and its whole `source()` chain (postgres' Display alone hides the cause, e.g. ECONNREFUSED
/// or the server's error text).
pub fn pg_err(e: &postgres::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Connects without TLS, with a connect timeout unless the DSN sets one.
fn pg_connect(dsn: &str) -> Result<postgres::Client, postgres::Error> {
    let mut config: postgres::Config = dsn.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(PG_CONNECT_TIMEOUT);
    }
    config.connect(postgres::NoTls)
}

/// Replaces the database name of a URL DSN (`postgres[ql]://…/db?…`) or appends
/// `dbname=` to a key/value DSN (the last occurrence wins).
pub fn dsn_with_dbname(dsn: &str, dbname: &str) -> String {
    let dsn = dsn.trim();
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = dsn.strip_prefix(scheme) {
            let (before_query, query) = match rest.find('?') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = before_query.split('/').next().unwrap_or("");
            return format!("{scheme}{authority}/{dbname}{query}");
        }
    }
    format!("{dsn} dbname={dbname}")
}

/// Replaces the user and password of a URL DSN (`postgres[ql]://user:pw@host…`) or
/// appends `user=` and `password=` to a key/value DSN (the last occurrence wins).
/// `password` must be URL-safe (no `@`, `/`, `:`, `%`).
pub fn dsn_with_login(dsn: &str, user: &str, password: &str) -> String {
    let dsn = dsn.trim();
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = dsn.strip_prefix(scheme) {
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            return format!("{scheme}{user}:{password}@{host}{path}");
        }
    }
    format!("{dsn} user={user} password={password}")
}

/// `dsn` with a password in it, and that password: its own if it has one, else
/// `fallback` added for its user (which trust authentication ignores). For tests
/// that check a DSN's password is never shown.
pub fn dsn_with_password(dsn: &str, fallback: &str) -> (String, String) {
    let config: postgres::Config = dsn
        .parse()
        .unwrap_or_else(|e| panic!("`{dsn}` is not a DSN: {e}"));
    match config.get_password() {
        Some(password) => (
            dsn.to_string(),
            String::from_utf8_lossy(password).into_owned(),
        ),
        None => {
            let user = config.get_user().unwrap_or("postgres");
            (dsn_with_login(dsn, user, fallback), fallback.to_string())
        }
    }
}

/// Inventory and alert-table helpers on a test database (or cluster).
pub trait Inventory {
    /// A new connection to the database.
    fn connect(&self) -> postgres::Client;

    /// Adds `cert` to `public.certs` as the final certificate upstream issued.
    fn inventory(&self, cert: &Cert) {
        let sans = serde_json::to_string(&cert.names).unwrap();
        self.connect()
            .execute(
                "INSERT INTO public.certs (fingerprint_sha1, serial, sans, not_before, not_after, source, added_at)
                 VALUES ($1, $2, $3::text::jsonb, $4, $5, 'test', extract(epoch from now())::bigint)",
                &[&cert.fingerprint, &cert.serial.to_ascii_lowercase(), &sans, &cert.not_before, &cert.not_after],
            )
            .expect("inventory insert");
    }

    /// Every alert row, by id.
    fn alerts(&self) -> Vec<AlertRow> {
        self.connect()
            .query(
                "SELECT severity, delivered, attempts, delivery_id, matched_sans, fingerprint_sha1, last_error
                   FROM public.alerts ORDER BY id",
                &[],
            )
            .expect("alerts query")
            .iter()
            .map(|r| AlertRow {
                severity: r.get(0),
                delivered: r.get(1),
                attempts: r.get(2),
                delivery_id: r.get(3),
                matched_sans: r.get(4),
                fingerprint_sha1: r.get(5),
                last_error: r.get(6),
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub severity: String,
    pub delivered: bool,
    pub attempts: i32,
    pub delivery_id: String,
    pub matched_sans: Vec<String>,
    pub fingerprint_sha1: Option<String>,
    pub last_error: Option<String>,
}

impl Inventory for TestDb {
    fn connect(&self) -> postgres::Client {
        self.client()
    }
}

impl Inventory for TestCluster {
    fn connect(&self) -> postgres::Client {
        self.client()
    }
}

//! TLS to Postgres that verifies (`sslmode=verify-ca`, `verify-full`,
//! `sslrootcert`): a throwaway cluster serving TLS with a certificate from a test
//! CA, reached through the real `Store`; the failures named by `ConnectCause`;
//! a server without TLS never reached unencrypted; an unreadable root file
//! stopping the binary at start-up.

use certwatch::store::{ConnectCause, Store, StoreError};
use certwatch_testkit::cluster::TestCluster;
use std::path::{Path, PathBuf};

/// A test CA, its certificate written to `ca.pem` in a temporary directory.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    file: PathBuf,
}

/// A temporary directory of this test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("certwatch-pg-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let file = dir.join(format!("{name}.pem"));
        std::fs::write(&file, issuer.pem()).unwrap();
        Ca { issuer, file }
    }

    /// A server certificate for `names` (DNS names or IP addresses) and its key, PEM.
    fn server_cert(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A cluster serving TLS with a certificate `ca` issued for localhost and 127.0.0.1.
fn tls_cluster(ca: &Ca) -> TestCluster {
    let (cert, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
    TestCluster::start_with_tls(&cert, &key)
}

/// Why a store on `dsn` cannot reach the database.
fn failure(dsn: &str) -> ConnectCause {
    let store = Store::new(dsn, 1).expect("the DSN parses");
    match store.ping() {
        Ok(()) => panic!("connected: {dsn}"),
        Err(StoreError::Unavailable(Some(cause))) => cause,
        Err(other) => panic!("{dsn}: {other}"),
    }
}

/// How many of certwatch's connections (its application name) use TLS, as the
/// server sees them.
fn certwatch_tls_connections(cluster: &TestCluster) -> i64 {
    cluster
        .client()
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'certwatch' AND s.ssl",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn verify_full_with_the_right_ca_and_host_name_connects() {
    let dir = TempDir::new("full");
    let ca = Ca::new(&dir.0, "certwatch-test-ca");
    let cluster = tls_cluster(&ca);
    let root = ca.file.display();
    for dsn in [
        // A DNS name in the URL form…
        format!(
            "postgresql://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={root}",
            cluster.port
        ),
        // …an IP address in the key=value form, quoted and spaced as libpq allows.
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode = 'verify-full' \
             sslrootcert='{root}'",
            cluster.port
        ),
    ] {
        let store = Store::new(&dsn, 2).expect("store");
        store.ensure_schema().expect("the schema over verified TLS");
        store.ping().expect("ping");
        assert!(
            certwatch_tls_connections(&cluster) >= 1,
            "the store's connections use TLS: {dsn}"
        );
    }
}

#[test]
fn verify_ca_ignores_the_host_name_verify_full_refuses_a_wrong_one() {
    let dir = TempDir::new("names");
    let ca = Ca::new(&dir.0, "certwatch-test-ca");
    let cluster = tls_cluster(&ca);
    let root = ca.file.display();
    // `hostaddr` connects to the cluster; `host` is the name TLS checks, one the
    // certificate does not have.
    let dsn = |mode: &str| {
        format!(
            "host=db.wrong.example hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
             sslmode={mode} sslrootcert={root}",
            cluster.port
        )
    };
    let store = Store::new(&dsn("verify-ca"), 1).expect("store");
    store
        .ping()
        .expect("verify-ca: the chain is checked, not the host name");
    assert!(certwatch_tls_connections(&cluster) >= 1);

    match failure(&dsn("verify-full")) {
        ConnectCause::WrongHostName(m) => assert!(m.contains("db.wrong.example"), "{m}"),
        other => panic!("{other:?}"),
    }
    // An IP address is checked against the certificate's IP addresses.
    let (cert, key) = ca.server_cert(&["localhost"]);
    let named_only = TestCluster::start_with_tls(&cert, &key);
    let cause = failure(&format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={root}",
        named_only.port
    ));
    assert!(matches!(cause, ConnectCause::WrongHostName(_)), "{cause:?}");
    let line = cause.to_string();
    assert!(
        line.contains("127.0.0.1") && line.contains("does not match the host name"),
        "{line}"
    );
}

#[test]
fn a_server_certificate_from_another_ca_is_refused() {
    let dir = TempDir::new("ca");
    let ca = Ca::new(&dir.0, "certwatch-test-ca");
    let other = Ca::new(&dir.0, "another-ca");
    let cluster = tls_cluster(&ca);
    let url = |query: &str| {
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres?{query}",
            cluster.port
        )
    };
    let other_root = other.file.display();
    for dsn in [
        url(&format!("sslmode=verify-full&sslrootcert={other_root}")),
        url(&format!("sslmode=verify-ca&sslrootcert={other_root}")),
        // As libpq: require with a root file checks the chain.
        url(&format!("sslmode=require&sslrootcert={other_root}")),
        // The system roots (explicit, or verify-full's default) do not hold a test CA.
        url("sslrootcert=system"),
        url("sslmode=verify-full&sslrootcert=system"),
        url("sslmode=verify-full"),
    ] {
        let cause = failure(&dsn);
        assert!(
            matches!(cause, ConnectCause::UnknownCa(_)),
            "{dsn}: {cause:?}"
        );
        let line = cause.to_string();
        assert!(
            line.contains("not trusted") && line.contains("unknown CA"),
            "{line}"
        );
    }
    // Unverified TLS still connects, as before.
    let store = Store::new(&url("sslmode=require"), 1).expect("store");
    store.ping().expect("require without sslrootcert");
}

#[test]
fn verify_modes_never_fall_back_to_a_server_without_tls() {
    let dir = TempDir::new("plain");
    let ca = Ca::new(&dir.0, "certwatch-test-ca");
    let cluster = TestCluster::start();
    let root = ca.file.display();
    for mode in ["verify-ca", "verify-full", "require"] {
        let cause = failure(&format!(
            "postgresql://postgres@127.0.0.1:{}/postgres?sslmode={mode}&sslrootcert={root}",
            cluster.port
        ));
        assert_eq!(cause, ConnectCause::NoServerTls, "{mode}");
        assert!(
            cause.to_string().contains("does not support TLS"),
            "{cause}"
        );
    }
    assert_eq!(
        certwatch_tls_connections(&cluster) + plain_certwatch_connections(&cluster),
        0,
        "nothing connected"
    );
}

fn plain_certwatch_connections(cluster: &TestCluster) -> i64 {
    cluster
        .client()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'certwatch'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// The binary stops at start-up (exit 2) on a root file it cannot use, naming
/// the file and never the DSN or its password; it never reaches the database.
#[test]
fn an_unusable_sslrootcert_stops_start_up_naming_the_file() {
    let dir = TempDir::new("exit");
    let junk = dir.0.join("not-a-cert.pem");
    std::fs::write(&junk, "hello\n").unwrap();
    let missing = dir.0.join("missing.pem");
    for file in [&missing, &junk] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_certwatch"))
            .env_clear()
            .env(
                "POSTGRES_DSN",
                format!(
                    "postgresql://u:hunter2@127.0.0.1:1/db?sslmode=verify-full&sslrootcert={}",
                    file.display()
                ),
            )
            .env("CT_LOG_LIST", "off")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", file.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("sslrootcert={}", file.display())),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(!stderr.contains("127.0.0.1:1"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

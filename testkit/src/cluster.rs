//! A throwaway PostgreSQL cluster of a test's own (`TestCluster`): `initdb` into a
//! temporary directory and `pg_ctl` on a spare loopback port, run as the
//! `postgres` user when the tests run as root, so a test can stop and restart
//! the database under a running service; `start_with_tls` serves TLS with a
//! certificate of the test's choosing. Dropped: stopped and deleted.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct TestCluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// Started with `ssl=on` and the certificate in `server.crt`/`server.key`.
    tls: bool,
}

static N: AtomicUsize = AtomicUsize::new(0);

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// The newest installed PostgreSQL's `bin` directory.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

impl TestCluster {
    /// Creates and starts a cluster; panics (never skips) when it cannot.
    pub fn start() -> TestCluster {
        TestCluster::start_with(None)
    }

    /// `start`, serving TLS (`ssl=on`) with this certificate chain and private
    /// key (PEM). Clients may still connect without TLS (`host` lines in
    /// pg_hba.conf).
    pub fn start_with_tls(cert_chain_pem: &str, key_pem: &str) -> TestCluster {
        TestCluster::start_with(Some((cert_chain_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> TestCluster {
        let dir = std::env::temp_dir().join(format!(
            "certwatch-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(dir.join("server.crt"), cert).unwrap();
            let key_file = dir.join("server.key");
            std::fs::write(&key_file, key).unwrap();
            // Postgres refuses a key file others may read; the chown below makes
            // the server's user its owner.
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let cluster = TestCluster {
            dir,
            bin: pg_bin(),
            port,
            tls: tls.is_some(),
        };
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster.dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown of the cluster directory failed");
        }
        let data = cluster.dir.join("data");
        cluster.run(&[
            cluster.bin.join("initdb").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        ]);
        cluster.pg_ctl_start();
        cluster
    }

    /// `args` as a command, run as `postgres` when we are root.
    fn command(args: &[&str]) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).args(args);
            c
        } else {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    }

    fn run(&self, args: &[&str]) {
        let out = Self::command(args)
            .output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl_start(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.dir.display()
        );
        if self.tls {
            options += &format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                self.dir.display()
            );
        }
        self.run(&[
            self.bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            self.dir.join("data").to_str().unwrap(),
            "-o",
            &options,
            "-l",
            self.dir.join("log").to_str().unwrap(),
            "-w",
            "start",
        ]);
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        self.run(&[
            self.bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            self.dir.join("data").to_str().unwrap(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]);
    }

    /// Starts it again after `stop`.
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    pub fn dsn(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Applies schema.sql and adds watch entries.
    pub fn prepare(&self, watch: &[&str]) {
        let mut client = postgres::Client::connect(&self.dsn(), postgres::NoTls).unwrap();
        client
            .batch_execute(include_str!("../../schema.sql"))
            .unwrap();
        for fqdn in watch {
            client
                .execute(
                    "INSERT INTO public.intent_current (fqdn) VALUES ($1)",
                    &[fqdn],
                )
                .unwrap();
        }
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.dsn(), postgres::NoTls).unwrap()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let _ = Self::command(&[
            pg_ctl.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ])
        .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! The `certwatch` binary as an operator runs it: exit codes for bad config,
//! SIGTERM and `certwatch healthcheck`.

use crate::support::{FakeFeed, TestDb, wait_until};
use std::process::{Command, Stdio};
use std::time::Duration;

fn certwatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwatch"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.stdin(Stdio::null());
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn bad_config_exits_non_zero_with_one_line_naming_the_variable() {
    for (var, value) in [
        ("WEBHOOK_TIMEOUT_S", "abc"),
        ("API_PORT", "99999"),
        ("CERTSTREAM_URL", "http://x"),
        ("LOG_LEVEL", "shout"),
    ] {
        let out = certwatch()
            .env("POSTGRES_DSN", "postgresql://u:hunter2@127.0.0.1:1/db")
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(var), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    let out = certwatch().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("POSTGRES_DSN"));
}

#[test]
fn a_whsec_secret_the_standard_webhooks_libraries_cannot_decode_stops_start_up() {
    for (var, value) in [
        ("WEBHOOK_SECRET", "whsec_url-safe_c2VjcmV0"),
        ("WEBHOOK_SECRET", "whsec_not base64 at all!"),
        ("WEBHOOK_SECRET_PREVIOUS", "whsec_c2VjcmV0="),
    ] {
        let mut child = certwatch()
            .env("POSTGRES_DSN", "postgresql://u:pw@127.0.0.1:1/db")
            .env("WEBHOOK_SECRET", "whsec_c2VjcmV0LWtleQ==")
            .env("API_PORT", "0")
            .env(var, value)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Accepted, it would start and retry the unreachable database forever.
        let exited = wait_until(Duration::from_secs(5), || {
            child.try_wait().unwrap().is_some()
        });
        if !exited {
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(exited, "{var}={value} was accepted");
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(var), "{stderr}");
        assert!(
            !stderr.contains(&value[6..14]),
            "the secret is echoed: {stderr}"
        );
    }
}

#[test]
fn sigterm_drains_and_exits_zero_and_healthcheck_follows_the_service() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    let port = free_port().to_string();
    let healthcheck = || {
        certwatch()
            .arg("healthcheck")
            .env("API_PORT", &port)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(healthcheck(), Some(1), "nothing listens yet");
    let mut child = certwatch()
        .env("POSTGRES_DSN", db.dsn())
        .env("CERTSTREAM_URL", feed.url())
        .env("API_PORT", &port)
        .env("LOG_LEVEL", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || healthcheck() == Some(0)),
        "healthcheck never passed"
    );
    assert!(feed.wait_for_client(Duration::from_secs(10)));
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut status = None;
    assert!(wait_until(Duration::from_secs(15), || {
        status = child.try_wait().unwrap();
        status.is_some()
    }));
    assert_eq!(status.unwrap().code(), Some(0));
    assert_eq!(healthcheck(), Some(1), "the service is gone");
}

#[test]
fn sigterm_under_load_records_everything_and_exits_zero_in_bounded_time() {
    use crate::support::service::{Cert, Inventory};
    use crate::support::{FakeWebhook, FeedCmd};
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    let hook = FakeWebhook::start();
    hook.script(&[500; 50]);
    let port = free_port().to_string();
    let mut child = certwatch()
        .env("POSTGRES_DSN", db.dsn())
        .env("CERTSTREAM_URL", feed.url())
        .env("WEBHOOK_URL", hook.url())
        .env("API_PORT", &port)
        .env("SUSPICIOUS_GRACE_S", "600")
        .env("LOG_LEVEL", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(feed.wait_for_client(Duration::from_secs(15)));
    let known: Vec<Cert> = (0..2)
        .map(|i| Cert::new(&[&format!("known{i}.example.com")]))
        .collect();
    for cert in &known {
        db.inventory(cert);
        feed.send(FeedCmd::Text(cert.frame()));
    }
    for i in 0..5 {
        feed.send(FeedCmd::Text(
            Cert::new(&[&format!("waiting{i}.example.com")]).frame(),
        ));
    }
    for _ in 0..2000 {
        feed.send(FeedCmd::Text(Cert::new(&["noise.example.org"]).frame()));
    }
    // The two known certificates are in delivery (failing, so retrying).
    assert!(wait_until(Duration::from_secs(10), || hook.count() >= 2));
    let started = std::time::Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(45), || {
            status = child.try_wait().unwrap();
            status.is_some()
        }),
        "exits within the drain bound"
    );
    assert_eq!(status.unwrap().code(), Some(0));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(40), "{took:?}");
    let rows = db.alerts();
    assert_eq!(
        rows.len(),
        7,
        "every matched certificate is recorded: {rows:?}"
    );
    assert_eq!(rows.iter().filter(|r| r.severity == "info").count(), 2);
    assert_eq!(
        rows.iter().filter(|r| r.severity == "suspicious").count(),
        5
    );
}

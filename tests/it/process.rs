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

//! The `certwatch` binary as an operator runs it: exit codes for bad config,
//! SIGTERM and `certwatch healthcheck`. Every child process is waited on with a
//! deadline (`kit::child`): a binary that hangs fails its test, naming the command.

use crate::kit::child::{self, Child};
use crate::kit::{FakeFeed, TestDb, wait_until};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long a command that only reads its configuration or arguments may take.
const QUICK: Duration = Duration::from_secs(10);
/// How long a service given SIGTERM at rest may take to stop.
const STOP: Duration = Duration::from_secs(15);

/// The binary with only PATH from the environment and no standard input.
pub(crate) fn certwatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwatch"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Never the internet from a test.
        .env("CT_LOG_LIST", "off");
    cmd.stdin(Stdio::null());
    cmd
}

/// A loopback port nothing listens on (at the time of asking).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary serving `db` from `feed` on API port `port`, logging warnings
/// and worse to nowhere; tests add their own settings.
fn serving(db: &TestDb, feed: &FakeFeed, port: &str) -> Command {
    let mut cmd = certwatch();
    cmd.env("POSTGRES_DSN", db.dsn())
        .env("CERTSTREAM_URL", feed.url())
        .env("API_PORT", port)
        .env("LOG_LEVEL", "warn")
        .stderr(Stdio::null());
    cmd
}

#[test]
fn bad_config_exits_non_zero_with_one_line_naming_the_variable() {
    for (var, value) in [
        ("WEBHOOK_TIMEOUT_S", "abc"),
        ("API_PORT", "99999"),
        ("CERTSTREAM_URL", "http://x"),
        ("LOG_LEVEL", "shout"),
    ] {
        let out = child::run(
            certwatch()
                .env("POSTGRES_DSN", "postgresql://u:hunter2@127.0.0.1:1/db")
                .env(var, value),
            QUICK,
        );
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(var), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    let out = child::run(&mut certwatch(), QUICK);
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
        // Accepted, it would start and retry the unreachable database forever:
        // the deadline kills it and fails the test.
        let out = child::run(
            certwatch()
                .env("POSTGRES_DSN", "postgresql://u:pw@127.0.0.1:1/db")
                .env("WEBHOOK_SECRET", "whsec_c2VjcmV0LWtleQ==")
                .env("API_PORT", "0")
                .env(var, value),
            QUICK,
        );
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
        child::run(certwatch().arg("healthcheck").env("API_PORT", &port), QUICK)
            .status
            .code()
    };
    assert_eq!(healthcheck(), Some(1), "nothing listens yet");
    let mut service = Child::spawn(&mut serving(&db, &feed, &port));
    assert!(
        wait_until(Duration::from_secs(15), || healthcheck() == Some(0)),
        "healthcheck never passed"
    );
    assert!(feed.wait_for_client(Duration::from_secs(10)));
    assert_eq!(service.terminate(STOP).code(), Some(0));
    assert_eq!(healthcheck(), Some(1), "the service is gone");
}

#[test]
fn sigterm_under_load_records_everything_and_exits_zero_in_bounded_time() {
    use crate::kit::{Cert, Inventory};
    use crate::kit::{FakeWebhook, FeedCmd};
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    let hook = FakeWebhook::start();
    hook.script(&[500; 50]);
    let port = free_port().to_string();
    let mut service = Child::spawn(
        serving(&db, &feed, &port)
            .env("WEBHOOK_URL", hook.url())
            .env("SUSPICIOUS_GRACE_S", "600"),
    );
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
    // The drain bound (30 s) with a margin; past it the service is killed and the
    // test fails.
    assert_eq!(service.terminate(Duration::from_secs(45)).code(), Some(0));
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

/// Runs `certwatch` with `vars`, collecting stderr lines until `until` holds for
/// one of them or `timeout` passes; then stops the process. Returns the lines.
fn stderr_until(
    vars: &[(&str, &str)],
    timeout: Duration,
    until: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut cmd = certwatch();
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let (mut service, rx) = Child::spawn_with_stderr_lines(cmd.stdout(Stdio::null()));
    let deadline = std::time::Instant::now() + timeout;
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = until(&line);
                lines.push(line);
                if done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    // SIGTERM, so that the service removes its private socket directory.
    service.terminate(STOP);
    lines
}

#[test]
fn help_and_version_exit_zero_and_start_nothing() {
    let port = free_port().to_string();
    // A reachable database, so that a flag taken for `serve` would start the
    // service: the deadline then kills it and fails the test.
    let dsn = crate::kit::db::admin_dsn();
    for flag in ["--help", "-h", "help"] {
        let out = child::run(
            certwatch()
                .arg(flag)
                .env("POSTGRES_DSN", &dsn)
                .env("API_PORT", &port),
            QUICK,
        );
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        for word in ["Usage", "healthcheck", "version", "POSTGRES_DSN", "README"] {
            assert!(stdout.contains(word), "{flag}: no {word} in {stdout}");
        }
        assert!(
            out.stderr.is_empty(),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = child::run(
        certwatch()
            .args(["healthcheck", "--help"])
            .env("API_PORT", &port),
        QUICK,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    for flag in ["-V", "--version", "version"] {
        let out = child::run(certwatch().arg(flag), QUICK);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("certwatch {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn unknown_or_extra_arguments_exit_two_with_the_usage_line() {
    for args in [
        &["--verbose"][..],
        &["healthcheck", "now"],
        &["serve", "extra"],
        &["-V", "x"],
    ] {
        let out = child::run(certwatch().args(args), QUICK);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("usage: certwatch"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn config_errors_never_echo_url_credentials_or_tokens() {
    for (var, value) in [
        (
            "WEBHOOK_URL",
            "ftp://alice:pa55word@hooks.example/hook-SECRETPATH?token=T0KEN",
        ),
        (
            "CERTSTREAM_URL",
            "https://bob:hunter3@feed.example/stream?key=K3Y",
        ),
    ] {
        let out = child::run(
            certwatch()
                .env("POSTGRES_DSN", "postgresql://u:hunter2@127.0.0.1:1/db")
                .env(var, value),
            QUICK,
        );
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(var), "{stderr}");
        for secret in [
            "alice",
            "pa55word",
            "SECRETPATH",
            "T0KEN",
            "bob",
            "hunter3",
            "K3Y",
            "hunter2",
        ] {
            assert!(!stderr.contains(secret), "{secret} in {stderr}");
        }
    }
}

#[test]
fn a_database_that_does_not_exist_is_named_as_the_cause() {
    let missing = format!("certwatch_missing_{}", std::process::id());
    let server = crate::kit::db::admin_dsn();
    let (dsn, password) = crate::kit::db::dsn_with_password(
        &crate::kit::db::dsn_with_dbname(&server, &missing),
        "pw-not-shown",
    );
    let port = free_port().to_string();
    let lines = stderr_until(
        &[("POSTGRES_DSN", &dsn), ("API_PORT", &port)],
        Duration::from_secs(20),
        |l| l.contains("does not exist"),
    );
    let line = lines.iter().find(|l| l.contains("does not exist"));
    let line = line.unwrap_or_else(|| panic!("no cause in {lines:#?}"));
    assert!(line.contains(&missing), "{line}");
    assert!(lines.iter().all(|l| !l.contains(&password)), "{lines:#?}");
    // Logged once while the cause stays the same, not at every retry.
    let refused = stderr_until(
        &[
            ("POSTGRES_DSN", "postgresql://postgres@127.0.0.1:1/db"),
            ("API_PORT", &port),
        ],
        Duration::from_secs(5),
        |_| false,
    );
    let causes: Vec<_> = refused
        .iter()
        .filter(|l| l.contains("connection refused"))
        .collect();
    assert_eq!(causes.len(), 1, "{refused:#?}");
}

#[test]
fn a_port_in_use_is_one_line_naming_the_variables() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let db = TestDb::new();
    let out = child::run(
        certwatch()
            .env("POSTGRES_DSN", db.dsn())
            .env("API_PORT", &port),
        QUICK,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("API_HOST:API_PORT"), "{stderr}");
}

#[test]
fn an_empty_watch_list_and_inventory_are_warned_about() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    let port = free_port().to_string();
    let lines = stderr_until(
        &[
            ("POSTGRES_DSN", db.dsn()),
            ("CERTSTREAM_URL", &feed.url()),
            ("API_PORT", &port),
        ],
        Duration::from_secs(20),
        |l| l.contains("inventory (public.certs) is empty"),
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("watch list is empty")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("public.certs) is empty")),
        "{lines:#?}"
    );
}

/// At every level, including the dependencies' DEBUG and TRACE records (ureq logs
/// each POST's URL, tungstenite the feed's request line), no secret is logged.
#[test]
fn no_secret_in_the_log_even_at_trace() {
    use crate::kit::Cert;
    use crate::kit::{FakeWebhook, FeedCmd};
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    let hook = FakeWebhook::start();
    let port = free_port().to_string();
    let webhook_url = format!("{}-SECRETPATH?token=T0KEN", hook.url());
    let feed_url = format!("{}?key=FEEDK3Y", feed.url());
    let mut cmd = certwatch();
    cmd.env("POSTGRES_DSN", db.dsn())
        .env("CERTSTREAM_URL", &feed_url)
        .env("WEBHOOK_URL", &webhook_url)
        .env("WEBHOOK_SECRET", "whsec_c2lnbmluZy1rZXktU0lHTktFWQ==")
        .env("API_PORT", &port)
        .env("SUSPICIOUS_GRACE_S", "0")
        .env("LOG_LEVEL", "trace");
    let service = Child::spawn(cmd.stderr(Stdio::piped()).stdout(Stdio::null()));
    assert!(feed.wait_for_client(Duration::from_secs(15)));
    feed.send(FeedCmd::Text(Cert::new(&["www.example.com"]).frame()));
    assert!(
        hook.recv(Duration::from_secs(15)).is_some(),
        "the alert was delivered"
    );
    service.signal("TERM");
    let out = service.wait_with_output(STOP);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("TRACE"), "the test ran at TRACE");
    assert!(log.contains("ureq"), "ureq's own records are in the log");
    for secret in [
        "SECRETPATH",
        "T0KEN",
        "FEEDK3Y",
        "c2lnbmluZy1rZXktU0lHTktFWQ",
    ] {
        let line = log.lines().find(|l| l.contains(secret));
        assert!(line.is_none(), "{secret} logged: {line:?}");
    }
}

/// SIGKILL while certificates wait out their grace period loses none of them:
/// each was saved when first matched, and the next start settles, records and
/// delivers them.
#[test]
fn sigkill_during_the_grace_period_loses_no_sighting() {
    use crate::kit::{Cert, Inventory};
    use crate::kit::{FakeWebhook, FeedCmd};
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    let hook = FakeWebhook::start();
    let spawn = || {
        Child::spawn(
            serving(&db, &feed, &free_port().to_string())
                .env("WEBHOOK_URL", hook.url())
                .env("SUSPICIOUS_GRACE_S", "4"),
        )
    };
    let pending = || -> i64 {
        db.client()
            .query_one("SELECT count(*) FROM public.certwatch_pending", &[])
            .unwrap()
            .get(0)
    };
    let mut first = spawn();
    assert!(feed.wait_for_client(Duration::from_secs(15)));
    for i in 0..3 {
        feed.send(FeedCmd::Text(
            Cert::new(&[&format!("waiting{i}.example.com")]).frame(),
        ));
    }
    assert!(wait_until(Duration::from_secs(10), || pending() == 3));
    first.kill(); // SIGKILL
    assert_eq!(hook.count(), 0, "nothing was due yet");
    assert!(db.alerts().is_empty());
    let mut second = spawn();
    assert!(
        wait_until(Duration::from_secs(20), || db.alerts().len() == 3
            && db.alerts().iter().all(|a| a.delivered)),
        "every sighting recorded and delivered after the restart: {:?}",
        db.alerts()
    );
    assert_eq!(hook.count(), 3);
    assert!(db.alerts().iter().all(|a| a.severity == "suspicious"));
    assert_eq!(pending(), 0);
    assert_eq!(second.terminate(STOP).code(), Some(0));
}

/// SIGHUP re-reads the watch list (and inventory) at once and never stops the
/// process.
#[test]
fn sighup_reloads_the_watch_list_without_stopping() {
    use crate::kit::Cert;
    use crate::kit::{FakeWebhook, FeedCmd};
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    let hook = FakeWebhook::start();
    let port = free_port();
    let mut service = Child::spawn(
        serving(&db, &feed, &port.to_string())
            .env("WEBHOOK_URL", hook.url())
            .env("SUSPICIOUS_GRACE_S", "0")
            .env("WATCH_REFRESH_INTERVAL_S", "3600"),
    );
    assert!(feed.wait_for_client(Duration::from_secs(15)));
    let entries = || {
        let (_, body) =
            crate::kit::probe::request(&format!("http://127.0.0.1:{port}/metrics"), "GET");
        crate::kit::probe::metric_value(&body, "certwatch_watch_entries")
    };
    assert!(
        wait_until(Duration::from_secs(10), || entries() == Some(1.0)),
        "the first watch list was never loaded: {:?}",
        entries()
    );
    db.watch(&["example.net"]);
    service.signal("HUP");
    // The refresh it asks for is the positive signal (the next periodic one is an
    // hour away).
    assert!(
        wait_until(Duration::from_secs(10), || entries() == Some(2.0)),
        "SIGHUP did not reload the watch list: {:?} entries; exited: {:?}",
        entries(),
        service.try_status()
    );
    feed.send(FeedCmd::Text(Cert::new(&["new.example.net"]).frame()));
    let rx = hook.recv(Duration::from_secs(10));
    assert!(
        rx.is_some(),
        "the entry added before SIGHUP matches at once"
    );
    assert_eq!(service.try_status(), None, "SIGHUP stopped the process");
    assert_eq!(service.terminate(STOP).code(), Some(0));
}

#[test]
fn a_target_that_can_never_work_exits_two_with_one_line() {
    // Loopback refused by WEBHOOK_DENY_PRIVATE: no restart can fix that.
    // Accepted, it would retry the unreachable database forever: the deadline
    // kills it and fails the test.
    let out = child::run(
        certwatch()
            .env("POSTGRES_DSN", "postgresql://u:pw@127.0.0.1:1/db")
            .env("API_PORT", "0")
            .env(
                "WEBHOOK_URL",
                "http://127.0.0.1:9/hook-s3cretpath?token=t0ken",
            )
            .env("WEBHOOK_DENY_PRIVATE", "true"),
        QUICK,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("WEBHOOK_DENY_PRIVATE") && stderr.contains("loopback"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret") && !stderr.contains("t0ken"),
        "{stderr}"
    );

    // More targets than threads certwatch starts for them.
    let urls: Vec<String> = (0..17)
        .map(|i| format!("https://h{i}.example/s3cret"))
        .collect();
    let out = child::run(
        certwatch()
            .env("POSTGRES_DSN", "postgresql://u:pw@127.0.0.1:1/db")
            .env("WEBHOOK_URL", urls.join(",")),
        QUICK,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("WEBHOOK_URL") && stderr.contains("16"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// An alert whose delivery was in flight when the process was SIGKILLed is sent
/// again within seconds of the restart, not when its five-minute lease ends: the
/// restarted instance takes back its own leases.
#[test]
fn a_restarted_instance_reclaims_its_own_delivery_leases() {
    use crate::kit::{Cert, FakeWebhook, FeedCmd, Inventory};
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let feed = FakeFeed::start();
    let hook = FakeWebhook::start();
    let port = free_port().to_string();
    let spawn = || {
        Child::spawn(
            serving(&db, &feed, &port)
                .env("WEBHOOK_URL", hook.url())
                .env("SUSPICIOUS_GRACE_S", "0")
                .env("WEBHOOK_TIMEOUT_S", "30")
                .env("REDELIVERY_INTERVAL_S", "1"),
        )
    };
    hook.hang(true);
    let mut first = spawn();
    assert!(feed.wait_for_client(Duration::from_secs(15)));
    feed.send(FeedCmd::Text(Cert::new(&["inflight.example.com"]).frame()));
    assert!(wait_until(Duration::from_secs(10), || db.alerts().len() == 1));
    assert!(
        wait_until(Duration::from_secs(10), || hook.count() >= 1),
        "in flight"
    );
    first.kill(); // SIGKILL while the receiver holds the request
    hook.hang(false);
    let started = std::time::Instant::now();
    let mut second = spawn();
    assert!(
        wait_until(Duration::from_secs(30), || db.alerts()[0].delivered),
        "redelivered after the restart"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(second.terminate(STOP).code(), Some(0));
}

/// A stage that dies (a panic injected as it starts, debug builds only) stops the
/// service: the others drain and the process exits 1 naming the stage, instead of
/// running on with a part missing (`/healthz` alone would say so).
#[test]
fn a_dead_stage_drains_the_others_and_exits_one() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    for stage in [
        "feed",
        "worker-0",
        "grace",
        "deliver-1",
        "timer",
        "http-guard",
    ] {
        let port = free_port().to_string();
        let mut cmd = serving(&db, &feed, &port);
        cmd.env("CERTWATCH_TEST_PANIC_STAGE", stage)
            .env("WEBHOOK_URL", "http://127.0.0.1:9/hook")
            .stderr(Stdio::piped());
        let out = Child::spawn(&mut cmd).wait_with_output(Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stage}: {stderr}");
        assert!(stderr.contains(stage), "{stage} is not named: {stderr}");
    }
}

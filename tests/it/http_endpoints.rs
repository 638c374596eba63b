//! `/healthz` and `/metrics` content, routing and methods.

use crate::kit::Cert;
use crate::kit::probe::{metric_value, request};
use crate::kit::service;
use crate::kit::{FakeFeed, FeedCmd, TestDb, wait_until};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn healthz_reports_the_fixed_keys_and_the_operator_fields() {
    let db = TestDb::new();
    db.watch(&["example.com", "example.org", "*.example.net"]);
    let feed = FakeFeed::start();
    let svc = service::start(&db, &feed, None, &[]);
    assert!(feed.wait_for_client(WAIT));
    assert!(wait_until(WAIT, || {
        let (_, body) = svc.get("/healthz");
        body.contains(r#""feed_connected":true"#)
    }));
    let (status, body) = svc.get("/healthz");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["watch_entries"], 3);
    assert_eq!(json["last_ct_event_at"], serde_json::Value::Null);
    assert_eq!(json["database_reachable"], true);
    assert_eq!(json["feed_stale"], false);
    assert_eq!(json["dead_threads"], serde_json::json!([]));

    feed.send(FeedCmd::Text(Cert::new(&["unrelated.test"]).frame()));
    assert!(wait_until(WAIT, || {
        let (_, body) = svc.get("/healthz");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["last_ct_event_at"]
            .as_i64()
            .is_some_and(|t| t > 1_700_000_000)
    }));
}

#[test]
fn metrics_expose_every_series_and_routing_is_strict() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    let svc = service::start(&db, &feed, None, &[]);
    let (status, body) = svc.get("/metrics");
    assert_eq!(status, 200);
    for series in [
        r#"certwatch_ct_messages_total{type="certificate_update"}"#,
        r#"certwatch_alerts_total{severity="info"}"#,
        r#"certwatch_alerts_total{severity="suspicious"}"#,
        r#"certwatch_webhook_total{result="success"}"#,
        r#"certwatch_webhook_total{result="failure"}"#,
        "certwatch_webhook_duration_seconds_count",
        "certwatch_watch_entries",
        "certwatch_last_ct_event_timestamp_seconds",
        "certwatch_ws_connected",
        "certwatch_dedupe_cache_size",
        "certwatch_ct_messages_dropped_total",
        "certwatch_ct_parse_errors_total",
        "certwatch_ws_reconnects_total",
        "certwatch_webhook_gave_up_total",
        r#"certwatch_queue_depth{queue="workers"}"#,
        "process_resident_memory_bytes",
    ] {
        assert!(
            metric_value(&body, series).is_some(),
            "missing {series} in\n{body}"
        );
    }
    assert!(body.contains("# TYPE certwatch_webhook_duration_seconds histogram"));
    let base = format!("http://{}", svc.addr);
    assert_eq!(request(&format!("{base}/nope"), "GET").0, 404);
    assert_eq!(request(&format!("{base}/"), "GET").0, 404);
    assert_eq!(request(&format!("{base}/healthz"), "POST").0, 405);
    assert_eq!(request(&format!("{base}/metrics"), "DELETE").0, 405);
    assert_eq!(request(&format!("{base}/healthz?verbose=1"), "GET").0, 200);
}

#[test]
fn healthz_answers_while_the_database_is_unreachable() {
    let feed = FakeFeed::start();
    let db = TestDb::new();
    // Point the service at a port where no Postgres listens.
    let dead_dsn = "postgresql://postgres@127.0.0.1:1/none";
    let svc = service::start(&db, &feed, None, &[("POSTGRES_DSN", dead_dsn)]);
    let (status, body) = svc.get("/healthz");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["database_reachable"], false);
    assert_eq!(json["feed_connected"], false);
    let took = svc.stop();
    assert!(
        took < Duration::from_secs(5),
        "shutdown during the start-up retry took {took:?}"
    );
}

#[test]
fn feed_stale_is_true_as_soon_as_the_feed_is_down() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    // FEED_SILENCE_S keeps its default (120 s): staleness must not wait for it.
    let svc = service::start(&db, &feed, None, &[]);
    let healthz = || -> serde_json::Value { serde_json::from_str(&svc.get("/healthz").1).unwrap() };
    assert!(wait_until(WAIT, || healthz()["feed_connected"] == true));
    assert_eq!(healthz()["feed_stale"], false);
    drop(feed);
    assert!(wait_until(WAIT, || healthz()["feed_connected"] == false));
    assert_eq!(healthz()["feed_stale"], true, "{}", healthz());
}

/// Every series the README's metrics table documents, one per documented label
/// value (a histogram by its `_count`). A per-log metric (first label `log`, one
/// series per log of the trusted list, none without one) is documented by its
/// name: `"<name>{log="`.
fn documented_series() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let mut series = Vec::new();
    // The metrics table is in "HTTP endpoints"; other tables (Database) name
    // certwatch_ tables, not metrics.
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("HTTP endpoints"))
        .expect("the README's HTTP endpoints section");
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 6 {
            continue;
        }
        let (name, kind, labels) = (cells[1], cells[2], cells[3]);
        let Some(name) = name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) else {
            continue;
        };
        if !(name.starts_with("certwatch_") || name.starts_with("process_")) {
            continue;
        }
        assert!(
            ["counter", "gauge", "histogram"].contains(&kind),
            "README row {name}: type {kind:?}"
        );
        let name = if kind == "histogram" {
            format!("{name}_count")
        } else {
            name.to_string()
        };
        if labels == "—" {
            series.push(name);
            continue;
        }
        let names = ticked(labels);
        let (label, values) = names.split_first().expect("a label name");
        if label == "log" {
            series.push(format!("{name}{{log="));
            continue;
        }
        assert!(
            !values.is_empty(),
            "README row {name}: no values for {label}"
        );
        for value in values {
            series.push(format!("{name}{{{label}=\"{value}\"}}"));
        }
    }
    series
}

#[test]
fn metrics_at_start_up_have_every_series_the_readme_documents() {
    let documented = documented_series();
    assert!(
        documented.len() > 30,
        "README metrics table not found: {documented:?}"
    );
    let db = TestDb::new();
    let feed = FakeFeed::start();
    let svc = service::start(&db, &feed, None, &[]);
    let (_, body) = svc.get("/metrics");
    let missing: Vec<&String> = documented
        .iter()
        .filter(|s| !s.ends_with("{log="))
        .filter(|s| metric_value(&body, s).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "not exported at start-up: {missing:?}\n{body}"
    );
    // And nothing certwatch exports is left out of the README.
    let undocumented: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("certwatch_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series))
        .filter(|s| !s.contains("_bucket{") && !s.ends_with("_sum") && !s.contains("_sum{"))
        .filter(|s| {
            !documented
                .iter()
                .any(|d| d == s || (d.ends_with("{log=") && s.starts_with(d.as_str())))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in the README: {undocumented:?}"
    );
}

#[test]
fn process_cpu_seconds_are_fractional() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    let svc = service::start(&db, &feed, None, &[]);
    let cpu = || {
        let stat = procfs::process::Process::myself().unwrap().stat().unwrap();
        (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
    };
    // Spin until this process's CPU time is well inside a second, so a value
    // truncated to whole seconds is at least 0.3 s off.
    let mut spin = 0u64;
    let mut before;
    loop {
        before = cpu();
        if (0.3..0.7).contains(&before.fract()) {
            break;
        }
        for i in 0..100_000u64 {
            spin = spin.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
    }
    std::hint::black_box(spin);
    let reported = svc.metric("process_cpu_seconds_total");
    let after = cpu();
    // The sample was read between the two readings of the same clock: within
    // them, not a tolerance around one; and above the whole second below `before`,
    // where a value truncated to whole seconds would be.
    assert!(
        before - 1e-9 <= reported && reported <= after + 1e-9,
        "process_cpu_seconds_total {reported}, CPU time {before} just before and {after} just after"
    );
    assert!(
        reported > before.floor(),
        "process_cpu_seconds_total {reported} is whole seconds (CPU time {before})"
    );
}

/// Sends `raw` on a fresh connection and reads the whole answer (closed by the server).
fn raw_exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(raw).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn head_http_1_0_and_malformed_requests_go_through_the_guard_to_tiny_http() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    let svc = service::start(&db, &feed, None, &[]);
    // HEAD: the status and headers of GET, no body; the connection is closed.
    let head = raw_exchange(svc.addr, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "a body after HEAD: {head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let head = raw_exchange(svc.addr, b"HEAD /nope HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    // HTTP/1.0 with bare line feeds.
    let old = raw_exchange(svc.addr, b"GET /healthz HTTP/1.0\n\n");
    assert!(old.starts_with("HTTP/1.0 200"), "{old}");
    assert!(old.contains(r#""ok":true"#), "{old}");
    // Pipelined requests: only the first is answered.
    let two = raw_exchange(
        svc.addr,
        b"GET /healthz HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n",
    );
    assert_eq!(two.matches("HTTP/1.1 ").count(), 1, "{two}");
    // A request line tiny_http cannot parse: its 400.
    let bad = raw_exchange(svc.addr, b"NONSENSE\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
}

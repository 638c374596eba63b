//! Per-log lag from the feed (issue 13): the real pipeline with a `FakeFeed` whose
//! certificate messages name three listed `FakeCtLog`s, one in each dialect of the
//! log's timestamp: certstream-server-go's `source.timestamp` (an hour old),
//! certstream-server-rust's `submission_timestamp` (fresh) and none at all (Elixir,
//! with an old `seen`, which is not the log's time). `certwatch_ct_log_lag_seconds`
//! and `/healthz` `coverage.logs_lagging` must tell the old log apart.

use crate::kit::ctlog::{self, FakeCtLog};
use crate::kit::feed::FeedCmd;
use crate::kit::service;
use crate::kit::wait::wait_until;
use crate::kit::{FakeFeed, TestDb};
use std::time::Duration;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A certificate message of entry `index` of the log at `url`, with `data` fields
/// (`source` and the timestamps) of one dialect merged in.
fn frame(url: &str, index: u64, data: serde_json::Value) -> String {
    let mut frame = ctlog::unwatched_frame(url, index);
    for (key, value) in data.as_object().expect("an object") {
        frame["data"][key] = value.clone();
    }
    frame.to_string()
}

#[test]
fn a_log_whose_feed_entries_are_an_hour_old_is_lagging_in_healthz_and_the_metric() {
    let db = TestDb::new();
    db.watch(&["watched.example"]);
    let feed = FakeFeed::start();
    let (go, rust, elixir) = (
        FakeCtLog::start(Vec::new()),
        FakeCtLog::start(Vec::new()),
        FakeCtLog::start(Vec::new()),
    );
    let list = ctlog::list_file("lag", &[&go, &rust, &elixir], false);
    let svc = service::start_covered(&db, &feed, None, &list, &[]);
    let coverage = || {
        let (status, body) = svc.get("/healthz");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("healthz json");
        v["coverage"].clone()
    };
    let lag = |log: &FakeCtLog| {
        svc.metric(&format!(
            "certwatch_ct_log_lag_seconds{{log=\"{}\"}}",
            log.url()
        ))
    };
    assert!(wait_until(
        Duration::from_secs(10),
        || coverage()["enabled"] == true
    ));
    assert_eq!(coverage()["logs_lagging"], 0);

    let hour_ago = now() - 3600.0;
    for index in 0..5u64 {
        let go_ts = hour_ago + index as f64;
        feed.send(FeedCmd::Text(frame(
            &go.url(),
            index,
            serde_json::json!({"source": {"name": "go", "url": go.url(),
                "timestamp": go_ts, "type": "rfc6962"}, "seen": now()}),
        )));
        feed.send(FeedCmd::Text(frame(
            &rust.url(),
            index,
            serde_json::json!({"submission_timestamp": now() - 2.0, "seen": now()}),
        )));
        feed.send(FeedCmd::Text(frame(
            &elixir.url(),
            index,
            serde_json::json!({"seen": now() - 7200.0}),
        )));
    }
    // Hostile timestamps are no timestamps, and the entries still count: a day
    // ahead of the clock, a string, a negative number.
    for (index, ts) in [
        (5u64, serde_json::json!(now() + 86_400.0)),
        (6, serde_json::json!("soon")),
        (7, serde_json::json!(-1)),
    ] {
        feed.send(FeedCmd::Text(frame(
            &go.url(),
            index,
            serde_json::json!({"source": {"url": go.url(), "timestamp": ts}}),
        )));
    }
    let go_seen = || {
        svc.metric(&format!(
            "certwatch_ct_log_entries_seen_total{{log=\"{}\"}}",
            go.url()
        ))
    };
    // Every frame counted (the hostile ones too), all three logs seen.
    assert!(
        wait_until(Duration::from_secs(10), || go_seen() == 8.0
            && coverage()["logs_seen"] == 3),
        "{} entries of the go log, {}",
        go_seen(),
        coverage()
    );
    assert!(
        wait_until(Duration::from_secs(5), || coverage()["logs_lagging"] == 1),
        "{}",
        coverage()
    );
    let go_lag = lag(&go);
    assert!((3590.0..3700.0).contains(&go_lag), "go lag {go_lag}");
    assert!(lag(&rust) <= 60.0, "rust lag {}", lag(&rust));
    assert_eq!(lag(&elixir), 0.0, "no lag invented from `seen`");

    // A fresh entry of the old log: it is not behind any more.
    feed.send(FeedCmd::Text(frame(
        &go.url(),
        8,
        serde_json::json!({"source": {"url": go.url(), "timestamp": now()}}),
    )));
    assert!(
        wait_until(Duration::from_secs(10), || coverage()["logs_lagging"] == 0),
        "{}",
        coverage()
    );
    assert!(lag(&go) <= 60.0, "go lag {}", lag(&go));
}

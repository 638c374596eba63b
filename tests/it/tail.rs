//! Tailing CT logs directly (`CT_SOURCE=logs` and `both`, issue 19): the real
//! pipeline against `FakeCtLog`s over real HTTP whose heads are signed with the key
//! the list names, and whose Merkle trees, proofs and tiles the kit builds from the
//! RFC 6962 and C2SP texts, independently of `certwatch::ctlog`.

use crate::kit::ctlog::{FakeCtLog, FakeEntry, ListFile, fixture_entries, log_list_mixed};
use crate::kit::service::{self, Running};
use crate::kit::wait::wait_until;
use crate::kit::{FakeFeed, FakeWebhook, Received, TestDb};
use certwatch::ctlog::LogKind;
use certwatch::ctlog::client::{ClientConfig, LogClient};
use certwatch::ctlog::entry::{self, LogSource};
use certwatch::ctlog::merkle::{self, CompactRange};
use certwatch::ctlog::tiles::{self, DataTile};
use certwatch::ctlog::tree_head::LogKey;
use std::time::Duration;

/// The fixture entry under the watched name, and the others.
const WATCHED: &str = "tiny.example.com";

fn fixtures() -> (FakeEntry, Vec<FakeEntry>) {
    let (watched, others): (Vec<_>, Vec<_>) = fixture_entries()
        .into_iter()
        .partition(|(_, line)| line.contains(&format!("\"{WATCHED}\"")));
    (
        watched[0].0.clone(),
        others.into_iter().map(|(e, _)| e).collect(),
    )
}

/// `n` unwatched entries (the fixtures' others in turn), each with a timestamp of
/// its own so that no two leaves are alike.
fn unwatched(n: usize) -> Vec<FakeEntry> {
    let (_, others) = fixtures();
    let base = 1_768_000_000_000 + rand_offset();
    (0..n)
        .map(|i| {
            let mut e = others[i % others.len()].clone();
            e.timestamp_ms = base + i as u64;
            e
        })
        .collect()
}

/// A different millisecond offset per call, so that entries appended later differ
/// from the first ones.
fn rand_offset() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1_000_000, Ordering::Relaxed)
}

/// The fake log's heads, proofs and tiles, read with certwatch's client, check out
/// with certwatch's verifiers: both are written from the specifications, apart.
#[test]
fn the_fake_logs_signed_heads_proofs_and_tiles_check_out() {
    let log = FakeCtLog::start(unwatched(700));
    let key = LogKey::from_spki(&log.public_key()).expect("a P-256 key");
    for kind in [LogKind::Rfc6962, LogKind::Tiled] {
        let mut client =
            LogClient::new(&format!("{}/", log.url()), kind, &ClientConfig::default()).unwrap();
        let head = client.tree_head(&key).expect("a head that verifies");
        assert_eq!(head.tree_size, 700);
        assert_eq!(head.root_hash, log.root(700, kind == LogKind::Tiled));
        // The entries' leaf hashes, pushed into a compact range, give the signed root.
        let source = LogSource {
            url: "x",
            name: "x",
            kind,
        };
        let mut range = CompactRange::new();
        match kind {
            LogKind::Rfc6962 => {
                let mut at = 0;
                while at < 700 {
                    let body = client.get_entries(at, 699).unwrap();
                    let page =
                        entry::page_from_get_entries(&body, at, (700 - at) as usize, &source)
                            .unwrap();
                    for e in &page {
                        range.push(e.leaf_hash.expect("base64"));
                    }
                    at += page.len() as u64;
                }
                // The last leaf's inclusion proof gives the frontier; a consistency
                // proof ties an older size to the head.
                let last = *range.hashes().last().unwrap();
                let _ = last;
                let body = client.get_entries(699, 699).unwrap();
                let leaf = entry::page_from_get_entries(&body, 699, 1, &source).unwrap()[0]
                    .leaf_hash
                    .unwrap();
                let (index, path) = client.proof_by_hash(&leaf, 700).unwrap();
                assert_eq!(index, 699);
                let recovered = CompactRange::from_last_leaf_proof(700, leaf, &path).unwrap();
                assert_eq!(recovered.root(), head.root_hash);
                let proof = client.consistency(300, 700).unwrap();
                assert!(merkle::verify_consistency(
                    300,
                    700,
                    &log.root(300, false),
                    &head.root_hash,
                    &proof
                ));
            }
            LogKind::Tiled => {
                for tile in tiles::data_tiles(0..700, 700) {
                    let body = client.data_tile(tile).unwrap();
                    for e in entry::page_from_tile(&body.body, body.tile, &source).unwrap() {
                        range.push(e.leaf_hash.unwrap());
                    }
                }
                let from_tiles = CompactRange::from_tiles(700, |t| client.hash_tile(t))
                    .unwrap()
                    .unwrap();
                assert_eq!(from_tiles.root(), head.root_hash);
                assert_eq!(from_tiles, range);
                let _ = DataTile::full(0);
            }
        }
        assert_eq!(range.root(), head.root_hash, "{kind:?}");
    }
    // A bad signature, by switch, does not verify.
    log.misbehave(|m| m.bad_signature = true);
    let mut client = LogClient::new(
        &format!("{}/", log.url()),
        LogKind::Tiled,
        &ClientConfig::default(),
    )
    .unwrap();
    assert!(client.tree_head(&key).is_err());
}

/// A service in `CT_SOURCE=logs` with no certstream server at all, tailing `logs`
/// (each named as an RFC 6962 log, or as a static-ct log when its flag says so);
/// the list file lives as long as the service.
fn start_logs(
    db: &TestDb,
    hook: &FakeWebhook,
    logs: &[(&FakeCtLog, bool)],
    name: &str,
) -> (Running, ListFile) {
    start_logs_with(db, hook, logs, name, &[])
}

/// [`start_logs`] with these settings besides.
fn start_logs_with(
    db: &TestDb,
    hook: &FakeWebhook,
    logs: &[(&FakeCtLog, bool)],
    name: &str,
    extra: &[(&str, &str)],
) -> (Running, ListFile) {
    let listed: Vec<(&FakeCtLog, bool, &str)> = logs
        .iter()
        .map(|(log, tiled)| (*log, *tiled, "Test"))
        .collect();
    let list = ListFile::write(name, &log_list_mixed(&listed));
    // No feed: the service must not need one. The URL names a port nobody listens on.
    let nowhere = FakeFeed::start();
    let mut settings = vec![
        ("CT_SOURCE", "logs"),
        ("CT_LOG_LIST", list.to_str().unwrap()),
        ("SUSPICIOUS_GRACE_S", "0"),
        ("CT_CONTACT", "certwatch-tests@example.test"),
    ];
    settings.extend_from_slice(extra);
    let svc = service::start(db, &nowhere, Some(hook), &settings);
    assert_eq!(nowhere.connections(), 0, "CT_SOURCE=logs reads no feed");
    (svc, list)
}

/// The log's verified size as the service publishes it (none before the list is in).
fn verified(svc: &Running, log: &FakeCtLog) -> Option<u64> {
    let (_, body) = svc.get("/metrics");
    crate::kit::probe::metric_value(
        &body,
        &format!("certwatch_ct_log_verified_size{{log=\"{}\"}}", log.url()),
    )
    .map(|v| v as u64)
}

/// The alerts the webhook received within `within`, as JSON bodies.
fn alerts(hook: &FakeWebhook, within: Duration) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let until = std::time::Instant::now() + within;
    while let Some(r) = hook.recv(until.saturating_duration_since(std::time::Instant::now())) {
        let Received { .. } = &r;
        out.push(r.json());
    }
    out
}

#[test]
fn an_entry_appended_to_a_tailed_log_is_alerted_from_the_log_with_no_feed() {
    for tiled in [false, true] {
        let db = TestDb::new();
        db.watch(&[WATCHED]);
        let hook = FakeWebhook::start();
        let log = FakeCtLog::start(unwatched(300));
        let name = if tiled { "tail-tiled" } else { "tail-rfc" };
        let (svc, _list) = start_logs(&db, &hook, &[(&log, tiled)], name);
        // First sight: reading starts at the head (300), verified.
        assert!(
            wait_until(Duration::from_secs(20), || verified(&svc, &log)
                == Some(300)),
            "the head was not verified ({})",
            if tiled { "tiled" } else { "RFC 6962" }
        );
        // The frontier at that head came from the log and was checked against its
        // signed root: the last leaf's inclusion proof, or the hash tiles.
        if tiled {
            assert!(log.hits("tile/0/") + log.hits("tile/1/") > 0);
            assert_eq!(log.hits("ct/v1/get-proof-by-hash"), 0);
        } else {
            assert_eq!(log.hits("ct/v1/get-proof-by-hash"), 1);
        }
        let (watched, _) = fixtures();
        let mut more = unwatched(19);
        more.insert(7, watched);
        log.append(more);
        log.publish();
        let first = hook
            .recv(Duration::from_secs(30))
            .expect("the appended watched entry is alerted");
        assert_eq!(first.json()["detected_via"], "log", "{}", first.json());
        // The position moves to the new head once the entries are shown to be its.
        assert!(wait_until(Duration::from_secs(20), || verified(&svc, &log)
            == Some(320)));
        // ... and is saved, with the compact range of those 320 entries.
        assert!(wait_until(Duration::from_secs(20), || {
            db.client()
                .query_one(
                    "SELECT tree_size, root_hash FROM public.certwatch_log_frontiers",
                    &[],
                )
                .map(|r| {
                    r.get::<_, i64>(0) == 320
                        && r.get::<_, Vec<u8>>(1) == log.root(320, tiled).to_vec()
                })
                .unwrap_or(false)
        }));
        // Every entry was read and handed over before the position moved: one alert.
        let more = alerts(&hook, Duration::ZERO);
        assert!(more.is_empty(), "{more:?}");
        // No feed is read, so none is stale, and the feed alerts are told so.
        let (_, body) = svc.get("/healthz");
        let health: serde_json::Value = serde_json::from_str(&body).expect("healthz is JSON");
        assert_eq!(health["feed_stale"], false, "{health}");
        let (_, body) = svc.get("/metrics");
        assert_eq!(
            crate::kit::probe::metric_value(&body, "certwatch_feed_enabled"),
            Some(0.0)
        );
        drop(svc);
    }
}

/// The log's verification failures of `reason`, as counted.
fn failures(svc: &Running, log: &FakeCtLog, reason: &str) -> f64 {
    let (_, body) = svc.get("/metrics");
    crate::kit::probe::metric_value(
        &body,
        &format!(
            "certwatch_ct_log_verification_failures_total{{log=\"{}\",reason=\"{reason}\"}}",
            log.url()
        ),
    )
    .unwrap_or(0.0)
}

fn healthz_coverage(svc: &Running) -> serde_json::Value {
    let (_, body) = svc.get("/healthz");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["coverage"].clone()
}

/// One issuance logged in an RFC 6962 log and in a tiled log is one alert.
#[test]
fn the_same_certificate_in_an_rfc6962_and_a_tiled_log_is_one_alert() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let hook = FakeWebhook::start();
    let (rfc, tiled) = (
        FakeCtLog::start(unwatched(10)),
        FakeCtLog::start(unwatched(10)),
    );
    let (svc, _list) = start_logs(&db, &hook, &[(&rfc, false), (&tiled, true)], "one-alert");
    assert!(wait_until(Duration::from_secs(20), || verified(&svc, &rfc)
        == Some(10)
        && verified(&svc, &tiled) == Some(10)));
    let (watched, _) = fixtures();
    for log in [&rfc, &tiled] {
        log.append(vec![watched.clone()]);
        log.publish();
    }
    let first = hook.recv(Duration::from_secs(30)).expect("alerted");
    assert_eq!(first.json()["detected_via"], "log");
    // Both logs read past it (the tiled one after its partial tile waited): no
    // second alert.
    assert!(wait_until(Duration::from_secs(30), || verified(&svc, &rfc)
        == Some(11)
        && verified(&svc, &tiled) == Some(11)));
    assert!(alerts(&hook, Duration::ZERO).is_empty());
    let rows: i64 = db
        .client()
        .query_one("SELECT count(*) FROM public.alerts", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

/// Each misbehaviour of a log is flagged (ERROR, the counter by reason, the log in
/// `/healthz` `coverage.logs_failing_verification`), its position does not move,
/// and no certificate read is lost: a watched one among the entries is alerted.
/// A 429 with Retry-After is waited out, counted as `rate_limited`, not a failure.
#[test]
fn each_misbehaviour_is_flagged_and_no_alert_is_lost() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let hook = FakeWebhook::start();
    let logs: Vec<FakeCtLog> = (0..5).map(|_| FakeCtLog::start(unwatched(50))).collect();
    let [swapped, signature, shrink, split, throttled] = &logs[..] else {
        unreachable!()
    };
    let named: Vec<(&FakeCtLog, bool)> = logs
        .iter()
        .enumerate()
        .map(|(i, l)| (l, i % 2 == 1))
        .collect();
    let (svc, _list) = start_logs(&db, &hook, &named, "misbehave");
    assert!(wait_until(Duration::from_secs(30), || logs
        .iter()
        .all(|l| verified(&svc, l) == Some(50))));
    let (watched, _) = fixtures();
    // An entry swapped under an unchanged root: the watched certificate is served at
    // index 52 in place of what the tree holds there.
    swapped.misbehave(|m| {
        m.swapped.insert(52, watched.clone());
    });
    swapped.append(unwatched(10));
    swapped.publish();
    // Heads that do not verify; a head that shrinks; a second root for one size.
    signature.misbehave(|m| m.bad_signature = true);
    shrink.misbehave(|m| m.head_size = Some(40));
    split.misbehave(|m| m.split_view = true);
    // A 429 with Retry-After on the next requests, then entries to read.
    throttled.throttle_next(3, 429, Some("2"));
    throttled.append(unwatched(5));
    throttled.publish();
    for (log, reason) in [
        (swapped, "root_mismatch"),
        (signature, "signature"),
        (shrink, "shrink"),
        (split, "split_view"),
    ] {
        assert!(
            wait_until(Duration::from_secs(30), || failures(&svc, log, reason)
                >= 1.0),
            "{reason} not flagged"
        );
        assert_eq!(
            verified(&svc, log),
            Some(50),
            "{reason}: the position stays"
        );
    }
    assert!(wait_until(Duration::from_secs(10), || healthz_coverage(
        &svc
    )["logs_failing_verification"]
        == 4));
    // The swapped-in certificate was read, so it is alerted all the same.
    let got = hook.recv(Duration::from_secs(20)).expect("no alert lost");
    assert_eq!(got.json()["detected_via"], "log");
    // The rate-limited log was waited out and read on, verified, no failure.
    assert!(wait_until(Duration::from_secs(30), || verified(
        &svc, throttled
    ) == Some(55)));
    for reason in [
        "signature",
        "shrink",
        "split_view",
        "root_mismatch",
        "proof",
    ] {
        assert_eq!(failures(&svc, throttled, reason), 0.0, "{reason}");
    }
    let (_, body) = svc.get("/metrics");
    let limited = crate::kit::probe::metric_value(
        &body,
        &format!(
            "certwatch_ct_log_requests_total{{log=\"{}\",outcome=\"rate_limited\"}}",
            throttled.url()
        ),
    )
    .unwrap();
    assert!(limited >= 1.0, "{limited}");
    // Once the swapped log serves its real entries again, its next attempt (after
    // the failure wait) verifies: the failure clears and the position moves on.
    swapped.misbehave(|m| m.swapped.clear());
    assert!(
        wait_until(Duration::from_secs(60), || verified(&svc, swapped)
            == Some(60)),
        "read again and verified"
    );
    assert!(wait_until(Duration::from_secs(10), || healthz_coverage(
        &svc
    )["logs_failing_verification"]
        == 3));
    assert!(
        alerts(&hook, Duration::ZERO).is_empty(),
        "one alert for the swapped-in certificate"
    );
}

/// The log's requests counted with `outcome`.
fn requests(svc: &Running, log: &FakeCtLog, outcome: &str) -> f64 {
    let (_, body) = svc.get("/metrics");
    crate::kit::probe::metric_value(
        &body,
        &format!(
            "certwatch_ct_log_requests_total{{log=\"{}\",outcome=\"{outcome}\"}}",
            log.url()
        ),
    )
    .unwrap_or(0.0)
}

/// A tailed log that answers `get-entries` with a body that does not decode, then
/// with errors, delays only itself: another log is read on meanwhile. Each such
/// answer is counted an `error` (not `ok`), its position stays, a minute of it is
/// not yet `unreachable`, and once it answers again its entries are read from its
/// verified position and the watched one among them is alerted.
#[test]
fn a_log_answering_garbage_or_errors_delays_only_itself_and_is_read_once_it_answers() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let hook = FakeWebhook::start();
    let (good, bad) = (
        FakeCtLog::start(unwatched(100)),
        FakeCtLog::start(unwatched(100)),
    );
    let (svc, _list) = start_logs(&db, &hook, &[(&good, false), (&bad, false)], "garbage");
    assert!(wait_until(Duration::from_secs(30), || verified(
        &svc, &good
    ) == Some(100)
        && verified(&svc, &bad) == Some(100)));
    // A 200 whose body is not get-entries JSON.
    bad.fail_path("ct/v1/get-entries", 200);
    let (watched, _) = fixtures();
    let mut more = unwatched(19);
    more.insert(3, watched);
    bad.append(more);
    bad.publish();
    good.append(unwatched(20));
    good.publish();
    assert!(
        wait_until(Duration::from_secs(20), || requests(&svc, &bad, "error")
            >= 1.0),
        "a body that does not decode is an error"
    );
    // Then plain errors.
    bad.clear_path_failures();
    bad.fail_path("ct/v1/get-entries", 500);
    assert!(
        wait_until(Duration::from_secs(20), || verified(&svc, &good)
            == Some(120)),
        "the other log is read on"
    );
    assert!(wait_until(Duration::from_secs(30), || requests(
        &svc, &bad, "error"
    ) >= 2.0));
    assert_eq!(verified(&svc, &bad), Some(100), "the position stays");
    assert!(alerts(&hook, Duration::ZERO).is_empty());
    assert_eq!(healthz_coverage(&svc)["logs_unreachable"], 0);
    bad.clear_path_failures();
    let got = hook
        .recv(Duration::from_secs(40))
        .expect("read once it answers");
    assert_eq!(got.json()["detected_via"], "log");
    assert!(wait_until(Duration::from_secs(20), || verified(&svc, &bad)
        == Some(120)));
}

/// A log whose head answers but whose entries do not is unreachable once nothing
/// has got through for `CT_LOG_UNREACHABLE_S` (`/healthz`
/// `coverage.logs_unreachable`), and no longer once its entries are read again.
#[test]
fn a_log_whose_entries_keep_failing_is_unreachable_until_they_are_read() {
    let db = TestDb::new();
    let hook = FakeWebhook::start();
    let log = FakeCtLog::start(unwatched(100));
    let (svc, _list) = start_logs_with(
        &db,
        &hook,
        &[(&log, false)],
        "unreachable",
        &[("CT_LOG_UNREACHABLE_S", "3")],
    );
    assert!(wait_until(Duration::from_secs(30), || verified(&svc, &log)
        == Some(100)));
    assert_eq!(healthz_coverage(&svc)["logs_unreachable"], 0);
    log.fail_path("ct/v1/get-entries", 500);
    log.append(unwatched(10));
    log.publish();
    assert!(
        wait_until(
            Duration::from_secs(30),
            || healthz_coverage(&svc)["logs_unreachable"] == 1
        ),
        "its head answers, its entries do not: unreachable"
    );
    assert!(requests(&svc, &log, "ok") >= 2.0, "the heads were read");
    assert_eq!(verified(&svc, &log), Some(100));
    let gauge = format!("certwatch_ct_log_unreachable{{log=\"{}\"}}", log.url());
    assert!(wait_until(Duration::from_secs(5), || svc.metric(&gauge) == 1.0));
    log.clear_path_failures();
    assert!(wait_until(Duration::from_secs(40), || verified(&svc, &log)
        == Some(110)));
    assert!(wait_until(Duration::from_secs(5), || {
        healthz_coverage(&svc)["logs_unreachable"] == 0 && svc.metric(&gauge) == 0.0
    }));
}

/// A restart resumes from the verified position stored in Postgres: nothing below
/// it is read again, and no new frontier is asked for.
#[test]
fn a_restart_resumes_from_the_verified_position_without_reading_again() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let hook = FakeWebhook::start();
    let log = FakeCtLog::start(unwatched(100));
    let (svc, list) = start_logs(&db, &hook, &[(&log, false)], "restart");
    assert!(wait_until(Duration::from_secs(20), || verified(&svc, &log)
        == Some(100)));
    log.append(unwatched(20));
    log.publish();
    assert!(wait_until(Duration::from_secs(20), || verified(&svc, &log)
        == Some(120)));
    drop(svc);
    let (entries, proofs) = (
        log.hits("ct/v1/get-entries"),
        log.hits("ct/v1/get-proof-by-hash"),
    );
    log.append(unwatched(10));
    log.publish();
    let nowhere = FakeFeed::start();
    let svc = service::start(
        &db,
        &nowhere,
        Some(&hook),
        &[
            ("CT_SOURCE", "logs"),
            ("CT_LOG_LIST", list.to_str().unwrap()),
            ("SUSPICIOUS_GRACE_S", "0"),
        ],
    );
    assert!(wait_until(Duration::from_secs(20), || verified(&svc, &log)
        == Some(130)));
    assert_eq!(
        log.hits("ct/v1/get-proof-by-hash"),
        proofs,
        "no new frontier"
    );
    // 120..130 is one page (the log caps batches at 32): one get-entries request.
    assert_eq!(log.hits("ct/v1/get-entries"), entries + 1);
}

/// Two replicas on one database split the logs (each tails its rendezvous share,
/// holding the log's lease), alert an issuance once whoever read it, and when one
/// stops the other takes its logs over from the positions it saved.
#[test]
fn two_replicas_split_the_logs_and_alert_once() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let hook = FakeWebhook::start();
    let logs: Vec<FakeCtLog> = (0..16).map(|_| FakeCtLog::start(unwatched(20))).collect();
    let named: Vec<(&FakeCtLog, bool)> = logs.iter().map(|l| (l, false)).collect();
    let (a, _list_a) = start_logs(&db, &hook, &named, "replica-a");
    let (b, _list_b) = start_logs(&db, &hook, &named, "replica-b");
    let owners = || -> Vec<(String, String)> {
        db.client()
            .query(
                "SELECT log_id, owner FROM public.certwatch_log_leases ORDER BY log_id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    // Each log is read by one replica; both replicas have a share.
    assert!(
        wait_until(Duration::from_secs(60), || {
            let held = owners();
            let distinct: std::collections::BTreeSet<&String> =
                held.iter().map(|(_, o)| o).collect();
            held.len() == 16 && distinct.len() == 2
        }),
        "{:?}",
        owners()
    );
    let read_by = |svc: &Running| logs.iter().filter(|l| verified(svc, l) == Some(20)).count();
    assert!(wait_until(Duration::from_secs(30), || read_by(&a)
        + read_by(&b)
        == 16));
    // One issuance, whoever reads it: one alert.
    let (watched, _) = fixtures();
    for log in &logs[..4] {
        log.append(vec![watched.clone()]);
        log.publish();
    }
    let got = hook.recv(Duration::from_secs(30)).expect("alerted");
    assert_eq!(got.json()["detected_via"], "log");
    assert!(wait_until(Duration::from_secs(30), || logs[..4]
        .iter()
        .all(|l| {
            verified(&a, l) == Some(21) || verified(&b, l) == Some(21)
        })));
    assert!(alerts(&hook, Duration::ZERO).is_empty(), "one alert");
    // Replica a stops: b takes every log over, from the saved positions.
    drop(a);
    for log in &logs {
        log.append(unwatched(3));
        log.publish();
    }
    assert!(
        wait_until(Duration::from_secs(60), || logs.iter().all(|l| {
            let want = if logs[..4].iter().any(|w| std::ptr::eq(w, l)) {
                24
            } else {
                23
            };
            verified(&b, l) == Some(want)
        })),
        "b took the logs over"
    );
    assert!(
        alerts(&hook, Duration::ZERO).is_empty(),
        "nothing alerted again"
    );
}

/// `CT_SOURCE=both`: the feed shortens latency, the log proves coverage; an
/// issuance the feed delivered first is one alert, `detected_via` feed, and the
/// log's copy of it alerts nothing more.
#[test]
fn both_with_the_feed_first_is_one_alert_detected_via_the_feed() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let hook = FakeWebhook::start();
    let feed = FakeFeed::start();
    let log = FakeCtLog::start(unwatched(10));
    let list = ListFile::write("both", &log_list_mixed(&[(&log, false, "Test")]));
    let svc = service::start(
        &db,
        &feed,
        Some(&hook),
        &[
            ("CT_SOURCE", "both"),
            ("CT_LOG_LIST", list.to_str().unwrap()),
            ("SUSPICIOUS_GRACE_S", "0"),
        ],
    );
    assert!(
        feed.wait_for_client(Duration::from_secs(10)),
        "both reads the feed"
    );
    assert!(wait_until(Duration::from_secs(20), || verified(&svc, &log) == Some(10)));
    let (_, line) = fixture_entries()
        .into_iter()
        .find(|(_, line)| line.contains(&format!("\"{WATCHED}\"")))
        .unwrap();
    feed.send(crate::kit::FeedCmd::Text(line));
    let first = hook
        .recv(Duration::from_secs(20))
        .expect("alerted from the feed");
    assert_eq!(first.json()["detected_via"], "feed");
    let (watched, _) = fixtures();
    log.append(vec![watched]);
    log.publish();
    assert!(wait_until(Duration::from_secs(20), || verified(&svc, &log) == Some(11)));
    assert!(alerts(&hook, Duration::ZERO).is_empty(), "one alert");
}

/// The blind spot, in certstream mode: a listed usable log the feed does not
/// deliver while it delivers others (a server that never reads static-ct logs) is
/// named: `/healthz` `coverage.logs_not_on_feed`, `certwatch_ct_log_on_feed` 0.
#[test]
fn a_feed_without_the_tiled_log_makes_it_not_on_feed() {
    let db = TestDb::new();
    db.watch(&[WATCHED]);
    let feed = FakeFeed::start();
    let (rfc, tiled) = (FakeCtLog::start(Vec::new()), FakeCtLog::start(Vec::new()));
    let list = ListFile::write(
        "blind",
        &log_list_mixed(&[(&rfc, false, "Test"), (&tiled, true, "Test")]),
    );
    let svc = service::start_covered(&db, &feed, None, &list, &[("CT_NOT_ON_FEED_S", "3")]);
    let on_feed = |log: &FakeCtLog| {
        let (_, body) = svc.get("/metrics");
        crate::kit::probe::metric_value(
            &body,
            &format!("certwatch_ct_log_on_feed{{log=\"{}\"}}", log.url()),
        )
    };
    // The feed delivers the RFC 6962 log only, for well over the 3 s.
    let mut index = 0u64;
    let delivered = wait_until(Duration::from_secs(30), || {
        for _ in 0..5 {
            feed.send(crate::kit::FeedCmd::Text(
                crate::kit::ctlog::unwatched_frame(&rfc.url(), index).to_string(),
            ));
            index += 1;
        }
        healthz_coverage(&svc)["logs_not_on_feed"] == 1
    });
    assert!(delivered, "{}", healthz_coverage(&svc));
    assert_eq!(on_feed(&tiled), Some(0.0));
    assert_eq!(on_feed(&rfc), Some(1.0));
}

//! Tailing CT logs directly (`CT_SOURCE=logs` and `both`, issue 19): the real
//! pipeline against `FakeCtLog`s over real HTTP whose heads are signed with the key
//! the list names, and whose Merkle trees, proofs and tiles the kit builds from the
//! RFC 6962 and C2SP texts, independently of `certwatch::ctlog`.

use crate::kit::ctlog::{FakeCtLog, FakeEntry, fixture_entries, list_file};
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
/// (`tiled`: named as static-ct logs).
fn start_logs(
    db: &TestDb,
    hook: &FakeWebhook,
    logs: &[&FakeCtLog],
    tiled: bool,
    name: &str,
) -> Running {
    let list = list_file(name, logs, tiled);
    // No feed: the service must not need one. The URL names a port nobody listens on.
    let nowhere = FakeFeed::start();
    let svc = service::start(
        db,
        &nowhere,
        Some(hook),
        &[
            ("CT_SOURCE", "logs"),
            ("CT_LOG_LIST", list.to_str().unwrap()),
            ("SUSPICIOUS_GRACE_S", "0"),
            ("CT_CONTACT", "certwatch-tests@example.test"),
        ],
    );
    assert_eq!(nowhere.connections(), 0, "CT_SOURCE=logs reads no feed");
    svc
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
        let svc = start_logs(&db, &hook, &[&log], tiled, name);
        // First sight: reading starts at the head (300), verified.
        assert!(
            wait_until(Duration::from_secs(20), || verified(&svc, &log)
                == Some(300)),
            "the head was not verified ({})",
            if tiled { "tiled" } else { "RFC 6962" }
        );
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
        drop(svc);
    }
}

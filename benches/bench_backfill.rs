//! `cargo bench --bench bench_backfill`: backfill decoding cost, entries per
//! second on one core, for an RFC 6962 `get-entries` body (JSON, base64, leaf,
//! X.509 -> `Certificate`) and for static-ct data tiles (TileLeaf, X.509 ->
//! `Certificate`). The entries are the feed fixtures' certificates (EC P-256
//! leaves, 1 to 40 names, a third of them precertificates), encoded by the test
//! kit's fake log. Target: at least 20,000 entries/s per core.
//!
//! Then one logged certificate with many SANs (1,500 to 30,000, two thirds of them
//! distinct, as `tests/it/ctlog.rs` builds it; past 10,000 distinct names the lists
//! are capped and the whole set digested): what `entry::to_logged` costs per SAN.
//! Linear when the cost per SAN at the largest is within 2x of that at the
//! smallest (printed LINEAR PASS/FAIL).

use certwatch::ctlog::LogKind;
use certwatch::ctlog::entry::{self, LogSource};
use certwatch::ctlog::tiles::DataTile;
use certwatch_testkit::ctlog as kit;
use std::hint::black_box;
use std::time::{Duration, Instant};

const ENTRIES: usize = 1024;
const RUN: Duration = Duration::from_secs(3);

fn main() {
    let fixtures = kit::fixture_entries();
    let entries: Vec<kit::FakeEntry> = (0..ENTRIES)
        .map(|i| fixtures[i % fixtures.len()].0.clone())
        .collect();
    let body = kit::get_entries_body(&entries);
    let tiles: Vec<(DataTile, Vec<u8>)> = (0..)
        .map(DataTile::full)
        .zip(kit::full_data_tiles(&entries))
        .collect();
    let rfc = LogSource {
        url: "https://ct.example/log",
        name: "bench",
        kind: LogKind::Rfc6962,
    };
    let tiled = LogSource {
        kind: LogKind::Tiled,
        ..rfc
    };
    println!(
        "bench_backfill: {ENTRIES} entries; get-entries body {} KiB, data tiles {} KiB",
        body.len() >> 10,
        tiles.iter().map(|(_, d)| d.len()).sum::<usize>() >> 10
    );

    let rate = measure(|| {
        let certs =
            entry::certificates_from_get_entries(&body, 0, ENTRIES, &rfc).expect("body decodes");
        assert!(certs.iter().all(Result::is_ok));
        black_box(certs).len()
    });
    println!("rfc6962 get-entries -> Certificate: {rate:>9.0} entries/s (one core)");

    let rate = measure(|| {
        let mut n = 0;
        for (tile, data) in &tiles {
            let certs = entry::certificates_from_tile(data, *tile, &tiled).expect("tile decodes");
            assert!(certs.iter().all(Result::is_ok));
            n += black_box(certs).len();
        }
        n
    });
    println!("static-ct data tile  -> Certificate: {rate:>9.0} entries/s (one core)");

    if !many_sans(&rfc) {
        std::process::exit(1);
    }
}

/// `entry::to_logged` of one certificate with many SANs, by SAN count: ns per
/// SAN; whether the cost is linear.
fn many_sans(source: &LogSource<'_>) -> bool {
    println!("\none logged certificate with many SANs -> Certificate (entry::to_logged)");
    println!(
        "{:>8} {:>10} {:>12} {:>10}",
        "SANs", "distinct", "ms", "ns/SAN"
    );
    let mut per_san = Vec::new();
    for distinct in [1_000usize, 4_000, 10_000, 20_000] {
        let names = sans(distinct);
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("names");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "n0.example");
        let key = rcgen::KeyPair::generate().expect("key");
        let der = params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec();
        let logged = kit::FakeEntry::x509(der, vec![], 1_768_478_402_074);
        let (leaf, extra) = (logged.leaf_input(), logged.extra_data());
        let decoded = certwatch::ctlog::rfc6962::decode_leaf(&leaf, &extra).expect("decodes");
        let convert = || entry::to_logged(black_box(&decoded), 3, source).expect("converts");
        // Every distinct name is there to match (every SAN once capped).
        assert!(convert().names().len() >= distinct, "names lost");
        convert();
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            black_box(convert());
            best = best.min(started.elapsed());
        }
        let ns = best.as_nanos() as f64 / names.len() as f64;
        per_san.push(ns);
        println!(
            "{:>8} {distinct:>10} {:>12.2} {ns:>10.1}",
            names.len(),
            best.as_secs_f64() * 1000.0
        );
    }
    let ratio = per_san[per_san.len() - 1] / per_san[0];
    let ok = ratio <= 2.0;
    println!(
        "ns per SAN at 30,000 SANs / at 1,500 = {ratio:.2} (target <= 2): {}",
        if ok { "LINEAR PASS" } else { "LINEAR FAIL" }
    );
    ok
}

/// `distinct - 2` names `n<i>.example`, every other one followed by a repeat of an
/// earlier one, one holding a NUL, and `www.watched.example` last.
fn sans(distinct: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..distinct - 2 {
        names.push(format!("n{i}.example"));
        if i % 2 == 1 {
            names.push(format!("n{}.example", i / 2));
        }
        if i == 10 {
            names.push("nul\0.example".to_string());
        }
    }
    names.push("www.watched.example".to_string());
    names
}

/// Runs `f` (which returns the entries it converted) repeatedly for `RUN`,
/// after one warm-up call; entries per second.
fn measure(mut f: impl FnMut() -> usize) -> f64 {
    f();
    let started = Instant::now();
    let mut entries = 0;
    while started.elapsed() < RUN {
        entries += f();
    }
    entries as f64 / started.elapsed().as_secs_f64()
}

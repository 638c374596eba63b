//! `cargo bench --bench bench_backfill`: backfill decoding cost, entries per
//! second on one core, for an RFC 6962 `get-entries` body (JSON, base64, leaf,
//! X.509 -> `Certificate`) and for static-ct data tiles (TileLeaf, X.509 ->
//! `Certificate`). The entries are the feed fixtures' certificates (EC P-256
//! leaves, 1 to 40 names, a third of them precertificates), encoded by the test
//! kit's fake log. Target: at least 20,000 entries/s per core.

use base64::Engine;
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
    let b64 = base64::engine::general_purpose::STANDARD;
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                r#"{{"leaf_input":"{}","extra_data":"{}"}}"#,
                b64.encode(e.leaf_input()),
                b64.encode(e.extra_data())
            )
        })
        .collect();
    let body = format!(r#"{{"entries":[{}]}}"#, items.join(","));
    let tiles: Vec<(DataTile, Vec<u8>)> = (0..(ENTRIES / 256) as u64)
        .map(|t| {
            let tile = DataTile::full(t);
            let data = (tile.start()..tile.end())
                .flat_map(|i| entries[i as usize].tile_leaf(i))
                .collect();
            (tile, data)
        })
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
        let certs = entry::certificates_from_get_entries(body.as_bytes(), 0, ENTRIES, &rfc)
            .expect("body decodes");
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

//! `cargo bench --bench bench_peek`: what `sources::feed::peek` costs per frame on the
//! workers' hot path, in ns, on one thread: generated full-stream frames (about
//! 9 KB, `FeedGen`), the same frames as a lite stream sends them (no `as_der`, no
//! `chain`), and the feed fixtures of each certstream server. Best of five runs of
//! each set, so a busy neighbour shows as spread, not as a slower peek.

use std::hint::black_box;
use std::time::Instant;

use certwatch_testkit::{FeedGen, FeedGenConfig};

const FRAMES: usize = 2_000;
const LOOPS: usize = 20;
const RUNS: usize = 5;

fn time_per_frame(frames: &[String]) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..RUNS {
        let started = Instant::now();
        for _ in 0..LOOPS {
            for frame in frames {
                let _ = black_box(certwatch::sources::feed::peek(black_box(frame)));
            }
        }
        let ns = started.elapsed().as_nanos() as f64 / (LOOPS * frames.len()) as f64;
        best = best.min(ns);
    }
    best
}

fn main() {
    let mut generator = FeedGen::new(FeedGenConfig::default());
    let generated: Vec<String> = (0..FRAMES)
        .map(|_| generator.next_frame().0.as_str().to_string())
        .collect();
    let bytes: usize = generated.iter().map(String::len).sum();
    println!(
        "generated full stream ({} B a frame): {:.0} ns per peek",
        bytes / generated.len(),
        time_per_frame(&generated)
    );
    let lite: Vec<String> = generated.iter().map(|frame| lite_of(frame)).collect();
    let bytes: usize = lite.iter().map(String::len).sum();
    println!(
        "generated lite stream ({} B a frame): {:.0} ns per peek",
        bytes / lite.len(),
        time_per_frame(&lite)
    );
    for (name, text) in [
        (
            "go full",
            include_str!("../tests/fixtures/certstream_go_full.jsonl"),
        ),
        (
            "go lite",
            include_str!("../tests/fixtures/certstream_go_lite.jsonl"),
        ),
        (
            "elixir full",
            include_str!("../tests/fixtures/certstream_elixir_full.jsonl"),
        ),
        (
            "rust full",
            include_str!("../tests/fixtures/certstream_rust_full.jsonl"),
        ),
        (
            "rust lite",
            include_str!("../tests/fixtures/certstream_rust_lite.jsonl"),
        ),
    ] {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        println!(
            "fixture {name} ({} frames): {:.0} ns per peek",
            lines.len(),
            time_per_frame(&lines)
        );
    }
}

/// A full-stream frame as certstream-server-go's lite stream sends it: the leaf
/// without `as_der`, no `chain`.
fn lite_of(frame: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(frame).expect("generated json");
    if let Some(data) = v.get_mut("data").and_then(serde_json::Value::as_object_mut) {
        data.remove("chain");
        if let Some(leaf) = data
            .get_mut("leaf_cert")
            .and_then(serde_json::Value::as_object_mut)
        {
            leaf.remove("as_der");
        }
    }
    v.to_string()
}

//! `cargo bench --bench bench_peek`: what `sources::feed::peek` costs per frame on the
//! workers' hot path, in ns, on one thread: generated full-stream frames (about
//! 9 KB, `FeedGen`), the same frames as a lite stream sends them (no `as_der`, no
//! `chain`), and the feed fixtures of each certstream server. Best of five runs of
//! each set, so a busy neighbour shows as spread, not as a slower peek.
//!
//! Then frames with many names (1,000 to 120,000, about 17 bytes each): what each
//! step of a worker costs per name, by frame size: `peek`, `sources::matched_names`
//! (one name watched, and every name watched), `parse_matched` of the match, and
//! `parse_certificate`. Each step is linear in the frame when its cost per name
//! at 120,000 names is within 2x of that at 1,000 (printed LINEAR PASS/FAIL); the
//! whole worker path for 120,000 names (one watched) is printed too.

use std::hint::black_box;
use std::time::Instant;

use certwatch::matcher::WatchList;
use certwatch::sources::feed::{self as certstream, Peek};
use certwatch::sources::{self as worker, MatchScratch};
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
    if !by_frame_size() {
        std::process::exit(1);
    }
}

/// Names per frame of the size series.
const SIZES: [usize; 4] = [1_000, 10_000, 50_000, 120_000];

/// A certificate frame of `n` distinct names `n<i>.example`, with
/// `www.watched.example` in the middle.
fn frame_with_names(n: usize) -> String {
    let mut names: Vec<String> = (0..n - 1).map(|i| format!("n{i}.example")).collect();
    names.insert(n / 2, "www.watched.example".into());
    format!(
        r#"{{"message_type":"certificate_update","data":{{"update_type":"X509LogEntry","cert_index":7,"seen":1795353248.5,"source":{{"name":"bench","url":"https://ct.example/log"}},"leaf_cert":{{"all_domains":{},"serial_number":"0F","not_before":1768474800,"not_after":1776250799,"fingerprint":"AB:CD","issuer":{{"aggregated":"/CN=Bench CA"}}}}}}}}"#,
        serde_json::to_string(&names).expect("names")
    )
}

/// Timed runs of each step of the size series, the best kept.
const SIZE_RUNS: usize = 11;

/// The best of `SIZE_RUNS` timings of `f` (after one warm-up call), in ns.
fn best_ns(mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..SIZE_RUNS {
        let started = Instant::now();
        f();
        best = best.min(started.elapsed().as_nanos() as f64);
    }
    best
}

/// The names of a certificate frame, as the workers get them from `peek`.
fn peeked(frame: &str) -> Vec<std::borrow::Cow<'_, str>> {
    match certstream::peek(frame).expect("peeks") {
        Peek::Certificate { all_domains, .. } => all_domains,
        _ => panic!("not a certificate"),
    }
}

/// ns per name of each worker step by frame size; whether every step is linear.
fn by_frame_size() -> bool {
    let (one, _) = WatchList::build(["watched.example", "other.example"]);
    let (every, _) = WatchList::build(["example"]);
    let steps = [
        "peek",
        "match, one watched",
        "match, every name watched",
        "parse_matched",
        "parse_certificate",
    ];
    println!("\nframes with many names: ns per name (ns per byte of frame for peek)");
    print!("{:>8} {:>10}", "names", "frame KiB");
    for step in steps {
        print!(" {step:>26}");
    }
    println!();
    let mut per_name: Vec<Vec<f64>> = Vec::new();
    let mut worker_path_ms = 0.0;
    for n in SIZES {
        let frame = frame_with_names(n);
        let names = peeked(&frame);
        let mut scratch = MatchScratch::default();
        let matched: Vec<&str> = worker::matched_names(&one, &names, &mut scratch)
            .expect("one match")
            .sans;
        assert_eq!(matched, ["www.watched.example"]);
        let every_matched = worker::matched_names(&every, &names, &mut scratch)
            .expect("every name matches")
            .sans
            .len();
        assert_eq!(every_matched, n);
        let ns = [
            best_ns(|| {
                black_box(certstream::peek(black_box(&frame)).expect("peeks"));
            }),
            best_ns(|| {
                black_box(worker::matched_names(&one, black_box(&names), &mut scratch));
            }),
            best_ns(|| {
                black_box(worker::matched_names(
                    &every,
                    black_box(&names),
                    &mut scratch,
                ));
            }),
            best_ns(|| {
                black_box(certstream::parse_matched(black_box(&frame), &matched));
            }),
            best_ns(|| {
                black_box(certstream::parse_certificate(black_box(&frame)).expect("parses"));
            }),
        ];
        print!("{n:>8} {:>10}", frame.len() >> 10);
        for (i, ns) in ns.iter().enumerate() {
            if i == 0 {
                print!(
                    " {:>17.1} ({:>5.2}/B)",
                    ns / n as f64,
                    ns / frame.len() as f64
                );
            } else {
                print!(" {:>26.1}", ns / n as f64);
            }
        }
        println!();
        per_name.push(ns.iter().map(|ns| ns / n as f64).collect());
        if n == 120_000 {
            worker_path_ms = (ns[0] + ns[1] + ns[3]) / 1e6;
        }
    }
    println!(
        "120,000 names, one watched: peek + match + parse_matched in {worker_path_ms:.1} ms (release build: {})",
        !cfg!(debug_assertions)
    );
    let mut linear = true;
    for (i, step) in steps.iter().enumerate() {
        let (first, last) = (per_name[0][i], per_name[per_name.len() - 1][i]);
        let ratio = last / first;
        let ok = ratio <= 2.0;
        linear &= ok;
        println!(
            "{step}: ns per name at 120,000 names / at 1,000 = {ratio:.2} (target <= 2): {}",
            if ok { "LINEAR PASS" } else { "LINEAR FAIL" }
        );
    }
    linear
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

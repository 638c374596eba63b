//! Matcher micro-benchmark: the cost of matching one certificate name against
//! watch lists of 1,000 to 1,000,000 entries, and the cost of building the index.
//!
//! `cargo bench --bench bench_matcher` (optional: `BENCH_NAMES=2000000`).
//! The target: the cost per name stays within 20 % from 1,000 to 1,000,000
//! entries (hash lookups per label, never a scan).

use certwatch::matcher::WatchList;
use std::hint::black_box;
use std::time::Instant;

/// xorshift64*: deterministic and fast, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn label(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| (b'a' + (self.next() % 26) as u8) as char)
            .collect()
    }
}

const TLDS: [&str; 6] = ["com", "net", "org", "de", "co.uk", "io"];

fn domain(rng: &mut Rng) -> String {
    let len = 5 + (rng.next() % 8) as usize;
    format!("{}.{}", rng.label(len), TLDS[(rng.next() % 6) as usize])
}

fn main() {
    let names_wanted: usize = std::env::var("BENCH_NAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Certificate names as the firehose has them: mostly unwatched, 2-5 labels,
    // some wildcards; the same names for every list size. They lie one after
    // another in one buffer, as they do in the frames the workers read.
    let owned: Vec<String> = (0..names_wanted)
        .map(|_| {
            let base = domain(&mut rng);
            match rng.next() % 4 {
                0 => base,
                1 => format!("www.{base}"),
                2 => format!("*.{base}"),
                _ => format!("{}.{}.{base}", rng.label(3), rng.label(6)),
            }
        })
        .collect();
    let buffer: String = owned.concat();
    let mut names: Vec<&str> = Vec::with_capacity(owned.len());
    let mut at = 0;
    for name in &owned {
        names.push(&buffer[at..at + name.len()]);
        at += name.len();
    }
    drop(owned);
    println!(
        "matching {} names per list size (release build: {})",
        names.len(),
        !cfg!(debug_assertions)
    );
    println!(
        "{:>10} {:>12} {:>12} {:>10}",
        "entries", "build ms", "ns/name", "matched"
    );
    let mut costs = Vec::new();
    for size in [1_000usize, 10_000, 100_000, 1_000_000] {
        let entries: Vec<String> = (0..size).map(|_| domain(&mut rng)).collect();
        let started = Instant::now();
        let (list, invalid) = WatchList::build(entries.iter().map(String::as_str));
        let build = started.elapsed();
        assert!(invalid.is_empty());
        // One warm-up pass, then the best of three timed passes.
        let mut out = Vec::new();
        let mut best = f64::MAX;
        let mut matched = 0;
        for pass in 0..4 {
            matched = 0;
            let started = Instant::now();
            for name in &names {
                let name: &str = name;
                out.clear();
                if list.matches(black_box(name), &mut out) {
                    matched += 1;
                }
            }
            let ns = started.elapsed().as_nanos() as f64 / names.len() as f64;
            if pass > 0 {
                best = best.min(ns);
            }
        }
        costs.push(best);
        println!(
            "{size:>10} {:>12.1} {best:>12.1} {matched:>10}",
            build.as_secs_f64() * 1000.0
        );
    }
    let (min, max) = costs
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), c| (lo.min(*c), hi.max(*c)));
    let spread = (max / min - 1.0) * 100.0;
    println!(
        "spread of ns/name from 1,000 to 1,000,000 entries: {spread:.1} % (target: within 20 %)"
    );
    if spread > 20.0 {
        println!("MATCHER BENCH: OVER TARGET");
        std::process::exit(1);
    }
    println!("MATCHER BENCH OK");
}

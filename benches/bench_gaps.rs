//! `cargo bench --bench bench_gaps`: what `coverage::gaps` costs the workers per
//! certificate frame. Three feeds over 50 logs (in order; lightly reordered, each
//! entry displaced by up to 4 places within its log 10% of the time; 5% of entries
//! never delivered), each timed four ways: one thread calling `GapTracker::observe`,
//! one thread through a `Recorder`, and two threads sharing a `SharedGaps`, locking
//! per observation or flushing a `Recorder` per 32-frame batch as the workers do.
//! On one thread time is simulated (5 µs per frame, the workers' real cost per
//! message), so holes settle (1 s) and are taken out while the feed runs, as in the
//! service; threaded runs claim batches from one counter as workers pull them from one
//! queue, stamp them with `Instant::now()`, and take the gaps at the end. Prints ns
//! per observation (CPU time of the threads that observe / observations), the gaps
//! found and how many lock acquisitions found the lock taken. The few gaps of the
//! reordered feed are real: entries displaced past the end of the run.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use certwatch::coverage::gaps::{GapTracker, Recorder, Settings, SharedGaps};
use certwatch::ctlog::loglist::{LogId, LogList};
use certwatch_testkit::feedgen::XorShift;

const LOGS: usize = 50;
const FRAMES: usize = 1_000_000;
const BATCH: usize = 32;
const FRAME_TIME: Duration = Duration::from_micros(5);
/// Frames between two `take_due` calls (about 5 ms of simulated feed).
const TAKE_EVERY: usize = 1024;
const RUNS: usize = 3;

#[derive(Clone, Copy)]
enum Feed {
    InOrder,
    Reordered,
    Holes,
}

impl Feed {
    fn name(self) -> &'static str {
        match self {
            Feed::InOrder => "in order",
            Feed::Reordered => "reordered 10%",
            Feed::Holes => "5% holes",
        }
    }
}

/// `FRAMES` observations `(log, index)`, logs interleaved at random.
fn feed(kind: Feed, rng: &mut XorShift) -> Vec<(u8, u64)> {
    // Logs are picked at random: leave room above the mean share.
    let per_log = FRAMES / LOGS * 6 / 5;
    let mut sequences: Vec<Vec<u64>> = (0..LOGS)
        .map(|log| {
            let base = 1_000_000 * log as u64;
            let mut seq: Vec<u64> = (base..base + per_log as u64 * 11 / 10).collect();
            match kind {
                Feed::InOrder => {}
                Feed::Reordered => {
                    for i in 0..seq.len() - 4 {
                        if rng.below(10) == 0 {
                            let d = 1 + rng.below(4) as usize;
                            seq.swap(i, i + d);
                        }
                    }
                }
                Feed::Holes => seq.retain(|_| rng.below(100) >= 5),
            }
            seq.truncate(per_log);
            seq.reverse(); // popped from the end
            seq
        })
        .collect();
    (0..FRAMES)
        .map(|_| {
            let log = rng.below(LOGS as u64) as usize;
            let index = sequences[log].pop().expect("long enough");
            (log as u8, index)
        })
        .collect()
}

/// The service's settings but a 1 s settle, and room for the holes of a run that
/// compresses seconds of feed into milliseconds (5% of 20,000 entries per log stay open
/// until the end of a threaded run; at the real feed rate about ten are open per log).
fn settings() -> Settings {
    Settings {
        settle: Duration::from_secs(1),
        max_holes: 4096,
        ..Settings::default()
    }
}

/// A named way to run the feed.
type Run<'a> = (&'static str, Box<dyn Fn() -> Outcome + 'a>);

struct Outcome {
    ns_per_observation: f64,
    gaps: usize,
    gap_entries: u64,
    contended: u64,
}

fn single_direct(frames: &[(u8, u64)], ids: &[LogId], start: Instant) -> Outcome {
    let mut tracker = GapTracker::new(settings());
    let (mut gaps, mut gap_entries) = (0, 0);
    let began = Instant::now();
    for (b, batch) in frames.chunks(BATCH).enumerate() {
        let now = start + FRAME_TIME * (b * BATCH) as u32;
        for &(log, index) in batch {
            black_box(tracker.observe(ids[log as usize], index, now));
        }
        if (b * BATCH).is_multiple_of(TAKE_EVERY) {
            let due = tracker.take_due(now);
            gaps += due.len();
            gap_entries += due.iter().map(|g| g.len()).sum::<u64>();
        }
    }
    let elapsed = began.elapsed();
    let rest = tracker.take_due(start + Duration::from_secs(3600));
    Outcome {
        ns_per_observation: elapsed.as_nanos() as f64 / frames.len() as f64,
        gaps: gaps + rest.len(),
        gap_entries: gap_entries + rest.iter().map(|g| g.len()).sum::<u64>(),
        contended: 0,
    }
}

/// CPU time of the calling thread so far (`/proc/thread-self/schedstat`, Linux), so
/// the per-observation cost is right even when the two cores are shared with other
/// work; falls back to wall time elsewhere.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// How a threaded run records observations.
#[derive(Clone, Copy)]
enum Mode {
    /// `SharedGaps::observe`: the lock once per observation.
    LockEach,
    /// A `Recorder` of this capacity, flushed after every batch.
    FlushPerBatch(usize),
    /// A `Recorder` of this capacity, flushed when full (and at the end).
    FlushWhenFull(usize),
}

/// `threads` workers claim batches in feed order from one counter (as they pull them
/// from one queue) and stamp each with `Instant::now()` as the workers do;
/// worker 0 also takes the due gaps every `TAKE_EVERY` frames of its own. At the end
/// every hole is taken out, to count the gaps.
fn shared(frames: &[(u8, u64)], ids: &[LogId], threads: usize, mode: Mode) -> Outcome {
    let gaps = Arc::new(SharedGaps::new(settings()));
    let batches: Vec<&[(u8, u64)]> = frames.chunks(BATCH).collect();
    let next_batch = AtomicUsize::new(0);
    let began = Instant::now();
    let cpu: Vec<Option<Duration>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let gaps = Arc::clone(&gaps);
                let (batches, next_batch) = (&batches, &next_batch);
                scope.spawn(move || {
                    let cpu_before = thread_cpu();
                    let capacity = match mode {
                        Mode::LockEach => 1,
                        Mode::FlushPerBatch(c) | Mode::FlushWhenFull(c) => c,
                    };
                    let mut recorder = Recorder::new(Arc::clone(&gaps), capacity);
                    let mut own = 0;
                    loop {
                        let b = next_batch.fetch_add(1, Ordering::Relaxed);
                        let Some(batch) = batches.get(b) else {
                            break;
                        };
                        let now = Instant::now();
                        for &(log, index) in *batch {
                            match mode {
                                Mode::LockEach => {
                                    black_box(gaps.observe(ids[log as usize], index, now));
                                }
                                _ => recorder.observe(ids[log as usize], index, now),
                            }
                        }
                        if let Mode::FlushPerBatch(_) = mode {
                            recorder.flush();
                        }
                        own += BATCH;
                        if w == 0 && own.is_multiple_of(TAKE_EVERY) {
                            black_box(gaps.lock().take_due(now));
                        }
                    }
                    recorder.flush();
                    Some(thread_cpu()? - cpu_before?)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = began.elapsed();
    let busy: Duration = match cpu.iter().copied().collect::<Option<Vec<_>>>() {
        Some(each) => each.iter().sum(),
        None => elapsed * threads as u32,
    };
    let mut tracker = gaps.lock();
    let due = tracker.take_due(Instant::now() + Duration::from_secs(3600));
    Outcome {
        ns_per_observation: busy.as_nanos() as f64 / frames.len() as f64,
        gaps: due.len(),
        gap_entries: due.iter().map(|g| g.len()).sum(),
        contended: gaps.contended(),
    }
}

fn best(mut run: impl FnMut() -> Outcome) -> Outcome {
    let mut best: Option<Outcome> = None;
    for _ in 0..RUNS {
        let outcome = run();
        if best
            .as_ref()
            .is_none_or(|b| outcome.ns_per_observation < b.ns_per_observation)
        {
            best = Some(outcome);
        }
    }
    best.expect("at least one run")
}

fn main() {
    let ids: Vec<LogId> = (0..LOGS)
        .map(|n| {
            let mut id = [0u8; 32];
            let mut rng = XorShift::new(n as u64 + 1);
            for chunk in id.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            LogId(id)
        })
        .collect();
    let mut rng = XorShift::new(42);
    println!(
        "{FRAMES} observations over {LOGS} logs, best of {RUNS}; ns per observation per thread"
    );
    println!(
        "{:<14} {:<29} {:>8} {:>8} {:>11} {:>10}",
        "feed", "mode", "ns/obs", "gaps", "gap entries", "contended"
    );
    for kind in [Feed::InOrder, Feed::Reordered, Feed::Holes] {
        let frames = feed(kind, &mut rng);
        let baseline = {
            let began = Instant::now();
            let mut sum = 0u64;
            for &(log, index) in &frames {
                sum = sum.wrapping_add(black_box(index) ^ u64::from(log));
            }
            black_box(sum);
            began.elapsed().as_nanos() as f64 / frames.len() as f64
        };
        let start = Instant::now();
        let runs: [Run; 6] = [
            (
                "1 thread, GapTracker",
                Box::new(|| single_direct(&frames, &ids, start)),
            ),
            (
                "1 thread, Recorder 32/batch",
                Box::new(|| shared(&frames, &ids, 1, Mode::FlushPerBatch(BATCH))),
            ),
            (
                "2 threads, lock per obs",
                Box::new(|| shared(&frames, &ids, 2, Mode::LockEach)),
            ),
            (
                "2 threads, Recorder 32/batch",
                Box::new(|| shared(&frames, &ids, 2, Mode::FlushPerBatch(BATCH))),
            ),
            (
                "2 threads, Recorder 256",
                Box::new(|| shared(&frames, &ids, 2, Mode::FlushWhenFull(256))),
            ),
            (
                "2 threads, Recorder 1024",
                Box::new(|| shared(&frames, &ids, 2, Mode::FlushWhenFull(1024))),
            ),
        ];
        for (mode, run) in runs {
            let o = best(run);
            println!(
                "{:<14} {:<29} {:>8.1} {:>8} {:>11} {:>10}",
                kind.name(),
                mode,
                o.ns_per_observation,
                o.gaps,
                o.gap_entries,
                o.contended
            );
        }
        println!(
            "{:<14} {:<29} {:>8.1}",
            kind.name(),
            "(reading the feed only)",
            baseline
        );
    }
    lookups();
}

/// The other per-frame cost of coverage: `LogList::lookup` of the frame's `source.url`.
fn lookups() {
    const N: usize = 1_000_000;
    let list = LogList::parse(include_bytes!("../tests/fixtures/loglist_v3_sample.json"))
        .expect("the sample list parses");
    let cases: [(&str, &[&str]); 3] = [
        (
            "as servers spell them",
            &[
                "https://ct.googleapis.com/logs/us1/argon2025h2",
                "https://ct.googleapis.com/logs/eu1/xenon2025h2/",
                "ct.googleapis.com/logs/solera2018",
                "https://mon.willow.ct.letsencrypt.org/2025h2d",
            ],
        ),
        (
            "other spellings",
            &[
                "HTTPS://CT.googleapis.com/logs/us1/argon2025h2",
                "https://ct.googleapis.com/logs/eu1/xenon2025h2//",
            ],
        ),
        (
            "unlisted",
            &[
                "https://unknown.example/logs/us1/argon2025h2",
                "https://ct.googleapis.com/logs/us1/argon2026h1",
            ],
        ),
    ];
    for (what, urls) in cases {
        let began = Instant::now();
        let mut found = 0usize;
        for i in 0..N {
            found += usize::from(list.lookup(black_box(urls[i % urls.len()])).is_some());
        }
        let ns = began.elapsed().as_nanos() as f64 / N as f64;
        println!("LogList::lookup of a source.url, {what}: {ns:.1} ns ({found} of {N} found)");
    }
}

//! Giving freed memory back to the system from a thread about to sleep; called by
//! the `tail-<n>` threads between their cycles and the `backfill-<n>` threads after
//! each gap.
//!
//! The binary's allocator is mimalloc (`main.rs`), which keeps what a thread freed
//! for that thread and hands it back to the system only as the thread allocates
//! again. A tail thread reads a page of up to a few hundred KB, then sleeps for
//! seconds: without this, each of 40 such threads kept its largest page
//! (`bench_tail`, 60 s: 102.6 MiB steady RSS before, 42.2 MiB after).
//! Under another global allocator (the tests') this only tidies mimalloc's own
//! unused heap.

/// Hands what this thread freed back to the system (mimalloc's `mi_collect`,
/// forced: it frees the thread's empty pages and purges mimalloc's arenas at once,
/// program-wide. Unforced, the purge waits out mimalloc's 1 s delay and found
/// little to purge: 68.4 MiB steady in the same bench, against 28.7 MiB forced.)
pub fn release_freed() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread
    // at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

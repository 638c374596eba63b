//! What a process costs, from `/proc`: resident memory (`rss_kib`, `peak_rss_kib`,
//! `proc_status_kib_of`) and CPU time, whole (`process_cpu_ticks`) and by thread
//! (`thread_cpu_ticks`), of this process or another (`*_of(pid)`).

use std::collections::HashMap;

/// A `kB` field of `/proc/<pid>/status` (`pid`: a process id, or `self`);
/// 0 if unreadable.
pub fn proc_status_kib_of(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse().ok()
            })
        })
        .unwrap_or(0)
}

/// This process's resident set size (`VmRSS`), KiB; 0 if unreadable.
pub fn rss_kib() -> u64 {
    proc_status_kib_of("self", "VmRSS")
}

/// This process's peak resident set size (`VmHWM`), KiB.
pub fn peak_rss_kib() -> u64 {
    proc_status_kib_of("self", "VmHWM")
}

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, fixed at 100 on Linux).
pub const USER_HZ: u64 = 100;

/// `utime + stime` from a `stat` line (fields after the `(comm)`).
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of a whole process (`pid`: a process id, or `self`), in ticks of
/// [`USER_HZ`].
pub fn process_cpu_ticks_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_ticks(&s))
        .unwrap_or(0)
}

/// CPU time of this whole process, in ticks of [`USER_HZ`].
pub fn process_cpu_ticks() -> u64 {
    process_cpu_ticks_of("self")
}

/// CPU time of every live thread of a process (`pid`: a process id, or
/// `self`), by thread id: (name, ticks).
pub fn thread_cpu_ticks_of(pid: &str) -> HashMap<u64, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if let Some(ticks) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| stat_ticks(&s))
        {
            out.insert(tid, (name, ticks));
        }
    }
    out
}

/// CPU time of every live thread of this process, by thread id: (name, ticks).
pub fn thread_cpu_ticks() -> HashMap<u64, (String, u64)> {
    thread_cpu_ticks_of("self")
}

//! The API port under abuse, on real sockets (loopback only): huge headers, idle
//! and slowloris connections, descriptor exhaustion and non-reading pipeliners
//! must neither grow memory, nor stop `/healthz`, nor hold up shutdown. Memory,
//! descriptors and shutdown are process matters, so those tests run the binary.
//! Every loop here is bounded in count and in time.

use crate::kit::child::Child;
use crate::kit::probe::metric_value;
use crate::kit::service;
use crate::kit::{FakeFeed, TestDb, wait_until};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `certwatch` with only PATH from the environment; stdout discarded.
fn certwatch() -> Command {
    let mut cmd = crate::process::certwatch();
    cmd.stdout(Stdio::null());
    cmd
}

use crate::process::free_port;

/// The binary serving on a free loopback port; stopped on drop if still running
/// (SIGTERM, SIGKILL 5 s later: `kit::child::Child`).
struct Binary {
    child: Child,
    addr: SocketAddr,
    /// stderr lines, when captured.
    lines: Option<std::sync::mpsc::Receiver<String>>,
    _db: TestDb,
    _feed: FakeFeed,
}

impl Binary {
    fn start(capture_stderr: bool) -> Binary {
        let db = TestDb::new();
        let feed = FakeFeed::start();
        let port = free_port();
        let mut cmd = certwatch();
        cmd.env("POSTGRES_DSN", db.dsn())
            .env("CERTSTREAM_URL", feed.url())
            .env("API_PORT", port.to_string())
            .env("LOG_LEVEL", "warn");
        let (child, lines) = if capture_stderr {
            let (child, lines) = Child::spawn_with_stderr_lines(&mut cmd);
            (child, Some(lines))
        } else {
            (Child::spawn(cmd.stderr(Stdio::null())), None)
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let binary = Binary {
            child,
            addr,
            lines,
            _db: db,
            _feed: feed,
        };
        assert!(
            wait_until(Duration::from_secs(15), || get(addr, "/healthz")
                .is_ok_and(|(status, _, _)| status == 200)),
            "the service never answered /healthz"
        );
        binary
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `kB` field of the service's `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
    }

    fn sigterm(&self) {
        self.child.signal("TERM");
    }

    /// Waits at most `timeout` for the process to exit and returns its exit
    /// code; past it, the process is killed and the test fails.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        self.child.wait(timeout).code()
    }

    fn stderr_lines(&self) -> Vec<String> {
        self.lines
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default()
    }
}

/// One `GET` with `Connection: close`, everything within about a second:
/// (status, body, time taken).
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.take(1 << 20).read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body, started.elapsed()))
}

/// `/healthz` must answer 200 within 1 s; returns how long it took.
fn healthz_within_a_second(addr: SocketAddr) -> Duration {
    let (status, body, took) =
        get(addr, "/healthz").unwrap_or_else(|e| panic!("/healthz did not answer: {e}"));
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    took
}

fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (_, body, _) = get(addr, "/metrics").unwrap();
    metric_value(&body, series).unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

/// Writes `header_bytes` of one header line after a request line, in 64 KiB
/// writes, until done, refused, or 15 s passed; returns the bytes written.
fn stream_header(addr: SocketAddr, header_bytes: usize) -> usize {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Padding: ")
        .is_err()
    {
        return 0;
    }
    let chunk = vec![b'a'; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sent = 0;
    while sent < header_bytes && Instant::now() < deadline {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    sent
}

#[test]
fn huge_headers_and_idle_connections_neither_grow_memory_nor_block_healthz() {
    let binary = Binary::start(false);
    let addr = binary.addr;
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap())
        .collect();
    let streams: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || stream_header(addr, 256 << 20)))
        .collect();
    let mut slowest = Duration::ZERO;
    let mut rss_max = 0;
    for _ in 0..10 {
        slowest = slowest.max(healthz_within_a_second(addr));
        rss_max = rss_max.max(binary.status_kib("VmRSS"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent: Vec<usize> = streams.into_iter().map(|t| t.join().unwrap()).collect();
    slowest = slowest.max(healthz_within_a_second(addr));
    let peak = binary.status_kib("VmHWM");
    eprintln!(
        "huge headers: sent {sent:?} bytes; /healthz slowest {slowest:?}; \
         RSS max {rss_max} KiB, peak {peak} KiB"
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    assert!(
        metric(
            addr,
            r#"certwatch_http_connections_rejected_total{reason="head_too_large"}"#
        ) >= 4.0
    );
    drop(idle);
}

#[test]
fn the_api_answers_again_after_file_descriptors_run_out() {
    let binary = Binary::start(true);
    let addr = binary.addr;
    // Lower the running service's descriptor limit to what it holds plus a few,
    // so that a flood of connections exhausts it. (Set before start, a low limit
    // also lowers the guard's connection cap, to half of it, and accept would
    // never fail.)
    let open = std::fs::read_dir(format!("/proc/{}/fd", binary.pid()))
        .unwrap()
        .count() as u64;
    let limit = libc::rlimit {
        rlim_cur: open + 16,
        rlim_max: open + 16,
    };
    // SAFETY: prlimit reads one valid `rlimit` and writes nothing (null old).
    let set = unsafe {
        libc::prlimit(
            binary.pid() as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    let mut flood = Vec::new();
    let started = Instant::now();
    while flood.len() < 300 && started.elapsed() < Duration::from_secs(10) {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(s) => flood.push(s),
            Err(_) => break,
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(flood);
    let mut answered = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            answered = get(addr, "/healthz").ok().filter(|(s, _, _)| *s == 200);
            answered.is_some()
        }),
        "the API never answered again after the flood"
    );
    let errors = metric(addr, "certwatch_http_accept_errors_total");
    assert!(
        errors > 0.0,
        "accept never failed: the test exhausted nothing"
    );
    let (_, body, _) = get(addr, "/healthz").unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ok"], true, "{body}");
    let lines = binary.stderr_lines();
    let warned = lines.iter().filter(|l| l.contains("accept failed")).count();
    eprintln!(
        "fd exhaustion: {} accept errors, {} tiny_http restarts, answered in {:?} after the flood",
        errors,
        metric(addr, "certwatch_http_server_restarts_total"),
        answered.map(|(_, _, t)| t)
    );
    assert_eq!(warned, 1, "one warning per episode: {lines:#?}");
}

#[test]
fn a_non_reading_pipeliner_delays_neither_healthz_nor_shutdown() {
    let mut binary = Binary::start(false);
    let addr = binary.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let pipeliner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let requests = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(5000);
            let mut held = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            // Connection after connection, each sent 5,000 requests and never read.
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && held.len() < 20 {
                let Ok(mut s) = TcpStream::connect(addr) else {
                    break;
                };
                let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
                let _ = s.write_all(&requests);
                held.push(s);
            }
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            held.len()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        slowest = slowest.max(healthz_within_a_second(addr));
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    binary.sigterm();
    let code = binary.wait_exit(Duration::from_secs(35));
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let connections = pipeliner.join().unwrap();
    assert!(
        connections >= 1,
        "the pipeliner never got a connection in: nothing was tried"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "/healthz slowest {slowest:?} beside {connections} pipelining connections"
    );
    assert_eq!(code, Some(0), "no clean exit after {took:?}");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
}

#[test]
fn slowloris_and_idle_connections_are_closed_at_the_head_deadline() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    let svc = service::start(&db, &feed, None, &[]);
    let addr = svc.addr;
    let idle = TcpStream::connect(addr).unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    slow.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    // One byte a second, never ending the head, for at most 12 s.
    let header = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa";
    let mut response = Vec::new();
    let mut closed_after = None;
    let mut next_byte = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(12) {
        if Instant::now() >= next_byte {
            if slow.write_all(&header[i % header.len()..][..1]).is_err() {
                closed_after = Some(started.elapsed());
                break;
            }
            i += 1;
            next_byte += Duration::from_secs(1);
        }
        let mut buf = [0u8; 256];
        match slow.read(&mut buf) {
            Ok(0) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed_after = Some(started.elapsed());
                break;
            }
        }
    }
    let closed_after = closed_after.expect("the slowloris connection was never closed");
    let response = String::from_utf8_lossy(&response);
    eprintln!("slowloris: closed after {closed_after:?}, {i} bytes sent; response {response:?}");
    assert!(
        closed_after >= Duration::from_millis(4500) && closed_after < Duration::from_secs(7),
        "closed after {closed_after:?}"
    );
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
    // The idle connection, opened at the same time, is closed too.
    let mut idle = idle;
    idle.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut rest = Vec::new();
    assert!(
        idle.read_to_end(&mut rest).is_ok(),
        "idle connection still open"
    );
    assert!(
        svc.metric(r#"certwatch_http_connections_rejected_total{reason="head_timeout"}"#) >= 2.0
    );
}

#[test]
fn an_oversized_head_is_refused_and_past_the_cap_the_oldest_waiting_connection_goes() {
    let db = TestDb::new();
    let feed = FakeFeed::start();
    let svc = service::start(&db, &feed, None, &[]);
    let addr = svc.addr;
    // A head over 8 KiB: 431, connection closed.
    let mut big = TcpStream::connect(addr).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut head = b"GET /healthz HTTP/1.1\r\nX-Padding: ".to_vec();
    head.resize(9 * 1024, b'a');
    let _ = big.write_all(&head);
    let mut response = Vec::new();
    let _ = big.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 431"), "{response:?}");
    // 512 idle connections fill the cap; /healthz still gets in, in place of the
    // one that has waited longest.
    let cap = certwatch::http_guard::connection_cap();
    let idle: Vec<TcpStream> = (0..cap)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    assert!(wait_until(Duration::from_secs(3), || {
        svc.metric("certwatch_http_connections") >= cap as f64
    }));
    healthz_within_a_second(addr);
    assert!(
        svc.metric(r#"certwatch_http_connections_rejected_total{reason="over_capacity"}"#) >= 1.0
    );
    // Closed means EOF (the guard's FIN) or a reset; a read that times out
    // (WouldBlock or TimedOut, by platform) means the connection is still open.
    // The guard closed it before `/healthz` got its answer, so the FIN is already
    // here: the timeout only bounds a failing test. Bytes would be the 408 of the
    // head deadline (5 s after it connected): closed, but not for the newcomer.
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    match first.read(&mut buf) {
        Ok(0) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ) => {}
        Ok(n) => panic!(
            "the oldest idle connection got {n} bytes instead of being closed: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("the oldest idle connection is still open: read gave {e}"),
    }
}

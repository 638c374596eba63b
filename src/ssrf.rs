//! Webhook egress filter (`WEBHOOK_DENY_PRIVATE=true`): SSRF protection that refuses webhook
//! targets whose host resolves to a loopback, private, link-local, CGNAT, unspecified,
//! multicast, broadcast or "this network" address.
//!
//! It owns the whole decision, used in two places:
//!
//! * at start-up, on the main thread, [`check_target`] vets every configured webhook URL and gives a clear,
//!   one-line error naming the host, the address and the reason;
//! * at every connection, on each webhook target's thread (`deliver-N`), the HTTP agent (built by [`agent`]) resolves
//!   names through [`FilteringResolver`], which drops denied addresses and hands ureq only the
//!   addresses it checked, so ureq dials exactly those (no DNS-rebinding window between the
//!   check and the connect).
//!
//! Embedded IPv4 addresses (IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated
//! `::ffff:0:a.b.c.d`, IPv4-compatible `::a.b.c.d` and NAT64 `64:ff9b::a.b.c.d`) are judged
//! by the IPv4 address they carry.
//!
//! Limitation: when the agent talks to a target through an HTTP/SOCKS5 proxy, the proxy
//! resolves the target itself; the resolver then only sees (and vets) the proxy's own address.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Host name lookup: (host, port) -> addresses. The system one uses std `ToSocketAddrs`;
/// tests pass a fake.
///
/// The host is given without IPv6 brackets; IP literals never reach a `Lookup` (they are
/// used as they are).
pub type Lookup = Arc<dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// The system resolver: std [`ToSocketAddrs`] (`getaddrinfo`).
pub fn system_lookup() -> Lookup {
    Arc::new(|host: &str, port: u16| (host, port).to_socket_addrs().map(Iterator::collect))
}

/// Why an address is refused, or None when it is allowed. Reasons are short lowercase
/// words: "loopback", "private", "link-local", "cgnat", "unspecified", "multicast",
/// "broadcast", "this-network".
///
/// IPv6 forms that embed an IPv4 address (mapped, translated, compatible, NAT64
/// `64:ff9b::/96`) are judged by that IPv4 address. Besides the usual IPv6 classes,
/// the deprecated site-local `fec0::/10` and the local-use NAT64 prefix `64:ff9b:1::/48`
/// count as "private".
pub fn denied_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = ip.octets();
    let reason = if ip.is_unspecified() {
        "unspecified"
    } else if a == 0 {
        "this-network" // 0.0.0.0/8
    } else if ip.is_loopback() {
        "loopback" // 127.0.0.0/8
    } else if ip.is_private() {
        "private" // 10/8, 172.16/12, 192.168/16
    } else if ip.is_link_local() {
        "link-local" // 169.254/16, includes cloud metadata 169.254.169.254
    } else if a == 100 && (b & 0xc0) == 64 {
        "cgnat" // 100.64.0.0/10
    } else if ip.is_multicast() {
        "multicast" // 224.0.0.0/4
    } else if ip.is_broadcast() {
        "broadcast" // 255.255.255.255
    } else {
        return None;
    };
    Some(reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = embedded_ipv4(ip) {
        return v4_reason(v4);
    }
    let s = ip.segments();
    // 64:ff9b:1::/48 local-use NAT64 (RFC 8215), fc00::/7 unique local,
    // fec0::/10 deprecated site-local.
    let private = (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfec0;
    let reason = if private {
        "private"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local" // fe80::/10
    } else if (s[0] & 0xff00) == 0xff00 {
        "multicast" // ff00::/8
    } else {
        return None;
    };
    Some(reason)
}

/// The IPv4 address carried in the low 32 bits of the IPv6 forms that deliver to it.
/// `::` and `::1` are handled by the caller before this.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let [_, _, _, _, _, _, _, _, _, _, _, _, a, b, c, d] = ip.octets();
    match ip.segments() {
        // ::ffff:0:0/96 IPv4-mapped, ::ffff:0:0:0/96 IPv4-translated, ::/96 IPv4-compatible
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _]
        | [0, 0, 0, 0, 0, 0, _, _] => Some(Ipv4Addr::new(a, b, c, d)),
        // 64:ff9b::/96, well-known NAT64 prefix
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    }
}

/// Default port for a scheme ureq may hand the resolver (targets and proxies).
fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        "socks" | "socks4" | "socks4a" | "socks5" | "socks5h" => Some(1080),
        _ => None,
    }
}

/// Host (IPv6 brackets removed) and port of `uri`. Errors never echo the URI: webhook URLs
/// often carry secrets in their path or query.
fn host_port(uri: &Uri) -> Result<(String, u16), String> {
    let scheme = uri.scheme_str().ok_or("webhook URL has no scheme")?;
    let default = default_port(scheme).ok_or_else(|| format!("unsupported scheme {scheme:?}"))?;
    let authority = uri.authority().ok_or("webhook URL has no host")?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("webhook URL has an empty host".to_owned());
    }
    Ok((host.to_owned(), authority.port_u16().unwrap_or(default)))
}

/// Addresses for `host`: an IP literal as is, anything else through `lookup`.
fn lookup_host(host: &str, port: u16, lookup: &Lookup) -> io::Result<Vec<SocketAddr>> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(vec![SocketAddr::new(ip, port)]),
        Err(_) => lookup(host, port),
    }
}

/// Start-up check of one target URL (http:// or https://, host may be a name, an IPv4 or a
/// bracketed IPv6 literal, port optional): resolves with `lookup` and returns Err with a
/// one-line message naming the host, the address and the reason when ANY resolved address is
/// denied, or when resolution fails / returns nothing. Ok(addresses) otherwise.
///
/// Messages name the host but never the whole URL (which may hold a secret token).
pub fn check_target(url: &str, lookup: &Lookup) -> Result<Vec<SocketAddr>, TargetError> {
    let never = |message: String| TargetError {
        message,
        transient: false,
    };
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|e| never(format!("invalid webhook URL: {e}")))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        _ => {
            return Err(never(
                "webhook URL must start with http:// or https://".to_owned(),
            ));
        }
    }
    let (host, port) = host_port(&uri).map_err(never)?;
    let unresolved = |message: String| TargetError {
        message,
        transient: true,
    };
    let addrs = lookup_host(&host, port, lookup)
        .map_err(|e| unresolved(format!("webhook host {host}: cannot resolve: {e}")))?;
    if addrs.is_empty() {
        return Err(unresolved(format!(
            "webhook host {host}: resolves to no address"
        )));
    }
    if let Some((addr, reason)) = addrs
        .iter()
        .find_map(|a| denied_reason(a.ip()).map(|r| (a, r)))
    {
        return Err(never(format!(
            "webhook host {host} resolves to {} ({reason}), refused by WEBHOOK_DENY_PRIVATE",
            addr.ip()
        )));
    }
    Ok(addrs)
}

/// Why a webhook target failed the start-up check: one line naming the host,
/// never the URL.
#[derive(Debug)]
pub struct TargetError {
    pub message: String,
    /// The host could not be resolved: a later start may succeed. Otherwise
    /// (refused address, unusable URL) the configuration can never work.
    pub transient: bool,
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A ureq 3 resolver: resolves the request URI's host with `lookup`; when `deny_private` is
/// set, drops denied addresses and fails (log::warn! naming host, address and reason) if
/// none is left; otherwise returns everything. Must return at least one address or an error,
/// as ureq's `Resolver` contract says.
///
/// ureq connects only to the addresses returned here, so the addresses checked are the
/// addresses dialled. It honours the config's IP family and the resolve timeout (the
/// lookup then runs on a helper thread, like ureq's `DefaultResolver`). A refusal is
/// `ureq::Error::Io` of kind `PermissionDenied` whose text names the host, address and reason;
/// an empty lookup is `ureq::Error::HostNotFound`.
#[derive(Clone)]
pub struct FilteringResolver {
    deny_private: bool,
    lookup: Lookup,
    /// Answers kept per (host, port) for `caching`'s time, when set: a CT log's
    /// host is looked up once a minute, not once (and one thread) per request.
    cache: Option<Arc<AnswerCache>>,
}

/// Looked-up answers and when each was looked up; at most `CACHED_HOSTS`.
struct AnswerCache {
    keep: Duration,
    answers: Mutex<HashMap<(String, u16), Answer>>,
}

/// When a host was looked up, and what came back.
type Answer = (Instant, Vec<SocketAddr>);

/// The most hosts a caching resolver keeps answers for (the log list names a
/// few dozen); past it the oldest half is forgotten.
const CACHED_HOSTS: usize = 256;

impl FilteringResolver {
    /// A resolver using `lookup`, refusing denied addresses when `deny_private` is set.
    pub fn new(deny_private: bool, lookup: Lookup) -> Self {
        Self {
            deny_private,
            lookup,
            cache: None,
        }
    }

    /// The same, keeping each successful answer for `keep` (failures are not kept).
    pub fn caching(self, keep: Duration) -> Self {
        Self {
            cache: Some(Arc::new(AnswerCache {
                keep,
                answers: Mutex::new(HashMap::new()),
            })),
            ..self
        }
    }

    /// The cached answer for (host, port), or a lookup within `timeout` (kept).
    fn lookup_cached(
        &self,
        host: &str,
        port: u16,
        timeout: NextTimeout,
    ) -> Result<Vec<SocketAddr>, ureq::Error> {
        let Some(cache) = &self.cache else {
            return self.lookup_within(host, port, timeout);
        };
        if host.parse::<IpAddr>().is_ok() {
            return self.lookup_within(host, port, timeout);
        }
        let key = (host.to_owned(), port);
        let now = Instant::now();
        {
            let answers = cache.answers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, found)) = answers.get(&key)
                && now.duration_since(*at) < cache.keep
            {
                return Ok(found.clone());
            }
        }
        let found = self.lookup_within(host, port, timeout)?;
        let mut answers = cache.answers.lock().unwrap_or_else(|e| e.into_inner());
        if answers.len() >= CACHED_HOSTS {
            let mut ages: Vec<Instant> = answers.values().map(|(at, _)| *at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            answers.retain(|_, (at, _)| *at > cut);
        }
        answers.insert(key, (now, found.clone()));
        Ok(found)
    }

    /// Runs the lookup, on a helper thread bounded by `timeout` when one is set.
    fn lookup_within(
        &self,
        host: &str,
        port: u16,
        timeout: NextTimeout,
    ) -> Result<Vec<SocketAddr>, ureq::Error> {
        if host.parse::<IpAddr>().is_ok() || timeout.after.is_not_happening() {
            return Ok(lookup_host(host, port, &self.lookup)?);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let lookup = Arc::clone(&self.lookup);
        let name = host.to_owned();
        thread::Builder::new()
            .name("resolve".to_owned())
            .spawn(move || {
                // The receiver may have timed out and gone; nothing to do then.
                let _ = tx.send(lookup(&name, port));
            })?;
        match rx.recv_timeout(*timeout.after) {
            Ok(result) => Ok(result?),
            Err(RecvTimeoutError::Timeout) => Err(ureq::Error::Timeout(timeout.reason)),
            Err(RecvTimeoutError::Disconnected) => Err(ureq::Error::Io(io::Error::other(format!(
                "lookup of {host} ended without an answer"
            )))),
        }
    }
}

impl fmt::Debug for FilteringResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilteringResolver")
            .field("deny_private", &self.deny_private)
            .finish_non_exhaustive()
    }
}

impl Resolver for FilteringResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (host, port) = host_port(uri).map_err(ureq::Error::BadUri)?;
        let found = self.lookup_cached(&host, port, timeout)?;

        let mut result = self.empty();
        let mut denied: Vec<(SocketAddr, &'static str)> = Vec::new();
        for addr in config.ip_family().keep_wanted(found.into_iter()) {
            if let Some(reason) = denied_reason(addr.ip()).filter(|_| self.deny_private) {
                denied.push((addr, reason));
                continue;
            }
            if result.try_push(addr).is_err() {
                break; // ureq keeps at most 16 addresses, like DefaultResolver
            }
        }

        if !denied.is_empty() {
            let list = denied
                .iter()
                .map(|(a, r)| format!("{} ({r})", a.ip()))
                .collect::<Vec<_>>()
                .join(", ");
            if result.is_empty() {
                log::warn!(
                    "webhook host {host}: refused, resolves only to denied addresses: {list}"
                );
            } else {
                log::warn!("webhook host {host}: dropped denied addresses: {list}");
            }
        }

        if !result.is_empty() {
            return Ok(result);
        }
        match denied.first() {
            Some((addr, reason)) => Err(ureq::Error::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "webhook host {host} resolves to {} ({reason}), refused by WEBHOOK_DENY_PRIVATE",
                    addr.ip()
                ),
            ))),
            None => Err(ureq::Error::HostNotFound),
        }
    }
}

/// An agent using the filtering resolver with ureq's default connector:
/// `ureq::Agent::with_parts(config, DefaultConnector::new(), resolver)`.
///
/// Build `config` with `.proxy(None)` unless a proxy is wanted: ureq's default config picks
/// up `ALL_PROXY`/`HTTPS_PROXY`/`HTTP_PROXY`, and through a proxy the target is resolved by
/// the proxy, out of the filter's sight (a warning is logged in that case).
pub fn agent(config: Config, resolver: FilteringResolver) -> ureq::Agent {
    // Not a let-chain: the main crate's rust-version is 1.85.
    if let Some(proxy) = config
        .proxy()
        .filter(|p| resolver.deny_private && !p.resolve_target())
    {
        log::warn!(
            "WEBHOOK_DENY_PRIVATE: webhooks go through proxy {}:{}, which resolves targets \
             itself; only the proxy's address is checked at connection time",
            proxy.host(),
            proxy.port()
        );
    }
    ureq::Agent::with_parts(config, DefaultConnector::new(), resolver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A lookup answering `answers` for `name` only; any other host is an error, so a test
    /// can never reach the real DNS or the network.
    fn fake(name: &'static str, answers: Vec<SocketAddr>) -> Lookup {
        Arc::new(move |host: &str, _port: u16| {
            if host == name {
                Ok(answers.clone())
            } else {
                Err(io::Error::new(io::ErrorKind::NotFound, "unknown test host"))
            }
        })
    }

    #[test]
    fn denied_reason_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("172.15.255.255", None),
            ("172.32.0.1", None),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("100.64.0.1", Some("cgnat")),
            ("100.127.255.254", Some("cgnat")),
            ("100.63.255.255", None),
            ("100.128.0.1", None),
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("this-network")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.255", Some("multicast")),
            ("255.255.255.255", Some("broadcast")),
            ("93.184.216.34", None),
            ("8.8.8.8", None),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fec0::1", Some("private")),
            ("fc00::1", Some("private")),
            ("fd12::1", Some("private")),
            ("ff02::1", Some("multicast")),
            ("::ffff:10.0.0.1", Some("private")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("::ffff:93.184.216.34", None),
            ("::ffff:0:10.0.0.1", Some("private")),
            ("::10.0.0.1", Some("private")),
            ("::93.184.216.34", None),
            ("2606:4700::1111", None),
            ("64:ff9b::a00:1", Some("private")),
            ("64:ff9b::7f00:1", Some("loopback")),
            ("64:ff9b::5db8:d822", None),
            ("64:ff9b:1::a00:1", Some("private")),
        ];
        for (addr, want) in cases {
            assert_eq!(denied_reason(ip(addr)), *want, "{addr}");
        }
    }

    #[test]
    fn check_target_table() {
        let public = fake("hook.example", vec![sa("93.184.216.34:443")]);
        let mixed = fake(
            "hook.example",
            vec![sa("93.184.216.34:443"), sa("10.0.0.7:443")],
        );
        let empty = fake("hook.example", vec![]);
        // (url, lookup, Ok(addresses) or Err(substrings the message must contain))
        type Case<'a> = (&'a str, &'a Lookup, Result<Vec<SocketAddr>, &'a [&'a str]>);
        let cases: Vec<Case> = vec![
            (
                "https://hook.example/x",
                &public,
                Ok(vec![sa("93.184.216.34:443")]),
            ),
            (
                "https://hook.example/x",
                &mixed,
                Err(&["hook.example", "10.0.0.7", "private"]),
            ),
            (
                "http://127.0.0.1:9/x",
                &public,
                Err(&["127.0.0.1", "loopback"]),
            ),
            ("http://[::1]/", &public, Err(&["::1", "loopback"])),
            (
                "http://[2606:4700::1111]:8080/",
                &public,
                Ok(vec![sa("[2606:4700::1111]:8080")]),
            ),
            (
                "https://nowhere.example/hook",
                &public,
                Err(&["nowhere.example", "unknown test host"]),
            ),
            (
                "https://hook.example/",
                &empty,
                Err(&["hook.example", "no address"]),
            ),
            ("ftp://hook.example/", &public, Err(&["http://"])),
            ("not a url", &public, Err(&["invalid webhook URL"])),
        ];
        for (url, lookup, want) in cases {
            match (check_target(url, lookup), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{url}"),
                (Err(err), Err(needles)) => {
                    let msg = err.message;
                    assert!(!msg.contains('\n'), "{url}: not one line: {msg}");
                    for n in needles {
                        assert!(msg.contains(n), "{url}: {msg:?} lacks {n:?}");
                    }
                }
                (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn check_target_default_ports() {
        let echo: Lookup =
            Arc::new(|_: &str, port: u16| Ok(vec![SocketAddr::new(ip("93.184.216.34"), port)]));
        assert_eq!(
            check_target("http://a.example/", &echo).unwrap()[0].port(),
            80
        );
        assert_eq!(
            check_target("https://a.example/", &echo).unwrap()[0].port(),
            443
        );
        assert_eq!(
            check_target("https://a.example:8443/", &echo).unwrap()[0].port(),
            8443
        );
    }

    /// A loopback listener that answers every HTTP request with an empty 200 and counts
    /// the connections it accepted.
    struct Responder {
        port: u16,
        accepted: Arc<AtomicUsize>,
    }

    fn responder() -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        // Detached: it ends with the test process.
        thread::spawn(move || {
            loop {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        let _ = answer(&mut stream);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Responder { port, accepted }
    }

    /// Reads one request (head plus a Content-Length body) and answers 200.
    fn answer(stream: &mut std::net::TcpStream) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap_or(0));
        while buf.len() < head_end + body_len {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
        stream.flush()
    }

    /// A config that never uses an environment proxy and cannot hang a test.
    fn test_config() -> Config {
        ureq::Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
    }

    fn post(agent: &ureq::Agent, port: u16) -> Result<u16, ureq::Error> {
        agent
            .post(&format!("http://hook.test:{port}/"))
            .send("{\"alert\":true}")
            .map(|r| r.status().as_u16())
    }

    #[test]
    fn resolver_refuses_loopback_and_never_dials() {
        let server = responder();
        let lookup = fake("hook.test", vec![sa(&format!("127.0.0.1:{}", server.port))]);
        let agent = agent(test_config(), FilteringResolver::new(true, lookup));
        let err = post(&agent, server.port).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("loopback"), "{text}");
        assert!(text.contains("hook.test"), "{text}");
        assert!(
            matches!(&err, ureq::Error::Io(e) if e.kind() == io::ErrorKind::PermissionDenied),
            "{err:?}"
        );
        thread::sleep(Duration::from_millis(50));
        assert_eq!(server.accepted.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_caching_resolver_looks_a_host_up_once_within_its_time() {
        let server = responder();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let answer = sa(&format!("127.0.0.1:{}", server.port));
        let lookup: Lookup = Arc::new(move |host: &str, _port: u16| {
            counted.fetch_add(1, Ordering::SeqCst);
            assert_eq!(host, "hook.test");
            Ok(vec![answer])
        });
        let kept = agent(
            test_config(),
            FilteringResolver::new(false, Arc::clone(&lookup)).caching(Duration::from_secs(60)),
        );
        for _ in 0..3 {
            assert_eq!(post(&kept, server.port).unwrap(), 200);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Kept for no time: looked up for every request.
        let fresh = agent(
            test_config(),
            FilteringResolver::new(false, lookup).caching(Duration::ZERO),
        );
        for _ in 0..2 {
            assert_eq!(post(&fresh, server.port).unwrap(), 200);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn resolver_allows_everything_when_not_denying() {
        let server = responder();
        let lookup = fake("hook.test", vec![sa(&format!("127.0.0.1:{}", server.port))]);
        let agent = agent(test_config(), FilteringResolver::new(false, lookup));
        assert_eq!(post(&agent, server.port).unwrap(), 200);
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn resolver_drops_denied_and_keeps_allowed() {
        // Unit level (no agent, no dialling): a mixed answer keeps only the allowed address.
        let lookup = fake(
            "hook.test",
            vec![sa("10.0.0.1:80"), sa("93.184.216.34:80"), sa("[::1]:80")],
        );
        let resolver = FilteringResolver::new(true, lookup);
        let uri: Uri = "http://hook.test/".parse().unwrap();
        let got = resolver
            .resolve(&uri, &test_config(), NextTimeout::default())
            .unwrap();
        assert_eq!(&got[..], &[sa("93.184.216.34:80")]);

        let empty = FilteringResolver::new(true, fake("hook.test", vec![]));
        let err = empty
            .resolve(&uri, &test_config(), NextTimeout::default())
            .unwrap_err();
        assert!(matches!(err, ureq::Error::HostNotFound), "{err:?}");
    }

    #[test]
    fn dns_rebinding_is_refused_at_connection_time() {
        let server = responder();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let port = server.port;
        let lookup: Lookup = Arc::new(move |host: &str, _port: u16| {
            assert_eq!(host, "hook.test");
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                Ok(vec![sa("93.184.216.34:80")])
            } else {
                Ok(vec![sa(&format!("127.0.0.1:{port}"))])
            }
        });

        // Start-up: the name looks public.
        let url = format!("http://hook.test:{port}/");
        assert!(check_target(&url, &lookup).is_ok());

        // Delivery: the name now points at loopback; refused before any connect.
        let agent = agent(test_config(), FilteringResolver::new(true, lookup));
        let err = post(&agent, port).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        thread::sleep(Duration::from_millis(50));
        assert_eq!(server.accepted.load(Ordering::SeqCst), 0);
    }
}

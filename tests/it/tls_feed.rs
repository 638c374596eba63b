//! The feed over `wss://`: rustls on both ends, a private CA trusted through
//! `CERTSTREAM_CA_FILE`, and a certificate nobody vouches for refused.

use crate::kit::Cert;
use crate::kit::service;
use crate::kit::{FakeWebhook, TestDb, wait_until};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

/// A private CA and a `localhost` server certificate it signed.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "certwatch test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// A certstream server over TLS that sends `frames` to each client, then keeps
/// reading (answering pings) until the client leaves.
struct TlsFeed {
    port: u16,
    connections: Arc<AtomicUsize>,
    handshakes_failed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsFeed {
    fn start(pki: &Pki, frames: Vec<String>) -> TlsFeed {
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), pki.key.clone_key())
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (connections, handshakes_failed, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (c, h, s) = (connections.clone(), handshakes_failed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((tcp, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let tls = rustls::StreamOwned::new(
                    rustls::ServerConnection::new(config.clone()).unwrap(),
                    tcp,
                );
                let mut ws = match accept_with_retries(tls, &s) {
                    Some(ws) => ws,
                    None => {
                        h.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                };
                c.fetch_add(1, Ordering::SeqCst);
                for frame in &frames {
                    let _ = ws.send(Message::Text(frame.clone().into()));
                }
                while !s.load(Ordering::SeqCst) {
                    match ws.read() {
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e))
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            }
        });
        TlsFeed {
            port,
            connections,
            handshakes_failed,
            stop,
            thread: Some(thread),
        }
    }
}

type TlsStream = rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>;

/// The WebSocket handshake over TLS, riding out read timeouts; `None` when the
/// client gives up (for instance because it refused the certificate).
fn accept_with_retries(
    tls: TlsStream,
    stop: &AtomicBool,
) -> Option<tungstenite::WebSocket<TlsStream>> {
    let mut attempt = tungstenite::accept(tls);
    for _ in 0..100 {
        match attempt {
            Ok(ws) => return Some(ws),
            Err(tungstenite::HandshakeError::Interrupted(mid)) if !stop.load(Ordering::SeqCst) => {
                attempt = mid.handshake();
            }
            Err(_) => return None,
        }
    }
    None
}

impl Drop for TlsFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn temp_file(contents: &str) -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "certwatch-ca-{}-{}.pem",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn wss_with_a_private_ca_delivers_alerts() {
    let pki = pki();
    let cert = Cert::new(&["tls.example.com"]);
    let feed = TlsFeed::start(&pki, vec![cert.frame()]);
    let ca_file = temp_file(&pki.ca_pem);
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let hook = FakeWebhook::start();
    let plain = crate::kit::FakeFeed::start();
    let url = format!("wss://localhost:{}/full-stream", feed.port);
    let svc = service::start(
        &db,
        &plain,
        Some(&hook),
        &[
            ("CERTSTREAM_URL", url.as_str()),
            ("CERTSTREAM_CA_FILE", ca_file.to_str().unwrap()),
            ("SUSPICIOUS_GRACE_S", "0"),
        ],
    );
    let alert = hook.recv(WAIT).expect("an alert read over wss://");
    assert_eq!(
        alert.json()["matched_sans"],
        serde_json::json!(["tls.example.com"])
    );
    assert_eq!(feed.connections.load(Ordering::SeqCst), 1);
    assert_eq!(plain.connections(), 0);
    assert_eq!(svc.metric("certwatch_ws_connected"), 1.0);
    let _ = std::fs::remove_file(ca_file);
}

#[test]
fn wss_refuses_a_certificate_from_an_unknown_ca() {
    let pki = pki();
    let feed = TlsFeed::start(&pki, vec![Cert::new(&["tls.example.com"]).frame()]);
    let db = TestDb::new();
    db.watch(&["example.com"]);
    let plain = crate::kit::FakeFeed::start();
    let url = format!("wss://localhost:{}/full-stream", feed.port);
    let svc = service::start(&db, &plain, None, &[("CERTSTREAM_URL", url.as_str())]);
    assert!(
        wait_until(WAIT, || feed.handshakes_failed.load(Ordering::SeqCst) >= 2),
        "the client retries"
    );
    assert_eq!(
        feed.connections.load(Ordering::SeqCst),
        0,
        "no WebSocket over an unverified certificate"
    );
    assert_eq!(svc.metric("certwatch_ws_connected"), 0.0);
    assert!(svc.metric("certwatch_ws_reconnects_total") >= 1.0);
}

#[test]
fn an_unreadable_ca_file_stops_start_up() {
    let db = TestDb::new();
    let env = [
        ("POSTGRES_DSN", db.dsn().to_string()),
        ("API_PORT", "0".to_string()),
        ("CERTSTREAM_CA_FILE", "/nonexistent/ca.pem".to_string()),
    ];
    let config = certwatch::Config::from_lookup(|name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    let (_trigger, shutdown) = certwatch::shutdown::channel();
    let err = certwatch::start(config, shutdown)
        .err()
        .expect("start-up fails");
    assert!(err.to_string().contains("CERTSTREAM_CA_FILE"), "{err}");
}

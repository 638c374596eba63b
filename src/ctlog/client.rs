//! The HTTP client for one CT log: `get-sth` and `get-entries` (RFC 6962), or
//! checkpoint, data tiles and issuers (static-ct-api). Blocking ureq, run on the
//! `backfill-<n>` and `tail-<n>` threads. Every body is bounded, requests are paced
//! per log and by the operator's budget (`OperatorPace`), a 429 or
//! 503 becomes [`ClientError::RateLimited`] and no request is sent until its
//! `Retry-After` has passed; redirects are not followed.

use super::LogKind;
use super::rfc6962::{self, DecodeError, Sth};
use super::tiles::{self, Checkpoint, DataTile, HashTile};
use super::tree_head::{self, HeadError, LogKey, TreeHead};
use lru::LruCache;
use sha2::{Digest, Sha256};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Wait assumed when a 429 or 503 carries no usable `Retry-After` (none, not a
/// number or date, zero, or a date in the past).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The longest `Retry-After` honoured; a log asking for more is asked again then.
pub const RETRY_AFTER_CAP: Duration = crate::outbound::RETRY_AFTER_CAP;

/// Largest operator contact string put in the User-Agent.
const MAX_CONTACT_LEN: usize = 200;

/// How the client treats one log.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Whole-request timeout (connect, send, read the body).
    pub timeout: Duration,
    /// Least time between the starts of two requests to this log.
    pub min_interval: Duration,
    /// Appended to the User-Agent (`certwatch/<version> (+<contact>)`) so a log
    /// operator can reach whoever runs this instance; printable ASCII only.
    pub contact: Option<String>,
    /// Largest `get-entries` body read (after decompression).
    pub max_entries_bytes: u64,
    /// Largest data tile read (after decompression).
    pub max_tile_bytes: u64,
    /// Issuer certificates kept in memory, by SHA-256.
    pub issuer_cache: NonZeroUsize,
    /// Shared by every client: requests to one operator's logs are spaced too.
    pub operator_pace: Option<Arc<OperatorPace>>,
}

/// The request budget of each operator, shared by the clients of all its logs: at
/// most `rate` requests a second over time, of which `burst` may go at once after
/// a quiet spell (the generic cell rate algorithm: each request takes the next
/// slot of an evenly spaced schedule, and may run up to `burst - 1` slots ahead of
/// it). Requests wait for their slot in the order they asked. Bounded: at most
/// `MAX_OPERATORS` operators are remembered.
#[derive(Debug)]
pub struct OperatorPace {
    interval: Duration,
    /// How far ahead of its evenly spaced slot a request may go.
    ahead: Duration,
    /// Per operator, the evenly spaced slot of its next request.
    next: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

impl OperatorPace {
    const MAX_OPERATORS: usize = 256;

    /// `rate` requests a second per operator (at least 1), `burst` at once (at least 1).
    pub fn new(rate: u32, burst: u32) -> OperatorPace {
        let interval = Duration::from_secs(1) / rate.max(1);
        OperatorPace {
            interval,
            ahead: interval * (burst.max(1) - 1),
            next: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Takes `operator`'s next slot; how long to wait for it from `now`.
    fn take(&self, operator: &str, now: Instant) -> Duration {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        if next.len() >= Self::MAX_OPERATORS && !next.contains_key(operator) {
            next.retain(|_, at| *at > now);
        }
        let even = next.get(operator).copied().unwrap_or(now).max(now);
        next.insert(operator.to_string(), even + self.interval);
        even.saturating_duration_since(now + self.ahead)
    }

    /// Takes `operator`'s next slot and sleeps until it.
    fn wait(&self, operator: &str) {
        let wait = self.take(operator, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            timeout: Duration::from_secs(30),
            min_interval: Duration::from_millis(250),
            contact: None,
            max_entries_bytes: 32 << 20,
            max_tile_bytes: 16 << 20,
            issuer_cache: NonZeroUsize::new(256).expect("non-zero"),
            operator_pace: None,
        }
    }
}

/// Largest `get-sth`, checkpoint or issuer body read.
const MAX_SMALL_BODY: u64 = 64 << 10;

/// Why a request to a log gave nothing usable.
#[derive(Debug)]
pub enum ClientError {
    /// 429 or 503: send nothing to this log for `retry_after` (its `Retry-After`,
    /// capped at [`RETRY_AFTER_CAP`], or [`DEFAULT_RETRY_AFTER`]). Also returned,
    /// without a request, by calls made before that time is up.
    RateLimited { status: u16, retry_after: Duration },
    /// Any other status outside 2xx; a 3xx too, since redirects are not followed.
    Status(u16),
    /// The body is longer than the limit for its kind.
    TooLarge { limit: u64 },
    /// Connection, TLS, timeout or protocol failure.
    Transport(ureq::Error),
    /// The body does not decode.
    Decode(DecodeError),
    /// An issuer whose bytes do not hash to the fingerprint it was fetched by.
    IssuerMismatch,
    /// A call that does not fit the log (wrong API, empty or reversed range).
    InvalidRequest(&'static str),
    /// A tree head whose signature does not verify with the log's key, or that
    /// is malformed.
    Head(HeadError),
    /// The log URL or the contact string cannot be used.
    InvalidConfig(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::RateLimited {
                status,
                retry_after,
            } => write!(
                f,
                "log rate limited (HTTP {status}): retry in {} s",
                retry_after.as_secs()
            ),
            ClientError::Status(status) => write!(f, "log answered HTTP {status}"),
            ClientError::TooLarge { limit } => write!(f, "log response over {limit} bytes"),
            ClientError::Transport(e) => write!(f, "log request failed: {e}"),
            ClientError::Decode(e) => write!(f, "log response: {e}"),
            ClientError::IssuerMismatch => f.write_str("issuer does not match its fingerprint"),
            ClientError::InvalidRequest(what) => write!(f, "invalid log request: {what}"),
            ClientError::Head(e) => write!(f, "log tree head: {e}"),
            ClientError::InvalidConfig(what) => write!(f, "invalid log client config: {what}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<DecodeError> for ClientError {
    fn from(e: DecodeError) -> ClientError {
        ClientError::Decode(e)
    }
}

impl From<ureq::Error> for ClientError {
    fn from(e: ureq::Error) -> ClientError {
        match e {
            ureq::Error::BodyExceedsLimit(limit) => ClientError::TooLarge { limit },
            e => ClientError::Transport(e),
        }
    }
}

/// A data tile's bytes and the tile they are: the full tile when the partial
/// one asked for is gone (404) because the log has since filled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileBody {
    pub tile: DataTile,
    pub body: Vec<u8>,
}

/// The client for one log. Not shared between threads; clones of its agent
/// would share a connection pool, but the pacing is per client.
pub struct LogClient {
    agent: ureq::Agent,
    /// The log's URL without a trailing slash.
    base: String,
    kind: LogKind,
    min_interval: Duration,
    max_entries_bytes: u64,
    max_tile_bytes: u64,
    next_request: Option<Instant>,
    blocked_until: Option<(Instant, u16)>,
    issuers: LruCache<[u8; 32], Arc<[u8]>>,
    requests: u64,
    /// Body bytes read since `take_bytes` last asked.
    bytes: u64,
    /// The operator's shared pacing, with the operator's name.
    operator: Option<(Arc<OperatorPace>, String)>,
}

impl LogClient {
    /// A client for the log at `url` (`http` or `https`, no credentials).
    pub fn new(url: &str, kind: LogKind, config: &ClientConfig) -> Result<LogClient, ClientError> {
        let base = url.trim().trim_end_matches('/');
        let Some((scheme, rest)) = base.split_once("://") else {
            return Err(ClientError::InvalidConfig("log url has no scheme"));
        };
        if !matches!(scheme, "http" | "https") {
            return Err(ClientError::InvalidConfig("log url is not http(s)"));
        }
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() || authority.contains('@') {
            return Err(ClientError::InvalidConfig(
                "log url has no host or has credentials",
            ));
        }
        if rest.contains(['?', '#']) {
            return Err(ClientError::InvalidConfig(
                "log url has a query or fragment",
            ));
        }
        let mut user_agent = crate::outbound::USER_AGENT.to_string();
        if let Some(contact) = config
            .contact
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            if contact.len() > MAX_CONTACT_LEN
                || !contact.bytes().all(|b| (0x20..0x7f).contains(&b))
            {
                return Err(ClientError::InvalidConfig(
                    "contact must be printable ascii of at most 200 bytes",
                ));
            }
            user_agent.push_str(&format!(" (+{contact})"));
        }
        let agent = crate::outbound::plain_agent(&user_agent, config.timeout);
        Ok(LogClient {
            agent,
            base: base.to_string(),
            kind,
            min_interval: config.min_interval,
            max_entries_bytes: config.max_entries_bytes,
            max_tile_bytes: config.max_tile_bytes,
            next_request: None,
            blocked_until: None,
            issuers: LruCache::new(config.issuer_cache),
            requests: 0,
            bytes: 0,
            operator: None,
        })
    }

    /// Spaces this client's requests with the other logs of `operator` too (when
    /// the configuration shares an `OperatorPace`).
    pub fn with_operator(mut self, operator: &str, config: &ClientConfig) -> LogClient {
        self.operator = config
            .operator_pace
            .clone()
            .map(|pace| (pace, operator.to_string()));
        self
    }

    /// Body bytes read since the last call.
    pub fn take_bytes(&mut self) -> u64 {
        std::mem::take(&mut self.bytes)
    }

    pub fn kind(&self) -> LogKind {
        self.kind
    }

    /// The log's URL as used (no trailing slash).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Requests sent so far (not counting those refused while rate limited).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// RFC 6962 `get-sth`: the tree size, signature not verified (see
    /// `tree_head` for the verified read).
    pub fn get_sth(&mut self) -> Result<Sth, ClientError> {
        self.expect_kind(LogKind::Rfc6962)?;
        let body = self.get("ct/v1/get-sth", MAX_SMALL_BODY)?;
        Ok(rfc6962::parse_sth(&body)?)
    }

    /// RFC 6962 `get-entries` for `start..=end`, the body undecoded (see
    /// `entry::certificates_from_get_entries`). The log may return fewer entries
    /// than asked: the caller continues after the last one it got.
    pub fn get_entries(&mut self, start: u64, end: u64) -> Result<Vec<u8>, ClientError> {
        self.expect_kind(LogKind::Rfc6962)?;
        if start > end {
            return Err(ClientError::InvalidRequest("get-entries start after end"));
        }
        let path = format!("ct/v1/get-entries?start={start}&end={end}");
        self.get(&path, self.max_entries_bytes)
    }

    /// The log's signed tree head, its signature verified with `key`: RFC 6962
    /// `get-sth` or the static-ct checkpoint, by the log's API.
    pub fn tree_head(&mut self, key: &LogKey) -> Result<TreeHead, ClientError> {
        match self.kind {
            LogKind::Rfc6962 => {
                let body = self.get("ct/v1/get-sth", MAX_SMALL_BODY)?;
                tree_head::verify_sth(key, &body).map_err(ClientError::Head)
            }
            LogKind::Tiled => {
                let body = self.get("checkpoint", tiles::MAX_CHECKPOINT_BYTES as u64)?;
                tree_head::verify_checkpoint(key, &body).map_err(ClientError::Head)
            }
        }
    }

    /// RFC 6962 `get-proof-by-hash`: the index of the leaf with this leaf hash in
    /// the tree of `tree_size`, and its audit path (unchecked: the caller checks
    /// it against a verified root).
    pub fn proof_by_hash(
        &mut self,
        leaf_hash: &[u8; 32],
        tree_size: u64,
    ) -> Result<(u64, Vec<[u8; 32]>), ClientError> {
        use base64::Engine;
        self.expect_kind(LogKind::Rfc6962)?;
        // Standard base64, its `+`, `/` and `=` percent-encoded for the query.
        let hash = base64::engine::general_purpose::STANDARD
            .encode(leaf_hash)
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        let path = format!("ct/v1/get-proof-by-hash?hash={hash}&tree_size={tree_size}");
        let body = self.get(&path, MAX_SMALL_BODY)?;
        Ok(rfc6962::parse_proof_by_hash(&body)?)
    }

    /// RFC 6962 `get-sth-consistency` between two tree sizes (unchecked).
    pub fn consistency(&mut self, first: u64, second: u64) -> Result<Vec<[u8; 32]>, ClientError> {
        self.expect_kind(LogKind::Rfc6962)?;
        let path = format!("ct/v1/get-sth-consistency?first={first}&second={second}");
        let body = self.get(&path, MAX_SMALL_BODY)?;
        Ok(rfc6962::parse_consistency(&body)?)
    }

    /// A static-ct hash tile's hashes. A partial tile the log no longer serves
    /// (404, filled since) is read as the full tile, whose first hashes are the
    /// same.
    pub fn hash_tile(&mut self, tile: HashTile) -> Result<Vec<[u8; 32]>, ClientError> {
        self.expect_kind(LogKind::Tiled)?;
        const MAX_HASH_TILE: u64 = 256 * 32;
        let body = match self.get(&tile.path(), MAX_HASH_TILE) {
            Err(ClientError::Status(404)) if tile.is_partial() => {
                self.get(&tile.full().path(), MAX_HASH_TILE)?
            }
            result => result?,
        };
        Ok(tiles::decode_hash_tile(&body, tile)?)
    }

    /// static-ct `checkpoint`, its signature not verified (see `tree_head` for
    /// the verified read).
    pub fn checkpoint(&mut self) -> Result<Checkpoint, ClientError> {
        self.expect_kind(LogKind::Tiled)?;
        let body = self.get("checkpoint", tiles::MAX_CHECKPOINT_BYTES as u64)?;
        Ok(tiles::parse_checkpoint(&body)?)
    }

    /// A data tile. A partial tile the log no longer serves (404, it has been
    /// filled since) is fetched as the full tile instead; [`TileBody::tile`] says
    /// which one the bytes are.
    pub fn data_tile(&mut self, tile: DataTile) -> Result<TileBody, ClientError> {
        self.expect_kind(LogKind::Tiled)?;
        if tile.width == 0 || u64::from(tile.width) > tiles::TILE_WIDTH {
            return Err(ClientError::InvalidRequest("tile width out of 1..=256"));
        }
        match self.get(&tile.path(), self.max_tile_bytes) {
            Err(ClientError::Status(404)) if tile.is_partial() => {
                let full = DataTile::full(tile.index);
                let body = self.get(&full.path(), self.max_tile_bytes)?;
                Ok(TileBody { tile: full, body })
            }
            result => Ok(TileBody {
                tile,
                body: result?,
            }),
        }
    }

    /// The issuer certificate with this SHA-256, from the cache or the log's
    /// `issuer/<hex>`; a body that hashes to anything else is refused.
    pub fn issuer(&mut self, fingerprint: &[u8; 32]) -> Result<Arc<[u8]>, ClientError> {
        self.expect_kind(LogKind::Tiled)?;
        if let Some(der) = self.issuers.get(fingerprint) {
            return Ok(der.clone());
        }
        let path = format!("issuer/{}", crate::hex::encode(fingerprint));
        let body = self.get(&path, MAX_SMALL_BODY)?;
        if Sha256::digest(&body).as_slice() != fingerprint {
            return Err(ClientError::IssuerMismatch);
        }
        let der: Arc<[u8]> = body.into();
        self.issuers.put(*fingerprint, der.clone());
        Ok(der)
    }

    fn expect_kind(&self, kind: LogKind) -> Result<(), ClientError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(ClientError::InvalidRequest("not this log's api"))
        }
    }

    /// One GET under the log's URL: refused while rate limited, paced, bounded.
    fn get(&mut self, path: &str, limit: u64) -> Result<Vec<u8>, ClientError> {
        let now = Instant::now();
        if let Some((until, status)) = self.blocked_until {
            if now < until {
                return Err(ClientError::RateLimited {
                    status,
                    retry_after: until - now,
                });
            }
            self.blocked_until = None;
        }
        if let Some(next) = self.next_request.filter(|next| *next > now) {
            std::thread::sleep(next - now);
        }
        if let Some((pace, operator)) = &self.operator {
            pace.wait(operator);
        }
        self.next_request = Some(Instant::now() + self.min_interval);
        self.requests += 1;

        let url = format!("{}/{path}", self.base);
        let mut response = self.agent.get(&url).call()?;
        let status = response.status().as_u16();
        if status == 429 || status == 503 {
            // A Retry-After of zero or in the past says nothing usable: asked
            // again at once, a log that keeps refusing would be hammered.
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::outbound::parse_retry_after)
                .filter(|wait| !wait.is_zero())
                .unwrap_or(DEFAULT_RETRY_AFTER)
                .clamp(self.min_interval, RETRY_AFTER_CAP);
            self.blocked_until = Some((Instant::now() + retry_after, status));
            return Err(ClientError::RateLimited {
                status,
                retry_after,
            });
        }
        if !(200..300).contains(&status) {
            return Err(ClientError::Status(status));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()?;
        self.bytes += body.len() as u64;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unusable_urls_and_contacts() {
        let config = ClientConfig::default();
        for bad in [
            "ct.example/log",
            "ftp://ct.example/log",
            "https://user:pw@ct.example/log",
            "https:///log",
            "https://ct.example/log?x=1",
        ] {
            assert!(
                matches!(
                    LogClient::new(bad, LogKind::Rfc6962, &config),
                    Err(ClientError::InvalidConfig(_))
                ),
                "{bad}"
            );
        }
        let client = LogClient::new("https://ct.example/log/", LogKind::Tiled, &config).unwrap();
        assert_eq!(client.url(), "https://ct.example/log");
        for contact in ["a\r\nX-Evil: 1", &"x".repeat(201), "caf\u{e9}"] {
            let config = ClientConfig {
                contact: Some(contact.to_string()),
                ..ClientConfig::default()
            };
            assert!(LogClient::new("https://ct.example", LogKind::Tiled, &config).is_err());
        }
    }

    /// An operator's budget: a burst at once after a quiet spell, then one slot
    /// per interval, each operator on its own; a quiet spell refills the burst.
    #[test]
    fn an_operators_budget_allows_its_burst_then_its_rate() {
        let pace = OperatorPace::new(20, 5);
        let t0 = Instant::now();
        let ms = |n: u64| Duration::from_millis(n);
        let waits: Vec<Duration> = (0..8).map(|_| pace.take("A", t0)).collect();
        assert_eq!(
            waits,
            [ms(0), ms(0), ms(0), ms(0), ms(0), ms(50), ms(100), ms(150)]
        );
        assert_eq!(pace.take("B", t0), Duration::ZERO, "another operator");
        // Eight slots were taken by t0 + 400 ms; a second later the burst is back.
        let later = t0 + Duration::from_millis(1400);
        let waits: Vec<Duration> = (0..6).map(|_| pace.take("A", later)).collect();
        assert_eq!(waits, [ms(0), ms(0), ms(0), ms(0), ms(0), ms(50)]);
        // Over a long run, the rate: 200 requests asked at once are spread over 10 s.
        let pace = OperatorPace::new(20, 5);
        let last = (0..200).map(|_| pace.take("A", t0)).max().unwrap();
        assert_eq!(last, ms(199 * 50 - 4 * 50));
    }

    #[test]
    fn wrong_api_is_refused_without_a_request() {
        let config = ClientConfig::default();
        let mut client = LogClient::new("http://127.0.0.1:9", LogKind::Tiled, &config).unwrap();
        assert!(matches!(
            client.get_sth(),
            Err(ClientError::InvalidRequest(_))
        ));
        let mut client = LogClient::new("http://127.0.0.1:9", LogKind::Rfc6962, &config).unwrap();
        assert!(matches!(
            client.get_entries(5, 4),
            Err(ClientError::InvalidRequest(_))
        ));
        assert!(matches!(
            client.checkpoint(),
            Err(ClientError::InvalidRequest(_))
        ));
        assert_eq!(client.requests(), 0);
    }
}

//! Pipeline: makes every channel, spawns every thread, and owns the shutdown
//! order. Runs on the caller's thread (`main`, or a test).
//!
//! ```text
//! signal --Shutdown (flag + closed channel)--> every stage
//! feed --Batch of frames, bounded, try_send--> worker x N --+
//! backfill (gaps due: get-entries, tiles) -----------------+--sources::Intake--> Classifier::consider
//!     --row written--> Fanout --Job, bounded--> deliver-1..N (one per target)
//!     --Pending--> grace --Classifier::conclude--> Fanout
//! timer: watch-list refresh (atomic swap), cleanup, sweep --Fanout
//! http-guard (public port) --one request line--> tiny_http on a private socket --> http-0, http-1
//! ```
//! Shutdown spreads by disconnection: the feed stops and drops its sender, the
//! workers drain and drop theirs, backfill stops at its next gap, grace records
//! what it held, the timer stops; the drain saves the coverage positions;
//! with the last `Fanout` gone the target threads make their last attempts within
//! the drain budget; http stops last. No stage keeps a stray sender.

pub mod command;

use crate::classify::{Classifier, Dedupe};
use crate::clock::unix_now;
use crate::config::Config;
use crate::coverage::{self, Coverage};
use crate::deliver::{self, Deliverer, Target};
use crate::grace::{self, HeldAlerts, Pending};
use crate::http::{self, Http, Upstream};
use crate::http_guard::{self, Guard};
use crate::matcher::WatchList;
use crate::metrics::Metrics;
use crate::outbound;
use crate::payload::{Payload, Signer};
use crate::shutdown::Shutdown;
use crate::sources::Intake;
use crate::sources::backfill;
use crate::sources::feed::reader::{self as feed, Feed};
use crate::sources::feed::worker::{self, Batch, QueueBudget};
use crate::ssrf;
use crate::store::{Store, StoreError};
use crate::threads::{Health, spawn_stage};
use crate::timer::{self, Sweep, Timer, WatchRefresher};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Frames the feed may queue ahead of the workers before it drops...
pub const FRAME_QUEUE: usize = 2048;
/// ...and their bytes (about 900 full-stream messages of 9 KB): what bounds
/// memory under a flood.
pub const FRAME_QUEUE_BYTES: usize = 8 << 20;
/// Sightings waiting out their grace period beyond which workers wait.
const PENDING_QUEUE: usize = 4096;
/// Requests to the logs of one operator, all of this instance's readers (tail
/// threads, backfill fetchers) together: at most this many a second...
const OPERATOR_RATE: u32 = 25;
/// ...of which this many may go at once after a quiet spell.
const OPERATOR_BURST: u32 = 25;
/// How long the drain at shutdown may take before stuck threads are abandoned.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the http threads may take to stop once asked (they see the flag
/// within 100 ms whatever clients do); past it they are abandoned.
const HTTP_STOP_TIMEOUT: Duration = Duration::from_secs(2);
const DB_RETRY_MAX: Duration = Duration::from_secs(30);

/// Why the service could not start.
#[derive(Debug)]
pub enum Error {
    /// The API port could not be bound.
    Bind(http_guard::BindError),
    /// The private socket tiny_http serves on could not be set up.
    Upstream(crate::http::UpstreamError),
    /// A thread could not be started (the task limit, most likely).
    Spawn(std::io::Error),
    /// The database could not be prepared: the schema is missing and could not
    /// be applied, or the DSN does not parse.
    Database(StoreError),
    /// The feed's TLS settings could not be built (`CERTSTREAM_CA_FILE`).
    Tls(feed::CaFileError),
    /// A webhook target failed the `WEBHOOK_DENY_PRIVATE` check: refused or
    /// unusable (the configuration can never work), or its host not resolved (a
    /// later start may succeed).
    Target(ssrf::TargetError),
    /// These pipeline threads stopped while the service ran (a panic): it drained
    /// and stopped, for its supervisor to start it again.
    StageDied(Vec<String>),
}

impl Error {
    /// The process exit code: 2 when the configuration can never work (a
    /// restart will not help), 1 for a runtime failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Target(e) if !e.transient => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind(e) => write!(f, "{e}"),
            Error::Upstream(e) => write!(f, "{e}"),
            Error::Spawn(e) => write!(f, "cannot start a thread: {e}"),
            Error::Database(e) => write!(f, "{e}"),
            Error::Tls(e) => write!(f, "{e}"),
            Error::Target(e) => write!(f, "{e}"),
            Error::StageDied(threads) => write!(
                f,
                "pipeline thread {} stopped while running; certwatch stopped (exit 1)",
                threads.join(", ")
            ),
        }
    }
}

impl std::error::Error for Error {}

/// A started service.
pub struct Service {
    http_addr: SocketAddr,
    main: JoinHandle<Result<(), Error>>,
}

impl Service {
    /// Where `/healthz` and `/metrics` are served (useful with `API_PORT=0`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Blocks until the service has shut down.
    pub fn wait(self) -> Result<(), Error> {
        self.main
            .join()
            .unwrap_or_else(|_| panic!("the pipeline thread panicked"))
    }
}

/// Sightings still waiting out their grace period when the last process stopped
/// (however it stopped) go back to the grace thread, due when they were due.
fn resume_pending(store: &Store, pending: &crossbeam_channel::Sender<Pending>) {
    let saved = match store.load_pending(PENDING_QUEUE as i64) {
        Ok(saved) => saved,
        Err(e) => {
            log::warn!("pending sightings not resumed (they stay saved): {e}");
            return;
        }
    };
    if saved.is_empty() {
        return;
    }
    log::info!(
        "resuming {} certificates that were waiting out their grace period",
        saved.len()
    );
    let now_ms = crate::clock::unix_now_ms();
    for (sighting, due_ms) in saved {
        let wait = Duration::from_millis(due_ms.saturating_sub(now_ms).max(0) as u64);
        let due = Instant::now() + wait;
        if pending.send(Pending { due, sighting }).is_err() {
            return;
        }
    }
}

/// Runs the service until `shutdown` fires and the pipeline has drained.
pub fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    start(config, shutdown)?.wait()
}

/// Binds the HTTP port, then runs everything else on a `pipeline` thread.
pub fn start(config: Config, shutdown: Shutdown) -> Result<Service, Error> {
    start_with_lookup(config, shutdown, ssrf::system_lookup())
}

/// `start` with the host-name lookup the webhook guard uses (tests fake it).
pub fn start_with_lookup(
    config: Config,
    shutdown: Shutdown,
    lookup: ssrf::Lookup,
) -> Result<Service, Error> {
    // Both rustls users (feed, database) share the ring provider; a second
    // install in the same process (tests) is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = feed::tls_config(config.certstream_ca_file.as_deref()).map_err(Error::Tls)?;
    let agent = webhook_agent(&config, lookup)?;
    let listener = http_guard::bind(config.api_host, config.api_port).map_err(Error::Bind)?;
    let http_addr = listener.local_addr().map_err(|source| {
        Error::Bind(http_guard::BindError {
            addr: std::net::SocketAddr::new(config.api_host, config.api_port),
            source,
        })
    })?;
    let upstream = Arc::new(Upstream::new().map_err(Error::Upstream)?);
    log::info!(
        "certwatch {} listening on http://{http_addr}",
        env!("CARGO_PKG_VERSION")
    );
    let main = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || pipeline(config, shutdown, (listener, upstream), tls, agent))
        .map_err(Error::Spawn)?;
    Ok(Service { http_addr, main })
}

/// The webhook agent (`None` without targets), once every target passed the
/// `WEBHOOK_DENY_PRIVATE` check.
fn webhook_agent(config: &Config, lookup: ssrf::Lookup) -> Result<Option<ureq::Agent>, Error> {
    if config.webhook_deny_private {
        for url in &config.webhook_urls {
            ssrf::check_target(url.expose(), &lookup).map_err(Error::Target)?;
        }
    }
    Ok((!config.webhook_urls.is_empty()).then(|| {
        outbound::webhook_agent(config.webhook_timeout, config.webhook_deny_private, lookup)
    }))
}

fn pipeline(
    config: Config,
    shutdown: Shutdown,
    (listener, upstream): (TcpListener, Arc<Upstream>),
    tls: Option<Arc<rustls::ClientConfig>>,
    agent: Option<ureq::Agent>,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::default());
    metrics.feed_enabled.set(i64::from(config.ct_source.feed()));
    let health = Arc::new(Health::default());
    let instance = instance_name(listener.local_addr().ok());
    // Frames are bounded by the budget; a batch holds at least one, so the
    // channel never fills before the budget does.
    let budget = Arc::new(QueueBudget::new(FRAME_QUEUE, FRAME_QUEUE_BYTES));
    let http_stage = {
        let http = Arc::new(Http {
            upstream: upstream.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
            feed_silence: config.feed_silence,
            feed_enabled: config.ct_source.feed(),
            started_at: unix_now(),
            worker_queue: budget.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        });
        let guard = Guard {
            listener,
            upstream,
            metrics: metrics.clone(),
            stop: http.stop.clone(),
            max_connections: http_guard::connection_cap(),
        };
        HttpStage::start(http, guard, &health)
    };
    warn_about_settings(&config);

    let pool_size = u32::try_from(config.workers + 4).unwrap_or(64);
    let store = match Store::new(config.postgres_dsn.expose(), pool_size) {
        Ok(store) => store.with_instance(&instance),
        Err(e) => {
            http_stage.stop(Instant::now());
            return Err(Error::Database(e));
        }
    };
    let Loaded {
        watch,
        inventory,
        refresher,
    } = match load(&store, &metrics, &health, &shutdown) {
        Ok(Some(loaded)) => loaded,
        Ok(None) => {
            http_stage.stop(Instant::now());
            return Ok(());
        }
        Err(e) => {
            http_stage.stop(Instant::now());
            return Err(Error::Database(e));
        }
    };
    match store.reclaim_own_leases() {
        Ok(0) => {}
        Ok(n) => {
            log::info!("{n} alerts this instance was delivering when it stopped are due again now")
        }
        Err(e) => log::warn!("delivery leases not reclaimed (they end on their own): {e}"),
    }
    let stages = spawn_stages(Parts {
        config,
        shutdown: shutdown.clone(),
        metrics,
        health: health.clone(),
        store,
        watch,
        inventory,
        refresher,
        tls,
        agent,
        budget,
    });
    let died = drain(stages, &shutdown, &health);
    http_stage.stop(Instant::now());
    match died {
        None => {
            log::info!("certwatch stopped");
            Ok(())
        }
        Some(threads) => Err(Error::StageDied(threads)),
    }
}

/// The watch list, the inventory snapshot and their refresher, loaded.
struct Loaded {
    watch: Arc<ArcSwap<WatchList>>,
    inventory: Arc<ArcSwapOption<crate::alert::InventorySnapshot>>,
    refresher: WatchRefresher,
}

/// Waits for the database (`wait_for_the_database`) and loads the watch list and
/// the inventory snapshot; `None` when shutdown came first.
fn load(
    store: &Store,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    shutdown: &Shutdown,
) -> Result<Option<Loaded>, StoreError> {
    let watch = Arc::new(ArcSwap::from_pointee(WatchList::default()));
    let inventory = Arc::new(ArcSwapOption::empty());
    let mut refresher = WatchRefresher::new(
        store.clone(),
        watch.clone(),
        metrics.clone(),
        health.clone(),
        inventory.clone(),
    );
    let ready = wait_for_the_database(store, &mut refresher, metrics, health, shutdown)?;
    Ok(ready.then_some(Loaded {
        watch,
        inventory,
        refresher,
    }))
}

/// What the stages are built from once the database is ready.
struct Parts {
    config: Config,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    store: Store,
    watch: Arc<ArcSwap<WatchList>>,
    inventory: Arc<ArcSwapOption<crate::alert::InventorySnapshot>>,
    refresher: WatchRefresher,
    tls: Option<Arc<rustls::ClientConfig>>,
    agent: Option<ureq::Agent>,
    budget: Arc<QueueBudget>,
}

/// The pipeline's threads once started, and the channel each reports its end on;
/// what the drain saves once they are done (the per-log coverage positions).
struct Stages {
    threads: Vec<JoinHandle<()>>,
    done: crossbeam_channel::Receiver<String>,
    store: Store,
    coverage: Arc<Coverage>,
}

/// This instance's name in delivery leases: the host name and the API port,
/// the same across restarts of one deployment, different for two replicas on
/// one host (they cannot share a port).
fn instance_name(api: Option<SocketAddr>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "localhost".into()
    } else {
        host
    };
    match api {
        Some(addr) => format!("{host}:{}", addr.port()),
        None => host,
    }
}

/// Settings that work but deserve a word at start-up.
fn warn_about_settings(config: &Config) {
    if config.ct_source.logs() && config.ct_contact.is_none() {
        log::warn!(
            "CT_SOURCE={} reads the CT logs directly, and CT_CONTACT is not set: logs that give \
             requests without a contact a small shared budget (Sunlight's) rate-limit certwatch \
             sooner, and their operators cannot reach you; set CT_CONTACT to an e-mail or URL",
            config.ct_source.as_str()
        );
    }
    if config.ct_source.feed() && config.certstream_url.contains("/domains-only") {
        log::warn!(
            "CERTSTREAM_URL points at a domains-only stream: its messages carry no fingerprint or serial, \
             so nothing can be classified or alerted; use /full-stream (or / for lite)"
        );
    }
    if config.webhook_urls.is_empty() {
        log::warn!("WEBHOOK_URL is not set: observer mode, alerts are recorded and logged only");
    }
    for (var, key) in [
        ("WEBHOOK_SECRET", &config.webhook_secret),
        ("WEBHOOK_SECRET_PREVIOUS", &config.webhook_secret_previous),
    ] {
        if key.as_ref().is_some_and(|k| k.is_unpadded()) {
            log::warn!(
                "{var} is whsec_ with unpadded base64: the Python Standard Webhooks library \
                 accepts it, the JavaScript, Go and Rust ones refuse it; add the = padding"
            );
        }
    }
}

/// Retries (1 s doubling to 30 s) until the database answers, has the schema and
/// gave the watch list: `Ok(true)`; `Ok(false)` when shutdown came first; `Err`
/// when the schema cannot be applied (a retry would not help).
fn wait_for_the_database(
    store: &Store,
    refresher: &mut WatchRefresher,
    metrics: &Metrics,
    health: &Health,
    shutdown: &Shutdown,
) -> Result<bool, StoreError> {
    let mut delay = Duration::from_secs(1);
    let mut last_error = String::new();
    loop {
        let ready = store
            .ping()
            .and_then(|()| store.ensure_schema())
            .and_then(|()| refresher.refresh());
        match ready {
            Ok(entries) => {
                health.db_reachable.store(true, Ordering::SeqCst);
                log::info!("database ready; watching {entries} entries");
                return Ok(true);
            }
            Err(e @ (StoreError::Schema(_) | StoreError::InvalidDsn)) => return Err(e),
            Err(e) => {
                metrics.db_error(crate::metrics::DbOp::Connect);
                health.db_reachable.store(false, Ordering::SeqCst);
                // A failed connection's cause is logged by the store when it first
                // appears or changes; any other error when it differs from the last.
                let message = e.to_string();
                if matches!(e, StoreError::Unavailable(_)) || last_error == message {
                    log::debug!("database not ready, retrying in {}s: {e}", delay.as_secs());
                } else {
                    log::warn!("database not ready, retrying in {}s: {e}", delay.as_secs());
                }
                last_error = message;
                if shutdown.sleep(delay) {
                    return Ok(false);
                }
                delay = (delay * 2).min(DB_RETRY_MAX);
            }
        }
    }
}

/// Spawns every stage, upstream last: delivery targets, grace, workers, timer,
/// then the feed. Sightings left pending by the last process go to grace first.
fn spawn_stages(p: Parts) -> Stages {
    let Parts {
        config,
        shutdown,
        metrics,
        health,
        store,
        watch,
        inventory,
        refresher,
        tls,
        agent,
        budget,
    } = p;
    let (frames_tx, frames_rx) = crossbeam_channel::bounded::<Batch>(FRAME_QUEUE);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<String>();
    let mut stages: Vec<JoinHandle<()>> = Vec::new();
    let parts = spawn_classification(
        &config,
        Common {
            shutdown: &shutdown,
            metrics: &metrics,
            health: &health,
            store: &store,
        },
        Lists {
            inventory,
            watch: watch.clone(),
        },
        agent,
        Spawned {
            threads: &mut stages,
            done: &done_tx,
        },
    );
    // Coverage: the log list and gap tracker the workers record into, and the
    // `backfill` thread that fetches what the feed skipped.
    let coverage = Arc::new(Coverage::new(Default::default()));
    {
        let backfill = backfill_of(&config, &parts, coverage.clone(), &shutdown);
        stages.push(spawn_stage("backfill", &health, &done_tx, move || {
            backfill::thread::run_backfill(backfill)
        }));
    }
    let Classification {
        intake,
        deliver_tx,
        targets,
    } = parts;
    // Without a feed (CT_SOURCE=logs) there is nothing for workers to read.
    let workers = if config.ct_source.feed() {
        config.workers
    } else {
        0
    };
    for n in 0..workers {
        let (intake, rx, budget, coverage) = (
            intake.clone(),
            frames_rx.clone(),
            budget.clone(),
            coverage.clone(),
        );
        stages.push(spawn_stage(
            &format!("worker-{n}"),
            &health,
            &done_tx,
            move || worker::run_worker(intake, rx, budget, coverage),
        ));
    }
    resume_pending(&store, &intake.pending);
    // From here on only the stages hold the classifier and the channel ends.
    drop((intake, frames_rx));
    // A target's attempts may each take the timeout, plus the backoff between
    // them; the target threads work in parallel.
    let round = config.webhook_timeout * deliver::ATTEMPTS + Duration::from_secs(60);
    let sweep = Sweep {
        store: store.clone(),
        metrics: metrics.clone(),
        deliver: deliver_tx,
        targets,
        interval: config.redelivery_interval,
        max_age: config.redelivery_max_age,
        lease: round.max(crate::store::FIRST_DELIVERY_LEASE),
    };
    let timer = Timer {
        refresher,
        sweep,
        refresh_interval: config.watch_refresh_interval,
        cleanup_interval: config.cleanup_interval,
        retention: config.alert_retention,
        shutdown: shutdown.clone(),
    };
    stages.push(spawn_stage("timer", &health, &done_tx, move || {
        timer::run_timer(timer)
    }));
    let feed = Feed {
        url: config.certstream_url.clone(),
        tls,
        ping_interval: config.feed_ping_interval,
        silence: config.feed_silence,
        metrics: metrics.clone(),
        health: health.clone(),
        shutdown: shutdown.clone(),
        budget,
        coverage: coverage.clone(),
    };
    if config.ct_source.feed() {
        stages.push(spawn_stage("feed", &health, &done_tx, move || {
            feed::run_feed(feed, frames_tx)
        }));
    } else {
        drop((feed, frames_tx));
        log::info!("CT_SOURCE=logs: no certstream feed; every usable log of the list is tailed");
    }
    drop(done_tx);
    Stages {
        threads: stages,
        done: done_rx,
        store,
        coverage,
    }
}

/// What every stage is built with.
#[derive(Clone, Copy)]
struct Common<'a> {
    shutdown: &'a Shutdown,
    metrics: &'a Arc<Metrics>,
    health: &'a Arc<Health>,
    store: &'a Store,
}

/// The watch list and the inventory snapshot classification reads.
struct Lists {
    inventory: Arc<ArcSwapOption<crate::alert::InventorySnapshot>>,
    watch: Arc<ArcSwap<WatchList>>,
}

/// Where spawned stages go: their handles, and the channel each reports its end on.
struct Spawned<'a> {
    threads: &'a mut Vec<JoinHandle<()>>,
    done: &'a crossbeam_channel::Sender<String>,
}

/// What classifies and records a matched certificate, shared by the workers and
/// `backfill`: the classifier, the grace channel, the held alerts, the delivery
/// fan-out and its targets.
struct Classification {
    intake: Intake,
    deliver_tx: Option<deliver::Fanout>,
    targets: Vec<Target>,
}

/// Spawns the delivery target threads and the `grace` thread, and builds the
/// classifier they serve (the service and `certwatch backfill` both use them).
fn spawn_classification(
    config: &Config,
    common: Common<'_>,
    lists: Lists,
    agent: Option<ureq::Agent>,
    spawned: Spawned<'_>,
) -> Classification {
    let Common {
        shutdown,
        metrics,
        health,
        store,
    } = common;
    let Lists { inventory, watch } = lists;
    let Spawned {
        threads: stages,
        done: done_tx,
    } = spawned;
    let (pending_tx, pending_rx) = crossbeam_channel::bounded::<Pending>(PENDING_QUEUE);
    let targets: Vec<Target> = config
        .webhook_urls
        .iter()
        .enumerate()
        .map(|(i, url)| Target::new(i, url.expose()))
        .collect();
    let deliver_tx = (!targets.is_empty()).then(|| {
        let (fanout, threads) = deliver::targets(Deliverer {
            targets: targets.clone(),
            signer: config.webhook_secret.clone().map(|current| Signer {
                current,
                previous: config.webhook_secret_previous.clone(),
            }),
            agent: agent.clone().expect("an agent exists when targets do"),
            store: store.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            timeout: config.webhook_timeout,
            redelivery_interval: config.redelivery_interval,
        });
        for thread in threads {
            let name = thread.name.clone();
            stages.push(spawn_stage(&name, health, done_tx, move || {
                deliver::run_target(thread)
            }));
        }
        fanout
    });
    let classifier = Arc::new(Classifier {
        inventory,
        watch: watch.clone(),
        dedupe: Dedupe::default(),
        store: store.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        grace: config.suspicious_grace,
        payload: Payload {
            format: config.webhook_format,
        },
        deliver: deliver_tx.clone(),
        target_keys: targets.iter().map(|t| t.key.clone()).collect(),
    });
    let held = Arc::new(HeldAlerts::default());
    {
        let (cls, held) = (classifier.clone(), held.clone());
        stages.push(spawn_stage("grace", health, done_tx, move || {
            grace::run_grace(cls, pending_rx, held)
        }));
    }
    Classification {
        intake: Intake {
            cls: classifier,
            pending: pending_tx,
            held,
        },
        deliver_tx,
        targets,
    }
}

/// What the `backfill` thread (or the `certwatch backfill` command) works with.
fn backfill_of(
    config: &Config,
    parts: &Classification,
    coverage: Arc<Coverage>,
    shutdown: &Shutdown,
) -> backfill::Backfill {
    backfill::Backfill {
        intake: parts.intake.clone(),
        coverage,
        list_source: config.ct_log_list.clone(),
        max_gap: config.backfill_max_gap,
        client: crate::ctlog::client::ClientConfig {
            contact: config.ct_contact.clone(),
            operator_pace: Some(Arc::new(crate::ctlog::client::OperatorPace::new(
                OPERATOR_RATE,
                OPERATOR_BURST,
            ))),
            ..Default::default()
        },
        feed_holes: config.ct_feed_holes,
        source: config.ct_source,
        not_on_feed_after: config.not_on_feed_after,
        unreachable_after: config.log_unreachable_after,
        shutdown: shutdown.clone(),
    }
}

/// How often the pipeline looks for a stage that died.
const STAGE_CHECK: Duration = Duration::from_millis(250);

/// Waits for shutdown, then for the stages to finish their work, at most
/// `DRAIN_TIMEOUT`; what is still running then is named and abandoned. A stage
/// (the http ones too) that ends before shutdown, by a panic or otherwise, starts
/// the same drain, and its name is returned: the process then exits 1 so that its
/// supervisor starts it afresh (every state worth keeping is in Postgres).
fn drain(stages: Stages, shutdown: &Shutdown, health: &Health) -> Option<Vec<String>> {
    let Stages {
        threads: stages,
        done: done_rx,
        store,
        coverage,
    } = stages;
    let died = loop {
        if shutdown.sleep(STAGE_CHECK) {
            break None;
        }
        let dead = health.dead_stages();
        if !dead.is_empty() {
            break Some(dead);
        }
    };
    if let Some(dead) = &died {
        log::error!(
            "pipeline thread {} stopped: certwatch drains and exits 1 for its supervisor \
             (systemd, Docker) to start it again",
            dead.join(", ")
        );
        shutdown.trigger();
    }
    health.draining.store(true, Ordering::SeqCst);
    log::info!("draining: finishing queued work and deliveries");
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut running = stages.len();
    while running > 0 {
        match done_rx.recv_deadline(deadline) {
            Ok(_) => running -= 1,
            Err(_) => break,
        }
    }
    if running > 0 {
        log::error!(
            "shutdown: abandoning threads still running after {}s: {:?}",
            DRAIN_TIMEOUT.as_secs(),
            health
                .running_stages()
                .into_iter()
                .filter(|name| !name.starts_with("http"))
                .collect::<Vec<_>>()
        );
    } else {
        for stage in stages {
            let _ = stage.join();
        }
    }
    // After the workers: every entry they took from the feed is in the positions.
    match coverage::positions::save(&store, &coverage) {
        Ok(0) => {}
        Ok(n) => log::info!("shutdown: the positions of {n} CT logs are saved"),
        Err(e) => log::warn!(
            "shutdown: CT log positions not saved ({e}); the next start fetches again what \
             the last 10 s saw"
        ),
    }
    died
}

/// The http threads: the guard on the public port and the tiny_http serving
/// threads. Registered in `Health` (a dead one shows in `dead_threads`) but not
/// part of the drain: they stop last, when asked.
struct HttpStage {
    stop: Arc<AtomicBool>,
    done: crossbeam_channel::Receiver<String>,
    threads: Vec<JoinHandle<()>>,
}

impl HttpStage {
    fn start(http: Arc<Http>, guard: Guard, health: &Health) -> HttpStage {
        let (done_tx, done) = crossbeam_channel::unbounded::<String>();
        let stop = http.stop.clone();
        let mut threads = Vec::new();
        for n in 0..http::SERVE_THREADS {
            let http = http.clone();
            threads.push(spawn_stage(
                &format!("http-{n}"),
                health,
                &done_tx,
                move || http::run_http(http),
            ));
        }
        threads.push(spawn_stage("http-guard", health, &done_tx, move || {
            http_guard::run_guard(guard)
        }));
        HttpStage {
            stop,
            done,
            threads,
        }
    }

    /// Asks the http threads to stop and waits for them until `HTTP_STOP_TIMEOUT`
    /// after `from`; threads still running then are abandoned (the process exits).
    fn stop(self, from: Instant) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = from + HTTP_STOP_TIMEOUT;
        let mut running = self.threads.len();
        while running > 0 {
            match self.done.recv_deadline(deadline) {
                Ok(_) => running -= 1,
                Err(_) => break,
            }
        }
        if running > 0 {
            log::error!(
                "shutdown: abandoning {running} http threads still running after {}s",
                HTTP_STOP_TIMEOUT.as_secs()
            );
        } else {
            for thread in self.threads {
                let _ = thread.join();
            }
        }
    }
}

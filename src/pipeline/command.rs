//! The `certwatch backfill` command's stages: the classification stages of the
//! service (grace, one thread per delivery target) around one manual range read
//! on the calling thread (the main thread) by `sources::backfill::command`; no
//! feed, workers, timer or HTTP port, so it runs beside the service.

use super::{
    Common, DRAIN_TIMEOUT, Error, Lists, Loaded, Spawned, backfill_of, instance_name, load,
    spawn_classification, webhook_agent,
};
use crate::config::Config;
use crate::coverage::Coverage;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sources::backfill::command;
use crate::ssrf;
use crate::store::Store;
use crate::threads::Health;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why `certwatch backfill` stopped short.
#[derive(Debug)]
pub enum CommandError {
    /// It could not start (the database, a webhook target).
    Setup(Error),
    /// The range was refused or not read in full.
    Once(command::RunError),
}

impl CommandError {
    /// The process exit code: 2 for a request or configuration that cannot work,
    /// 1 for a runtime failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Setup(e) => e.exit_code(),
            CommandError::Once(e) => e.exit_code(),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Setup(e) => e.fmt(f),
            CommandError::Once(e) => e.fmt(f),
        }
    }
}

/// `certwatch backfill --log URL --from N --to M`: reads one range of a trusted
/// log, on the calling thread, through the service's own match → classify → alert
/// path (`sources::backfill::command::run_once`), waits out the grace period of what matched, lets
/// the `grace` and delivery target threads finish, and returns what it read. No
/// feed, workers, timer or HTTP port: it runs beside the service. An issuance the
/// service (or an earlier run) alerted already is not alerted again.
pub fn backfill_once(
    config: Config,
    request: command::Request,
    shutdown: Shutdown,
) -> Result<command::Counts, CommandError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let agent = webhook_agent(&config, ssrf::system_lookup()).map_err(CommandError::Setup)?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let store = Store::new(config.postgres_dsn.expose(), 4)
        .map_err(|e| CommandError::Setup(Error::Database(e)))?
        .with_instance(&format!("{}:backfill", instance_name(None)));
    let Loaded {
        watch, inventory, ..
    } = match load(&store, &metrics, &health, &shutdown) {
        Ok(Some(loaded)) => loaded,
        Ok(None) => {
            return Err(CommandError::Once(command::RunError::Failed(
                command::Failure::InterruptedBeforeStart,
            )));
        }
        Err(e) => return Err(CommandError::Setup(Error::Database(e))),
    };
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<String>();
    let mut threads = Vec::new();
    let parts = spawn_classification(
        &config,
        Common {
            shutdown: &shutdown,
            metrics: &metrics,
            health: &health,
            store: &store,
        },
        Lists { inventory, watch },
        agent,
        Spawned {
            threads: &mut threads,
            done: &done_tx,
        },
    );
    drop(done_tx);
    let backfill = backfill_of(
        &config,
        &parts,
        Arc::new(Coverage::new(Default::default())),
        &shutdown,
    );
    let result = command::run_once(&backfill, &request);
    if result.as_ref().is_ok_and(|t| t.matched > 0) {
        // As on the service: what the inventory does not know yet waits out its
        // grace period (the `grace` thread concludes the rest when it ends).
        shutdown.sleep(config.suspicious_grace + Duration::from_millis(500));
    }
    // The grace thread ends with the last sender, then the targets with the
    // last fan-out (the classifier's): their last attempts, within the budget.
    drop((backfill, parts));
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut running = threads.len();
    while running > 0 && done_rx.recv_deadline(deadline).is_ok() {
        running -= 1;
    }
    if running > 0 {
        log::error!(
            "abandoning {running} threads still delivering after {}s; the service's \
             redelivery sweep sends what is left",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    result.map_err(CommandError::Once)
}

//! Metrics: one `Metrics` value holding every Prometheus handle, on a private
//! `Registry` so that parallel in-process tests never collide.
//!
//! No thread of its own (runs on the callers' threads): shared by every thread
//! through an `Arc`; updated lock-free by the stage that
//! owns each figure and gathered by the http thread for `GET /metrics`.

use crate::alert::Severity;
use crate::cert::Leniency;
use crate::sources::feed::MessageKind;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The values of one metric label: every one exists from start-up (at 0), and
/// call sites name them through the enum, never as strings.
pub trait Label: Copy + 'static {
    /// Every value, in the order they are registered.
    const ALL: &'static [Self];
    /// The label value as exported.
    fn as_str(self) -> &'static str;
}

/// Declares a label enum with its values and their exported spelling.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// This value's place in `ALL` (declaration order).
            #[allow(dead_code)]
            pub fn index(self) -> usize {
                self as usize
            }
        }

        impl Label for $name {
            const ALL: &'static [$name] = &[$($name::$variant),+];
            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

label_enum! {
    /// `op` of `certwatch_db_errors_total`: which database operation failed.
    DbOp {
        Connect => "connect",
        WatchRefresh => "watch_refresh",
        Inventory => "inventory",
        Record => "record",
        Delivery => "delivery",
        Cleanup => "cleanup",
        Sweep => "sweep",
    }
}

label_enum! {
    /// `queue` of `certwatch_queue_depth`.
    Queue {
        Workers => "workers",
        Grace => "grace",
        Deliver => "deliver",
        /// Alerts held while the database is down.
        Unrecorded => "unrecorded",
    }
}

label_enum! {
    /// `result` of `certwatch_webhook_total`.
    WebhookResult {
        Success => "success",
        Failure => "failure",
    }
}

impl Label for MessageKind {
    const ALL: &'static [Self] = &MessageKind::ALL;
    fn as_str(self) -> &'static str {
        MessageKind::as_str(self)
    }
}

impl Label for Leniency {
    const ALL: &'static [Self] = &Leniency::ALL;
    fn as_str(self) -> &'static str {
        Leniency::as_str(self)
    }
}

impl Label for Severity {
    const ALL: &'static [Self] = &[Severity::Info, Severity::Suspicious];
    fn as_str(self) -> &'static str {
        Severity::as_str(self)
    }
}

/// Creates every series of `vec` for the label values of `L`.
fn preregister<L: Label, B: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<B>,
) {
    for value in L::ALL {
        vec.with_label_values(&[value.as_str()]);
    }
}

/// Every metric certwatch exports, all prefixed `certwatch_` (process metrics excepted).
pub struct Metrics {
    registry: Registry,
    /// Feed messages by `type` (`certificate_update`, `heartbeat`, `dns_entries`, other).
    ct_messages: IntCounterVec,
    /// Frames the reader dropped because every worker was busy.
    pub ct_messages_dropped: IntCounter,
    /// Frames that were not a valid certstream message.
    pub ct_parse_errors: IntCounter,
    /// Matched certificates read leniently, by `reason` (`Leniency`).
    ct_lenient: IntCounterVec,
    /// Alerts produced, by `severity`.
    alerts: IntCounterVec,
    /// Webhook attempts by `result` (`success`, `failure`).
    webhook: IntCounterVec,
    /// Deliveries that exhausted their attempts and stay undelivered.
    pub webhook_gave_up: IntCounter,
    pub webhook_duration: Histogram,
    pub watch_entries: IntGauge,
    /// Rows in the in-memory inventory snapshot.
    pub inventory_snapshot_rows: IntGauge,
    /// How long the last watch-list refresh took (query, build, swap).
    pub watch_refresh_seconds: prometheus::Gauge,
    pub last_ct_event: IntGauge,
    pub ws_connected: IntGauge,
    pub feed_enabled: IntGauge,
    pub ws_reconnects: IntCounter,
    pub dedupe_cache_size: IntGauge,
    /// Database errors by `op` (`connect`, `watch_refresh`, `inventory`, `record`,
    /// `delivery`, `cleanup`, `sweep`).
    db_errors: IntCounterVec,
    /// Items waiting in each internal queue, by `queue`.
    queue_depth: IntGaugeVec,
    /// Alerts pruned by retention.
    pub alerts_pruned: IntCounter,
    /// Undelivered alert events younger than `REDELIVERY_MAX_AGE_S`.
    pub undelivered: IntGauge,
    /// Events claimed by the redelivery sweep.
    pub redeliveries: IntCounter,
    /// Suspicious alerts whose certificate later reached the inventory.
    pub reclassified: IntCounter,
    /// Alerts never written because the database was down and the holding buffer full.
    pub alerts_unrecorded_overflow: IntCounter,
    /// API connections the http guard closed or refused, by `reason` (`HttpReject`).
    http_rejected: IntCounterVec,
    /// Failed `accept` calls on the API port (out of file descriptors, mostly).
    pub http_accept_errors: IntCounter,
    /// API connections the http guard holds open.
    pub http_connections: IntGauge,
    /// tiny_http servers started again after the previous one stopped accepting.
    pub http_restarts: IntCounter,
    /// Certificate messages naming a log that is not in the trusted list.
    pub ct_unknown_log_messages: IntCounter,
    /// 1 while a trusted log list is loaded (coverage and backfill on).
    pub ct_coverage_enabled: IntGauge,
    /// Logs of the list in use left out because their own entry is unusable.
    pub ct_log_list_skipped: IntGauge,
    /// Entries of listed logs the gap tracker could not track (it held its most logs).
    pub ct_untracked_entries: IntCounter,
    /// Entries of listed logs known missing and never seen nor read since start:
    /// backfill outcomes `skipped`, `abandoned` and `failed` together.
    pub ct_entries_unproven: IntGauge,
    /// Distinct entries the feed delivered, by `log` (logs of the list only).
    pub ct_log_entries_seen: IntCounterVec,
    /// Entries the feed did not deliver within the settle time, by `log`.
    pub ct_log_gap_entries: IntCounterVec,
    /// Backfilled entries by `log` and `outcome` (`BackfillOutcome`).
    pub ct_backfill_entries: IntCounterVec,
    /// Now minus the CT timestamp of the newest entry read, by `log`.
    pub ct_log_lag_seconds: IntGaugeVec,
    /// Tailed logs: the entries read and shown to belong to a signed tree, by `log`.
    pub ct_log_verified_size: IntGaugeVec,
    /// Tailed logs: the size of the newest tree head whose signature verified.
    pub ct_log_head_size: IntGaugeVec,
    /// Bytes read from each log (bodies after decompression), by `log`.
    pub ct_log_bytes: IntCounterVec,
    /// Requests to each log by `log` and `outcome` (`LogRequest`).
    pub ct_log_requests: IntCounterVec,
    /// Verification failures by `log` and `reason` (`VerifyFailure`).
    pub ct_log_verification_failures: IntCounterVec,
    /// Listed usable logs: 1 while the feed delivers their entries, by `log`.
    pub ct_log_on_feed: IntGaugeVec,
    /// Tailed logs: 1 while the log is unreachable (`CT_LOG_UNREACHABLE_S`), by `log`.
    pub ct_log_unreachable: IntGaugeVec,
    /// CT entry timestamp to alert recorded, by `detected_via` (`DetectedVia`).
    detection_latency: prometheus::HistogramVec,
}

label_enum! {
    /// `outcome` of `certwatch_ct_backfill_entries_total`.
    BackfillOutcome {
        /// Read from the log and matched against the watch list.
        Fetched => "fetched",
        /// Over `BACKFILL_MAX_GAP`, or of a log left out: logged, never read.
        Abandoned => "abandoned",
        /// The log could not be read or the entry did not decode.
        Failed => "failed",
        /// Of a dense log under `CT_FEED_HOLES=count`: holes by design, counted,
        /// not fetched.
        Skipped => "skipped",
        /// Claimed or already fetched by another replica on the same database.
        OtherReplica => "other_replica",
    }
}

label_enum! {
    /// `outcome` of `certwatch_ct_log_requests_total`.
    LogRequest {
        Ok => "ok",
        /// 429 or 503, or refused while the log's Retry-After runs.
        RateLimited => "rate_limited",
        /// Any other failure: transport, status, body.
        Error => "error",
    }
}

label_enum! {
    /// `reason` of `certwatch_ct_log_verification_failures_total`.
    VerifyFailure {
        /// A tree head whose signature does not verify with the list's key.
        Signature => "signature",
        /// A tree head smaller than one verified before.
        Shrink => "shrink",
        /// Two different roots for one tree size.
        SplitView => "split_view",
        /// The entries read do not hash to the signed root.
        RootMismatch => "root_mismatch",
        /// A proof or tile from the log does not tie what was read to its root.
        Proof => "proof",
    }
}

impl Label for crate::alert::DetectedVia {
    const ALL: &'static [crate::alert::DetectedVia] = &[
        crate::alert::DetectedVia::Feed,
        crate::alert::DetectedVia::Backfill,
        crate::alert::DetectedVia::Log,
    ];
    fn as_str(self) -> &'static str {
        crate::alert::DetectedVia::as_str(self)
    }
}

label_enum! {
    /// `reason` of `certwatch_http_connections_rejected_total`: why the http
    /// guard closed a connection without a response from tiny_http.
    HttpReject {
        OverCapacity => "over_capacity",
        FdLimit => "fd_limit",
        HeadTooLarge => "head_too_large",
        HeadTimeout => "head_timeout",
        ResponseTimeout => "response_timeout",
        UpstreamError => "upstream_error",
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let m = Metrics {
            registry: Registry::new(),
            ct_messages: IntCounterVec::new(
                Opts::new(
                    "certwatch_ct_messages_total",
                    "Feed messages received, by type",
                ),
                &["type"],
            )
            .expect("valid metric"),
            ct_messages_dropped: IntCounter::new(
                "certwatch_ct_messages_dropped_total",
                "Feed frames dropped because the worker queue was full",
            )
            .expect("valid metric"),
            ct_parse_errors: IntCounter::new(
                "certwatch_ct_parse_errors_total",
                "Feed frames that were not a valid certstream message",
            )
            .expect("valid metric"),
            ct_lenient: IntCounterVec::new(
                Opts::new(
                    "certwatch_ct_lenient_certificates_total",
                    "Matched certificates read leniently, by reason",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            alerts: IntCounterVec::new(
                Opts::new("certwatch_alerts_total", "Alerts produced, by severity"),
                &["severity"],
            )
            .expect("valid metric"),
            webhook: IntCounterVec::new(
                Opts::new(
                    "certwatch_webhook_total",
                    "Webhook POST attempts, by result",
                ),
                &["result"],
            )
            .expect("valid metric"),
            webhook_gave_up: IntCounter::new(
                "certwatch_webhook_gave_up_total",
                "Alerts whose webhook attempts were all exhausted (left undelivered)",
            )
            .expect("valid metric"),
            webhook_duration: Histogram::with_opts(HistogramOpts::new(
                "certwatch_webhook_duration_seconds",
                "Duration of one webhook POST attempt",
            ))
            .expect("valid metric"),
            inventory_snapshot_rows: IntGauge::new(
                "certwatch_inventory_snapshot_rows",
                "Rows of public.certs held in memory for classification while the database is unreachable",
            )
            .expect("valid metric"),
            watch_entries: IntGauge::new("certwatch_watch_entries", "Entries in the watch list")
                .expect("valid metric"),
            watch_refresh_seconds: prometheus::Gauge::new(
                "certwatch_watch_refresh_seconds",
                "Duration of the last watch-list refresh (query, index build, swap)",
            )
            .expect("valid metric"),
            last_ct_event: IntGauge::new(
                "certwatch_last_ct_event_timestamp_seconds",
                "Unix time of the last certificate_update received",
            )
            .expect("valid metric"),
            ws_connected: IntGauge::new(
                "certwatch_ws_connected",
                "1 while the certstream WebSocket is connected",
            )
            .expect("valid metric"),
            feed_enabled: IntGauge::new(
                "certwatch_feed_enabled",
                "1 when CT_SOURCE reads a certstream feed (certstream, both); 0 in logs mode, \
                 where the feed's metrics and alerts do not apply",
            )
            .expect("valid metric"),
            ws_reconnects: IntCounter::new(
                "certwatch_ws_reconnects_total",
                "certstream connection attempts after a disconnect or failure",
            )
            .expect("valid metric"),
            dedupe_cache_size: IntGauge::new(
                "certwatch_dedupe_cache_size",
                "Issuance keys held in the in-memory dedupe cache",
            )
            .expect("valid metric"),
            db_errors: IntCounterVec::new(
                Opts::new("certwatch_db_errors_total", "Database errors, by operation"),
                &["op"],
            )
            .expect("valid metric"),
            queue_depth: IntGaugeVec::new(
                Opts::new(
                    "certwatch_queue_depth",
                    "Items waiting in an internal queue",
                ),
                &["queue"],
            )
            .expect("valid metric"),
            undelivered: IntGauge::new(
                "certwatch_undelivered_alerts",
                "Undelivered alert events younger than REDELIVERY_MAX_AGE_S (the redelivery backlog)",
            )
            .expect("valid metric"),
            redeliveries: IntCounter::new(
                "certwatch_redeliveries_total",
                "Undelivered alert events taken up again by the redelivery sweep",
            )
            .expect("valid metric"),
            reclassified: IntCounter::new(
                "certwatch_reclassified_total",
                "Suspicious alerts resolved because their certificate reached the inventory",
            )
            .expect("valid metric"),
            alerts_unrecorded_overflow: IntCounter::new(
                "certwatch_alerts_unrecorded_overflow_total",
                "Alerts never written to the database: it was down and the holding buffer was full",
            )
            .expect("valid metric"),
            alerts_pruned: IntCounter::new(
                "certwatch_alerts_pruned_total",
                "Alert rows deleted by the retention cleanup",
            )
            .expect("valid metric"),
            http_rejected: IntCounterVec::new(
                Opts::new(
                    "certwatch_http_connections_rejected_total",
                    "API connections closed or refused by the http guard, by reason",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            http_accept_errors: IntCounter::new(
                "certwatch_http_accept_errors_total",
                "Failed accepts on the API port (mostly: out of file descriptors)",
            )
            .expect("valid metric"),
            http_connections: IntGauge::new(
                "certwatch_http_connections",
                "API connections held open by the http guard",
            )
            .expect("valid metric"),
            http_restarts: IntCounter::new(
                "certwatch_http_server_restarts_total",
                "tiny_http servers started again after the previous one stopped accepting",
            )
            .expect("valid metric"),
            ct_unknown_log_messages: IntCounter::new(
                "certwatch_ct_unknown_log_messages_total",
                "Certificate messages naming a log that is not in the trusted log list",
            )
            .expect("valid metric"),
            ct_coverage_enabled: IntGauge::new(
                "certwatch_ct_coverage_enabled",
                "1 while a trusted CT log list is loaded (gap tracking and backfill on)",
            )
            .expect("valid metric"),
            ct_log_list_skipped: IntGauge::new(
                "certwatch_ct_log_list_skipped_logs",
                "Logs of the trusted CT log list in use left out because their own entry is unusable",
            )
            .expect("valid metric"),
            ct_entries_unproven: IntGauge::new(
                "certwatch_ct_entries_unproven",
                "Entries of listed logs known missing that certwatch neither saw nor read since it \
                 started (backfill outcomes skipped, abandoned and failed)",
            )
            .expect("valid metric"),
            ct_untracked_entries: IntCounter::new(
                "certwatch_ct_untracked_log_entries_total",
                "Feed entries of listed logs the gap tracker could not track (it held its most logs)",
            )
            .expect("valid metric"),
            ct_log_entries_seen: IntCounterVec::new(
                Opts::new(
                    "certwatch_ct_log_entries_seen_total",
                    "Distinct entries of each listed log the feed delivered",
                ),
                &["log"],
            )
            .expect("valid metric"),
            ct_log_gap_entries: IntCounterVec::new(
                Opts::new(
                    "certwatch_ct_log_gap_entries_total",
                    "Entries of each listed log the feed did not deliver within the settle time",
                ),
                &["log"],
            )
            .expect("valid metric"),
            ct_backfill_entries: IntCounterVec::new(
                Opts::new(
                    "certwatch_ct_backfill_entries_total",
                    "Gap entries by log and outcome (fetched, abandoned, failed)",
                ),
                &["log", "outcome"],
            )
            .expect("valid metric"),
            ct_log_verified_size: IntGaugeVec::new(
                Opts::new(
                    "certwatch_ct_log_verified_size",
                    "Tailed logs: entries read and shown to belong to a tree head the log signed",
                ),
                &["log"],
            )
            .expect("valid metric"),
            ct_log_head_size: IntGaugeVec::new(
                Opts::new(
                    "certwatch_ct_log_head_size",
                    "Tailed logs: size of the newest tree head whose signature verified",
                ),
                &["log"],
            )
            .expect("valid metric"),
            ct_log_bytes: IntCounterVec::new(
                Opts::new(
                    "certwatch_ct_log_bytes_total",
                    "Bytes read from each CT log (bodies, after decompression)",
                ),
                &["log"],
            )
            .expect("valid metric"),
            ct_log_requests: IntCounterVec::new(
                Opts::new(
                    "certwatch_ct_log_requests_total",
                    "Requests to each CT log by outcome (ok, rate_limited, error)",
                ),
                &["log", "outcome"],
            )
            .expect("valid metric"),
            ct_log_verification_failures: IntCounterVec::new(
                Opts::new(
                    "certwatch_ct_log_verification_failures_total",
                    "Tree heads or entries of a log that failed verification, by reason",
                ),
                &["log", "reason"],
            )
            .expect("valid metric"),
            ct_log_on_feed: IntGaugeVec::new(
                Opts::new(
                    "certwatch_ct_log_on_feed",
                    "Listed usable logs: 1 while the feed delivers their entries, 0 when it has not \
                     for 10 minutes while it delivers others",
                ),
                &["log"],
            )
            .expect("valid metric"),
            ct_log_unreachable: IntGaugeVec::new(
                Opts::new(
                    "certwatch_ct_log_unreachable",
                    "Tailed logs: 1 while nothing has been read for CT_LOG_UNREACHABLE_S, every \
                     cycle ending on a failed or refused request",
                ),
                &["log"],
            )
            .expect("valid metric"),
            ct_log_lag_seconds: IntGaugeVec::new(
                Opts::new(
                    "certwatch_ct_log_lag_seconds",
                    "Now minus the CT timestamp of the newest entry of each listed log read",
                ),
                &["log"],
            )
            .expect("valid metric"),
            detection_latency: prometheus::HistogramVec::new(
                HistogramOpts::new(
                    "certwatch_detection_latency_seconds",
                    "CT entry timestamp to alert recorded, by how the certificate was found",
                )
                .buckets(vec![
                    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
                ]),
                &["detected_via"],
            )
            .expect("valid metric"),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.ct_unknown_log_messages.clone()),
            Box::new(m.ct_coverage_enabled.clone()),
            Box::new(m.ct_log_list_skipped.clone()),
            Box::new(m.ct_untracked_entries.clone()),
            Box::new(m.ct_entries_unproven.clone()),
            Box::new(m.ct_log_entries_seen.clone()),
            Box::new(m.ct_log_gap_entries.clone()),
            Box::new(m.ct_backfill_entries.clone()),
            Box::new(m.ct_log_verified_size.clone()),
            Box::new(m.ct_log_head_size.clone()),
            Box::new(m.ct_log_bytes.clone()),
            Box::new(m.ct_log_requests.clone()),
            Box::new(m.ct_log_verification_failures.clone()),
            Box::new(m.ct_log_on_feed.clone()),
            Box::new(m.ct_log_unreachable.clone()),
            Box::new(m.ct_log_lag_seconds.clone()),
            Box::new(m.detection_latency.clone()),
            Box::new(m.ct_messages.clone()),
            Box::new(m.ct_messages_dropped.clone()),
            Box::new(m.ct_parse_errors.clone()),
            Box::new(m.ct_lenient.clone()),
            Box::new(m.alerts.clone()),
            Box::new(m.webhook.clone()),
            Box::new(m.webhook_gave_up.clone()),
            Box::new(m.webhook_duration.clone()),
            Box::new(m.watch_entries.clone()),
            Box::new(m.inventory_snapshot_rows.clone()),
            Box::new(m.watch_refresh_seconds.clone()),
            Box::new(m.last_ct_event.clone()),
            Box::new(m.ws_connected.clone()),
            Box::new(m.feed_enabled.clone()),
            Box::new(m.ws_reconnects.clone()),
            Box::new(m.dedupe_cache_size.clone()),
            Box::new(m.db_errors.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.alerts_pruned.clone()),
            Box::new(m.alerts_unrecorded_overflow.clone()),
            Box::new(m.undelivered.clone()),
            Box::new(m.redeliveries.clone()),
            Box::new(m.reclassified.clone()),
            Box::new(m.http_rejected.clone()),
            Box::new(m.http_accept_errors.clone()),
            Box::new(m.http_connections.clone()),
            Box::new(m.http_restarts.clone()),
            Box::new(ProcessMetrics(
                prometheus::process_collector::ProcessCollector::for_self(),
            )),
        ];
        for collector in collectors {
            m.registry
                .register(collector)
                .expect("metric names are unique");
        }
        // Every labelled series reads 0 before its first event.
        preregister::<MessageKind, _>(&m.ct_messages);
        preregister::<Leniency, _>(&m.ct_lenient);
        preregister::<Severity, _>(&m.alerts);
        preregister::<WebhookResult, _>(&m.webhook);
        preregister::<DbOp, _>(&m.db_errors);
        preregister::<Queue, _>(&m.queue_depth);
        preregister::<HttpReject, _>(&m.http_rejected);
        preregister::<crate::alert::DetectedVia, _>(&m.detection_latency);
        m
    }
}

impl Metrics {
    /// The detection-latency histogram of one `detected_via`.
    pub fn detection_latency(&self, via: crate::alert::DetectedVia) -> Histogram {
        self.detection_latency.with_label_values(&[via.as_str()])
    }

    /// Creates the per-log series of a listed log at 0 (label `log` is its URL).
    pub fn register_log(&self, log: &str) {
        self.ct_log_verified_size.with_label_values(&[log]);
        self.ct_log_head_size.with_label_values(&[log]);
        self.ct_log_unreachable.with_label_values(&[log]);
        self.ct_log_bytes.with_label_values(&[log]);
        for outcome in LogRequest::ALL {
            self.ct_log_requests
                .with_label_values(&[log, outcome.as_str()]);
        }
        for reason in VerifyFailure::ALL {
            self.ct_log_verification_failures
                .with_label_values(&[log, reason.as_str()]);
        }
        self.ct_log_entries_seen.with_label_values(&[log]);
        self.ct_log_gap_entries.with_label_values(&[log]);
        self.ct_log_lag_seconds.with_label_values(&[log]);
        for outcome in BackfillOutcome::ALL {
            self.ct_backfill_entries
                .with_label_values(&[log, outcome.as_str()]);
        }
    }

    /// Backfilled entries of `log` with this outcome; those left unproven also
    /// in `certwatch_ct_entries_unproven`.
    pub fn backfill(&self, log: &str, outcome: BackfillOutcome, n: u64) {
        self.ct_backfill_entries
            .with_label_values(&[log, outcome.as_str()])
            .inc_by(n);
        if matches!(
            outcome,
            BackfillOutcome::Skipped | BackfillOutcome::Abandoned | BackfillOutcome::Failed
        ) {
            self.ct_entries_unproven
                .add(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// The `process_*` metrics of prometheus' process collector, except that
/// `process_cpu_seconds_total` is reported in fractional seconds, as Prometheus
/// clients do (that collector truncates it to whole seconds).
struct ProcessMetrics(prometheus::process_collector::ProcessCollector);

impl prometheus::core::Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.0.collect();
        if let Some(seconds) = cpu_seconds() {
            for family in &mut families {
                if family.name() == "process_cpu_seconds_total" {
                    for metric in family.mut_metric() {
                        let mut counter = prometheus::proto::Counter::default();
                        counter.set_value(seconds);
                        metric.set_counter(counter);
                    }
                }
            }
        }
        families
    }
}

/// User plus system CPU time of the whole process, in seconds: the clock ticks
/// of `/proc/self/stat` over `CLK_TCK`.
pub fn cpu_seconds() -> Option<f64> {
    let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
    let ticks = procfs::ticks_per_second();
    (ticks > 0).then(|| (stat.utime + stat.stime) as f64 / ticks as f64)
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text encoder writes UTF-8")
    }

    /// Counts an API connection the http guard closed without a response.
    pub fn http_rejected(&self, reason: HttpReject) {
        self.http_rejected
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Counts a failed database operation.
    pub fn db_error(&self, op: DbOp) {
        self.db_errors.with_label_values(&[op.as_str()]).inc();
    }

    /// The depth gauge of one internal queue.
    pub fn queue(&self, queue: Queue) -> IntGauge {
        self.queue_depth.with_label_values(&[queue.as_str()])
    }

    /// The depth gauge of webhook target `index`'s queue: `queue="webhook #N"`,
    /// numbered from 1 as the logs name targets (never by URL). `index` is below
    /// `config::MAX_WEBHOOK_TARGETS`, so the label values are bounded.
    pub fn webhook_queue(&self, index: usize) -> IntGauge {
        assert!(
            index < crate::config::MAX_WEBHOOK_TARGETS,
            "target index {index}"
        );
        self.queue_depth
            .with_label_values(&[format!("webhook #{}", index + 1).as_str()])
    }

    /// The counter of webhook attempts with this result.
    pub fn webhook_result(&self, result: WebhookResult) -> IntCounter {
        self.webhook.with_label_values(&[result.as_str()])
    }

    /// The counter of alerts of this severity.
    pub fn alert(&self, severity: Severity) -> IntCounter {
        self.alerts.with_label_values(&[severity.as_str()])
    }

    /// The counter of matched certificates read leniently for this reason.
    pub fn ct_lenient(&self, reason: Leniency) -> IntCounter {
        self.ct_lenient.with_label_values(&[reason.as_str()])
    }

    /// The counter of feed messages of this kind.
    pub fn ct_message(&self, kind: MessageKind) -> IntCounter {
        self.ct_messages.with_label_values(&[kind.as_str()])
    }
}

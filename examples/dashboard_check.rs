//! Grafana dashboard check: `cargo run --example dashboard_check`.
//!
//! Proves that every query of `deploy/grafana/certwatch.json` parses and returns
//! data from a real certwatch scraped by a real Prometheus. With PostgreSQL running
//! and `prometheus` installed (Debian's package, `/usr/bin/prometheus`; or
//! `PROMETHEUS_BIN`), it:
//!
//! 1. reads the dashboard (compiled in) and checks its shape: unique panel ids,
//!    every panel on the Prometheus data source variable, every query with a refId;
//! 2. runs the service in-process as `coverage_demo` does: a throwaway database
//!    (`TestDb`) watching `dash.example.com`, a fake CT log (`FakeCtLog`, the
//!    fixture certificates repeated) named in a trusted log list, a fake
//!    certstream feed and a counting webhook receiver;
//! 3. keeps it busy on a thread of its own: about 40 log entries a second on the
//!    feed, one entry in 100 left out (a gap, fetched back by backfill), and two
//!    certificates for watched names a second (every other one in the inventory:
//!    `info` and `suspicious` alerts, webhook deliveries);
//! 4. starts a Prometheus server (`<temp>/certwatch-dashboard-<pid>`: a config
//!    scraping certwatch's `/metrics` every second, its TSDB) on a free loopback
//!    port, and waits for 12 scrapes;
//! 5. resolves the dashboard's variables as Grafana does (`label_values` through
//!    the label-values API; `All` is `.*`), substitutes them and Grafana's own
//!    (`$__rate_interval` 10s, `$__interval` 5s, `$__range` 1m) in every `expr`, and
//!    runs each through `/api/v1/query`: it must succeed and return at least one
//!    sample that is not NaN. One line per query.
//!
//! Prints `DASHBOARD CHECK OK: ...` and exits 0, or `DASHBOARD CHECK FAILED: <why>`
//! and exits 1. About 20 seconds; `DASHBOARD_CHECK_TIMEOUT_S` (default 120) bounds
//! the whole run. Prometheus is killed on every way out: by its guard's `Drop`, by
//! the time-limit thread, and by the kernel (`PR_SET_PDEATHSIG`) if this process dies.
//! Past the time limit the process exits at once, after dropping the throwaway
//! database (`TestDb`'s own `Drop` does not run then).

use certwatch_testkit::ctlog::{FakeCtLog, fixture_entries, unwatched_frame};
use certwatch_testkit::service::{Running, start_covered};
use certwatch_testkit::{Cert, FakeFeed, FeedCmd, Inventory, TestDb, WebhookSink, wait_until};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The dashboard under test.
const DASHBOARD: &str = include_str!("../deploy/grafana/certwatch.json");
/// Its path, for messages.
const DASHBOARD_PATH: &str = "deploy/grafana/certwatch.json";
/// The watched entry; the workload's certificates are `h<n>.dash.example.com`.
const WATCHED: &str = "dash.example.com";
/// Entries of the fake CT log (the fixture certificates, repeated): the workload
/// stops feeding at the end, about 100 s in.
const LOG_SIZE: usize = 4000;
/// Grafana's built-in variables, as the check substitutes them. `$__rate_interval`
/// is at least four scrape intervals in Grafana; 10 s of 1 s scrapes.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "10s"),
    ("__interval", "5s"),
    ("__interval_ms", "5000"),
    ("__range", "1m"),
    ("__range_s", "60"),
    ("__range_ms", "60000"),
];
/// Scrapes to wait for before querying: more than the longest window above but
/// `$__range`, so that every rate has a full window.
const SCRAPES: f64 = 12.0;

/// The Prometheus child's pid, for the time-limit thread (0: none).
static PROMETHEUS_PID: AtomicI32 = AtomicI32::new(0);

fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .filter_module("postgres", log::LevelFilter::Warn)
        // Every suspicious alert of the workload is a warning: two a second.
        .filter_module("certwatch::classify", log::LevelFilter::Error)
        .try_init();
    let limit: u64 = std::env::var("DASHBOARD_CHECK_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let started = Instant::now();
    let _ = std::thread::Builder::new()
        .name("time-limit".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_secs(limit));
            println!(
                "DASHBOARD CHECK FAILED: not done within {limit} s (DASHBOARD_CHECK_TIMEOUT_S)"
            );
            kill_prometheus();
            let _ = std::fs::remove_dir_all(temp_dir());
            drop_database();
            std::process::exit(1);
        });
    match run() {
        Ok(summary) => {
            println!(
                "DASHBOARD CHECK OK: {summary} ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("DASHBOARD CHECK FAILED: {why}");
            ExitCode::FAILURE
        }
    }
}

/// One query of the dashboard.
struct Query {
    panel: String,
    ref_id: String,
    expr: String,
}

/// One template variable of type `query`.
struct Variable {
    name: String,
    query: String,
    all_value: Option<String>,
}

fn run() -> Result<String, String> {
    let dashboard: Value =
        serde_json::from_str(DASHBOARD).map_err(|e| format!("{DASHBOARD_PATH}: {e}"))?;
    let (panels, queries, variables) = read_dashboard(&dashboard)?;
    println!(
        "{DASHBOARD_PATH}: {panels} panels, {} queries, {} query variables",
        queries.len(),
        variables.len()
    );
    let prometheus_bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
    let version = Command::new(&prometheus_bin)
        .arg("--version")
        .output()
        .map_err(|e| {
            format!("cannot run `{prometheus_bin} --version`: {e} (apt-get install prometheus, or set PROMETHEUS_BIN)")
        })?;
    let version = String::from_utf8_lossy(&version.stdout);
    println!(
        "{}",
        version
            .lines()
            .next()
            .unwrap_or("prometheus: version unknown")
    );

    let db = TestDb::create("dashboard_check")?;
    db.watch(&[WATCHED]);
    let now_ms = unix_now().as_millis() as u64;
    let fixtures = fixture_entries();
    let entries = (0..LOG_SIZE)
        .map(|i| {
            let mut entry = fixtures[i % fixtures.len()].0.clone();
            entry.timestamp_ms = now_ms;
            entry
        })
        .collect();
    let log = FakeCtLog::start(entries);
    let dir = temp_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _cleanup = RemoveDir(dir.clone());
    let list = dir.join("loglist.json");
    std::fs::write(&list, log.log_list(false)).map_err(|e| format!("log list: {e}"))?;
    let feed = FakeFeed::start();
    let webhook = WebhookSink::start()?;
    let hook_url = webhook.url();
    let service = start_covered(
        &db,
        &feed,
        None,
        &list,
        &[
            ("WEBHOOK_URL", hook_url.as_str()),
            ("WATCH_REFRESH_INTERVAL_S", "5"),
        ],
    );
    println!(
        "certwatch on {}; CT log {}; webhook {hook_url}",
        service.addr,
        log.url()
    );

    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let workload = std::thread::Builder::new()
            .name("workload".into())
            .spawn_scoped(scope, || busy(&db, &feed, &log.url(), &stop))
            .map_err(|e| format!("workload thread: {e}"))?;
        let result = check(&prometheus_bin, &dir, &service, &queries, &variables);
        stop.store(true, Ordering::SeqCst);
        let sent = workload
            .join()
            .map_err(|_| "the workload thread panicked".to_string())?;
        let summary = result?;
        Ok::<String, String>(format!(
            "{summary}; workload: {} feed frames, {} webhooks received",
            sent,
            webhook.received()
        ))
    });
    service.stop();
    result
}

/// The dashboard's panel count, queries and query variables, after checking the
/// shape Grafana needs to import it.
fn read_dashboard(dashboard: &Value) -> Result<(usize, Vec<Query>, Vec<Variable>), String> {
    let mut problems = Vec::new();
    let mut variables = Vec::new();
    let mut names = HashSet::new();
    for v in dashboard["templating"]["list"]
        .as_array()
        .ok_or("no templating.list")?
    {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        names.insert(name.clone());
        match v["type"].as_str() {
            Some("datasource") if v["query"] == "prometheus" => {}
            Some("query") => {
                // Grafana 10+ may store the query as an object.
                let query = v["query"]
                    .as_str()
                    .or_else(|| v["query"]["query"].as_str())
                    .unwrap_or_default()
                    .to_string();
                if v["datasource"]["uid"] != "${datasource}" {
                    problems.push(format!("variable {name}: not on ${{datasource}}"));
                }
                variables.push(Variable {
                    name,
                    query,
                    all_value: (v["includeAll"] == true)
                        .then(|| v["allValue"].as_str().unwrap_or(".*").to_string()),
                });
            }
            other => problems.push(format!("variable {name}: unexpected type {other:?}")),
        }
    }
    if !names.contains("datasource") {
        problems.push("no `datasource` variable (type datasource, query prometheus)".into());
    }
    let mut ids = HashSet::new();
    let mut queries = Vec::new();
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().ok_or("no panels")? {
        let title = panel["title"].as_str().unwrap_or("(untitled)").to_string();
        if !ids.insert(panel["id"].as_u64().unwrap_or(0)) || panel["id"].as_u64().is_none() {
            problems.push(format!("panel {title}: missing or duplicate id"));
        }
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
        if !matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24)
            || grid["y"].as_u64().is_none()
            || grid["h"].as_u64().is_none()
        {
            problems.push(format!("panel {title}: bad gridPos {grid}"));
        }
        if panel["type"] == "row" {
            continue;
        }
        panels += 1;
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("panel {title}: not on ${{datasource}}"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel {title}: no queries"));
        }
        let mut ref_ids = HashSet::new();
        for target in targets {
            let ref_id = target["refId"].as_str().unwrap_or_default().to_string();
            let expr = target["expr"].as_str().unwrap_or_default().to_string();
            if ref_id.is_empty() || !ref_ids.insert(ref_id.clone()) {
                problems.push(format!("panel {title}: missing or duplicate refId"));
            }
            if expr.trim().is_empty() {
                problems.push(format!("panel {title} [{ref_id}]: empty expr"));
            }
            queries.push(Query {
                panel: title.clone(),
                ref_id,
                expr,
            });
        }
    }
    if problems.is_empty() {
        Ok((panels, queries, variables))
    } else {
        Err(format!("{DASHBOARD_PATH}: {}", problems.join("; ")))
    }
}

/// The workload: log entries with a hole in 100, two watched certificates a
/// second (every other one known), until `stop`. Returns the frames sent.
fn busy(db: &TestDb, feed: &FakeFeed, log_url: &str, stop: &AtomicBool) -> u64 {
    let (mut index, mut tick, mut sent, mut certs) = (0u64, 0u64, 0u64, 0u64);
    while !stop.load(Ordering::SeqCst) && index + 3 < LOG_SIZE as u64 {
        let now = unix_now().as_secs_f64();
        for _ in 0..2 {
            if index % 100 != 50 {
                let mut frame = unwatched_frame(log_url, index);
                frame["data"]["source"]["timestamp"] = now.into();
                feed.send(FeedCmd::Text(frame.to_string()));
                sent += 1;
            }
            index += 1;
        }
        if tick % 10 == 0 {
            let name = format!("h{certs}.{WATCHED}");
            let mut cert = Cert::new(&[name.as_str()]).in_log(log_url, index);
            cert.log_timestamp = Some(now);
            if certs % 2 == 0 {
                db.inventory(&cert);
            }
            feed.send(FeedCmd::Text(cert.frame()));
            (index, sent, certs) = (index + 1, sent + 1, certs + 1);
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    sent
}

/// Starts Prometheus, waits for its scrapes, and runs the variables and queries.
fn check(
    bin: &str,
    dir: &Path,
    service: &Running,
    queries: &[Query],
    variables: &[Variable],
) -> Result<String, String> {
    let prometheus = Prometheus::start(bin, dir, &service.addr.to_string())?;
    let api = &prometheus.api;
    let scraped = wait_until(Duration::from_secs(40), || {
        api.query(r#"count_over_time(up{job="certwatch"}[1m])"#)
            .ok()
            .and_then(|r| first_value(&r))
            .is_some_and(|n| n >= SCRAPES)
    });
    if !scraped {
        return Err(format!(
            "Prometheus did not scrape certwatch {SCRAPES} times within 40 s{}",
            prometheus.log_tail()
        ));
    }
    let up = api.query(r#"up{job="certwatch"}"#)?;
    if first_value(&up) != Some(1.0) {
        return Err(format!("up{{job=\"certwatch\"}} is {up}"));
    }
    println!(
        "Prometheus on {} has scraped certwatch {SCRAPES} times",
        prometheus.api.base
    );

    let mut values: BTreeMap<String, String> = BUILTINS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut failed = Vec::new();
    for var in variables {
        let query = substitute(&var.query, &values)?;
        let resolved = label_values(api, &query);
        match resolved {
            Ok(found) if !found.is_empty() => {
                println!("ok    variable ${}: {query} -> {found:?}", var.name);
                let value = var.all_value.clone().unwrap_or_else(|| found[0].clone());
                values.insert(var.name.clone(), value);
            }
            Ok(_) => {
                println!("FAIL  variable ${}: {query} -> no values", var.name);
                failed.push(format!("variable ${}", var.name));
                values.insert(var.name.clone(), ".*".into());
            }
            Err(e) => {
                println!("FAIL  variable ${}: {query}: {e}", var.name);
                failed.push(format!("variable ${}", var.name));
                values.insert(var.name.clone(), ".*".into());
            }
        }
    }

    let mut with_data = 0;
    for q in queries {
        let label = format!("{} [{}]", q.panel, q.ref_id);
        let outcome = substitute(&q.expr, &values).and_then(|expr| {
            let result = api.query(&expr)?;
            describe(&result)
        });
        match outcome {
            Ok(summary) => {
                with_data += 1;
                println!("ok    {label}: {summary}");
            }
            Err(e) => {
                println!("FAIL  {label}: {e}\n      expr: {}", q.expr);
                failed.push(label);
            }
        }
    }
    if !failed.is_empty() {
        return Err(format!(
            "{} of {} queries and variables failed: {}",
            failed.len(),
            queries.len() + variables.len(),
            failed.join(", ")
        ));
    }
    Ok(format!(
        "{with_data} of {} queries returned data, {} variables resolved",
        queries.len(),
        variables.len()
    ))
}

/// Replaces `$name`, `${name}` and `[[name]]` by their values, longest names first;
/// a `$` left over is a variable the check does not know.
fn substitute(text: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = text.to_string();
    for name in names {
        let value = &values[name];
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("[[{name}]]"), value)
            .replace(&format!("${name}"), value);
    }
    if out.contains('$') {
        return Err(format!("unknown variable in `{out}`"));
    }
    Ok(out)
}

/// `label_values(selector, label)` or `label_values(label)`, as Grafana's
/// Prometheus data source resolves it.
fn label_values(api: &Api, query: &str) -> Result<Vec<String>, String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| format!("not a label_values() query: {query}"))?;
    let (selector, label) = match inner.rsplit_once(',') {
        Some((selector, label)) => (Some(selector.trim()), label.trim()),
        None => (None, inner.trim()),
    };
    let mut params = Vec::new();
    if let Some(selector) = selector {
        params.push(("match[]", selector.to_string()));
    }
    let since = unix_now().as_secs() - 300;
    params.push(("start", since.to_string()));
    let body = api.get(&format!("/api/v1/label/{label}/values"), &params)?;
    Ok(body["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// A query's result in one line, or why it does not count as data: no sample, or
/// only NaN (a ratio or quantile of nothing).
fn describe(result: &Value) -> Result<String, String> {
    let samples: Vec<(String, f64)> = match result["resultType"].as_str() {
        Some("vector") => result["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let labels = s["metric"]
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .filter(|(k, _)| !matches!(k.as_str(), "job" | "instance"))
                                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default();
                        (labels, sample_value(&s["value"]))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Some("scalar") => vec![(String::new(), sample_value(&result["result"]))],
        other => return Err(format!("unexpected result type {other:?}")),
    };
    if samples.is_empty() {
        return Err("no data (empty result)".into());
    }
    if samples.iter().all(|(_, v)| v.is_nan()) {
        return Err(format!("only NaN ({} series)", samples.len()));
    }
    let shown: Vec<String> = samples
        .iter()
        .take(4)
        .map(|(labels, v)| {
            let v = if v.fract() == 0.0 {
                format!("{v}")
            } else {
                format!("{v:.3}")
            };
            if labels.is_empty() {
                v
            } else {
                format!("{{{labels}}} {v}")
            }
        })
        .collect();
    let more = samples.len().saturating_sub(shown.len());
    Ok(format!(
        "{} series: {}{}",
        samples.len(),
        shown.join("; "),
        if more > 0 {
            format!("; {more} more")
        } else {
            String::new()
        }
    ))
}

/// The value of a `[timestamp, "value"]` pair.
fn sample_value(pair: &Value) -> f64 {
    pair[1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The first sample's value of a vector result.
fn first_value(result: &Value) -> Option<f64> {
    result["result"]
        .as_array()?
        .first()
        .map(|s| sample_value(&s["value"]))
}

/// This run's directory: Prometheus' config, TSDB and log, and the log list.
fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("certwatch-dashboard-{}", std::process::id()))
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Prometheus' HTTP API on loopback.
struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    /// GET `path` with `params`: the JSON body when `status` is `success`.
    fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        for (k, v) in params {
            request = request.query(*k, v);
        }
        let mut response = request.call().map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("GET {path}: {e}"))?;
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| format!("GET {path}: HTTP {status}, not JSON ({e}): {text}"))?;
        if body["status"] != "success" {
            return Err(format!(
                "{} ({}), HTTP {status}",
                body["error"].as_str().unwrap_or("no error message"),
                body["errorType"].as_str().unwrap_or("?")
            ));
        }
        Ok(body)
    }

    /// An instant query at now: `data` (`resultType`, `result`).
    fn query(&self, expr: &str) -> Result<Value, String> {
        let body = self.get("/api/v1/query", &[("query", expr.to_string())])?;
        Ok(body["data"].clone())
    }
}

/// A Prometheus server of this run; `Drop` kills it and waits for it.
struct Prometheus {
    child: Child,
    api: Api,
    log: PathBuf,
}

impl Prometheus {
    /// Scrapes `target` every second; data and log under `dir`. Tries three free
    /// ports (a port found free can be taken before Prometheus binds it).
    fn start(bin: &str, dir: &Path, target: &str) -> Result<Prometheus, String> {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: certwatch\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;
        let log = dir.join("prometheus.log");
        let mut last_error = String::new();
        for attempt in 0..3 {
            let port = free_port()?;
            let data = dir.join(format!("tsdb-{attempt}"));
            let stderr =
                std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
            let mut command = Command::new(bin);
            command
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr);
            // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated
            // between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    // Killed by the kernel when this process dies, however it dies.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                        || libc::getppid() == 1
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = command
                .spawn()
                .map_err(|e| format!("cannot start {bin}: {e}"))?;
            PROMETHEUS_PID.store(child.id() as i32, Ordering::SeqCst);
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let mut prometheus = Prometheus {
                child,
                api: Api {
                    base: format!("http://127.0.0.1:{port}"),
                    agent,
                },
                log: log.clone(),
            };
            let ready = wait_until(Duration::from_secs(20), || {
                prometheus.exited()
                    || prometheus
                        .api
                        .agent
                        .get(format!("{}/-/ready", prometheus.api.base))
                        .call()
                        .is_ok_and(|r| r.status() == 200)
            });
            if ready && !prometheus.exited() {
                return Ok(prometheus);
            }
            last_error = format!(
                "Prometheus on port {port} {}{}",
                if ready {
                    "exited"
                } else {
                    "was not ready within 20 s"
                },
                prometheus.log_tail()
            );
            drop(prometheus);
        }
        Err(last_error)
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The end of its log, for a failure message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n  ");
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its log ends:\n  {tail}")
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        PROMETHEUS_PID.store(0, Ordering::SeqCst);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills the Prometheus child, if any (the time-limit thread's way out).
fn kill_prometheus() {
    let pid = PROMETHEUS_PID.swap(0, Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Drops this run's database, `TestDb::create("dashboard_check")`'s name, from the
/// same admin DSN: the time-limit thread's way out, where no `Drop` runs.
fn drop_database() {
    let admin = std::env::var("HARNESS_ADMIN_DSN")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| certwatch_testkit::DEFAULT_ADMIN_DSN.to_string());
    let name = format!("certwatch_dashboard_check_{}", std::process::id());
    let dropped = admin
        .parse::<postgres::Config>()
        .map_err(|e| e.to_string())
        .and_then(|mut config| {
            config
                .connect_timeout(Duration::from_secs(5))
                .connect(postgres::NoTls)
                .and_then(|mut client| {
                    client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                })
                .map_err(|e| e.to_string())
        });
    if let Err(e) = dropped {
        println!("could not drop the database {name}: {e}");
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Removes a directory when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

//! The `certwatch` binary: the command line (`certwatch [serve]`, `healthcheck`,
//! `backfill`, `version`, `help`), the logger and the exit codes. `certwatch healthcheck` asks
//! the running service's `/healthz` (for Docker's HEALTHCHECK) and exits 0 when it
//! answers ok, 1 otherwise. Runs on the main thread.

use certwatch::sources::backfill::command::Request;
use std::process::ExitCode;

/// mimalloc rather than glibc's allocator: every feed frame (about 9 KB) is
/// allocated on the feed thread and freed on a worker, which glibc serves by
/// locking the feed thread's arena for each free. In `bench_feed`, certwatch
/// took 1.23 to 1.36 times the reference reader's CPU per message with it,
/// 1.41 to 1.44 times with glibc's. `no_thp` keeps mimalloc's segments off transparent
/// huge pages, which otherwise more than tripled the idle RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `certwatch --help`: what it does, the commands, the variables it needs.
const USAGE: &str = "\
certwatch: watches Certificate Transparency for certificates issued for your
domains and alerts (signed webhooks, rows in public.alerts) on those your own
inventory (public.certs) does not know.

Usage:
  certwatch [serve]        run the service (the default)
  certwatch healthcheck    ask the running service's /healthz; exit 0 when ok, 1 otherwise
  certwatch backfill --log URL --from N --to M
                           read entries N to M (inclusive) of a log of CT_LOG_LIST once,
                           alert what matches like the service, and exit (0: all read)
  certwatch version        print the version (also -V, --version)
  certwatch help           print this help (also -h, --help)

Required:
  POSTGRES_DSN             postgresql://user:password@host:5432/db (or key=value)
Common:
  CERTSTREAM_URL           certstream feed (default ws://localhost:8080/full-stream)
  WEBHOOK_URL              webhook targets, comma-separated (unset: record and log only)
  WEBHOOK_SECRET           signing key (whsec_<base64> recommended)
  API_HOST, API_PORT       /healthz and /metrics (default 127.0.0.1:8765)
  LOG_LEVEL                ERROR, WARN, INFO (default), DEBUG, TRACE

Every variable, metric, table and exit code: README.md in the source repository.
Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad configuration or usage.";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Serve,
    Healthcheck,
    Backfill(Request),
    Version,
    Help,
}

/// What is wrong with a command line (exit 2); arguments are shown quoted and
/// cut (`quoted`).
#[derive(Debug, PartialEq, Eq)]
enum UsageError {
    UnknownCommand(String),
    UnexpectedArgument(String),
    /// `backfill`: a flag other than `--log`, `--from`, `--to`.
    UnknownFlag(String),
    NeedsValue(&'static str),
    GivenTwice(&'static str),
    Required(&'static str),
    NotAnIndex(&'static str, String),
    Backwards {
        from: u64,
        to: u64,
    },
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsageError::UnknownCommand(c) => write!(f, "unknown command {}", quoted(c)),
            UsageError::UnexpectedArgument(a) => write!(f, "unexpected argument {}", quoted(a)),
            UsageError::UnknownFlag(a) => write!(f, "backfill: unexpected argument {}", quoted(a)),
            UsageError::NeedsValue(flag) => write!(f, "backfill: {flag} needs a value"),
            UsageError::GivenTwice(flag) => write!(f, "backfill: {flag} given twice"),
            UsageError::Required(flag) => write!(f, "backfill: {flag} is required"),
            UsageError::NotAnIndex(flag, v) => {
                write!(
                    f,
                    "backfill: {flag} {} is not an entry index (0 to 2^63 - 1)",
                    quoted(v)
                )
            }
            UsageError::Backwards { from, to } => {
                write!(f, "backfill: --to {to} is below --from {from}")
            }
        }
    }
}

/// Parses the arguments after the program name.
fn parse_args(args: &[String]) -> Result<Command, UsageError> {
    let wants_help = |rest: &[String]| rest.iter().any(|a| a == "-h" || a == "--help");
    let (command, rest) = match args.split_first() {
        None => return Ok(Command::Serve),
        Some((first, rest)) => (first.as_str(), rest),
    };
    let command = match command {
        "serve" => Command::Serve,
        "healthcheck" => Command::Healthcheck,
        "backfill" if wants_help(rest) => return Ok(Command::Help),
        "backfill" => return parse_backfill(rest),
        "version" | "-V" | "--version" => Command::Version,
        "help" | "-h" | "--help" => Command::Help,
        other => return Err(UsageError::UnknownCommand(other.to_string())),
    };
    if wants_help(rest) {
        return Ok(Command::Help);
    }
    match rest.first() {
        None => Ok(command),
        Some(extra) => Err(UsageError::UnexpectedArgument(extra.clone())),
    }
}

/// `backfill --log URL --from N --to M` (each also as `--flag=value`).
fn parse_backfill(args: &[String]) -> Result<Command, UsageError> {
    let (mut log, mut from, mut to) = (None, None, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let (flag, slot) = match flag {
            "--log" => ("--log", &mut log),
            "--from" => ("--from", &mut from),
            "--to" => ("--to", &mut to),
            other => return Err(UsageError::UnknownFlag(other.to_string())),
        };
        let value = inline
            .or_else(|| args.next().cloned())
            .ok_or(UsageError::NeedsValue(flag))?;
        if slot.replace(value).is_some() {
            return Err(UsageError::GivenTwice(flag));
        }
    }
    let index = |flag: &'static str, value: Option<String>| -> Result<u64, UsageError> {
        let value = value.ok_or(UsageError::Required(flag))?;
        match value.parse::<u64>() {
            Ok(index) if index <= certwatch::ctlog::MAX_INDEX => Ok(index),
            _ => Err(UsageError::NotAnIndex(flag, value)),
        }
    };
    let log_url = log.ok_or(UsageError::Required("--log"))?;
    let (from, to) = (index("--from", from)?, index("--to", to)?);
    if to < from {
        return Err(UsageError::Backwards { from, to });
    }
    Ok(Command::Backfill(Request { log_url, from, to }))
}

/// An argument as typed, control characters escaped, at most 64 characters.
fn quoted(arg: &str) -> String {
    let short: String = arg.chars().take(64).collect();
    format!("{short:?}")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match parse_args(&args) {
        Ok(Command::Serve) => serve(),
        Ok(Command::Healthcheck) => healthcheck(),
        Ok(Command::Backfill(request)) => backfill(request),
        Ok(Command::Version) => {
            println!("certwatch {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(complaint) => {
            eprintln!(
                "certwatch: {complaint}\nusage: certwatch [serve|healthcheck|version|help], \
                 certwatch backfill --log URL --from N --to M"
            );
            ExitCode::from(2)
        }
    }
}

/// The configuration from the environment, the logger, the signal handlers: what
/// `serve` and `backfill` start from, or the exit code when one of them fails.
fn configured() -> Result<(certwatch::Config, certwatch::shutdown::Shutdown), ExitCode> {
    let config = certwatch::Config::from_env().map_err(|e| {
        eprintln!("certwatch: {e}");
        ExitCode::from(2)
    })?;
    certwatch::logging::init(config.log_level, config.log_secrets());
    let (trigger, shutdown) = certwatch::shutdown::channel();
    trigger.on_signals().map_err(|e| {
        eprintln!("certwatch: cannot install signal handlers: {e}");
        ExitCode::from(1)
    })?;
    Ok((config, shutdown))
}

fn serve() -> ExitCode {
    let (config, shutdown) = match configured() {
        Ok(started) => started,
        Err(code) => return code,
    };
    match certwatch::run(config, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        // The logger writes to stderr: one line, not a second copy by eprintln.
        // A configuration that can never work (a webhook target the SSRF filter
        // refuses) exits 2, like a bad variable: systemd does not restart it.
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `certwatch backfill`: one range of one log, through the service's path; a
/// line on stdout says what was read.
fn backfill(request: Request) -> ExitCode {
    let (config, shutdown) = match configured() {
        Ok(started) => started,
        Err(code) => return code,
    };
    let range = format!("entries {}..={}", request.from, request.to);
    match certwatch::pipeline::command::backfill_once(config, request, shutdown) {
        Ok(t) => {
            println!(
                "certwatch backfill: {range}: {} read, {} matched the watch list, {} did not decode, \
                 {} left over BACKFILL_MAX_GAP",
                t.fetched, t.matched, t.undecodable, t.abandoned
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("backfill: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn healthcheck() -> ExitCode {
    let url = match certwatch::config::healthz_url_from_env() {
        Ok(url) => url,
        Err(e) => {
            eprintln!("certwatch healthcheck: {e}");
            return ExitCode::from(1);
        }
    };
    match certwatch::http::healthcheck(&url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certwatch healthcheck: {url}: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        parse_args(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn commands_and_flags() {
        assert_eq!(parse(&[]), Ok(Command::Serve));
        assert_eq!(parse(&["serve"]), Ok(Command::Serve));
        assert_eq!(parse(&["healthcheck"]), Ok(Command::Healthcheck));
        for v in ["version", "-V", "--version"] {
            assert_eq!(parse(&[v]), Ok(Command::Version));
        }
        for h in ["help", "-h", "--help"] {
            assert_eq!(parse(&[h]), Ok(Command::Help));
        }
        assert_eq!(parse(&["healthcheck", "--help"]), Ok(Command::Help));
        assert_eq!(parse(&["serve", "-h"]), Ok(Command::Help));
        assert_eq!(parse(&["backfill", "--help"]), Ok(Command::Help));
        let want = Command::Backfill(Request {
            log_url: "https://ct.example/log/".into(),
            from: 5,
            to: 9,
        });
        assert_eq!(
            parse(&[
                "backfill",
                "--log",
                "https://ct.example/log/",
                "--from",
                "5",
                "--to",
                "9"
            ]),
            Ok(want)
        );
        assert_eq!(
            parse(&[
                "backfill",
                "--to=9",
                "--from=5",
                "--log=https://ct.example/log/"
            ]),
            Ok(Command::Backfill(Request {
                log_url: "https://ct.example/log/".into(),
                from: 5,
                to: 9,
            }))
        );
    }

    #[test]
    fn unknown_and_extra_arguments_are_refused() {
        assert_eq!(
            parse(&["--verbose"]),
            Err(UsageError::UnknownCommand("--verbose".into()))
        );
        assert!(
            parse(&["healthcheck", "now"])
                .unwrap_err()
                .to_string()
                .contains("\"now\"")
        );
        assert!(parse(&["version", "x"]).is_err());
        assert!(parse(&["serve", "--port", "1"]).is_err());
        for bad in [
            &["backfill"][..],
            &["backfill", "--log", "x", "--from", "1"],
            &["backfill", "--log", "x", "--from", "2", "--to", "1"],
            &[
                "backfill", "--log", "x", "--from", "1", "--to", "2", "--size", "3",
            ],
            &["backfill", "--log", "x", "--from", "-1", "--to", "1"],
            &[
                "backfill",
                "--log",
                "x",
                "--from",
                "1",
                "--to",
                "18446744073709551615",
            ],
            &[
                "backfill",
                "--log",
                "x",
                "--from",
                "9223372036854775808",
                "--to",
                "9223372036854775808",
            ],
            &[
                "backfill", "--log", "x", "--from", "1", "--to", "2", "--log", "y",
            ],
            &["backfill", "--log", "x", "--from", "1", "--to"],
            &[
                "backfill", "--log", "x", "--from", "1", "--to", "2", "extra",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(500);
        assert!(parse(&[&long]).unwrap_err().to_string().len() < 120);
    }
}

//! The `certwatch` binary: the command line (`certwatch [serve]`, `healthcheck`,
//! `version`, `help`), the logger and the exit codes. `certwatch healthcheck` asks
//! the running service's `/healthz` (for Docker's HEALTHCHECK) and exits 0 when it
//! answers ok, 1 otherwise. Runs on the main thread.

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
    Version,
    Help,
}

/// Parses the arguments after the program name; an error is the usage complaint.
fn parse_args(args: &[String]) -> Result<Command, String> {
    let wants_help = |rest: &[String]| rest.iter().any(|a| a == "-h" || a == "--help");
    let (command, rest) = match args.split_first() {
        None => return Ok(Command::Serve),
        Some((first, rest)) => (first.as_str(), rest),
    };
    let command = match command {
        "serve" => Command::Serve,
        "healthcheck" => Command::Healthcheck,
        "version" | "-V" | "--version" => Command::Version,
        "help" | "-h" | "--help" => Command::Help,
        other => return Err(format!("unknown command {}", quoted(other))),
    };
    if wants_help(rest) {
        return Ok(Command::Help);
    }
    match rest.first() {
        None => Ok(command),
        Some(extra) => Err(format!("unexpected argument {}", quoted(extra))),
    }
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
        Ok(Command::Version) => {
            println!("certwatch {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(complaint) => {
            eprintln!("certwatch: {complaint}\nusage: certwatch [serve|healthcheck|version|help]");
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    let config = match certwatch::Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("certwatch: {e}");
            return ExitCode::from(2);
        }
    };
    certwatch::logging::init(config.log_level, config.log_secrets());
    let (trigger, shutdown) = certwatch::shutdown::channel();
    if let Err(e) = trigger.on_signals() {
        eprintln!("certwatch: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    match certwatch::run(config, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        // The logger writes to stderr: one line, not a second copy by eprintln.
        // A configuration that can never work (a webhook target the SSRF guard
        // refuses) exits 2, like a bad variable: systemd does not restart it.
        Err(e) => {
            log::error!("{e}");
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

    fn parse(args: &[&str]) -> Result<Command, String> {
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
    }

    #[test]
    fn unknown_and_extra_arguments_are_refused() {
        assert!(
            parse(&["--verbose"])
                .unwrap_err()
                .contains("unknown command")
        );
        assert!(
            parse(&["healthcheck", "now"])
                .unwrap_err()
                .contains("\"now\"")
        );
        assert!(parse(&["version", "x"]).is_err());
        assert!(parse(&["serve", "--port", "1"]).is_err());
        let long = "x".repeat(500);
        assert!(parse(&[&long]).unwrap_err().len() < 120);
    }
}

//! The `callgate` command line (spec/operations.md): parses arguments, sets up logging and hands
//! over to the library. No logic of its own beyond choosing exit codes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use callgate::admin::reload::{self as reload_client, ReloadError, Target};
use callgate::config::{self, ConfigError, ConfigIssue, Loaded};
use callgate::explain::{self as explaining, live::Live, Question};
use callgate::telemetry::{self, LogFormat};
use clap::{Parser, Subcommand, ValueEnum};

/// Exit code of a configuration that is refused (spec operations: check-config, run).
const EXIT_INVALID: u8 = 1;
/// Exit code of `license-report` when the billed total exceeds the licence.
const EXIT_OVER_LICENCE: u8 = 3;
/// Exit code of `explain` when the call would be refused (by a limit or by routing).
const EXIT_REFUSED: u8 = 3;

/// SIP B2BUA call-control daemon with hierarchical concurrent-call limits.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = "/etc/callgate/callgate.toml")]
    config: PathBuf,
    /// Log filter, RUST_LOG syntax (e.g. `info,callgate::transaction=debug`); default: $RUST_LOG,
    /// else `info`.
    #[arg(long, global = true)]
    log: Option<String>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = FormatArg::Text)]
    log_format: FormatArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration: print a summary (exit 0) or every error (exit 1).
    CheckConfig,
    /// SIP trunking channels billed from the limits (exit 3 when over the licence).
    LicenseReport {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon in the foreground.
    Run {
        /// Grace period for calls in progress at shutdown (e.g. `10s`, `500ms`).
        #[arg(long, default_value = "10s", value_parser = parse_drain)]
        drain: Duration,
        /// Engine shards (threads that own the calls); overrides `[server] workers`. Default:
        /// one per available core.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        workers: Option<u16>,
    },
    /// Reload the running daemon's file through its admin API (`POST /reload`): exit 0 when
    /// applied, 1 when refused or unreachable.
    Reload {
        /// Admin API base URL; default: `[admin] address` of the configuration file. The token
        /// is $CALLGATE_ADMIN_TOKEN, else `[admin] token` of the file.
        #[arg(long)]
        admin: Option<String>,
    },
    /// What would happen to a call from a source to a number: who the source is, the route,
    /// every counter of its path with used/limit, the verdict (exit 0 admitted, 3 refused).
    Explain {
        /// Source of the INVITE: `IP[:PORT]` (port 5060 when absent).
        #[arg(long, value_parser = callgate::explain::parse_source)]
        from: SocketAddr,
        /// Request-URI user: the dialled number or DID.
        #[arg(long)]
        to: String,
        /// Take the INVITE as authenticated as this extension, `NUMBER@DOMAIN` (a phone, or a
        /// PBX that must authenticate); credentials are not checked.
        #[arg(long = "as", value_name = "NUMBER@DOMAIN")]
        authenticated_as: Option<String>,
        /// Read the units in use (and the registrations) from a running daemon's admin API;
        /// without it every counter is at 0 and no phone is registered.
        #[arg(long)]
        admin: Option<String>,
        /// Admin bearer token; default: $CALLGATE_ADMIN_TOKEN, else `[admin] token` of the file.
        #[arg(long, requires = "admin")]
        token: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Active calls, counters near their limit and registrations, from the admin API.
    Status {
        /// Admin API base URL; the token, when one is configured, comes from
        /// $CALLGATE_ADMIN_TOKEN.
        #[arg(long, default_value = "http://127.0.0.1:9060")]
        admin: String,
    },
}

fn parse_drain(text: &str) -> Result<Duration, String> {
    config::parse_duration(text).ok_or_else(|| format!("`{text}` is not a duration like 10s"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = cli
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let format = match cli.log_format {
        FormatArg::Text => LogFormat::Text,
        FormatArg::Json => LogFormat::Json,
    };
    if let Err(e) = telemetry::init(&filter, format) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::CheckConfig => Ok(check_config(&cli.config)),
        Command::LicenseReport { json } => license_report(&cli.config, json),
        Command::Run { drain, workers } => run(&cli.config, drain, workers.map(usize::from)),
        Command::Status { admin } => status(&admin),
        Command::Reload { admin } => reload(&cli.config, admin),
        Command::Explain {
            from,
            to,
            authenticated_as,
            admin,
            token,
            json,
        } => {
            let question = Question {
                source: from,
                number: to,
                authenticated_as,
            };
            let admin = admin.map(|url| (url, token));
            explain(&cli.config, &question, admin, json)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(EXIT_INVALID)
    })
}

/// Loads the file, printing every issue to stderr when refused.
fn load_or_report(path: &Path) -> Option<Loaded> {
    match config::load_file(path) {
        Ok(loaded) => Some(loaded),
        Err(ConfigError::Invalid(issues)) => {
            print_issues(&issues);
            let errors = issues.iter().filter(|i| i.is_error()).count();
            eprintln!(
                "{}: configuration invalid: {errors} error(s)",
                path.display()
            );
            None
        }
        Err(e @ ConfigError::Io { .. }) => {
            eprintln!("error: {e}");
            None
        }
    }
}

fn print_issues(issues: &[ConfigIssue]) {
    for issue in issues {
        let tag = if issue.is_error() { "error" } else { "warning" };
        eprintln!("{tag}: {issue}");
    }
}

fn check_config(path: &Path) -> ExitCode {
    let Some(loaded) = load_or_report(path) else {
        return ExitCode::from(EXIT_INVALID);
    };
    print_issues(&loaded.warnings);
    let certificates = callgate::transport::check_certificates(&loaded.snapshot.listen);
    for e in &certificates {
        eprintln!("{}: error: {e}", path.display());
    }
    if !certificates.is_empty() {
        return ExitCode::from(EXIT_INVALID);
    }
    println!(
        "{}: configuration ok: {}",
        path.display(),
        loaded.snapshot.summary()
    );
    ExitCode::SUCCESS
}

fn license_report(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load_or_report(path) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let report = config::license_report(&loaded.snapshot);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(if report.over {
        ExitCode::from(EXIT_OVER_LICENCE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs the daemon until SIGTERM/SIGINT (then drains and exits 0).
fn run(path: &Path, drain: Duration, workers: Option<usize>) -> anyhow::Result<ExitCode> {
    let Some(mut loaded) = load_or_report(path) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    if workers.is_some() {
        loaded.snapshot.server.workers = workers;
    }
    for w in &loaded.warnings {
        tracing::warn!(issue = %w, "configuration warning");
    }
    tracing::info!(config = %path.display(), summary = %loaded.snapshot.summary(), "configuration loaded");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(callgate::daemon::run(
            loaded.snapshot,
            path.to_owned(),
            drain,
        ))
        .context("daemon failed")?;
    Ok(ExitCode::SUCCESS)
}

/// `callgate status`: exit 0 with the tables, 1 when the admin API cannot be read.
fn status(url: &str) -> anyhow::Result<ExitCode> {
    let token = std::env::var(callgate::admin::status::TOKEN_ENV).ok();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match runtime.block_on(callgate::admin::status(url, token.as_deref())) {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// `callgate reload`: exit 0 when the daemon applied the file, 1 when it refused it or could not
/// be asked.
fn reload(path: &Path, admin: Option<String>) -> anyhow::Result<ExitCode> {
    let target = reload_target(path, admin)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match runtime.block_on(reload_client::reload(&target)) {
        Ok(result) if result.accepted => {
            println!("reload accepted");
            result.summary.iter().for_each(|l| println!("  {l}"));
            Ok(ExitCode::SUCCESS)
        }
        Ok(result) => {
            eprintln!("reload refused; the running configuration stays");
            result.errors.iter().for_each(|e| eprintln!("error: {e}"));
            Ok(ExitCode::from(EXIT_INVALID))
        }
        Err(e) => Ok(reload_failed(&e)),
    }
}

/// `--admin` over the file's `[admin] address`; `$CALLGATE_ADMIN_TOKEN` over its `token`.
fn reload_target(path: &Path, admin: Option<String>) -> anyhow::Result<Target> {
    let from_file = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .and_then(|text| Ok(reload_client::target_from_config(&text)?));
    let env_token = std::env::var(callgate::admin::status::TOKEN_ENV).ok();
    Ok(match (admin, from_file) {
        (Some(url), file) => Target {
            url,
            token: env_token.or(file.ok().and_then(|t| t.token)),
        },
        (None, file) => {
            let file = file?;
            Target {
                token: env_token.or(file.token),
                ..file
            }
        }
    })
}

fn reload_failed(e: &ReloadError) -> ExitCode {
    eprintln!("error: {e}");
    if let Some(hint) = reload_client::hint(e) {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(EXIT_INVALID)
}

/// `callgate explain`: exit 0 when the call would be admitted, 3 when refused, 1 on an invalid
/// file or an admin API that cannot be read.
fn explain(
    path: &Path,
    question: &Question,
    admin: Option<(String, Option<String>)>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load_or_report(path) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let file_token = loaded.snapshot.admin.as_ref().and_then(|a| a.token.clone());
    let (live, counts_from) = match admin {
        None => (Live::default(), "file".to_owned()),
        Some((url, token)) => {
            let env_token = std::env::var(callgate::admin::status::TOKEN_ENV).ok();
            let token = token.or(env_token).or(file_token);
            match read_live(&url, token.as_deref())? {
                Ok(live) => (live, url),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
            }
        }
    };
    let limiter = callgate::limits::Limiter::new(std::sync::Arc::new(loaded.snapshot));
    let generation = limiter.current();
    let now = std::time::Instant::now();
    let location = live.location(now);
    let ctx = explaining::Context {
        generation: &generation,
        location: &location,
        now,
        trunks: &live,
        counts_from,
    };
    let explanation = explaining::explain(&ctx, question, &|l, n, k| live.used(l, n, k));
    for m in live.mismatches(&explanation) {
        eprintln!("warning: {m} (is this the file the daemon runs? a reload pending?)");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
    } else {
        print!("{explanation}");
    }
    Ok(if explanation.verdict.admitted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    })
}

fn read_live(
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<Result<Live, callgate::admin::StatusError>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(callgate::explain::live::read(url, token)))
}

//! The tracing subscriber: text or JSON lines on stderr, filtered by an `EnvFilter` directive
//! (`info`, `info,callgate::transaction=debug`). Installed once by `main`; the directive can be
//! changed while the daemon runs ([`set_log_filter`], `PUT /log` of the admin API).

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// The installed filter's reload handle and the directive it was built from.
struct Installed {
    handle: reload::Handle<EnvFilter, Registry>,
    directive: Mutex<String>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter directive does not parse.
    #[error("invalid log filter `{filter}`: {source}")]
    Filter {
        /// The directive as given.
        filter: String,
        /// The parser's complaint.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber is already installed.
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
    /// No subscriber of ours is installed (a library user or a test), so there is no filter to
    /// change.
    #[error("logging is not set up by callgate in this process")]
    NotInstalled,
}

/// Installs the global subscriber writing to stderr.
pub fn init(filter: &str, format: LogFormat) -> Result<(), TelemetryError> {
    let env_filter = parse(filter)?;
    let (filter_layer, handle) = reload::Layer::new(env_filter);
    // Colour codes only on a terminal: journald and log files get plain text.
    let ansi = std::io::stderr().is_terminal();
    let text = (format == LogFormat::Text)
        .then(|| fmt::layer().with_writer(std::io::stderr).with_ansi(ansi));
    let json =
        (format == LogFormat::Json).then(|| fmt::layer().json().with_writer(std::io::stderr));
    tracing_subscriber::registry()
        .with(filter_layer)
        .with(text)
        .with(json)
        .try_init()
        .map_err(|e| TelemetryError::Install(e.to_string()))?;
    let installed = Installed {
        handle,
        directive: Mutex::new(filter.to_owned()),
    };
    INSTALLED
        .set(installed)
        .map_err(|_| TelemetryError::Install("installed twice".into()))
}

/// The filter directive in force, when callgate installed the subscriber.
pub fn log_filter() -> Option<String> {
    let installed = INSTALLED.get()?;
    let directive = installed
        .directive
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Some(directive.clone())
}

/// Replaces the filter directive of the running subscriber (a bad directive changes nothing).
pub fn set_log_filter(filter: &str) -> Result<(), TelemetryError> {
    let installed = INSTALLED.get().ok_or(TelemetryError::NotInstalled)?;
    let env_filter = parse(filter)?;
    let mut directive = installed
        .directive
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    installed
        .handle
        .reload(env_filter)
        .map_err(|e| TelemetryError::Install(e.to_string()))?;
    *directive = filter.to_owned();
    Ok(())
}

fn parse(filter: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::try_new(filter).map_err(|source| TelemetryError::Filter {
        filter: filter.to_owned(),
        source,
    })
}

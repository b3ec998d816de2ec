//! Configuration: the TOML schema (spec/config.md), its validation and the resolved [`Snapshot`].
//!
//! [`load`] is pure (text in, snapshot or every issue out) so tests feed TOML strings; `check-config`,
//! start-up and reload all go through it. [`check_reload`] adds the rules that compare the running
//! snapshot with the new one. This module never does I/O except in [`load_file`].

mod did;
mod index;
mod issue;
mod license;
pub mod model;
mod reload;
mod rules;
mod schema;
mod tenancy;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use issue::{ConfigIssue, Entity, Problem, Severity};
pub use license::{license_report, Level, LicenseLine, LicenseReport};
pub use model::Snapshot;
pub use reload::check_reload;
pub use schema::parse_duration;

/// A configuration that passed validation, with the warnings it raised.
#[derive(Debug)]
pub struct Loaded {
    /// The resolved configuration.
    pub snapshot: Snapshot,
    /// Issues that do not refuse the file (e.g. `max_outgoing > max_calls`).
    pub warnings: Vec<ConfigIssue>,
}

/// Why a configuration file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was read but refused; every issue is listed (errors and warnings).
    #[error("invalid configuration: {} error(s)", .0.iter().filter(|i| i.is_error()).count())]
    Invalid(Vec<ConfigIssue>),
}

/// Parses and validates a configuration text. On refusal, returns every issue found (errors first
/// in the order of the checks, warnings included).
pub fn load(text: &str) -> Result<Loaded, Vec<ConfigIssue>> {
    let raw: schema::RawConfig = toml::from_str(text).map_err(|e| vec![syntax_issue(text, &e)])?;
    match validate::validate(&raw) {
        (Some(snapshot), warnings) => Ok(Loaded { snapshot, warnings }),
        (None, issues) => Err(issues),
    }
}

/// Reads and loads a configuration file.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    load(&text).map_err(ConfigError::Invalid)
}

/// A TOML syntax error, unknown key or wrong type, located by line and column.
fn syntax_issue(text: &str, e: &toml::de::Error) -> ConfigIssue {
    let at = e.span().map_or(0, |s| s.start.min(text.len()));
    let before = &text.as_bytes()[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = text[line_start..at].chars().count() + 1;
    // One issue, one line: the parser's message may span several.
    let message = e.message().trim().replace('\n', "; ");
    ConfigIssue::error(
        Entity::Location { line, column },
        "",
        Problem::Syntax(message),
    )
}

/// Counts of what a snapshot holds, displayed as one line (`check-config`, start-up, reload logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Service providers.
    pub service_providers: usize,
    /// Organizations.
    pub organizations: usize,
    /// Users.
    pub users: usize,
    /// Extensions, phones and PBXs.
    pub extensions: usize,
    /// Of which SIP trunking extensions (PBXs).
    pub pbx_extensions: usize,
    /// Trunks.
    pub trunks: usize,
    /// DID pools.
    pub did_pools: usize,
    /// Inbound, outbound and ring rules together.
    pub rules: usize,
    /// Listeners.
    pub listeners: usize,
}

impl Snapshot {
    /// Counts of what this snapshot holds.
    pub fn summary(&self) -> Summary {
        Summary {
            service_providers: self.service_providers.len(),
            organizations: self.organizations.len(),
            users: self.users.len(),
            extensions: self.extensions.len(),
            pbx_extensions: self.extensions.iter().filter(|e| e.pbx.is_some()).count(),
            trunks: self.trunks.len(),
            did_pools: self.did_pools.len(),
            rules: self.inbound_rules.len() + self.outbound_rules.len() + self.ring_rules.len(),
            listeners: self.listen.len(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} service providers, {} organizations, {} users, {} extensions ({} pbx), {} trunks, \
             {} did pools, {} rules, {} listeners",
            self.service_providers,
            self.organizations,
            self.users,
            self.extensions,
            self.pbx_extensions,
            self.trunks,
            self.did_pools,
            self.rules,
            self.listeners
        )
    }
}

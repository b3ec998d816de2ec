//! The SIP trunking licence report (spec call-control 6).
//!
//! Billed channels come from the limits, not from traffic: for each SIP trunking extension, the
//! highest level on its chain (service provider, then organization, then user) with a finite
//! `public` limit is billed that limit once, however many extensions sit below it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::model::Snapshot;

/// A tenancy level that can be billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A service provider.
    ServiceProvider,
    /// An organization.
    Organization,
    /// A user.
    User,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::ServiceProvider => "service_provider",
            Level::Organization => "organization",
            Level::User => "user",
        })
    }
}

/// One billed level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LicenseLine {
    /// The level billed.
    pub level: Level,
    /// Its name.
    pub name: String,
    /// Its `public` limit, billed once.
    pub limit: u32,
    /// SIP trunking extensions billed through it.
    pub extensions: usize,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LicenseReport {
    /// Billed levels, service providers first, then organizations, then users, by name.
    pub lines: Vec<LicenseLine>,
    /// Sum of the billed limits.
    pub total: u64,
    /// `license.sip_trunking_channels`.
    pub licensed: u32,
    /// True when `total > licensed`.
    pub over: bool,
}

/// Computes the report. A validated snapshot gives every SIP trunking extension a finite limit on
/// its chain; an extension without one would be skipped.
pub fn license_report(s: &Snapshot) -> LicenseReport {
    let mut billed: BTreeMap<(Level, &str), (u32, usize)> = BTreeMap::new();
    for (i, e) in s.extensions.iter().enumerate() {
        if e.pbx.is_none() {
            continue;
        }
        let id = super::model::ExtId(super::validate::to_u32(i));
        let (user, org, sp) = s.chain(id);
        let sp = &s.service_providers[sp.index()];
        let org = &s.organizations[org.index()];
        let user = &s.users[user.index()];
        let level = [
            (Level::ServiceProvider, sp.name.as_str(), sp.limits.public),
            (Level::Organization, org.name.as_str(), org.limits.public),
            (Level::User, user.name.as_str(), user.limits.public),
        ]
        .into_iter()
        .find_map(|(level, name, limit)| limit.map(|l| (level, name, l)));
        if let Some((level, name, limit)) = level {
            billed.entry((level, name)).or_insert((limit, 0)).1 += 1;
        }
    }
    let lines: Vec<LicenseLine> = billed
        .into_iter()
        .map(|((level, name), (limit, extensions))| LicenseLine {
            level,
            name: name.to_owned(),
            limit,
            extensions,
        })
        .collect();
    let total = lines.iter().map(|l| u64::from(l.limit)).sum();
    let licensed = s.license.sip_trunking_channels;
    LicenseReport {
        lines,
        total,
        licensed,
        over: total > u64::from(licensed),
    }
}

impl fmt::Display for LicenseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .lines
            .iter()
            .map(|l| l.name.len())
            .chain([4])
            .max()
            .unwrap_or(4);
        writeln!(
            f,
            "{:<16}  {:<width$}  {:>8}  {:>10}",
            "level", "name", "channels", "extensions"
        )?;
        for l in &self.lines {
            writeln!(
                f,
                "{:<16}  {:<width$}  {:>8}  {:>10}",
                l.level.to_string(),
                l.name,
                l.limit,
                l.extensions
            )?;
        }
        writeln!(f, "{:<16}  {:<width$}  {:>8}", "total", "", self.total)?;
        write!(
            f,
            "{:<16}  {:<width$}  {:>8}",
            "licensed", "", self.licensed
        )?;
        if self.over {
            write!(
                f,
                "\nOVER LICENCE by {}",
                self.total - u64::from(self.licensed)
            )?;
        }
        Ok(())
    }
}

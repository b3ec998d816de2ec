//! `callgate reload`: asks the running daemon to reload its file (`POST /reload`) and returns the
//! result, so `systemctl reload` (the unit's `ExecReload=`) fails on a refused file instead of
//! reporting success for a signal nobody checked.
//!
//! Where the daemon is comes from the configuration file's `[admin]` table (`address`, `token`),
//! read leniently: only that table is parsed, so a file with errors elsewhere still reaches the
//! daemon, which refuses it with every error. `--admin URL` and `$CALLGATE_ADMIN_TOKEN` override
//! the file: a file that changes the address or the token names values the running daemon does not
//! have yet.
//!
//! Exit codes are `main.rs`'s decision; this module returns the result or a [`ReloadError`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Deserialize;

use super::client::{self, AdminUrl};
use super::{ReloadResult, StatusError};

/// Why `callgate reload` could not get a reload result.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is not TOML, so its `[admin]` table cannot be read.
    #[error("cannot read [admin] from the configuration file: {0}")]
    Syntax(#[source] toml::de::Error),
    /// The file has no `[admin]` table and no `--admin` was given.
    #[error("the configuration file has no [admin] table (or pass --admin URL)")]
    NoAdmin,
    /// `[admin] address` is not `IP:port`.
    #[error("[admin] address {address:?} is not IP:port")]
    Address {
        /// The value as written.
        address: String,
    },
    /// The admin API could not be asked, or answered something else than a reload result.
    #[error(transparent)]
    Client(#[from] StatusError),
}

/// Where to send `POST /reload`, and with which token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The admin API's base URL.
    pub url: String,
    /// The bearer token, if any.
    pub token: Option<String>,
}

/// Only the table this command needs; every other key of the file is ignored here.
#[derive(Deserialize)]
struct AdminOnly {
    admin: Option<AdminTable>,
}

#[derive(Deserialize)]
struct AdminTable {
    address: String,
    token: Option<String>,
}

/// The admin API of the configuration `text`: its address (an unspecified bind address is
/// reached over loopback) and token.
pub fn target_from_config(text: &str) -> Result<Target, ReloadError> {
    let file: AdminOnly = toml::from_str(text).map_err(ReloadError::Syntax)?;
    let admin = file.admin.ok_or(ReloadError::NoAdmin)?;
    let mut addr: SocketAddr = admin.address.parse().map_err(|_| ReloadError::Address {
        address: admin.address.clone(),
    })?;
    // `0.0.0.0` / `[::]` listen on every address; the daemon is on this host, so ask loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(Target {
        url: format!("http://{addr}"),
        token: admin.token,
    })
}

/// `POST /reload` on the admin API at `target`: the daemon's result, accepted or refused.
pub async fn reload(target: &Target) -> Result<ReloadResult, ReloadError> {
    let url = AdminUrl::parse(&target.url)?;
    let response = client::request(&url, "POST", "/reload", target.token.as_deref()).await?;
    let path = "/reload";
    match response.status {
        // 200 accepted, 422 refused: both carry a ReloadResult.
        200 | 422 => serde_json::from_slice(&response.body).map_err(|source| {
            ReloadError::Client(StatusError::Json {
                path: path.to_owned(),
                source,
            })
        }),
        401 => Err(StatusError::Unauthorized.into()),
        status => Err(StatusError::Http {
            path: path.to_owned(),
            status,
        }
        .into()),
    }
}

/// What an operator can do about `err`, when the cause is likely a file that moves the admin API
/// or changes its token (the running daemon still has the old ones).
pub fn hint(err: &ReloadError) -> Option<&'static str> {
    match err {
        ReloadError::Client(StatusError::Unauthorized) => Some(
            "if the file changes [admin] token, the daemon still has the old one: set \
             CALLGATE_ADMIN_TOKEN to it, or send SIGHUP",
        ),
        ReloadError::Client(StatusError::Connect { .. }) => Some(
            "if the file moves [admin] address, the daemon still listens on the old one: pass \
             --admin with it, or send SIGHUP",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_comes_from_the_admin_table_and_ignores_the_rest() {
        let text = "[server]\nname = 1\nbogus = true\n[admin]\naddress = \"127.0.0.5:9060\"\ntoken = \"t\"\n";
        let t = target_from_config(text).expect("target");
        assert_eq!(t.url, "http://127.0.0.5:9060");
        assert_eq!(t.token.as_deref(), Some("t"));
    }

    #[test]
    fn unspecified_address_is_reached_over_loopback() {
        let t = target_from_config("[admin]\naddress = \"0.0.0.0:9060\"\n").expect("target");
        assert_eq!((t.url.as_str(), t.token), ("http://127.0.0.1:9060", None));
        let t = target_from_config("[admin]\naddress = \"[::]:9060\"\n").expect("target");
        assert_eq!(t.url, "http://[::1]:9060");
    }

    #[test]
    fn missing_or_bad_admin_table_is_an_error() {
        assert!(matches!(
            target_from_config("[server]\nname = \"x\"\n"),
            Err(ReloadError::NoAdmin)
        ));
        assert!(matches!(
            target_from_config("[admin]\naddress = \"localhost\"\n"),
            Err(ReloadError::Address { .. })
        ));
        assert!(matches!(
            target_from_config("[admin\n"),
            Err(ReloadError::Syntax(_))
        ));
    }
}

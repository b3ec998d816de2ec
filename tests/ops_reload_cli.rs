//! `callgate reload` (the unit's `ExecReload=`) against the `callgate` binary: it finds the admin
//! API and token in the configuration file, exits 0 with the summary when the daemon applied the
//! file, 1 with every error when the daemon refused it, and 1 when the daemon is not there.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 130 here.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use callgate::admin::client;
use support::ops::{binary_config, daemon_addrs, tenancy, DaemonProcess, Exposition};
use support::{Net, WAIT};

const TOKEN: &str = "reload-cli-token";

/// Runs `callgate reload --config path` off the async workers, without a token in the
/// environment (the file's is used).
async fn reload_cli(path: PathBuf) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_callgate"))
            .arg("reload")
            .arg("--config")
            .arg(&path)
            .env_remove("CALLGATE_ADMIN_TOKEN")
            .output()
            .expect("run callgate reload")
    })
    .await
    .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_cli_exits_0_when_applied_and_1_when_refused_or_unreachable() {
    let net = Net(130);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let (sip, admin) = daemon_addrs(net);
    // The token line lands in `[admin]`, right after its address.
    let with_token = |org_public| {
        let tenancy = tenancy(pbx, trunk, Some(org_public));
        binary_config(sip, admin, &format!("token = \"{TOKEN}\"\n{tenancy}"))
    };
    let mut d = DaemonProcess::start(&with_token(10), sip, admin, "1s").await;

    std::fs::write(&d.config, with_token(4)).expect("write");
    let out = reload_cli(d.config.clone()).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("reload accepted\n"), "{stdout}");
    assert!(stdout.contains("counters:"), "{stdout}");

    let invalid = with_token(4).replace("trunks = [\"carrier\"]", "trunks = [\"nowhere\"]");
    std::fs::write(&d.config, invalid).expect("write");
    let out = reload_cli(d.config.clone()).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("reload refused"), "{stderr}");
    assert!(stderr.contains("nowhere"), "{stderr}");

    // The daemon counted both (SIGHUP and the CLI share one path).
    let resp = client::request(&d.admin, "GET", "/metrics", Some(TOKEN))
        .await
        .expect("GET /metrics");
    let m = Exposition::parse(&text(&resp.body));
    let reloads = |r: &str| m.value("callgate_config_reloads_total", &[("result", r)]);
    assert_eq!(
        (reloads("accepted"), reloads("refused")),
        (Some(1.0), Some(1.0))
    );

    d.signal("-TERM");
    let status = d.wait_exit(WAIT).await.expect("callgate exits");
    assert_eq!(status.code(), Some(0));
    let out = reload_cli(d.config.clone()).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

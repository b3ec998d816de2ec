//! `callgate status --admin URL` (spec operations "Command line") against a daemon with held
//! calls: prints the calls and the counters near their limit, exit 0; exit 1 when the admin API
//! is unreachable.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 66 here.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output};

use support::ops::tenancy;
use support::{config, free_addr, Harness, Net, Sipp, SippOpts, PUBLIC_NUMBER};

/// Runs `callgate status --admin url` off the async workers.
async fn status(url: String) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_callgate"))
            .args(["status", "--admin", &url])
            .env_remove("CALLGATE_ADMIN_TOKEN")
            .output()
            .expect("run callgate status")
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_held_calls_and_full_counters_then_fails_when_unreachable() {
    let net = Net(66);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    // Two held calls fill the organization: it shows as a counter at 100 %.
    let h = Harness::start(&config(&tenancy(pbx, trunk, Some(2)))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(2)).await;
    let opts = SippOpts::calls(2).arg(&["-l", "2", "-r", "10"]);
    let uac = Sipp::uac("uac-hold.xml", pbx, h.udp, PUBLIC_NUMBER, opts);
    h.wait_confirmed(2).await;
    let calls = h.get_json("/calls").await;

    let admin = h.daemon.admin.expect("admin API configured");
    let out = status(format!("http://{admin}")).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("active calls (2)"), "{stdout}");
    for call in calls.as_array().expect("GET /calls is a JSON array") {
        let id = call["id"].as_str().expect("call id");
        let row = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no row for call {id} in\n{stdout}"));
        assert!(row.contains(PUBLIC_NUMBER), "{row}");
        assert!(row.contains("confirmed/confirmed"), "{row}");
    }
    let full = stdout
        .lines()
        .find(|l| l.contains("organization") && l.contains("acme"))
        .unwrap_or_else(|| panic!("organization acme not listed as full in\n{stdout}"));
    assert!(full.contains("2/2") && full.contains("100%"), "{full}");
    assert!(stdout.contains("registrations: none"), "{stdout}");

    // Nothing listens on a port just released.
    let nobody = free_addr(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let out = status(format!("http://{nobody}")).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");

    assert_eq!(h.end_all_calls().await, 2);
    uac.finish().await.assert_ok("held calls");
    uas.finish().await.assert_ok("uas");
    h.assert_all_released().await;
}

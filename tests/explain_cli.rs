//! `callgate explain` through the built binary: from a file alone (every counter at 0) and against
//! a running daemon holding a call (`--admin`: used counts live), exit 0 admitted, 3 refused,
//! 1 for an invalid file or an admin API that cannot be read.
//!
//! The live tests own the loopback networks `127.210.0.0/24` and `127.211.0.0/24` (`Net(210)`,
//! `Net(211)`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::{acme, config, Harness, Net, Sipp, SippOpts, PUBLIC_NUMBER};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/callgate.toml")
}

async fn explain(config: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .arg("explain")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove(callgate::admin::status::TOKEN_ENV)
        .output()
        .await
        .expect("run callgate explain")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A line of the counter table made of exactly `cells` (whatever the column widths).
fn has_row(text: &str, cells: &[&str]) -> bool {
    text.lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == cells)
}

#[tokio::test]
async fn an_admitted_call_from_the_file_exits_0_naming_its_path_counters() {
    let out = explain(
        &example(),
        &["--from", "127.0.0.1:5090", "--to", "3125559999"],
    )
    .await;
    assert_exit(&out, 0);
    let text = stdout(&out);
    for needle in [
        "caller   extension 200@acme (PBX at 127.0.0.1:5090, matched by address)",
        "route    outbound by rule 1",
        "verdict  admitted: rings target 1: 3125559999 via trunk carrier-a",
    ] {
        assert!(text.contains(needle), "no `{needle}` in\n{text}");
    }
    for row in [
        ["extension", "200@acme", "max_outgoing", "0/unlimited"],
        ["user", "acme-pbx", "public", "0/30"],
        ["service_provider", "wholesale-east", "public", "0/200"],
        ["trunk", "carrier-a", "max_outbound", "0/60"],
    ] {
        assert!(has_row(&text, &row), "no row {row:?} in\n{text}");
    }
}

#[tokio::test]
async fn a_counter_with_limit_0_refuses_with_exit_3_and_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("callgate.toml");
    let text = std::fs::read_to_string(example()).expect("read the example");
    assert_eq!(text.matches("max_inbound = 60").count(), 1);
    std::fs::write(&path, text.replace("max_inbound = 60", "max_inbound = 0")).expect("write");
    let out = explain(&path, &["--from", "127.0.0.1:5080", "--to", "2125550160"]).await;
    assert_exit(&out, 3);
    let text = stdout(&out);
    assert!(
        text.contains("caller   trunk carrier-a (matched by gateway address)"),
        "{text}"
    );
    assert!(
        has_row(&text, &["trunk", "carrier-a", "max_inbound", "0/0", "FULL"]),
        "{text}"
    );
    assert!(text.contains("0/0  FULL"), "{text}");
    assert!(text.contains("verdict  refused: 486 Busy Here"), "{text}");
    assert!(
        text.contains("Reason: SIP;cause=486;text=\"trunk carrier-a: max_inbound 0/0\""),
        "{text}"
    );
    assert!(
        text.contains("Warning: 399 callgate \"trunk carrier-a: max_inbound 0/0\""),
        "{text}"
    );
    let json = explain(
        &path,
        &["--from", "127.0.0.1:5080", "--to", "2125550160", "--json"],
    )
    .await;
    assert_exit(&json, 3);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON on stdout");
    assert_eq!(v["verdict"]["status"], 486);
    assert_eq!(v["route"]["destination"]["extension"], "200@acme");
}

#[tokio::test]
async fn routing_refusals_exit_3_and_bad_inputs_exit_1() {
    let unknown = explain(&example(), &["--from", "192.0.2.1", "--to", "101"]).await;
    assert_exit(&unknown, 3);
    assert!(stdout(&unknown).contains("refused: 403 Forbidden"));
    let no_route = explain(&example(), &["--from", "127.0.0.2", "--to", "2125550999"]).await;
    assert_exit(&no_route, 3);
    assert!(stdout(&no_route).contains("refused: 404 Not Found"));
    let dir = tempfile::tempdir().expect("temp dir");
    let invalid = dir.path().join("invalid.toml");
    std::fs::write(&invalid, "[server]\nreject_code = 99\n").expect("write");
    assert_exit(
        &explain(&invalid, &["--from", "127.0.0.1", "--to", "1"]).await,
        1,
    );
    // Nothing listens on port 9 of a test-only address.
    let args = ["--from", "127.0.0.1:5090", "--to", "3125559999"];
    let unreachable = explain(
        &example(),
        &[&args[..], &["--admin", "127.0.0.1:9"]].concat(),
    )
    .await;
    assert_exit(&unreachable, 1);
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot connect"));
    // A phone is known by its credentials: `--as` takes them as given.
    let phone = ["--from", "127.0.0.5", "--as", "101@acme.example"];
    let to_pbx = explain(&example(), &[&phone[..], &["--to", "200"]].concat()).await;
    assert_exit(&to_pbx, 0);
    assert!(stdout(&to_pbx).contains("internal to extension 200@acme"));
    let to_phone = explain(&example(), &[&phone[..], &["--to", "102"]].concat()).await;
    assert_exit(&to_phone, 3);
    assert!(stdout(&to_phone).contains("refused: 480 Temporarily Unavailable"));
    let usage = explain(&example(), &["--from", "pbx.example", "--to", "1"]).await;
    assert_exit(&usage, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_admin_used_is_live_and_a_held_call_makes_the_next_one_refused() {
    let net = Net(210);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let tenancy = acme(pbx, "udp", trunk).replace(
        "number = \"200\"\nuser = \"alice\"",
        "number = \"200\"\nuser = \"alice\"\nmax_calls = 1",
    );
    let toml = config(&tenancy);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("callgate.toml");
    std::fs::write(&path, &toml).expect("write");
    let h = Harness::start(&toml).await;
    let admin = format!("http://{}", h.daemon.admin.expect("admin API"));
    let from = pbx.to_string();
    let args = ["--from", &from, "--to", PUBLIC_NUMBER, "--admin", &admin];

    let idle = explain(&path, &args).await;
    assert_exit(&idle, 0);
    assert!(stdout(&idle).contains(&format!("used: live from {admin}")));

    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(1)).await;
    let opts = SippOpts::calls(1).arg(&["-l", "1"]);
    let held = Sipp::uac("uac-hold.xml", pbx, h.udp, PUBLIC_NUMBER, opts);
    h.wait_confirmed(1).await;
    assert_eq!(
        h.counter_used("extension", "200@acme", "max_calls").await,
        1
    );

    let busy = explain(&path, &args).await;
    assert_exit(&busy, 3);
    let text = stdout(&busy);
    assert!(
        has_row(
            &text,
            &["extension", "200@acme", "max_calls", "1/1", "FULL"]
        ),
        "{text}"
    );
    assert!(
        has_row(&text, &["service_provider", "sp", "public", "1/10"]),
        "{text}"
    );
    assert!(
        text.contains("Reason: SIP;cause=486;text=\"extension 200@acme: max_calls 1/1\""),
        "{text}"
    );
    // Explaining acquired nothing.
    assert_eq!(
        h.counter_used("extension", "200@acme", "max_calls").await,
        1
    );

    assert_eq!(h.end_all_calls().await, 1);
    held.finish().await.assert_ok("held call");
    uas.finish().await.assert_ok("trunk");
    h.assert_all_released().await;
    assert_exit(&explain(&path, &args).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_admin_the_token_is_sent_and_a_file_the_daemon_does_not_run_is_warned_about() {
    let net = Net(211);
    let tenancy = acme(net.addr(1), "udp", net.addr(2));
    let toml = config(&tenancy).replace(
        "address = \"127.0.0.1:0\"\n\n[[service_provider]]",
        "address = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n\n[[service_provider]]",
    );
    assert!(toml.contains("s3cret"), "{toml}");
    let h = Harness::start(&toml).await;
    let admin = format!("http://{}", h.daemon.admin.expect("admin API"));
    let from = net.addr(1).to_string();
    let args = ["--from", &from, "--to", PUBLIC_NUMBER, "--admin", &admin];
    // The file explained from has no token and another limit on the provider.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("callgate.toml");
    let other = config(&tenancy).replace("limits = { public = 10 }", "limits = { public = 11 }");
    std::fs::write(&path, other).expect("write");

    let refused = explain(&path, &args).await;
    assert_exit(&refused, 1);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused the token"));

    let ok = explain(&path, &[&args[..], &["--token", "s3cret"]].concat()).await;
    assert_exit(&ok, 0);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(
        stderr.contains("service_provider sp public: the daemon's limit is 10, the file's 11"),
        "{stderr}"
    );
}

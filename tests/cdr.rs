//! Call detail records end to end (issue 19): a known call mix (answered, cancelled, refused by a
//! limit, failed with the callee's 486) through the daemon gives exactly one JSON line each, with
//! the right outcome, who ended it, status, trunk and path; a reload (what SIGHUP does) reopens
//! the file after logrotate moved it; shutdown leaves every record written.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 186 here.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{acme, config, wait_until, Harness, Net, Sipp, SippOpts, DID, PUBLIC_NUMBER};

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn wait_lines(path: &Path, n: usize) -> Vec<Value> {
    let ok = wait_until(Duration::from_secs(10), || lines(path).len() >= n).await;
    let got = lines(path);
    assert!(ok, "{} records, {n} expected: {got:#?}", got.len());
    got
}

fn write_config(
    dir: &Path,
    pbx: SocketAddr,
    trunk: SocketAddr,
    cdr: &Path,
    public: u32,
) -> std::path::PathBuf {
    let tenancy = acme(pbx, "udp", trunk).replace(
        "limits = { public = 10 }",
        &format!("limits = {{ public = {public} }}"),
    );
    let toml = config(&tenancy).replace(
        "name = \"e2e\"",
        &format!("name = \"e2e\"\ncdr_file = \"{}\"", cdr.display()),
    );
    let file = dir.join("callgate.toml");
    std::fs::write(&file, toml).expect("write the config");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_call_mix_gives_one_record_per_call_and_a_reload_reopens_the_file() {
    let net = Net(186);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let dir = tempfile::tempdir().expect("tempdir");
    let cdr = dir.path().join("cdr.jsonl");
    let h = Harness::start_file(&write_config(dir.path(), pbx, trunk, &cdr, 10)).await;

    // Answered, ended by the caller's BYE.
    let callee = Sipp::uas("uas.xml", trunk, SippOpts::default()).await;
    let caller = Sipp::uac("uac.xml", pbx, h.udp, PUBLIC_NUMBER, SippOpts::default());
    caller.finish().await.assert_ok("answered caller");
    callee.finish().await.assert_ok("answered callee");
    let answered = wait_lines(&cdr, 1).await.remove(0);
    assert_eq!(answered["outcome"], "answered", "{answered}");
    assert_eq!(answered["ended_by"], "caller");
    assert_eq!(answered["reason"], "bye");
    assert_eq!(answered["status"], 200);
    assert_eq!(answered["trunk"], "carrier");
    assert!(answered["b_call_id"].is_string());
    assert!(answered["answer"].is_string());
    let path: Vec<String> = answered["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(|c| format!("{}:{}:{}", c["level"], c["name"], c["counter"]).replace('"', ""))
        .collect();
    assert!(path.contains(&"user:alice:public".to_owned()), "{path:?}");
    assert!(
        path.contains(&"trunk:carrier:max_outbound".to_owned()),
        "{path:?}"
    );

    // Cancelled by the caller while the callee rings.
    let callee = Sipp::uas("uas-ring.xml", pbx, SippOpts::default()).await;
    let caller = Sipp::uac("uac-cancel.xml", trunk, h.udp, DID, SippOpts::default());
    caller.finish().await.assert_ok("cancelling caller");
    callee.finish().await.assert_ok("ringing callee");
    let cancelled = wait_lines(&cdr, 2).await.remove(1);
    assert_eq!(cancelled["outcome"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["ended_by"], "caller");
    assert_eq!(cancelled["status"], 487);
    assert!(cancelled["answer"].is_null());
    assert_eq!(cancelled["duration_secs"], 0.0);

    // Failed: the callee is busy.
    let callee = Sipp::uas("uas-busy.xml", trunk, SippOpts::default()).await;
    let caller = Sipp::uac(
        "uac-fail.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    caller.finish().await.assert_ok("failing caller");
    callee.finish().await.assert_ok("busy callee");
    let failed = wait_lines(&cdr, 3).await.remove(2);
    assert_eq!(failed["outcome"], "failed", "{failed}");
    assert_eq!(failed["ended_by"], "callee");
    assert_eq!(failed["status"], 486);

    // logrotate moves the file; the reload (SIGHUP's) reopens it, here with public = 0, so the
    // next call is refused by the provider's counter and its record lands in the new file.
    let rotated = dir.path().join("cdr.jsonl.1");
    std::fs::rename(&cdr, &rotated).expect("rotate");
    write_config(dir.path(), pbx, trunk, &cdr, 0);
    let result = h.daemon.reload().await;
    assert!(result.accepted, "{result:?}");
    let caller = Sipp::uac(
        "uac-fail.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::default(),
    );
    caller.finish().await.assert_ok("refused caller");
    let refused = wait_lines(&cdr, 1).await.remove(0);
    assert_eq!(refused["outcome"], "rejected", "{refused}");
    assert_eq!(refused["ended_by"], "callgate");
    assert_eq!(refused["status"], 486);
    assert_eq!(refused["refused_by"]["level"], "service_provider");
    assert_eq!(refused["refused_by"]["name"], "sp");
    assert_eq!(refused["refused_by"]["counter"], "public");
    assert_eq!(
        lines(&rotated).len(),
        3,
        "the rotated file keeps its records"
    );
    h.assert_all_released().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_the_record_of_every_call_it_ends() {
    let net = Net(187);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let dir = tempfile::tempdir().expect("tempdir");
    let cdr = dir.path().join("cdr.jsonl");
    let h = Harness::start_file(&write_config(dir.path(), pbx, trunk, &cdr, 10)).await;
    let callee = Sipp::uas("uas.xml", trunk, SippOpts::calls(3)).await;
    let opts = SippOpts::calls(3).arg(&["-l", "3", "-r", "50"]);
    let caller = Sipp::uac("uac-hold.xml", pbx, h.udp, PUBLIC_NUMBER, opts);
    h.wait_confirmed(3).await;
    let (left, limiter) = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!(left, 0);
    assert_eq!(limiter.in_use(), 0);
    let records = lines(&cdr);
    assert_eq!(records.len(), 3, "{records:#?}");
    for r in &records {
        assert_eq!(r["outcome"], "answered", "{r}");
        assert_eq!(r["ended_by"], "callgate");
        assert_eq!(r["reason"], "shutdown");
    }
    caller.finish().await.assert_ok("held calls");
    callee.finish().await.assert_ok("callee");
}

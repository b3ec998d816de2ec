//! `register` trunks end to end: callgate registers to a SIPp registrar with digest, refreshes
//! at half the granted lifetime, and backs off when refused. Network 127.161.0.0/24.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{header, Harness, Net, Sipp, SippOpts, WAIT};

const NET: Net = Net(161);

fn config(registrar: SocketAddr, extra: &str) -> String {
    support::config(&format!(
        r#"
[[trunk]]
name = "provider"
kind = "register"
address = "{registrar}"
transport = "udp"
username = "trunkuser"
password = "trunkpw"
{extra}
"#
    ))
}

/// The `/trunks` entry of `name`.
async fn trunk(h: &Harness, name: &str) -> Value {
    let list = h.get_json("/trunks").await;
    list.as_array()
        .and_then(|l| l.iter().find(|t| t["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no trunk {name} in {list}"))
}

async fn wait_registration(h: &Harness, state: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = trunk(h, "provider").await;
        if v["registration"]["state"] == state {
            return v;
        }
        assert!(Instant::now() < deadline, "registration never {state}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics_text(h: &Harness) -> String {
    let (status, body) = support::ops::admin_get(&h.admin, "/metrics").await;
    assert_eq!(status, 200);
    body
}

/// Seconds (of the day) at which SIPp logged receiving each message starting with `start`.
fn received_at(log: &str, start: &str) -> Vec<f64> {
    log.split("----------------------------------------------- ")
        .filter(|block| block.contains("message received"))
        .filter(|block| {
            block
                .split_once(":\n\n")
                .is_some_and(|(_, m)| m.trim_start().starts_with(start))
        })
        .filter_map(|block| {
            let time = block.split_whitespace().nth(1)?;
            let mut hms = time.split(':').map(|p| p.parse::<f64>().ok());
            let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
            Some(h * 3600.0 + m * 60.0 + s)
        })
        .collect()
}

fn cseq(msg: &str) -> u32 {
    header(msg, "CSeq")
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no CSeq in {msg}"))
}

#[tokio::test]
async fn register_trunk_answers_the_challenge_and_refreshes_at_half_the_lifetime() {
    let registrar = NET.addr(10);
    let sipp = Sipp::uas("uas-registrar-auth.xml", registrar, SippOpts::default()).await;
    let started = Instant::now();
    let h = Harness::start(&config(registrar, "register_expires = \"60s\"")).await;
    let run = sipp.finish().await;
    run.assert_ok("registrar");
    // Granted 4 s: the refresh waits half of it.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "refreshed after {:?}",
        started.elapsed()
    );
    let registers = run.received("REGISTER ");
    assert_eq!(registers.len(), 3, "initial, answered, refresh");
    let call_ids: Vec<_> = registers.iter().map(|m| header(m, "Call-ID")).collect();
    assert!(call_ids.iter().all(|c| *c == call_ids[0]), "{call_ids:?}");
    let seqs: Vec<u32> = registers.iter().map(|m| cseq(m)).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "CSeq {seqs:?}");
    assert_eq!(header(registers[0], "Expires"), Some("60"));
    let contact = header(registers[0], "Contact").expect("Contact");
    assert!(
        contact.contains(&h.udp.to_string()),
        "{contact} names the listener"
    );
    let v = wait_registration(&h, "registered").await;
    let reg = &v["registration"];
    assert_eq!(reg["last_status"], 200, "{v}");
    assert!(
        reg["expires_in_secs"].as_u64().is_some_and(|s| s <= 30),
        "{v}"
    );
    assert_eq!(v["available"], true, "{v}");
    let metrics = metrics_text(&h).await;
    assert!(
        metrics.contains("callgate_trunk_registered{trunk=\"provider\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn forbidden_registration_backs_off_doubling() {
    let registrar = NET.addr(11);
    let sipp = Sipp::uas(
        "uas-registrar-forbidden.xml",
        registrar,
        SippOpts::default(),
    )
    .await;
    let h = Harness::start(&config(registrar, "register_retry = \"1s\"")).await;
    let v = wait_registration(&h, "failing").await;
    let reg = &v["registration"];
    assert_eq!(reg["last_status"], 403, "{v}");
    assert_eq!(reg["reason"], "refused", "{v}");
    assert_eq!(
        v["available"], false,
        "an unregistered account takes no calls"
    );
    let run = sipp.finish().await;
    run.assert_ok("registrar");
    let at = received_at(&run.messages, "REGISTER ");
    assert_eq!(at.len(), 3, "{at:?}");
    let (first, second) = (at[1] - at[0], at[2] - at[1]);
    assert!(first >= 0.9, "first retry after {first} s");
    assert!(second >= 1.9, "second retry after {second} s: doubled");
    let v = trunk(&h, "provider").await;
    let next = v["registration"]["next_attempt_in_secs"].as_u64();
    assert!(
        next.is_some_and(|s| (2..=4).contains(&s)),
        "4 s after the third 403: {v}"
    );
}

#[tokio::test]
async fn shutdown_unregisters_with_expires_zero() {
    let registrar = NET.addr(12);
    let sipp = Sipp::uas(
        "uas-registrar-unregister.xml",
        registrar,
        SippOpts::default(),
    )
    .await;
    let h = Harness::start(&config(registrar, "")).await;
    wait_registration(&h, "registered").await;
    let (calls, _) = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!(calls, 0);
    let run = sipp.finish().await;
    run.assert_ok("registrar");
    let registers = run.received("REGISTER ");
    assert_eq!(header(registers[1], "Expires"), Some("0"));
    assert_eq!(
        header(registers[0], "Call-ID"),
        header(registers[1], "Call-ID")
    );
}

#[tokio::test]
async fn reload_unregisters_a_removed_trunk_and_starts_an_added_one() {
    let registrar = NET.addr(13);
    let sipp = Sipp::uas(
        "uas-registrar-unregister.xml",
        registrar,
        SippOpts::default(),
    )
    .await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("callgate.toml");
    std::fs::write(&path, config(registrar, "")).expect("write config");
    let h = Harness::start_file(&path).await;
    wait_registration(&h, "registered").await;
    let replaced = support::config(&format!(
        "[[trunk]]\nname = \"added\"\nkind = \"ip\"\naddress = \"{}\"\n",
        NET.addr(14)
    ));
    std::fs::write(&path, replaced).expect("rewrite config");
    let result = h.daemon.reload().await;
    assert!(result.accepted, "{result:?}");
    sipp.finish().await.assert_ok("registrar");
    let deadline = Instant::now() + WAIT;
    loop {
        let list = h.get_json("/trunks").await;
        let names: Vec<&str> = list
            .as_array()
            .map(|l| l.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        if names == ["added"] {
            break;
        }
        assert!(Instant::now() < deadline, "/trunks after reload: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

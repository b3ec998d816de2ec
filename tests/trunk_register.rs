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

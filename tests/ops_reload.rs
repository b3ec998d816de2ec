//! Reload under load through the `callgate` binary (spec call-control 8, operations "Signals"):
//! SIPp keeps calls flowing while the test sends real SIGHUPs alternating between two valid files
//! (one lowering the organization's public limit below the calls in progress) and once an
//! invalid file. No call fails except those the lowered limit refuses, no call in progress is
//! dropped, the invalid file is refused and ignored, and every counter ends at 0.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 61 here.

mod support;

use std::time::Duration;

use support::ops::{binary_config, daemon_addrs, scrape, tenancy, wait_released, DaemonProcess};
use support::{Net, Sipp, SippOpts, PUBLIC_NUMBER, WAIT};

/// Calls per second, and for how long.
const RATE: u32 = 100;
const SECONDS: u32 = 20;
/// Hold time of each call: about RATE * HOLD = 40 calls are up at once.
const HOLD_MS: &str = "400";
/// The organization's public limit in the lowered file, well below the calls up at once.
const LOWERED: u32 = 15;
const WIDE: u32 = 1000;
/// Pause between two SIGHUPs: 11 of them fit in the traffic's 20 s.
const RELOAD_EVERY: Duration = Duration::from_millis(1500);

/// `limit` and `used` of organization acme's public counter, from `GET /counters`.
async fn acme_public(d: &DaemonProcess) -> (u64, u64) {
    let counters = d.get_json("/counters").await;
    let c = counters
        .as_array()
        .expect("GET /counters is a JSON array")
        .iter()
        .find(|c| c["level"] == "organization" && c["name"] == "acme" && c["counter"] == "public")
        .cloned()
        .expect("counter organization acme public");
    (
        c["limit"].as_u64().expect("a finite limit"),
        c["used"].as_u64().expect("used"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_no_call_and_lowers_the_limit_for_new_calls_only() {
    let net = Net(61);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let (sip, admin) = daemon_addrs(net);
    let wide = binary_config(sip, admin, &tenancy(pbx, trunk, Some(WIDE)));
    let lowered = binary_config(sip, admin, &tenancy(pbx, trunk, Some(LOWERED)));
    // Valid on its own terms but for a rule naming a trunk that does not exist.
    let invalid = wide.replace("trunks = [\"carrier\"]", "trunks = [\"nowhere\"]");
    let mut d = DaemonProcess::start(&wide, sip, admin, "5s").await;

    let traffic = Duration::from_secs(SECONDS.into());
    let long = traffic * 3;
    let callee_opts = SippOpts {
        calls: 1_000_000,
        timeout: long,
        ..SippOpts::default()
    };
    let uas = Sipp::uas("uas.xml", trunk, callee_opts).await;
    let total = RATE * SECONDS;
    let caller_opts = SippOpts {
        calls: total,
        timeout: long,
        ..SippOpts::default()
    }
    .arg(&["-r", &RATE.to_string(), "-d", HOLD_MS, "-l", "1000"]);
    let uac = Sipp::uac("uac-limit.xml", pbx, d.sip, PUBLIC_NUMBER, caller_opts);

    // Ten valid reloads alternating lowered/wide, the invalid file after the fifth (while the
    // lowered limit is in force).
    let (mut accepted, mut overshoot) = (0, Vec::new());
    for step in 0..11 {
        tokio::time::sleep(RELOAD_EVERY).await;
        if step == 5 {
            std::fs::write(&d.config, &invalid).expect("write the invalid file");
            d.signal("-HUP");
            d.wait_log("reload refused", 1, WAIT).await;
            assert_eq!(
                acme_public(&d).await.0,
                u64::from(LOWERED),
                "refused file ignored"
            );
            continue;
        }
        let lower = accepted % 2 == 0;
        std::fs::write(&d.config, if lower { &lowered } else { &wide }).expect("write");
        d.signal("-HUP");
        accepted += 1;
        d.wait_log("reload accepted", accepted, WAIT).await;
        let (limit, used) = acme_public(&d).await;
        if lower {
            assert_eq!(limit, u64::from(LOWERED));
            overshoot.push(used.saturating_sub(limit));
        } else {
            assert_eq!(limit, u64::from(WIDE));
        }
    }
    assert_eq!(accepted, 10);

    let caller = uac.finish_within(long).await;
    caller.assert_ok("uac-limit under reloads");
    let refused = caller.received("SIP/2.0 486");
    let answered = total as usize - refused.len();
    eprintln!(
        "{total} calls: {answered} answered, {} refused by the lowered limit; calls above the \
         lowered limit right after each lowering reload: {overshoot:?}",
        refused.len()
    );
    assert!(!refused.is_empty(), "the lowered limit refused no call");
    for r in &refused {
        assert!(r.contains("organization acme: public"), "{r}");
    }
    // Calls in progress when the limit was lowered kept going: more were up than it allows.
    assert!(
        overshoot.iter().any(|o| *o > 0),
        "no lowering reload found more calls up than the new limit: {overshoot:?}"
    );
    // No call in progress was ended by callgate: the caller never got a BYE (and would have
    // failed on one).
    assert!(caller.received("BYE ").is_empty());

    wait_released(&d.admin).await;
    let m = scrape(&d.admin).await;
    let outcome = |o: &str| m.value("callgate_calls_total", &[("outcome", o)]);
    assert_eq!(m.value("callgate_calls_active", &[]), Some(0.0));
    assert_eq!(outcome("answered"), Some(answered as f64));
    assert_eq!(outcome("rejected"), Some(refused.len() as f64));
    assert_eq!(outcome("failed"), Some(0.0));
    assert_eq!(outcome("cancelled"), Some(0.0));
    let by_acme = [
        ("level", "organization"),
        ("name", "acme"),
        ("counter", "public"),
    ];
    assert_eq!(
        m.value("callgate_admission_rejections_total", &by_acme),
        Some(refused.len() as f64)
    );
    let reloads = |r: &str| m.value("callgate_config_reloads_total", &[("result", r)]);
    assert_eq!(reloads("accepted"), Some(10.0));
    assert_eq!(reloads("refused"), Some(1.0));
    let refusal = d.log_lines("reload refused");
    assert_eq!(refusal.len(), 1);
    assert!(refusal[0].contains("nowhere"), "{}", refusal[0]);

    let callee = uas.stop();
    assert_eq!(callee.received("INVITE ").len(), answered);
    assert_eq!(callee.received("BYE ").len(), answered);
    d.signal("-TERM");
    let status = d.wait_exit(WAIT).await.expect("callgate exits");
    assert_eq!(status.code(), Some(0));
}

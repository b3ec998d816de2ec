//! Dialogs are matched by Call-ID and both tags (RFC 3261 12.2.2), end to end: a BYE that carries
//! a live call's Call-ID with a made-up To tag gets 481 and ends nothing; the real BYE then ends
//! the call (issue 15, item 2). Before the fix the made-up BYE hung the call up.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 107 here.

mod support;

use support::{acme, config, Harness, Net, Sipp, SippOpts, PUBLIC_NUMBER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bye_with_a_guessed_tag_gets_481_and_the_call_goes_on() {
    let net = Net(107);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(2)).await;
    let opts = SippOpts::calls(2).arg(&["-l", "1"]);
    let uac = Sipp::uac("uac-bye-wrong-tag.xml", pbx, h.udp, PUBLIC_NUMBER, opts);
    let caller = uac.finish().await;
    // The scenario itself requires the 481 to the made-up BYE and the 200 to the real one.
    caller.assert_ok("uac-bye-wrong-tag");
    let callee = uas.finish().await;
    callee.assert_ok("uas");
    assert_eq!(
        callee.received("BYE ").len(),
        2,
        "one BYE per call reached the callee, after the real BYE"
    );
    h.assert_all_released().await;
}

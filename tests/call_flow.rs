//! Calls bridged end to end between SIPp processes: a PBX extension (SIPp UAC or UAS) on one side,
//! an `ip` trunk (SIPp UAS or UAC) on the other, callgate in between. Every test ends with every
//! counter back at 0.

mod support;

use std::time::Duration;

use support::{acme, config, Harness, Net, Sipp, SippOpts, DID, PUBLIC_NUMBER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_calls_set_up_and_hung_up_by_the_caller_over_udp() {
    let net = Net(11);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let h = Harness::start(&config(&acme(pbx, "udp", trunk))).await;
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(20)).await;
    let uac = Sipp::uac(
        "uac.xml",
        pbx,
        h.udp,
        PUBLIC_NUMBER,
        SippOpts::calls(20).arg(&["-r", "50", "-l", "5"]),
    );
    uac.finish().await.assert_ok("uac");
    uas.finish().await.assert_ok("uas");
    h.assert_all_released().await;
}

//! The scanners every public SIP server meets, against the daemon (issue 16): sipvicious `svwar`
//! over a range holding known extensions finds none of them with REGISTER, INVITE or OPTIONS
//! (forced past its sanity check, so every extension is tried), and `svcrack` with the right
//! password 60th in its dictionary is banned before it gets there.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 146..=147 here.

mod support;

use std::process::Command;

use support::{config, Harness, Net};

/// [`support::acme`] plus the phones 101 ("pw101") and 105 ("pw105") of user alice.
fn tenancy(net: Net) -> String {
    support::acme(net.addr(1), "udp", net.addr(2)).replace(
        "[[trunk]]",
        "[[extension]]\nnumber = \"101\"\nuser = \"alice\"\npassword = \"pw101\"\n\n\
         [[extension]]\nnumber = \"105\"\nuser = \"alice\"\npassword = \"pw105\"\n\n[[trunk]]",
    )
}

/// Runs a sipvicious tool to completion (they stop by themselves) and returns its output.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is installed (scripts/test installs sipvicious): {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svwar_finds_none_of_the_known_extensions() {
    let net = Net(146);
    let h = Harness::start(&config(&tenancy(net))).await;
    let target = format!("udp://{}", h.udp);
    let bind = net.ip(9).to_string();
    for method in ["REGISTER", "INVITE", "OPTIONS"] {
        let out = tokio::task::spawn_blocking({
            let (target, bind) = (target.clone(), bind.clone());
            move || {
                run(
                    "svwar",
                    &[
                        "-e100-110",
                        "-m",
                        method,
                        "--domain",
                        "acme.example",
                        "--force",
                        "-b",
                        &bind,
                        "--maximumtime",
                        "5",
                        &target,
                    ],
                )
            }
        })
        .await
        .expect("svwar ran");
        let found: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("| 101 ") || l.contains("| 105 "))
            .collect();
        assert!(found.is_empty(), "svwar {method} found {found:?}:\n{out}");
    }
    h.assert_no_registrations().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svcrack_is_banned_before_it_reaches_the_password() {
    let net = Net(147);
    let h = Harness::start(&config(&tenancy(net))).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let dictionary = dir.path().join("passwords.txt");
    let mut words: Vec<String> = (1..60).map(|n| format!("guess{n}")).collect();
    words.push("pw101".into());
    std::fs::write(&dictionary, words.join("\n") + "\n").expect("dictionary");
    let target = format!("udp://{}", h.udp);
    let bind = net.ip(9).to_string();
    let dict = dictionary.display().to_string();
    // After the ban svcrack keeps retrying its words against the 403s for ever: it is stopped
    // after 8 s (coreutils `timeout`), which is how long the test lets it try.
    let out = tokio::task::spawn_blocking(move || {
        run(
            "timeout",
            &[
                "8",
                "svcrack",
                "-u",
                "101",
                "-d",
                &dict,
                "--domain",
                "acme.example",
                "-b",
                &bind,
                "--maximumtime",
                "5",
                &target,
            ],
        )
    })
    .await
    .expect("svcrack ran");
    assert!(!out.contains("pw101"), "svcrack found the password:\n{out}");
    let bans = h.get_json("/bans").await;
    let bans = bans.as_array().expect("a JSON array");
    assert_eq!(bans.len(), 1, "{bans:?}\n{out}");
    // svcrack does not always honour -b: its source is the bound IP or 127.0.0.1.
    let banned = bans[0]["ip"].as_str().unwrap_or_default().to_owned();
    assert!(
        banned == net.ip(9).to_string() || banned == "127.0.0.1",
        "{banned}"
    );
    let metrics = callgate::admin::client::request(&h.admin, "GET", "/metrics", None)
        .await
        .expect("metrics");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let failures: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("callgate_auth_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(failures <= 50, "banned after {failures} counted failures");
}

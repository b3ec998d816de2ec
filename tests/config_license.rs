//! `callgate license-report` through the built binary (spec call-control 6, E4 and E5).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn license_report(path: &Path, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callgate"));
    cmd.arg("license-report").arg("--config").arg(path);
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run callgate")
}

fn report_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("license-report --json prints JSON")
}

#[test]
fn e4_provider_limit_is_billed_once() {
    let out = license_report(&fixture("e4.toml"), true);
    assert_eq!(out.status.code(), Some(0));
    let r = report_json(&out);
    assert_eq!(r["total"], 200);
    assert_eq!(r["licensed"], 300);
    assert_eq!(r["over"], false);
    let lines = r["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["level"], "service_provider");
    assert_eq!(lines[0]["name"], "sp1");
    assert_eq!(lines[0]["limit"], 200);
    assert_eq!(lines[0]["extensions"], 5);
}

#[test]
fn e5_without_provider_limit_bills_each_user() {
    let out = license_report(&fixture("e5.toml"), true);
    assert_eq!(out.status.code(), Some(0));
    let r = report_json(&out);
    assert_eq!(r["total"], 500);
    assert_eq!(r["over"], false);
    let lines = r["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 5);
    assert!(lines
        .iter()
        .all(|l| l["level"] == "user" && l["limit"] == 100));
}

#[test]
fn total_over_licence_exits_3_and_is_flagged() {
    let text = std::fs::read_to_string(fixture("e5.toml")).expect("fixture");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("over.toml");
    std::fs::write(
        &path,
        text.replace("sip_trunking_channels = 500", "sip_trunking_channels = 499"),
    )
    .expect("write");
    let out = license_report(&path, true);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(report_json(&out)["over"], true);
    let table = license_report(&path, false);
    assert_eq!(table.status.code(), Some(3));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("OVER LICENCE by 1"), "{text}");
    assert!(text.contains("pbx-user-1"), "{text}");
}

#[test]
fn invalid_config_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[license]\nsip_trunking_channels = -1\n").expect("write");
    let out = license_report(&path, true);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: line 2"));
}

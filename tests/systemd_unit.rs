//! `config/callgate.service` passes `systemd-analyze verify` (when the tool is on the machine),
//! with the install paths pointed at the binary under test.

use std::path::Path;
use std::process::Command;

#[test]
fn unit_file_verifies() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: unit not verified");
        return;
    };
    assert!(probe.status.success());
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/callgate.service"),
    )
    .expect("unit file");
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/callgate", env!("CARGO_BIN_EXE_callgate")),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Only complaints about this unit count; a container without a running systemd may print
    // notes about the host's own units.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("callgate.service"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify: {stderr}");
}

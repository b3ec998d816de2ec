//! `config/callgate.service` reloads through `callgate reload` and passes `systemd-analyze verify`
//! (when the tool is on the machine), with the install paths pointed at the binary under test.

use std::path::Path;
use std::process::Command;

#[test]
fn unit_file_verifies() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/callgate.service"),
    )
    .expect("unit file");
    assert!(unit.contains("Type=notify"));
    // `systemctl reload` must see a refused file: the CLI answers with the reload's result, a
    // signal would not.
    assert!(
        unit.contains(
            "ExecReload=/usr/local/bin/callgate reload --config /etc/callgate/callgate.toml"
        ),
        "{unit}"
    );
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze not installed, unit not verified");
        return;
    };
    assert!(probe.status.success());
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

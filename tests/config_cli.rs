//! `callgate run` as it stands before the daemon exists: validates, logs, reloads on SIGHUP, exits 0
//! on SIGTERM, exits 1 on an invalid file.

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/callgate.toml")
}

/// Reads stderr lines until one contains `needle` (the process logs it); panics at EOF.
fn wait_for(lines: &mut Lines<BufReader<ChildStderr>>, needle: &str) -> String {
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        if line.contains(needle) {
            return line;
        }
    }
    panic!("stderr ended before `{needle}`");
}

fn kill(signal: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {signal} {pid}");
}

/// Kills the daemon if the test fails half-way, so no process outlives it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_reloads_on_sighup_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("callgate.toml");
    std::fs::write(&path, example_on_ephemeral_ports()).expect("copy example");
    let child = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["run", "--drain", "1s", "--log", "info", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn callgate run");
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stderr.take().expect("stderr")).lines();
    let loaded = wait_for(&mut lines, "configuration loaded");
    assert!(loaded.contains("5 extensions (1 pbx)"), "{loaded}");
    wait_for(&mut lines, "SIGHUP reloads");
    // Renaming trunk carrier-b removes it while the running rules reference it: refused, although
    // the new file is valid on its own.
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replace("carrier-b", "carrier-c")).expect("write");
    kill("-HUP", child.0.id());
    let refused = wait_for(&mut lines, "reload refused");
    assert!(refused.contains("carrier-b"), "{refused}");
    std::fs::write(&path, &text).expect("restore");
    kill("-HUP", child.0.id());
    wait_for(&mut lines, "reload accepted");
    kill("-TERM", child.0.id());
    let status = child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn run_with_invalid_config_exits_1_listing_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("callgate.toml");
    std::fs::write(&path, "[server]\nreject_code = 99\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: server: reject_code: reject code 99 is not in 400..=699"),
        "{err}"
    );
    assert!(
        err.contains("error: listen: at least one [[listen]] entry is required"),
        "{err}"
    );
}

#[test]
fn check_config_refuses_a_public_admin_api_without_a_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("callgate.toml");
    let public = example_on_ephemeral_ports().replace(
        "[admin]\naddress = \"127.0.0.1:0\"",
        "[admin]\naddress = \"0.0.0.0:9060\"",
    );
    assert!(
        public.contains("0.0.0.0:9060"),
        "example has an [admin] address"
    );
    std::fs::write(&path, &public).expect("write");
    let check = |path: &Path| {
        Command::new(env!("CARGO_BIN_EXE_callgate"))
            .args(["check-config", "--config"])
            .arg(path)
            .output()
            .expect("run check-config")
    };
    let out = check(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: admin: token: admin API on 0.0.0.0:9060"),
        "{err}"
    );
    // With a token the same address is fine.
    let with_token = public.replace(
        "[admin]\naddress = \"0.0.0.0:9060\"",
        "[admin]\naddress = \"0.0.0.0:9060\"\ntoken = \"t0ken\"",
    );
    std::fs::write(&path, with_token).expect("write");
    let out = check(&path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_log_format_writes_json_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ephemeral = dir.path().join("callgate.toml");
    std::fs::write(&ephemeral, example_on_ephemeral_ports()).expect("write");
    let child = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["run", "--log-format", "json", "--config"])
        .arg(&ephemeral)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn callgate run");
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stderr.take().expect("stderr")).lines();
    let line = wait_for(&mut lines, "configuration loaded");
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["level"], "INFO");
    assert!(
        v["fields"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("2 trunks")),
        "{line}"
    );
}

#[test]
fn invalid_log_filter_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args([
            "--log-format",
            "json",
            "--log",
            "not a filter=[",
            "check-config",
        ])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example configuration with its fixed ports replaced by ephemeral ones, so tests running in
/// parallel (and a daemon running on the machine) do not collide.
fn example_on_ephemeral_ports() -> String {
    std::fs::read_to_string(example())
        .expect("read example")
        .replace("127.0.0.1:5060\"", "127.0.0.1:0\"")
        .replace("127.0.0.1:9060\"", "127.0.0.1:0\"")
}

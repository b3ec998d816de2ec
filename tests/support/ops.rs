//! The operations tests' part of the harness: the `callgate` binary run as a child process (real
//! SIGHUP/SIGTERM, its log lines collected), a configuration on fixed free ports for it, the
//! admin API read from outside, and a parser of the Prometheus/OpenMetrics exposition.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callgate::admin::client::{self, AdminUrl};
use serde_json::Value;

use super::{free_addr, wait_until, Net, Sipp, SippRun, WAIT};

/// A configuration for the binary: SIP over UDP at `sip`, the admin API at `admin`, `tenancy`.
pub fn binary_config(sip: SocketAddr, admin: SocketAddr, tenancy: &str) -> String {
    format!(
        r#"
[server]
name = "ops"

[license]
sip_trunking_channels = 100000

[[listen]]
transport = "udp"
address = "{sip}"

[admin]
address = "{admin}"
{tenancy}"#
    )
}

/// One provider `sp` (public 1000) with organization `acme` (its public limit `org_public`,
/// unlimited when `None`), user `alice` with the PBX extension `200` at `pbx`, and the `ip`
/// trunk `carrier` at `trunk`: ten-digit numbers go out on the trunk, DIDs 2125550100-149 to
/// the PBX. Every other counter is unlimited.
pub fn tenancy(pbx: SocketAddr, trunk: SocketAddr, org_public: Option<u32>) -> String {
    let org_limits = org_public.map_or(String::new(), |l| format!("limits = {{ public = {l} }}"));
    tenancy_with(pbx, trunk, &org_limits, "")
}

/// [`tenancy`] with `org_limits` and `trunk_limits` lines added to the organization and the
/// trunk.
pub fn tenancy_with(
    pbx: SocketAddr,
    trunk: SocketAddr,
    org_limits: &str,
    trunk_limits: &str,
) -> String {
    format!(
        r#"
[[service_provider]]
name = "sp"
limits = {{ public = 1000 }}

[[organization]]
name = "acme"
service_provider = "sp"
domain = "acme.example"
{org_limits}

[[user]]
name = "alice"
organization = "acme"

[[extension]]
number = "200"
user = "alice"
pbx = {{ address = "{pbx}", transport = "udp", authenticate = false }}

[[trunk]]
name = "carrier"
kind = "ip"
address = "{trunk}"
transport = "udp"
{trunk_limits}

[[did_pool]]
trunk = "carrier"
organization = "acme"
dids = ["2125550100-2125550199"]

[[inbound_rule]]
organization = "acme"
trunk = "carrier"
dids = "2125550100-2125550149"
destination = {{ extension = "200" }}

[[outbound_rule]]
organization = "acme"
pattern = "^[2-9][0-9]{{9}}$"
trunks = ["carrier"]
"#
    )
}

/// `callgate run` as a child process with its configuration file in a temporary directory.
/// Every stderr line is collected; the process is killed (by PID) when dropped still running.
pub struct DaemonProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The configuration file (rewrite it, then [`DaemonProcess::signal`] `-HUP`).
    pub config: PathBuf,
    /// The SIP UDP listener.
    pub sip: SocketAddr,
    /// The admin API.
    pub admin: AdminUrl,
    /// The admin API's address.
    pub admin_addr: SocketAddr,
    _dir: tempfile::TempDir,
    exited: Option<ExitStatus>,
}

/// Free addresses for the binary's SIP listener and admin API, on host `.250`/`.251` of `net`.
pub fn daemon_addrs(net: Net) -> (SocketAddr, SocketAddr) {
    (free_addr(net.ip(250)), free_addr(net.ip(251)))
}

impl DaemonProcess {
    /// Writes `toml` (which must listen on `sip` and serve the admin API on `admin`) and runs
    /// `callgate run --drain <drain> --config FILE`; returns once it logs that it is ready.
    pub async fn start(toml: &str, sip: SocketAddr, admin: SocketAddr, drain: &str) -> Self {
        Self::start_within(toml, sip, admin, drain, WAIT).await
    }

    /// [`DaemonProcess::start`], allowing `within` to load the file and get ready.
    pub async fn start_within(
        toml: &str,
        sip: SocketAddr,
        admin: SocketAddr,
        drain: &str,
        within: Duration,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("callgate.toml");
        std::fs::write(&config, toml).expect("write the configuration");
        let mut command = Command::new(env!("CARGO_BIN_EXE_callgate"));
        command
            .args(["run", "--drain", drain, "--log", "info", "--config"])
            .arg(&config);
        if let Some(n) = super::test_workers() {
            command.args(["--workers", &n.to_string()]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn callgate run");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lines lock").push(line);
            }
        });
        let admin_url = AdminUrl::parse(&format!("http://{admin}")).expect("valid admin URL");
        let mut daemon = DaemonProcess {
            child,
            lines,
            config,
            sip,
            admin: admin_url,
            admin_addr: admin,
            _dir: dir,
            exited: None,
        };
        daemon.wait_log("SIGHUP reloads", 1, within).await;
        daemon
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`-HUP`, `-TERM`) to the daemon's PID with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {signal} {}", self.pid());
    }

    /// Stderr lines so far that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.lines
            .lock()
            .expect("log lines lock")
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits until `count` stderr lines contain `needle`; panics with the log tail otherwise
    /// (or when the process exits first).
    pub async fn wait_log(&mut self, needle: &str, count: usize, within: Duration) {
        let lines = self.lines.clone();
        let child = &mut self.child;
        let mut exited = None;
        let seen = wait_until(within, || {
            exited = child.try_wait().ok().flatten();
            exited.is_some()
                || lines
                    .lock()
                    .expect("log lines lock")
                    .iter()
                    .filter(|l| l.contains(needle))
                    .count()
                    >= count
        })
        .await;
        let found = self.log_lines(needle).len();
        if found >= count {
            return;
        }
        let tail: Vec<String> = {
            let all = self.lines.lock().expect("log lines lock");
            all.iter().rev().take(30).rev().cloned().collect()
        };
        panic!(
            "{found} log lines with `{needle}`, expected {count} (seen: {seen}, exited: {exited:?})\n{}",
            tail.join("\n")
        );
    }

    /// Waits up to `within` for the process to exit; `None` when it is still running.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        let mut status = None;
        wait_until(within, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        })
        .await;
        self.exited = status;
        status
    }

    /// `GET path` on the admin API: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        admin_get(&self.admin, path).await
    }

    /// `GET path` on the admin API as JSON (status 200 required).
    pub async fn get_json(&self, path: &str) -> Value {
        admin_json(&self.admin, path).await
    }

    /// Waits until `GET /calls` lists exactly `calls` calls, every one confirmed.
    pub async fn wait_confirmed(&self, calls: usize) {
        wait_confirmed(&self.admin, calls).await;
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` on the admin API at `addr` with no cap on the answer's size (the admin client
/// caps it at 16 MiB, which `/counters` and `/metrics` of a 100 000-extension file exceed).
/// Panics unless the status is 200.
pub async fn get_unbounded(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect to the admin API");
        s.set_read_timeout(Some(WAIT)).expect("read timeout");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).expect("send the request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the answer");
        let text = String::from_utf8(raw).expect("UTF-8 answer");
        let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head and body");
        assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "chunked answer to {path}"
        );
        body.to_owned()
    })
    .await
    .expect("join")
}

/// `GET path` on an admin API: status and body.
pub async fn admin_get(admin: &AdminUrl, path: &str) -> (u16, String) {
    let resp = client::request(admin, "GET", path, None)
        .await
        .expect("admin request");
    (
        resp.status,
        String::from_utf8_lossy(&resp.body).into_owned(),
    )
}

/// `GET path` on an admin API, as JSON (status 200 required).
pub async fn admin_json(admin: &AdminUrl, path: &str) -> Value {
    let (status, body) = admin_get(admin, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON body")
}

/// Scrapes `GET /metrics`.
pub async fn scrape(admin: &AdminUrl) -> Exposition {
    let (status, body) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200, "GET /metrics: {body}");
    Exposition::parse(&body)
}

/// Waits until `GET /calls` lists exactly `calls` calls, every one confirmed (A leg state).
pub async fn wait_confirmed(admin: &AdminUrl, calls: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = admin_json(admin, "/calls").await;
        let list = list.as_array().expect("GET /calls is a JSON array");
        let confirmed = list
            .iter()
            .filter(|c| c["legs"][0]["state"] == "confirmed")
            .count();
        if list.len() == calls && confirmed == calls {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} calls up ({confirmed} confirmed), expected {calls} confirmed",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /counters` entries whose `used` is not 0.
pub async fn held_counters(admin: &AdminUrl) -> Vec<Value> {
    let counters = admin_json(admin, "/counters").await;
    counters
        .as_array()
        .expect("GET /counters is a JSON array")
        .iter()
        .filter(|c| c["used"] != 0)
        .cloned()
        .collect()
}

/// Waits until `GET /counters` shows no unit held anywhere.
pub async fn wait_released(admin: &AdminUrl) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let held = held_counters(admin).await;
        if held.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counters still held: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One parsed scrape: the declared families (`# TYPE`) and every sample.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name -> type (`counter`, `gauge`, ...).
    pub types: BTreeMap<String, String>,
    /// Samples: name, labels, value.
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    /// Parses the text exposition; panics on a line it cannot read.
    pub fn parse(text: &str) -> Self {
        let mut out = Exposition::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("`# TYPE name type`");
                out.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            out.samples.push((name.to_owned(), labels, value));
        }
        out
    }

    /// The value of the sample `name` whose labels include every pair of `labels`, if exactly
    /// one matches; panics when several do.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self.matching(name, labels).map(|(_, _, v)| *v).collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().copied()
    }

    /// Samples named `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a (String, BTreeMap<String, String>, f64)> + 'a {
        self.samples.iter().filter(move |(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
        })
    }

    /// The sum of the samples named `name` (0 when none).
    pub fn sum(&self, name: &str) -> f64 {
        self.matching(name, &[]).map(|(_, _, v)| v).sum()
    }

    /// True when a `# TYPE` line declares the metric a spec name denotes: the sample name
    /// itself, or for a counter the family `name` without `_total` (OpenMetrics).
    pub fn declares(&self, spec_name: &str) -> bool {
        self.types.contains_key(spec_name)
            || spec_name
                .strip_suffix("_total")
                .is_some_and(|family| self.types.get(family).is_some_and(|t| t == "counter"))
    }
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "label value quoted in {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

impl Sipp {
    /// True once the process has exited (it is reaped then).
    pub fn exited(&mut self) -> bool {
        match self.child.try_wait() {
            Ok(Some(_)) => {
                self.reaped = true;
                true
            }
            _ => false,
        }
    }

    /// Kills a run that does not end by itself (a callee taking any number of calls) and
    /// returns its logs; `code` is `None`.
    pub fn stop(mut self) -> SippRun {
        if !self.reaped {
            self.kill();
        }
        self.logs(None)
    }
}

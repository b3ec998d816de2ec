//! Shared harness of the end-to-end call tests: callgate started in-process from a TOML string
//! on ephemeral loopback ports, SIPp processes bound to the PBX and trunk addresses of that
//! configuration, and bounded waits on the daemon's counters.
//!
//! Every test uses its own loopback network `127.<net>.0.0/24` (see [`Net`]) so tests run in
//! parallel without sharing addresses; SIPp processes are killed by PID when dropped.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod baresip;
pub mod ops;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use callgate::admin::client::{self, AdminUrl};
use callgate::config::model::Transport;
use callgate::daemon::Daemon;
use serde_json::Value;

/// How long any single wait on the daemon or on SIPp may take unless a test says otherwise.
pub const WAIT: Duration = Duration::from_secs(20);

/// Engine shards the daemon under test runs with: `$CALLGATE_TEST_WORKERS` when set (CI runs
/// the suite with 1 and with 2), else the configuration's (one per core by default).
pub fn test_workers() -> Option<usize> {
    let text = std::env::var("CALLGATE_TEST_WORKERS").ok()?;
    match text.parse() {
        Ok(n) if n >= 1 => Some(n),
        _ => panic!("CALLGATE_TEST_WORKERS={text} is not a positive number"),
    }
}

/// A test's private loopback network `127.<n>.0.0/24`.
#[derive(Debug, Clone, Copy)]
pub struct Net(pub u8);

impl Net {
    /// Host `h` of the network.
    pub fn ip(self, h: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, self.0, 0, h))
    }

    /// Host `h` with a port that is free now on UDP and TCP (bound then released).
    pub fn addr(self, h: u8) -> SocketAddr {
        free_addr(self.ip(h))
    }
}

/// A port free on both UDP and TCP at `ip`: bind UDP on port 0, check TCP can take the same
/// port, release both. Tests own their IPs, so nobody else takes the port in between.
pub fn free_addr(ip: IpAddr) -> SocketAddr {
    for _ in 0..32 {
        let udp = std::net::UdpSocket::bind((ip, 0)).expect("bind a loopback UDP socket");
        let addr = udp.local_addr().expect("local address of a bound socket");
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no port free on both UDP and TCP at {ip}");
}

/// The parts of a configuration every test shares: listeners on `127.0.0.1:0` (UDP and TCP),
/// the admin API on an ephemeral port, a licence for SIP trunking extensions.
pub fn config(tenancy: &str) -> String {
    format!(
        r#"
[server]
name = "e2e"

[license]
sip_trunking_channels = 1000

[[listen]]
transport = "udp"
address = "127.0.0.1:0"

[[listen]]
transport = "tcp"
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"
{tenancy}"#
    )
}

/// One organization `acme` (provider `sp`, public 10) with a PBX extension `200` of user
/// `alice` at `pbx` and an `ip` trunk `carrier` at `trunk`: DIDs 2125550100-2125550149 go to
/// the PBX, ten-digit numbers go out on the trunk.
pub fn acme(pbx: SocketAddr, pbx_transport: &str, trunk: SocketAddr) -> String {
    format!(
        r#"
[[service_provider]]
name = "sp"
limits = {{ public = 10 }}

[[organization]]
name = "acme"
service_provider = "sp"
domain = "acme.example"

[[user]]
name = "alice"
organization = "acme"

[[extension]]
number = "200"
user = "alice"
pbx = {{ address = "{pbx}", transport = "{pbx_transport}", authenticate = false }}

[[trunk]]
name = "carrier"
kind = "ip"
address = "{trunk}"
transport = "udp"

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

/// [`acme`] with a second `ip` trunk `backup` at `backup` after `carrier` in the outbound rule;
/// `carrier_keys` are added to carrier's table (e.g. its health probe).
pub fn acme_with_backup(
    pbx: SocketAddr,
    trunk: SocketAddr,
    backup: SocketAddr,
    carrier_keys: &str,
) -> String {
    acme(pbx, "udp", trunk)
        .replace(
            "transport = \"udp\"\n\n[[did_pool]]",
            &format!(
                "transport = \"udp\"\n{carrier_keys}\n[[trunk]]\nname = \"backup\"\nkind = \"ip\"\naddress = \"{backup}\"\n\n[[did_pool]]"
            ),
        )
        .replace("trunks = [\"carrier\"]", "trunks = [\"carrier\", \"backup\"]")
}

/// [`acme`] plus two phones of user alice, each with a digest password: 101 (password
/// "pw101") and 102 ("pw102").
pub fn acme_phones(pbx: SocketAddr, trunk: SocketAddr) -> String {
    acme(pbx, "udp", trunk).replace(
        "[[trunk]]",
        "[[extension]]\nnumber = \"101\"\nuser = \"alice\"\npassword = \"pw101\"\n\n\
         [[extension]]\nnumber = \"102\"\nuser = \"alice\"\npassword = \"pw102\"\n\n[[trunk]]",
    )
}

/// A number the outbound rule of [`acme`] sends to the trunk.
pub const PUBLIC_NUMBER: &str = "3125559999";
/// A DID the inbound rule of [`acme`] sends to the PBX.
pub const DID: &str = "2125550123";

/// callgate running in this process.
pub struct Harness {
    /// The daemon.
    pub daemon: Daemon,
    /// Its UDP listener.
    pub udp: SocketAddr,
    /// Its TCP listener.
    pub tcp: SocketAddr,
    /// Its admin API.
    pub admin: AdminUrl,
}

impl Harness {
    /// Loads `toml` (panicking with the issues if it is refused) and starts the daemon.
    pub async fn start(toml: &str) -> Harness {
        let mut loaded = match callgate::config::load(toml) {
            Ok(l) => l,
            Err(issues) => panic!("test configuration refused: {issues:#?}"),
        };
        if let Some(n) = test_workers() {
            loaded.snapshot.server.workers = Some(n);
        }
        Harness::start_loaded(loaded).await
    }

    /// [`Harness::start`] with exactly `workers` engine shards, whatever the environment says
    /// (tests of the sharding itself).
    pub async fn start_with_workers(toml: &str, workers: usize) -> Harness {
        let mut loaded = match callgate::config::load(toml) {
            Ok(l) => l,
            Err(issues) => panic!("test configuration refused: {issues:#?}"),
        };
        loaded.snapshot.server.workers = Some(workers);
        Harness::start_loaded(loaded).await
    }

    /// [`Harness::start`] from a file, which `daemon.reload()` re-reads (what SIGHUP does).
    pub async fn start_file(path: &Path) -> Harness {
        let mut loaded = match callgate::config::load_file(path) {
            Ok(l) => l,
            Err(e) => panic!("test configuration refused: {e}"),
        };
        if let Some(n) = test_workers() {
            loaded.snapshot.server.workers = Some(n);
        }
        Harness::start_from(loaded, Some(path.to_owned())).await
    }

    async fn start_loaded(loaded: callgate::config::Loaded) -> Harness {
        Harness::start_from(loaded, None).await
    }

    async fn start_from(loaded: callgate::config::Loaded, path: Option<PathBuf>) -> Harness {
        let daemon = Daemon::start(loaded.snapshot, path)
            .await
            .expect("daemon starts on ephemeral ports");
        let bound = |t: Transport| {
            daemon
                .sip
                .iter()
                .find(|(bt, _)| *bt == t)
                .map(|(_, a)| *a)
                .expect("listener bound for every configured transport")
        };
        let (udp, tcp) = (bound(Transport::Udp), bound(Transport::Tcp));
        let admin_addr = daemon.admin.expect("admin API configured");
        let admin = AdminUrl::parse(&format!("http://{admin_addr}")).expect("valid admin URL");
        Harness {
            daemon,
            udp,
            tcp,
            admin,
        }
    }

    /// Units held on every counter together.
    pub fn in_use(&self) -> u64 {
        self.daemon.limiter.in_use()
    }

    /// Waits until the counters hold exactly `units` in total.
    pub async fn wait_in_use(&self, units: u64) {
        let limiter = self.daemon.limiter.clone();
        let reached = wait_until(WAIT, || limiter.in_use() == units).await;
        assert!(
            reached,
            "counters hold {} units, expected {units}: {:#?}",
            limiter.in_use(),
            self.used_counters()
        );
    }

    /// Waits until exactly `calls` calls are up and every one of them is confirmed (answered and
    /// ACKed), as `GET /calls` shows them: a call ended earlier would be CANCELled instead.
    pub async fn wait_confirmed(&self, calls: usize) {
        self.wait_state(calls, "confirmed").await;
    }

    /// Waits until exactly `calls` calls are up, all in `state` (`GET /calls`).
    pub async fn wait_state(&self, calls: usize, state: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let list = self.get_json("/calls").await;
            let list = list.as_array().expect("GET /calls is a JSON array");
            let confirmed = list
                .iter()
                .filter(|c| c["legs"][0]["state"] == state)
                .count();
            if list.len() == calls && confirmed == calls {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} calls up ({confirmed} {state}), expected {calls} {state}",
                list.len()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The counters holding units, as `level name counter used/limit`.
    pub fn used_counters(&self) -> Vec<String> {
        self.daemon
            .limiter
            .snapshot()
            .into_iter()
            .filter(|c| c.used > 0)
            .map(|c| format!("{} {} {} {}/{:?}", c.level, c.name, c.kind, c.used, c.limit))
            .collect()
    }

    /// Every counter back at 0: the limiter directly and `GET /counters` of the admin API.
    pub async fn assert_all_released(&self) {
        self.wait_in_use(0).await;
        assert!(
            self.used_counters().is_empty(),
            "{:?}",
            self.used_counters()
        );
        let counters = self.get_json("/counters").await;
        let list = counters.as_array().expect("GET /counters is a JSON array");
        assert!(!list.is_empty(), "GET /counters lists the counters");
        let held: Vec<&Value> = list.iter().filter(|c| c["used"] != 0).collect();
        assert!(held.is_empty(), "GET /counters still shows units: {held:?}");
        assert_eq!(self.daemon.calls().await, 0, "no call left in the driver");
        // Every index and timer of a call went with it (transactions drain with their timers,
        // up to 32 s later: `wait_transactions_drained` checks those where a test can wait).
        let daemon = &self.daemon;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let sizes = daemon.table_sizes().await;
            if sizes.no_call_state() && sizes.awaiting_final == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call state left after every call ended: {sizes:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (up to `within`) until no transaction, client index entry, destination or kept
    /// INVITE is left: everything a call created is gone once its timers ran out.
    pub async fn wait_transactions_drained(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let sizes = self.daemon.table_sizes().await;
            let drained = sizes == callgate::engine::TableSizes::default();
            if drained {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tables not drained: {sizes:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Asserts `GET /registrations` lists no binding.
    pub async fn assert_no_registrations(&self) {
        let list = self.get_json("/registrations").await;
        assert!(list.as_array().is_some_and(Vec::is_empty), "{list}");
    }

    /// `GET path` on the admin API, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let resp = client::request(&self.admin, "GET", path, None)
            .await
            .expect("admin request");
        assert_eq!(resp.status, 200, "GET {path}");
        serde_json::from_slice(&resp.body).expect("JSON body")
    }

    /// The value of `used` of one counter in `GET /counters`.
    pub async fn counter_used(&self, level: &str, name: &str, counter: &str) -> u64 {
        let counters = self.get_json("/counters").await;
        counters
            .as_array()
            .expect("GET /counters is a JSON array")
            .iter()
            .find(|c| c["level"] == level && c["name"] == name && c["counter"] == counter)
            .and_then(|c| c["used"].as_u64())
            .unwrap_or_else(|| panic!("no counter {level} {name} {counter}"))
    }

    /// Ends every call through the admin API (`DELETE /calls/{id}`: BYE on both legs).
    pub async fn end_all_calls(&self) -> usize {
        let calls = self.get_json("/calls").await;
        let ids: Vec<String> = calls
            .as_array()
            .expect("GET /calls is a JSON array")
            .iter()
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect();
        for id in &ids {
            let path = format!("/calls/{id}");
            let resp = client::request(&self.admin, "DELETE", &path, None)
                .await
                .expect("admin request");
            assert!(resp.status < 300, "DELETE {path}: {}", resp.status);
        }
        ids.len()
    }
}

/// Polling period of the bounded waits (the condition is an atomic read; no event to await).
const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` until it holds or `within` passes; true when it held.
pub async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    tokio::time::timeout(within, async {
        while !cond() {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .is_ok()
}

/// [`wait_until`] for a condition that has to await something (e.g. an admin API request).
pub async fn wait_until_async<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(within, async {
        while !cond().await {
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .is_ok()
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(name)).map_or_else(|_| Stdio::null(), Stdio::from)
}

/// Where the scenario files are.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// A SIPp process, killed (by its PID) when dropped before it finished.
pub struct Sipp {
    child: Child,
    label: String,
    dir: tempfile::TempDir,
    reaped: bool,
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How a SIPp run ended.
#[derive(Debug)]
pub struct SippRun {
    /// Exit code (0: every call succeeded; 1: some failed; 99: no call processed).
    pub code: Option<i32>,
    /// The message log (`-trace_msg`): every message sent and received.
    pub messages: String,
    /// The error log (`-trace_err`).
    pub errors: String,
}

impl SippRun {
    /// Panics with the logs unless every call of the run succeeded.
    pub fn assert_ok(&self, label: &str) {
        assert_eq!(
            self.code,
            Some(0),
            "sipp {label} failed\n--- errors ---\n{}\n--- messages (tail) ---\n{}",
            self.errors,
            tail(&self.messages, 6000)
        );
    }

    /// Received messages whose first line starts with `start` (e.g. `SIP/2.0 486`, `BYE `).
    pub fn received(&self, start: &str) -> Vec<&str> {
        self.messages
            .split("----------------------------------------------- ")
            .filter(|block| block.contains("message received"))
            .filter_map(|block| {
                let body = block.split_once(":\n\n").map(|(_, m)| m)?;
                body.trim_start().starts_with(start).then_some(body)
            })
            .collect()
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Options of one SIPp run besides the scenario and the addresses.
#[derive(Debug, Clone)]
pub struct SippOpts {
    /// Calls to place (UAC) or to take (UAS) before exiting (`-m`).
    pub calls: u32,
    /// Transport: `u1` (UDP) or `t1` (TCP, one connection).
    pub transport: &'static str,
    /// SIPp's global timeout, after which the run fails.
    pub timeout: Duration,
    /// Other arguments.
    pub extra: Vec<String>,
}

impl Default for SippOpts {
    fn default() -> Self {
        SippOpts {
            calls: 1,
            transport: "u1",
            timeout: WAIT,
            extra: Vec::new(),
        }
    }
}

impl SippOpts {
    /// `n` calls.
    pub fn calls(n: u32) -> Self {
        SippOpts {
            calls: n,
            ..SippOpts::default()
        }
    }

    /// Adds arguments.
    pub fn arg(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }
}

impl Sipp {
    /// A callee bound at `bind`, running `scenario`; returns once its socket is bound.
    pub async fn uas(scenario_file: &str, bind: SocketAddr, opts: SippOpts) -> Sipp {
        let mut sipp = Sipp::spawn(scenario_file, bind, None, opts);
        let mut exited = None;
        let bound = wait_until(WAIT, || {
            exited = sipp.child.try_wait().ok().flatten();
            exited.is_some() || std::net::UdpSocket::bind(bind).is_err()
        })
        .await;
        if let Some(status) = exited {
            sipp.reaped = true;
            panic!(
                "sipp {scenario_file} exited at start ({status}): {}",
                sipp.logs(status.code()).errors
            );
        }
        assert!(bound, "sipp {scenario_file} did not bind {bind}");
        sipp
    }

    /// A caller bound at `bind`, dialling `service` at callgate's `target`.
    pub fn uac(
        scenario_file: &str,
        bind: SocketAddr,
        target: SocketAddr,
        service: &str,
        opts: SippOpts,
    ) -> Sipp {
        let opts = opts.arg(&["-s", service]);
        Sipp::spawn(scenario_file, bind, Some(target), opts)
    }

    fn spawn(
        scenario_file: &str,
        bind: SocketAddr,
        target: Option<SocketAddr>,
        opts: SippOpts,
    ) -> Sipp {
        let dir = tempfile::tempdir().expect("temporary directory");
        let control = free_addr(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut cmd = Command::new("sipp");
        if let Some(target) = target {
            cmd.arg(target.to_string());
        }
        cmd.arg("-sf")
            .arg(scenario(scenario_file))
            .args(["-i", &bind.ip().to_string()])
            .args(["-p", &bind.port().to_string()])
            .args(["-t", opts.transport])
            .args(["-m", &opts.calls.to_string()])
            .args(["-timeout", &format!("{}s", opts.timeout.as_secs())])
            .arg("-timeout_error")
            .arg("-nostdin")
            .args(["-cp", &control.port().to_string()])
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.path().join("messages.log"))
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.path().join("errors.log"))
            .args(&opts.extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "stderr.log"));
        let child = cmd.spawn().expect("sipp is installed and starts");
        Sipp {
            child,
            label: format!("{scenario_file}@{bind}"),
            dir,
            reaped: false,
        }
    }

    /// The process id, for a test that kills it on purpose.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process now (SIGKILL by PID) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill sipp by PID");
        let _ = self.child.wait();
        self.reaped = true;
    }

    /// Exit status once the process has ended (`std::process` has no async wait without
    /// tokio's `process` feature, so this polls `try_wait`).
    async fn wait(&mut self) -> std::process::ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for sipp") {
                self.reaped = true;
                return status;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits up to `within` for the run to end (killing it past that) and returns its logs.
    pub async fn finish_within(mut self, within: Duration) -> SippRun {
        let status = match tokio::time::timeout(within, self.wait()).await {
            Ok(status) => status,
            Err(_) => {
                self.kill();
                let run = self.logs(None);
                panic!(
                    "sipp {} still running after {within:?}\n--- errors ---\n{}\n--- messages (tail) ---\n{}",
                    self.label,
                    run.errors,
                    tail(&run.messages, 6000)
                );
            }
        };
        self.logs(status.code())
    }

    /// [`Sipp::finish_within`] with the default bound.
    pub async fn finish(self) -> SippRun {
        self.finish_within(WAIT + Duration::from_secs(5)).await
    }

    fn logs(&self, code: Option<i32>) -> SippRun {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        SippRun {
            code,
            messages: read("messages.log"),
            errors: read("errors.log") + &read("stderr.log"),
        }
    }
}

impl Harness {
    /// Shuts the daemon down with `grace` (drain: BYE both legs of every call); returns the
    /// calls still up at the deadline and the limiter, to read the counters afterwards.
    pub async fn shutdown(
        self,
        grace: Duration,
    ) -> (usize, std::sync::Arc<callgate::limits::Limiter>) {
        let limiter = self.daemon.limiter.clone();
        let left = self.daemon.shutdown(grace).await;
        (left, limiter)
    }
}

impl Sipp {
    /// A callee listening on TCP at `bind` (`-t t1`: callgate connects to it), running
    /// `scenario_file`; returns once its listening socket is bound.
    pub async fn uas_tcp(scenario_file: &str, bind: SocketAddr, opts: SippOpts) -> Sipp {
        let opts = SippOpts {
            transport: "t1",
            ..opts
        };
        let mut sipp = Sipp::spawn(scenario_file, bind, None, opts);
        let mut exited = None;
        let bound = wait_until(WAIT, || {
            exited = sipp.child.try_wait().ok().flatten();
            exited.is_some() || std::net::TcpListener::bind(bind).is_err()
        })
        .await;
        if let Some(status) = exited {
            sipp.reaped = true;
            panic!(
                "sipp {scenario_file} exited at start ({status}): {}",
                sipp.logs(status.code()).errors
            );
        }
        assert!(bound, "sipp {scenario_file} did not listen on TCP {bind}");
        sipp
    }
}

/// The value of header `name` (e.g. `Session-Expires`) in one logged message, if present.
pub fn header<'m>(message: &'m str, name: &str) -> Option<&'m str> {
    message.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// [`config`] with more keys in `[server]` (e.g. `session_expires = "6s"`).
pub fn config_with_server(server_keys: &str, tenancy: &str) -> String {
    let base = config(tenancy);
    let at = base
        .find("[license]")
        .expect("config has a [license] table");
    format!("{}{server_keys}\n\n{}", &base[..at], &base[at..])
}

/// Callgate's refusal as the caller saw it (a `uac-fail.xml` run): one `486 Busy Here` whose
/// `Reason` and `Warning` name `counter` (e.g. `trunk carrier: max_outbound 2/2`).
pub fn assert_refused_by(run: &SippRun, counter: &str) {
    run.assert_ok("uac-fail");
    let refusals = run.received("SIP/2.0 486 Busy Here");
    assert_eq!(refusals.len(), 1, "{}", run.messages);
    let refusal = refusals[0];
    let reason = format!("Reason: SIP;cause=486;text=\"{counter}\"");
    let warning = format!("Warning: 399 callgate \"{counter}\"");
    assert!(refusal.contains(&reason), "no `{reason}` in\n{refusal}");
    assert!(refusal.contains(&warning), "no `{warning}` in\n{refusal}");
}

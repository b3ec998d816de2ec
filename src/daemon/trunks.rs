//! The trunk driver: one tokio task that registers `register` trunks and probes trunks with
//! OPTIONS, driving the sans-IO machines of [`crate::trunks`]. It builds the requests, runs one
//! non-INVITE client transaction per request (retransmissions, Timer F: RFC 3261 17.1.2), sends
//! through the daemon's transports (UDP from the first UDP listener, so the provider sees the
//! address in Via and Contact), takes the responses the dispatcher diverts to it (branch marker
//! `cgt-`, [`crate::sip::ids::trunk_branch`]) and publishes [`TrunkStates`].
//!
//! Per trunk: one Call-ID for its REGISTERs, stable across refreshes, with CSeq incremented per
//! request (RFC 3261 10.2.4); another for its OPTIONS. A reload adds, removes (unregistering) and
//! restarts (changed address, transport or account) trunks; shutdown unregisters every bound
//! account, best effort, within the drain period.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::dispatch::TrunkResponse;
use crate::admin::{Direction, Metrics};
use crate::config::model::{Snapshot, Transport, Trunk, TrunkKind};
use crate::limits::Limiter;
use crate::sip::build::RequestBuilder;
use crate::sip::ids::{trunk_branch, trunk_token};
use crate::sip::{Method, Response};
use crate::transaction::{ClientAction, ClientInput, NonInviteClient, TimerConfig};
use crate::transport::Transports;
use crate::trunks::health::Health;
use crate::trunks::registration::{Account, Register, Registration, Reply};
use crate::trunks::{HealthState, TrunkStates, TrunkStatus};

/// Default `register_expires`.
pub const DEFAULT_REGISTER_EXPIRES: Duration = Duration::from_secs(600);
/// Default `register_retry`.
pub const DEFAULT_REGISTER_RETRY: Duration = Duration::from_secs(30);
/// Responses queued for the driver before the dispatcher drops them.
const QUEUE: usize = 1024;

/// What the daemon keeps of the driver: the response queue for the dispatcher, and the handles
/// to reload and stop it.
pub struct TrunkHandle {
    /// Read by the call path and the admin API.
    pub states: Arc<TrunkStates>,
    reload: Arc<Notify>,
    drain: CancellationToken,
    done: CancellationToken,
}

impl TrunkHandle {
    /// Tells the driver the configuration changed (after a reload was applied).
    pub fn reloaded(&self) {
        self.reload.notify_one();
    }

    /// Starts unregistering every account; [`TrunkHandle::drained`] resolves when done.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Resolves once the driver has stopped (after [`TrunkHandle::drain`]).
    pub async fn drained(&self) {
        self.done.cancelled().await
    }
}

/// `host:port` callgate writes in Via and Contact, per transport.
#[derive(Debug, Clone, Default)]
pub struct LocalAddrs {
    /// UDP.
    pub udp: Option<String>,
    /// TCP.
    pub tcp: Option<String>,
}

impl LocalAddrs {
    fn of(&self, t: Transport) -> Option<&str> {
        match t {
            Transport::Udp => self.udp.as_deref(),
            Transport::Tcp => self.tcp.as_deref(),
            // Validation refuses tls trunks: callgate opens no TLS connection.
            Transport::Tls => None,
        }
    }
}

/// The response queue's sending end (for the dispatcher) and its receiving end.
pub fn channel() -> (mpsc::Sender<TrunkResponse>, mpsc::Receiver<TrunkResponse>) {
    mpsc::channel(QUEUE)
}

/// Spawns the driver on the current runtime. It runs until `stop` is cancelled;
/// [`TrunkHandle::drain`] unregisters every account first.
pub fn spawn(
    limiter: Arc<Limiter>,
    metrics: Arc<Metrics>,
    transports: Arc<Transports>,
    local: LocalAddrs,
    responses: mpsc::Receiver<TrunkResponse>,
    stop: CancellationToken,
) -> TrunkHandle {
    let handle = TrunkHandle {
        states: TrunkStates::new(),
        reload: Arc::new(Notify::new()),
        drain: CancellationToken::new(),
        done: CancellationToken::new(),
    };
    let mut driver = Driver {
        metrics,
        transports,
        local,
        states: handle.states.clone(),
        rng: StdRng::from_rng(&mut rand::rng()),
        timers: TimerConfig::default(),
        trunks: HashMap::new(),
        leaving: Vec::new(),
        node: String::new(),
    };
    let (reload, drain, done) = (
        handle.reload.clone(),
        handle.drain.clone(),
        handle.done.clone(),
    );
    tokio::spawn(async move {
        driver.run(limiter, responses, reload, drain, stop).await;
        done.cancel();
    });
    handle
}

/// One request in flight.
struct Txn {
    branch: String,
    client: NonInviteClient,
}

/// One kind of request of one trunk: its Call-ID, tags and CSeq, and the transaction in flight.
struct Leg {
    is_register: bool,
    call_id: String,
    from_tag: String,
    cseq: u32,
    txn: Option<Txn>,
}

struct TrunkTask {
    cfg: Trunk,
    dest: SocketAddr,
    reg: Option<(Registration, Leg)>,
    probe: Option<(Health, Leg)>,
}

struct Driver {
    metrics: Arc<Metrics>,
    transports: Arc<Transports>,
    local: LocalAddrs,
    states: Arc<TrunkStates>,
    rng: StdRng,
    timers: TimerConfig,
    trunks: HashMap<String, TrunkTask>,
    /// Removed trunks still unregistering.
    leaving: Vec<TrunkTask>,
    node: String,
}

enum Outcome {
    Failed,
}

impl Driver {
    async fn run(
        &mut self,
        limiter: Arc<Limiter>,
        mut responses: mpsc::Receiver<TrunkResponse>,
        reload: Arc<Notify>,
        drain: CancellationToken,
        stop: CancellationToken,
    ) {
        self.apply(&limiter.current().config().clone(), clock());
        let mut draining = false;
        loop {
            let now = clock();
            self.step(now);
            self.publish(now);
            if draining && self.all_stopped() {
                return;
            }
            let wake = self.next_wake().map(tokio::time::Instant::from_std);
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // The daemon stopped (after its drain, or dropped without one): nothing is
                // waited for any more.
                biased;
                _ = stop.cancelled() => return,
                // Each input reads the clock again: the wait may have been long.
                _ = drain.cancelled(), if !draining => {
                    draining = true;
                    self.stop_all(clock());
                }
                _ = reload.notified(), if !draining => {
                    self.apply(&limiter.current().config().clone(), clock());
                }
                r = responses.recv() => match r {
                    Some(r) => self.on_response(clock(), r),
                    None => return,
                },
                _ = sleep => {}
            }
        }
    }

    /// Reconciles the running trunks with `snapshot`'s.
    fn apply(&mut self, snapshot: &Arc<Snapshot>, now: Instant) {
        self.node = snapshot.server.name.clone();
        // accept-register trunks have no address: the provider comes to callgate.
        let wanted: HashMap<&str, (&Trunk, SocketAddr)> = snapshot
            .trunks
            .iter()
            .filter(|t| t.kind != TrunkKind::AcceptRegister)
            .filter_map(|t| Some((t.name.as_str(), (t, t.address?))))
            .collect();
        let gone: Vec<String> = self
            .trunks
            .iter()
            .filter(|(name, task)| {
                wanted
                    .get(name.as_str())
                    .is_none_or(|(t, _)| !same_endpoint(&task.cfg, t))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(task) = self.trunks.remove(&name) {
                self.leave(task, now);
            }
        }
        for (name, (t, dest)) in wanted {
            match self.trunks.get_mut(name) {
                Some(task) => {
                    // Probe settings change in place: no reason to unregister for that.
                    if task.probe.as_ref().map(|p| p.0.probe()) != t.probe {
                        task.probe = t.probe.map(|p| {
                            (
                                Health::new(p, now),
                                new_leg(&mut self.rng, &self.node, false),
                            )
                        });
                    }
                    task.cfg = t.clone();
                }
                None => {
                    let task = self.start(t, dest, now);
                    self.trunks.insert(name.to_owned(), task);
                }
            }
        }
    }

    fn start(&mut self, t: &Trunk, dest: SocketAddr, now: Instant) -> TrunkTask {
        let reg = match (t.kind, &t.username, &t.password) {
            (TrunkKind::Register, Some(username), Some(password)) => {
                let account = Account {
                    username: username.clone(),
                    password: password.clone(),
                    uri: format!("sip:{dest}"),
                    expires: t.register_expires.unwrap_or(DEFAULT_REGISTER_EXPIRES),
                    retry: t.register_retry.unwrap_or(DEFAULT_REGISTER_RETRY),
                };
                tracing::info!(trunk = %t.name, registrar = %dest, user = %username, "trunk registration starts");
                Some((
                    Registration::new(account, now),
                    new_leg(&mut self.rng, &self.node, true),
                ))
            }
            _ => None,
        };
        let probe = t.probe.map(|p| {
            (
                Health::new(p, now),
                new_leg(&mut self.rng, &self.node, false),
            )
        });
        TrunkTask {
            cfg: t.clone(),
            dest,
            reg,
            probe,
        }
    }

    /// A trunk removed or replaced: unregister it if bound, and keep it until that ends.
    fn leave(&mut self, mut task: TrunkTask, now: Instant) {
        task.probe = None;
        if let Some((reg, _)) = &mut task.reg {
            reg.stop(now);
            if !reg.is_stopped() {
                tracing::info!(trunk = %task.cfg.name, "trunk unregistering");
                self.leaving.push(task);
            }
        }
    }

    fn stop_all(&mut self, now: Instant) {
        let names: Vec<String> = self.trunks.keys().cloned().collect();
        for name in names {
            if let Some(task) = self.trunks.remove(&name) {
                self.leave(task, now);
            }
        }
    }

    fn all_stopped(&self) -> bool {
        self.trunks.is_empty() && self.leaving.is_empty()
    }

    /// Fires due timers, sends what the machines want sent.
    fn step(&mut self, now: Instant) {
        let mut tasks: Vec<&mut TrunkTask> = self.trunks.values_mut().collect();
        tasks.extend(self.leaving.iter_mut());
        let mut io = Io {
            metrics: &self.metrics,
            transports: &self.transports,
            local: &self.local,
            rng: &mut self.rng,
            timers: &self.timers,
        };
        for task in tasks {
            io.step(task, now);
        }
        self.leaving
            .retain(|t| t.reg.as_ref().is_some_and(|(r, _)| !r.is_stopped()));
    }

    fn on_response(&mut self, now: Instant, r: TrunkResponse) {
        let Some(branch) = r.response.parts().branch().map(|b| b.as_str().to_owned()) else {
            return;
        };
        let tasks = self.trunks.values_mut().chain(self.leaving.iter_mut());
        for task in tasks {
            // Believed only from the trunk's IP (any port), as for calls.
            if task.dest.ip() != r.source.ip() {
                continue;
            }
            let local = self
                .local
                .of(task.cfg.transport)
                .unwrap_or_default()
                .to_owned();
            if let Some((reg, leg)) = &mut task.reg {
                if let Some(resp) = leg.on_response(now, &branch, &r.response) {
                    reg.on_response(now, Reply::from_response(&resp, &local));
                    log_registration(&task.cfg.name, reg, now);
                    return;
                }
            }
            if let Some((health, leg)) = &mut task.probe {
                if let Some(resp) = leg.on_response(now, &branch, &r.response) {
                    let was_up = health.is_up();
                    health.on_response(resp.status().as_u16());
                    log_health(&task.cfg.name, was_up, health);
                    return;
                }
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let tasks = self.trunks.values().chain(self.leaving.iter());
        tasks
            .flat_map(|t| {
                let reg = t.reg.as_ref();
                let probe = t.probe.as_ref();
                [
                    reg.and_then(|(r, _)| r.poll_timeout()),
                    reg.and_then(|(_, l)| l.poll_timeout()),
                    probe.map(|(h, _)| h.poll_timeout()),
                    probe.and_then(|(_, l)| l.poll_timeout()),
                ]
            })
            .flatten()
            .min()
    }

    fn publish(&self, now: Instant) {
        let statuses = self.trunks.values().map(|t| {
            let (health, misses, last_probe) = match &t.probe {
                None => (HealthState::Unprobed, 0, None),
                Some((h, _)) => (
                    if h.is_up() {
                        HealthState::Up
                    } else {
                        HealthState::Down
                    },
                    h.misses(),
                    h.last_probe(),
                ),
            };
            TrunkStatus {
                name: t.cfg.name.clone(),
                kind: t.cfg.kind,
                address: t.cfg.address,
                health,
                misses,
                last_probe,
                registration: t.reg.as_ref().map(|(r, _)| r.view(now)),
            }
        });
        let statuses: Vec<TrunkStatus> = statuses.collect();
        let unchanged = statuses.len() == self.states.list().len()
            && statuses
                .iter()
                .all(|s| self.states.get(&s.name).is_some_and(|old| *old == *s));
        if !unchanged {
            self.states.publish(statuses);
        }
    }
}

/// Whether a reload can keep the running registration: same endpoint and account.
fn same_endpoint(a: &Trunk, b: &Trunk) -> bool {
    a.kind == b.kind
        && a.address == b.address
        && a.transport == b.transport
        && a.username == b.username
        && a.password == b.password
        && a.register_expires == b.register_expires
        && a.register_retry == b.register_retry
}

fn new_leg(rng: &mut StdRng, node: &str, is_register: bool) -> Leg {
    Leg {
        is_register,
        call_id: format!("{}@{node}", trunk_token(rng)),
        from_tag: trunk_token(rng),
        cseq: 0,
        txn: None,
    }
}

/// What sending needs, borrowed apart from the trunk table.
struct Io<'a> {
    metrics: &'a Metrics,
    transports: &'a Arc<Transports>,
    local: &'a LocalAddrs,
    rng: &'a mut StdRng,
    timers: &'a TimerConfig,
}

impl Io<'_> {
    fn step(&mut self, task: &mut TrunkTask, now: Instant) {
        let (dest, transport) = (task.dest, task.cfg.transport);
        if let Some((reg, leg)) = &mut task.reg {
            if let Some(Outcome::Failed) = leg.handle_timeout(now, self, dest, transport) {
                reg.on_timeout(now);
                log_registration(&task.cfg.name, reg, now);
            }
            reg.handle_timeout(now);
            let cnonce = trunk_token(self.rng);
            if let Some(register) = reg.due(now, &cnonce) {
                let (branch, bytes) = self.register(&task.cfg, leg, reg.account(), &register);
                if !leg.start(now, branch, bytes, self, dest, transport) {
                    reg.on_timeout(now);
                }
            }
        }
        if let Some((health, leg)) = &mut task.probe {
            let was_up = health.is_up();
            if let Some(Outcome::Failed) = leg.handle_timeout(now, self, dest, transport) {
                health.on_failure();
            }
            if health.handle_timeout(now) {
                leg.txn = None;
            }
            if health.due(now) {
                let (branch, bytes) = self.options(&task.cfg, leg, dest);
                if !leg.start(now, branch, bytes, self, dest, transport) {
                    health.on_failure();
                }
            }
            log_health(&task.cfg.name, was_up, health);
        }
    }

    fn register(
        &mut self,
        t: &Trunk,
        leg: &mut Leg,
        acct: &Account,
        reg: &Register,
    ) -> (String, Bytes) {
        let local = self.local.of(t.transport).unwrap_or_default();
        let aor = format!("sip:{}@{}", acct.username, host_of(&acct.uri));
        let contact = match t.transport {
            Transport::Tcp => format!("<sip:{}@{local};transport=tcp>", acct.username),
            _ => format!("<sip:{}@{local}>", acct.username),
        };
        let expires = reg.expires_secs.to_string();
        leg.cseq += 1;
        let branch = trunk_branch(self.rng);
        let mut b = RequestBuilder::new(Method::Register, &acct.uri)
            .via(via_transport(t.transport), local, &branch)
            .from(&aor, Some(&leg.from_tag))
            .to(&aor, None)
            .call_id(&leg.call_id)
            .cseq(leg.cseq)
            .contact(&contact)
            .header("Expires", &expires)
            .header("User-Agent", "callgate");
        let name = if reg.proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        if let Some(auth) = &reg.authorization {
            b = b.header(name, auth);
        }
        let bytes = b.build();
        (branch, bytes)
    }

    fn options(&mut self, t: &Trunk, leg: &mut Leg, dest: SocketAddr) -> (String, Bytes) {
        let local = self.local.of(t.transport).unwrap_or_default();
        let uri = format!("sip:{dest}");
        let from = format!("sip:callgate@{local}");
        leg.cseq += 1;
        let branch = trunk_branch(self.rng);
        let b = RequestBuilder::new(Method::Options, &uri)
            .via(via_transport(t.transport), local, &branch)
            .from(&from, Some(&leg.from_tag))
            .to(&uri, None)
            .call_id(&leg.call_id)
            .cseq(leg.cseq)
            .header("User-Agent", "callgate")
            .build();
        (branch, b)
    }

    /// Sends one message; false when the transport refused it.
    fn send(&self, dest: SocketAddr, transport: Transport, bytes: Bytes) -> bool {
        match self.transports.send(transport, dest, bytes) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, peer.addr = %dest, "trunk request not sent");
                false
            }
        }
    }
}

impl Leg {
    /// Starts a transaction for `bytes`; false when its first send failed.
    fn start(
        &mut self,
        now: Instant,
        branch: String,
        bytes: Bytes,
        io: &Io<'_>,
        dest: SocketAddr,
        transport: Transport,
    ) -> bool {
        let method = if self.is_register {
            "REGISTER"
        } else {
            "OPTIONS"
        };
        io.metrics.sip_request(method, Direction::Out);
        let mut out = Vec::new();
        let client = NonInviteClient::start(now, bytes, transport.is_stream(), io.timers, &mut out);
        self.txn = Some(Txn { branch, client });
        !matches!(
            self.execute(out, io, dest, transport),
            Some(Outcome::Failed)
        )
    }

    fn handle_timeout(
        &mut self,
        now: Instant,
        io: &Io<'_>,
        dest: SocketAddr,
        transport: Transport,
    ) -> Option<Outcome> {
        let txn = self.txn.as_mut()?;
        if txn.client.poll_timeout().is_none_or(|at| at > now) {
            return None;
        }
        let mut out = Vec::new();
        txn.client.handle_timeout(now, &mut out);
        self.execute(out, io, dest, transport)
    }

    /// The response, when it belongs to this leg's transaction.
    fn on_response(&mut self, now: Instant, branch: &str, resp: &Response) -> Option<Response> {
        let txn = self.txn.as_mut().filter(|t| t.branch == branch)?;
        let mut out = Vec::new();
        let status = resp.status().as_u16();
        txn.client.handle(
            now,
            ClientInput::Response {
                status,
                response: resp.clone(),
            },
            &mut out,
        );
        let mut delivered = None;
        for action in out {
            match action {
                ClientAction::ToUser(r) => delivered = Some(r),
                ClientAction::Terminated => self.txn = None,
                _ => {}
            }
        }
        delivered
    }

    /// Runs a transaction's actions; `Some(Failed)` on a timeout or transport failure.
    fn execute(
        &mut self,
        out: Vec<ClientAction<Response>>,
        io: &Io<'_>,
        dest: SocketAddr,
        transport: Transport,
    ) -> Option<Outcome> {
        let mut failed = false;
        for action in out {
            match action {
                ClientAction::Transmit(bytes) => {
                    if !io.send(dest, transport, bytes) && transport.is_stream() {
                        failed = true;
                    }
                }
                ClientAction::TimedOut | ClientAction::TransportError => failed = true,
                ClientAction::Terminated => self.txn = None,
                ClientAction::ToUser(_) | ClientAction::SendAck(_) => {}
            }
        }
        if failed {
            self.txn = None;
            return Some(Outcome::Failed);
        }
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.txn.as_ref().and_then(|t| t.client.poll_timeout())
    }
}

fn via_transport(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
    }
}

/// `host[:port]` of a `sip:` URI callgate built itself.
fn host_of(uri: &str) -> &str {
    uri.strip_prefix("sip:").unwrap_or(uri)
}

fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn log_registration(trunk: &str, reg: &Registration, now: Instant) {
    let v = reg.view(now);
    match v
        .failure
        .filter(|_| v.state != crate::trunks::registration::RegState::Registered)
    {
        Some(f) => {
            tracing::warn!(trunk, status = ?v.last_status, reason = f.as_str(), retry_in = ?v.next_attempt.map(|a| a.saturating_duration_since(now)), "trunk registration failed")
        }
        None => {
            tracing::debug!(trunk, state = v.state.as_str(), status = ?v.last_status, "trunk registration")
        }
    }
}

fn log_health(trunk: &str, was_up: bool, health: &Health) {
    match (was_up, health.is_up()) {
        (true, false) => tracing::warn!(
            trunk,
            misses = health.misses(),
            "trunk down: OPTIONS unanswered"
        ),
        (false, true) => tracing::info!(trunk, "trunk up again"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk() -> Trunk {
        let toml = "[[listen]]\naddress = \"127.0.0.1:5060\"\n[[trunk]]\nname = \"p\"\nkind = \"register\"\naddress = \"127.0.0.9:5060\"\nusername = \"u\"\npassword = \"pw\"\n";
        let loaded = crate::config::load(toml).expect("valid");
        loaded.snapshot.trunks[0].clone()
    }

    #[test]
    fn a_reload_re_registers_only_for_a_changed_endpoint_or_account() {
        let t = trunk();
        let mut limits = t.clone();
        limits.max_calls = Some(3);
        limits.probe = Some(crate::config::model::Probe {
            interval: Duration::from_secs(5),
            misses: 2,
        });
        assert!(
            same_endpoint(&t, &limits),
            "limits and probes change in place"
        );
        let mut password = t.clone();
        password.password = Some("new".into());
        assert!(!same_endpoint(&t, &password));
        let mut address = t.clone();
        address.address = Some("127.0.0.10:5060".parse().expect("address"));
        assert!(!same_endpoint(&t, &address));
    }
}

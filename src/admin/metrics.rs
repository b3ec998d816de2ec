//! The Prometheus registry and the metric names of spec/operations.md (the names are a contract).
//!
//! Owns recording (cheap calls on the hot path) and the text exposition. Does not own the counter
//! tree: `callgate_counter_used` / `callgate_counter_limit` are computed at scrape time from the
//! snapshot the daemon hands to [`Metrics::encode`].
//!
//! Naming: prometheus-client writes OpenMetrics, where a counter family `x` is declared as
//! `# TYPE x counter` and its samples are named `x_total`. The counters below are therefore
//! registered without the `_total` suffix, so the exposed sample names are exactly the spec's
//! (`callgate_calls_total`, ...). `tests/admin_api.rs` parses a scrape and checks every name.
//!
//! Hot path: every label set with a closed value set (outcome, method, direction, status class,
//! transport, reload result) is created once in [`Metrics::new`] and kept as an array of counter
//! handles, so recording is one index computation and one atomic add, without a hash lookup, a
//! lock or an allocation. Only `callgate_admission_rejections_total` has an open label (the entity
//! name): a refusal adds to a map under a mutex (refusals are rare next to calls), and each scrape
//! writes a series for every counter of the running configuration, 0 until it refuses a call, so
//! alerts on the family work from the start.
//!
//! Unlimited counters: `callgate_counter_limit` has no series for a counter whose limit is
//! unlimited (absent in the config), so `used / limit` queries yield nothing rather than a
//! misleading ratio; `callgate_counter_used` always has one.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{text, DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{CounterView, TrunkView};

/// How a call ended, the `outcome` label of `callgate_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (2xx) and later ended normally.
    Answered,
    /// Refused at admission (a counter was full) or by routing/policy before any B leg.
    Rejected,
    /// Failed after admission: final error response, timeout, transport failure.
    Failed,
    /// Cancelled by the caller before an answer.
    Cancelled,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Answered,
        Outcome::Rejected,
        Outcome::Failed,
        Outcome::Cancelled,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Whether a SIP message was received (`in`) or sent (`out`) by callgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the network.
    In,
    /// Sent to the network.
    Out,
}

impl Direction {
    const ALL: [Direction; 2] = [Direction::In, Direction::Out];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Methods with their own `method` label value; anything else is counted as `other`, which keeps
/// the label's cardinality bounded whatever a peer sends.
const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "PRACK",
    "UPDATE",
    "INFO",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "other",
];

/// Transports with their own `transport` label value; anything else is `other`.
const TRANSPORTS: [&str; 6] = ["udp", "tcp", "tls", "ws", "wss", "other"];

/// Status classes, the `class` label of `callgate_sip_responses_total`.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The metrics registry of one daemon. Shared as `Arc<Metrics>`; every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls_active: Gauge,
    calls_total: [Counter; 4],
    /// Refusals per counter, keyed `level \x1f counter \x1f name`: encoded per scrape with a zero
    /// for every counter of the running configuration (so alerts on the family can be written
    /// before the first refusal). Refusals are rare next to calls; a mutex is enough.
    rejections: Mutex<HashMap<String, u64>>,
    sip_requests: [[Counter; 2]; METHODS.len()],
    sip_responses: [[Counter; 2]; CLASSES.len()],
    parse_errors: [Counter; TRANSPORTS.len()],
    transaction_timeouts: Counter,
    shard_queue_drops: Counter,
    transactions_refused: Counter,
    registrations_active: Gauge,
    auth_failures: Counter,
    auth_bans: Counter,
    auth_bans_active: Gauge,
    config_reloads: [Counter; 2],
    cluster_backend_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the registry with every metric of the spec and every closed label set at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let calls_active = Gauge::default();
        registry.register(
            "callgate_calls_active",
            "Calls in progress",
            calls_active.clone(),
        );

        let family = Family::<OutcomeLabels, Counter>::default();
        let calls_total = Outcome::ALL.map(|o| {
            family.get_or_create_owned(&OutcomeLabels {
                outcome: o.as_str(),
            })
        });
        registry.register("callgate_calls", "Calls ended, by outcome", family);

        let rejections = Mutex::new(HashMap::new());

        let family = Family::<MethodLabels, Counter>::default();
        let sip_requests = METHODS.map(|method| {
            Direction::ALL.map(|d| {
                family.get_or_create_owned(&MethodLabels {
                    method,
                    direction: d.as_str(),
                })
            })
        });
        registry.register("callgate_sip_requests", "SIP requests, by method", family);

        let family = Family::<ClassLabels, Counter>::default();
        let sip_responses = CLASSES.map(|class| {
            Direction::ALL.map(|d| {
                family.get_or_create_owned(&ClassLabels {
                    class,
                    direction: d.as_str(),
                })
            })
        });
        registry.register(
            "callgate_sip_responses",
            "SIP responses, by status class",
            family,
        );

        let family = Family::<TransportLabels, Counter>::default();
        let parse_errors =
            TRANSPORTS.map(|transport| family.get_or_create_owned(&TransportLabels { transport }));
        registry.register(
            "callgate_sip_parse_errors",
            "Malformed SIP messages received",
            family,
        );

        let transaction_timeouts = Counter::default();
        registry.register(
            "callgate_transaction_timeouts",
            "SIP transactions ended by a timeout (timer B, F or H)",
            transaction_timeouts.clone(),
        );
        let shard_queue_drops = Counter::default();
        registry.register(
            "callgate_shard_queue_drops",
            "Datagrams dropped on receive because their engine shard's queue was full (overload)",
            shard_queue_drops.clone(),
        );
        let transactions_refused = Counter::default();
        registry.register(
            "callgate_transactions_refused",
            "Requests answered 503 without a transaction because a shard's transaction table was full",
            transactions_refused.clone(),
        );
        let registrations_active = Gauge::default();
        registry.register(
            "callgate_registrations_active",
            "Registration bindings currently valid",
            registrations_active.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "callgate_auth_failures",
            "Digest authentication failures",
            auth_failures.clone(),
        );
        let auth_bans = Counter::default();
        registry.register(
            "callgate_auth_bans",
            "Sources banned after repeated digest authentication failures",
            auth_bans.clone(),
        );
        let auth_bans_active = Gauge::default();
        registry.register(
            "callgate_auth_bans_active",
            "Sources banned now (refreshed every 5 s)",
            auth_bans_active.clone(),
        );

        let family = Family::<ResultLabels, Counter>::default();
        let config_reloads = ["accepted", "refused"]
            .map(|result| family.get_or_create_owned(&ResultLabels { result }));
        registry.register(
            "callgate_config_reloads",
            "Configuration reloads, by result",
            family,
        );

        let cluster_backend_errors = Counter::default();
        registry.register(
            "callgate_cluster_backend_errors",
            "Errors talking to the shared counter backend",
            cluster_backend_errors.clone(),
        );

        Metrics {
            registry,
            calls_active,
            calls_total,
            rejections,
            sip_requests,
            sip_responses,
            parse_errors,
            transaction_timeouts,
            shard_queue_drops,
            transactions_refused,
            registrations_active,
            auth_failures,
            auth_bans,
            auth_bans_active,
            config_reloads,
            cluster_backend_errors,
        }
    }

    /// A call entered processing. Pair with exactly one [`Metrics::call_ended`].
    pub fn call_started(&self) {
        self.calls_active.inc();
    }

    /// A call started with [`Metrics::call_started`] ended (or was refused) with `outcome`.
    pub fn call_ended(&self, outcome: Outcome) {
        self.calls_active.dec();
        self.calls_total[outcome as usize].inc();
    }

    /// The counter `counter` of entity `name` at `level` refused a call.
    pub fn rejection(&self, level: &str, name: &str, counter: &str) {
        let mut key = String::new();
        rejection_key(&mut key, level, name, counter);
        let mut map = self
            .rejections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *map.entry(key).or_default() += 1;
    }

    /// A SIP request with `method` (as on the wire, e.g. `INVITE`) was received or sent.
    pub fn sip_request(&self, method: &str, direction: Direction) {
        let i = METHODS[..METHODS.len() - 1]
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len() - 1);
        self.sip_requests[i][direction.index()].inc();
    }

    /// A SIP response with `status` was received or sent. Codes outside 100..=699 are not
    /// counted: the parser refuses them before they get here.
    pub fn sip_response(&self, status: u16, direction: Direction) {
        if let Some(row) = usize::from(status / 100)
            .checked_sub(1)
            .and_then(|i| self.sip_responses.get(i))
        {
            row[direction.index()].inc();
        }
    }

    /// A message received on `transport` (`udp`, `tcp`, ...; case-insensitive) failed to parse.
    pub fn parse_error(&self, transport: &str) {
        let i = TRANSPORTS[..TRANSPORTS.len() - 1]
            .iter()
            .position(|t| t.eq_ignore_ascii_case(transport))
            .unwrap_or(TRANSPORTS.len() - 1);
        self.parse_errors[i].inc();
    }

    /// A datagram was dropped because its shard's queue was full.
    pub fn shard_queue_drop(&self) {
        self.shard_queue_drops.inc();
    }

    /// A request was refused because its shard's transaction table was full.
    pub fn transaction_refused(&self) {
        self.transactions_refused.inc();
    }

    /// A SIP transaction timed out.
    pub fn transaction_timeout(&self) {
        self.transaction_timeouts.inc();
    }

    /// A configuration reload was accepted or refused (SIGHUP or `POST /reload`).
    pub fn config_reload(&self, accepted: bool) {
        self.config_reloads[usize::from(!accepted)].inc();
    }

    /// Sets the number of valid registration bindings.
    pub fn registrations_set(&self, n: usize) {
        self.registrations_active
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A digest authentication failed.
    pub fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    /// A source was banned for repeated authentication failures.
    pub fn auth_ban(&self) {
        self.auth_bans.inc();
    }

    /// Sources banned now.
    pub fn auth_bans_set(&self, n: usize) {
        self.auth_bans_active
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A call to the shared counter backend failed.
    pub fn cluster_backend_error(&self) {
        self.cluster_backend_errors.inc();
    }

    /// Encodes every metric as OpenMetrics text, with `callgate_counter_used` and
    /// `callgate_counter_limit` computed from `counters`, and the closing `# EOF`.
    pub fn encode(&self, counters: Vec<CounterView>) -> Result<String, fmt::Error> {
        self.encode_with_trunks(counters, Vec::new())
    }

    /// [`Metrics::encode`] with the trunk gauges: `callgate_trunk_up{trunk}` (1 unless down) for
    /// every trunk the driver tracks and `callgate_trunk_registered{trunk}` for `register` ones.
    pub fn encode_with_trunks(
        &self,
        counters: Vec<CounterView>,
        trunks: Vec<TrunkView>,
    ) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        text::encode_registry(&mut out, &self.registry)?;
        // A registry per scrape: the snapshot is owned by the collector for this encoding only.
        let mut scrape = Registry::default();
        let rejections = self
            .rejections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        scrape.register_collector(Box::new(CounterSnapshot {
            counters,
            rejections,
            trunks,
        }));
        text::encode_registry(&mut out, &scrape)?;
        text::encode_eof(&mut out)?;
        Ok(out)
    }
}

/// `level \x1f counter \x1f name` into `out` (cleared first): one string key per counter, looked up
/// with a reused buffer so a scrape allocates nothing per counter. The name comes last: level and
/// counter are fixed words, so the key splits back the same whatever the name holds.
fn rejection_key(out: &mut String, level: &str, name: &str, counter: &str) {
    out.clear();
    out.push_str(level);
    out.push('\x1f');
    out.push_str(counter);
    out.push('\x1f');
    out.push_str(name);
}

/// The counters snapshot of one scrape, encoded as two gauge families, with the refusals.
#[derive(Debug)]
struct CounterSnapshot {
    counters: Vec<CounterView>,
    rejections: HashMap<String, u64>,
    trunks: Vec<TrunkView>,
}

impl CounterSnapshot {
    /// `callgate_admission_rejections_total`: a series for every counter of the configuration
    /// (0 until it refuses a call), then those of counters a reload removed.
    fn encode_rejections(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "callgate_admission_rejections",
            "Calls refused at admission, by the counter that was full",
            None,
            MetricType::Counter,
        )?;
        let mut key = String::new();
        let mut seen = 0;
        for c in &self.counters {
            rejection_key(&mut key, &c.level, &c.name, &c.counter);
            let n = self.rejections.get(key.as_str()).copied().unwrap_or(0);
            seen += usize::from(n > 0);
            family
                .encode_family(&labels(c))?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        if seen == self.rejections.len() {
            return Ok(());
        }
        let known: HashSet<String> = self
            .counters
            .iter()
            .map(|c| {
                let mut k = String::new();
                rejection_key(&mut k, &c.level, &c.name, &c.counter);
                k
            })
            .collect();
        for (k, n) in self.rejections.iter().filter(|(k, _)| !known.contains(*k)) {
            let mut parts = k.splitn(3, '\x1f');
            let (Some(level), Some(counter), Some(name)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let l = [("level", level), ("name", name), ("counter", counter)];
            family
                .encode_family(&l)?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        Ok(())
    }
}

impl CounterSnapshot {
    fn encode_trunks(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut up = encoder.encode_descriptor(
            "callgate_trunk_up",
            "1 unless the trunk's OPTIONS probes went unanswered (1 when not probed).",
            None,
            MetricType::Gauge,
        )?;
        for t in &self.trunks {
            let v = u32::from(t.health != "down");
            up.encode_family(&[("trunk", t.name.as_str())])?
                .encode_gauge(&v)?;
        }
        let mut registered = encoder.encode_descriptor(
            "callgate_trunk_registered",
            "1 while a register trunk's binding at the provider is in force.",
            None,
            MetricType::Gauge,
        )?;
        for t in &self.trunks {
            let Some(r) = &t.registration else { continue };
            let v = u32::from(r.state == "registered");
            registered
                .encode_family(&[("trunk", t.name.as_str())])?
                .encode_gauge(&v)?;
        }
        Ok(())
    }
}

impl Collector for CounterSnapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        self.encode_rejections(&mut encoder)?;
        let mut used = encoder.encode_descriptor(
            "callgate_counter_used",
            "Units held on a limit counter.",
            None,
            MetricType::Gauge,
        )?;
        for c in &self.counters {
            used.encode_family(&labels(c))?.encode_gauge(&c.used)?;
        }
        let mut limit = encoder.encode_descriptor(
            "callgate_counter_limit",
            "Limit of a counter; no series when unlimited.",
            None,
            MetricType::Gauge,
        )?;
        for c in &self.counters {
            if let Some(l) = c.limit {
                limit.encode_family(&labels(c))?.encode_gauge(&l)?;
            }
        }
        self.encode_trunks(&mut encoder)
    }
}

fn labels(c: &CounterView) -> [(&'static str, &str); 3] {
    [
        ("level", c.level.as_str()),
        ("name", c.name.as_str()),
        ("counter", c.counter.as_str()),
    ]
}

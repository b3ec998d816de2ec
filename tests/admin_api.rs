//! The admin HTTP API end to end, real HTTP requests. `/health`, `/registrations` and the token
//! check run against the real daemon (started in-process on 127.0.0.1:0, bindings put in its
//! shared location store, since REGISTER handling is not built yet). The views the real daemon
//! cannot be made to show on demand (two calls in given states, counters near their limits, a
//! refused reload with a given error) come from a fake backend behind the same server.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callgate::admin::client::{self, AdminUrl, HttpResponse};
use callgate::admin::{
    self, AdminBackend, AdminState, CallView, CounterRef, CounterView, Direction, LegView, Metrics,
    Outcome, RegistrationView, ReloadResult, StatusError,
};
use callgate::config::model::Transport;
use callgate::registrar::{Aor, Binding, Flow};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TOKEN: &str = "s3cret-token";

/// A backend with two calls and five counters (no registrations: those come from the real
/// daemon below).
struct FakeDaemon {
    accept_reload: AtomicBool,
    calls: Mutex<Vec<CallView>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn leg(leg: &str, call_id: &str, from: &str, to: &str, state: &str) -> LegView {
    LegView {
        leg: leg.into(),
        call_id: call_id.into(),
        from: from.into(),
        to: to.into(),
        state: state.into(),
    }
}

fn counter(level: &str, name: &str, kind: &str, used: u32, limit: Option<u32>) -> CounterView {
    CounterView {
        level: level.into(),
        parent: None,
        name: name.into(),
        counter: kind.into(),
        used,
        limit,
        node_used: None,
        cluster_used: None,
    }
}

impl FakeDaemon {
    fn new() -> Self {
        let path = vec![CounterRef {
            level: "organization".into(),
            name: "acme".into(),
            counter: "public".into(),
        }];
        let calls = vec![
            CallView {
                id: "c1".into(),
                started_at_unix_secs: now_secs() - 90,
                legs: vec![
                    leg(
                        "a",
                        "a1@pbx",
                        "sip:1001@acme",
                        "sip:+4930123@gw",
                        "confirmed",
                    ),
                    leg(
                        "b",
                        "b1@callgate",
                        "sip:+4930999@gw",
                        "sip:+4930123@gw",
                        "confirmed",
                    ),
                ],
                counters: path.clone(),
            },
            CallView {
                id: "c2".into(),
                started_at_unix_secs: now_secs() - 5,
                legs: vec![leg(
                    "a",
                    "a2@pbx",
                    "sip:1002@acme",
                    "sip:1003@acme",
                    "trying",
                )],
                counters: path,
            },
        ];
        FakeDaemon {
            accept_reload: AtomicBool::new(true),
            calls: Mutex::new(calls),
        }
    }
}

impl AdminBackend for FakeDaemon {
    fn health(&self) -> bool {
        true
    }
    fn calls(&self) -> Vec<CallView> {
        self.calls.lock().expect("lock not poisoned").clone()
    }
    fn counters(&self) -> Vec<CounterView> {
        vec![
            counter("server", "", "public", 9, Some(10)),
            counter("service_provider", "voipco", "public", 4, Some(200)),
            counter("organization", "acme", "public", 8, Some(10)),
            counter("user", "alice", "internal", 1, None),
            counter("extension", "1001", "max_calls", 2, Some(2)),
        ]
    }
    fn registrations(&self) -> Vec<RegistrationView> {
        Vec::new()
    }
    fn trunks(&self) -> Vec<admin::TrunkView> {
        vec![admin::TrunkView {
            name: "carrier".into(),
            kind: "register".into(),
            address: Some("192.0.2.1:5060".into()),
            health: "down".into(),
            misses: 3,
            last_probe_secs_ago: Some(1),
            available: false,
            registration: Some(admin::TrunkRegistrationView {
                state: "registered".into(),
                expires_in_secs: Some(300),
                last_status: Some(200),
                reason: None,
                next_attempt_in_secs: Some(150),
            }),
        }]
    }
    fn reload(&self) -> ReloadResult {
        if self.accept_reload.load(Ordering::SeqCst) {
            ReloadResult::accepted(vec!["2 extensions added".into()])
        } else {
            ReloadResult::refused(vec!["organization acme: did pool overlaps beta".into()])
        }
    }
    fn end_call(&self, id: &str) -> bool {
        let mut calls = self.calls.lock().expect("lock not poisoned");
        let before = calls.len();
        calls.retain(|c| c.id != id);
        calls.len() != before
    }
}

struct Server {
    url: AdminUrl,
    base: String,
    daemon: Arc<FakeDaemon>,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), admin::AdminError>>,
}

impl Server {
    async fn start(token: Option<&str>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("bound address"));
        let daemon = Arc::new(FakeDaemon::new());
        let metrics = Arc::new(Metrics::new());
        let state = AdminState::new(daemon.clone(), metrics.clone(), token.map(str::to_owned));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(admin::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Server {
            url: AdminUrl::parse(&base).expect("valid url"),
            base,
            daemon,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    async fn send(&self, method: &str, path: &str, token: Option<&str>) -> HttpResponse {
        client::request(&self.url, method, path, token)
            .await
            .expect("admin API answers")
    }

    async fn get_json(&self, path: &str) -> Value {
        let r = self.send("GET", path, Some(TOKEN)).await;
        assert_eq!(r.status, 200, "GET {path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        serde_json::from_slice(&r.body).expect("JSON body")
    }
}

// ---- the real daemon ---------------------------------------------------------------------

/// The daemon in-process with `token` on its admin API (the line lands in `[admin]`).
async fn real_daemon(token: Option<&str>) -> support::Harness {
    let token = token.map_or(String::new(), |t| format!("token = \"{t}\"\n"));
    support::Harness::start(&support::config(&token)).await
}

async fn send_to(url: &AdminUrl, method: &str, path: &str, token: Option<&str>) -> HttpResponse {
    client::request(url, method, path, token)
        .await
        .expect("admin API answers")
}

/// A binding as the REGISTER handler will store it, expiring `expires` from now.
fn binding(contact: &str, transport: Transport, source: &str, expires: Duration) -> Binding {
    let now = Instant::now();
    Binding {
        contact: contact.into(),
        flow: Flow {
            transport,
            source: source.parse().expect("address"),
            local: None,
        },
        expires_at: now + expires,
        registered_at: now,
        call_id: format!("reg-{contact}"),
        cseq: 1,
        q: None,
    }
}

/// Puts two bindings in the daemon's location store: 1001 over UDP (1 h), 1002 over TCP (60 s).
fn register_two(h: &support::Harness) {
    let store = &h.daemon.shared.location;
    let now = Instant::now();
    let ext = |n: &str| Aor::new("acme.example", n);
    let one = binding(
        "sip:1001@192.0.2.10:5060",
        Transport::Udp,
        "192.0.2.10:5060",
        Duration::from_secs(3600),
    );
    let two = binding(
        "sip:1002@192.0.2.11:5070;transport=tcp",
        Transport::Tcp,
        "192.0.2.11:40112",
        Duration::from_secs(60),
    );
    store
        .upsert(ext("1001"), one, 4, now)
        .expect("binding stored");
    store
        .upsert(ext("1002"), two, 4, now)
        .expect("binding stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_token_and_reports_the_running_shards() {
    let h = real_daemon(Some(TOKEN)).await;
    let r = send_to(&h.admin, "GET", "/health", None).await;
    assert_eq!((r.status, r.body.as_slice()), (200, b"ok\n".as_slice()));
    assert!(h.daemon.healthy());
    // Everything else needs the token on the same server.
    assert_eq!(send_to(&h.admin, "GET", "/calls", None).await.status, 401);
    assert_eq!(
        send_to(&h.admin, "GET", "/calls", Some(TOKEN)).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_of_a_fresh_daemon_are_an_empty_list() {
    let h = real_daemon(Some(TOKEN)).await;
    let r = send_to(&h.admin, "GET", "/registrations", Some(TOKEN)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let regs: Value = serde_json::from_slice(&r.body).expect("JSON body");
    assert_eq!(regs, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_show_contact_source_transport_and_expiry() {
    let h = real_daemon(Some(TOKEN)).await;
    register_two(&h);
    let r = send_to(&h.admin, "GET", "/registrations", Some(TOKEN)).await;
    assert_eq!(r.status, 200);
    let mut regs: Vec<Value> = serde_json::from_slice(&r.body).expect("JSON array");
    regs.sort_by_key(|r| r["extension"].as_str().map(str::to_owned));
    assert_eq!(regs.len(), 2, "{regs:?}");
    // Every field of spec operations.md, nothing else.
    for reg in &regs {
        let mut keys: Vec<&str> = reg
            .as_object()
            .expect("a registration is an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "contact",
                "expires_secs",
                "extension",
                "source",
                "transport"
            ]
        );
    }
    let expires = regs[1]["expires_secs"].as_u64().expect("a number");
    assert!((58..=60).contains(&expires), "{expires}");
    assert_eq!(
        regs[1],
        serde_json::json!({"extension": "1002@acme.example",
                           "contact": "sip:1002@192.0.2.11:5070;transport=tcp",
                           "source": "192.0.2.11:40112", "transport": "tcp",
                           "expires_secs": expires})
    );
    assert_eq!(regs[0]["transport"], "udp");
    assert_eq!(regs[0]["source"], "192.0.2.10:5060");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_daemons_registrations() {
    let h = real_daemon(Some(TOKEN)).await;
    register_two(&h);
    let base = format!("http://{}", h.daemon.admin_addr().expect("admin API"));
    let text = admin::status(&base, Some(TOKEN))
        .await
        .expect("status text");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"registrations (2)"), "{text}");
    let r = lines
        .iter()
        .find(|l| l.starts_with("1002@acme.example "))
        .expect("row of 1002");
    for cell in [
        "192.0.2.11:40112",
        "tcp",
        "sip:1002@192.0.2.11:5070;transport=tcp",
    ] {
        assert!(r.contains(cell), "{cell} in {r}");
    }
    assert!(text.contains("active calls: none"), "{text}");
}

// ---- the fake backend ------------------------------------------------------------------------

#[tokio::test]
async fn every_endpoint_but_health_needs_the_bearer_token() {
    let s = Server::start(Some(TOKEN)).await;
    let guarded = [
        ("GET", "/metrics"),
        ("GET", "/calls"),
        ("GET", "/counters"),
        ("GET", "/registrations"),
        ("POST", "/reload"),
        ("DELETE", "/calls/c1"),
    ];
    for (method, path) in guarded {
        for token in [None, Some("wrong"), Some("s3cret-token2")] {
            let r = s.send(method, path, token).await;
            assert_eq!(r.status, 401, "{method} {path} with {token:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    // Nothing was done without the token.
    assert_eq!(s.daemon.calls().len(), 2);
    for path in ["/metrics", "/calls", "/counters", "/registrations"] {
        assert_eq!(s.send("GET", path, Some(TOKEN)).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn without_a_configured_token_the_api_is_open() {
    let s = Server::start(None).await;
    assert_eq!(s.send("GET", "/calls", None).await.status, 200);
}

#[tokio::test]
async fn calls_list_legs_counters_and_start_time() {
    let s = Server::start(Some(TOKEN)).await;
    let calls = s.get_json("/calls").await;
    let calls = calls.as_array().expect("array of calls");
    assert_eq!(calls.len(), 2);
    let c1 = &calls[0];
    assert_eq!(c1["id"], "c1");
    assert!(c1["started_at_unix_secs"].as_u64().expect("number") <= now_secs() - 90);
    let legs = c1["legs"].as_array().expect("legs");
    assert_eq!(legs.len(), 2);
    assert_eq!(legs[0]["leg"], "a");
    assert_eq!(legs[0]["call_id"], "a1@pbx");
    assert_eq!(legs[0]["from"], "sip:1001@acme");
    assert_eq!(legs[0]["to"], "sip:+4930123@gw");
    assert_eq!(legs[0]["state"], "confirmed");
    assert_eq!(legs[1]["leg"], "b");
    assert_eq!(
        c1["counters"][0],
        serde_json::json!({"level": "organization", "name": "acme", "counter": "public"})
    );
    assert_eq!(calls[1]["legs"].as_array().expect("legs").len(), 1);
}

#[tokio::test]
async fn counters_show_used_and_limit_with_null_for_unlimited() {
    let s = Server::start(Some(TOKEN)).await;
    let counters = s.get_json("/counters").await;
    let counters = counters.as_array().expect("array of counters");
    assert_eq!(counters.len(), 5);
    assert_eq!(
        counters[2],
        serde_json::json!({"level": "organization", "name": "acme", "counter": "public",
                           "used": 8, "limit": 10})
    );
    assert_eq!(counters[3]["limit"], Value::Null);
}

#[tokio::test]
async fn delete_call_ends_it_once_then_404() {
    let s = Server::start(Some(TOKEN)).await;
    let r = s.send("DELETE", "/calls/c1", Some(TOKEN)).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let ids: Vec<String> = s.daemon.calls().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["c2"]);
    let r = s.send("DELETE", "/calls/c1", Some(TOKEN)).await;
    assert_eq!(r.status, 404);
    let body: Value = serde_json::from_slice(&r.body).expect("JSON error body");
    assert_eq!(body["error"], "no such call");
}

#[tokio::test]
async fn reload_answers_200_when_accepted_and_422_with_every_error_when_refused() {
    let s = Server::start(Some(TOKEN)).await;
    let r = s.send("POST", "/reload", Some(TOKEN)).await;
    assert_eq!(r.status, 200);
    let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
    assert_eq!(body["accepted"], true);
    assert_eq!(body["summary"][0], "2 extensions added");

    s.daemon.accept_reload.store(false, Ordering::SeqCst);
    let r = s.send("POST", "/reload", Some(TOKEN)).await;
    assert_eq!(r.status, 422);
    let body: ReloadResult = serde_json::from_slice(&r.body).expect("ReloadResult body");
    assert!(!body.accepted);
    assert_eq!(body.errors, ["organization acme: did pool overlaps beta"]);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused() {
    let s = Server::start(None).await;
    assert_eq!(s.send("GET", "/nope", None).await.status, 404);
    assert_eq!(s.send("GET", "/reload", None).await.status, 405);
}

#[tokio::test]
async fn server_stops_when_shutdown_completes() {
    let mut s = Server::start(None).await;
    let _ = s.stop.take().expect("stop sender").send(());
    let result = tokio::time::timeout(Duration::from_secs(5), &mut s.task)
        .await
        .expect("server stops within 5 s")
        .expect("server task did not panic");
    assert!(result.is_ok(), "{result:?}");
}

// ---- /metrics -------------------------------------------------------------------------------

/// One parsed exposition: `# TYPE` lines and samples keyed by name and sorted labels.
#[derive(Default, Debug)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                e.types.insert(name.into(), kind.into());
            } else if line.starts_with('#') || line.is_empty() {
                continue;
            } else {
                let (series, value) = line.rsplit_once(' ').expect("sample: series value");
                let value: f64 = value.parse().expect("numeric sample value");
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))),
                    None => (series, Vec::new()),
                };
                let previous = e.samples.insert((name.into(), labels), value);
                assert!(previous.is_none(), "duplicate series in {line}");
            }
        }
        e
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        labels.sort();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    fn series(&self, name: &str) -> usize {
        self.samples.keys().filter(|(n, _)| n == name).count()
    }
}

/// `k="v",k2="v2"` with `\"` and `\\` escapes.
fn parse_labels(mut s: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"").expect("label key=\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => value.push(chars.next().expect("escaped char").1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        s = rest[end + 1..].trim_start_matches(',');
    }
    labels.sort();
    labels
}

/// Every metric of spec operations.md: (sample name, OpenMetrics family type).
/// Metrics callgate adds beyond the spec's list (README "Metrics"), each for a failure mode the
/// spec's names cannot show.
const EXTRA_METRICS: [(&str, &str); 6] = [
    ("callgate_trunk_up", "gauge"),
    ("callgate_trunk_registered", "gauge"),
    ("callgate_shard_queue_drops_total", "counter"),
    ("callgate_transactions_refused_total", "counter"),
    ("callgate_auth_bans_total", "counter"),
    ("callgate_auth_bans_active", "gauge"),
];

const SPEC_METRICS: [(&str, &str); 13] = [
    ("callgate_calls_active", "gauge"),
    ("callgate_calls_total", "counter"),
    ("callgate_admission_rejections_total", "counter"),
    ("callgate_counter_used", "gauge"),
    ("callgate_counter_limit", "gauge"),
    ("callgate_sip_requests_total", "counter"),
    ("callgate_sip_responses_total", "counter"),
    ("callgate_sip_parse_errors_total", "counter"),
    ("callgate_transaction_timeouts_total", "counter"),
    ("callgate_registrations_active", "gauge"),
    ("callgate_auth_failures_total", "counter"),
    ("callgate_config_reloads_total", "counter"),
    ("callgate_cluster_backend_errors_total", "counter"),
];

fn record_known_events(m: &Metrics) {
    for _ in 0..3 {
        m.call_started();
    }
    m.call_ended(Outcome::Answered);
    m.call_ended(Outcome::Rejected);
    m.rejection("organization", "acme", "public");
    m.rejection("organization", "acme", "public");
    m.rejection("trunk", "carrier \"one\"", "max_outbound");
    m.sip_request("INVITE", Direction::In);
    m.sip_request("INVITE", Direction::In);
    m.sip_request("FOO", Direction::Out);
    m.sip_response(180, Direction::In);
    m.sip_response(200, Direction::Out);
    m.sip_response(486, Direction::Out);
    m.sip_response(99, Direction::Out);
    m.sip_response(700, Direction::Out);
    m.parse_error("UDP");
    m.parse_error("sctp");
    m.transaction_timeout();
    m.registrations_set(4);
    m.auth_failure();
    m.auth_failure();
    m.auth_ban();
    m.auth_bans_set(1);
    m.config_reload(true);
    m.config_reload(false);
    m.config_reload(false);
    m.cluster_backend_error();
}

async fn scrape(s: &Server) -> Exposition {
    let r = s.send("GET", "/metrics", Some(TOKEN)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    Exposition::parse(std::str::from_utf8(&r.body).expect("UTF-8 exposition"))
}

#[tokio::test]
async fn metrics_expose_every_spec_name_with_its_type() {
    let s = Server::start(Some(TOKEN)).await;
    record_known_events(&s.metrics);
    let e = scrape(&s).await;
    for (name, kind) in SPEC_METRICS.iter().chain(&EXTRA_METRICS).copied() {
        // OpenMetrics declares a counter family without `_total`; its samples carry it.
        let family = if kind == "counter" {
            name.strip_suffix("_total")
                .expect("counter sample ends in _total")
        } else {
            name
        };
        assert_eq!(
            e.types.get(family).map(String::as_str),
            Some(kind),
            "# TYPE {family}"
        );
        assert!(e.series(name) > 0, "no sample named {name}");
    }
    // No sample name outside the spec (e.g. a doubled `_total_total`).
    for (name, _) in e.samples.keys() {
        assert!(
            SPEC_METRICS
                .iter()
                .chain(&EXTRA_METRICS)
                .any(|(n, _)| n == name),
            "unexpected sample {name}"
        );
    }
}

#[tokio::test]
async fn trunk_gauges_follow_the_trunk_views() {
    let s = Server::start(Some(TOKEN)).await;
    let e = scrape(&s).await;
    assert_eq!(
        e.value("callgate_trunk_up", &[("trunk", "carrier")]),
        Some(0.0)
    );
    assert_eq!(
        e.value("callgate_trunk_registered", &[("trunk", "carrier")]),
        Some(1.0)
    );
    let list = s.get_json("/trunks").await;
    assert_eq!(list[0]["registration"]["state"], "registered", "{list}");
}

#[tokio::test]
async fn metric_values_follow_the_recorded_events() {
    let s = Server::start(Some(TOKEN)).await;
    record_known_events(&s.metrics);
    let e = scrape(&s).await;
    let v = |name: &str, labels: &[(&str, &str)]| e.value(name, labels);

    assert_eq!(v("callgate_calls_active", &[]), Some(1.0));
    for (outcome, n) in [
        ("answered", 1.0),
        ("rejected", 1.0),
        ("failed", 0.0),
        ("cancelled", 0.0),
    ] {
        assert_eq!(
            v("callgate_calls_total", &[("outcome", outcome)]),
            Some(n),
            "{outcome}"
        );
    }
    let acme = [
        ("level", "organization"),
        ("name", "acme"),
        ("counter", "public"),
    ];
    assert_eq!(v("callgate_admission_rejections_total", &acme), Some(2.0));
    let carrier = [
        ("level", "trunk"),
        ("name", "carrier \"one\""),
        ("counter", "max_outbound"),
    ];
    assert_eq!(
        v("callgate_admission_rejections_total", &carrier),
        Some(1.0)
    );

    let req = |m, d| {
        v(
            "callgate_sip_requests_total",
            &[("method", m), ("direction", d)],
        )
    };
    assert_eq!(req("INVITE", "in"), Some(2.0));
    assert_eq!(req("INVITE", "out"), Some(0.0));
    assert_eq!(req("other", "out"), Some(1.0));
    assert_eq!(req("FOO", "out"), None);

    let resp = |c, d| {
        v(
            "callgate_sip_responses_total",
            &[("class", c), ("direction", d)],
        )
    };
    assert_eq!(resp("1xx", "in"), Some(1.0));
    assert_eq!(resp("2xx", "out"), Some(1.0));
    assert_eq!(resp("4xx", "out"), Some(1.0));
    assert_eq!(resp("6xx", "out"), Some(0.0));
    assert_eq!(
        e.series("callgate_sip_responses_total"),
        12,
        "6 classes x 2 directions"
    );

    let parse = |t| v("callgate_sip_parse_errors_total", &[("transport", t)]);
    assert_eq!(
        (parse("udp"), parse("tcp"), parse("other")),
        (Some(1.0), Some(0.0), Some(1.0))
    );

    assert_eq!(v("callgate_transaction_timeouts_total", &[]), Some(1.0));
    assert_eq!(v("callgate_registrations_active", &[]), Some(4.0));
    assert_eq!(v("callgate_auth_failures_total", &[]), Some(2.0));
    assert_eq!(
        v("callgate_config_reloads_total", &[("result", "accepted")]),
        Some(1.0)
    );
    assert_eq!(
        v("callgate_config_reloads_total", &[("result", "refused")]),
        Some(2.0)
    );
    assert_eq!(v("callgate_cluster_backend_errors_total", &[]), Some(1.0));
}

#[tokio::test]
async fn counter_gauges_come_from_the_backend_and_unlimited_has_no_limit_series() {
    let s = Server::start(Some(TOKEN)).await;
    let e = scrape(&s).await;
    let acme = [
        ("level", "organization"),
        ("name", "acme"),
        ("counter", "public"),
    ];
    assert_eq!(e.value("callgate_counter_used", &acme), Some(8.0));
    assert_eq!(e.value("callgate_counter_limit", &acme), Some(10.0));
    let alice = [
        ("level", "user"),
        ("name", "alice"),
        ("counter", "internal"),
    ];
    assert_eq!(e.value("callgate_counter_used", &alice), Some(1.0));
    assert_eq!(e.value("callgate_counter_limit", &alice), None);
    assert_eq!(e.series("callgate_counter_used"), 5);
    assert_eq!(e.series("callgate_counter_limit"), 4);
    // Families with a closed label set are exported at zero before any event.
    assert_eq!(
        e.value("callgate_calls_total", &[("outcome", "failed")]),
        Some(0.0)
    );
}

// ---- callgate status --------------------------------------------------------------------------

#[tokio::test]
async fn status_renders_calls_counters_near_limit_and_registrations() {
    let s = Server::start(Some(TOKEN)).await;
    let text = admin::status(&s.base, Some(TOKEN))
        .await
        .expect("status text");
    let lines: Vec<&str> = text.lines().collect();

    assert!(lines.contains(&"active calls (2)"), "{text}");
    let c1 = lines
        .iter()
        .find(|l| l.starts_with("c1 "))
        .expect("row of c1");
    for cell in [
        "sip:1001@acme",
        "sip:+4930123@gw",
        "confirmed/confirmed",
        "1m3",
    ] {
        assert!(c1.contains(cell), "{cell} in {c1}");
    }
    let c2 = lines
        .iter()
        .find(|l| l.starts_with("c2 "))
        .expect("row of c2");
    assert!(
        c2.contains("trying") && c2.contains("sip:1003@acme"),
        "{c2}"
    );

    assert!(
        lines.contains(&"counters at or above 80% of their limit (3)"),
        "{text}"
    );
    let near: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains('%') && !l.contains("counters at"))
        .skip(1) // header
        .collect();
    assert_eq!(near.len(), 3, "{text}");
    assert!(near[0].contains("1001") && near[0].contains("2/2") && near[0].ends_with("100%"));
    assert!(near[1].starts_with("server") && near[1].contains("9/10") && near[1].ends_with("90%"));
    assert!(near[2].contains("acme") && near[2].contains("8/10") && near[2].ends_with("80%"));
    assert!(
        !text.contains("voipco") && !text.contains("alice"),
        "{text}"
    );

    // The fake has none; the real daemon's are listed in status_lists_the_daemons_registrations.
    assert!(lines.contains(&"registrations: none"), "{text}");
}

#[tokio::test]
async fn status_reports_a_refused_token() {
    let s = Server::start(Some(TOKEN)).await;
    let err = admin::status(&s.base, Some("wrong"))
        .await
        .expect_err("refused");
    assert!(matches!(err, StatusError::Unauthorized), "{err:?}");
    let err = admin::status(&s.base, None).await.expect_err("refused");
    assert!(matches!(err, StatusError::Unauthorized), "{err:?}");
}

#[tokio::test]
async fn status_reports_an_unreachable_daemon() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    drop(listener);
    let err = admin::status(&format!("http://{addr}"), None)
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, StatusError::Connect { .. }), "{err:?}");
}

//! `explain` over TOML strings and hand-written used counts: no sockets, no daemon.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::limits::Limiter;
use crate::registrar::{Aor, Binding, Flow};
use crate::routing::plan::AllAvailable;

const CONFIG: &str = r#"
[server]
name = "edge"
reject_code = 503

[license]
sip_trunking_channels = 100

[[listen]]
transport = "udp"
address = "127.0.0.1:5060"

[[service_provider]]
name = "sp"
limits = { public = 10 }

[[organization]]
name = "acme"
service_provider = "sp"
domain = "acme.example"

[[user]]
name = "alice"
organization = "acme"
limits = { public = 2, internal = 4 }

[[user]]
name = "bob"
organization = "acme"
limits = { public = 5 }

[[extension]]
number = "200"
user = "alice"
max_calls = 3
pbx = { address = "127.0.0.10:5090", transport = "udp", authenticate = false }

[[extension]]
number = "201"
user = "bob"
max_calls = 2
pbx = { address = "127.0.0.11:5090", transport = "udp", authenticate = false }

[[extension]]
number = "300"
user = "bob"
password = "pw300"
pbx = { address = "127.0.0.12:5090", transport = "udp", authenticate = true }

[[extension]]
number = "301"
user = "bob"
password = "pw301"
pbx = { address = "127.0.0.12:5090", transport = "udp", authenticate = true }

[[extension]]
number = "101"
user = "alice"
password = "pw101"
allowed_networks = ["198.51.100.0/24"]

[[trunk]]
name = "carrier-a"
kind = "ip"
address = "127.0.0.1:5080"
associated_ips = ["127.0.0.2"]
max_outbound = 1

[[trunk]]
name = "carrier-b"
kind = "ip"
address = "127.0.0.3:5080"

[[did_pool]]
trunk = "carrier-a"
organization = "acme"
dids = ["2125550100-2125550399"]

[[inbound_rule]]
organization = "acme"
trunk = "carrier-a"
dids = "2125550100-2125550149"
destination = { extension = "200" }

[[inbound_rule]]
organization = "acme"
trunk = "carrier-a"
dids = "2125550300"
destination = { ring_rule = "sales" }

[[outbound_rule]]
organization = "acme"
pattern = "^1?[2-9][0-9]{9}$"
trunks = ["carrier-a", "carrier-b"]
strip = 1
prepend = "+1"

[[ring_rule]]
name = "sales"
organization = "acme"
targets = ["201", "101", "12125559876"]
ring_time = "20s"
"#;

struct Fixture {
    limiter: Limiter,
    location: LocationStore,
    now: Instant,
    trunks: &'static dyn TrunkAvailability,
    authenticated_as: Option<String>,
}

/// carrier-a is down.
struct CarrierADown;

impl TrunkAvailability for CarrierADown {
    fn is_available(&self, trunk: &str) -> bool {
        trunk != "carrier-a"
    }
}

impl Fixture {
    fn new() -> Fixture {
        let snapshot = match crate::config::load(CONFIG) {
            Ok(loaded) => loaded.snapshot,
            Err(issues) => panic!("test config invalid: {issues:#?}"),
        };
        Fixture {
            limiter: Limiter::new(Arc::new(snapshot)),
            location: LocationStore::new(),
            now: Instant::now(),
            trunks: &AllAvailable,
            authenticated_as: None,
        }
    }

    /// Phone 101 registered from `127.0.0.50:5060`.
    fn register_101(&self) {
        let binding = Binding {
            contact: "sip:101@127.0.0.50:5060".to_owned(),
            flow: Flow {
                transport: crate::config::model::Transport::Udp,
                source: "127.0.0.50:5060".parse().expect("address"),
                local: None,
            },
            expires_at: self.now + Duration::from_secs(600),
            registered_at: self.now,
            call_id: "r".to_owned(),
            cseq: 1,
            q: None,
        };
        let aor = Aor::new("acme.example", "101");
        self.location
            .upsert(aor, binding, 4, self.now)
            .expect("binding stored");
    }

    fn explain(&self, from: &str, to: &str, used: &UsedLookup<'_>) -> Explanation {
        let generation = self.limiter.current();
        let ctx = Context {
            generation: &generation,
            location: &self.location,
            now: self.now,
            trunks: self.trunks,
            counts_from: "file".to_owned(),
        };
        let question = Question {
            source: parse_source(from).expect("source"),
            number: to.to_owned(),
            authenticated_as: self.authenticated_as.clone(),
        };
        explain(&ctx, &question, used)
    }
}

fn none(_: Level, _: &str, _: CounterKind) -> u32 {
    0
}

fn admitted_steps(e: &Explanation) -> Vec<&str> {
    e.path
        .iter()
        .filter(|s| s.outcome == StepOutcome::Admitted)
        .map(|s| s.role.as_str())
        .collect()
}

#[test]
fn an_internal_call_between_two_pbxs_is_admitted_on_eleven_counters() {
    let f = Fixture::new();
    let e = f.explain("127.0.0.10:5090", "201", &none);
    assert_eq!(
        e.caller,
        Identification::Extension {
            extension: "200@acme".into(),
            pbx: "127.0.0.10:5090".into(),
            matched: "address".into(),
        }
    );
    assert_eq!(
        e.route,
        Some(RouteView::Internal {
            callee: "201@acme".into()
        })
    );
    assert!(e.verdict.admitted, "{e}");
    assert_eq!(e.verdict.status, None);
    assert_eq!(e.path[0].role, "call");
    assert_eq!(e.path[0].counters.len(), 11);
    let first = &e.path[0].counters[0];
    assert_eq!(
        (
            first.level.as_str(),
            first.name.as_str(),
            first.counter.as_str()
        ),
        ("extension", "200@acme", "max_calls")
    );
    assert_eq!((first.used, first.limit), (0, Some(3)));
    // The organization is shared by both ends: the callee's end sees the caller's unit.
    let org: Vec<u32> = e.path[0]
        .counters
        .iter()
        .filter(|c| c.level == "organization")
        .map(|c| c.used)
        .collect();
    assert_eq!(org, [0, 1]);
    assert_eq!(e.verdict.rings, ["target 1: extension 201@acme"]);
    let text = e.to_string();
    assert!(text.contains("verdict  admitted"), "{text}");
    assert!(text.contains("user"), "{text}");
}

#[test]
fn an_outbound_call_with_the_first_trunk_full_is_admitted_through_the_second() {
    let f = Fixture::new();
    let used = |level: Level, name: &str, kind: CounterKind| {
        u32::from(level == Level::Trunk && name == "carrier-a" && kind == CounterKind::MaxOutbound)
    };
    let e = f.explain("127.0.0.10", "12125559999", &used);
    match &e.route {
        Some(RouteView::Outbound {
            rule,
            number,
            trunks,
            ..
        }) => {
            assert_eq!((*rule, number.as_str()), (1, "+12125559999"));
            assert_eq!(trunks, &["carrier-a", "carrier-b"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.verdict.admitted, "{e}");
    assert_eq!(e.path.len(), 2, "{e}");
    assert_eq!(
        e.path[0].outcome,
        StepOutcome::Refused {
            by: "trunk carrier-a: max_outbound 1/1".into()
        }
    );
    assert_eq!(
        admitted_steps(&e),
        ["target 1: +12125559999 via trunk carrier-b"]
    );
    assert_eq!(e.path[1].legs, ["udp 127.0.0.3:5080"]);
}

#[test]
fn a_full_counter_refuses_with_the_configured_code_naming_the_counter() {
    let f = Fixture::new();
    let used = |level: Level, name: &str, kind: CounterKind| {
        if level == Level::User && name == "alice" && kind == CounterKind::Public {
            2
        } else {
            0
        }
    };
    let e = f.explain("127.0.0.10:5090", "2125559999", &used);
    let v = &e.verdict;
    assert!(!v.admitted);
    assert_eq!(v.status, Some(503));
    assert_eq!(v.phrase.as_deref(), Some("Service Unavailable"));
    assert_eq!(
        v.reason_header.as_deref(),
        Some("SIP;cause=503;text=\"user alice: public 2/2\"")
    );
    assert_eq!(
        v.warning_header.as_deref(),
        Some("399 callgate \"user alice: public 2/2\"")
    );
    assert!(v.reason.contains("user alice public"), "{}", v.reason);
    // Both trunks were tried: the user's counter is on each way.
    assert_eq!(e.path.len(), 2);
    let text = e.to_string();
    assert!(text.contains("FULL"), "{text}");
    assert!(text.contains("refused: 503 Service Unavailable"), "{text}");
}

#[test]
fn an_unknown_source_is_refused_with_403_and_why() {
    let f = Fixture::new();
    let e = f.explain("192.0.2.7:5060", "201", &none);
    assert!(matches!(e.caller, Identification::Unknown { .. }), "{e}");
    assert_eq!(e.verdict.status, Some(403));
    assert!(e.verdict.reason.contains("no trunk's gateway"), "{e}");
    assert_eq!(e.route, None);
    assert!(e.path.is_empty());
}

#[test]
fn pbxs_that_must_authenticate_are_named() {
    let f = Fixture::new();
    let e = f.explain("127.0.0.12:5090", "201", &none);
    assert_eq!(
        e.caller,
        Identification::MustAuthenticate {
            extensions: vec!["300@acme".into(), "301@acme".into()]
        }
    );
    assert_eq!(e.verdict.status, Some(407));
}

#[test]
fn a_number_no_rule_matches_is_404() {
    let f = Fixture::new();
    let e = f.explain("127.0.0.10:5090", "99", &none);
    assert_eq!(e.route, Some(RouteView::None));
    assert_eq!(e.verdict.status, Some(404));
    assert_eq!(e.verdict.phrase.as_deref(), Some("Not Found"));
    assert!(e.verdict.reason.contains("1 outbound rule"), "{e}");
}

#[test]
fn an_inbound_did_outside_every_rule_is_404_listing_the_rules() {
    let f = Fixture::new();
    let e = f.explain("127.0.0.2:5062", "2125550200", &none);
    assert_eq!(
        e.caller,
        Identification::Trunk {
            trunk: "carrier-a".into(),
            matched: "associated ip".into()
        }
    );
    assert_eq!(e.verdict.status, Some(404));
    assert!(
        e.verdict
            .reason
            .contains("2125550100-2125550149, 2125550300"),
        "{e}"
    );
}

#[test]
fn an_inbound_did_to_a_pbx_counts_the_trunk_and_the_callee_chain() {
    let f = Fixture::new();
    let e = f.explain("127.0.0.1:5080", "2125550120", &none);
    match &e.route {
        Some(RouteView::Inbound {
            dids, destination, ..
        }) => {
            assert_eq!(dids, "2125550100-2125550149");
            assert_eq!(
                destination,
                &Destination::Extension {
                    extension: "200@acme".into()
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(e.verdict.admitted, "{e}");
    let kinds: Vec<&str> = e.path[0]
        .counters
        .iter()
        .map(|c| c.counter.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "max_calls",
            "max_inbound",
            "public",
            "public",
            "public",
            "public",
            "max_calls"
        ]
    );
}

#[test]
fn a_ring_rule_rings_its_targets_each_on_its_own_units() {
    let f = Fixture::new();
    f.register_101();
    let e = f.explain("127.0.0.1:5080", "2125550300", &none);
    match &e.route {
        Some(RouteView::Inbound { destination, .. }) => assert_eq!(
            destination,
            &Destination::RingRule {
                name: "sales".into(),
                targets: vec!["201".into(), "101".into(), "12125559876".into()],
                ring_time_secs: 20,
            }
        ),
        other => panic!("{other:?}"),
    }
    assert!(e.verdict.admitted, "{e}");
    assert_eq!(
        e.verdict.rings,
        [
            "target 1: extension 201@acme",
            "target 2: extension 101@acme",
            "target 3: +12125559876 via trunk carrier-a",
        ]
    );
    // The call's own units: the trunk and `public` from the organization up.
    assert_eq!(e.path[0].counters.len(), 5);
    assert_eq!(e.path[2].legs, ["udp 127.0.0.50:5060"]);
    // The second local leg sees the first one's `internal` unit on the organization.
    let org_internal = |step: usize| {
        e.path[step]
            .counters
            .iter()
            .find(|c| c.level == "organization" && c.counter == "internal")
            .map(|c| c.used)
    };
    assert_eq!((org_internal(1), org_internal(2)), (Some(0), Some(1)));
    assert!(e.to_string().contains("ring rule sales"), "{e}");
    assert!(e.skipped.is_empty(), "{e}");
}

#[test]
fn a_ring_target_phone_without_a_registration_is_listed_as_skipped() {
    let f = Fixture::new();
    let e = f.explain("127.0.0.1:5080", "2125550300", &none);
    assert!(e.verdict.admitted, "{e}");
    assert_eq!(e.verdict.rings.len(), 2, "{e}");
    assert_eq!(e.skipped, ["ring target 101@acme: not registered"]);
    assert!(
        e.to_string().contains("skipped  ring target 101@acme"),
        "{e}"
    );
}

#[test]
fn a_ring_rule_whose_targets_are_all_full_is_refused_by_the_last() {
    let f = Fixture::new();
    f.register_101();
    // The call takes the provider's last public unit, so its public leg cannot start; both
    // local legs are full on their own counters.
    let used = |level: Level, _: &str, kind: CounterKind| match (level, kind) {
        (Level::ServiceProvider, CounterKind::Public) => 9,
        (Level::User, CounterKind::Internal) => 4,
        (Level::Extension, CounterKind::MaxCalls) => 2,
        _ => 0,
    };
    let e = f.explain("127.0.0.1:5080", "2125550300", &used);
    assert!(!e.verdict.admitted, "{e}");
    let refused: Vec<String> = e
        .path
        .iter()
        .filter_map(|s| match &s.outcome {
            StepOutcome::Refused { by } => Some(by.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        [
            "extension 201@acme: max_calls 2/2",
            "user alice: internal 4/4",
            "service_provider sp: public 10/10",
            "service_provider sp: public 10/10",
        ]
    );
    assert_eq!(
        e.verdict.reason_header.as_deref(),
        Some("SIP;cause=503;text=\"service_provider sp: public 10/10\"")
    );
    assert!(e.verdict.reason.starts_with("no target could start"), "{e}");
}

#[test]
fn a_phone_without_a_registration_is_480_from_the_file_alone() {
    let f = Fixture::new();
    let e = f.explain("127.0.0.10:5090", "101", &none);
    assert_eq!(e.verdict.status, Some(480), "{e}");
    assert!(e.verdict.reason.contains("--admin"), "{e}");
}

#[test]
fn the_json_form_carries_the_steps_and_the_verdict() {
    let f = Fixture::new();
    let e = f.explain("127.0.0.10:5090", "201", &none);
    let json = serde_json::to_value(&e).expect("serializes");
    assert_eq!(json["caller"]["kind"], "extension");
    assert_eq!(json["route"]["kind"], "internal");
    assert_eq!(json["path"][0]["counters"][0]["limit"], 3);
    assert_eq!(json["path"][0]["outcome"]["kind"], "admitted");
    assert_eq!(json["verdict"]["admitted"], true);
}

#[test]
fn a_source_without_a_port_takes_5060() {
    assert_eq!(
        parse_source("10.0.0.1"),
        Ok("10.0.0.1:5060".parse().expect("address"))
    );
    assert_eq!(
        parse_source("[::1]:5070"),
        Ok("[::1]:5070".parse().expect("address"))
    );
    assert!(parse_source("pbx.example").is_err());
}

#[test]
fn a_phone_taken_as_authenticated_calls_from_inside_its_networks_only() {
    let mut f = Fixture::new();
    f.authenticated_as = Some("101@acme.example".into());
    let e = f.explain("198.51.100.7:5060", "201", &none);
    assert_eq!(
        e.caller,
        Identification::Authenticated {
            extension: "101@acme".into()
        }
    );
    assert!(e.verdict.admitted, "{e}");
    let outside = f.explain("192.0.2.7:5060", "201", &none);
    assert_eq!(outside.verdict.status, Some(403));
    assert!(
        outside.verdict.reason.contains("allowed_networks"),
        "{outside}"
    );
    f.authenticated_as = Some("999@acme.example".into());
    let unknown = f.explain("198.51.100.7:5060", "201", &none);
    assert!(
        unknown.verdict.reason.contains("no such extension"),
        "{unknown}"
    );
}

#[test]
fn a_pbx_sharing_its_address_is_taken_as_the_extension_it_authenticates_as() {
    let mut f = Fixture::new();
    f.authenticated_as = Some("301@acme.example".into());
    let e = f.explain("127.0.0.12:5090", "201", &none);
    assert!(e.verdict.admitted, "{e}");
    // A phone cannot claim to be at a PBX's address.
    f.authenticated_as = Some("101@acme.example".into());
    let e = f.explain("127.0.0.12:5090", "201", &none);
    assert_eq!(e.verdict.status, Some(403), "{e}");
}

#[test]
fn an_unavailable_trunk_is_passed_over_and_said() {
    let mut f = Fixture::new();
    f.trunks = &CarrierADown;
    let e = f.explain("127.0.0.10:5090", "2125559999", &none);
    assert!(e.verdict.admitted, "{e}");
    assert_eq!(
        e.verdict.rings,
        ["target 1: +1125559999 via trunk carrier-b"]
    );
    assert_eq!(
        e.skipped,
        ["trunk carrier-a: unavailable (probes down or not registered)"]
    );
}

#[test]
fn a_spent_cps_bucket_refuses_like_a_full_counter() {
    let mut f = Fixture::new();
    let config = CONFIG.replace("name = \"carrier-a\"\n", "name = \"carrier-a\"\ncps = 5\n");
    let snapshot = crate::config::load(&config)
        .unwrap_or_else(|e| panic!("{e:#?}"))
        .snapshot;
    f.limiter = Limiter::new(Arc::new(snapshot));
    let spent = |level: Level, name: &str, kind: CounterKind| {
        if level == Level::Trunk && name == "carrier-a" && kind == CounterKind::Cps {
            5
        } else {
            0
        }
    };
    let e = f.explain("127.0.0.10", "12125559999", &spent);
    assert!(
        e.verdict.admitted,
        "the second trunk has no rate limit: {e}"
    );
    assert_eq!(
        e.path[0].outcome,
        StepOutcome::Refused {
            by: "trunk carrier-a: cps 5/5".into()
        }
    );
    let free = f.explain("127.0.0.10", "12125559999", &none);
    assert!(free.path[0]
        .counters
        .iter()
        .any(|c| c.counter == "cps" && !c.full));
    assert_eq!(free.path[0].outcome, StepOutcome::Admitted);
}

use super::*;
use crate::config;

const CFG: &str = r#"
[server]
name = "t"
[license]
sip_trunking_channels = 100
[[listen]]
transport = "udp"
address = "127.0.0.1:0"
[[service_provider]]
name = "sp"
limits = { public = 10 }
[[organization]]
name = "acme"
service_provider = "sp"
domain = "acme.example"
[[user]]
name = "u"
organization = "acme"
[[extension]]
number = "200"
user = "u"
pbx = { address = "127.0.0.11:5060", transport = "udp", authenticate = false }
[[extension]]
number = "201"
user = "u"
pbx = { address = "127.0.0.12:5060", transport = "udp", authenticate = false }
[[trunk]]
name = "carrier"
kind = "ip"
address = "127.0.0.1:5080"
associated_ips = ["127.0.0.2"]
[[did_pool]]
trunk = "carrier"
organization = "acme"
dids = ["3125550000-3125550099"]
[[inbound_rule]]
organization = "acme"
trunk = "carrier"
dids = "3125550000-3125550049"
destination = { extension = "201" }
[[outbound_rule]]
organization = "acme"
pattern = "^9[0-9]+$"
trunks = ["carrier"]
strip = 1
prepend = "1"
"#;

fn snapshot() -> Snapshot {
    match config::load(CFG) {
        Ok(loaded) => loaded.snapshot,
        Err(issues) => panic!("test config invalid: {issues:?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn ext(s: &Snapshot, number: &str) -> ExtId {
    let org = s.index.org_by_name["acme"];
    extension_in(s, org, number).expect("extension exists")
}

#[test]
fn pbx_identified_by_exact_address_then_by_ip() {
    let s = snapshot();
    assert_eq!(
        identify(&s, addr("127.0.0.11:5060")),
        Ok(Caller::Extension(ext(&s, "200")))
    );
    assert_eq!(
        identify(&s, addr("127.0.0.11:40000")),
        Ok(Caller::Extension(ext(&s, "200")))
    );
}

#[test]
fn trunk_identified_by_gateway_or_associated_ip() {
    let s = snapshot();
    let trunk = s.index.trunk_by_name["carrier"];
    assert_eq!(
        identify(&s, addr("127.0.0.1:9999")),
        Ok(Caller::Trunk(trunk))
    );
    assert_eq!(
        identify(&s, addr("127.0.0.2:5060")),
        Ok(Caller::Trunk(trunk))
    );
}

#[test]
fn unknown_source_is_refused() {
    let s = snapshot();
    let src = addr("127.0.0.99:5060");
    assert_eq!(identify(&s, src), Err(RouteError::UnknownSource(src)));
}

#[test]
fn extension_number_of_same_organization_is_internal() {
    let s = snapshot();
    let (a, b) = (ext(&s, "200"), ext(&s, "201"));
    let r = route(&s, &Caller::Extension(a), "201");
    assert_eq!(
        r,
        Ok(Route::Internal {
            caller: a,
            callee: b
        })
    );
}

#[test]
fn outbound_rule_strips_and_prepends() {
    let s = snapshot();
    let a = ext(&s, "200");
    let trunk = s.index.trunk_by_name["carrier"];
    let r = route(&s, &Caller::Extension(a), "92125551234");
    let want = Route::Outbound {
        caller: a,
        trunks: vec![trunk],
        number: "12125551234".into(),
    };
    assert_eq!(r, Ok(want));
}

#[test]
fn unmatched_number_has_no_route() {
    let s = snapshot();
    let r = route(&s, &Caller::Extension(ext(&s, "200")), "12345");
    assert_eq!(r, Err(RouteError::NoRoute("12345".into())));
}

#[test]
fn inbound_did_goes_to_rule_destination() {
    let s = snapshot();
    let trunk = s.index.trunk_by_name["carrier"];
    let r = route(&s, &Caller::Trunk(trunk), "3125550007");
    let target = InboundTarget::Extension(ext(&s, "201"));
    assert_eq!(
        r,
        Ok(Route::Inbound {
            trunk,
            target,
            did: "3125550007".into()
        })
    );
}

#[test]
fn inbound_did_outside_rules_has_no_route() {
    let s = snapshot();
    let trunk = s.index.trunk_by_name["carrier"];
    assert!(route(&s, &Caller::Trunk(trunk), "3125550077").is_err());
    assert!(route(&s, &Caller::Trunk(trunk), "03125550007").is_err());
}

mod plans {
    use super::*;
    use crate::limits::PathSpec;
    use crate::registrar::LocationStore;
    use crate::routing::plan::{self, AllAvailable, Plan, Reach, TrunkAvailability};

    /// The routing test tenancy plus a phone 300, a backup trunk and a ring rule owned by 200.
    fn cfg() -> String {
        CFG.replace(
            "[[trunk]]",
            "[[extension]]\nnumber = \"300\"\nuser = \"u\"\npassword = \"pw300\"\n\n[[trunk]]",
        )
        .replace(
            "trunks = [\"carrier\"]",
            "trunks = [\"carrier\", \"backup\"]",
        ) + r#"
[[trunk]]
name = "backup"
kind = "ip"
address = "127.0.0.3:5080"
[[ring_rule]]
name = "r200"
organization = "acme"
extension = "200"
targets = ["200", "201", "300", "9123"]
"#
    }

    fn load() -> Snapshot {
        match config::load(&cfg()) {
            Ok(loaded) => loaded.snapshot,
            Err(issues) => panic!("test config invalid: {issues:?}"),
        }
    }

    fn invite() -> crate::sip::Request {
        let text = "INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKp\r\nFrom: <sip:3125559999@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: p\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        match crate::sip::parse_datagram(bytes::Bytes::from(text)) {
            Ok(crate::sip::Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    struct Down(&'static str);
    impl TrunkAvailability for Down {
        fn is_available(&self, trunk: &str) -> bool {
            trunk != self.0
        }
    }

    fn plan_of(
        s: &Snapshot,
        caller: Caller,
        dialled: &str,
        trunks: &dyn TrunkAvailability,
    ) -> Result<Plan, RouteError> {
        let location = LocationStore::default();
        let reach = Reach {
            location: &location,
            now: crate::test_clock::origin(),
            trunks,
        };
        let r = route(s, &caller, dialled)?;
        plan::plan(s, &r, &reach, &invite())
    }

    #[test]
    fn inbound_rule_range_ends_are_inclusive() {
        let s = load();
        let trunk = Caller::Trunk(TrunkId(0));
        for did in ["3125550000", "3125550049"] {
            assert!(route(&s, &trunk, did).is_ok(), "{did}");
        }
        for did in ["3125550050", "3125550100", "312555004", "31255500000"] {
            assert!(
                matches!(route(&s, &trunk, did), Err(RouteError::NoRoute(_))),
                "{did}"
            );
        }
    }

    #[test]
    fn outbound_tries_the_rules_trunks_in_order_and_skips_an_unavailable_one() {
        let s = load();
        let caller = Caller::Extension(ext(&s, "201"));
        let p = plan_of(&s, caller.clone(), "9555", &AllAvailable).expect("plan");
        assert_eq!(p.incoming, None, "each trunk's units are its own");
        let trunks: Vec<_> = p.targets[0].choices.iter().map(|c| c.trunk).collect();
        assert_eq!(trunks, vec![Some(TrunkId(0)), Some(TrunkId(1))]);
        assert_eq!(
            p.targets[0].choices[0].legs[0].user, "1555",
            "strip 1, prepend 1"
        );
        let p = plan_of(&s, caller.clone(), "9555", &Down("carrier")).expect("plan");
        let trunks: Vec<_> = p.targets[0].choices.iter().map(|c| c.trunk).collect();
        assert_eq!(trunks, vec![Some(TrunkId(1))]);
        struct NoneUp;
        impl TrunkAvailability for NoneUp {
            fn is_available(&self, _: &str) -> bool {
                false
            }
        }
        let none = plan_of(&s, caller, "9555", &NoneUp);
        assert!(matches!(none, Err(RouteError::Unreachable(_))));
    }

    #[test]
    fn a_call_to_a_rule_owner_forks_skipping_a_phone_without_binding() {
        let s = load();
        let p = plan_of(&s, Caller::Trunk(TrunkId(0)), "3125550001", &AllAvailable);
        // 3125550001 goes to 201, which owns no rule: one target.
        assert_eq!(p.expect("plan").targets.len(), 1);
        let owner = ext(&s, "200");
        let p = plan_of(&s, Caller::Extension(ext(&s, "201")), "200", &AllAvailable).expect("plan");
        assert!(matches!(p.incoming, Some(PathSpec::LocalToLocal { .. })));
        // 200, 9123 (public): 201 is the caller, 300 has no binding.
        assert_eq!(p.targets.len(), 2, "{p:?}");
        assert_eq!(
            p.targets[0].choices[0].spec,
            Some(PathSpec::ForkLocalLeg { target: owner })
        );
        let public = &p.targets[1].choices;
        assert_eq!(public.len(), 2, "both trunks of the outbound rule");
        assert!(matches!(
            public[0].spec,
            Some(PathSpec::ForkPublicLeg { .. })
        ));
        assert_eq!(public[0].legs[0].user, "1123");
        assert_eq!(p.ring_time, Some(std::time::Duration::from_secs(30)));
    }
}

#[path = "tests_bound.rs"]
mod bound;

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

#[path = "tests_bound.rs"]
mod bound;

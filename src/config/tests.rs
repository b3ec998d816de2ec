//! Unit tests of the validation rules: one small file per rule, fed to [`load`] as a string.

use std::time::Duration;

use super::did::{cross_org_overlaps, merge, parse_dids, PoolRange};
use super::model::{
    BackendErrorPolicy, CounterBackend, Destination, DidRange, ExtId, OrgId, RingTarget, TrunkId,
    TrunkKind,
};
use super::*;

/// A valid file the tests extend: one provider, organization, user, phone, trunk and pool.
const BASE: &str = r#"
[license]
sip_trunking_channels = 100

[[listen]]
address = "127.0.0.1:5060"

[[service_provider]]
name = "sp1"
limits = { public = 200 }

[[organization]]
name = "acme"
service_provider = "sp1"
domain = "acme.example"

[[user]]
name = "alice"
organization = "acme"

[[extension]]
number = "101"
user = "alice"
password = "x"

[[trunk]]
name = "carrier-a"
kind = "ip"
address = "127.0.0.1:5080"

[[did_pool]]
trunk = "carrier-a"
organization = "acme"
dids = ["2125550100-2125550199"]
"#;

fn load_with(extra: &str) -> Result<Loaded, Vec<ConfigIssue>> {
    load(&format!("{BASE}\n{extra}"))
}

/// The errors of BASE + `extra`; panics if the file is accepted.
fn errors(extra: &str) -> Vec<ConfigIssue> {
    match load_with(extra) {
        Ok(_) => panic!("file accepted, expected errors:\n{extra}"),
        Err(issues) => issues.into_iter().filter(ConfigIssue::is_error).collect(),
    }
}

/// Asserts exactly one error, about `entity`, and returns its problem.
fn one_error(extra: &str, entity: &str) -> Problem {
    let errs = errors(extra);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    assert_eq!(errs[0].entity.to_string(), entity, "{}", errs[0]);
    errs[0].problem.clone()
}

const ORG2: &str = r#"
[[organization]]
name = "globex"
service_provider = "sp1"
domain = "globex.example"
"#;

#[test]
fn base_file_is_valid_and_indexed() {
    let loaded = load(BASE).expect("base is valid");
    let s = &loaded.snapshot;
    assert!(loaded.warnings.is_empty());
    assert_eq!(s.server.reject_code, 486);
    assert_eq!(s.counters, CounterBackend::Memory);
    assert_eq!(s.listen[0].transport, model::Transport::Udp);
    assert_eq!(
        s.index.extension_by_number[&(OrgId(0), "101".to_owned())],
        ExtId(0)
    );
    assert_eq!(s.index.organization_by_domain["acme.example"], OrgId(0));
    assert_eq!(
        s.index.trunk_by_ip[&"127.0.0.1".parse().expect("ip")],
        TrunkId(0)
    );
    assert_eq!(s.trunks[0].kind, TrunkKind::Ip);
    assert_eq!(
        s.did_pools[0].ranges[0].end - s.did_pools[0].ranges[0].start,
        99
    );
}

#[test]
fn unknown_key_is_refused_with_its_location() {
    let errs = errors("[[user]]\nname = \"bob\"\norganization = \"acme\"\nlimit = 3\n");
    assert!(matches!(&errs[0].problem, Problem::Syntax(m) if m.contains("unknown field `limit`")));
    assert!(matches!(errs[0].entity, Entity::Location { column: 1, .. }));
}

#[test]
fn unknown_references_are_each_reported() {
    let errs = errors(
        r#"
[[organization]]
name = "o2"
service_provider = "nope"
domain = "o2.example"
[[user]]
name = "bob"
organization = "missing"
[[extension]]
number = "5"
user = "ghost"
password = "x"
[[outbound_rule]]
organization = "acme"
pattern = "^1"
trunks = ["no-such-trunk"]
"#,
    );
    let kinds: Vec<_> = errs
        .iter()
        .map(|e| match &e.problem {
            Problem::UnknownReference { kind, .. } => *kind,
            p => panic!("unexpected {p}"),
        })
        .collect();
    assert_eq!(kinds, ["service_provider", "organization", "user", "trunk"]);
}

#[test]
fn duplicate_names_are_refused() {
    let p = one_error(
        "[[user]]\nname = \"alice\"\norganization = \"acme\"\n",
        "user alice",
    );
    assert!(matches!(p, Problem::DuplicateName { .. }));
    let p = one_error(
        "[[trunk]]\nname = \"carrier-a\"\nkind = \"accept-register\"\nusername = \"u\"\npassword = \"p\"\n",
        "trunk carrier-a",
    );
    assert!(matches!(p, Problem::DuplicateName { .. }));
}

#[test]
fn duplicate_extension_number_in_one_organization_is_refused() {
    let p = one_error(
        "[[extension]]\nnumber = \"101\"\nuser = \"alice\"\npassword = \"y\"\n",
        "extension 101 (organization acme)",
    );
    assert!(matches!(p, Problem::DuplicateExtensionNumber { .. }));
}

#[test]
fn same_extension_number_in_two_organizations_is_fine() {
    let extra = format!(
        "{ORG2}\n[[user]]\nname = \"bob\"\norganization = \"globex\"\n\
         [[extension]]\nnumber = \"101\"\nuser = \"bob\"\npassword = \"y\"\n"
    );
    assert!(load_with(&extra).is_ok());
}

#[test]
fn duplicate_domain_is_refused_case_insensitively() {
    let p = one_error(
        "[[organization]]\nname = \"o2\"\nservice_provider = \"sp1\"\ndomain = \"ACME.example\"\n",
        "organization o2",
    );
    assert!(matches!(p, Problem::DuplicateDomain { .. }));
}

#[test]
fn did_shapes_are_checked() {
    assert!(matches!(
        parse_dids("+12125550100"),
        Err(Problem::DidPrefix(_))
    ));
    assert!(matches!(parse_dids("0212555"), Err(Problem::DidPrefix(_))));
    assert!(matches!(parse_dids("00212555"), Err(Problem::DidPrefix(_))));
    assert!(matches!(parse_dids("21a"), Err(Problem::DidNotDigits(_))));
    assert!(matches!(
        parse_dids("2999-2000"),
        Err(Problem::DidRangeReversed(_))
    ));
    assert!(matches!(
        parse_dids("200-2999"),
        Err(Problem::DidRangeDigitCount(_))
    ));
    assert_eq!(
        parse_dids("2000-2999"),
        Ok(DidRange {
            start: 2000,
            end: 2999
        })
    );
    let p = one_error(
        "[[did_pool]]\ntrunk = \"carrier-a\"\norganization = \"acme\"\ndids = [\"+4415550000\"]\n",
        "did_pool #2 (trunk carrier-a, organization acme)",
    );
    assert!(matches!(p, Problem::DidPrefix(_)));
}

#[test]
fn pools_overlapping_between_organizations_on_one_trunk_are_refused() {
    let extra = format!(
        "{ORG2}\n[[did_pool]]\ntrunk = \"carrier-a\"\norganization = \"globex\"\n\
         dids = [\"2125550190-2125550209\"]\n"
    );
    let p = one_error(&extra, "did_pool #2 (trunk carrier-a, organization globex)");
    assert!(matches!(p, Problem::PoolOverlap { ref other, .. } if other == "acme"));
}

#[test]
fn overlap_sweep_finds_a_rival_hidden_behind_the_same_organization() {
    // A[1-100] org 1, B[2-200] org 0, C[50-60] org 0: C overlaps A although the furthest end (B)
    // belongs to C's own organization.
    let r = |start, end, org, pool| PoolRange {
        trunk: TrunkId(0),
        range: DidRange { start, end },
        org: OrgId(org),
        pool,
    };
    let found = cross_org_overlaps(vec![r(1, 100, 1, 0), r(2, 200, 0, 1), r(50, 60, 0, 2)]);
    let pools: Vec<usize> = found.iter().map(|(p, _)| p.pool).collect();
    assert_eq!(pools, [1, 2]);
    let same_org = cross_org_overlaps(vec![r(1, 100, 0, 0), r(50, 60, 0, 1)]);
    assert!(same_org.is_empty());
    let other_trunk = PoolRange {
        trunk: TrunkId(1),
        ..r(1, 100, 1, 1)
    };
    assert!(cross_org_overlaps(vec![r(1, 100, 0, 0), other_trunk]).is_empty());
}

#[test]
fn merge_joins_adjacent_ranges() {
    let merged = merge(vec![
        DidRange { start: 20, end: 29 },
        DidRange { start: 10, end: 19 },
        DidRange { start: 40, end: 40 },
    ]);
    assert_eq!(
        merged,
        [
            DidRange { start: 10, end: 29 },
            DidRange { start: 40, end: 40 }
        ]
    );
}

#[test]
fn inbound_rule_outside_its_pool_is_refused() {
    let p = one_error(
        "[[inbound_rule]]\norganization = \"acme\"\ntrunk = \"carrier-a\"\n\
         dids = \"2125550150-2125550250\"\ndestination = { extension = \"101\" }\n",
        "inbound_rule #1 (organization acme)",
    );
    assert!(matches!(p, Problem::InboundOutsidePool { .. }));
}

#[test]
fn inbound_destination_must_exist_in_the_rule_organization() {
    let p = one_error(
        "[[inbound_rule]]\norganization = \"acme\"\ntrunk = \"carrier-a\"\ndids = \"2125550100\"\n\
         destination = { ring_rule = \"sales\" }\n",
        "inbound_rule #1 (organization acme)",
    );
    assert!(matches!(
        p,
        Problem::UnknownReference {
            kind: "ring_rule",
            ..
        }
    ));
    let p = one_error(
        "[[inbound_rule]]\norganization = \"acme\"\ntrunk = \"carrier-a\"\ndids = \"2125550100\"\n\
         destination = { extension = \"101\", ring_rule = \"x\" }\n",
        "inbound_rule #1 (organization acme)",
    );
    assert_eq!(p, Problem::DestinationNotExactlyOne);
}

#[test]
fn ring_rule_targets_resolve_to_extensions_or_public_numbers() {
    let ok = load_with(
        "[[ring_rule]]\nname = \"sales\"\norganization = \"acme\"\n\
         targets = [\"101\", \"12125559876\"]\n\
         [[inbound_rule]]\norganization = \"acme\"\ntrunk = \"carrier-a\"\ndids = \"2125550100\"\n\
         destination = { ring_rule = \"sales\" }\n",
    )
    .expect("valid");
    let s = ok.snapshot;
    assert_eq!(
        s.ring_rules[0].targets,
        [
            RingTarget::Extension(ExtId(0)),
            RingTarget::Public("12125559876".into())
        ]
    );
    assert_eq!(
        s.ring_rules[0].ring_time,
        std::time::Duration::from_secs(30)
    );
    assert!(matches!(
        s.inbound_rules[0].destination,
        Destination::RingRule(_)
    ));
    // Spec E3's public target: a dialled number may start with 0 (only pooled DIDs may not).
    let e3 = "[[ring_rule]]\nname = \"sales\"\norganization = \"acme\"\ntargets = [\"0804993222\", \"+4930123\"]\n";
    let loaded = load_with(e3).expect("E3's public number is a valid target");
    let rule = loaded.snapshot.ring_rules.last().expect("the rule");
    assert_eq!(
        rule.targets,
        vec![
            RingTarget::Public("0804993222".into()),
            RingTarget::Public("+4930123".into())
        ]
    );
    for bad in ["08x4", "+", "++49", ""] {
        let p = one_error(
            &format!(
                "[[ring_rule]]\nname = \"sales\"\norganization = \"acme\"\ntargets = [\"{bad}\"]\n"
            ),
            "ring_rule sales (organization acme)",
        );
        assert!(matches!(p, Problem::RingTargetUnknown(_)), "{bad:?}: {p:?}");
    }
}

#[test]
fn duplicate_ring_rule_name_in_one_organization_is_refused() {
    let rule = "[[ring_rule]]\nname = \"sales\"\norganization = \"acme\"\ntargets = [\"101\"]\n";
    let p = one_error(
        &format!("{rule}{rule}"),
        "ring_rule sales (organization acme)",
    );
    assert!(matches!(p, Problem::DuplicateName { .. }));
}

const PBX_USER_UNLIMITED: &str = r#"
[[service_provider]]
name = "open"
[[organization]]
name = "o2"
service_provider = "open"
domain = "o2.example"
[[user]]
name = "pbxuser"
organization = "o2"
[[extension]]
number = "200"
user = "pbxuser"
pbx = { address = "127.0.0.1:5090" }
"#;

#[test]
fn sip_trunking_extension_needs_a_finite_public_limit_on_its_chain() {
    let p = one_error(PBX_USER_UNLIMITED, "extension 200 (organization o2)");
    assert_eq!(p, Problem::PbxWithoutPublicLimit);
    let limited = PBX_USER_UNLIMITED.replace(
        "organization = \"o2\"\n[[ext",
        "organization = \"o2\"\nlimits = { public = 5 }\n[[ext",
    );
    assert!(load_with(&limited).is_ok());
}

#[test]
fn sip_trunking_extension_needs_a_licence() {
    let text = format!(
        "{}\n[[extension]]\nnumber = \"200\"\nuser = \"alice\"\npbx = {{ address = \"127.0.0.1:5090\" }}\n",
        BASE.replace("sip_trunking_channels = 100", "sip_trunking_channels = 0")
    );
    let errs = load(&text).expect_err("refused");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].problem, Problem::PbxNotLicensed);
}

#[test]
fn pbx_ip_shared_only_when_every_extension_authenticates() {
    let two = |auth_a: bool| {
        format!(
            "[[extension]]\nnumber = \"200\"\nuser = \"alice\"\npassword = \"p\"\n\
             pbx = {{ address = \"127.0.0.1:5090\", authenticate = {auth_a} }}\n\
             [[extension]]\nnumber = \"201\"\nuser = \"alice\"\npassword = \"p\"\n\
             pbx = {{ address = \"127.0.0.1:5091\", authenticate = true }}\n"
        )
    };
    assert!(load_with(&two(true)).is_ok());
    let p = one_error(&two(false), "extension 200 (organization acme)");
    assert!(matches!(p, Problem::SharedPbxAddressWithoutAuth { ref other, .. } if other == "201"));
}

#[test]
fn credentials_rules() {
    let ext = |body: &str| format!("[[extension]]\nnumber = \"9\"\nuser = \"alice\"\n{body}\n");
    let entity = "extension 9 (organization acme)";
    let p = one_error(
        &ext("pbx = { address = \"127.0.0.1:5099\", authenticate = true }"),
        entity,
    );
    assert_eq!(p, Problem::AuthenticateWithoutCredentials);
    let p = one_error(
        &ext("password = \"a\"\nha1 = \"0123456789abcdef0123456789abcdef\""),
        entity,
    );
    assert_eq!(p, Problem::PasswordAndHa1);
    let p = one_error(&ext("ha1 = \"xyz\""), entity);
    assert_eq!(p, Problem::InvalidHa1);
    let p = one_error(&ext(""), entity);
    assert_eq!(p, Problem::PhoneWithoutCredentials);
    assert!(load_with(&ext("ha1 = \"0123456789ABCDEF0123456789abcdef\"")).is_ok());
    let sha = "0123456789abcdef".repeat(4);
    let p = one_error(
        &ext(&format!("password = \"a\"\nha1_sha256 = \"{sha}\"")),
        entity,
    );
    assert_eq!(p, Problem::PasswordAndHa1);
    let p = one_error(
        &ext("ha1 = \"0123456789abcdef0123456789abcdef\"\nha1_sha256 = \"0123456789abcdef0123456789abcdef\""),
        entity,
    );
    assert_eq!(p, Problem::InvalidHa1Sha256, "an MD5-length value");
    let p = one_error(&ext(&format!("ha1_sha256 = \"{sha}\"")), entity);
    assert_eq!(
        p,
        Problem::Sha256HashNeverChallenged,
        "acme sends MD5 challenges only"
    );
    let both = format!(
        "ha1 = \"0123456789abcdef0123456789abcdef\"\nha1_sha256 = \"{}\"",
        sha.to_ascii_uppercase()
    );
    let loaded = load_with(&ext(&both)).expect("both hashes");
    let e = loaded.snapshot.extensions.last().expect("the extension");
    assert_eq!(
        e.credentials,
        Some(crate::config::model::Credentials::Ha1 {
            md5: Some("0123456789abcdef0123456789abcdef".into()),
            sha256: Some(sha),
        }),
        "kept lowercase"
    );
}

#[test]
fn allowed_networks_parse_and_are_at_most_a_slash_24_or_slash_64() {
    let ext = |nets: &str| {
        format!("[[extension]]\nnumber = \"9\"\nuser = \"alice\"\npassword = \"p\"\nallowed_networks = [{nets}]\n")
    };
    let entity = "extension 9 (organization acme)";
    let p = one_error(&ext("\"198.51.100.0/23\""), entity);
    assert!(matches!(p, Problem::NetworkTooWide(_)));
    let p = one_error(&ext("\"2001:db8::/48\""), entity);
    assert!(matches!(p, Problem::NetworkTooWide(_)));
    let p = one_error(&ext("\"not-a-net\""), entity);
    assert!(matches!(p, Problem::InvalidNetwork(_)));
    let ok = load_with(&ext(
        "\"198.51.100.0/24\", \"2001:db8::/64\", \"203.0.113.7\"",
    ))
    .expect("ok");
    assert_eq!(ok.snapshot.extensions[1].allowed_networks.len(), 3);
}

#[test]
fn outbound_caller_id_must_be_a_did_of_the_organization() {
    let ext = |id: &str| {
        format!("[[extension]]\nnumber = \"9\"\nuser = \"alice\"\npassword = \"p\"\noutbound_caller_id = \"{id}\"\n")
    };
    assert!(load_with(&ext("2125550142")).is_ok());
    let p = one_error(&ext("2125550200"), "extension 9 (organization acme)");
    assert!(matches!(p, Problem::CallerIdNotInPool(_)));
}

#[test]
fn max_outgoing_above_max_calls_is_only_a_warning() {
    let loaded = load_with(
        "[[extension]]\nnumber = \"9\"\nuser = \"alice\"\npassword = \"p\"\nmax_calls = 1\nmax_outgoing = 2\n",
    )
    .expect("accepted");
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].severity, Severity::Warning);
    assert!(matches!(
        loaded.warnings[0].problem,
        Problem::MaxOutgoingAboveMaxCalls { .. }
    ));
}

#[test]
fn outbound_rule_checks_regex_and_trunk_ownership() {
    let p = one_error(
        "[[outbound_rule]]\norganization = \"acme\"\npattern = \"^(1\"\ntrunks = [\"carrier-a\"]\n",
        "outbound_rule #1 (organization acme)",
    );
    assert!(matches!(p, Problem::InvalidRegex(_)));
    let extra = format!(
        "{ORG2}\n[[trunk]]\nname = \"private\"\nkind = \"accept-register\"\nusername = \"u\"\n\
         password = \"p\"\norganization = \"globex\"\n\
         [[outbound_rule]]\norganization = \"acme\"\npattern = \"^1\"\ntrunks = [\"private\"]\n"
    );
    let p = one_error(&extra, "outbound_rule #1 (organization acme)");
    assert!(matches!(p, Problem::TrunkNotShared { .. }));
}

#[test]
fn server_values_are_checked() {
    let errs = errors(
        "[server]\nname = \"n\"\nreject_code = 200\nmax_call_duration = \"4 hours\"\n\
         [admin]\naddress = \"localhost\"\n",
    );
    let problems: Vec<_> = errs.iter().map(|e| e.problem.clone()).collect();
    assert_eq!(
        problems,
        [
            Problem::RejectCodeOutOfRange(200),
            Problem::InvalidDuration("4 hours".into()),
            Problem::InvalidSocketAddress("localhost".into()),
        ]
    );
}

#[test]
fn tcp_limits_default_and_parse() {
    let s = load(BASE).expect("valid").snapshot;
    assert_eq!(s.server.tcp, model::TcpLimits::default());
    assert_eq!(s.server.tcp.idle_timeout, Duration::from_secs(600));
    let extra = "[server]\ntcp_idle_timeout = \"90s\"\ntcp_header_timeout = \"750ms\"\n\
                 max_tcp_connections = 20\n";
    let tcp = load_with(extra).expect("valid").snapshot.server.tcp;
    let want = model::TcpLimits {
        idle_timeout: Duration::from_secs(90),
        header_timeout: Duration::from_millis(750),
        max_connections: 20,
    };
    assert_eq!(tcp, want);
}

#[test]
fn tcp_limits_are_checked() {
    let errs = errors(
        "[server]\ntcp_idle_timeout = \"0s\"\ntcp_header_timeout = \"5\"\n\
         max_tcp_connections = 0\n",
    );
    let found: Vec<_> = errs.iter().map(|e| (e.field, e.problem.clone())).collect();
    assert_eq!(
        found,
        [
            ("max_tcp_connections", Problem::Zero),
            ("tcp_idle_timeout", Problem::InvalidDuration("0s".into())),
            ("tcp_header_timeout", Problem::InvalidDuration("5".into())),
        ]
    );
}

#[test]
fn no_listener_is_refused() {
    let text = BASE.replace("[[listen]]\naddress = \"127.0.0.1:5060\"\n", "");
    let errs = load(&text).expect_err("refused");
    assert_eq!(errs[0].problem, Problem::NoListener);
}

#[test]
fn trunk_kind_requirements() {
    let trunk = |kind: &str| format!("[[trunk]]\nname = \"t\"\nkind = \"{kind}\"\n");
    let count = |kind: &str| {
        errors(&trunk(kind))
            .iter()
            .filter(|e| matches!(e.problem, Problem::TrunkKindRequires { .. }))
            .map(|e| e.field)
            .collect::<Vec<_>>()
    };
    assert_eq!(count("ip"), ["address"]);
    assert_eq!(count("register"), ["address", "username", "password"]);
    assert_eq!(count("accept-register"), ["username", "password"]);
}

#[test]
fn ip_trunks_cannot_share_a_source_ip() {
    let p = one_error(
        "[[trunk]]\nname = \"b\"\nkind = \"ip\"\naddress = \"127.0.0.2:5060\"\nassociated_ips = [\"127.0.0.1\"]\n",
        "trunk b",
    );
    assert!(matches!(p, Problem::TrunkIpShared { .. }));
}

#[test]
fn redis_backend_needs_a_url() {
    let p = one_error("[counters]\nbackend = \"redis\"\n", "counters");
    assert_eq!(p, Problem::RedisWithoutUrl);
    let ok = load_with(
        "[counters]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1\"\nlease = \"500ms\"\n",
    )
    .expect("ok");
    assert!(
        matches!(ok.snapshot.counters, CounterBackend::Redis { lease, on_error: BackendErrorPolicy::Reject, ref cluster, .. } if lease.as_millis() == 500 && cluster == "callgate")
    );
    let local = load_with(
        "[counters]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1\"\non_backend_error = \"local\"\ncluster = \"east\"\n",
    )
    .expect("ok");
    assert!(matches!(
        local.snapshot.counters,
        CounterBackend::Redis { on_error: BackendErrorPolicy::Local, ref cluster, .. } if cluster == "east"
    ));
    let p = one_error(
        "[counters]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1\"\ncluster = \"a{b}\"\n",
        "counters",
    );
    assert_eq!(p, Problem::BadClusterName("a{b}".to_owned()));
}

#[test]
fn durations_need_a_unit() {
    use std::time::Duration;
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
    assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
    assert_eq!(parse_duration("4h"), Some(Duration::from_secs(14400)));
    for bad in ["30", "s", "0s", "1.5s", "-1s", "10 s", "3d", ""] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn every_error_is_collected_not_only_the_first() {
    let errs = errors(
        "[server]\nreject_code = 700\n[[user]]\nname = \"bob\"\norganization = \"nope\"\n\
         [[did_pool]]\ntrunk = \"carrier-a\"\norganization = \"acme\"\ndids = [\"0123\"]\n",
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

#[test]
fn issue_display_names_entity_field_and_rule() {
    let p = one_error(PBX_USER_UNLIMITED, "extension 200 (organization o2)");
    let issue = ConfigIssue::error(
        Entity::Extension {
            number: "200".into(),
            organization: Some("acme".into()),
        },
        "pbx",
        p,
    );
    assert_eq!(
        issue.to_string(),
        "extension 200 (organization acme): pbx: SIP trunking extension has no finite public \
         limit on its chain (user, organization or service provider)"
    );
}

#[test]
fn reload_refused_when_it_removes_a_trunk_referenced_by_a_rule() {
    let rule =
        "[[outbound_rule]]\norganization = \"acme\"\npattern = \"^1\"\ntrunks = [\"carrier-b\"]\n\
                [[trunk]]\nname = \"carrier-b\"\nkind = \"ip\"\naddress = \"127.0.0.9:5060\"\n";
    let old = load_with(rule).expect("valid").snapshot;
    let without_rule_and_trunk = load(BASE).expect("valid").snapshot;
    let issues = check_reload(&old, &without_rule_and_trunk);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].entity, Entity::Trunk("carrier-b".into()));
    assert_eq!(
        issues[0].problem,
        Problem::ReferencedTrunkRemoved { rules: 1 }
    );
    assert!(check_reload(&old, &old).is_empty());
    // carrier-a is referenced by no rule: removing it is allowed.
    assert!(check_reload(&without_rule_and_trunk, &old).is_empty());
}

#[test]
fn public_admin_address_without_a_token_is_refused() {
    for address in ["0.0.0.0:9060", "192.0.2.7:9060", "[::]:9060"] {
        let p = one_error(&format!("[admin]\naddress = \"{address}\"\n"), "admin");
        assert_eq!(
            p,
            Problem::PublicAdminWithoutToken(address.parse().expect("address"))
        );
    }
    for ok in [
        "[admin]\naddress = \"0.0.0.0:9060\"\ntoken = \"t0k\"\n",
        "[admin]\naddress = \"127.0.0.9:9060\"\n",
        "[admin]\naddress = \"[::1]:9060\"\n",
    ] {
        assert!(load_with(ok).is_ok(), "{ok}");
    }
}

/// BASE with its `[[listen]]` replaced by `listens`.
fn with_listeners(listens: &str) -> Snapshot {
    let text = BASE.replace("[[listen]]\naddress = \"127.0.0.1:5060\"\n", listens);
    load(&text).expect("valid").snapshot
}

#[test]
fn reload_refused_when_the_via_contact_address_would_change() {
    let udp = "[[listen]]\naddress = \"127.0.0.1:5060\"\n";
    let old = with_listeners(udp);
    let advertised =
        with_listeners("[[listen]]\naddress = \"127.0.0.1:5060\"\nadvertise = \"203.0.113.9\"\n");
    let issues = check_reload(&old, &advertised);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].entity, Entity::Listen(1));
    assert!(issues[0].to_string().contains("restart"), "{}", issues[0]);
    assert!(matches!(
        &issues[0].problem,
        Problem::EngineAddressChanged { transport: "udp", from, to }
            if from == "127.0.0.1:5060" && to.starts_with("203.0.113.9")
    ));
    // Moving the first UDP listener or adding the first TCP one changes what Via/Contact say.
    assert_eq!(
        check_reload(
            &old,
            &with_listeners("[[listen]]\naddress = \"127.0.0.1:5062\"\n")
        )
        .len(),
        1
    );
    let tcp = format!("{udp}[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:5060\"\n");
    let issues = check_reload(&old, &with_listeners(&tcp));
    assert!(matches!(
        &issues[..],
        [ConfigIssue { problem: Problem::EngineAddressChanged { transport: "tcp", from, .. }, .. }]
            if from == "none"
    ));
    // A second listener of a transport may come and go: the first one is what is written.
    let second = format!("{udp}[[listen]]\naddress = \"127.0.0.1:5070\"\n");
    assert!(check_reload(&old, &with_listeners(&second)).is_empty());
    assert!(check_reload(&with_listeners(&second), &old).is_empty());
}

/// Spec E1/E4/E5: five users at public 100, each with a PBX, under a provider at 200 or unlimited.
fn e4(provider_limit: &str) -> String {
    let mut t = format!(
        "[license]\nsip_trunking_channels = 300\n[[listen]]\naddress = \"127.0.0.1:5060\"\n\
         [[service_provider]]\nname = \"sp1\"\nlimits = {{ {provider_limit} }}\n\
         [[organization]]\nname = \"o\"\nservice_provider = \"sp1\"\ndomain = \"o.example\"\n"
    );
    for i in 1..=5 {
        t += &format!(
            "[[user]]\nname = \"u{i}\"\norganization = \"o\"\nlimits = {{ public = 100 }}\n\
             [[extension]]\nnumber = \"{i}\"\nuser = \"u{i}\"\npbx = {{ address = \"127.0.0.{i}:5090\" }}\n"
        );
    }
    t
}

#[test]
fn license_report_bills_the_highest_finite_level_once() {
    let r = license_report(&load(&e4("public = 200")).expect("valid").snapshot);
    assert_eq!(r.total, 200);
    assert_eq!(r.lines.len(), 1);
    assert_eq!(
        (r.lines[0].level, r.lines[0].extensions),
        (Level::ServiceProvider, 5)
    );
    assert!(!r.over);
    let r = license_report(&load(&e4("")).expect("valid").snapshot);
    assert_eq!(r.total, 500);
    assert_eq!(r.lines.len(), 5);
    assert!(r.lines.iter().all(|l| l.level == Level::User));
    assert!(r.over);
    assert!(r.to_string().contains("OVER LICENCE by 200"));
}

#[test]
fn summary_counts_entities() {
    let s = load(BASE).expect("valid").snapshot.summary();
    assert_eq!(
        s.to_string(),
        "1 service providers, 1 organizations, 1 users, 1 extensions (0 pbx), 1 trunks, \
         1 did pools, 0 rules, 1 listeners"
    );
}

#[test]
fn a_call_has_a_default_duration_cap_and_probes_unless_switched_off() {
    let loaded = load_with("").unwrap_or_else(|e| panic!("{e:?}"));
    let server = &loaded.snapshot.server;
    assert_eq!(
        server.max_call_duration,
        Some(std::time::Duration::from_secs(4 * 3600))
    );
    assert_eq!(
        server.dialog_probe_interval,
        Some(std::time::Duration::from_secs(60))
    );
    let off = "[server]\nmax_call_duration = \"none\"\ndialog_probe_interval = \"none\"\n";
    let loaded = load_with(off).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(loaded.snapshot.server.max_call_duration, None);
    assert_eq!(loaded.snapshot.server.dialog_probe_interval, None);
    let bad = errors("[server]\ndialog_probe_interval = \"often\"\n");
    assert_eq!(bad[0].problem, Problem::InvalidDuration("often".into()));
}

#[test]
fn a_trunk_is_untrusted_unless_it_says_trusted() {
    let loaded = load_with("").unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!loaded.snapshot.trunks[0].trusted);
    let trusted = BASE.replace(
        "kind = \"ip\"\naddress = \"127.0.0.1:5080\"",
        "kind = \"ip\"\naddress = \"127.0.0.1:5080\"\ntrusted = true",
    );
    let loaded = load(&trusted).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(loaded.snapshot.trunks[0].trusted);
}

const TLS_LISTEN: &str = "[[listen]]\ntransport = \"tls\"\naddress = \"127.0.0.1:5061\"\n";

#[test]
fn a_tls_listener_needs_a_certificate_and_a_key() {
    let full = format!("{TLS_LISTEN}certificate = \"/etc/callgate/cert.pem\"\nprivate_key = \"/etc/callgate/key.pem\"\n");
    let s = load_with(&full).expect("valid").snapshot;
    let tls = s.listen[1].tls.as_ref().expect("tls files kept");
    assert_eq!(s.listen[1].transport, model::Transport::Tls);
    assert_eq!(
        tls.certificate,
        std::path::Path::new("/etc/callgate/cert.pem")
    );
    assert_eq!(
        tls.private_key,
        std::path::Path::new("/etc/callgate/key.pem")
    );
    let errs = errors(TLS_LISTEN);
    let fields: Vec<_> = errs.iter().map(|e| (e.field, e.problem.clone())).collect();
    assert_eq!(
        fields,
        [
            ("certificate", Problem::TlsRequires),
            ("private_key", Problem::TlsRequires)
        ]
    );
    assert_eq!(errs[0].entity, Entity::Listen(2));
    let empty = format!("{TLS_LISTEN}certificate = \"\"\nprivate_key = \"k.pem\"\n");
    assert_eq!(one_error(&empty, "listen #2"), Problem::Empty);
}

#[test]
fn a_certificate_on_a_udp_or_tcp_listener_is_refused() {
    for transport in ["udp", "tcp"] {
        let text = format!("[[listen]]\ntransport = \"{transport}\"\naddress = \"127.0.0.1:5070\"\ncertificate = \"c.pem\"\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].field, "certificate");
        assert_eq!(errs[0].problem, Problem::TlsKeyOnPlainListener);
        assert!(
            errs[0]
                .to_string()
                .starts_with("listen #2: certificate: only"),
            "{}",
            errs[0]
        );
    }
}

#[test]
fn tcp_and_tls_cannot_share_an_address() {
    let text = format!("[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:5061\"\n{TLS_LISTEN}certificate = \"c.pem\"\nprivate_key = \"k.pem\"\n");
    assert_eq!(one_error(&text, "listen #3"), Problem::DuplicateListener);
    // Port 0 is a new port for each listener.
    let any = "[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:0\"\n[[listen]]\ntransport = \"tls\"\naddress = \"127.0.0.1:0\"\ncertificate = \"c.pem\"\nprivate_key = \"k.pem\"\n";
    assert!(load_with(any).is_ok());
}

#[test]
fn tls_towards_a_pbx_or_trunk_is_refused() {
    let pbx = "[[extension]]\nnumber = \"200\"\nuser = \"alice\"\npbx = { address = \"127.0.0.9:5061\", transport = \"tls\" }\n";
    let p = one_error(pbx, "extension 200 (organization acme)");
    assert_eq!(p, Problem::OutboundTls);
    let trunk = "[[trunk]]\nname = \"t\"\nkind = \"ip\"\naddress = \"127.0.0.8:5061\"\ntransport = \"tls\"\n";
    let errs = errors(trunk);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(
        (errs[0].field, &errs[0].problem),
        ("transport", &Problem::OutboundTls)
    );
    assert!(
        errs[0].to_string().contains("listeners only"),
        "{}",
        errs[0]
    );
}

#[test]
fn reload_takes_new_certificate_paths_but_not_a_moved_tls_listener() {
    let tls = |cert: &str, port: u16| {
        with_listeners(&format!(
            "[[listen]]\naddress = \"127.0.0.1:5060\"\n[[listen]]\ntransport = \"tls\"\naddress = \"127.0.0.1:{port}\"\ncertificate = \"{cert}\"\nprivate_key = \"k.pem\"\n"
        ))
    };
    let old = tls("a.pem", 5061);
    assert!(
        check_reload(&old, &tls("b.pem", 5061)).is_empty(),
        "a new certificate applies"
    );
    let issues = check_reload(&old, &tls("a.pem", 5062));
    assert!(matches!(
        &issues[..],
        [ConfigIssue {
            problem: Problem::EngineAddressChanged {
                transport: "tls",
                ..
            },
            ..
        }]
    ));
}

#[test]
fn a_ring_rule_owner_is_one_extension_of_its_organization_owning_one_rule() {
    let rule = |name: &str, owner: &str| {
        format!("[[ring_rule]]\nname = \"{name}\"\norganization = \"acme\"\nextension = \"{owner}\"\ntargets = [\"101\"]\n")
    };
    let loaded = load_with(&rule("mine", "101")).expect("101 owns a rule");
    let s = &loaded.snapshot;
    let owner = s
        .ring_rules
        .last()
        .and_then(|r| r.extension)
        .expect("owner");
    assert_eq!(s.extensions[owner.index()].number, "101");
    assert!(s.index.ring_rule_by_extension.contains_key(&owner));
    let p = one_error(&rule("ghost", "999"), "ring_rule ghost (organization acme)");
    assert!(matches!(p, Problem::UnknownReference { .. }), "{p:?}");
    let twice = format!("{}{}", rule("a", "101"), rule("b", "101"));
    let p = one_error(&twice, "ring_rule b (organization acme)");
    assert!(matches!(p, Problem::DuplicateName { .. }), "{p:?}");
}

const ACCEPT_REGISTER: &str = r#"
[[trunk]]
name = "gw-a"
kind = "accept-register"
username = "gw1"
password = "pw"
"#;

#[test]
fn an_accept_register_trunk_needs_no_address_and_is_indexed_by_username() {
    let loaded = load_with(ACCEPT_REGISTER).unwrap_or_else(|e| panic!("{e:#?}"));
    let s = &loaded.snapshot;
    let id = s.index.trunk_by_name["gw-a"];
    assert_eq!(s.trunks[id.index()].kind, TrunkKind::AcceptRegister);
    assert_eq!(s.trunks[id.index()].address, None);
    assert_eq!(s.index.accept_register_trunks, [id]);
    assert_eq!(s.index.accept_register_by_username.get("gw1"), Some(&id));
    assert!(
        !s.index.trunk_by_ip.values().any(|t| *t == id),
        "no fixed IP identifies it"
    );
}

#[test]
fn accept_register_trunks_cannot_share_a_username() {
    let second = ACCEPT_REGISTER.replace("gw-a", "gw-b");
    let p = one_error(&format!("{ACCEPT_REGISTER}{second}"), "trunk gw-b");
    assert_eq!(
        p,
        Problem::TrunkUsernameShared {
            username: "gw1".into(),
            other: "gw-a".into(),
        }
    );
    assert!(p.to_string().contains("gw-a"), "{p}");
}

#[test]
fn an_accept_register_username_may_equal_an_extension_number_or_a_register_trunk_username() {
    // An extension's REGISTER names its organization's domain, a gateway's any other host; a
    // `register` trunk's username is ours at the provider, never a REGISTER to callgate.
    let same = ACCEPT_REGISTER.replace("\"gw1\"", "\"101\"");
    let register = "[[trunk]]\nname = \"out\"\nkind = \"register\"\naddress = \"127.0.0.9:5060\"\nusername = \"101\"\npassword = \"p\"\n";
    load_with(&format!("{same}{register}")).unwrap_or_else(|e| panic!("{e:#?}"));
}

#[test]
fn an_accept_register_trunk_without_credentials_is_refused_naming_it() {
    let errs = errors("[[trunk]]\nname = \"gw-x\"\nkind = \"accept-register\"\nusername = \"\"\n");
    let fields: Vec<_> = errs
        .iter()
        .map(|e| (e.entity.to_string(), e.field))
        .collect();
    assert_eq!(
        fields,
        [
            ("trunk gw-x".to_owned(), "username"),
            ("trunk gw-x".to_owned(), "password")
        ]
    );
}

const REGISTER_TRUNK: &str = "[[trunk]]\nname = \"reg\"\nkind = \"register\"\naddress = \"127.0.0.1:5090\"\nusername = \"u\"\npassword = \"p\"\n";

#[test]
fn trunk_probe_keys_load_with_their_default() {
    let loaded = load_with(&format!(
        "{REGISTER_TRUNK}probe_interval = \"200ms\"\nregister_retry = \"2s\"\n"
    ))
    .expect("valid");
    let t = &loaded.snapshot.trunks[1];
    let probe = t.probe.expect("probed");
    assert_eq!(probe.interval, Duration::from_millis(200));
    assert_eq!(probe.misses, 3, "default probe_misses");
    assert_eq!(t.register_retry, Some(Duration::from_secs(2)));
    assert_eq!(
        loaded.snapshot.trunks[0].probe, None,
        "absent: never probed"
    );
}

#[test]
fn an_accept_register_username_must_be_writable_in_a_sip_user_part() {
    for bad in ["gw 1", "gw@x", "gw\\\"1", "g%41", "gw;x"] {
        let cfg = ACCEPT_REGISTER.replace("\"gw1\"", &format!("\"{bad}\""));
        let p = one_error(&cfg, "trunk gw-a");
        assert!(
            matches!(p, Problem::TrunkUsernameNotUserPart { .. }),
            "{bad}: {p}"
        );
    }
    let fine = ACCEPT_REGISTER.replace("\"gw1\"", "\"Gw-1.main_x+y\"");
    load_with(&fine).unwrap_or_else(|e| panic!("{e:#?}"));
}

#[test]
fn trunk_probe_keys_are_checked() {
    let p = one_error(
        "[[trunk]]\nname = \"t\"\nkind = \"ip\"\naddress = \"127.0.0.9:5060\"\nprobe_misses = 2\n",
        "trunk t",
    );
    assert_eq!(p, Problem::ProbeMissesWithoutInterval);
    let p = one_error(
        "[[trunk]]\nname = \"t\"\nkind = \"ip\"\naddress = \"127.0.0.9:5060\"\nprobe_interval = \"1s\"\nprobe_misses = 0\n",
        "trunk t",
    );
    assert_eq!(p, Problem::Zero);
    let p = one_error(
        "[[trunk]]\nname = \"t\"\nkind = \"accept-register\"\nusername = \"u\"\npassword = \"p\"\nprobe_interval = \"1s\"\n",
        "trunk t",
    );
    assert_eq!(p, Problem::ProbeWithoutAddress);
    let p = one_error(
        "[[trunk]]\nname = \"t\"\nkind = \"ip\"\naddress = \"127.0.0.9:5060\"\nprobe_interval = \"soon\"\n",
        "trunk t",
    );
    assert_eq!(p, Problem::InvalidDuration("soon".into()));
    let p = one_error(
        "[[trunk]]\nname = \"t\"\nkind = \"ip\"\naddress = \"127.0.0.9:5060\"\nregister_retry = \"5s\"\n",
        "trunk t",
    );
    assert_eq!(p, Problem::RegisterRetryWithoutRegister);
}

/// BASE with `cps` on its provider, organization and trunk, and a `[server]` table.
fn with_cps(sp: &str, org: &str, trunk: &str, server: &str) -> String {
    BASE.replace(
        "limits = { public = 200 }",
        &format!("limits = {{ public = 200 }}\ncps = {sp}"),
    )
    .replace(
        "domain = \"acme.example\"",
        &format!("domain = \"acme.example\"\ncps = {org}"),
    )
    .replace(
        "address = \"127.0.0.1:5080\"",
        &format!("address = \"127.0.0.1:5080\"\ncps = {trunk}"),
    ) + &format!("\n[server]\ncps = {server}\n")
}

#[test]
fn cps_is_read_on_server_provider_organization_and_trunk() {
    let loaded = load(&with_cps("30", "10", "5", "100")).expect("valid");
    let s = &loaded.snapshot;
    assert_eq!(s.server.cps, Some(100));
    assert_eq!(s.service_providers[0].cps, Some(30));
    assert_eq!(s.organizations[0].cps, Some(10));
    assert_eq!(s.trunks[0].cps, Some(5));
    assert!(loaded.warnings.is_empty());
    let base = load(BASE).expect("valid").snapshot;
    assert_eq!(base.server.cps, None, "absent is unlimited");
    assert_eq!(base.trunks[0].cps, None);
    assert_eq!(base.organizations[0].cps, None);
}

#[test]
fn cps_zero_is_accepted_and_means_no_new_calls() {
    let s = load(&with_cps("0", "0", "0", "0"))
        .expect("0 like a limit of 0")
        .snapshot;
    assert_eq!(s.trunks[0].cps, Some(0));
    assert_eq!(s.server.cps, Some(0));
}

#[test]
fn cps_above_a_million_is_refused_naming_each_entity() {
    let errs = match load(&with_cps("1000001", "2000000", "1000001", "4294967295")) {
        Ok(_) => panic!("accepted"),
        Err(issues) => issues,
    };
    let named: Vec<String> = errs.iter().map(|e| e.entity.to_string()).collect();
    assert_eq!(
        named,
        [
            "server",
            "service_provider sp1",
            "organization acme",
            "trunk carrier-a"
        ]
    );
    assert!(errs.iter().all(|e| e.field == "cps"));
    assert_eq!(errs[3].problem, Problem::CpsOutOfRange(1_000_001));
    assert_eq!(
        errs[3].to_string(),
        "trunk carrier-a: cps: 1000001 calls per second: at most 1000000 (0 = no new calls, \
         absent = unlimited)"
    );
    assert!(load(&with_cps("1000000", "1", "1", "1")).is_ok());
}

#[test]
fn cps_must_be_a_whole_number_and_is_not_a_user_key() {
    assert!(load(&with_cps("-1", "1", "1", "1")).is_err());
    assert!(load(&with_cps("2.5", "1", "1", "1")).is_err());
    let errs = errors("[[user]]\nname = \"bob\"\norganization = \"acme\"\ncps = 3\n");
    assert!(errs[0].to_string().contains("cps"), "{}", errs[0]);
}

#[test]
fn reload_refused_when_it_moves_the_counters_but_not_for_the_backend_error_policy() {
    let redis = |url: &str, policy: &str| {
        load_with(&format!(
            "[counters]\nbackend = \"redis\"\nredis_url = \"{url}\"\non_backend_error = \"{policy}\"\n"
        ))
        .expect("valid")
        .snapshot
    };
    let memory = load(BASE).expect("valid").snapshot;
    let a = redis("redis://10.0.0.5", "reject");
    assert!(check_reload(&a, &redis("redis://10.0.0.5", "local")).is_empty());
    for new in [&memory, &redis("redis://10.0.0.6", "reject")] {
        let issues = check_reload(&a, new);
        assert_eq!(issues.len(), 1, "{issues:#?}");
        assert_eq!(issues[0].entity, Entity::Counters);
        assert!(
            issues[0].to_string().contains("only at restart"),
            "{}",
            issues[0]
        );
    }
    assert_eq!(check_reload(&memory, &a).len(), 1);
    assert!(check_reload(&memory, &memory).is_empty());
}

//! `callgate check-config` through the built binary: one small invalid file per validation rule,
//! each refused with exit 1 and a line naming the entity and the rule.

use std::process::Command;

/// A valid file the cases extend.
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

/// Runs `check-config` on `text`; returns (exit code, stdout + stderr).
fn check_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("callgate.toml");
    std::fs::write(&path, text).expect("write config");
    check_config_path(&path)
}

fn check_config_path(path: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .expect("run callgate");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().expect("exit code"), text)
}

/// Line number of the first line appended to BASE by [`assert_refused`].
fn first_extra_line() -> usize {
    BASE.matches('\n').count() + 2
}

/// Asserts BASE + `extra` is refused (exit 1) with an error line holding every needle.
fn assert_refused(extra: &str, needles: &[&str]) {
    let (code, out) = check_config(&format!("{BASE}\n{extra}"));
    assert_eq!(code, 1, "expected exit 1, got {code}:\n{out}");
    let hit = out
        .lines()
        .any(|l| l.starts_with("error: ") && needles.iter().all(|n| l.contains(n)));
    assert!(hit, "no error line with {needles:?} in:\n{out}");
}

#[test]
fn example_config_passes_with_a_summary() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/callgate.toml");
    let (code, out) = check_config_path(&path);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("configuration ok: 2 service providers, 3 organizations"),
        "{out}"
    );
    assert!(out.contains("(1 pbx), 2 trunks"), "{out}");
}

#[test]
fn unknown_key_is_refused() {
    // The unknown key is the 4th line of the extra text.
    let line = format!("line {} column 1", first_extra_line() + 3);
    assert_refused(
        "[[user]]\nname = \"bob\"\norganization = \"acme\"\nlimts = { public = 1 }\n",
        &[&line, "unknown field `limts`"],
    );
}

#[test]
fn syntax_error_is_refused_with_its_line() {
    let line = format!("line {} column", first_extra_line());
    assert_refused("[[user]\nname = \"bob\"\n", &[&line, "expected"]);
}

#[test]
fn three_errors_are_all_reported() {
    let (code, out) = check_config(&format!(
        "{BASE}\n[server]\nreject_code = 700\n[[user]]\nname = \"bob\"\norganization = \"nope\"\n\
         [[did_pool]]\ntrunk = \"carrier-a\"\norganization = \"acme\"\ndids = [\"0123\"]\n"
    ));
    assert_eq!(code, 1);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("error: ")).count(),
        3,
        "{out}"
    );
    assert!(
        out.contains("server: reject_code: reject code 700 is not in 400..=699"),
        "{out}"
    );
    assert!(
        out.contains("user bob: organization: refers to unknown organization `nope`"),
        "{out}"
    );
    assert!(
        out.contains("must not start with `+`, `0` or `00`"),
        "{out}"
    );
    assert!(out.contains("configuration invalid: 3 error(s)"), "{out}");
}

#[test]
fn missing_file_exits_1() {
    let (code, out) = check_config_path(std::path::Path::new("/nonexistent/callgate.toml"));
    assert_eq!(code, 1);
    assert!(
        out.contains("cannot read /nonexistent/callgate.toml"),
        "{out}"
    );
}

#[test]
fn warning_is_printed_but_accepted() {
    let (code, out) = check_config(&format!(
        "{BASE}\n[[extension]]\nnumber = \"9\"\nuser = \"alice\"\npassword = \"p\"\nmax_calls = 1\nmax_outgoing = 3\n"
    ));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "warning: extension 9 (organization acme): max_outgoing: max_outgoing 3 > max_calls 1"
        ),
        "{out}"
    );
}

#[test]
fn usage_error_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .args(["check-config", "--no-such-flag"])
        .output()
        .expect("run callgate");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_organization_of_user() {
    assert_refused(
        "[[user]]\nname = \"bob\"\norganization = \"nope\"\n",
        &["user bob", "refers to unknown organization `nope`"],
    );
}

#[test]
fn unknown_trunk_of_outbound_rule() {
    assert_refused(
        "[[outbound_rule]]\norganization = \"acme\"\npattern = \"^1\"\ntrunks = [\"gone\"]\n",
        &[
            "outbound_rule #1 (organization acme)",
            "trunks",
            "unknown trunk `gone`",
        ],
    );
}

#[test]
fn duplicate_service_provider_name() {
    assert_refused(
        "[[service_provider]]\nname = \"sp1\"\n",
        &["service_provider sp1", "duplicate name `sp1`"],
    );
}

#[test]
fn duplicate_extension_number() {
    assert_refused(
        "[[extension]]\nnumber = \"101\"\nuser = \"alice\"\npassword = \"y\"\n",
        &[
            "extension 101 (organization acme)",
            "duplicate extension number",
        ],
    );
}

#[test]
fn duplicate_domain() {
    assert_refused(
        "[[organization]]\nname = \"o2\"\nservice_provider = \"sp1\"\ndomain = \"acme.example\"\n",
        &["organization o2", "already the domain of organization acme"],
    );
}

#[test]
fn did_with_plus() {
    assert_refused(
        "[[did_pool]]\ntrunk = \"carrier-a\"\norganization = \"acme\"\ndids = [\"+12125550300\"]\n",
        &[
            "did_pool #2 (trunk carrier-a, organization acme)",
            "must not start with `+`",
        ],
    );
}

#[test]
fn did_range_reversed() {
    assert_refused(
        "[[did_pool]]\ntrunk = \"carrier-a\"\norganization = \"acme\"\ndids = [\"2999-2000\"]\n",
        &["did_pool #2", "starts after it ends"],
    );
}

#[test]
fn did_range_with_different_digit_counts() {
    assert_refused(
        "[[did_pool]]\ntrunk = \"carrier-a\"\norganization = \"acme\"\ndids = [\"200-2999\"]\n",
        &["did_pool #2", "different digit counts"],
    );
}

#[test]
fn pools_overlap_between_organizations() {
    assert_refused(
        "[[organization]]\nname = \"globex\"\nservice_provider = \"sp1\"\ndomain = \"g.example\"\n\
         [[did_pool]]\ntrunk = \"carrier-a\"\norganization = \"globex\"\ndids = [\"2125550150\"]\n",
        &[
            "did_pool #2 (trunk carrier-a, organization globex)",
            "overlap the pool of organization acme",
        ],
    );
}

#[test]
fn inbound_rule_outside_pool() {
    assert_refused(
        "[[inbound_rule]]\norganization = \"acme\"\ntrunk = \"carrier-a\"\ndids = \"2125550300\"\n\
         destination = { extension = \"101\" }\n",
        &[
            "inbound_rule #1 (organization acme)",
            "not inside the organization's pool on trunk carrier-a",
        ],
    );
}

#[test]
fn inbound_rule_to_unknown_extension() {
    assert_refused(
        "[[inbound_rule]]\norganization = \"acme\"\ntrunk = \"carrier-a\"\ndids = \"2125550100\"\n\
         destination = { extension = \"999\" }\n",
        &[
            "inbound_rule #1 (organization acme)",
            "unknown extension `999`",
        ],
    );
}

#[test]
fn ring_rule_target_neither_extension_nor_public() {
    assert_refused(
        "[[ring_rule]]\nname = \"sales\"\norganization = \"acme\"\ntargets = [\"101\", \"desk-4\"]\n",
        &["ring_rule sales (organization acme)", "target `desk-4` is neither"],
    );
}

#[test]
fn pbx_without_finite_public_limit() {
    assert_refused(
        "[[service_provider]]\nname = \"open\"\n[[organization]]\nname = \"o2\"\n\
         service_provider = \"open\"\ndomain = \"o2.example\"\n[[user]]\nname = \"p\"\n\
         organization = \"o2\"\n[[extension]]\nnumber = \"200\"\nuser = \"p\"\n\
         pbx = { address = \"127.0.0.1:5090\" }\n",
        &[
            "extension 200 (organization o2): pbx: SIP trunking extension has no finite public limit \
             on its chain (user, organization or service provider)",
        ],
    );
}

#[test]
fn pbx_without_licence() {
    let (code, out) = check_config(&format!(
        "{}\n[[extension]]\nnumber = \"200\"\nuser = \"alice\"\npbx = {{ address = \"127.0.0.1:5090\" }}\n",
        BASE.replace("sip_trunking_channels = 100", "sip_trunking_channels = 0")
    ));
    assert_eq!(code, 1);
    assert!(out.contains("extension 200 (organization acme): pbx: SIP trunking extension but the licence allows none"), "{out}");
}

#[test]
fn pbx_sharing_an_ip_without_authentication() {
    assert_refused(
        "[[extension]]\nnumber = \"200\"\nuser = \"alice\"\npbx = { address = \"127.0.0.1:5090\" }\n\
         [[extension]]\nnumber = \"201\"\nuser = \"alice\"\npassword = \"p\"\n\
         pbx = { address = \"127.0.0.1:5091\", authenticate = true }\n",
        &["extension 200 (organization acme)", "shared with extension 201"],
    );
}

#[test]
fn pbx_authenticate_without_password() {
    assert_refused(
        "[[extension]]\nnumber = \"200\"\nuser = \"alice\"\npbx = { address = \"127.0.0.1:5090\", authenticate = true }\n",
        &["extension 200 (organization acme)", "authenticate = true needs a `password` or `ha1`"],
    );
}

#[test]
fn allowed_network_wider_than_24() {
    assert_refused(
        "[[extension]]\nnumber = \"9\"\nuser = \"alice\"\npassword = \"p\"\nallowed_networks = [\"10.0.0.0/16\"]\n",
        &["extension 9 (organization acme)", "allowed_networks", "wider than /24"],
    );
}

#[test]
fn outbound_caller_id_outside_pools() {
    assert_refused(
        "[[extension]]\nnumber = \"9\"\nuser = \"alice\"\npassword = \"p\"\noutbound_caller_id = \"3125550100\"\n",
        &["extension 9 (organization acme)", "outbound caller ID `3125550100` is not a DID"],
    );
}

#[test]
fn invalid_regex() {
    assert_refused(
        "[[outbound_rule]]\norganization = \"acme\"\npattern = \"[0-9\"\ntrunks = [\"carrier-a\"]\n",
        &["outbound_rule #1 (organization acme)", "pattern", "invalid regular expression"],
    );
}

#[test]
fn invalid_duration() {
    assert_refused(
        "[server]\nmax_call_duration = \"4\"\n",
        &["server: max_call_duration", "is not a duration"],
    );
}

#[test]
fn reject_code_out_of_range() {
    assert_refused(
        "[server]\nreject_code = 302\n",
        &["server: reject_code", "302 is not in 400..=699"],
    );
}

#[test]
fn workers_out_of_range() {
    assert_refused(
        "[server]\nworkers = 0\n",
        &[
            "server: workers",
            "0 workers: between 1 and 256 engine shards",
        ],
    );
    assert_refused(
        "[server]\nworkers = 257\n",
        &["server: workers", "257 workers"],
    );
}

#[test]
fn no_listener() {
    let (code, out) = check_config(&BASE.replace("[[listen]]\naddress = \"127.0.0.1:5060\"\n", ""));
    assert_eq!(code, 1);
    assert!(
        out.contains("error: listen: at least one [[listen]] entry is required"),
        "{out}"
    );
}

#[test]
fn invalid_socket_address() {
    assert_refused(
        "[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1\"\n",
        &["listen #2: address", "not an IP:port address"],
    );
}

#[test]
fn register_trunk_without_credentials() {
    assert_refused(
        "[[trunk]]\nname = \"reg\"\nkind = \"register\"\naddress = \"127.0.0.7:5060\"\n",
        &[
            "trunk reg: username",
            "required for a trunk of kind `register`",
        ],
    );
}

#[test]
fn redis_without_url() {
    assert_refused(
        "[counters]\nbackend = \"redis\"\n",
        &["counters: redis_url", "needs `redis_url`"],
    );
}

#[test]
fn password_and_ha1_both_set() {
    assert_refused(
        "[[extension]]\nnumber = \"9\"\nuser = \"alice\"\npassword = \"p\"\nha1 = \"0123456789abcdef0123456789abcdef\"\n",
        &["extension 9 (organization acme): ha1", "exclusive"],
    );
}

#[test]
fn ha1_not_hex() {
    assert_refused(
        "[[extension]]\nnumber = \"9\"\nuser = \"alice\"\nha1 = \"md5-of-something\"\n",
        &[
            "extension 9 (organization acme): ha1",
            "32 hexadecimal characters",
        ],
    );
}

#[test]
fn trunk_owned_by_another_organization() {
    assert_refused(
        "[[organization]]\nname = \"globex\"\nservice_provider = \"sp1\"\ndomain = \"g.example\"\n\
         [[trunk]]\nname = \"mine\"\nkind = \"accept-register\"\nusername = \"u\"\npassword = \"p\"\n\
         organization = \"globex\"\n\
         [[did_pool]]\ntrunk = \"mine\"\norganization = \"acme\"\ndids = [\"5551000\"]\n",
        &["did_pool #2 (trunk mine, organization acme)", "owned by organization globex"],
    );
}

#[test]
fn a_tls_listener_whose_certificate_cannot_be_read_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let listener = format!(
        "[[listen]]\ntransport = \"tls\"\naddress = \"127.0.0.1:5061\"\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let text = format!("{BASE}\n{listener}");
    // Missing files: what a start would fail on, reported before it.
    let (code, out) = check_config(&text);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tls listener 127.0.0.1:5061"), "{out}");
    assert!(out.contains("cert.pem"), "names the file: {out}");
    // Files that are there but hold no certificate.
    std::fs::write(&cert, "not a certificate").expect("write");
    std::fs::write(&key, "not a key").expect("write");
    let (code, out) = check_config(&text);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tls listener"), "{out}");
    // A real pair passes.
    let made = rcgen::generate_simple_self_signed(vec!["callgate.test".to_owned()])
        .expect("a self-signed certificate");
    std::fs::write(&cert, made.cert.pem()).expect("write");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write");
    let (code, out) = check_config(&text);
    assert_eq!(code, 0, "{out}");
}

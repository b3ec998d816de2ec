//! A provider's gateway registering to an `accept-register` trunk: the phones' digest, nonce and
//! brute-force rules with the trunk's credentials; the binding under the trunk's AoR.

use super::*;

/// [`CFG`] with the phone extension 101 and the `accept-register` trunk `gw` (user `gw1`,
/// password `tpw`).
fn trunk_cfg() -> String {
    format!(
        "{}\n[[trunk]]\nname = \"gw\"\nkind = \"accept-register\"\nusername = \"gw1\"\npassword = \"tpw\"\n",
        phone_cfg("")
    )
}

/// [`trunk_cfg`] where the outbound rule tries `gw` before `carrier`, and DID 3125550100 on
/// `gw` goes to the PBX extension 200.
fn routed_cfg() -> String {
    trunk_cfg().replace("trunks = [\"carrier\"]", "trunks = [\"gw\", \"carrier\"]")
        + "[[did_pool]]\ntrunk = \"gw\"\norganization = \"acme\"\ndids = [\"3125550100\"]\n\
           [[inbound_rule]]\norganization = \"acme\"\ntrunk = \"gw\"\ndids = \"3125550100\"\n\
           destination = { extension = \"200\" }\n"
}

/// Registers the gateway from [`GW`] over UDP with contact `gw1@GW`.
fn register_gateway(r: &mut Rig) {
    let sent = r.feed(register("gw1", "127.0.0.1", GW, 1, 600, ""), GW);
    let auth = answer("gw1", "127.0.0.1", "tpw", &nonce_of(&sent[0].1));
    let sent = r.feed(register("gw1", "127.0.0.1", GW, 2, 600, &auth), GW);
    assert_eq!(status_of(&sent[0].1), Some(200));
}

/// A REGISTER of `user@host` from `from` with `expires` and `auth` header lines (or none).
fn register(user: &str, host: &str, from: &str, cseq: u32, expires: u32, auth: &str) -> Bytes {
    Bytes::from(format!(
        "REGISTER sip:{host} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKgw{cseq}\r\nFrom: <sip:{user}@{host}>;tag=g1\r\nTo: <sip:{user}@{host}>\r\nCall-ID: gw-reg\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{from}>\r\nExpires: {expires}\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// The MD5 `Authorization` line of `user` with `password` for `realm`, answering `nonce`.
fn answer(user: &str, realm: &str, password: &str, nonce: &str) -> String {
    use md5::Digest;
    let hex = |text: String| -> String {
        md5::Md5::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let uri = format!("sip:{realm}");
    let ha1 = hex(format!("{user}:{realm}:{password}"));
    let ha2 = hex(format!("REGISTER:{uri}"));
    let response = hex(format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"c0ffee\", nc=00000001, qop=auth\r\n"
    )
}

const GW: &str = "203.0.113.5:5060";

fn trunk_aor() -> crate::registrar::Aor {
    crate::registrar::Aor::trunk("gw")
}

#[test]
fn a_gateway_registers_with_the_trunk_credentials_and_unregisters() {
    let mut r = rig_with(&trunk_cfg());
    let sent = r.feed(register("gw1", "127.0.0.1", GW, 1, 600, ""), GW);
    assert_eq!(status_of(&sent[0].1), Some(401));
    let text = String::from_utf8_lossy(&sent[0].1).into_owned();
    assert!(text.contains("realm=\"127.0.0.1\""), "{text}");
    assert!(
        !text.contains("SHA-256"),
        "MD5 only outside organizations: {text}"
    );
    let auth = answer("gw1", "127.0.0.1", "tpw", &nonce_of(&sent[0].1));
    let sent = r.feed(register("gw1", "127.0.0.1", GW, 2, 600, &auth), GW);
    assert_eq!(status_of(&sent[0].1), Some(200));
    let store = r.engine.shared().location.clone();
    let bound = store.lookup(&trunk_aor(), r.now);
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].flow.source.to_string(), GW);
    assert_eq!(bound[0].expires_at, r.now + Duration::from_secs(600));

    let sent = r.feed(register("gw1", "127.0.0.1", GW, 3, 0, ""), GW);
    let auth = answer("gw1", "127.0.0.1", "tpw", &nonce_of(&sent[0].1));
    let sent = r.feed(register("gw1", "127.0.0.1", GW, 4, 0, &auth), GW);
    assert_eq!(status_of(&sent[0].1), Some(200));
    assert!(store.lookup(&trunk_aor(), r.now).is_empty(), "Expires: 0");
    assert!(store.is_empty());
}

#[test]
fn a_wrong_trunk_password_is_refused_counted_and_binds_nothing() {
    let mut r = rig_with(&trunk_cfg());
    for cseq in [1, 3] {
        let sent = r.feed(register("gw1", "callgate.example", GW, cseq, 600, ""), GW);
        let auth = answer("gw1", "callgate.example", "wrong", &nonce_of(&sent[0].1));
        let sent = r.feed(
            register("gw1", "callgate.example", GW, cseq + 1, 600, &auth),
            GW,
        );
        assert_eq!(status_of(&sent[0].1), Some(403));
    }
    assert!(r.engine.shared().location.is_empty());
    let text = r.metrics.encode(Vec::new()).unwrap_or_default();
    assert!(text.contains("callgate_auth_failures_total 2\n"), "{text}");
}

#[test]
fn the_trunk_password_does_not_register_an_extension_nor_the_reverse() {
    let mut r = rig_with(&trunk_cfg());
    // gw1 at an organization's domain is an (unknown) extension: the trunk's password fails.
    let sent = r.feed(register("gw1", "acme.example", GW, 1, 600, ""), GW);
    let auth = answer("gw1", "acme.example", "tpw", &nonce_of(&sent[0].1));
    let sent = r.feed(register("gw1", "acme.example", GW, 2, 600, &auth), GW);
    assert_eq!(status_of(&sent[0].1), Some(403));
    // 101's credentials at a host that is no organization's are no trunk's.
    let sent = r.feed(register("101", "127.0.0.1", GW, 3, 600, ""), GW);
    let auth = answer("101", "127.0.0.1", "pw", &nonce_of(&sent[0].1));
    let sent = r.feed(register("101", "127.0.0.1", GW, 4, 600, &auth), GW);
    assert_eq!(status_of(&sent[0].1), Some(403));
    assert!(r.engine.shared().location.is_empty());
}

#[test]
fn a_replayed_gateway_register_is_challenged_stale_not_counted() {
    let mut r = rig_with(&trunk_cfg());
    let sent = r.feed(register("gw1", "127.0.0.1", GW, 1, 600, ""), GW);
    let auth = answer("gw1", "127.0.0.1", "tpw", &nonce_of(&sent[0].1));
    let sent = r.feed(register("gw1", "127.0.0.1", GW, 2, 600, &auth), GW);
    assert_eq!(status_of(&sent[0].1), Some(200));
    let sent = r.feed(register("gw1", "127.0.0.1", GW, 2, 600, &auth), GW);
    assert_eq!(status_of(&sent[0].1), Some(401));
    assert!(String::from_utf8_lossy(&sent[0].1).contains("stale=true"));
    let text = r.metrics.encode(Vec::new()).unwrap_or_default();
    assert!(text.contains("callgate_auth_failures_total 0\n"), "{text}");
}

#[test]
fn a_gateway_tcp_binding_dies_with_its_connection() {
    let mut r = rig_with(&trunk_cfg());
    let gw: std::net::SocketAddr = GW.parse().expect("address");
    let tcp = crate::b2bua::Dest {
        transport: Transport::Tcp,
        addr: gw,
    };
    let sent = {
        r.engine
            .on_received(r.now, register("gw1", "127.0.0.1", GW, 1, 600, ""), tcp);
        r.take()
    };
    let auth = answer("gw1", "127.0.0.1", "tpw", &nonce_of(&sent[0].1));
    r.engine
        .on_received(r.now, register("gw1", "127.0.0.1", GW, 2, 600, &auth), tcp);
    let sent = r.take();
    assert_eq!(status_of(&sent[0].1), Some(200));
    let store = r.engine.shared().location.clone();
    assert_eq!(
        store.lookup(&trunk_aor(), r.now)[0].flow.transport,
        Transport::Tcp
    );
    r.engine.on_closed(r.now, tcp, r.now);
    assert!(store.is_empty(), "gone with its connection");
}

#[test]
fn an_outbound_call_goes_to_the_bound_gateway_else_to_the_next_trunk() {
    let mut r = rig_with(&routed_cfg());
    let sent = r.feed(invite("out-1", PBX), PBX);
    let fallback = b_invite_to(&sent, udp(TRUNK));
    assert!(fallback
        .uri_str()
        .starts_with("sip:3125559999@127.0.0.1:5080"));
    register_gateway(&mut r);
    let sent = r.feed(invite("out-2", PBX), PBX);
    let b = b_invite_to(&sent, udp(GW));
    assert_eq!(
        b.uri_str(),
        format!("sip:3125559999@{GW}"),
        "the number at the contact"
    );
}

#[test]
fn an_invite_from_the_bound_gateway_is_inbound_from_its_trunk() {
    let mut r = rig_with(&routed_cfg());
    let did = |call_id: &str| {
        Bytes::from(
            String::from_utf8_lossy(&invite(call_id, GW)).replace("3125559999", "3125550100"),
        )
    };
    let sent = r.feed(did("in-1"), GW);
    assert_eq!(
        status_of(&sent[0].1),
        Some(403),
        "unbound: an unknown source"
    );
    register_gateway(&mut r);
    let other_port = "203.0.113.5:40000";
    let sent = r.feed(did("in-2"), other_port);
    let b = b_invite_to(&sent, udp(PBX));
    assert!(
        b.uri_str().starts_with("sip:3125550100@"),
        "{}",
        b.uri_str()
    );
}

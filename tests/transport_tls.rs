//! TLS end to end (issue 16): a phone registers over TLS with digest and a `sips:` contact, is
//! called over that same connection from a PBX (SIPp over UDP), answers, gets the ACK and the
//! BYE; and a reload with a new certificate keeps the connections that are open while new
//! handshakes present the new certificate (a bad one is refused and changes nothing).
//!
//! The certificates are self-signed ones made by the test (rcgen); the phone is a tokio-rustls
//! client that trusts exactly the certificate it is given.
//!
//! Each test owns the loopback network `127.<n>.0.0/24` of its `Net(n)`: n = 150..=154 here.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use callgate::config::model::Transport;
use md5::{Digest, Md5};
use support::{config, Harness, Net, Sipp, SippOpts, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// The name the test certificates are issued to (and the phone checks).
const SERVER_NAME: &str = "callgate.test";

/// A self-signed certificate for [`SERVER_NAME`] and its key, as PEM, and the certificate's DER.
struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCert {
    fn new() -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .expect("rcgen makes a self-signed certificate");
        TestCert {
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
            der: made.cert.der().clone(),
        }
    }

    /// Writes the pair over `cert.pem` and `key.pem` in `dir`.
    fn write(&self, dir: &Path) {
        std::fs::write(dir.join("cert.pem"), &self.cert_pem).expect("write certificate");
        std::fs::write(dir.join("key.pem"), &self.key_pem).expect("write key");
    }
}

/// [`support::config`] with a TLS listener on `127.0.0.1:0` reading `dir`'s `cert.pem` and
/// `key.pem`, and the tenancy of `tests/phones.rs` (PBX extension 200, phone 101 "pw101").
fn tls_config(dir: &Path, pbx: SocketAddr, trunk: SocketAddr) -> String {
    let tenancy = support::acme(pbx, "udp", trunk).replace(
        "[[trunk]]",
        "[[extension]]\nnumber = \"101\"\nuser = \"alice\"\npassword = \"pw101\"\n\n[[trunk]]",
    );
    let listen = format!(
        "[[listen]]\ntransport = \"tls\"\naddress = \"127.0.0.1:0\"\ncertificate = \"{}\"\nprivate_key = \"{}\"\n\n[admin]",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    config(&tenancy).replacen("[admin]", &listen, 1)
}

/// The daemon's TLS listener.
fn tls_addr(h: &Harness) -> SocketAddr {
    h.daemon
        .bound()
        .into_iter()
        .find(|(t, _)| *t == Transport::Tls)
        .map(|(_, a)| a)
        .expect("a TLS listener is bound")
}

/// A SIP phone over one TLS connection, bound to its own loopback address.
struct Phone {
    stream: TlsStream<TcpStream>,
    /// Its address as callgate sees it.
    me: SocketAddr,
    buf: Vec<u8>,
}

impl Phone {
    /// Connects from `from` (port chosen by the kernel) to `gw`, trusting only `trusted`.
    async fn connect(
        from: std::net::IpAddr,
        gw: SocketAddr,
        trusted: &CertificateDer<'static>,
    ) -> Result<Phone, std::io::Error> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        let tcp = socket.connect(gw).await?;
        let me = tcp.local_addr()?;
        let mut roots = RootCertStore::empty();
        roots
            .add(trusted.clone())
            .expect("the test certificate is a valid trust anchor");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let stream = tokio::time::timeout(WAIT, connector.connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::other("handshake timed out"))??;
        Ok(Phone {
            stream,
            me,
            buf: Vec::new(),
        })
    }

    /// The certificate the server presented.
    fn server_certificate(&self) -> CertificateDer<'static> {
        let (_, conn) = self.stream.get_ref();
        conn.peer_certificates()
            .and_then(|c| c.first())
            .expect("the server presented a certificate")
            .clone()
            .into_owned()
    }

    async fn send(&mut self, msg: &str) {
        let msg = msg.replace('\n', "\r\n");
        self.stream
            .write_all(msg.as_bytes())
            .await
            .expect("send over TLS");
        self.stream.flush().await.expect("flush TLS");
    }

    /// The next SIP message (keep-alive CRLFs skipped), within [`WAIT`].
    async fn recv(&mut self) -> String {
        tokio::time::timeout(WAIT, self.read_message())
            .await
            .expect("a SIP message over TLS in time")
    }

    async fn read_message(&mut self) -> String {
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(len) = complete_message(&self.buf) {
                let msg: Vec<u8> = self.buf.drain(..len).collect();
                return String::from_utf8(msg).expect("callgate sends UTF-8");
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.expect("read over TLS");
            assert!(n > 0, "callgate closed the TLS connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message, which must start with `start` (nothing else is expected in between).
    async fn expect(&mut self, start: &str) -> String {
        let msg = self.recv().await;
        assert!(msg.starts_with(start), "expected {start}, got\n{msg}");
        msg
    }
}

/// Length of the first complete message in `buf` (headers and Content-Length body).
fn complete_message(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let body: usize = header(head, "Content-Length")
        .or_else(|| header(head, "l"))
        .map_or(0, |v| v.parse().unwrap_or(0));
    (buf.len() >= end + body).then_some(end + body)
}

/// Header `name`'s value in `msg`.
fn header<'m>(msg: &'m str, name: &str) -> Option<&'m str> {
    support::header(msg, name)
}

/// A digest parameter (`nonce="..."`) of a challenge.
fn param<'m>(challenge: &'m str, name: &str) -> Option<&'m str> {
    let at = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &challenge[at..];
    Some(&rest[..rest.find('"')?])
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// REGISTER for 101 over TLS with a `sips:` contact, with `auth` header lines (or none).
fn register(me: SocketAddr, cseq: u32, auth: &str) -> String {
    format!(
        "REGISTER sips:acme.example SIP/2.0\nVia: SIP/2.0/TLS {me};branch=z9hG4bKtls{cseq}\nFrom: <sips:101@acme.example>;tag=tls1\nTo: <sips:101@acme.example>\nCall-ID: tls-reg-1\nCSeq: {cseq} REGISTER\nContact: <sips:101@{me}>\nExpires: 600\n{auth}Max-Forwards: 70\nContent-Length: 0\n\n"
    )
}

/// Registers 101 ("pw101") with digest over `phone`'s connection: 401 to CSeq `cseq`, then
/// 200 to `cseq + 1` with credentials.
async fn register_with_digest(phone: &mut Phone, cseq: u32) {
    let me = phone.me;
    phone.send(&register(me, cseq, "")).await;
    let challenge = phone.expect("SIP/2.0 401").await;
    let www = header(&challenge, "WWW-Authenticate").expect("a challenge");
    let (realm, nonce) = (
        param(www, "realm").expect("realm"),
        param(www, "nonce").expect("nonce"),
    );
    assert_eq!(realm, "acme.example");
    let uri = "sips:acme.example";
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let ha1 = md5_hex(&format!("101:{realm}:pw101"));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    let auth = format!(
        "Authorization: Digest username=\"101\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"\n"
    );
    phone.send(&register(me, cseq + 1, &auth)).await;
    let ok = phone.expect("SIP/2.0 200").await;
    assert!(
        ok.contains(&format!("<sips:101@{me}>")),
        "the binding is listed:\n{ok}"
    );
}

/// The 200 a phone answers `invite` with: its Via, From, To (with a tag), Call-ID and CSeq.
fn ok_for(invite: &str, me: SocketAddr) -> String {
    let copy: String = invite
        .lines()
        .filter(|l| {
            let name = l.split(':').next().unwrap_or("").trim();
            ["Via", "v", "From", "f", "Call-ID", "i", "CSeq"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let to = header(invite, "To").expect("a To");
    let sdp = "v=0\no=phone 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
    format!(
        "SIP/2.0 200 OK\n{copy}To: {to};tag=phone101\nContact: <sips:101@{me}>\nContent-Type: application/sdp\nContent-Length: {}\n\n{sdp}",
        sdp.replace('\n', "\r\n").len()
    )
}

/// The 200 for an in-dialog request (the BYE).
fn ok_for_bye(bye: &str) -> String {
    let copy: String = bye
        .lines()
        .filter(|l| {
            let name = l.split(':').next().unwrap_or("").trim();
            ["Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    format!("SIP/2.0 200 OK\n{copy}Content-Length: 0\n\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registered_over_tls_is_called_over_its_connection() {
    let net = Net(150);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let dir = tempfile::tempdir().expect("temporary directory");
    let cert = TestCert::new();
    cert.write(dir.path());
    let h = Harness::start(&tls_config(dir.path(), pbx, trunk)).await;
    let mut phone = Phone::connect(net.ip(5), tls_addr(&h), &cert.der)
        .await
        .expect("the phone trusts the listener's certificate");
    register_with_digest(&mut phone, 1).await;
    let regs = h.get_json("/registrations").await;
    let list = regs.as_array().expect("a JSON array");
    assert_eq!(list.len(), 1, "{regs}");
    assert_eq!(list[0]["transport"], "tls");
    assert_eq!(list[0]["source"], phone.me.to_string());

    // The PBX calls 101: the INVITE reaches the phone over its TLS connection.
    let uac = Sipp::uac("uac.xml", pbx, h.udp, "101", SippOpts::default());
    let invite = phone.expect("INVITE ").await;
    assert!(
        invite.starts_with(&format!("INVITE sips:101@{} SIP/2.0", phone.me)),
        "the registered contact is the Request-URI:\n{invite}"
    );
    let via = header(&invite, "Via").expect("a Via");
    assert!(via.starts_with("SIP/2.0/TLS "), "{via}");
    let contact = header(&invite, "Contact").expect("a Contact");
    assert!(contact.starts_with("<sips:callgate@"), "{contact}");
    phone.send(&ok_for(&invite, phone.me)).await;
    phone.expect("ACK ").await;
    let bye = phone.expect("BYE ").await;
    phone.send(&ok_for_bye(&bye)).await;
    uac.finish().await.assert_ok("uac");
    h.assert_all_released().await;

    // The binding dies with its connection (a call to 101 now gets 480: callgate cannot open a
    // TLS connection to the phone, and its address is behind a NAT that no longer maps it).
    drop(phone);
    let gone = support::wait_until(WAIT, || h.daemon.shared.location.is_empty()).await;
    assert!(gone, "the TLS binding went with its connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_presents_a_new_certificate_to_new_handshakes_only() {
    let net = Net(151);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let dir = tempfile::tempdir().expect("temporary directory");
    let old = TestCert::new();
    old.write(dir.path());
    let path: PathBuf = dir.path().join("callgate.toml");
    std::fs::write(&path, tls_config(dir.path(), pbx, trunk)).expect("write config");
    let h = Harness::start_file(&path).await;
    let gw = tls_addr(&h);
    let mut before = Phone::connect(net.ip(5), gw, &old.der)
        .await
        .expect("handshake with the first certificate");
    assert_eq!(before.server_certificate(), old.der);

    let new = TestCert::new();
    new.write(dir.path());
    let result = h.daemon.reload().await;
    assert!(result.accepted, "{result:?}");
    // The open connection goes on (it registers, and gets its answers)...
    register_with_digest(&mut before, 1).await;
    // ... new handshakes present the new certificate: a phone trusting the old one fails.
    assert!(Phone::connect(net.ip(6), gw, &old.der).await.is_err());
    let after = Phone::connect(net.ip(7), gw, &new.der)
        .await
        .expect("handshake with the new certificate");
    assert_eq!(after.server_certificate(), new.der);

    // A certificate that cannot be used refuses the reload; the running one stays.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").expect("write");
    let result = h.daemon.reload().await;
    assert!(!result.accepted, "{result:?}");
    assert!(
        result.errors.iter().any(|e| e.contains("cert.pem")),
        "the refusal names the file: {result:?}"
    );
    let still = Phone::connect(net.ip(8), gw, &new.der)
        .await
        .expect("the new certificate is still presented");
    assert_eq!(still.server_certificate(), new.der);
    register_with_digest(&mut before, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_comes_loses_its_connection_at_the_header_deadline() {
    let net = Net(152);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    let dir = tempfile::tempdir().expect("temporary directory");
    let cert = TestCert::new();
    cert.write(dir.path());
    let deadline = std::time::Duration::from_millis(300);
    let toml = tls_config(dir.path(), pbx, trunk).replacen(
        "name = \"e2e\"",
        "name = \"e2e\"\ntcp_header_timeout = \"300ms\"",
        1,
    );
    let h = Harness::start(&toml).await;
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(net.ip(5), 0)).expect("bind");
    let mut silent = socket.connect(tls_addr(&h)).await.expect("connect");
    let started = tokio::time::Instant::now();
    // No ClientHello: the server closes the socket once the deadline passes.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, silent.read(&mut byte))
        .await
        .expect("closed within the wait");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let took = started.elapsed();
    assert!(took >= deadline * 8 / 10, "closed after {took:?}");
    // Its place under max_tcp_connections is free again, and a real phone still gets in.
    let phone = Phone::connect(net.ip(6), tls_addr(&h), &cert.der).await;
    assert!(phone.is_ok(), "{:?}", phone.err());
}

#[tokio::test]
async fn a_tls_send_without_the_peers_connection_fails_and_opens_nothing() {
    use callgate::config::model::Listen;
    use callgate::transport::{
        Delivery, Inbound, Sink, TransportError, TransportLimits, Transports,
    };

    struct Ignore;
    impl Sink for Ignore {
        fn deliver(&self, _: Inbound) -> Delivery {
            Delivery::Done
        }
    }
    let net = Net(153);
    let stop = tokio_util::sync::CancellationToken::new();
    let listen = Listen {
        transport: Transport::Tcp,
        address: SocketAddr::new(net.ip(10), 0),
        advertise: None,
        tls: None,
    };
    let limits = TransportLimits::default();
    let t = Transports::bind(&[listen], Arc::new(Ignore), limits, stop.clone())
        .await
        .expect("bind");
    // A phone that registered over TLS and went away: nobody is listening there for callgate.
    let far = tokio::net::TcpListener::bind(SocketAddr::new(net.ip(11), 0))
        .await
        .expect("bind");
    let dest = far.local_addr().expect("local address");
    let sent = t.send(Transport::Tls, dest, bytes::Bytes::from_static(b"OPTIONS"));
    assert!(
        matches!(sent, Err(TransportError::NoTlsConnection(d)) if d == dest),
        "{sent:?}"
    );
    assert_eq!(t.tcp_connections(), 0, "no connection opened for it");
    stop.cancel();
}

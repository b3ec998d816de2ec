//! A real softphone for the end-to-end tests: baresip 1.0 (Debian `baresip`), headless, driven
//! over its `ctrl_tcp` module (netstring-framed JSON: commands with a token, the response
//! carrying it back, and asynchronous `{"event":true,"type":...}` events).
//!
//! Each instance gets its own configuration directory (`-f`): SIP on one loopback address of the
//! test's network (baresip listens on UDP and TCP at that port, and connects out over TCP from
//! 127.0.0.1 whatever the address), the control socket on another port of that address, no
//! sound card (a 440 Hz sine as source, an unconnected `aubridge` device as player), G.711
//! only, no video, no STUN/ICE/TURN, and a DNS server nobody answers on (the accounts name
//! callgate by IP literal, so nothing needs a lookup).
//!
//! The account is created with `uanew` once the control connection is up rather than read from
//! the `accounts` file: baresip registers as soon as it starts, and a `REGISTER_OK` sent before
//! the driver connected would be lost. The process is killed by its PID when the [`Phone`] is
//! dropped (`kill_on_drop`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::free_addr;

/// How long one wait for a baresip event or response may take.
pub const EVENT_WAIT: Duration = Duration::from_secs(10);

/// How a phone answers an incoming call (baresip's `answermode` account parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMode {
    /// Rings (`CALL_INCOMING`) until told to [`Phone::accept`].
    Manual,
    /// Answers at once (baresip then sends no `CALL_INCOMING` event).
    Auto,
}

/// The account a phone registers: `<sip:user@domain>` with digest password `password`, every
/// request sent to callgate at `proxy` over `transport`.
#[derive(Debug, Clone)]
pub struct Account<'a> {
    /// The extension, the user part of the AoR and the digest username.
    pub user: &'a str,
    /// The digest password.
    pub password: &'a str,
    /// The organization's domain (the AoR's host and the digest realm).
    pub domain: &'a str,
    /// callgate's listener for `transport`: registrar and outbound proxy.
    pub proxy: SocketAddr,
    /// `udp` or `tcp` (on TCP the phone connects from an ephemeral port and callgate must
    /// call it back on that connection).
    pub transport: &'a str,
    /// How incoming calls are answered.
    pub answer: AnswerMode,
}

impl Account<'_> {
    /// The account line of `uanew` (the syntax of baresip's `accounts` file).
    fn line(&self) -> String {
        let mode = match self.answer {
            AnswerMode::Manual => "manual",
            AnswerMode::Auto => "auto",
        };
        format!(
            "<sip:{user}@{domain}>;auth_pass={password};outbound=\"sip:{proxy};transport={transport}\";regint=600;answermode={mode}",
            user = self.user,
            domain = self.domain,
            password = self.password,
            proxy = self.proxy,
            transport = self.transport,
        )
    }
}

/// One baresip process and its control connection.
pub struct Phone {
    /// Where it sends and receives SIP (UDP).
    pub sip: SocketAddr,
    label: String,
    /// Held for its `kill_on_drop`: dropping the phone kills this process, by its PID.
    child: Child,
    ctrl: TcpStream,
    /// Bytes read from the control connection, not yet a whole netstring.
    buf: Vec<u8>,
    /// Events received and not yet waited for, oldest first.
    events: VecDeque<Value>,
    /// Every event received, for failure messages.
    seen: Vec<String>,
    next_token: u64,
    dir: tempfile::TempDir,
}

/// The configuration of one instance: everything headless, bound to `sip`'s IP.
fn config(sip: SocketAddr, ctrl: SocketAddr) -> String {
    let ip = sip.ip();
    format!(
        "\
poll_method\t\tepoll
sip_listen\t\t{sip}
# Media and the SDP address on the phone's own loopback address, not the host's interface.
net_interface\t\t{ip}
# Nothing resolves: every address the phone uses is an IP literal.
dns_server\t\t{ip}:53
call_local_timeout\t30
call_max_calls\t\t4
# No sound card: a sine wave (48 kHz stereo is all ausine makes; baresip resamples for G.711)
# as the microphone, an aubridge device nobody reads as the speaker.
audio_source\t\tausine,440
audio_player\t\taubridge,speaker
audio_alert\t\taubridge,alert
ausrc_srate\t\t48000
ausrc_channels\t\t2
audio_level\t\tno
rtp_stats\t\tno
statmode_default\toff
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\tausine.so
module\t\t\taubridge.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
ctrl_tcp_listen\t\t{ctrl}
"
    )
}

impl Phone {
    /// Starts baresip with SIP at `sip` (UDP and TCP free there) and connects to its control
    /// socket; no account yet ([`Phone::register`] adds it).
    pub async fn start(label: &str, sip: SocketAddr) -> Phone {
        let ctrl_addr = loop {
            let a = free_addr(sip.ip());
            if a.port() != sip.port() {
                break a;
            }
        };
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("config"), config(sip, ctrl_addr)).expect("write config");
        std::fs::write(dir.path().join("accounts"), "").expect("write accounts");
        std::fs::write(dir.path().join("contacts"), "").expect("write contacts");
        let log = |name: &str| {
            std::fs::File::create(dir.path().join(name)).map_or_else(|_| Stdio::null(), Stdio::from)
        };
        let mut child = Command::new("baresip")
            // -s: the SIP trace goes to the log, which failure messages show.
            .arg("-s")
            .arg("-f")
            .arg(dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log("baresip.log"))
            .stderr(log("stderr.log"))
            .kill_on_drop(true)
            .spawn()
            .expect("baresip is installed and starts (scripts/test installs it)");
        // The control socket exists once baresip has loaded its modules: retry the connect
        // until then, failing at once if the process died.
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        let ctrl = loop {
            if let Ok(s) = TcpStream::connect(ctrl_addr).await {
                break s;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "baresip {label} exited at start ({status}):\n{}",
                    read_logs(dir.path())
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "baresip {label} control socket {ctrl_addr} not up:\n{}",
                read_logs(dir.path())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Phone {
            sip,
            label: label.to_owned(),
            child,
            ctrl,
            buf: Vec::new(),
            events: VecDeque::new(),
            seen: Vec::new(),
            next_token: 1,
            dir,
        }
    }

    /// [`Phone::start`], then registers `account`: returns once callgate answered 200.
    pub async fn registered(label: &str, sip: SocketAddr, account: &Account<'_>) -> Phone {
        let mut phone = Phone::start(label, sip).await;
        phone.register(account).await;
        phone
    }

    /// Creates the user agent of `account` and waits for its registration to succeed
    /// (`REGISTER_OK`; `REGISTER_FAIL` fails the test).
    pub async fn register(&mut self, account: &Account<'_>) {
        self.command("uanew", &account.line()).await;
        let ev = self
            .wait_event(|e| matches!(kind(e), "REGISTER_OK" | "REGISTER_FAIL"))
            .await;
        assert_eq!(
            kind(&ev),
            "REGISTER_OK",
            "{} registration failed: {ev}\n{}",
            self.label,
            self.logs()
        );
    }

    /// Calls `uri` (e.g. `sip:102@acme.example`); the call goes through the account's proxy.
    pub async fn dial(&mut self, uri: &str) {
        self.command("dial", uri).await;
    }

    /// Dials `uri` and waits until that call ends (a refused call); returns the closing event.
    pub async fn dial_and_wait_closed(&mut self, uri: &str) -> Value {
        self.dial(uri).await;
        self.wait_closed().await
    }

    /// Answers the ringing call.
    pub async fn accept(&mut self) {
        self.command("accept", "").await;
    }

    /// Hangs up the current call (BYE when answered, CANCEL while calling, a refusal while
    /// ringing).
    pub async fn hangup(&mut self) {
        self.command("hangup", "").await;
    }

    /// Puts the call on hold (a re-INVITE with `a=sendonly`).
    pub async fn hold(&mut self) {
        self.command("hold", "").await;
    }

    /// Takes the call off hold (a re-INVITE with `a=sendrecv`).
    pub async fn resume(&mut self) {
        self.command("resume", "").await;
    }

    /// Deletes the user agent of `aor` (`sip:102@acme.example`): baresip unregisters it
    /// (`Expires: 0`) on the way.
    pub async fn unregister(&mut self, aor: &str) {
        self.command("uadel", aor).await;
    }

    /// Forgets every event received so far: a later wait sees only what comes after (e.g. the
    /// SDP answer of a re-INVITE, not the one of the INVITE).
    pub fn forget_events(&mut self) {
        self.events.clear();
    }

    /// Waits until the phone has received an SDP `offer` or `answer` (`CALL_REMOTE_SDP`).
    pub async fn wait_remote_sdp(&mut self, param: &str) -> Value {
        self.wait_event(|e| kind(e) == "CALL_REMOTE_SDP" && e["param"] == param)
            .await
    }

    /// Waits for the next incoming call (`CALL_INCOMING`); returns the event.
    pub async fn wait_incoming(&mut self) -> Value {
        self.wait_call_event("CALL_INCOMING").await
    }

    /// Waits until the call is answered and acknowledged (`CALL_ESTABLISHED`).
    pub async fn wait_established(&mut self) -> Value {
        self.wait_call_event("CALL_ESTABLISHED").await
    }

    /// Waits until the call has ended (`CALL_CLOSED`); returns the event (its `param` says
    /// why, e.g. `Connection reset by peer` for the far end's BYE).
    pub async fn wait_closed(&mut self) -> Value {
        self.wait_event(|e| kind(e) == "CALL_CLOSED").await
    }

    /// Waits for call event `kind`; a `CALL_CLOSED` on the way fails the test with its reason.
    async fn wait_call_event(&mut self, wanted: &str) -> Value {
        let ev = self
            .wait_event(|e| kind(e) == wanted || kind(e) == "CALL_CLOSED")
            .await;
        assert_eq!(
            kind(&ev),
            wanted,
            "{}: the call closed before {wanted}: {ev}\n{}",
            self.label,
            self.logs()
        );
        ev
    }

    /// Runs a baresip command (`dial`, `accept`, `uanew`, ...) and returns its response's
    /// `data`; a response with `ok: false` fails the test.
    pub async fn command(&mut self, command: &str, params: &str) -> String {
        let token = format!("t{}", self.next_token);
        self.next_token += 1;
        // An empty `params` would reach the command as a trailing blank: leave the key out.
        let body = if params.is_empty() {
            json!({ "command": command, "token": token })
        } else {
            json!({ "command": command, "params": params, "token": token })
        }
        .to_string();
        let frame = format!("{}:{body},", body.len());
        self.ctrl
            .write_all(frame.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{}: write to ctrl_tcp: {e}", self.label));
        let response = tokio::time::timeout(EVENT_WAIT, async {
            loop {
                let msg = self.next_message().await;
                if msg["response"] == true && msg["token"] == token.as_str() {
                    return msg;
                }
                self.keep(msg);
            }
        })
        .await;
        let Ok(response) = response else {
            panic!(
                "{}: no response to `{command} {params}` within {EVENT_WAIT:?}\n{}",
                self.label,
                self.logs()
            );
        };
        assert_eq!(
            response["ok"],
            true,
            "{}: `{command} {params}` refused: {response}\n{}",
            self.label,
            self.logs()
        );
        response["data"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits (up to [`EVENT_WAIT`]) for the first event, received or to come, that `wanted`
    /// matches, and removes it from the backlog; other events stay for later waits.
    pub async fn wait_event(&mut self, mut wanted: impl FnMut(&Value) -> bool) -> Value {
        if let Some(i) = self.events.iter().position(&mut wanted) {
            return self.events.remove(i).expect("position is in the backlog");
        }
        let found = tokio::time::timeout(EVENT_WAIT, async {
            loop {
                let msg = self.next_message().await;
                if msg["event"] == true && wanted(&msg) {
                    return msg;
                }
                self.keep(msg);
            }
        })
        .await;
        match found {
            Ok(ev) => ev,
            Err(_) => panic!(
                "{}: the awaited event did not come within {EVENT_WAIT:?}; events so far:\n{}\n{}",
                self.label,
                self.seen.join("\n"),
                self.logs()
            ),
        }
    }

    /// Files an unsolicited message: events in the backlog, stray responses nowhere.
    fn keep(&mut self, msg: Value) {
        if msg["event"] == true {
            self.events.push_back(msg);
        }
    }

    /// The next JSON message of the control connection (no bound: callers put one around it).
    async fn next_message(&mut self) -> Value {
        loop {
            if let Some(msg) = self.take_netstring() {
                let value: Value = serde_json::from_slice(&msg).unwrap_or_else(|e| {
                    panic!("{}: ctrl_tcp sent no JSON ({e}): {msg:?}", self.label)
                });
                if value["event"] == true {
                    self.seen.push(value.to_string());
                }
                return value;
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .ctrl
                .read(&mut chunk)
                .await
                .unwrap_or_else(|e| panic!("{}: read from ctrl_tcp: {e}", self.label));
            assert!(
                n > 0,
                "{}: baresip closed its control connection\n{}",
                self.label,
                self.logs()
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One whole netstring (`<len>:<bytes>,`) off the front of the buffer, if there is one.
    fn take_netstring(&mut self) -> Option<Vec<u8>> {
        let colon = self.buf.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&self.buf[..colon])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}: bad netstring length {:?}", self.label, self.buf));
        let end = colon + 1 + len;
        if self.buf.len() <= end {
            return None;
        }
        assert_eq!(self.buf[end], b',', "{}: netstring without ','", self.label);
        let msg = self.buf[colon + 1..end].to_vec();
        self.buf.drain(..=end);
        Some(msg)
    }

    /// The instance's log (its SIP trace included) and stderr, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- baresip {} log (tail) ---\n{}",
            self.label,
            read_logs(self.dir.path())
        )
    }
}

/// An event's `type` (`REGISTER_OK`, `CALL_INCOMING`, `CALL_ESTABLISHED`, `CALL_CLOSED`, ...).
pub fn kind(event: &Value) -> &str {
    event["type"].as_str().unwrap_or_default()
}

fn read_logs(dir: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let log = read("baresip.log");
    let mut start = log.len().saturating_sub(8000);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    format!("{}\n--- stderr ---\n{}", &log[start..], read("stderr.log"))
}

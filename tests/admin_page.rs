//! The admin page (`GET /`) end to end: served behind the token (header or `?token=`), rendered
//! by headless Chromium from the live JSON endpoints of the real daemon while SIPp holds calls
//! through it, and from a fake backend whose strings try to inject HTML.
//!
//! Chromium is required: `scripts/test` installs it (Debian package `chromium`); without it the
//! browser tests fail saying so. It runs as its own process group, killed by that id when it
//! overruns its bound. This file owns the loopback network 127.190.0.0/24 (`Net(190)`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callgate::admin::client::{self, AdminUrl, HttpResponse};
use callgate::admin::{
    self, AdminBackend, AdminState, CallView, CounterView, LegView, Metrics, RegistrationView,
    ReloadResult,
};
use callgate::config::model::Transport;
use callgate::registrar::{Aor, Binding, Flow};
use regex::Regex;
use serde_json::Value;
use support::{acme, config, Harness, Net, Sipp, SippOpts, PUBLIC_NUMBER, WAIT};
use tokio::sync::oneshot;

const TOKEN: &str = "page-t0ken";

/// Longest a Chromium run may take (its virtual time budget is 5 s; start-up is slow on a
/// loaded 2-core machine).
const BROWSER_BOUND: Duration = Duration::from_secs(90);

// ---- headless Chromium ----------------------------------------------------------------------

/// The `chromium` binary on `PATH`; fails the test when it is missing.
fn chromium_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed: the admin page tests need headless Chromium \
                 (scripts/test installs it; or `apt-get install -y chromium`)"
            )
        })
}

/// Runs headless Chromium on `url` with `extra` arguments and returns its stdout.
async fn chromium(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().expect("temporary profile directory");
    let mut cmd = tokio::process::Command::new(chromium_binary());
    // As root Chromium refuses to start without --no-sandbox.
    cmd.args(["--headless=new", "--no-sandbox", "--disable-gpu"])
        .args(["--no-first-run", "--no-default-browser-check"])
        .args(["--disable-extensions", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync"])
        .arg("--disable-dev-shm-usage")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--virtual-time-budget=5000")
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let child = cmd.spawn().expect("chromium starts");
    let group = child.id().expect("a running child has a pid");
    match tokio::time::timeout(BROWSER_BOUND, child.wait_with_output()).await {
        Ok(output) => {
            let output = output.expect("chromium output");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "chromium failed: {stderr}");
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        Err(_) => {
            kill_group(group);
            panic!("chromium did not finish within {BROWSER_BOUND:?}");
        }
    }
}

/// SIGKILL to the process group this test started (Chromium and its helper processes).
fn kill_group(pgid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
}

/// Where a test artifact goes: the target directory, so it is never committed.
fn artifact(file: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(file)
}

/// The page at `url` as the DOM stands after 5 s of virtual time (the script has run and
/// refreshed at least once), also saved as the artifact `file`.
async fn dump_dom(url: &str, file: &str) -> String {
    let dom = chromium(url, &["--dump-dom".to_owned()]).await;
    let _ = std::fs::write(artifact(file), &dom);
    let refreshed = Regex::new(r#"<body[^>]*data-updated="([1-9][0-9]*)""#).expect("regex");
    assert!(
        refreshed.is_match(&dom),
        "the page never rendered the API's data:\n{dom}"
    );
    dom
}

/// A 1280x900 screenshot of `url` at `file` under the target directory (a test artifact).
async fn screenshot(url: &str, file: &str) -> PathBuf {
    let path = artifact(file);
    let _ = std::fs::remove_file(&path);
    let args = [
        format!("--screenshot={}", path.display()),
        "--window-size=1280,900".to_owned(),
    ];
    chromium(url, &args).await;
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    assert!(size > 1000, "no screenshot at {}", path.display());
    path
}

// ---- reading the dumped DOM -----------------------------------------------------------------

/// `(used, limit)` as the page shows them in the row of one counter.
fn counter_cells(dom: &str, level: &str, name: &str, counter: &str) -> (String, String) {
    let pattern = format!(
        r#"<tr data-level="{level}" data-name="{name}" data-counter="{counter}"[^>]*>(.*?)</tr>"#,
        level = regex::escape(level),
        name = regex::escape(name),
        counter = regex::escape(counter),
    );
    let row = Regex::new(&pattern).expect("regex");
    let cells = row
        .captures(dom)
        .unwrap_or_else(|| panic!("no row for {level} {name} {counter} in\n{dom}"))[1]
        .to_owned();
    let cell = |class: &str| {
        let re = Regex::new(&format!(r#"<td class="{class}"[^>]*>([^<]*)</td>"#)).expect("regex");
        re.captures(&cells)
            .map(|c| c[1].to_owned())
            .unwrap_or_else(|| panic!("no {class} cell in {cells}"))
    };
    (cell("used"), cell("limit"))
}

/// The `data-state` (`ok`, `near`, `full`) of one counter's row.
fn counter_state(dom: &str, level: &str, name: &str, counter: &str) -> String {
    let pattern = format!(
        r#"<tr data-level="{}" data-name="{}" data-counter="{}"[^>]*data-state="([a-z]+)""#,
        regex::escape(level),
        regex::escape(name),
        regex::escape(counter),
    );
    let re = Regex::new(&pattern).expect("regex");
    re.captures(dom)
        .map(|c| c[1].to_owned())
        .unwrap_or_else(|| panic!("no state for {level} {name} {counter}"))
}

fn rows_of_class(dom: &str, class: &str) -> usize {
    dom.matches(&format!(r#"<tr class="{class}""#)).count()
}

/// The text of the element with `id`.
fn text_of(dom: &str, id: &str) -> String {
    let re = Regex::new(&format!(r#"id="{id}"[^>]*>([^<]*)<"#)).expect("regex");
    re.captures(dom)
        .map(|c| c[1].to_owned())
        .unwrap_or_else(|| panic!("no element #{id}"))
}

// ---- the real daemon, with calls held by SIPp --------------------------------------------------

async fn get(admin: &AdminUrl, path: &str) -> HttpResponse {
    client::request(admin, "GET", path, Some(TOKEN))
        .await
        .expect("admin API answers")
}

async fn get_json(admin: &AdminUrl, path: &str) -> Value {
    let r = get(admin, path).await;
    assert_eq!(r.status, 200, "GET {path}");
    serde_json::from_slice(&r.body).expect("JSON body")
}

/// Waits until `n` calls are up with their A leg confirmed.
async fn wait_confirmed(admin: &AdminUrl, n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let calls = get_json(admin, "/calls").await;
        let list = calls.as_array().expect("GET /calls is an array");
        let up = list
            .iter()
            .filter(|c| c["legs"][0]["state"] == "confirmed")
            .count();
        if list.len() == n && up == n {
            return;
        }
        assert!(Instant::now() < deadline, "{up} of {n} calls confirmed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ends every call with `DELETE /calls/{id}` (BYE on both legs); returns how many.
async fn end_all_calls(admin: &AdminUrl) -> usize {
    let calls = get_json(admin, "/calls").await;
    let ids: Vec<String> = calls
        .as_array()
        .expect("GET /calls is an array")
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    for id in &ids {
        let path = format!("/calls/{id}");
        let r = client::request(admin, "DELETE", &path, Some(TOKEN))
            .await
            .expect("admin API answers");
        assert_eq!(r.status, 204, "DELETE {path}");
    }
    ids.len()
}

/// A binding of extension 200 as the REGISTER handler stores it.
fn register_200(h: &Harness) {
    let now = std::time::Instant::now();
    let binding = Binding {
        contact: "sip:200@192.0.2.20:5060".into(),
        flow: Flow {
            transport: Transport::Udp,
            source: "192.0.2.20:5060".parse().expect("address"),
            local: None,
        },
        expires_at: now + Duration::from_secs(3600),
        registered_at: now,
        call_id: "reg-page-200".into(),
        cseq: 1,
        q: None,
    };
    h.daemon
        .shared
        .location
        .upsert(Aor::new("acme.example", "200"), binding, 4, now)
        .expect("binding stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_held_calls_counters_and_registrations_of_the_running_daemon() {
    chromium_binary();
    let net = Net(190);
    let (pbx, trunk) = (net.addr(1), net.addr(2));
    // alice may hold 2 public calls: with both held her counter is full.
    let tenancy = acme(pbx, "udp", trunk).replace(
        "name = \"alice\"\norganization = \"acme\"",
        "name = \"alice\"\norganization = \"acme\"\nlimits = { public = 2 }",
    );
    let h = Harness::start(&config(&format!("token = \"{TOKEN}\"\n{tenancy}"))).await;
    let admin = h.admin.clone();
    register_200(&h);
    let uas = Sipp::uas("uas.xml", trunk, SippOpts::calls(2)).await;
    let opts = SippOpts::calls(2).arg(&["-l", "2", "-r", "50"]);
    let held = Sipp::uac("uac-hold.xml", pbx, h.udp, PUBLIC_NUMBER, opts);
    wait_confirmed(&admin, 2).await;

    let admin_addr = h.daemon.admin.expect("admin API configured");
    let url = format!("http://{admin_addr}/?token={TOKEN}");
    let dom = dump_dom(&url, "admin-page.html").await;
    assert_eq!(
        counter_cells(&dom, "user", "alice", "public"),
        ("2".into(), "2".into())
    );
    assert_eq!(counter_state(&dom, "user", "alice", "public"), "full");
    assert_eq!(
        counter_cells(&dom, "service_provider", "sp", "public"),
        ("2".into(), "10".into())
    );
    assert_eq!(
        counter_state(&dom, "service_provider", "sp", "public"),
        "ok"
    );
    assert_eq!(rows_of_class(&dom, "call"), 2, "two calls listed");
    assert_eq!(text_of(&dom, "calls-count"), "2");
    assert_eq!(
        dom.matches(r#"<td class="state">confirmed/confirmed</td>"#)
            .count(),
        2
    );
    assert!(dom.contains(PUBLIC_NUMBER), "the dialled number is shown");
    assert_eq!(rows_of_class(&dom, "registration"), 1);
    assert!(
        dom.contains("sip:200@192.0.2.20:5060"),
        "the contact is shown"
    );
    assert_eq!(text_of(&dom, "status"), "live");
    assert_trunks_shown(&admin, &dom).await;
    assert_tree(&dom);
    let shot = screenshot(&url, "admin-page.png").await;
    eprintln!("admin page screenshot: {}", shot.display());

    assert_eq!(end_all_calls(&admin).await, 2);
    held.finish().await.assert_ok("held calls");
    uas.finish().await.assert_ok("trunk callee");
    h.wait_in_use(0).await;
    let counters = get_json(&admin, "/counters").await;
    let held: Vec<&Value> = counters
        .as_array()
        .expect("GET /counters is an array")
        .iter()
        .filter(|c| c["used"] != 0)
        .collect();
    assert!(held.is_empty(), "counters still used: {held:?}");
    let dom = dump_dom(&url, "admin-page-after.html").await;
    assert_eq!(
        rows_of_class(&dom, "call"),
        0,
        "no call listed after the end"
    );
    assert_eq!(counter_cells(&dom, "user", "alice", "public").0, "0");
}

/// The counters are nested as the tenancy: server, provider, organization, user, extension,
/// each one level deeper and right after its parent's counters.
fn assert_tree(dom: &str) {
    let at = |level: &str, name: &str, depth: u8| {
        let row = format!(
            r#"<tr data-level="{level}" data-name="{name}" class="entity" data-depth="{depth}">"#
        );
        dom.find(&row)
            .unwrap_or_else(|| panic!("no {level} {name} at depth {depth} in the tree"))
    };
    let chain = [
        at("server", "e2e", 0),
        at("service_provider", "sp", 1),
        at("organization", "acme", 2),
        at("user", "alice", 3),
        at("extension", "200@acme", 4),
    ];
    assert!(
        chain.windows(2).all(|w| w[0] < w[1]),
        "tree order: {chain:?}"
    );
}

/// The trunks section lists the daemon's trunk from `GET /trunks`.
async fn assert_trunks_shown(admin: &AdminUrl, dom: &str) {
    assert_eq!(get(admin, "/trunks").await.status, 200);
    assert!(
        dom.contains(r#"<tr class="trunk" data-name="carrier""#),
        "trunk carrier not listed"
    );
}

// ---- a fake backend: hostile strings, counters at chosen levels, the token rules ---------------

/// Strings an attacker controls (From/To of a call, a Contact) trying to become markup.
const INJECTION: &str = r#"<img src=x onerror="document.body.dataset.pwned=1">"#;

/// `idle_extensions` more extensions with nothing in use (a large tenancy).
struct Fake {
    idle_extensions: usize,
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

impl AdminBackend for Fake {
    fn health(&self) -> bool {
        true
    }
    fn calls(&self) -> Vec<CallView> {
        let leg = LegView {
            leg: "a".into(),
            call_id: "x@y".into(),
            from: INJECTION.into(),
            to: "<script>document.body.dataset.pwned=2</script>".into(),
            state: "confirmed".into(),
        };
        vec![CallView {
            id: "c<1>".into(),
            started_at_unix_secs: 1_700_000_000,
            legs: vec![leg],
            counters: Vec::new(),
        }]
    }
    fn counters(&self) -> Vec<CounterView> {
        let idle = (0..self.idle_extensions)
            .map(|n| counter("extension", &format!("{n}@idle"), "max_calls", 0, Some(2)));
        let mut list = vec![
            counter("server", "edge", "public", 1, Some(10)),
            counter("organization", "near", "public", 8, Some(10)),
            counter("organization", "full", "public", 10, Some(10)),
            counter("organization", "zero", "public", 0, Some(0)),
            counter("user", "open", "internal", 3, None),
            counter("user", "<b>bold</b>", "public", 1, Some(3)),
            counter("extension", "busy@idle", "max_calls", 1, Some(2)),
        ];
        list.extend(idle);
        list
    }
    fn registrations(&self) -> Vec<RegistrationView> {
        vec![RegistrationView {
            extension: "101".into(),
            contact: INJECTION.into(),
            source: "192.0.2.1:5060".into(),
            transport: "udp".into(),
            expires_secs: 60,
            trunk: None,
        }]
    }
    fn reload(&self) -> ReloadResult {
        ReloadResult::refused(Vec::new())
    }
    fn end_call(&self, _: &str) -> bool {
        false
    }
}

/// The admin API over [`Fake`] on 127.0.0.1:0; stops when the sender is dropped.
async fn fake_api(token: Option<&str>) -> (AdminUrl, String, oneshot::Sender<()>) {
    fake_api_with(token, 0).await
}

async fn fake_api_with(
    token: Option<&str>,
    idle_extensions: usize,
) -> (AdminUrl, String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("bound address"));
    let state = AdminState::new(
        Arc::new(Fake { idle_extensions }),
        Arc::new(Metrics::new()),
        token.map(str::to_owned),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(admin::serve(listener, state, async {
        let _ = stopped.await;
    }));
    (AdminUrl::parse(&base).expect("valid url"), base, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_escapes_api_strings_and_highlights_counters_near_their_limit() {
    chromium_binary();
    let (_, base, _stop) = fake_api(Some(TOKEN)).await;
    let dom = dump_dom(
        &format!("{base}/?token={TOKEN}"),
        "admin-page-escaping.html",
    )
    .await;
    assert!(!dom.contains("data-pwned"), "a string ran as script");
    assert!(!dom.contains("<img"), "a string became an element");
    assert!(
        dom.contains("&lt;img src=x onerror="),
        "the From is shown as text"
    );
    assert!(dom.contains("&lt;script&gt;"), "the To is shown as text");
    assert!(
        dom.contains(r#"data-name="&lt;b&gt;bold&lt;/b&gt;""#)
            || dom.contains(r#"data-name="<b>bold</b>""#)
    );
    assert!(!dom.contains("<b>bold</b></span>"), "a name became markup");
    assert_eq!(
        counter_state(&dom, "organization", "near", "public"),
        "near"
    );
    assert_eq!(
        counter_state(&dom, "organization", "full", "public"),
        "full"
    );
    assert_eq!(counter_state(&dom, "organization", "zero", "public"), "ok");
    assert_eq!(counter_state(&dom, "server", "edge", "public"), "ok");
    assert_eq!(
        counter_cells(&dom, "user", "open", "internal"),
        ("3".into(), "\u{221e}".into())
    );
    assert_eq!(text_of(&dom, "near-count"), "2 counters near the limit");
    assert_eq!(text_of(&dom, "server-name"), "edge");
    // GET /trunks answers an empty list here (the fake backend has none).
    assert_eq!(text_of(&dom, "trunks-empty"), "no trunks");
    assert_eq!(text_of(&dom, "status"), "live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_of_a_large_tenancy_leaves_out_idle_extensions() {
    chromium_binary();
    let (_, base, _stop) = fake_api_with(None, 5000).await;
    let dom = dump_dom(&base, "admin-page-large.html").await;
    assert_eq!(
        counter_cells(&dom, "extension", "busy@idle", "max_calls"),
        ("1".into(), "2".into())
    );
    assert!(
        !dom.contains(r#"data-name="7@idle""#),
        "an idle extension is listed"
    );
    assert_eq!(
        text_of(&dom, "counters-hidden"),
        "5000 counters of idle users and extensions not shown"
    );
    assert_eq!(
        counter_state(&dom, "organization", "full", "public"),
        "full"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_opens_with_the_token_in_its_query_or_header_only() {
    let (url, _, _stop) = fake_api(Some(TOKEN)).await;
    let send = |path: String, bearer: Option<&'static str>| {
        let url = url.clone();
        async move {
            client::request(&url, "GET", &path, bearer)
                .await
                .expect("admin API answers")
                .status
        }
    };
    assert_eq!(send("/".into(), None).await, 401);
    assert_eq!(send("/?token=wrong".into(), None).await, 401);
    assert_eq!(send(format!("/?token={TOKEN}x"), None).await, 401);
    assert_eq!(send("/".into(), Some("wrong")).await, 401);
    assert_eq!(send(format!("/?token={TOKEN}"), None).await, 200);
    assert_eq!(send("/".into(), Some(TOKEN)).await, 200);
    // The query parameter opens the page only, not the data.
    assert_eq!(send(format!("/counters?token={TOKEN}"), None).await, 401);
    assert_eq!(send(format!("/calls?token={TOKEN}"), None).await, 401);

    let page = client::request(&url, "GET", &format!("/?token={TOKEN}"), None)
        .await
        .expect("admin API answers");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    let expected = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                    connect-src 'self'; img-src data:";
    assert!(csp.starts_with(expected), "{csp}");
    let body = String::from_utf8_lossy(&page.body);
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert!(!body.contains(TOKEN), "the page does not echo the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_is_open_when_no_token_is_configured() {
    let (url, _, _stop) = fake_api(None).await;
    let page = client::request(&url, "GET", "/", None)
        .await
        .expect("admin API answers");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

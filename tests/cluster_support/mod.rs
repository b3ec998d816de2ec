//! A private redis-server for one test binary: on a free loopback port, no persistence, killed
//! by its PID when dropped (never by name: other builders share the machine).

#![allow(dead_code)] // each test binary uses a different part of it

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callgate::cluster::{ClusterClock, ClusterConfig, ManualClock, RedisCounters};

/// A running redis-server we started.
pub struct RedisServer {
    child: Option<Child>,
    pub addr: SocketAddr,
}

/// A TCP port free at 127.0.0.1 (bind, read it back, close).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback TCP socket");
    l.local_addr()
        .expect("local address of a bound socket")
        .port()
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING; tries another port
    /// when the server exits at once (someone took the port between our probe and its bind).
    pub fn start() -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::try_start(free_port()) {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts redis-server on `port` (a restart reuses the port the nodes know).
    pub fn start_on(port: u16) -> Self {
        Self::try_start(port).unwrap_or_else(|| panic!("redis-server did not start on port {port}"))
    }

    fn try_start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        let mut server = RedisServer {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        server.wait_ready().then_some(server)
    }

    /// Whether our server answers PING within 10 s (false at once if it exited).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let exited = self.child.as_mut().map(|c| c.try_wait());
            if !matches!(exited, Some(Ok(None))) {
                self.child = None;
                return false;
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// A redis-server someone else runs on 127.0.0.1:`port` (a benchmark's, e.g. under
    /// callgrind); never killed by us.
    pub fn external(port: u16) -> Self {
        RedisServer {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// A blocking connection for assertions.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to the test redis-server")
    }

    /// Kills the server (SIGKILL on our own child) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node `node` of cluster `cluster` on `server`, with `lease` on `clock` (Redis's clock when
/// `None`).
pub fn node_config(
    server: &RedisServer,
    cluster: &str,
    node: &str,
    lease: Duration,
    clock: Option<&ManualClock>,
) -> ClusterConfig {
    let mut cfg = ClusterConfig::new(server.url(), node);
    cfg.cluster = cluster.to_owned();
    cfg.lease = lease;
    cfg.clock = clock.map_or(ClusterClock::Redis, |c| ClusterClock::Manual(c.clone()));
    cfg
}

/// Joins a node and shares it.
pub async fn node(cfg: ClusterConfig) -> Arc<RedisCounters> {
    Arc::new(
        RedisCounters::connect(cfg)
            .await
            .expect("node joins the cluster"),
    )
}

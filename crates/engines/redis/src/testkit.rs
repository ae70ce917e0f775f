//! Private `redis-server` processes for tests that restart a server or need a cluster
//! (feature `testkit`). They listen on free high ports of 127.0.0.1, keep their files in a
//! temporary directory, and are killed by their pid on drop, even when the test fails — and
//! by a watchdog once the test process is gone, however it ended. Never the machine's
//! shared server, which tests find through [`shared_server`] and use under key prefixes of
//! their own.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use stowage_core::backend::Backend;

/// Where tests find the shared Redis unless `STOWAGE_TEST_REDIS_URL` says otherwise.
pub const DEFAULT_TEST_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The Redis server tests share, as sqlx reads `DATABASE_URL`: `STOWAGE_TEST_REDIS_URL`, by
/// default [`DEFAULT_TEST_REDIS_URL`], split into its scheme (`redis` or `rediss`) and the rest
/// (`[[USER]:PASSWORD@]HOST[:PORT][/DB]`), which is a Stowage URL's location as it is and, with
/// the scheme, a redis-rs URL.
pub fn shared_server() -> (String, String) {
    let url = std::env::var("STOWAGE_TEST_REDIS_URL")
        .unwrap_or_else(|_| DEFAULT_TEST_REDIS_URL.to_owned());
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("STOWAGE_TEST_REDIS_URL is not a redis:// URL"));
    let rest = rest.split('?').next().unwrap_or(rest).trim_end_matches('/');
    (scheme.to_owned(), rest.to_owned())
}

/// What went wrong starting or driving a private server.
pub type ServerError = String;

/// One `redis-server` of a test's own.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    cluster: bool,
    password: Option<String>,
    /// Serves TLS only, with a certificate signed by a CA of its own.
    tls: bool,
}

impl PrivateRedis {
    /// Starts a server on a free port, in a new temporary directory.
    pub fn start() -> Result<Self, ServerError> {
        Self::start_node(false, None)
    }

    /// As [`PrivateRedis::start`], serving TLS only (no plain port), with a certificate for
    /// `127.0.0.1` signed by a certificate authority of its own
    /// ([`PrivateRedis::ca_certificate`]); made with the `openssl` command.
    pub fn start_with_tls() -> Result<Self, ServerError> {
        Self::make(false, None, true)
    }

    /// The PEM file of the certificate authority that signed a TLS server's certificate.
    pub fn ca_certificate(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// As [`PrivateRedis::start`], requiring `password` of every client.
    pub fn start_with_password(password: &str) -> Result<Self, ServerError> {
        Self::start_node(false, Some(password.to_owned()))
    }

    fn start_node(cluster: bool, password: Option<String>) -> Result<Self, ServerError> {
        Self::make(cluster, password, false)
    }

    fn make(cluster: bool, password: Option<String>, tls: bool) -> Result<Self, ServerError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("stowage-redis-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut server = PrivateRedis {
            port: if cluster {
                free_cluster_port()?
            } else {
                free_port()?
            },
            dir,
            child: None,
            cluster,
            password,
            tls,
        };
        if tls {
            stowage_testkit::make_certificates(&server.dir)?;
        }
        server.start_again()?;
        Ok(server)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL, as a crash), and waits for it to be gone.
    pub fn crash(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("redis.pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).output();
        }
        if let Some(mut watchdog) = self.child.take() {
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("redis.pid"));
    }

    /// Starts the server (again) on the same port, waiting until it answers. It comes back
    /// with its data (from its append-only file) and without its scripts.
    pub fn start_again(&mut self) -> Result<(), ServerError> {
        let mut args: Vec<String> = vec![
            "--port".into(),
            if self.tls {
                "0".to_owned()
            } else {
                self.port.to_string()
            },
            "--bind".into(),
            "127.0.0.1".into(),
            // Every write on disk before it is acknowledged: a crash loses nothing, as on a
            // server that must keep its data.
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "yes".into(),
            "--appendfsync".into(),
            "always".into(),
            "--dir".into(),
            self.dir.display().to_string(),
        ];
        if let Some(pw) = &self.password {
            args.extend(["--requirepass".to_owned(), pw.clone()]);
        }
        if self.tls {
            for (flag, file) in [
                ("--tls-cert-file", "server.crt"),
                ("--tls-key-file", "server.key"),
                ("--tls-ca-cert-file", "ca.crt"),
            ] {
                args.extend([flag.to_owned(), self.dir.join(file).display().to_string()]);
            }
            args.extend(["--tls-auth-clients".to_owned(), "no".to_owned()]);
            args.extend(["--tls-port".to_owned(), self.port.to_string()]);
        }
        if self.cluster {
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ]
                .map(String::from),
            );
        }
        // A watchdog shell runs the server and kills it when this process is gone, so a
        // test that dies without unwinding leaves no server behind.
        let script = format!(
            "redis-server \"$@\" > /dev/null 2>&1 & s=$!; echo $s > '{pid}'; \
             while kill -0 {me} 2>/dev/null && kill -0 $s 2>/dev/null; do sleep 0.2; done; \
             kill -9 $s 2>/dev/null; kill -0 {me} 2>/dev/null || rm -rf '{dir}'",
            pid = self.dir.join("redis.pid").display(),
            me = std::process::id(),
            dir = self.dir.display(),
        );
        self.child = Some(
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg("sh")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("redis-server cannot start: {e}"))?,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ca = self.ca_certificate().display().to_string();
            let mut flags: Vec<&str> = Vec::new();
            if let Some(pw) = &self.password {
                flags.extend(["--no-auth-warning", "-a", pw]);
            }
            if self.tls {
                flags.extend(["--tls", "--cacert", &ca]);
            }
            flags.push("ping");
            let ping = redis_cli(self.port, &flags);
            if ping.is_ok_and(|o| o.trim() == "PONG") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("redis-server on port {} did not answer", self.port))
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of `redis-server` processes of a test's own, each a master.
#[derive(Debug)]
pub struct PrivateCluster {
    nodes: Vec<PrivateRedis>,
}

impl PrivateCluster {
    /// Starts `masters` nodes (3 at least) and joins them into a cluster with every slot
    /// assigned, waiting until it reports `cluster_state:ok`.
    pub fn start(masters: usize) -> Result<Self, ServerError> {
        let nodes = (0..masters)
            .map(|_| PrivateRedis::start_node(true, None))
            .collect::<Result<Vec<_>, _>>()?;
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(nodes.iter().map(PrivateRedis::address));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(str::to_owned));
        let out = Command::new("redis-cli")
            .args(&args)
            .output()
            .map_err(|e| format!("redis-cli cannot run: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = nodes.iter().all(|n| {
                redis_cli(n.port, &["cluster", "info"])
                    .is_ok_and(|o| o.contains("cluster_state:ok"))
            });
            if ok {
                return Ok(PrivateCluster { nodes });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("the private cluster never reported cluster_state:ok".to_owned())
    }

    /// `HOST:PORT,HOST:PORT,…` of its nodes, for a `redis+cluster://` URL.
    pub fn addresses(&self) -> String {
        self.nodes
            .iter()
            .map(PrivateRedis::address)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn redis_cli(port: u16, args: &[&str]) -> Result<String, ServerError> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A free port whose cluster bus port (+10,000) is free too.
fn free_cluster_port() -> Result<u16, ServerError> {
    for _ in 0..100 {
        let port = free_port()?;
        if port <= 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port pair for a cluster node".to_owned())
}

fn free_port() -> Result<u16, ServerError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// The shared Redis as a redis-rs URL.
pub fn server_url() -> String {
    let (scheme, location) = shared_server();
    format!("{scheme}://{location}")
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A key prefix no other test uses.
pub fn fresh_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos();
    format!(
        "t{}x{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// Removes every key under `prefix`.
pub fn remove_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(server_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_connection() else {
        return;
    };
    let keys: Vec<Vec<u8>> = match redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{prefix}:*"))
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter::<Vec<u8>>(&mut conn)
    {
        Ok(iter) => iter.filter_map(Result::ok).collect(),
        Err(_) => return,
    };
    for chunk in keys.chunks(500) {
        let _: redis::RedisResult<i64> = redis::cmd("UNLINK").arg(chunk).query(&mut conn);
    }
}

/// A prefix removed on drop.
#[derive(Debug)]
pub struct FreshPrefix(pub String);

impl FreshPrefix {
    /// A prefix no other test uses.
    pub fn new() -> Self {
        FreshPrefix(fresh_prefix())
    }
}

impl Default for FreshPrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FreshPrefix {
    fn drop(&mut self) {
        remove_prefix(&self.0);
    }
}

/// Opens a store on the machine's Redis under `prefix`, with more URL parameters.
pub async fn open(
    prefix: &str,
    params: &[(&str, &str)],
) -> stowage_core::Result<crate::RedisBackend> {
    let mut p: Vec<(String, String)> = vec![("prefix".into(), prefix.into())];
    p.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (scheme, location) = shared_server();
    let config = crate::RedisConfig::from_url_parts(&scheme, &location, &p)?;
    crate::RedisBackend::connect(config).await
}

/// The conformance fixture: a prefix per store a test creates, removed with the fixture
/// (on the shared server; a private cluster goes with its processes).
#[derive(Debug)]
pub struct RedisFixture {
    scheme: String,
    /// On the shared server (prefixes to remove), not on a private cluster.
    shared: bool,
    location: String,
    clock: &'static str,
    prefixes: Mutex<Vec<FreshPrefix>>,
}

impl RedisFixture {
    /// Stores on the shared Redis and the caller's clock (the suite drives time by hand).
    pub fn new() -> Self {
        Self::with_clock("caller")
    }

    /// Stores on the shared Redis and `clock=…`.
    pub fn with_clock(clock: &'static str) -> Self {
        let (scheme, location) = shared_server();
        RedisFixture {
            scheme,
            shared: true,
            location,
            clock,
            prefixes: Mutex::new(Vec::new()),
        }
    }

    /// Stores on a Redis Cluster reached through `nodes` (`HOST:PORT,…`), caller's clock.
    pub fn cluster(nodes: String) -> Self {
        RedisFixture {
            scheme: "redis+cluster".to_owned(),
            shared: false,
            location: nodes,
            clock: "caller",
            prefixes: Mutex::new(Vec::new()),
        }
    }
}

impl Default for RedisFixture {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl stowage_testkit::Fixture for RedisFixture {
    async fn create(&self) -> stowage_core::Result<(Arc<dyn Backend>, String)> {
        let prefix = if self.shared {
            let p = FreshPrefix::new();
            let name = p.0.clone();
            self.prefixes.lock().push(p);
            name
        } else {
            fresh_prefix()
        };
        Ok((self.open(&prefix).await?, prefix))
    }

    async fn open(&self, prefix: &str) -> stowage_core::Result<Arc<dyn Backend>> {
        let params = vec![
            ("prefix".to_owned(), prefix.to_owned()),
            ("clock".to_owned(), self.clock.to_owned()),
        ];
        let config = crate::RedisConfig::from_url_parts(&self.scheme, &self.location, &params)?;
        Ok(Arc::new(crate::RedisBackend::connect(config).await?))
    }

    async fn open_second(
        &self,
        location: &str,
        _first: &Arc<dyn Backend>,
    ) -> stowage_core::Result<Arc<dyn Backend>> {
        // Another instance: a connection of its own.
        self.open(location).await
    }
}

//! A private PostgreSQL server for tests that stop or restart one (feature `testkit`).
//!
//! Tests never touch the machine's shared server beyond their own databases: one that needs
//! a server to go down starts its own with [`PrivateCluster::start`] — `initdb` in a new
//! temporary directory, run as the `postgres` system user when the test runs as root (the
//! server refuses root), listening on a free high port of 127.0.0.1 only — and stops it by
//! the pid in its `postmaster.pid`, on drop, even when the test fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::time::{Duration, Instant};

use stowage_testkit::make_certificates;
use tokio_postgres::NoTls;

/// A PostgreSQL cluster of a test's own. Dropping it kills the server and deletes its files.
#[derive(Debug)]
pub struct PrivateCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// The user the server runs as, when the test runs as root.
    user: Option<String>,
}

/// What went wrong making or driving a private cluster.
pub type ClusterError = String;

impl PrivateCluster {
    /// Makes a cluster in a new temporary directory and starts it on a free port.
    ///
    /// The server's binaries come from `STOWAGE_PG_BIN`, else `pg_config --bindir`, else the
    /// newest `/usr/lib/postgresql/*/bin`.
    pub fn start() -> Result<Self, ClusterError> {
        Self::make(false)
    }

    /// As [`PrivateCluster::start`], serving TLS too, with a certificate for `127.0.0.1`
    /// signed by a certificate authority of its own ([`PrivateCluster::ca_certificate`]);
    /// made with the `openssl` command.
    pub fn start_with_tls() -> Result<Self, ClusterError> {
        Self::make(true)
    }

    /// The PEM file of the certificate authority that signed the server's certificate.
    pub fn ca_certificate(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn make(tls: bool) -> Result<Self, ClusterError> {
        let bin = bin_dir()?;
        let root = run(Command::new("id").arg("-u"))
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let user = root.then(|| "postgres".to_owned());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("stowage-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cluster = PrivateCluster {
            dir,
            bin,
            port: free_port()?,
            user,
        };
        if tls {
            make_certificates(&cluster.dir)?;
        }
        if let Some(user) = &cluster.user {
            run(Command::new("chown").arg("-R").arg(user).arg(&cluster.dir))?;
        }
        cluster.pg(
            "initdb",
            &[
                "-D",
                &cluster.data().to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The location part of a `postgres://` URL for database `db` (`postgres` exists).
    pub fn location(&self, db: &str) -> String {
        format!("postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) -> Result<(), ClusterError> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        if self.dir.join("server.crt").exists() {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                self.dir.join("server.crt").display(),
                self.dir.join("server.key").display()
            ));
        }
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &self.dir.join("server.log").to_string_lossy(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map(drop)
    }

    /// Stops the server at once, as a crash would (`immediate`: no checkpoint, recovery at
    /// the next start), and waits until it is gone.
    pub fn crash(&self) -> Result<(), ClusterError> {
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .map(drop)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs one of the server's programs, as the server's user.
    fn pg(&self, program: &str, args: &[&str]) -> Result<Output, ClusterError> {
        let path = self.bin.join(program);
        let mut command = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        command.args(args).current_dir(&self.dir);
        run(&mut command)
    }

    /// The postmaster's pid, while it runs.
    fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SIGQUIT: immediate shutdown of the postmaster and its children; SIGKILL if it
            // is still there after a while.
            let _ = Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .output();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut Command) -> Result<Output, ClusterError> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{command:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn bin_dir() -> Result<PathBuf, ClusterError> {
    if let Ok(dir) = std::env::var("STOWAGE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(out) = run(Command::new("pg_config").arg("--bindir")) {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("no PostgreSQL binaries (set STOWAGE_PG_BIN): {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| "no PostgreSQL binaries (set STOWAGE_PG_BIN)".to_owned())
}

fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// The PostgreSQL server tests share, as sqlx reads `DATABASE_URL`: `STOWAGE_TEST_POSTGRES_URL`
/// (a `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` URL; the database is the one to connect to
/// for administration), by default [`DEFAULT_TEST_POSTGRES_URL`]. Tests make databases of their
/// own on it ([`ScratchDatabase`]) and drop them.
#[derive(Debug, Clone)]
pub struct TestServer {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The role tests connect as (it must be allowed to create databases).
    pub user: String,
    /// Its password, if the server asks for one.
    pub password: Option<String>,
    /// The database to connect to for administration.
    pub admin_db: String,
}

/// Where tests find PostgreSQL unless `STOWAGE_TEST_POSTGRES_URL` says otherwise.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

impl TestServer {
    /// The server named by `STOWAGE_TEST_POSTGRES_URL`, or the default. Panics on a URL it
    /// cannot read: a test cannot run without its server.
    pub fn from_env() -> TestServer {
        let url = std::env::var("STOWAGE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned());
        Self::parse(&url).unwrap_or_else(|e| panic!("STOWAGE_TEST_POSTGRES_URL: {e}"))
    }

    fn parse(url: &str) -> Result<TestServer, String> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => return Err("name a TCP host".into()),
        };
        Ok(TestServer {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            user: config.get_user().unwrap_or("postgres").to_owned(),
            password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            admin_db: config.get_dbname().unwrap_or("postgres").to_owned(),
        })
    }

    /// The location part of a Stowage `postgres://` URL for database `db` on this server.
    pub fn location(&self, db: &str) -> String {
        let secret = self
            .password
            .as_deref()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!("{}{secret}@{}:{}/{db}", self.user, self.host, self.port)
    }

    /// A libpq key-value connection string for database `db` (`None`: the admin database).
    pub fn conninfo(&self, db: Option<&str>) -> String {
        let secret = self
            .password
            .as_deref()
            .map(|p| format!(" password={p}"))
            .unwrap_or_default();
        format!(
            "host={} port={} user={}{secret} dbname={}",
            self.host,
            self.port,
            self.user,
            db.unwrap_or(&self.admin_db)
        )
    }
}

/// A database of its own on the shared server ([`TestServer::from_env`]), for a benchmark or
/// a test: made with `createdb`, dropped with `dropdb --force` on drop, even when the caller
/// fails.
#[derive(Debug)]
pub struct ScratchDatabase {
    name: String,
}

impl ScratchDatabase {
    /// Makes `NAME_<pid>_<nanos>`.
    pub fn create(name: &str) -> Result<Self, ClusterError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_nanos()
            % 1_000_000_000;
        let db = ScratchDatabase {
            name: format!("{name}_{}_{nanos}", std::process::id()),
        };
        let out = Self::client_command("createdb")
            .arg(&db.name)
            .output()
            .map_err(|e| format!("createdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "createdb {}: {}",
                db.name,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(db)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The location part of a `postgres://` URL for it (`USER@HOST:PORT/NAME`).
    pub fn location(&self) -> String {
        TestServer::from_env().location(&self.name)
    }

    /// `createdb` or `dropdb` aimed at the shared server.
    fn client_command(program: &str) -> Command {
        let server = TestServer::from_env();
        let mut command = Command::new(program);
        command
            .args(["-h", &server.host, "-p", &server.port.to_string()])
            .args(["-U", &server.user, "--maintenance-db", &server.admin_db]);
        if let Some(password) = &server.password {
            command.env("PGPASSWORD", password);
        }
        command
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let _ = Self::client_command("dropdb")
            .args(["--force", &self.name])
            .output();
    }
}

/// A database made for one test; dropped (with `WITH (FORCE)`) on drop.
#[derive(Debug)]
pub struct FreshDatabase {
    /// Its name.
    pub name: String,
}

impl FreshDatabase {
    /// Creates `stowage_test_<pid>_<nanos>`.
    pub async fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos();
        let name = format!("stowage_test_{}_{nanos}", std::process::id());
        admin(&format!("CREATE DATABASE \"{name}\"")).await;
        FreshDatabase { name }
    }

    /// The location part of a `postgres://` URL for this database.
    pub fn location(&self) -> String {
        TestServer::from_env().location(&self.name)
    }

    /// A plain connection to this database, to look at what Stowage wrote.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(Some(&self.name)).await
    }
}

/// A plain connection to database `db` (`None`: the admin database) on the shared server.
pub async fn connect(db: Option<&str>) -> tokio_postgres::Client {
    let server = TestServer::from_env();
    let (client, connection) = tokio_postgres::connect(&server.conninfo(db), NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL must run at STOWAGE_TEST_POSTGRES_URL ({}:{}): {e}",
                server.host, server.port
            )
        });
    tokio::spawn(connection);
    client
}

async fn admin(sql: &str) {
    connect(None)
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        // Drop cannot await: a thread with its own runtime does the cleanup.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(admin(&sql));
        })
        .join();
    }
}

/// The conformance fixture: a database per store a test creates, dropped with the
/// fixture. `clock` is the `clock=` URL parameter the stores take.
#[derive(Debug)]
pub struct PostgresFixture {
    clock: &'static str,
    databases: tokio::sync::Mutex<Vec<FreshDatabase>>,
}

impl PostgresFixture {
    /// Stores on the caller's clock (the suite drives time by hand).
    pub fn new() -> Self {
        Self::with_clock("caller")
    }

    /// Stores on `clock=…`.
    pub fn with_clock(clock: &'static str) -> Self {
        PostgresFixture {
            clock,
            databases: tokio::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Default for PostgresFixture {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl stowage_testkit::Fixture for PostgresFixture {
    async fn create(
        &self,
    ) -> stowage_core::Result<(std::sync::Arc<dyn stowage_core::backend::Backend>, String)> {
        let db = FreshDatabase::new().await;
        let location = db.location();
        self.databases.lock().await.push(db);
        Ok((self.open(&location).await?, location))
    }

    async fn open(
        &self,
        location: &str,
    ) -> stowage_core::Result<std::sync::Arc<dyn stowage_core::backend::Backend>> {
        let params = [("clock".to_owned(), self.clock.to_owned())];
        let config = crate::PostgresConfig::from_url_parts(location, &params)?;
        Ok(std::sync::Arc::new(
            crate::PostgresBackend::connect(config).await?,
        ))
    }

    async fn open_second(
        &self,
        location: &str,
        _first: &std::sync::Arc<dyn stowage_core::backend::Backend>,
    ) -> stowage_core::Result<std::sync::Arc<dyn stowage_core::backend::Backend>> {
        // Another instance: a pool of its own.
        self.open(location).await
    }
}

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
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let user = root.then(|| "postgres".to_owned());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
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

/// A database of its own on the machine's shared server (127.0.0.1:5432, user `postgres`),
/// for a benchmark or a test: made with `createdb`, dropped with `dropdb --force` on drop,
/// even when the caller fails. `STOWAGE_PG` overrides the server (`HOST:PORT`).
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
        let (host, port) = db.server();
        let out = Command::new("createdb")
            .args(["-h", &host, "-p", &port, "-U", "postgres", &db.name])
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

    fn server(&self) -> (String, String) {
        let server = std::env::var("STOWAGE_PG").unwrap_or_else(|_| "127.0.0.1:5432".into());
        match server.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.to_owned()),
            None => (server, "5432".to_owned()),
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The location part of a `postgres://` URL for it (`postgres@HOST:PORT/NAME`).
    pub fn location(&self) -> String {
        let (host, port) = self.server();
        format!("postgres@{host}:{port}/{}", self.name)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (host, port) = self.server();
        let _ = Command::new("dropdb")
            .args([
                "-h", &host, "-p", &port, "-U", "postgres", "--force", &self.name,
            ])
            .output();
    }
}

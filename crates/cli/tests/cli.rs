//! The `stowage` binary: serving, a graceful stop under load, and the shell commands.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const STOWAGE: &str = env!("CARGO_BIN_EXE_stowage");

/// Starts `stowage serve` on port 0 and returns it with the address it printed.
async fn serve(dir: &Path, extra: &[&str]) -> (Child, String) {
    serve_url(&format!("redb://{}/store.redb", dir.display()), extra).await
}

/// Starts `stowage serve --url URL` on port 0 and returns it with the address it printed.
async fn serve_url(url: &str, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(STOWAGE)
        .args(["serve", "--url", url, "--addr", "127.0.0.1:0"])
        .args(extra)
        .env_remove("STOWAGE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = line.split(" on ").nth(1).unwrap().trim().to_owned();
    assert!(line.starts_with("stowage: serving redb://"), "{line}");
    (child, base)
}

fn sigterm(child: &Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = serve(dir.path(), &[]).await;
    let c = Client::new();
    let r = c
        .put(format!("{base}/v1/app/collections/events"))
        .body(r#"{"indexes":[{"name":"n","path":"/n","type":"integer"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (c, base, acked) = (Client::new(), base.clone(), acked.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let id = format!("w{w}-{i}");
                    let r = c
                        .put(format!("{base}/v1/app/events/records/{id}"))
                        .json(&json!({"n": i}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == StatusCode::CREATED => {
                            acked.lock().unwrap().push(id);
                        }
                        // The server is going away: connections close or are refused.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "stowage exits cleanly on SIGTERM: {status}"
    );
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "the load ran ({} writes)", acked.len());
    let (_child, base) = serve(dir.path(), &[]).await;
    for id in &acked {
        let r = c
            .get(format!("{base}/v1/app/events/records/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "acknowledged {id} is lost");
    }
    let count: serde_json::Value = c
        .post(format!("{base}/v1/app/events/count"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(count["count"].as_u64().unwrap() >= acked.len() as u64);
}

#[tokio::test]
async fn a_public_address_without_tokens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(STOWAGE)
        .args(["serve", "--url", "memory://", "--addr", "0.0.0.0:0"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without tokens"), "{err}");
}

#[tokio::test]
async fn shell_commands_put_get_query_stats() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}/cli.redb", dir.path().display());
    let run = |args: Vec<String>| async move {
        let out = Command::new(STOWAGE).args(&args).output().await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let a = |s: &[&str]| {
        s.iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>()
    };
    let (ok, out, _) = run(a(&[
        "put",
        "--url",
        &url,
        "notes",
        "n1",
        r#"{"text":"hello"}"#,
    ]))
    .await;
    assert!(ok && out.contains("version 1"), "{out}");
    let (ok, out, _) = run(a(&["get", "--url", &url, "notes", "n1"])).await;
    assert!(ok && out.contains("\"hello\""), "{out}");
    let (ok, out, _) = run(a(&["query", "--url", &url, "notes", r#"{"limit":10}"#])).await;
    assert!(ok && out.contains("\"n1\""), "{out}");
    let (ok, out, _) = run(a(&["stats", &url, "--json"])).await;
    assert!(ok && out.contains(r#""collection": "notes""#), "{out}");
    assert!(out.contains(r#""records": 1"#), "{out}");
    let (ok, _, err) = run(a(&["get", "--url", &url, "notes", "missing"])).await;
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, _, err) = run(a(&["put", "--url", &url, "notes", "n2", "{broken"])).await;
    assert!(!ok && err.contains("not valid JSON"), "{err}");
    let (ok, out, _) = run(a(&["hash-token", "secret"])).await;
    assert!(ok && out.trim().len() == 64);
    let (ok, out, _) = run(a(&["--help"])).await;
    assert!(ok && out.contains("serve") && out.contains("hash-token"));
}

/// `--log-format json` writes one JSON object per line to stderr: start, one line per
/// request with the route template (never the path, which holds ids), and stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_logs_name_routes_not_paths() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}/store.redb", dir.path().display());
    let mut child = Command::new(STOWAGE)
        .args([
            "serve",
            "--url",
            &url,
            "--addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env_remove("STOWAGE_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = line.split(" on ").nth(1).unwrap().trim().to_owned();
    let r = Client::new()
        .get(format!("{base}/v1/app/secret-collection/records/secret-id"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Read until the request's line is in, then stop the server and read the rest.
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = Vec::new();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), err.next_line())
            .await
            .expect("a log line within 30 s")
            .expect("stderr is readable")
    };
    while !lines.iter().any(|l: &String| l.contains("\"request\"")) {
        lines.push(
            next()
                .await
                .unwrap_or_else(|| panic!("stderr ended: {lines:?}")),
        );
    }
    sigterm(&child);
    while let Some(l) = next().await {
        lines.push(l);
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status}: {lines:?}");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let request = events
        .iter()
        .find(|e| e["message"] == "request")
        .unwrap_or_else(|| panic!("no request line in {lines:?}"));
    assert_eq!(
        request["route"], "/v1/{ns}/{coll}/records/{id}",
        "{lines:?}"
    );
    assert_eq!(
        (request["method"].as_str(), request["status"].as_u64()),
        (Some("GET"), Some(404)),
        "{lines:?}"
    );
    assert!(
        events.iter().any(|e| e["message"] == "serving"),
        "{lines:?}"
    );
    assert!(
        events.iter().any(|e| e["message"] == "stopped"),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("secret")), "{lines:?}");
}

/// Runs `stowage serve` on a memory store until it has logged that it serves, with stderr
/// into a file or (`terminal`) stdout and stderr on a pseudo-terminal whose output goes
/// to the file; stops it and returns the file.
async fn serve_log(format: &str, no_color: Option<&str>, terminal: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let serve = [
        STOWAGE,
        "serve",
        "--url",
        "memory://",
        "--addr",
        "127.0.0.1:0",
        "--log-format",
        format,
    ];
    let mut cmd = if terminal {
        // util-linux `script` gives the server a pseudo-terminal for stdout and stderr;
        // `timeout` bounds it should the hang-up not reach it.
        let mut c = Command::new("script");
        c.args([
            "-qec",
            &format!("timeout 20 {}", serve.join(" ")),
            "/dev/null",
        ]);
        c.stdout(std::fs::File::create(&log).unwrap());
        c
    } else {
        let mut c = Command::new(serve[0]);
        c.args(&serve[1..]);
        c.stdout(Stdio::null());
        c.stderr(std::fs::File::create(&log).unwrap());
        c
    };
    cmd.env_remove("STOWAGE_CONFIG")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("INFO") && l.contains("serving"))
        {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no serving line: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if !terminal {
        sigterm(&child);
        assert!(child.wait().await.unwrap().success());
    }
    child.kill().await.ok();
    text
}

/// Logs written to a file carry no terminal colours, in text or JSON (`stowage serve 2>
/// serve.log`), and JSON lines stay JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_into_a_file_have_no_colour() {
    for format in ["text", "json"] {
        let text = serve_log(format, None, false).await;
        assert!(!text.contains('\u{1b}'), "{format}: {text:?}");
        assert!(text.contains("INFO"), "{format}: {text:?}");
        if format == "json" {
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
            }
        }
    }
}

/// At a terminal the text log is coloured — unless `NO_COLOR` is set to anything but the
/// empty string; JSON never is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_colour_unless_no_color_is_set() {
    let coloured = serve_log("text", None, true).await;
    assert!(coloured.contains('\u{1b}'), "{coloured:?}");
    let empty = serve_log("text", Some(""), true).await;
    assert!(
        empty.contains('\u{1b}'),
        "an empty NO_COLOR counts as unset: {empty:?}"
    );
    for (format, no_color) in [("text", Some("1")), ("json", None)] {
        let text = serve_log(format, no_color, true).await;
        assert!(!text.contains('\u{1b}'), "{format} {no_color:?}: {text:?}");
    }
}

/// The key ring from the shell: `keyring new`, records put through `--keyring` reach the
/// file sealed, `serve --keyring` reads them, `keyring rotate`, `rekey` (resuming from a
/// checkpoint file left by an interrupted run), `keyring retire`, and everything still
/// reads; without the ring nothing is shown in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_rotate_rekey_and_retire_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sealed.redb");
    let url = format!("redb://{}", db.display());
    let ring = dir.path().join("ring");
    let ring_s = ring.to_str().unwrap().to_owned();
    let run = |args: Vec<String>| async move {
        let out = Command::new(STOWAGE)
            .args(&args)
            .env_remove("STOWAGE_KEYRING")
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let a = |s: &[&str]| {
        s.iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>()
    };
    let (ok, out, _) = run(a(&["keyring", "new", &ring_s])).await;
    assert!(ok && out.contains("with key 1"), "{out}");
    let (ok, _, err) = run(a(&["keyring", "new", &ring_s])).await;
    assert!(!ok && err.contains("never overwritten"), "{err}");
    for i in 0..3 {
        let body = format!(r#"{{"secret":"plaintext-marker-{i}"}}"#);
        let id = format!("n{i}");
        let (ok, out, err) = run(a(&[
            "put",
            "--url",
            &url,
            "--keyring",
            &ring_s,
            "notes",
            &id,
            &body,
        ]))
        .await;
        assert!(ok && out.contains("version 1"), "{out} {err}");
    }
    let bytes = std::fs::read(&db).unwrap();
    assert!(!bytes.windows(17).any(|w| w == b"plaintext-marker-"));
    let (ok, out, _) = run(a(&["get", "--url", &url, "notes", "n1"])).await;
    assert!(!out.contains("plaintext-marker"), "{ok} {out}");

    // `serve --keyring` opens the sealed records.
    let (mut child, base) = serve_url(&url, &["--keyring", &ring_s]).await;
    let got: serde_json::Value = Client::new()
        .get(format!("{base}/v1/default/notes/records/n2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["secret"], "plaintext-marker-2");
    sigterm(&child);
    child.wait().await.unwrap();

    let (ok, out, _) = run(a(&["keyring", "rotate", &ring_s])).await;
    assert!(ok && out.contains("key 2 added"), "{out}");
    let (ok, out, _) = run(a(&["keyring", "list", &ring_s])).await;
    assert!(
        ok && out.contains("key 1\n") && out.contains("key 2 (newest"),
        "{out}"
    );
    let text = std::fs::read_to_string(&ring).unwrap();
    assert!(!out.contains(text.lines().last().unwrap().split(' ').nth(2).unwrap()));
    // A checkpoint an interrupted run left: the rekey resumes after n0.
    let checkpoint = format!("{ring_s}.rekey");
    std::fs::write(
        &checkpoint,
        r#"{"key":2,"namespace":"default","collection":"notes","after":"n0","records":1,"changed_meanwhile":0}"#,
    )
    .unwrap();
    let (ok, out, err) = run(a(&["rekey", "--url", &url, "--keyring", &ring_s])).await;
    assert!(err.contains("resuming after default/notes/n0"), "{err}");
    // n0 was skipped (the checkpoint says it was done): the check at the end finds it.
    assert!(out.contains("3 records rewritten under key 2"), "{out}");
    assert!(!ok && err.contains("1 under key 1"), "{out} {err}");
    let (ok, out, err) = run(a(&["rekey", "--url", &url, "--keyring", &ring_s])).await;
    assert!(ok, "{out} {err}");
    assert!(out.contains("3 records rewritten under key 2"), "{out}");
    assert!(out.contains("every record is sealed with key 2"), "{out}");
    assert!(!Path::new(&checkpoint).exists());
    let (ok, _, err) = run(a(&["keyring", "retire", &ring_s, "2"])).await;
    assert!(!ok && err.contains("newest"), "{err}");
    let (ok, out, _) = run(a(&["keyring", "retire", &ring_s, "1"])).await;
    assert!(ok && out.contains("key 1 retired"), "{out}");
    for i in 0..3 {
        let id = format!("n{i}");
        let (ok, out, err) = run(a(&[
            "get",
            "--url",
            &url,
            "--keyring",
            &ring_s,
            "notes",
            &id,
        ]))
        .await;
        assert!(
            ok && out.contains(&format!("plaintext-marker-{i}")),
            "{out} {err}"
        );
    }

    // Shredding one namespace: its records are gone for good, the others read.
    let (ok, _, err) = run(a(&[
        "put",
        "--url",
        &url,
        "--keyring",
        &ring_s,
        "--namespace",
        "tenant",
        "notes",
        "t1",
        r#"{"x":1}"#,
    ]))
    .await;
    assert!(ok, "{err}");
    let (ok, out, err) = run(a(&["shred", "--url", &url, "tenant"])).await;
    assert!(
        ok && out.contains("namespace tenant shredded"),
        "{out} {err}"
    );
    assert!(out.contains("1 collections of tenant dropped"), "{out}");
    let (ok, _, err) = run(a(&["shred", "--url", &url, "tenant"])).await;
    assert!(!ok && err.contains("no data keys"), "{err}");
    let (ok, _, err) = run(a(&[
        "get",
        "--url",
        &url,
        "--keyring",
        &ring_s,
        "--namespace",
        "tenant",
        "notes",
        "t1",
    ]))
    .await;
    assert!(!ok && err.contains("not"), "{err}");
    let (ok, out, _) = run(a(&[
        "get",
        "--url",
        &url,
        "--keyring",
        &ring_s,
        "notes",
        "n0",
    ]))
    .await;
    assert!(ok && out.contains("plaintext-marker-0"), "{out}");
}

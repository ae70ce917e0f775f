//! The HTTP API end to end: a real server on port 0, a real client.

// A test is one scenario, read top to bottom: its length is its story.
#![allow(clippy::too_many_lines)]
// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use stowage_core::{ManualClock, MemoryBackend, Store, Timestamp};
use stowage_server::{hash_token, MetricsLayer, Right, ServerConfig, TokenConfig};
use tokio::sync::oneshot;

/// Sending in tests: a failed send is a failed test.
trait Fetch {
    async fn fetch(self) -> reqwest::Response;
    async fn fetch_json(self) -> serde_json::Value;
}

impl Fetch for reqwest::RequestBuilder {
    async fn fetch(self) -> reqwest::Response {
        self.send().await.unwrap()
    }
    async fn fetch_json(self) -> serde_json::Value {
        self.fetch().await.json().await.unwrap()
    }
}

struct Server {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<stowage_core::Result<()>>,
}

impl Server {
    /// A server over a memory store with the metrics layer, as `stowage serve` builds it.
    async fn start(config: ServerConfig) -> Server {
        let store = Store::builder(Arc::new(MemoryBackend::new()))
            .layer(|b| Arc::new(MetricsLayer::new(b)))
            .build()
            .unwrap();
        Server::start_with(config, store).await
    }

    async fn start_with(config: ServerConfig, store: Store) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(stowage_server::serve_with(
            listener,
            store,
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            base,
            stop: Some(stop),
            done,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.done.await.unwrap().unwrap();
    }
}

const SPEC: &str = r#"{"indexes":[
    {"name":"severity","path":"/severity","type":"string"},
    {"name":"state","path":"/state","type":"string"},
    {"name":"source","path":"/source","type":"string"},
    {"name":"created_at","path":"/created_at","type":"timestamp","covering":true},
    {"name":"fingerprint","path":"/fingerprint","type":"string","unique":true}]}"#;

async fn with_incidents(s: &Server, c: &Client) {
    let r = c
        .put(s.url("/v1/app/collections/incidents"))
        .body(SPEC)
        .fetch()
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn error_kind(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (status, body["error"].clone())
}

#[tokio::test]
async fn collection_routes() {
    let s = Server::start(ServerConfig::default()).await;
    let c = Client::new();
    with_incidents(&s, &c).await;
    let again = c
        .put(s.url("/v1/app/collections/incidents"))
        .body(SPEC)
        .fetch()
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let spec: Value = c
        .get(s.url("/v1/app/collections/incidents"))
        .fetch_json()
        .await;
    assert_eq!(spec["indexes"][4]["unique"], true);
    assert_eq!(spec["indexes"][3]["covering"], true);
    assert!(spec["indexes"][2].get("covering").is_none());
    let list: Value = c.get(s.url("/v1/app/collections")).fetch_json().await;
    assert_eq!(list["collections"][0]["name"], "incidents");
    let r = c
        .put(s.url("/v1/app/collections/bad"))
        .body(r#"{"indexes":[{"name":"a","path":"a","type":"string"}]}"#)
        .fetch()
        .await;
    let (status, e) = error_kind(r).await;
    assert_eq!(
        (status, e["kind"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_input"))
    );
    assert!(e["message"].as_str().unwrap().contains("JSON pointer"));
    let r = c
        .put(s.url("/v1/app/collections/collections"))
        .body("{}")
        .fetch()
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        c.delete(s.url("/v1/app/collections/incidents"))
            .fetch()
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (status, e) = error_kind(c.get(s.url("/v1/app/collections/incidents")).fetch().await).await;
    assert_eq!(
        (status, e["kind"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    assert_eq!(
        c.delete(s.url("/v1/app/collections/incidents"))
            .fetch()
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test]
async fn records_with_etags_preconditions_and_ttl() {
    let s = Server::start(ServerConfig::default()).await;
    let c = Client::new();
    with_incidents(&s, &c).await;
    let rec = s.url("/v1/app/incidents/records/i-1");
    let r = c
        .put(&rec)
        .json(&json!({"severity": "P0", "fingerprint": "f1"}))
        .fetch()
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["etag"], "\"1\"");
    let r = c.get(&rec).fetch().await;
    assert_eq!(r.headers()["etag"], "\"1\"");
    assert!(r.headers().get("x-expires-at").is_none());
    assert_eq!(r.json::<Value>().await.unwrap()["severity"], "P0");
    let r = c
        .put(&rec)
        .json(&json!({"severity": "P1", "fingerprint": "f1"}))
        .fetch()
        .await;
    assert_eq!(
        (r.status(), r.headers()["etag"].to_str().unwrap()),
        (StatusCode::OK, "\"2\"")
    );
    let r = c
        .put(&rec)
        .header("If-Match", "\"1\"")
        .json(&json!({"severity": "P2"}))
        .fetch()
        .await;
    let (status, e) = error_kind(r).await;
    assert_eq!(
        (status, e["kind"].as_str(), e["current_version"].as_u64()),
        (StatusCode::PRECONDITION_FAILED, Some("conflict"), Some(2))
    );
    let r = c
        .put(&rec)
        .header("If-Match", "\"2\"")
        .json(&json!({"severity": "P2", "fingerprint": "f1"}))
        .fetch()
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .put(&rec)
        .header("If-None-Match", "*")
        .json(&json!({}))
        .fetch()
        .await;
    assert_eq!(error_kind(r).await.0, StatusCode::CONFLICT);
    let r = c
        .put(s.url("/v1/app/incidents/records/i-2"))
        .json(&json!({"fingerprint": "f1"}))
        .fetch()
        .await;
    let (status, e) = error_kind(r).await;
    assert_eq!(
        (status, e["index"].as_str()),
        (StatusCode::CONFLICT, Some("fingerprint"))
    );
    let r = c
        .put(&rec)
        .header("If-Match", "seven")
        .json(&json!({}))
        .fetch()
        .await;
    assert_eq!(error_kind(r).await.0, StatusCode::BAD_REQUEST);
    let r = c.delete(&rec).header("If-Match", "\"1\"").fetch().await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        c.delete(&rec).fetch().await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(c.delete(&rec).fetch().await.status(), StatusCode::NOT_FOUND);
    assert_eq!(c.get(&rec).fetch().await.status(), StatusCode::NOT_FOUND);
    let ttl = s.url("/v1/app/incidents/records/short?ttl=60");
    assert_eq!(
        c.put(&ttl).json(&json!({})).fetch().await.status(),
        StatusCode::CREATED
    );
    let r = c
        .get(s.url("/v1/app/incidents/records/short"))
        .fetch()
        .await;
    let expires = r.headers()["x-expires-at"].to_str().unwrap().to_owned();
    assert!(
        stowage_core::Timestamp::parse_rfc3339(&expires).is_ok(),
        "{expires}"
    );
    // Ids are percent-decoded path segments; slashes and unicode included.
    let odd = s.url("/v1/app/incidents/records/a%2Fb%20%F0%9F%A6%80");
    assert_eq!(
        c.put(&odd).json(&json!({"x": 1})).fetch().await.status(),
        StatusCode::CREATED
    );
    let got: Value = c.get(&odd).fetch_json().await;
    assert_eq!(got["x"], 1);
    s.stop().await;
}

#[tokio::test]
async fn listing_query_count_and_batch() {
    let s = Server::start(ServerConfig::default()).await;
    let c = Client::new();
    with_incidents(&s, &c).await;
    for i in 0..30 {
        let (severity, state) = (
            ["P0", "P1", "P2"][i % 3],
            ["Active", "Open", "Closed"][i % 3],
        );
        let body = json!({
            "severity": severity, "state": state,
            "source": if i % 2 == 0 { "llm-gateway" } else { "billing" },
            "created_at": format!("2024-03-{:02}T00:00:00Z", i + 1), "fingerprint": format!("f{i}")});
        let r = c
            .put(s.url(&format!("/v1/app/incidents/records/inc-{i:02}")))
            .json(&body)
            .fetch()
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Listing by prefix with cursors.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = s.url(&format!(
            "/v1/app/incidents/records?prefix=inc-1&limit=4&cursor={cursor}"
        ));
        let page: Value = c.get(url).fetch_json().await;
        for it in page["items"].as_array().unwrap() {
            seen.push(it["id"].as_str().unwrap().to_owned());
            assert!(it["version"].as_u64().is_some() && it["body"].is_object());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (10..20).map(|i| format!("inc-{i}")).collect::<Vec<_>>()
    );
    // The issue's query shape.
    let q = json!({"where": {"severity": {"eq": "P0"}, "state": {"in": ["Active", "Open"]},
                             "created_at": {"gte": "2024-03-01T00:00:00Z", "lt": "2024-03-31T00:00:00Z"},
                             "source": {"prefix": "llm-"}},
                   "order_by": "created_at", "desc": true, "limit": 50, "cursor": null});
    let page: Value = c
        .post(s.url("/v1/app/incidents/query"))
        .json(&q)
        .fetch_json()
        .await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["inc-24", "inc-18", "inc-12", "inc-06", "inc-00"]);
    let n: Value = c
        .post(s.url("/v1/app/incidents/count"))
        .json(&json!({"where": q["where"]}))
        .fetch_json()
        .await;
    assert_eq!(n["count"], 5);
    let r = c
        .post(s.url("/v1/app/incidents/query"))
        .json(&json!({"where": {"nope": {"eq": 1}}}))
        .fetch()
        .await;
    assert_eq!(error_kind(r).await.0, StatusCode::BAD_REQUEST);
    // An atomic batch: all or nothing, naming the failing op.
    let ok = json!({"ops": [
        {"op": "insert", "collection": "incidents", "id": "b-1", "body": {"fingerprint": "b1"}},
        {"op": "update", "collection": "incidents", "id": "inc-00", "body": {"fingerprint": "f0"}, "if_version": 1},
        {"op": "delete", "collection": "incidents", "id": "inc-01"},
        {"op": "upsert", "collection": "incidents", "id": "b-2", "body": {}, "ttl": 60}]});
    let r: Value = c.post(s.url("/v1/app/batch")).json(&ok).fetch_json().await;
    // The delete raised the collection's version floor to 1: b-2 starts above it.
    assert_eq!(r["versions"], json!([1, 2, 1, 2]));
    let bad = json!({"ops": [
        {"op": "insert", "collection": "incidents", "id": "b-3", "body": {}},
        {"op": "update", "collection": "incidents", "id": "inc-02", "body": {}, "if_version": 9}]});
    let (status, e) = error_kind(c.post(s.url("/v1/app/batch")).json(&bad).fetch().await).await;
    assert_eq!(
        (status, e["op"].as_u64()),
        (StatusCode::PRECONDITION_FAILED, Some(1))
    );
    assert_eq!(
        c.get(s.url("/v1/app/incidents/records/b-3"))
            .fetch()
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let unknown = json!({"ops": [{"op": "insert", "collection": "incidents", "id": "x", "body": {}}, {"op": "smash", "collection": "incidents", "id": "y"}]});
    let (status, e) = error_kind(c.post(s.url("/v1/app/batch")).json(&unknown).fetch().await).await;
    assert_eq!(
        (status, e["op"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(1))
    );
    s.stop().await;
    // A backend without a change feed answers 501 to watches.
    let mut caps = MemoryBackend::full_capabilities();
    caps.change_feed = stowage_core::ChangeFeed::None;
    let store = Store::from_backend(Arc::new(MemoryBackend::with_capabilities(caps)));
    let s = Server::start_with(ServerConfig::default(), store).await;
    with_incidents(&s, &c).await;
    let r = c.get(s.url("/v1/app/incidents/watch")).fetch().await;
    assert_eq!(error_kind(r).await.0, StatusCode::NOT_IMPLEMENTED);
    s.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_4xx() {
    let mut config = ServerConfig::default();
    config.limits.body_bytes = 1024;
    let s = Server::start(config).await;
    let c = Client::new();
    with_incidents(&s, &c).await;
    let rec = s.url("/v1/app/incidents/records/x");
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            c.put(&rec).body("{not json"),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            c.put(&rec).json(&json!({"created_at": 5})),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            c.put(&rec).body(format!("\"{}\"", "x".repeat(5000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            c.put(s.url(&format!("/v1/app/incidents/records/{}", "i".repeat(513))))
                .json(&json!({})),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            c.put(format!("{rec}?ttl=soon")).json(&json!({})),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            c.get(s.url("/v1/app/nothing/records/x")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            c.get(s.url("/v1/bad%20ns/incidents/records/x")),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            c.post(s.url("/v1/app/incidents/query"))
                .json(&json!({"limit": "ten"})),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            c.post(s.url("/v1/app/incidents/query"))
                .json(&json!({"cursor": "garbage"})),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            c.post(s.url("/v1/app/incidents/query"))
                .json(&json!({"limit": 2.5})),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            c.get(s.url("/v1/app/incidents/watch"))
                .header("last-event-id", "1234567890123456789"),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            c.get(s.url("/v1/app/incidents/watch?after=1000000000000000000")),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            c.put(s.url("/v1/app/collections/incidents")).json(
                &json!({"indexes": [{"name": "a", "path": "/a", "type": "string"},
                                    {"name": "a", "path": "/b", "type": "string"}]}),
            ),
            StatusCode::CONFLICT,
            "already_exists",
        ),
        (
            c.get(s.url("/no/such/route")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (i, (req, status, kind)) in cases.into_iter().enumerate() {
        let r = req.fetch().await;
        let (got, e) = error_kind(r).await;
        assert_eq!(
            (got, e["kind"].as_str()),
            (status, Some(kind)),
            "case {i}: {e}"
        );
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        c.get(&rec).fetch().await.status(),
        StatusCode::NOT_FOUND,
        "nothing was written"
    );
    s.stop().await;
}

#[tokio::test]
async fn operations_endpoints() {
    let s = Server::start(ServerConfig::default()).await;
    let c = Client::new();
    assert_eq!(
        c.get(s.url("/healthz")).fetch().await.status(),
        StatusCode::OK
    );
    let ready: Value = c.get(s.url("/readyz")).fetch_json().await;
    assert_eq!(
        (ready["status"].as_str(), ready["backend"].as_str()),
        (Some("ready"), Some("memory"))
    );
    assert!(ready["latency_ms"].as_f64().is_some());
    with_incidents(&s, &c).await;
    c.get(s.url("/v1/app/incidents/records/x")).fetch().await;
    let metrics = c.get(s.url("/metrics")).fetch().await.text().await.unwrap();
    assert!(metrics.contains("stowage_http_requests_total"), "{metrics}");
    assert!(
        metrics.contains("route=\"/v1/{ns}/{coll}/records/{id}\""),
        "{metrics}"
    );
    assert!(metrics.contains("stowage_http_request_duration_seconds_bucket"));
    assert!(metrics.contains("stowage_backend_operations_total"));
    assert!(
        metrics.contains("namespace=\"app\"") && metrics.contains("collection=\"incidents\""),
        "{metrics}"
    );
    let doc: Value = c.get(s.url("/openapi.json")).fetch_json().await;
    assert_eq!(doc["openapi"], "3.1.0");
    // Without tokens configured, the document says no token is needed.
    assert_eq!(doc["security"], json!([{}, {"bearer": []}]));
    for p in [
        "/v1/{ns}/collections/{coll}",
        "/v1/{ns}/{coll}/records/{id}",
        "/v1/{ns}/{coll}/query",
        "/v1/{ns}/batch",
        "/v1/{ns}/{coll}/watch",
        "/v1/{ns}/watch",
        "/v1/{ns}/{coll}/delete",
        "/metrics",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} is documented");
    }
    // A store without an encrypting codec has no blind indexes: the document leaves the
    // field out, and a spec asking for one is a client error saying what is missing.
    let ix = &doc["components"]["schemas"]["IndexSpec"]["properties"];
    assert!(ix["covering"].is_object() && ix["blind"].is_null(), "{ix}");
    let r = c
        .put(s.url("/v1/app/collections/people"))
        .json(&json!({"indexes": [{"name": "email", "path": "/email", "type": "string", "blind": true}]}))
        .fetch()
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--keyring"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn tokens_scope_namespaces_and_rights() {
    let token = |secret: &str, ns: &str, right| TokenConfig {
        sha256: hash_token(secret),
        namespaces: vec![ns.to_owned()],
        right,
    };
    let config = ServerConfig {
        tokens: vec![
            token("root", "*", Right::Admin),
            token("writer", "app", Right::Write),
            token("reader", "app", Right::Read),
        ],
        ..ServerConfig::default()
    };
    let s = Server::start(config).await;
    let c = Client::new();
    // With tokens configured, the document requires one.
    let doc: Value = c.get(s.url("/openapi.json")).fetch_json().await;
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    let spec = s.url("/v1/app/collections/incidents");
    let rec = s.url("/v1/app/incidents/records/r1");
    let send = |req: reqwest::RequestBuilder, bearer: Option<&str>| {
        let req = match bearer {
            Some(b) => req.bearer_auth(b),
            None => req,
        };
        async move { req.fetch().await.status() }
    };
    assert_eq!(
        send(c.put(&spec).body(SPEC), None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(c.put(&spec).body(SPEC), Some("guess")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(c.put(&spec).body(SPEC), Some("writer")).await,
        StatusCode::FORBIDDEN,
        "write cannot change collections"
    );
    assert_eq!(
        send(c.put(&spec).body(SPEC), Some("root")).await,
        StatusCode::CREATED
    );
    assert_eq!(
        send(c.put(&rec).json(&json!({})), Some("reader")).await,
        StatusCode::FORBIDDEN,
        "a read-only token writing"
    );
    assert_eq!(
        send(c.put(&rec).json(&json!({})), Some("writer")).await,
        StatusCode::CREATED
    );
    assert_eq!(send(c.get(&rec), Some("reader")).await, StatusCode::OK);
    assert_eq!(send(c.get(&rec), None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(c.get(s.url("/v1/other/collections")), Some("writer")).await,
        StatusCode::FORBIDDEN,
        "wrong namespace"
    );
    assert_eq!(
        send(c.get(s.url("/v1/other/collections")), Some("root")).await,
        StatusCode::OK
    );
    assert_eq!(send(c.get(s.url("/healthz")), None).await, StatusCode::OK);
    let r = c.get(&rec).fetch().await;
    assert_eq!(error_kind(r).await.1["kind"], "unauthorized");
    s.stop().await;
}

#[tokio::test]
async fn public_address_needs_tokens() {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let store = Store::from_backend(Arc::new(MemoryBackend::new()));
    let e = stowage_server::serve(listener, store, async {})
        .await
        .unwrap_err();
    assert_eq!(e.kind(), stowage_core::ErrorKind::InvalidInput);
    assert!(e.message().contains("without tokens"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_counter_over_http() {
    let s = Server::start(ServerConfig::default()).await;
    let c = Client::new();
    c.put(s.url("/v1/app/collections/counters"))
        .body("{}")
        .fetch()
        .await;
    let url = s.url("/v1/app/counters/records/hits");
    c.put(&url).json(&json!({"n": 0})).fetch().await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (c, url) = (Client::new(), url.clone());
            tokio::spawn(async move {
                for _ in 0..50 {
                    loop {
                        let r = c.get(&url).fetch().await;
                        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
                        let n = r.json::<Value>().await.unwrap()["n"].as_u64().unwrap();
                        let w = c
                            .put(&url)
                            .header("If-Match", etag)
                            .json(&json!({"n": n + 1}))
                            .fetch()
                            .await;
                        match w.status() {
                            StatusCode::OK => break,
                            StatusCode::PRECONDITION_FAILED => continue,
                            other => panic!("unexpected {other}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let v: Value = c.get(&url).fetch_json().await;
    assert_eq!(v["n"], 800);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_mutates_atomically() {
    let s = Server::start(ServerConfig::default()).await;
    let c = Client::new();
    c.put(s.url("/v1/app/collections/counters"))
        .body("{}")
        .fetch()
        .await;
    let url = s.url("/v1/app/counters/records/hits");
    // 16 clients × 50 increments, no retries: exactly 800.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (c, url) = (Client::new(), url.clone());
            tokio::spawn(async move {
                for _ in 0..50 {
                    let r = c
                        .patch(&url)
                        .json(&json!({"mutations": [{"op": "add", "path": "/n", "value": 1}]}))
                        .fetch()
                        .await;
                    assert!(r.status().is_success(), "{}", r.status());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let r = c.get(&url).fetch().await;
    assert_eq!(r.headers()["etag"], "\"800\"");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"n": 800}));

    // A bounded add refused: 409 with the value there; nothing changed.
    let over = json!({"mutations": [{"op": "add", "path": "/n", "value": 1, "max": 800}]});
    let (status, e) = error_kind(c.patch(&url).json(&over).fetch().await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(e["current_value"], json!({"path": "/n", "value": 800}));
    // Values come back; If-Match applies; the TTL is set.
    let r = c
        .patch(&url)
        .header("If-Match", "\"800\"")
        .json(&json!({"mutations": [
            {"op": "add", "path": "/n", "value": -1, "min": 0},
            {"op": "max", "path": "/tat", "value": 17},
            {"op": "append", "path": "/last", "value": "a", "keep_last": 2}], "ttl": 60}))
        .fetch()
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"801\"");
    let done: Value = r.json().await.unwrap();
    assert_eq!(
        done["values"],
        json!({"/n": 799, "/tat": 17, "/last": ["a"]})
    );
    assert!(done["expires_at"].is_string());
    // `"ttl": null` stops the expiry; the body stays.
    let r = c.patch(&url).json(&json!({"ttl": null})).fetch().await;
    assert_eq!(r.status(), StatusCode::OK);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["version"], 802);
    assert!(done["expires_at"].is_null(), "{done}");
    let got: Value = c.get(&url).fetch().await.json().await.unwrap();
    assert_eq!(got["n"], 799);
    let (status, _) = error_kind(
        c.patch(&url)
            .header("If-Match", "\"800\"")
            .json(&json!({"ttl": 60}))
            .fetch()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    // Wrong types and empty requests are 400; a touch of nothing is 404.
    let (status, e) = error_kind(
        c.patch(&url)
            .json(&json!({"mutations": [{"op": "append", "path": "/n", "value": 1}]}))
            .fetch()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        e["message"].as_str().unwrap().contains("not an array"),
        "{e}"
    );
    let (status, _) = error_kind(c.patch(&url).json(&json!({})).fetch().await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = error_kind(
        c.patch(s.url("/v1/app/counters/records/nobody"))
            .json(&json!({"ttl": 5}))
            .fetch()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A created record answers 201.
    let r = c
        .patch(s.url("/v1/app/counters/records/fresh"))
        .json(&json!({"mutations": [{"op": "add", "path": "/n", "value": 2.5}]}))
        .fetch()
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // The batch op: two records and a check, all or none, with values per op.
    let transfer = |amount: i64| {
        json!({"ops": [
            {"op": "mutate", "collection": "counters", "id": "hits", "mutations": [{"op": "add", "path": "/n", "value": -amount, "min": 0}]},
            {"op": "mutate", "collection": "counters", "id": "fresh", "mutations": [{"op": "add", "path": "/n", "value": amount}]},
            {"op": "check", "collection": "counters", "id": "fresh", "exists": true}]})
    };
    let done: Value = c
        .post(s.url("/v1/app/batch"))
        .json(&transfer(700))
        .fetch_json()
        .await;
    assert_eq!(done["values"], json!([{"/n": 99}, {"/n": 702.5}, null]));
    let (status, e) = error_kind(
        c.post(s.url("/v1/app/batch"))
            .json(&transfer(700))
            .fetch()
            .await,
    )
    .await;
    assert_eq!((status, e["op"].clone()), (StatusCode::CONFLICT, json!(0)));
    let v: Value = c.get(&url).fetch_json().await;
    assert_eq!(v["n"], 99, "nothing applied");
    s.stop().await;
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_pem_files() {
    let dir = std::env::temp_dir().join(format!("stowage-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut config = ServerConfig {
        tls: Some(stowage_server::TlsConfig {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
        }),
        ..ServerConfig::default()
    };
    let s = Server::start(config.clone()).await;
    let https = s.base.replace("http://", "https://");
    let curl = |url: String| {
        let cert = cert.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                    .arg(&cert)
                    .arg(url)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out = curl(format!("{https}/healthz")).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "HTTPS answers");
    let plain = Client::new().get(s.url("/healthz")).send().await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP is not served"
    );
    s.stop().await;
    // A missing key is a clear error at start.
    config.tls.as_mut().unwrap().key = dir.join("missing.pem").display().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = Store::from_backend(Arc::new(MemoryBackend::new()));
    let e = stowage_server::serve_with(listener, store, config, async {})
        .await
        .unwrap_err();
    assert_eq!(e.kind(), stowage_core::ErrorKind::InvalidInput);
    assert!(e.message().contains("cannot be loaded"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn query_and_listing_limits_are_capped() {
    let mut config = ServerConfig::default();
    config.limits.max_query_limit = 5;
    let s = Server::start(config).await;
    let c = Client::new();
    c.put(s.url("/v1/app/collections/kv"))
        .body("{}")
        .fetch()
        .await;
    for i in 0..12 {
        c.put(s.url(&format!("/v1/app/kv/records/k{i:02}")))
            .json(&json!({"i": i}))
            .fetch()
            .await;
    }
    let page: Value = c
        .post(s.url("/v1/app/kv/query"))
        .json(&json!({"limit": 500}))
        .fetch_json()
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    assert!(page["next_cursor"].is_string());
    let page: Value = c
        .post(s.url("/v1/app/kv/query"))
        .json(&json!({}))
        .fetch_json()
        .await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        5,
        "no limit means the cap"
    );
    let list: Value = c
        .get(s.url("/v1/app/kv/records?limit=1000"))
        .fetch_json()
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
    s.stop().await;
}

/// `POST /get` reads many records by id in one request — found ones in the order asked,
/// missing ones named —, and queries filter on `id` itself.
#[tokio::test]
async fn bulk_get_and_queries_by_id() {
    let mut config = ServerConfig::default();
    config.limits.max_query_limit = 50;
    let s = Server::start(config).await;
    let c = Client::new();
    with_incidents(&s, &c).await;
    for i in 0..10 {
        c.put(s.url(&format!("/v1/app/incidents/records/i-{i}")))
            .json(&json!({"severity": format!("P{}", i % 3), "fingerprint": format!("f{i}")}))
            .fetch()
            .await;
    }
    c.put(s.url("/v1/app/incidents/records/i-3"))
        .json(&json!({"severity": "P1", "fingerprint": "f3"}))
        .fetch()
        .await;
    let got: Value = c
        .post(s.url("/v1/app/incidents/get"))
        .json(&json!({"ids": ["i-7", "nope", "i-3", "i-7", "also-not"]}))
        .fetch_json()
        .await;
    let ids: Vec<&str> = got["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["i-7", "i-3", "i-7"], "{got}");
    assert_eq!(got["items"][1]["version"], 2, "{got}");
    assert_eq!(got["items"][1]["body"]["severity"], "P1", "{got}");
    assert_eq!(got["missing"], json!(["nope", "also-not"]), "{got}");

    for (body, why) in [
        (json!({"ids": []}), "1 to 50"),
        (
            json!({"ids": (0..51).map(|i| format!("i-{i}")).collect::<Vec<_>>()}),
            "1 to 50",
        ),
        (json!({"ids": ["ok", ""]}), "id"),
        (json!({"keys": ["i-1"]}), "not valid JSON for this route"),
    ] {
        let r = c
            .post(s.url("/v1/app/incidents/get"))
            .json(&body)
            .fetch()
            .await;
        let (status, e) = error_kind(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(e["message"].as_str().unwrap().contains(why), "{body}: {e}");
    }
    let r = c
        .post(s.url("/v1/app/nothing/get"))
        .json(&json!({"ids": ["a"]}))
        .fetch()
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let query = |q: Value| {
        let c = c.clone();
        let url = s.url("/v1/app/incidents/query");
        async move {
            let page: Value = c.post(url).json(&q).fetch_json().await;
            page["items"]
                .as_array()
                .unwrap_or_else(|| panic!("{page}"))
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        query(json!({"where": {"id": {"in": ["i-2", "i-8", "x"]}}})).await,
        ["i-2", "i-8"]
    );
    assert_eq!(
        query(json!({"where": {"id": {"gte": "i-4", "lt": "i-7"}, "severity": {"eq": "P1"}}}))
            .await,
        ["i-4"]
    );
    assert_eq!(
        query(json!({"where": {"id": {"prefix": "i-"}}, "desc": true, "limit": 2})).await,
        ["i-9", "i-8"]
    );
    let count: Value = c
        .post(s.url("/v1/app/incidents/count"))
        .json(&json!({"where": {"id": {"gt": "i-5"}}}))
        .fetch_json()
        .await;
    assert_eq!(count["count"], 4);
    s.stop().await;
}

/// Check ops in batches, delete by query, the ETag of a re-created record, the holder of a
/// unique value, and what a write answers.
#[tokio::test]
async fn checks_delete_by_query_and_etags_that_never_repeat() {
    let s = Server::start(ServerConfig::default()).await;
    let c = Client::new();
    with_incidents(&s, &c).await;
    let rec = |i: u32| s.url(&format!("/v1/app/incidents/records/inc-{i}"));
    for i in 0..10u32 {
        let body = json!({"severity": if i % 2 == 0 { "P0" } else { "P2" }, "fingerprint": format!("f{i}")});
        let r = c.put(rec(i)).json(&body).fetch().await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let w: Value = r.json().await.unwrap();
        assert_eq!(w["version"], 1);
        assert_eq!(w["created_at"], w["updated_at"]);
        assert!(w["expires_at"].is_null());
    }
    // A write answers what it stored.
    let w: Value = c
        .put(s.url("/v1/app/incidents/records/inc-1?ttl=60"))
        .json(&json!({"severity": "P2", "fingerprint": "f1"}))
        .fetch_json()
        .await;
    assert_eq!(w["version"], 2);
    assert_ne!(w["created_at"], w["updated_at"]);
    assert!(w["expires_at"].is_string());
    // A check holds: the batch applies; a stale one fails the batch naming the op (412).
    let ok = json!({"ops": [
        {"op": "check", "collection": "incidents", "id": "inc-0", "if_version": 1},
        {"op": "check", "collection": "incidents", "id": "inc-99", "exists": false},
        {"op": "upsert", "collection": "incidents", "id": "inc-2", "body": {"severity": "P0", "fingerprint": "f2"}}]});
    let r: Value = c.post(s.url("/v1/app/batch")).json(&ok).fetch_json().await;
    assert_eq!(r["versions"], json!([1, null, 2]));
    let stale = json!({"ops": [
        {"op": "upsert", "collection": "incidents", "id": "inc-4", "body": {"severity": "P0", "fingerprint": "f4"}},
        {"op": "check", "collection": "incidents", "id": "inc-0", "if_version": 7}]});
    let (status, e) = error_kind(c.post(s.url("/v1/app/batch")).json(&stale).fetch().await).await;
    assert_eq!(
        (status, e["op"].as_u64()),
        (StatusCode::PRECONDITION_FAILED, Some(1))
    );
    let got: Value = c.get(rec(4)).fetch_json().await;
    assert_eq!(got["fingerprint"], "f4");
    let r = c.get(rec(4)).fetch().await;
    assert_eq!(
        r.headers()["etag"],
        "\"1\"",
        "the failed batch wrote nothing"
    );
    let bare = json!({"ops": [{"op": "check", "collection": "incidents", "id": "inc-0"}]});
    let (status, _) = error_kind(c.post(s.url("/v1/app/batch")).json(&bare).fetch().await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Each op takes only its own fields: a body on a delete would be ignored, so it is
    // refused, naming the op. Whole numbers may be written 3.0 (JSON has one number type).
    let stray = json!({"ops": [
        {"op": "check", "collection": "incidents", "id": "inc-0", "exists": true},
        {"op": "delete", "collection": "incidents", "id": "inc-0", "body": {}}]});
    let (status, e) = error_kind(c.post(s.url("/v1/app/batch")).json(&stray).fetch().await).await;
    assert_eq!(
        (status, e["op"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(1)),
        "{e}"
    );
    assert!(e["message"].as_str().unwrap().contains("body"), "{e}");
    let whole = json!({"ops": [{"op": "upsert", "collection": "incidents", "id": "w", "body": null, "ttl": 60.0}]});
    let r: Value = c
        .post(s.url("/v1/app/batch"))
        .json(&whole)
        .fetch_json()
        .await;
    assert_eq!(r["versions"].as_array().map(Vec::len), Some(1), "{r}");
    let r = c.get(s.url("/v1/app/incidents/records/w")).fetch().await;
    assert!(r.headers().contains_key("x-expires-at"));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        Value::Null,
        "a null body is a body"
    );
    let r = c.delete(s.url("/v1/app/incidents/records/w")).fetch().await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Delete by query.
    let n: Value = c
        .post(s.url("/v1/app/incidents/delete"))
        .json(&json!({"where": {"severity": {"eq": "P2"}}}))
        .fetch_json()
        .await;
    assert_eq!(n["deleted"], 5);
    let n: Value = c
        .post(s.url("/v1/app/incidents/count"))
        .json(&json!({"where": {}}))
        .fetch_json()
        .await;
    assert_eq!(n["count"], 5);
    let (status, _) = error_kind(
        c.post(s.url("/v1/app/incidents/delete"))
            .json(&json!({"where": {}}))
            .fetch()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // ABA: read, delete, re-create; the old ETag no longer matches anything.
    let old = c.get(rec(0)).fetch().await.headers()["etag"].clone();
    assert_eq!(
        c.delete(rec(0)).fetch().await.status(),
        StatusCode::NO_CONTENT
    );
    let r = c
        .put(rec(0))
        .json(&json!({"severity": "P0", "fingerprint": "f0"}))
        .fetch()
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_ne!(
        r.headers()["etag"],
        old,
        "a re-created record gets a new ETag"
    );
    let r = c
        .put(rec(0))
        .header("if-match", old)
        .json(&json!({"severity": "P0", "fingerprint": "f0"}))
        .fetch()
        .await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    // A unique clash names the record holding the value.
    let (status, e) = error_kind(
        c.put(s.url("/v1/app/incidents/records/other"))
            .json(&json!({"severity": "P0", "fingerprint": "f2"}))
            .fetch()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        (e["index"].as_str(), e["holder"].as_str()),
        (Some("fingerprint"), Some("inc-2"))
    );
    s.stop().await;
}

/// The router serves the caller's store as it is: its clock decides `updated_at` and expiry.
#[tokio::test]
async fn the_callers_store_and_clock_are_served() {
    let start = Timestamp::parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let store = Store::builder(Arc::new(MemoryBackend::new()))
        .clock(clock.clone())
        .build()
        .unwrap();
    let s = Server::start_with(ServerConfig::default(), store).await;
    let c = Client::new();
    with_incidents(&s, &c).await;
    let url = s.url("/v1/app/incidents/records/t?ttl=60");
    let w: Value = c
        .put(url)
        .json(&json!({"fingerprint": "t"}))
        .fetch_json()
        .await;
    assert_eq!(w["updated_at"], "2030-01-01T00:00:00Z");
    assert_eq!(w["expires_at"], "2030-01-01T00:01:00Z");
    clock.advance(std::time::Duration::from_secs(61));
    let r = c.get(s.url("/v1/app/incidents/records/t")).fetch().await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "expired by the caller's clock"
    );
    s.stop().await;
}

/// A JSON body comes back over HTTP as it was written, key order included.
#[tokio::test]
async fn bodies_keep_their_key_order() {
    let s = Server::start(ServerConfig::default()).await;
    let c = Client::new();
    with_incidents(&s, &c).await;
    let text = r#"{"zeta":1,"fingerprint":"o","alpha":{"y":2,"b":1}}"#;
    let url = s.url("/v1/app/incidents/records/ordered");
    let r = c.put(&url).body(text).fetch().await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(c.get(&url).fetch().await.text().await.unwrap(), text);
    s.stop().await;
}

/// Reads server-sent events from a response until `n` have arrived: (id, event, data).
async fn sse_events(r: &mut reqwest::Response, n: usize) -> Vec<(u64, String, Value)> {
    let mut text = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), r.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, String::new(), Value::Null);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    v.clone_into(&mut event);
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).unwrap();
                }
            }
            // Keep-alive comments carry no id.
            if let Some(id) = id {
                out.push((id, event, data));
            }
        }
    }
    out
}

/// Watch over SSE, see a write, leave; two writes are missed; the server restarts on the
/// same file; reconnecting with Last-Event-ID (and the namespace feed with ?after=) gives
/// exactly the two missed changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_over_sse_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    // The stopped server's connection tasks may still be dropping their handles to the
    // store (and with them redb's file lock) for a moment after `serve` returns.
    let open = || async {
        let started = std::time::Instant::now();
        loop {
            match stowage_redb::RedbBackend::open(stowage_redb::RedbConfig::new(&path)) {
                Ok(backend) => return Store::from_backend(Arc::new(backend)),
                Err(e) if started.elapsed() < std::time::Duration::from_secs(10) => {
                    assert_eq!(e.kind(), stowage_core::ErrorKind::Unavailable, "{e}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    let c = Client::new();
    let s = Server::start_with(ServerConfig::default(), open().await).await;
    with_incidents(&s, &c).await;
    let mut w = c.get(s.url("/v1/app/incidents/watch")).fetch().await;
    assert_eq!(w.status(), StatusCode::OK);
    assert_eq!(w.headers()["content-type"], "text/event-stream");
    let rec = |id: &str| s.url(&format!("/v1/app/incidents/records/{id}"));
    c.put(rec("x"))
        .json(&json!({"fingerprint": "x"}))
        .fetch()
        .await;
    let seen = sse_events(&mut w, 1).await;
    assert_eq!((seen[0].1.as_str(), &seen[0].2["id"]), ("put", &json!("x")));
    let token = seen[0].0;
    drop(w);
    c.put(rec("y"))
        .json(&json!({"fingerprint": "y"}))
        .fetch()
        .await;
    assert_eq!(
        c.delete(rec("x")).fetch().await.status(),
        StatusCode::NO_CONTENT
    );
    s.stop().await;

    let s = Server::start_with(ServerConfig::default(), open().await).await;
    let mut w = c
        .get(s.url("/v1/app/incidents/watch"))
        .header("last-event-id", token.to_string())
        .fetch()
        .await;
    let missed = sse_events(&mut w, 2).await;
    let shown: Vec<(u64, &str, &Value, &Value)> = missed
        .iter()
        .map(|(id, ev, data)| (*id, ev.as_str(), &data["id"], &data["version"]))
        .collect();
    assert_eq!(
        shown,
        vec![
            (token + 1, "put", &json!("y"), &json!(1)),
            (token + 2, "delete", &json!("x"), &json!(1)),
        ]
    );
    let mut ns = c
        .get(s.url(&format!("/v1/app/watch?after={token}")))
        .fetch()
        .await;
    assert_eq!(sse_events(&mut ns, 2).await, missed);
    let r = c
        .get(s.url("/v1/app/watch"))
        .header("last-event-id", "soon")
        .fetch()
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Stopping the server ends open streams instead of waiting for them.
    tokio::time::timeout(std::time::Duration::from_secs(10), s.stop())
        .await
        .expect("the server stops with watchers connected");
    drop((w, ns));
}

/// The server purges expired records in the background, every `purge_every_seconds`.
#[tokio::test]
async fn expired_records_are_purged_in_the_background() {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let store = Store::builder(Arc::new(MemoryBackend::new()))
        .clock(clock.clone())
        .build()
        .unwrap();
    let ns = store.namespace("app").unwrap();
    let config = ServerConfig {
        maintenance: stowage_server::Maintenance {
            purge_every_seconds: 1,
        },
        ..ServerConfig::default()
    };
    let s = Server::start_with(config, store).await;
    let c = Client::new();
    with_incidents(&s, &c).await;
    for i in 0..3 {
        let r = c
            .put(s.url(&format!("/v1/app/incidents/records/t{i}?ttl=60")))
            .json(&json!({"fingerprint": format!("t{i}")}))
            .fetch()
            .await;
        assert!(r.status().is_success());
    }
    let stored = || async {
        ns.stats()
            .await
            .unwrap()
            .iter()
            .find(|c| c.collection == "incidents")
            .map_or(0, |c| c.records)
    };
    assert_eq!(stored().await, 3);
    clock.advance(std::time::Duration::from_secs(61));
    let mut left = 3;
    for _ in 0..50 {
        left = stored().await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the background purge removed the expired records");
    s.stop().await;
}

//! The OpenAPI 3.1 description of the HTTP API, served at `/openapi.json`.

use serde_json::{json, Value};

fn error_responses(codes: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for c in codes {
        m.insert((*c).to_owned(), json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
    }
    Value::Object(m)
}

fn with(mut ok: Value, errors: &[&str]) -> Value {
    if let (Some(o), Value::Object(e)) = (ok.as_object_mut(), error_responses(errors)) {
        o.extend(e);
    }
    ok
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn ok(code: &str, description: &str, schema: Value) -> Value {
    json!({ code: {"description": description, "content": {"application/json": {"schema": schema}}} })
}

/// The document. `tokens_required`: whether the server was configured with tokens; without
/// them, requests need no bearer token and the document says so.
pub fn document(tokens_required: bool) -> Value {
    // Names and ids as `stowage_core::validate_name` / `validate_id` accept them.
    let name = json!({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_-]{0,62}$"});
    let ns = json!({"name": "ns", "in": "path", "required": true, "schema": name});
    let coll = json!({"name": "coll", "in": "path", "required": true, "schema": name});
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 512, "pattern": "^[^\\u0000]+$"}});
    // An empty requirement makes the token optional.
    let security = if tokens_required {
        json!([{"bearer": []}])
    } else {
        json!([{}, {"bearer": []}])
    };
    let page = json!({"$ref": "#/components/schemas/Page"});
    let after = json!({"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX}, "description": "resume after this change token"});
    let last_event_id = json!({"name": "Last-Event-ID", "in": "header", "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}, "description": "resume after this change token (sent by EventSource on reconnect)"});
    let common = ["400", "401", "403", "404", "413", "503", "500"];
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Stowage", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Durable, indexed, versioned records over HTTP/JSON."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                    "required": ["kind", "message"],
                    "properties": {"kind": {"type": "string", "enum": ["not_found", "already_exists", "conflict", "invalid_input", "unavailable", "unsupported", "corrupted", "internal", "unauthorized", "forbidden", "payload_too_large"]},
                                   "message": {"type": "string"},
                                   "current_version": {"type": ["integer", "null"]},
                                   "index": {"type": "string", "description": "the unique index that holds the value"},
                                   "holder": {"type": "string", "description": "the id of the record that holds the value"},
                                   "op": {"type": "integer"}}}}},
                "IndexSpec": {"type": "object", "required": ["name", "path", "type"], "properties": {
                    "name": {"type": "string"}, "path": {"type": "string", "description": "JSON pointer"},
                    "type": {"type": "string", "enum": ["string", "integer", "float", "bool", "timestamp"]},
                    "unique": {"type": "boolean"}, "multi": {"type": "boolean"},
                    "covering": {"type": "boolean", "description": "keep record copies in the index: queries walking it read no records table"}}},
                "CollectionSpec": {"type": "object", "properties": {
                    "indexes": {"type": "array", "items": {"$ref": "#/components/schemas/IndexSpec"}},
                    "default_ttl_seconds": {"type": "integer", "minimum": 1}}},
                "Item": {"type": "object", "required": ["id", "version", "body"], "properties": {
                    "id": {"type": "string"}, "version": {"type": "integer"}, "body": {},
                    "expires_at": {"type": ["string", "null"], "format": "date-time"}}},
                "Page": {"type": "object", "required": ["items"], "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                    "next_cursor": {"type": ["string", "null"]}}},
                "Condition": {"type": "object", "additionalProperties": false, "properties": {"eq": {}, "in": {"type": "array"}, "gt": {}, "gte": {}, "lt": {}, "lte": {}, "prefix": {"type": "string"}}},
                "Query": {"type": "object", "additionalProperties": false, "properties": {
                    "where": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Condition"}},
                    "order_by": {"type": "string"}, "desc": {"type": "boolean"},
                    "limit": {"type": "integer", "minimum": 1}, "cursor": {"type": ["string", "null"]},
                    "page": {"type": "integer", "minimum": 1}, "page_size": {"type": "integer", "minimum": 1}}},
                "BatchOp": {"type": "object", "required": ["op", "collection", "id"], "properties": {
                    "op": {"type": "string", "enum": ["insert", "upsert", "update", "delete", "check"],
                           "description": "check writes nothing: the batch applies only if if_version, or exists true/false, holds for the record"},
                    "collection": name.clone(), "id": {"type": "string", "minLength": 1, "maxLength": 512}, "body": {},
                    "if_version": {"type": "integer"}, "exists": {"type": "boolean"},
                    "ttl": {"type": "integer", "minimum": 1}}},
                "ChangeEvent": {"type": "object", "required": ["token", "op", "at"], "properties": {
                    "token": {"type": "integer"},
                    "op": {"type": "string", "enum": ["put", "delete", "delete_prefix", "delete_where", "purge", "drop", "spec", "gap"]},
                    "collection": {"type": "string"}, "id": {"type": "string"}, "version": {"type": "integer"},
                    "at": {"type": "string", "format": "date-time"}, "count": {"type": "integer"}}},
                "Written": {"type": "object", "required": ["id", "version", "created_at", "updated_at"], "properties": {
                    "id": {"type": "string"}, "version": {"type": "integer", "description": "the new ETag; never repeats for an id, even after a delete"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "expires_at": {"type": ["string", "null"], "format": "date-time"}}}
            }
        },
        "security": security,
        "paths": {
            "/v1/{ns}/collections": {"get": {"summary": "List collections", "parameters": [ns],
                "responses": with(ok("200", "collections", json!({"type": "object"})), &["400", "401", "403"])}},
            "/v1/{ns}/collections/{coll}": {
                "parameters": [ns, coll],
                "put": {"summary": "Create or change a collection (admin)", "requestBody": json_body(json!({"$ref": "#/components/schemas/CollectionSpec"})),
                        "responses": with(ok("200", "changed", json!({"$ref": "#/components/schemas/CollectionSpec"})), &["201", "400", "401", "403", "409"])},
                "get": {"summary": "A collection's spec", "responses": with(ok("200", "spec", json!({"$ref": "#/components/schemas/CollectionSpec"})), &["400", "401", "403", "404"])},
                "delete": {"summary": "Drop a collection (admin)", "responses": with(json!({"204": {"description": "dropped"}}), &["400", "401", "403", "404"])}},
            "/v1/{ns}/{coll}/records": {"get": {"summary": "List records by id", "parameters": [ns, coll,
                    {"name": "prefix", "in": "query", "schema": {"type": "string"}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": i64::MAX}}],
                "responses": with(ok("200", "a page", page.clone()), &common)}},
            "/v1/{ns}/{coll}/records/{id}": {
                "parameters": [ns, coll, id],
                "get": {"summary": "Read a record; ETag is its version, X-Expires-At its TTL",
                        "responses": with(ok("200", "the body", json!({})), &common)},
                "put": {"summary": "Write a record: If-Match \"v\" updates that version, If-None-Match * only creates, ?ttl=SECONDS",
                        "parameters": [{"name": "ttl", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                                       {"name": "If-Match", "in": "header", "schema": {"type": "string"}},
                                       {"name": "If-None-Match", "in": "header", "schema": {"type": "string", "enum": ["*"]}}],
                        "requestBody": json_body(json!({})),
                        "responses": with(ok("200", "replaced (201: created), with what was stored", json!({"$ref": "#/components/schemas/Written"})), &["201", "400", "401", "403", "404", "409", "412", "413", "503"])},
                "delete": {"summary": "Delete a record (If-Match \"v\" deletes only that version)",
                           "responses": with(json!({"204": {"description": "deleted"}}), &["400", "401", "403", "404", "412"])}},
            "/v1/{ns}/{coll}/query": {"post": {"summary": "Query by indexes", "parameters": [ns, coll],
                "requestBody": json_body(json!({"$ref": "#/components/schemas/Query"})),
                "responses": with(ok("200", "a page", page), &common)}},
            "/v1/{ns}/{coll}/count": {"post": {"summary": "Count by indexes", "parameters": [ns, coll],
                "requestBody": json_body(json!({"type": "object", "additionalProperties": false, "properties": {"where": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Condition"}}}})),
                "responses": with(ok("200", "the count", json!({"type": "object", "properties": {"count": {"type": "integer"}}})), &common)}},
            "/v1/{ns}/{coll}/delete": {"post": {"summary": "Delete every record matching a filter (in atomic chunks of 1,000; an empty filter is refused)", "parameters": [ns, coll],
                "requestBody": json_body(json!({"type": "object", "required": ["where"], "additionalProperties": false, "properties": {"where": {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/components/schemas/Condition"}}}})),
                "responses": with(ok("200", "how many were deleted", json!({"type": "object", "properties": {"deleted": {"type": "integer"}}})), &common)}},
            "/v1/{ns}/batch": {"post": {"summary": "Atomic batch: all ops or none", "parameters": [ns],
                "requestBody": json_body(json!({"type": "object", "properties": {"ops": {"type": "array", "items": {"$ref": "#/components/schemas/BatchOp"}}}})),
                "responses": with(ok("200", "new versions", json!({"type": "object", "properties": {"versions": {"type": "array"}}})), &["400", "401", "403", "404", "409", "412", "413"])}},
            "/v1/{ns}/{coll}/watch": {"get": {"summary": "Server-sent events of the collection's changes (and namespace-wide purges and gaps): id is the resume token, event the op, data a ChangeEvent; Last-Event-ID or ?after= resumes (501 where the backend has no change feed)",
                "parameters": [ns, coll, after.clone(), last_event_id.clone()],
                "responses": with(json!({"200": {"description": "event stream", "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/ChangeEvent"}}}}}), &["400", "401", "403", "404", "501"])}},
            "/v1/{ns}/watch": {"get": {"summary": "Server-sent events of every change in the namespace, as above",
                "parameters": [ns, after, last_event_id],
                "responses": with(json!({"200": {"description": "event stream", "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/ChangeEvent"}}}}}), &["400", "401", "403", "501"])}},
            "/healthz": {"get": {"summary": "Alive", "security": [], "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Backend reachable, with its latency", "security": [], "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}}
        }
    })
}

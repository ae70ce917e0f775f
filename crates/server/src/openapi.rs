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

/// A POST route under `/v1/{ns}/{coll}/`: with the reserved collection name `collections`
/// the path is `/v1/{ns}/collections/{coll}`'s, which takes no POST.
fn posted(ok: Value, errors: &[&str]) -> Value {
    let mut responses = with(ok, errors);
    responses["405"] = json!({"description": "the path is another route's (the collection name `collections` is reserved)"});
    responses
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn ok(code: &str, description: &str, schema: Value) -> Value {
    json!({ code: {"description": description, "content": {"application/json": {"schema": schema}}} })
}

/// The largest change token the API takes (`?after=`, `Last-Event-ID`): 18 digits, far past
/// any namespace's count of changes and within every engine's signed 64-bit integers.
pub(crate) const MAX_TOKEN: u64 = 999_999_999_999_999_999;

/// The document. `tokens_required`: whether the server was configured with tokens; without
/// them, requests need no bearer token and the document says so. `blind_indexes`: whether
/// the store keeps blind indexes (an encrypting codec); without, index specs have no
/// `blind` field. `max_query_limit`: the most ids a bulk read takes.
pub fn document(tokens_required: bool, blind_indexes: bool, max_query_limit: usize) -> Value {
    let mut doc = document_with_every_field(tokens_required, max_query_limit);
    if !blind_indexes {
        let ix = &mut doc["components"]["schemas"]["IndexSpec"];
        if let Some(o) = ix.as_object_mut() {
            o.remove("anyOf");
        }
        if let Some(p) = ix["properties"].as_object_mut() {
            p.remove("blind");
        }
    }
    doc
}

/// The path parameters and schemas the routes share: names and ids as
/// `stowage_core::validate_name` / `validate_id` accept them.
struct Shared {
    name: Value,
    record_id: Value,
    collection: Value,
    ns: Value,
    coll: Value,
    id: Value,
}

impl Shared {
    fn new() -> Shared {
        // Names starting with "__" are reserved, hence the three branches.
        let name = json!({"type": "string", "pattern": "^(_|_[A-Za-z0-9-][A-Za-z0-9_-]{0,61}|[A-Za-z][A-Za-z0-9_-]{0,62})$"});
        let record_id =
            json!({"type": "string", "minLength": 1, "maxLength": 512, "pattern": "^[^\\u0000]+$"});
        // `routes::RESERVED`: the routes take these two.
        let collection = json!({"allOf": [name, {"not": {"enum": ["collections", "batch"]}}]});
        Shared {
            ns: json!({"name": "ns", "in": "path", "required": true, "schema": name}),
            coll: json!({"name": "coll", "in": "path", "required": true, "schema": collection}),
            id: json!({"name": "id", "in": "path", "required": true, "schema": record_id}),
            name,
            record_id,
            collection,
        }
    }
}

/// A whole number an engine stores (u64), or null.
fn count(minimum: u64) -> Value {
    json!({"type": ["integer", "null"], "minimum": minimum, "maximum": u64::MAX})
}

/// Merges objects made by the steps below, in order.
fn merged(parts: impl IntoIterator<Item = Value>) -> Value {
    let mut all = serde_json::Map::new();
    for part in parts {
        if let Value::Object(o) = part {
            all.extend(o);
        }
    }
    Value::Object(all)
}

fn document_with_every_field(tokens_required: bool, max_ids: usize) -> Value {
    let s = Shared::new();
    // An empty requirement makes the token optional.
    let security = if tokens_required {
        json!([{"bearer": []}])
    } else {
        json!([{}, {"bearer": []}])
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Stowage", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Durable, indexed, versioned records over HTTP/JSON."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": merged([spec_schemas(&s), record_schemas(), query_schemas(&s), change_schemas(), mutation_schemas()]),
        },
        "security": security,
        "paths": merged([
            collection_paths(&s),
            record_paths(&s),
            read_paths(&s, max_ids),
            batch_and_watch_paths(&s),
            operation_paths(),
        ]),
    })
}

/// Errors, index and collection specs.
fn spec_schemas(s: &Shared) -> Value {
    let name = &s.name;
    json!({
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
        "required": ["kind", "message"],
        "properties": {"kind": {"type": "string", "enum": ["not_found", "already_exists", "conflict", "invalid_input", "unavailable", "unsupported", "corrupted", "internal", "unauthorized", "forbidden", "payload_too_large"]},
                       "message": {"type": "string"},
                       "current_version": {"type": ["integer", "null"]},
                       "index": {"type": "string", "description": "the unique index that holds the value"},
                       "holder": {"type": "string", "description": "the id of the record that holds the value"},
                       "op": {"type": "integer"}}}}},
    "IndexSpec": {"type": "object", "additionalProperties": false, "required": ["name", "path", "type"],
        // A blind index is a string index.
        "anyOf": [{"properties": {"blind": {"const": false}}}, {"properties": {"type": {"const": "string"}}}],
        "properties": {
        "name": {"allOf": [name, {"not": {"const": "id"}}], "description": "\"id\" is reserved"},
        "path": {"type": "string", "pattern": "^/([^~]|~[01])*$", "description": "JSON pointer"},
        "type": {"type": "string", "enum": ["string", "integer", "float", "bool", "timestamp"]},
        "unique": {"type": "boolean"}, "multi": {"type": "boolean"},
        "covering": {"type": "boolean", "description": "keep record copies in the index: queries walking it read no records table"},
        "blind": {"type": "boolean", "description": "keep keyed hashes of the values (a string index; eq and in only): needs a server started with a key ring, 501 otherwise"}}},
    "CollectionSpec": {"type": "object", "additionalProperties": false, "properties": {
        "indexes": {"type": "array", "items": {"$ref": "#/components/schemas/IndexSpec"}},
        "default_ttl_seconds": count(1),
        "retention": {"type": ["object", "null"], "additionalProperties": false, "required": ["keep_seconds", "from"],
            "description": "null or absent: kept until deleted; else records older than keep_seconds, counted from created_at, updated_at or an RFC 3339 field of the body (a timestamp index on that path makes the purge a range delete), are purged in the background",
            "properties": {"keep_seconds": {"type": "integer", "minimum": 1, "maximum": u64::MAX},
                "from": {"oneOf": [{"type": "string", "enum": ["created_at", "updated_at"]},
                                   {"type": "object", "additionalProperties": false, "required": ["field"],
                                    "properties": {"field": {"type": "string", "pattern": "^/([^~]|~[01])*$", "description": "JSON pointer"}}}]}}}}}
    })
}

/// Records as listings, pages and writes show them.
fn record_schemas() -> Value {
    json!({
    "Item": {"type": "object", "required": ["id", "version", "body"], "properties": {
        "id": {"type": "string"}, "version": {"type": "integer"}, "body": {},
        "expires_at": {"type": ["string", "null"], "format": "date-time"}}},
    "Page": {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
        "next_cursor": {"type": ["string", "null"]}}}
    })
}

/// Queries and batch ops.
fn query_schemas(s: &Shared) -> Value {
    let batch_op = |op: Value, fields: Value| {
        let mut properties =
            json!({"op": op, "collection": s.collection.clone(), "id": s.record_id.clone()});
        let mut required = vec!["op", "collection", "id"];
        for (field, schema) in fields.as_object().into_iter().flatten() {
            if field == "body" {
                required.push("body");
            }
            properties[field] = schema.clone();
        }
        json!({"type": "object", "additionalProperties": false, "required": required, "properties": properties})
    };
    json!({
    "Condition": {"type": "object", "additionalProperties": false, "properties": {"eq": {}, "in": {"type": "array"}, "gt": {}, "gte": {}, "lt": {}, "lte": {}, "prefix": {"type": "string"}}},
    "Query": {"type": "object", "additionalProperties": false, "properties": {
        "where": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Condition"}},
        "order_by": {"type": ["string", "null"]}, "desc": {"type": "boolean"},
        "limit": count(1), "cursor": {"type": ["string", "null"], "description": "a next_cursor of this query, unchanged (404 otherwise)"},
        "page": count(1), "page_size": count(1)},
        // Offsets or cursors: page and page_size together, without limit or cursor.
        "anyOf": [
            {"properties": {"page": {"type": "null"}, "page_size": {"type": "null"}}},
            {"required": ["page", "page_size"], "properties": {
                "page": {"type": "integer"}, "page_size": {"type": "integer"},
                "limit": {"type": "null"}, "cursor": {"type": "null"}}}]},
    // Each op takes only the fields it uses.
    "BatchOp": {"oneOf": [
        batch_op(json!({"enum": ["insert", "upsert"]}), json!({"body": {}, "ttl": count(1)})),
        batch_op(json!({"const": "update"}), json!({"body": {}, "if_version": count(0), "ttl": count(1)})),
        batch_op(json!({"const": "delete"}), json!({"if_version": count(0)})),
        {"allOf": [batch_op(json!({"const": "mutate"}), json!({"mutations": {"type": "array", "maxItems": stowage_core::MAX_MUTATIONS, "items": {"$ref": "#/components/schemas/Mutation"}}, "ttl": count(1), "if_version": count(0)}))],
         "description": "mutations of one record, as PATCH takes them: at least one mutation or a ttl (null: never expire)",
         "anyOf": [{"required": ["mutations"], "properties": {"mutations": {"minItems": 1}}},
                   {"required": ["ttl"]}]},
        {"allOf": [batch_op(json!({"const": "check"}), json!({"if_version": count(0), "exists": {"type": ["boolean", "null"]}}))],
         "description": "writes nothing: the batch applies only if if_version (with exists absent or true), or exists true or false alone, holds for the record",
         "anyOf": [
            {"required": ["if_version"], "properties": {"if_version": {"type": "integer"}, "exists": {"enum": [true, null]}}},
            {"required": ["exists"], "properties": {"exists": {"type": "boolean"}, "if_version": {"type": "null"}}}]}]}
    })
}

/// Mutations (`PATCH` of a record, the batch's `mutate` op) and what they answer.
fn mutation_schemas() -> Value {
    let path = json!({"type": "string", "minLength": 2, "maxLength": stowage_core::MAX_PATH_CHARS,
        "pattern": "^(/([^~]|~[01])*)+$", "description": "a JSON pointer to a field (not the whole body)"});
    let op = |name: &str, fields: Value, required: &[&str]| {
        let mut properties = json!({"op": {"const": name}, "path": path.clone()});
        for (field, schema) in fields.as_object().into_iter().flatten() {
            properties[field] = schema.clone();
        }
        let mut needed = vec!["op", "path"];
        needed.extend_from_slice(required);
        json!({"type": "object", "additionalProperties": false, "required": needed, "properties": properties})
    };
    let number = json!({"type": ["number", "null"]});
    json!({
    "Mutation": {"oneOf": [
        op("add", json!({"value": {"type": "number"}, "min": number, "max": number}), &["value"]),
        op("max", json!({"value": {"type": ["number", "string"]}}), &["value"]),
        op("min", json!({"value": {"type": ["number", "string"]}}), &["value"]),
        op("set", json!({"value": {}}), &["value"]),
        op("remove", json!({}), &[]),
        op("append", json!({"value": {}, "keep_last": {"type": ["integer", "null"], "minimum": 0, "maximum": u64::MAX}}), &["value"])]},
    "Mutations": {"type": "object", "additionalProperties": false, "properties": {
        "mutations": {"type": "array", "maxItems": stowage_core::MAX_MUTATIONS, "items": {"$ref": "#/components/schemas/Mutation"}},
        "ttl": {"type": ["integer", "null"], "minimum": 1, "maximum": u64::MAX, "description": "expire this many seconds from now; null: never expire; absent: keep the TTL"}},
        "description": "applied in order, all or none; at least one mutation or a ttl (a touch, or null to stop expiring)",
        "anyOf": [{"required": ["mutations"], "properties": {"mutations": {"minItems": 1}}},
                  {"required": ["ttl"]}]},
    "Mutated": {"allOf": [{"$ref": "#/components/schemas/Written"}], "required": ["values"], "properties": {
        "values": {"type": "object", "description": "the value at each mutated path afterwards (null where removed)"}}}
    })
}

/// The change feed's events.
fn change_schemas() -> Value {
    json!({
    // One server-sent event as schemathesis and OpenAPI 3.1 read it: its fields, with
    // `data` a ChangeEvent in JSON.
    "ChangeSse": {"type": "object", "required": ["id", "event", "data"], "properties": {
        "id": {"type": "string", "pattern": "^[0-9]{1,18}$"},
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"$ref": "#/components/schemas/ChangeEvent"}}}},
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
    })
}

/// Collections: list, declare or change, read, drop.
fn collection_paths(s: &Shared) -> Value {
    let (ns, coll) = (&s.ns, &s.coll);
    // 201 (created) answers with the spec as 200 does.
    let mut put_collection_responses = with(
        ok(
            "200",
            "changed",
            json!({"$ref": "#/components/schemas/CollectionSpec"}),
        ),
        &["400", "401", "403", "409", "501"],
    );
    put_collection_responses["201"] = json!({"description": "created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CollectionSpec"}}}});
    json!({
    "/v1/{ns}/collections": {"get": {"summary": "List collections", "parameters": [ns],
        "responses": with(ok("200", "collections", json!({"type": "object"})), &["400", "401", "403"])}},
    "/v1/{ns}/collections/{coll}": {
        "parameters": [ns, coll],
        "put": {"summary": "Create or change a collection (admin)", "requestBody": json_body(json!({"$ref": "#/components/schemas/CollectionSpec"})),
                "responses": put_collection_responses},
        "get": {"summary": "A collection's spec", "responses": with(ok("200", "spec", json!({"$ref": "#/components/schemas/CollectionSpec"})), &["400", "401", "403", "404"])},
        "delete": {"summary": "Drop a collection (admin)", "responses": with(json!({"204": {"description": "dropped"}}), &["400", "401", "403", "404"])}}
    })
}

/// Errors most routes answer.
const COMMON_ERRORS: [&str; 7] = ["400", "401", "403", "404", "413", "503", "500"];

/// One record by id, and the listing by id.
fn record_paths(s: &Shared) -> Value {
    let (ns, coll, id) = (&s.ns, &s.coll, &s.id);
    let common = COMMON_ERRORS;
    let page = json!({"$ref": "#/components/schemas/Page"});
    json!({
    "/v1/{ns}/{coll}/records": {"get": {"summary": "List records by id", "parameters": [ns, coll,
            {"name": "prefix", "in": "query", "schema": {"type": "string"}},
            {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "a next_cursor of this listing, unchanged (404 otherwise)"},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": u64::MAX}}],
        "responses": with(ok("200", "a page", page.clone()), &common)}},
    "/v1/{ns}/{coll}/records/{id}": {
        "parameters": [ns, coll, id],
        "get": {"summary": "Read a record; ETag is its version, X-Expires-At its TTL",
                "responses": with(ok("200", "the body", json!({})), &common)},
        "put": {"summary": "Write a record: If-Match \"v\" updates that version, If-None-Match * only creates, ?ttl=SECONDS",
                "parameters": [{"name": "ttl", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": u64::MAX}},
                               {"name": "If-Match", "in": "header", "schema": {"type": "string"}},
                               {"name": "If-None-Match", "in": "header", "schema": {"type": "string", "enum": ["*"]}}],
                "requestBody": json_body(json!({})),
                "responses": with(ok("200", "replaced (201: created), with what was stored", json!({"$ref": "#/components/schemas/Written"})), &["201", "400", "401", "403", "404", "409", "412", "413", "503"])},
        "patch": {"summary": "Mutate a record atomically (add with min/max bounds, max, min, set, remove, append with keep_last; ttl renews): If-Match \"v\" only that version, If-Match * only an existing record, If-None-Match * only a new one; 409 when a bound refuses, with the current value",
                "parameters": [{"name": "If-Match", "in": "header", "schema": {"type": "string"}},
                               {"name": "If-None-Match", "in": "header", "schema": {"type": "string", "enum": ["*"]}}],
                "requestBody": json_body(json!({"$ref": "#/components/schemas/Mutations"})),
                "responses": with(ok("200", "mutated (201: created), with what was stored and the values at the mutated paths", json!({"$ref": "#/components/schemas/Mutated"})), &["201", "400", "401", "403", "404", "409", "412", "413", "501", "503"])},
        "delete": {"summary": "Delete a record (If-Match \"v\" deletes only that version)",
                   "responses": with(json!({"204": {"description": "deleted"}}), &["400", "401", "403", "404", "412"])}}
    })
}

/// Reads and deletes by predicate, and many records by id.
fn read_paths(s: &Shared, max_ids: usize) -> Value {
    let (ns, coll, record_id) = (&s.ns, &s.coll, &s.record_id);
    let common = COMMON_ERRORS;
    let page = json!({"$ref": "#/components/schemas/Page"});
    json!({
    "/v1/{ns}/{coll}/query": {"post": {"summary": "Query by indexes and by id (\"id\": eq, in, ranges, prefix)", "parameters": [ns, coll],
        "requestBody": json_body(json!({"$ref": "#/components/schemas/Query"})),
        "responses": posted(ok("200", "a page", page), &common)}},
    "/v1/{ns}/{coll}/get": {"post": {"summary": "Read many records by id in one call: those found in the order asked, and the ids of those not found (absent or expired)", "parameters": [ns, coll],
        "requestBody": json_body(json!({"type": "object", "required": ["ids"], "additionalProperties": false, "properties": {"ids": {"type": "array", "minItems": 1, "maxItems": max_ids, "items": record_id}}})),
        "responses": posted(ok("200", "the records found, and the ids missing", json!({"type": "object", "required": ["items", "missing"], "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
            "missing": {"type": "array", "items": {"type": "string"}}}})), &common)}},
    "/v1/{ns}/{coll}/count": {"post": {"summary": "Count by indexes and by id", "parameters": [ns, coll],
        "requestBody": json_body(json!({"type": "object", "additionalProperties": false, "properties": {"where": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Condition"}}}})),
        "responses": posted(ok("200", "the count", json!({"type": "object", "properties": {"count": {"type": "integer"}}})), &common)}},
    "/v1/{ns}/{coll}/delete": {"post": {"summary": "Delete every record matching a filter (in atomic chunks of 1,000; an empty filter is refused)", "parameters": [ns, coll],
        "requestBody": json_body(json!({"type": "object", "required": ["where"], "additionalProperties": false, "properties": {"where": {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/components/schemas/Condition"}}}})),
        "responses": posted(ok("200", "how many were deleted", json!({"type": "object", "properties": {"deleted": {"type": "integer"}}})), &common)}}
    })
}

/// Batches and the change feed.
fn batch_and_watch_paths(s: &Shared) -> Value {
    let (ns, coll) = (&s.ns, &s.coll);
    let after = json!({"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": MAX_TOKEN}, "description": "resume after this change token"});
    let last_event_id = json!({"name": "Last-Event-ID", "in": "header", "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}, "description": "resume after this change token (sent by EventSource on reconnect)"});
    json!({
    "/v1/{ns}/batch": {"post": {"summary": "Atomic batch: all ops or none", "parameters": [ns],
        "requestBody": json_body(json!({"type": "object", "required": ["ops"], "additionalProperties": false, "properties": {"ops": {"type": "array", "items": {"$ref": "#/components/schemas/BatchOp"}}}})),
        "responses": with(ok("200", "new versions, and per op the values a mutate op left at its paths (null for other ops)", json!({"type": "object", "properties": {"versions": {"type": "array", "items": {"type": ["integer", "null"]}}, "values": {"type": "array", "items": {"type": ["object", "null"]}}}})), &["400", "401", "403", "404", "409", "412", "413", "501"])}},
    "/v1/{ns}/{coll}/watch": {"get": {"summary": "Server-sent events of the collection's changes (and namespace-wide purges and gaps): id is the resume token, event the op, data a ChangeEvent; Last-Event-ID or ?after= resumes (501 where the backend has no change feed)",
        "parameters": [ns, coll, after.clone(), last_event_id.clone()],
        "responses": with(json!({"200": {"description": "event stream", "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/ChangeSse"}}}}}), &["400", "401", "403", "404", "501"])}},
    "/v1/{ns}/watch": {"get": {"summary": "Server-sent events of every change in the namespace, as above",
        "parameters": [ns, after, last_event_id],
        "responses": with(json!({"200": {"description": "event stream", "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/ChangeSse"}}}}}), &["400", "401", "403", "501"])}}
    })
}

/// Health, readiness, metrics and this document: no token needed.
fn operation_paths() -> Value {
    json!({
    "/healthz": {"get": {"summary": "Alive", "security": [], "responses": {"200": {"description": "alive"}}}},
    "/readyz": {"get": {"summary": "Backend reachable, with its latency", "security": [], "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {}}}}}},
    "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}}
    })
}

//! The write function of a collection: every write of a batch runs on the server, in one
//! call per run of the batch's ops, so a single write is one statement and one round trip.
//!
//! Each collection has a PL/pgSQL function in its namespace's schema (`<collection>$write`),
//! generated from its [`Layout`] with every table, column and key written out, and remade
//! in the transaction of every spec change. Its statements are static SQL with plans made
//! once per connection (`plan_cache_mode = force_generic_plan`: re-planning at each call
//! would cost more than the writes). It takes one *segment* of a batch as arrays, one
//! element per op (see [`Layout::writer_call`]), and:
//!
//! 1. takes the collection's advisory lock (shared; exclusive when the batch removes
//!    records) and only then reads the spec revision and version floor, so no spec change
//!    can commit between the check and the write;
//! 2. locks the stored rows of the segment's ids `FOR UPDATE` in id order (unless one put
//!    statement writes them all: it goes in id order by itself, so concurrent batches wait
//!    for each other, never deadlock) and checks the preconditions of checks, deletes and
//!    restores against them;
//! 3. reports the live records its checks assert, then deletes (raising the version
//!    floor);
//! 4. before writes: refuses (`SW425`) a segment whose set-based statements could give a
//!    unique value to an op before the op that frees it, and lets expired holders of the
//!    segment's unique values go;
//! 5. writes: puts without a precondition or with `Absent` are one
//!    `INSERT … ON CONFLICT DO UPDATE` each (the row lock and the liveness test are the
//!    conflict's), puts on a live record one `UPDATE`; a put that wrote nothing failed its
//!    precondition. Versions and times are computed on the server. Restores last, then the
//!    multi-valued indexes' side rows;
//! 6. appends the changes to the log when the namespace is watched (see `feed.rs`): the
//!    delete statement logs its own; the written records are logged last, as they are
//!    then, in op order;
//! 7. returns `(id, version, created_at, updated_at, expires_at)` of every record it wrote,
//!    deleted live or checked live.
//!
//! A segment holds each id once, so the set-based statements see no op of their own
//! segment, and its statements run in the order check, delete, put, restore: the client
//! cuts a batch into segments where the collection or revision changes, an id comes back,
//! a delete follows a write, or a put follows a restore (see `write.rs`). A failed
//! precondition in a segment of several ops carries no detail: the client runs the batch
//! again one op per segment, which names the first op that fails, exactly. Errors of its
//! own carry SQLSTATEs of class `SW`.

use stowage_core::Result;

use crate::catalog::lock_key;
use crate::feed::CHANNEL;
use crate::schema::{cast_type, fit, quote, schema_name, Layout};

/// The function's name in the namespace's schema.
pub(crate) fn writer_name(collection: &str) -> String {
    fit(&format!("{collection}$write"))
}

/// A precondition the function failed: the detail is `"<op> <live version or empty>"`.
pub(crate) const FAILED_PRECONDITION: &str = "SW412";
/// The op's spec revision is not the collection's.
pub(crate) const STALE_SPEC: &str = "SW409";
/// The collection is gone.
pub(crate) const GONE: &str = "SW404";
/// A multi-op segment hands a unique value between its records: run it one op at a time.
pub(crate) const ORDER_MATTERS: &str = "SW425";
/// The function is older than the collection's spec (a spec change committed while the
/// call started): try again.
pub(crate) const OUTDATED: &str = "SW503";

/// The op codes of `p_action`.
pub(crate) const ACTION_CHECK: i16 = 0;
pub(crate) const ACTION_DELETE: i16 = 1;
pub(crate) const ACTION_PUT: i16 = 2;
pub(crate) const ACTION_RESTORE: i16 = 3;

/// The precondition codes of `p_cond`.
pub(crate) const COND_NONE: i16 = 0;
pub(crate) const COND_ABSENT: i16 = 1;
pub(crate) const COND_EXISTS: i16 = 2;
pub(crate) const COND_VERSION: i16 = 3;

/// The positions (1-based) of `p_counts`: how many ops of each kind a segment has.
pub(crate) const COUNT_PUT_ANY: usize = 1;
pub(crate) const COUNT_PUT_ABSENT: usize = 2;
pub(crate) const COUNT_PUT_LIVE: usize = 3;
pub(crate) const COUNT_RESTORE: usize = 4;
pub(crate) const COUNT_CHECK: usize = 5;
pub(crate) const COUNT_DELETE: usize = 6;
/// The length of `p_counts`.
pub(crate) const COUNTS: usize = 6;

/// A SQL string literal (Stowage names are `[A-Za-z0-9_-]`, but quote anyway).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `r` (the stored row) is live.
const LIVE: &str = "(r.expires_at IS NULL OR r.expires_at > v_now)";

/// The CTEs that append the rows of CTE `source` (`id`, `version`) as `op` events when the
/// namespace is watched, numbered in op order: `from` joins `source` as `s` to what holds
/// the ops' positions, `order` names that position.
fn log_ctes(ns: &str, collection: &str, source: &str, from: &str, op: &str, order: &str) -> String {
    let (ns, collection) = (literal(ns), literal(collection));
    format!(
        "log_n AS (SELECT count(*) AS n FROM {source}),\n\
         log_f AS (UPDATE stowage.feeds SET last_token = last_token + log_n.n FROM log_n \
           WHERE namespace = {ns} AND log_n.n > 0 RETURNING last_token, log_n.n),\n\
         log_woken AS (SELECT pg_notify('{CHANNEL}', {ns}) FROM log_f),\n\
         log_rows AS (INSERT INTO stowage.changes \
           (namespace, token, op, collection, id, version, count, at) \
           SELECT {ns}, log_f.last_token - log_f.n + row_number() OVER (ORDER BY {order}), \
           '{op}', {collection}, s.id, s.version, NULL, v_now \
           FROM log_f, log_woken, {from})"
    )
}

impl Layout {
    /// The statement that calls the write function: `$1` revision, `$2` the caller's now
    /// (NULL: the database's), `$3` exclusive lock, `$4` how many ops of each kind (see
    /// [`COUNTS`]), then per op `$5` batch position (int), `$6` id, `$7` action, `$8`
    /// precondition, `$9` expected version, `$10` JSON body, `$11` byte body, `$12` TTL in
    /// microseconds, `$13`–`$16` a restore's version, `created_at`, `updated_at`,
    /// `expires_at`; then one array per index column, then per side table the op positions
    /// (1-based) and the values of its entries.
    pub fn writer_call(&self) -> String {
        let n = 16 + self.columns.len() + 2 * self.sides.len();
        let params: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
        // The revision in the text gives each revision its own prepared statement, typed
        // by the function of that revision.
        format!(
            "SELECT * FROM {}.{}({}) /* revision {} */",
            quote(&schema_name(&self.ns)),
            quote(&writer_name(&self.collection)),
            params.join(", "),
            self.stored.revision
        )
    }

    /// The statements that (re)make this layout's write function. The old one is dropped
    /// first: a changed index set changes the parameters, which would otherwise make a
    /// second function of the same name.
    pub fn writer_ddl(&self) -> Result<String> {
        let t = &self.table;
        let (ns, coll) = (self.ns.as_str(), self.collection.as_str());
        let (ns_l, coll_l) = (literal(ns), literal(coll));
        let revision = self.stored.revision;
        let key = lock_key(ns, coll);
        let mut params: Vec<String> = [
            "p_revision bigint",
            "p_now timestamptz",
            "p_exclusive boolean",
            "p_counts int[]",
            "p_ord int[]",
            "p_id text[]",
            "p_action smallint[]",
            "p_cond smallint[]",
            "p_expect bigint[]",
            "p_body text[]",
            "p_blob bytea[]",
            "p_ttl float8[]",
            "p_version bigint[]",
            "p_created timestamptz[]",
            "p_updated timestamptz[]",
            "p_expires timestamptz[]",
        ]
        .map(str::to_owned)
        .to_vec();
        // The unnest of every per-op array, as `u`, and the index columns.
        let mut u_args: Vec<String> = [
            "p_ord",
            "p_id",
            "p_action",
            "p_cond",
            "p_expect",
            "p_body",
            "p_blob",
            "p_ttl",
            "p_version",
            "p_created",
            "p_updated",
            "p_expires",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut u_cols: Vec<String> = [
            "ord", "id", "action", "cond", "expect", "body", "blob", "ttl", "version", "created",
            "updated", "expires",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut index_cols = Vec::new();
        for (i, c) in self.columns.iter().enumerate() {
            params.push(format!("p_c{i} {}[]", cast_type(c.index_type)?));
            u_args.push(format!("p_c{i}"));
            u_cols.push(format!("c{i}"));
            index_cols.push((c.column.clone(), format!("c{i}")));
        }
        for (i, s) in self.sides.iter().enumerate() {
            params.push(format!("p_s{i}_at int[]"));
            params.push(format!("p_s{i} {}[]", cast_type(s.index_type)?));
        }
        let returning = "RETURNING r.id, r.version, r.created_at, r.updated_at, r.expires_at";

        // What a put stores, from `u`, and how a stored row takes it.
        let mut insert_cols = vec![
            "id",
            "version",
            "body",
            "blob",
            "created_at",
            "updated_at",
            "expires_at",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        let mut put_values = vec![
            "u.id".to_owned(),
            "v_floor + 1".to_owned(),
            "u.body".to_owned(),
            "u.blob".to_owned(),
            "v_now".to_owned(),
            "v_now".to_owned(),
            "v_now + u.ttl * interval '1 microsecond'".to_owned(),
        ];
        let mut restore_values = vec![
            "u.id",
            "u.version",
            "u.body",
            "u.blob",
            "u.created",
            "u.updated",
            "u.expires",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        let mut excluded = vec![
            format!(
                "version = CASE WHEN {LIVE} THEN r.version + 1 \
                 ELSE greatest(v_floor, r.version) + 1 END"
            ),
            "body = EXCLUDED.body".to_owned(),
            "blob = EXCLUDED.blob".to_owned(),
            format!("created_at = CASE WHEN {LIVE} THEN r.created_at ELSE EXCLUDED.created_at END"),
            "updated_at = EXCLUDED.updated_at".to_owned(),
            "expires_at = EXCLUDED.expires_at".to_owned(),
        ];
        let mut restored = vec![
            "version = EXCLUDED.version",
            "body = EXCLUDED.body",
            "blob = EXCLUDED.blob",
            "created_at = EXCLUDED.created_at",
            "updated_at = EXCLUDED.updated_at",
            "expires_at = EXCLUDED.expires_at",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        let mut rewrite = vec![
            "version = r.version + 1".to_owned(),
            "body = u.body".to_owned(),
            "blob = u.blob".to_owned(),
            "updated_at = v_now".to_owned(),
            "expires_at = v_now + u.ttl * interval '1 microsecond'".to_owned(),
        ];
        for (column, field) in &index_cols {
            insert_cols.push(column.clone());
            put_values.push(format!("u.{field}"));
            restore_values.push(format!("u.{field}"));
            excluded.push(format!("{column} = EXCLUDED.{column}"));
            restored.push(format!("{column} = EXCLUDED.{column}"));
            rewrite.push(format!("{column} = u.{field}"));
        }
        let (insert_cols, put_values, restore_values) = (
            insert_cols.join(", "),
            put_values.join(", "),
            restore_values.join(", "),
        );
        let (excluded, restored, rewrite) =
            (excluded.join(", "), restored.join(", "), rewrite.join(", "));

        // A put statement that wrote fewer records than it had ops failed a precondition.
        let put_failed = |count: usize| {
            format!(
                "    GET DIAGNOSTICS v_n = ROW_COUNT;\n    \
                 IF v_n < p_counts[{count}] THEN\n      \
                 IF cardinality(p_id) > 1 THEN RAISE EXCEPTION 'precondition failed' \
                 USING ERRCODE = '{FAILED_PRECONDITION}'; END IF;\n      \
                 SELECT r.version INTO v_actual FROM {t} r WHERE r.id = p_id[1] AND {LIVE};\n      \
                 RAISE EXCEPTION 'precondition failed' USING ERRCODE = '{FAILED_PRECONDITION}', \
                 DETAIL = p_ord[1] || ' ' || coalesce(v_actual::text, '');\n    END IF;\n"
            )
        };

        let mut body = String::new();
        // 1. Lock, then the catalog.
        body.push_str(&format!(
            "  IF p_exclusive THEN PERFORM pg_advisory_xact_lock({key});\n  \
             ELSE PERFORM pg_advisory_xact_lock_shared({key}); END IF;\n  \
             SELECT c.revision, coalesce(f.floor, 0), \
             EXISTS (SELECT 1 FROM stowage.feeds WHERE namespace = {ns_l}) \
             INTO v_revision, v_floor, v_watched \
             FROM stowage.collections c LEFT JOIN stowage.version_floors f \
             USING (namespace, collection) WHERE c.namespace = {ns_l} AND c.collection = {coll_l};\n  \
             IF v_revision IS NULL THEN RAISE EXCEPTION 'collection gone' USING ERRCODE = '{GONE}'; END IF;\n  \
             IF v_revision <> p_revision THEN RAISE EXCEPTION 'stale spec' USING ERRCODE = '{STALE_SPEC}'; END IF;\n  \
             IF v_revision <> {revision} THEN RAISE EXCEPTION 'write function outdated' USING ERRCODE = '{OUTDATED}'; END IF;\n"
        ));
        // 2. The stored rows locked in id order when checks, deletes or restores read
        //    them, or when more than one statement writes them (two batches over the same
        //    ids then wait for each other instead of deadlocking: a single put statement
        //    goes in id order by itself); those ops' preconditions checked.
        body.push_str(&format!(
            "  IF p_counts[{COUNT_CHECK}] + p_counts[{COUNT_DELETE}] + p_counts[{COUNT_RESTORE}] > 0 \
             OR p_counts[{COUNT_PUT_LIVE}] > 1 OR (p_counts[{COUNT_PUT_ANY}] > 0)::int + \
             (p_counts[{COUNT_PUT_ABSENT}] > 0)::int + (p_counts[{COUNT_PUT_LIVE}] > 0)::int > 1 THEN\n    \
             v_locked := ARRAY(SELECT r.id FROM {t} r WHERE r.id = ANY(p_id) ORDER BY r.id FOR UPDATE);\n    \
             SELECT u.ord, r.version INTO v_bad, v_actual \
             FROM unnest(p_ord, p_id, p_action, p_cond, p_expect) AS u(ord, id, action, cond, expect) \
             LEFT JOIN {t} r ON r.id = u.id AND r.id = ANY(v_locked) AND {LIVE} \
             WHERE u.action <> {ACTION_PUT} AND CASE u.cond WHEN {COND_ABSENT} THEN r.id IS NOT NULL \
             WHEN {COND_EXISTS} THEN r.id IS NULL \
             WHEN {COND_VERSION} THEN r.version IS DISTINCT FROM u.expect ELSE false END \
             ORDER BY u.ord LIMIT 1;\n    \
             IF v_bad IS NOT NULL THEN\n      \
             IF cardinality(p_id) > 1 THEN RAISE EXCEPTION 'precondition failed' \
             USING ERRCODE = '{FAILED_PRECONDITION}'; END IF;\n      \
             RAISE EXCEPTION 'precondition failed' USING ERRCODE = '{FAILED_PRECONDITION}', \
             DETAIL = v_bad || ' ' || coalesce(v_actual::text, '');\n    END IF;\n  END IF;\n"
        ));
        // 3. Checks report the live record; deletes remove rows, raise the floor, log.
        let delete_log = log_ctes(ns, coll, "gone_live", "gone_live s", "delete", "s.ord");
        body.push_str(&format!(
            "  IF p_counts[{COUNT_CHECK}] > 0 THEN\n    RETURN QUERY SELECT r.id, r.version, \
             r.created_at, r.updated_at, r.expires_at FROM unnest(p_id, p_action) \
             AS u(id, action) JOIN {t} r ON r.id = u.id AND r.id = ANY(v_locked) \
             WHERE u.action = {ACTION_CHECK} AND {LIVE};\n  END IF;\n  \
             IF p_counts[{COUNT_DELETE}] > 0 THEN\n    RETURN QUERY\n    \
             WITH gone AS (DELETE FROM {t} r USING unnest(p_ord, p_id, p_action) \
             AS u(ord, id, action) WHERE u.action = {ACTION_DELETE} AND r.id = u.id \
             AND r.id = ANY(v_locked) RETURNING u.ord, r.id, r.version, r.created_at, \
             r.updated_at, r.expires_at, {LIVE} AS live),\n\
             gone_live AS (SELECT * FROM gone WHERE live),\n\
             floor AS (INSERT INTO stowage.version_floors AS f (namespace, collection, floor) \
             SELECT {ns_l}, {coll_l}, max(g.version) FROM gone g HAVING count(*) > 0 \
             ON CONFLICT (namespace, collection) DO UPDATE \
             SET floor = greatest(f.floor, EXCLUDED.floor)),\n\
             {delete_log}\n\
             SELECT g.id, g.version, g.created_at, g.updated_at, g.expires_at FROM gone_live g;\n    \
             SELECT coalesce(max(f.floor), 0) INTO v_floor FROM stowage.version_floors f \
             WHERE f.namespace = {ns_l} AND f.collection = {coll_l};\n  END IF;\n"
        ));
        // 4. Unique values: no hand-over the set-based statements would reorder; expired
        //    holders let go.
        let mut unique = String::new();
        for (i, c) in self.columns.iter().enumerate().filter(|(_, c)| c.unique) {
            unique.push_str(&format!(
                "    IF cardinality(p_id) > 1 AND EXISTS (SELECT 1 \
                 FROM unnest(p_ord, p_id, p_c{i}) AS u(ord, id, v) \
                 JOIN {t} r ON r.{col} = u.v AND r.id <> u.id AND r.id = ANY(p_id) AND {LIVE} \
                 JOIN unnest(p_ord, p_id) AS w(ord, id) ON w.id = r.id AND w.ord > u.ord) THEN\n      \
                 RAISE EXCEPTION 'op order matters' USING ERRCODE = '{ORDER_MATTERS}';\n    END IF;\n    \
                 UPDATE {t} SET {col} = NULL WHERE {col} = ANY(p_c{i}) \
                 AND NOT (id = ANY(p_id)) AND expires_at <= v_now;\n",
                col = c.column
            ));
        }
        for (i, s) in self.sides.iter().enumerate().filter(|(_, s)| s.unique) {
            unique.push_str(&format!(
                "    IF cardinality(p_s{i}) > 0 THEN\n      \
                 IF cardinality(p_id) > 1 AND EXISTS (SELECT 1 \
                 FROM unnest(p_s{i}_at, p_s{i}) AS u(at, v) \
                 JOIN {side} x ON x.value = u.v AND x.id <> p_id[u.at] AND x.id = ANY(p_id) \
                 JOIN {t} r ON r.id = x.id AND {LIVE} \
                 JOIN unnest(p_ord, p_id) AS w(ord, id) ON w.id = r.id AND w.ord > p_ord[u.at]) THEN\n        \
                 RAISE EXCEPTION 'op order matters' USING ERRCODE = '{ORDER_MATTERS}';\n      END IF;\n      \
                 DELETE FROM {side} x USING {t} r WHERE x.id = r.id AND x.value = ANY(p_s{i}) \
                 AND NOT (x.id = ANY(p_id)) AND r.expires_at <= v_now;\n    END IF;\n",
                side = s.table
            ));
        }
        if !unique.is_empty() {
            body.push_str(&format!(
                "  IF p_counts[{COUNT_PUT_ANY}] + p_counts[{COUNT_PUT_ABSENT}] + \
                 p_counts[{COUNT_PUT_LIVE}] + p_counts[{COUNT_RESTORE}] > 0 THEN\n{unique}  END IF;\n"
            ));
        }
        // 5. Puts, in three statements by precondition, then restores.
        let from = |filter: &str| {
            format!(
                "unnest({}) AS u({}) WHERE {filter}",
                u_args.join(", "),
                u_cols.join(", ")
            )
        };
        body.push_str(&format!(
            "  IF p_counts[{COUNT_PUT_ANY}] > 0 THEN\n    RETURN QUERY \
             INSERT INTO {t} AS r ({insert_cols}) SELECT {put_values} FROM {u} ORDER BY u.id \
             ON CONFLICT (id) DO UPDATE SET {excluded} {returning};\n  END IF;\n",
            u = from(&format!("u.action = {ACTION_PUT} AND u.cond = {COND_NONE}")),
        ));
        body.push_str(&format!(
            "  IF p_counts[{COUNT_PUT_ABSENT}] > 0 THEN\n    RETURN QUERY \
             INSERT INTO {t} AS r ({insert_cols}) SELECT {put_values} FROM {u} ORDER BY u.id \
             ON CONFLICT (id) DO UPDATE SET {excluded} WHERE NOT {LIVE} {returning};\n\
             {failed}  END IF;\n",
            u = from(&format!(
                "u.action = {ACTION_PUT} AND u.cond = {COND_ABSENT}"
            )),
            failed = put_failed(COUNT_PUT_ABSENT),
        ));
        body.push_str(&format!(
            "  IF p_counts[{COUNT_PUT_LIVE}] > 0 THEN\n    RETURN QUERY \
             UPDATE {t} r SET {rewrite} FROM {u} AND r.id = u.id AND {LIVE} \
             AND (u.cond = {COND_EXISTS} OR r.version = u.expect) {returning};\n\
             {failed}  END IF;\n",
            u = from(&format!(
                "u.action = {ACTION_PUT} AND u.cond >= {COND_EXISTS}"
            )),
            failed = put_failed(COUNT_PUT_LIVE),
        ));
        body.push_str(&format!(
            "  IF p_counts[{COUNT_RESTORE}] > 0 THEN\n    RETURN QUERY\n    \
             WITH u AS (SELECT * FROM {u}),\n\
             replaced AS (INSERT INTO stowage.version_floors AS f (namespace, collection, floor) \
             SELECT {ns_l}, {coll_l}, max(r.version) FROM u JOIN {t} r ON r.id = u.id \
             AND r.id = ANY(v_locked) AND r.version <> u.version HAVING count(*) > 0 \
             ON CONFLICT (namespace, collection) DO UPDATE \
             SET floor = greatest(f.floor, EXCLUDED.floor))\n\
             INSERT INTO {t} AS r ({insert_cols}) SELECT {restore_values} FROM u ORDER BY u.id \
             ON CONFLICT (id) DO UPDATE SET {restored} {returning};\n  END IF;\n",
            u = from(&format!("u.action = {ACTION_RESTORE}")),
        ));
        // 6. The log, when the namespace is watched: the written records as they are now
        //    (this transaction holds their rows), in op order.
        body.push_str(&format!(
            "  v_n := p_counts[{COUNT_PUT_ANY}] + p_counts[{COUNT_PUT_ABSENT}] + \
             p_counts[{COUNT_PUT_LIVE}] + p_counts[{COUNT_RESTORE}];\n  \
             IF v_watched AND v_n > 0 THEN\n    \
             WITH log_f AS (UPDATE stowage.feeds SET last_token = last_token + v_n \
             WHERE namespace = {ns_l} RETURNING last_token),\n\
             log_woken AS (SELECT pg_notify('{CHANNEL}', {ns_l}) FROM log_f)\n\
             INSERT INTO stowage.changes (namespace, token, op, collection, id, version, count, at) \
             SELECT {ns_l}, log_f.last_token - v_n + row_number() OVER (ORDER BY u.ord), 'put', \
             {coll_l}, r.id, r.version, NULL, v_now FROM log_f, log_woken, \
             unnest(p_ord, p_id, p_action) AS u(ord, id, action) JOIN {t} r ON r.id = u.id \
             WHERE u.action >= {ACTION_PUT};\n  END IF;\n"
        ));
        // Side rows: a written record's entries replaced.
        if !self.sides.is_empty() {
            body.push_str(&format!(
                "  IF p_counts[{COUNT_PUT_ANY}] + p_counts[{COUNT_PUT_ABSENT}] + \
                 p_counts[{COUNT_PUT_LIVE}] + p_counts[{COUNT_RESTORE}] > 0 THEN\n    \
                 IF p_counts[{COUNT_CHECK}] + p_counts[{COUNT_DELETE}] = 0 THEN v_written := p_id;\n    \
                 ELSE v_written := ARRAY(SELECT u.id FROM unnest(p_id, p_action) AS u(id, action) \
                 WHERE u.action >= {ACTION_PUT}); END IF;\n"
            ));
            for (i, s) in self.sides.iter().enumerate() {
                body.push_str(&format!(
                    "    DELETE FROM {side} WHERE id = ANY(v_written);\n    \
                     IF cardinality(p_s{i}) > 0 THEN\n      \
                     INSERT INTO {side} (value, id) SELECT v.value, p_id[v.at] \
                     FROM unnest(p_s{i}_at, p_s{i}) AS v(at, value);\n    END IF;\n",
                    side = s.table
                ));
            }
            body.push_str("  END IF;\n");
        }

        Ok(format!(
            "DROP FUNCTION IF EXISTS {schema}.{name};\n\
             CREATE FUNCTION {schema}.{name}({params})\n\
             RETURNS TABLE (o_id text, o_version bigint, o_created_at timestamptz, \
             o_updated_at timestamptz, o_expires_at timestamptz)\n\
             LANGUAGE plpgsql\n\
             SET plan_cache_mode = force_generic_plan\n\
             AS $stowage$\n\
             -- Generated by Stowage for collection {coll_l} at spec revision {revision}.\n\
             DECLARE\n  v_now timestamptz := coalesce(p_now, now());\n  v_revision bigint;\n  \
             v_floor bigint;\n  v_locked text[];\n  v_written text[];\n  v_bad int;\n  \
             v_actual bigint;\n  v_n bigint;\n  v_watched boolean;\n\
             BEGIN\n{body}END\n$stowage$",
            schema = quote(&schema_name(ns)),
            name = quote(&writer_name(coll)),
            params = params.join(", "),
        ))
    }
}

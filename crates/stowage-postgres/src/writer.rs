//! The write function of a collection: every write of a batch runs on the server, in one
//! call per run of the batch's ops, so a single write is one statement and one round trip.
//!
//! Each collection has a PL/pgSQL function in its namespace's schema (`<collection>$write`),
//! generated from its [`Layout`] with every table, column and key written out, and replaced
//! in the transaction of every spec change. Its statements are static SQL, so PostgreSQL
//! plans them once per connection. It takes one *segment* of a batch as arrays, one element
//! per op (see [`Layout::writer_call`]), and:
//!
//! 1. takes the collection's advisory lock (shared; exclusive when the batch removes
//!    records) and only then reads the spec revision and version floor, so no spec change
//!    can commit between the check and the write;
//! 2. locks the stored rows of the segment's ids `FOR UPDATE`, in id order;
//! 3. checks the preconditions against them (failing with `SW412`, the op and the live
//!    version in the detail);
//! 4. refuses (`SW425`) a segment whose set-based statements could give a unique value to
//!    an op before the op that frees it, and lets expired holders of the segment's unique
//!    values go;
//! 5. deletes (raising the version floor), then writes records (an `UPDATE` of the locked
//!    rows and an `INSERT` of the new ones in one statement), computing versions and times
//!    on the server, then replaces the multi-valued indexes' side rows;
//! 6. appends the changes to the log when the namespace is watched (see `feed.rs`);
//! 7. returns `(op, version, created_at, updated_at, expires_at)` for every op that has a
//!    record to report.
//!
//! A segment holds each id once, so the set-based statements see no op of their own
//! segment: the client cuts a batch into segments where the collection or revision
//! changes, an id comes back, a delete follows a write, or a put follows a restore (which
//! may raise the floor the put's version starts from; see `write.rs`). Ids absent at
//! step 2 are inserted, so a row another writer inserts meanwhile fails the primary key and
//! the batch is tried again. Errors of its own carry SQLSTATEs of class `SW`.

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

/// A SQL string literal (Stowage names are `[A-Za-z0-9_-]`, but quote anyway).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The log statements' common tail: append the rows of CTE `source` (`ord`, `id`,
/// `version`) as `op` events when the namespace is watched, numbered in op order.
fn log_ctes(ns: &str, collection: &str, source: &str, op: &str) -> String {
    let (ns, collection) = (literal(ns), literal(collection));
    format!(
        "log_n AS (SELECT count(*) AS n FROM {source}), \
         log_f AS (UPDATE stowage.feeds SET last_token = last_token + log_n.n FROM log_n \
           WHERE namespace = {ns} AND log_n.n > 0 RETURNING last_token, log_n.n), \
         log_woken AS (SELECT pg_notify('{CHANNEL}', {ns}) FROM log_f), \
         log_rows AS (INSERT INTO stowage.changes \
           (namespace, token, op, collection, id, version, count, at) \
           SELECT {ns}, log_f.last_token - log_f.n + row_number() OVER (ORDER BY s.ord), \
           '{op}', {collection}, s.id, s.version, NULL, v_now \
           FROM log_f, log_woken, {source} s)"
    )
}

impl Layout {
    /// The statement that calls the write function: `$1` revision, `$2` the caller's now
    /// (NULL: the database's), `$3` exclusive lock, then per op `$4` batch position (int),
    /// `$5` id, `$6` action, `$7` precondition, `$8` expected version, `$9` JSON body,
    /// `$10` byte body, `$11` TTL in microseconds, `$12`–`$15` a restore's version,
    /// `created_at`, `updated_at`, `expires_at`; then one array per index column, then per
    /// side table the op positions (1-based) and the values of its entries.
    pub fn writer_call(&self) -> String {
        let n = 15 + self.columns.len() + 2 * self.sides.len();
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
        let revision = self.stored.revision;
        let key = lock_key(ns, coll);
        let mut params = vec![
            "p_revision bigint".to_owned(),
            "p_now timestamptz".to_owned(),
            "p_exclusive boolean".to_owned(),
            "p_ord int[]".to_owned(),
            "p_id text[]".to_owned(),
            "p_action smallint[]".to_owned(),
            "p_cond smallint[]".to_owned(),
            "p_expect bigint[]".to_owned(),
            "p_body text[]".to_owned(),
            "p_blob bytea[]".to_owned(),
            "p_ttl float8[]".to_owned(),
            "p_version bigint[]".to_owned(),
            "p_created timestamptz[]".to_owned(),
            "p_updated timestamptz[]".to_owned(),
            "p_expires timestamptz[]".to_owned(),
        ];
        for (i, c) in self.columns.iter().enumerate() {
            params.push(format!("p_c{i} {}[]", cast_type(c.index_type)?));
        }
        for (i, s) in self.sides.iter().enumerate() {
            params.push(format!("p_s{i}_at int[]"));
            params.push(format!("p_s{i} {}[]", cast_type(s.index_type)?));
        }

        // Step 4: a unique value that a record of the segment holds until a later op of the
        // segment rewrites it cannot go to an earlier op (it would, in one set-based
        // statement): the client runs such a batch one op at a time. Then expired holders
        // of the segment's unique values let them go.
        let mut release = String::new();
        let live = "(r.expires_at IS NULL OR r.expires_at > v_now)";
        for (i, c) in self.columns.iter().enumerate().filter(|(_, c)| c.unique) {
            release.push_str(&format!(
                "  IF cardinality(p_id) > 1 AND EXISTS (SELECT 1                  FROM unnest(p_ord, p_id, p_c{i}) AS u(ord, id, v)                  JOIN {t} r ON r.{col} = u.v AND r.id <> u.id AND r.id = ANY(v_locked) AND {live}                  JOIN unnest(p_ord, p_id) AS w(ord, id) ON w.id = r.id AND w.ord > u.ord) THEN\n                     RAISE EXCEPTION 'op order matters' USING ERRCODE = '{ORDER_MATTERS}';\n  END IF;\n",
                col = c.column
            ));
        }
        for (i, s) in self.sides.iter().enumerate().filter(|(_, s)| s.unique) {
            release.push_str(&format!(
                "  IF cardinality(p_id) > 1 AND EXISTS (SELECT 1                  FROM unnest(p_s{i}_at, p_s{i}) AS u(at, v)                  JOIN {side} x ON x.value = u.v AND x.id <> p_id[u.at] AND x.id = ANY(v_locked)                  JOIN {t} r ON r.id = x.id AND {live}                  JOIN unnest(p_ord, p_id) AS w(ord, id) ON w.id = r.id AND w.ord > p_ord[u.at]) THEN\n                     RAISE EXCEPTION 'op order matters' USING ERRCODE = '{ORDER_MATTERS}';\n  END IF;\n",
                side = s.table
            ));
        }
        for (i, c) in self.columns.iter().enumerate().filter(|(_, c)| c.unique) {
            release.push_str(&format!(
                "  UPDATE {t} SET {col} = NULL WHERE {col} = ANY(p_c{i}) \
                 AND NOT (id = ANY(p_id)) AND expires_at <= v_now;\n",
                col = c.column
            ));
        }
        for (i, s) in self.sides.iter().enumerate().filter(|(_, s)| s.unique) {
            release.push_str(&format!(
                "  IF cardinality(p_s{i}) > 0 THEN\n    DELETE FROM {side} s USING {t} r \
                 WHERE s.id = r.id AND s.value = ANY(p_s{i}) AND NOT (s.id = ANY(p_id)) \
                 AND r.expires_at <= v_now;\n  END IF;\n",
                side = s.table
            ));
        }

        // Step 5: the record statement. Columns of the records table, and the values a
        // written record takes (from CTE `n`).
        let mut u_cols = vec![
            "ord", "id", "action", "body", "blob", "ttl", "version", "created", "updated",
            "expires",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        let mut u_args = vec![
            "p_ord",
            "p_id",
            "p_action",
            "p_body",
            "p_blob",
            "p_ttl",
            "p_version",
            "p_created",
            "p_updated",
            "p_expires",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        let mut columns = vec![
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
        let mut values = vec![
            "n.id",
            "n.new_version",
            "n.body",
            "n.blob",
            "n.new_created",
            "n.new_updated",
            "n.new_expires",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        for (i, c) in self.columns.iter().enumerate() {
            u_cols.push(format!("c{i}"));
            u_args.push(format!("p_c{i}"));
            columns.push(c.column.clone());
            values.push(format!("n.c{i}"));
        }
        let sets = columns
            .iter()
            .zip(&values)
            .skip(1)
            .map(|(c, v)| format!("{c} = {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let (ns_l, coll_l) = (literal(ns), literal(coll));
        let write_log = log_ctes(ns, coll, "done", "put");
        let delete_log = log_ctes(ns, coll, "gone_live", "delete");
        let records = format!(
            "    RETURN QUERY\n    WITH u AS (SELECT * FROM unnest({u_args}) AS u({u_cols}) \
             WHERE u.action >= {ACTION_PUT}),\n\
             cur AS (SELECT u.*, r.version AS old_version, r.created_at AS old_created, \
               (r.id IS NOT NULL AND (r.expires_at IS NULL OR r.expires_at > v_now)) AS old_live \
               FROM u LEFT JOIN {t} r ON r.id = u.id AND r.id = ANY(v_locked)),\n\
             n AS (SELECT c.*, \
               CASE WHEN c.action = {ACTION_RESTORE} THEN c.version \
                 WHEN c.old_live THEN c.old_version + 1 \
                 ELSE greatest(v_floor, coalesce(c.old_version, 0)) + 1 END AS new_version, \
               CASE WHEN c.action = {ACTION_RESTORE} THEN c.created \
                 WHEN c.old_live THEN c.old_created ELSE v_now END AS new_created, \
               CASE WHEN c.action = {ACTION_RESTORE} THEN c.updated ELSE v_now END AS new_updated, \
               CASE WHEN c.action = {ACTION_RESTORE} THEN c.expires \
                 ELSE v_now + c.ttl * interval '1 microsecond' END AS new_expires \
               FROM cur c),\n\
             changed AS (UPDATE {t} r SET {sets} FROM n WHERE n.old_version IS NOT NULL \
               AND r.id = n.id RETURNING n.ord, r.id, r.version, r.created_at, r.updated_at, \
               r.expires_at),\n\
             added AS (INSERT INTO {t} ({columns}) SELECT {values} FROM n \
               WHERE n.old_version IS NULL ORDER BY n.ord \
               RETURNING id, version, created_at, updated_at, expires_at),\n\
             done AS (SELECT * FROM changed UNION ALL SELECT n.ord, a.id, a.version, \
               a.created_at, a.updated_at, a.expires_at FROM added a JOIN n ON n.id = a.id),\n\
             replaced AS (INSERT INTO stowage.version_floors AS f (namespace, collection, floor) \
               SELECT {ns_l}, {coll_l}, max(n.old_version) FROM n \
               WHERE n.action = {ACTION_RESTORE} AND n.old_version <> n.version \
               HAVING count(*) > 0 \
               ON CONFLICT (namespace, collection) DO UPDATE \
               SET floor = greatest(f.floor, EXCLUDED.floor)),\n\
             {write_log}\n\
             SELECT d.ord, d.version, d.created_at, d.updated_at, d.expires_at FROM done d;\n",
            u_args = u_args.join(", "),
            u_cols = u_cols.join(", "),
            columns = columns.join(", "),
            values = values.join(", "),
        );
        let mut sides = String::new();
        if !self.sides.is_empty() {
            sides.push_str(&format!(
                "    v_rewritten := ARRAY(SELECT u.id FROM unnest(p_id, p_action) AS u(id, action) \
                 WHERE u.action >= {ACTION_PUT} AND u.id = ANY(v_locked));\n"
            ));
            for (i, s) in self.sides.iter().enumerate() {
                sides.push_str(&format!(
                    "    IF cardinality(v_rewritten) > 0 THEN\n      \
                     DELETE FROM {side} WHERE id = ANY(v_rewritten);\n    END IF;\n    \
                     IF cardinality(p_s{i}) > 0 THEN\n      \
                     INSERT INTO {side} (value, id) SELECT v.value, p_id[v.at] \
                     FROM unnest(p_s{i}_at, p_s{i}) AS v(at, value);\n    END IF;\n",
                    side = s.table
                ));
            }
        }

        Ok(format!(
            "DROP FUNCTION IF EXISTS {schema}.{name};\n\
             CREATE FUNCTION {schema}.{name}({params})\n\
             RETURNS TABLE (o_ord int, o_version bigint, o_created_at timestamptz, \
             o_updated_at timestamptz, o_expires_at timestamptz)\n\
             LANGUAGE plpgsql AS $stowage$\n\
             -- Generated by Stowage for collection {coll_l} at spec revision {revision}.\n\
             DECLARE\n  v_now timestamptz := coalesce(p_now, now());\n  v_revision bigint;\n  \
             v_floor bigint;\n  v_locked text[];\n  v_rewritten text[];\n  v_bad int;\n  \
             v_actual bigint;\n\
             BEGIN\n\
             \x20 IF p_exclusive THEN PERFORM pg_advisory_xact_lock({key});\n  \
             ELSE PERFORM pg_advisory_xact_lock_shared({key}); END IF;\n  \
             SELECT c.revision, coalesce(f.floor, 0) INTO v_revision, v_floor \
             FROM stowage.collections c LEFT JOIN stowage.version_floors f \
             USING (namespace, collection) WHERE c.namespace = {ns_l} AND c.collection = {coll_l};\n  \
             IF v_revision IS NULL THEN RAISE EXCEPTION 'collection gone' USING ERRCODE = '{GONE}'; END IF;\n  \
             IF v_revision <> p_revision THEN RAISE EXCEPTION 'stale spec' USING ERRCODE = '{STALE_SPEC}'; END IF;\n  \
             IF v_revision <> {revision} THEN RAISE EXCEPTION 'write function outdated' USING ERRCODE = '{OUTDATED}'; END IF;\n  \
             v_locked := ARRAY(SELECT r.id FROM {t} r WHERE r.id = ANY(p_id) ORDER BY r.id FOR UPDATE);\n  \
             IF {COND_NONE} < ANY(p_cond) THEN\n    \
             SELECT u.ord, r.version INTO v_bad, v_actual \
             FROM unnest(p_ord, p_id, p_cond, p_expect) AS u(ord, id, cond, expect) \
             LEFT JOIN {t} r ON r.id = u.id AND r.id = ANY(v_locked) \
             AND (r.expires_at IS NULL OR r.expires_at > v_now) \
             WHERE CASE u.cond WHEN {COND_ABSENT} THEN r.id IS NOT NULL \
             WHEN {COND_EXISTS} THEN r.id IS NULL \
             WHEN {COND_VERSION} THEN r.version IS DISTINCT FROM u.expect ELSE false END \
             ORDER BY u.ord LIMIT 1;\n    \
             IF v_bad IS NOT NULL THEN RAISE EXCEPTION 'precondition failed' USING \
             ERRCODE = '{FAILED_PRECONDITION}', DETAIL = v_bad || ' ' || coalesce(v_actual::text, ''); END IF;\n  \
             END IF;\n  \
             IF {ACTION_CHECK} = ANY(p_action) THEN\n    RETURN QUERY SELECT u.ord, r.version, \
             r.created_at, r.updated_at, r.expires_at FROM unnest(p_ord, p_id, p_action) \
             AS u(ord, id, action) JOIN {t} r ON r.id = u.id AND r.id = ANY(v_locked) \
             WHERE u.action = {ACTION_CHECK} AND (r.expires_at IS NULL OR r.expires_at > v_now);\n  \
             END IF;\n  \
             IF {ACTION_DELETE} = ANY(p_action) THEN\n    RETURN QUERY\n    \
             WITH gone AS (DELETE FROM {t} r USING unnest(p_ord, p_id, p_action) \
             AS u(ord, id, action) WHERE u.action = {ACTION_DELETE} AND r.id = u.id \
             AND r.id = ANY(v_locked) RETURNING u.ord, r.id, r.version, r.created_at, \
             r.updated_at, r.expires_at, (r.expires_at IS NULL OR r.expires_at > v_now) AS live),\n\
             gone_live AS (SELECT * FROM gone WHERE live),\n\
             floor AS (INSERT INTO stowage.version_floors AS f (namespace, collection, floor) \
             SELECT {ns_l}, {coll_l}, max(g.version) FROM gone g HAVING count(*) > 0 \
             ON CONFLICT (namespace, collection) DO UPDATE \
             SET floor = greatest(f.floor, EXCLUDED.floor)),\n\
             {delete_log}\n\
             SELECT g.ord, g.version, g.created_at, g.updated_at, g.expires_at FROM gone_live g;\n    \
             SELECT coalesce(max(f.floor), 0) INTO v_floor FROM stowage.version_floors f \
             WHERE f.namespace = {ns_l} AND f.collection = {coll_l};\n  \
             END IF;\n  \
             IF {ACTION_PUT} = ANY(p_action) OR {ACTION_RESTORE} = ANY(p_action) THEN\n\
             {release}{records}{sides}  END IF;\n\
             END\n$stowage$",
            schema = quote(&schema_name(ns)),
            name = quote(&writer_name(coll)),
            params = params.join(", "),
        ))
    }
}

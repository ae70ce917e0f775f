//! The write function of a collection: every write of a batch runs on the server, in one
//! call per run of the batch's ops, so a single write is one statement and one round trip.
//!
//! Each collection has a PL/pgSQL function in its namespace's schema (`<collection>$write`),
//! rendered from `writer.sql` (a template beside this file) for its [`Layout`] with every
//! table, column and key written out, and remade in the transaction of every spec change. Its statements are static SQL with plans made
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

use std::sync::LazyLock;

use minijinja::{context, Environment, UndefinedBehavior};
use stowage_core::{Error, Result};

use crate::feed::CHANNEL;
use crate::schema::{cast_type, fit, lock_key, quote, schema_name, Layout};

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

/// The function's parameters before the index columns' arrays (see [`Layout::writer_call`]).
const FIXED_PARAMS: [&str; 16] = [
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
];

/// The per-op arrays unnested together as `u` (parameter `p_NAME`, column `u.NAME`), before
/// the index columns `c0`, `c1`, ….
const FIXED_ARRAYS: [&str; 12] = [
    "ord", "id", "action", "cond", "expect", "body", "blob", "ttl", "version", "created",
    "updated", "expires",
];

/// A record's stored columns before its index columns.
const STORED_COLUMNS: [&str; 7] = [
    "id",
    "version",
    "body",
    "blob",
    "created_at",
    "updated_at",
    "expires_at",
];

/// What a put stores in [`STORED_COLUMNS`]: versions and times are the server's.
const PUT_VALUES: [&str; 7] = [
    "u.id",
    "v_floor + 1",
    "u.body",
    "u.blob",
    "v_now",
    "v_now",
    "v_now + u.ttl * interval '1 microsecond'",
];

/// What a restore stores in [`STORED_COLUMNS`]: the record as it was.
const RESTORE_VALUES: [&str; 7] = [
    "u.id",
    "u.version",
    "u.body",
    "u.blob",
    "u.created",
    "u.updated",
    "u.expires",
];

/// How a put on a live record changes it (`created_at` stays).
const REWRITE: [&str; 5] = [
    "version = r.version + 1",
    "body = u.body",
    "blob = u.blob",
    "updated_at = v_now",
    "expires_at = v_now + u.ttl * interval '1 microsecond'",
];

/// The error codes, op codes and count positions the template names.
static CODES: LazyLock<minijinja::Value> = LazyLock::new(|| {
    context! {
        failed_precondition => FAILED_PRECONDITION,
        stale_spec => STALE_SPEC,
        gone => GONE,
        order_matters => ORDER_MATTERS,
        outdated => OUTDATED,
        action_check => ACTION_CHECK,
        action_delete => ACTION_DELETE,
        action_put => ACTION_PUT,
        action_restore => ACTION_RESTORE,
        cond_none => COND_NONE,
        cond_absent => COND_ABSENT,
        cond_exists => COND_EXISTS,
        cond_version => COND_VERSION,
        count_put_any => COUNT_PUT_ANY,
        count_put_absent => COUNT_PUT_ABSENT,
        count_put_live => COUNT_PUT_LIVE,
        count_restore => COUNT_RESTORE,
        count_check => COUNT_CHECK,
        count_delete => COUNT_DELETE,
    }
});

/// `writer.sql`, parsed once. Strict: a name the template uses and the context lacks is an
/// error, not an empty string in the function.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_template("writer.sql", include_str!("writer.sql"))
        .expect("writer.sql parses (every test that writes renders it)");
    env
});

impl Layout {
    /// The statement that calls the write function: `$1` revision, `$2` the caller's now
    /// (NULL: the database's), `$3` exclusive lock, `$4` how many ops of each kind (see
    /// [`COUNTS`]), then per op `$5` batch position (int), `$6` id, `$7` action, `$8`
    /// precondition, `$9` expected version, `$10` JSON body, `$11` byte body, `$12` TTL in
    /// microseconds, `$13`–`$16` a restore's version, `created_at`, `updated_at`,
    /// `expires_at`; then one array per index column, then per side table the op positions
    /// (1-based) and the values of its entries.
    pub(crate) fn writer_call(&self) -> String {
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

    /// The statements that (re)make this layout's write function, rendered from
    /// `writer.sql`. The old one is dropped first: a changed index set changes the
    /// parameters, which would otherwise make a second function of the same name.
    pub(crate) fn writer_ddl(&self) -> Result<String> {
        let (ns, coll) = (self.ns.as_str(), self.collection.as_str());
        let pieces = self.writer_pieces()?;
        let sides: Vec<_> = (self.sides.iter().enumerate())
            .map(|(i, s)| context! { i, table => s.table })
            .collect();
        let (unique_columns, unique_sides): (Vec<_>, Vec<_>) = (
            (self.columns.iter().enumerate())
                .filter(|(_, c)| c.unique)
                .map(|(i, c)| context! { i, column => c.column })
                .collect(),
            (self.sides.iter().enumerate())
                .filter(|(_, s)| s.unique)
                .map(|(i, s)| context! { i, table => s.table })
                .collect(),
        );
        let layout = context! {
            schema => quote(&schema_name(ns)),
            name => quote(&writer_name(coll)),
            t => self.table,
            ns => literal(ns),
            coll => literal(coll),
            revision => self.stored.revision,
            key => lock_key(ns, coll),
            live => LIVE,
            channel => CHANNEL,
            sides,
            unique_columns,
            unique_sides,
            returning => "RETURNING r.id, r.version, r.created_at, r.updated_at, r.expires_at",
        };
        let ctx = context! { ..layout, ..pieces, ..CODES.clone() };
        TEMPLATES
            .get_template("writer.sql")
            .and_then(|template| template.render(ctx))
            .map_err(|e| Error::internal(format!("rendering the write function of {coll}: {e}")))
    }

    /// The parameter list and the column lists of the put, restore and rewrite statements,
    /// one entry per index column after the fixed ones.
    fn writer_pieces(&self) -> Result<minijinja::Value> {
        let mut params: Vec<String> = FIXED_PARAMS.iter().map(|p| (*p).to_owned()).collect();
        let mut u_args: Vec<String> = FIXED_ARRAYS.iter().map(|a| format!("p_{a}")).collect();
        let mut u_cols: Vec<String> = FIXED_ARRAYS.iter().map(|a| (*a).to_owned()).collect();
        let mut insert_cols = STORED_COLUMNS.map(str::to_owned).to_vec();
        let mut put_values = PUT_VALUES.map(str::to_owned).to_vec();
        let mut restore_values = RESTORE_VALUES.map(str::to_owned).to_vec();
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
        let mut restored: Vec<String> = STORED_COLUMNS[1..]
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let mut rewrite = REWRITE.map(str::to_owned).to_vec();
        for (i, c) in self.columns.iter().enumerate() {
            let (column, field) = (&c.column, format!("c{i}"));
            params.push(format!("p_{field} {}[]", cast_type(c.index_type)?));
            u_args.push(format!("p_{field}"));
            u_cols.push(field.clone());
            insert_cols.push(column.clone());
            put_values.push(format!("u.{field}"));
            restore_values.push(format!("u.{field}"));
            excluded.push(format!("{column} = EXCLUDED.{column}"));
            restored.push(format!("{column} = EXCLUDED.{column}"));
            rewrite.push(format!("{column} = u.{field}"));
        }
        for (i, s) in self.sides.iter().enumerate() {
            params.push(format!("p_s{i}_at int[]"));
            params.push(format!("p_s{i} {}[]", cast_type(s.index_type)?));
        }
        Ok(context! {
            params => params.join(", "),
            u_args => u_args.join(", "),
            u_cols => u_cols.join(", "),
            insert_cols => insert_cols.join(", "),
            put_values => put_values.join(", "),
            restore_values => restore_values.join(", "),
            excluded => excluded.join(", "),
            restored => restored.join(", "),
            rewrite => rewrite.join(", "),
        })
    }
}

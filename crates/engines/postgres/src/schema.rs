//! The layout on PostgreSQL, and how Stowage names become PostgreSQL identifiers.
//!
//! The layout, readable with `psql` (built by the backend, next):
//!
//! - a schema per namespace, a table per collection: `id text COLLATE "C"` (ids sort by
//!   bytes, as on every engine), `version`, the body, `created_at`, `updated_at`,
//!   `expires_at`, and one typed column per single-valued index (`ix_<index>`) with a
//!   B-tree index, unique where declared;
//! - a side table per multi-valued index (`<collection>__<index>`: value, id) with a B-tree;
//!   its rows go with their record (`ON DELETE CASCADE`), so they cannot outlive it.
//!
//! The body is `body text` for JSON, exactly as written (`jsonb` would reorder keys and drop
//! duplicate ones, and bodies come back as stored; `body::jsonb` still serves ad-hoc
//! queries in psql), or `blob bytea` for opaque bodies: exactly one of the two is set. Index
//! values are taken from the body by Stowage, as on every engine, and written into the typed
//! columns with the record. See [`collection_ddl`].
//!
//! Names: every identifier is quoted, so case is kept ("A" and "a" are two tables, as they
//! are two collections) and `-` is allowed. A Stowage name is at most 63 bytes, PostgreSQL's
//! limit, but derived names (`ix_` + an index, a collection and an index joined) can be
//! longer, and schema names starting with `pg_` are refused by PostgreSQL. Those are never
//! cut short silently: [`fit`] keeps a readable prefix and adds a stable hash of the whole
//! name, so two long names stay apart. The catalog records each mapping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stowage_core::backend::stable_hash;

use bytes::BytesMut;
use stowage_core::backend::StoredSpec;
use stowage_core::{Body, IndexValue, StoredRecord, Timestamp, Version};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::Row;

use stowage_core::{CollectionSpec, Error, ErrorKind, IndexSpec, IndexType, Result};

/// PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER: usize = 63;

/// `name` as a quoted identifier, safe to put in SQL.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `name` as it is when it fits; otherwise its first bytes, `_` and 16 hex digits of a
/// stable hash of all of it (63 bytes in all).
pub fn fit(name: &str) -> String {
    if name.len() <= MAX_IDENTIFIER {
        return name.to_owned();
    }
    hashed(name)
}

fn hashed(name: &str) -> String {
    let keep = MAX_IDENTIFIER - 17;
    // Stowage names are ASCII, but a cut must fall on a character boundary whatever comes.
    let cut = (0..=keep)
        .rev()
        .find(|&i| name.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}_{:016x}", &name[..cut], stable_hash(name))
}

/// The schema of namespace `ns`: the namespace's own name, unless PostgreSQL reserves it
/// (`pg_…`, `public`, `information_schema`) or Stowage does (`stowage`, which holds the
/// catalog): then `ns_<name>_<hash>`.
pub fn schema_name(ns: &str) -> String {
    let reserved =
        ns.starts_with("pg_") || matches!(ns, "public" | "information_schema" | CATALOG_SCHEMA);
    if reserved {
        hashed(&format!("ns_{ns}"))
    } else {
        fit(ns)
    }
}

/// The schema holding Stowage's catalog (namespaces, specs, migrations).
pub const CATALOG_SCHEMA: &str = "stowage";

/// The table of a collection (in its namespace's schema).
pub fn records_table(collection: &str) -> String {
    fit(collection)
}

/// The column of a single-valued index.
pub fn index_column(index: &str) -> String {
    fit(&format!("ix_{index}"))
}

/// The side table of a multi-valued index.
pub fn multi_table(collection: &str, index: &str) -> String {
    fit(&format!("{collection}__{index}"))
}

/// The name of a B-tree index on `column` of `table` (PostgreSQL would otherwise make one up,
/// cutting long names short by itself).
pub fn btree_name(table: &str, column: &str) -> String {
    fit(&format!("{table}__{column}__btree"))
}

/// The column type of an index's values. Strings compare by bytes (`COLLATE "C"`), as on
/// every engine; timestamps keep microseconds, as [`stowage_core::Timestamp`] does.
pub fn column_type(t: IndexType) -> Result<&'static str> {
    Ok(match t {
        IndexType::String => "text COLLATE \"C\"",
        IndexType::Integer => "bigint",
        IndexType::Float => "double precision",
        IndexType::Bool => "boolean",
        IndexType::Timestamp => "timestamptz",
        // IndexType is non_exhaustive: a type added to core is refused until mapped here.
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "postgres has no column type for {} indexes yet",
                    other.describe()
                ),
            ))
        }
    })
}

/// The statements that make a collection in namespace `ns`: its table with a typed column
/// per single-valued index, a B-tree per index (unique where declared; `(value, id)`
/// otherwise, the order queries and cursors walk), a side table per multi-valued index, and
/// a partial index on `expires_at` for the purge.
pub fn collection_ddl(ns: &str, collection: &str, spec: &CollectionSpec) -> Result<Vec<String>> {
    let qualified = qualified_table(ns, collection);
    let mut columns = vec![
        "id text COLLATE \"C\" PRIMARY KEY".to_owned(),
        "version bigint NOT NULL".to_owned(),
        "body text".to_owned(),
        "blob bytea".to_owned(),
        "created_at timestamptz NOT NULL".to_owned(),
        "updated_at timestamptz NOT NULL".to_owned(),
        "expires_at timestamptz".to_owned(),
    ];
    for ix in spec.indexes.iter().filter(|i| !i.multi) {
        columns.push(format!(
            "{} {}",
            quote(&index_column(&ix.name)),
            column_type(ix.index_type)?
        ));
    }
    columns.push("CHECK ((body IS NULL) <> (blob IS NULL))".to_owned());
    let mut ddl = vec![format!(
        "CREATE TABLE {qualified} (\n  {}\n)",
        columns.join(",\n  ")
    )];
    ddl.push(format!(
        "CREATE INDEX {} ON {qualified} (expires_at) WHERE expires_at IS NOT NULL",
        quote(&btree_name(&records_table(collection), "expires_at"))
    ));
    for ix in &spec.indexes {
        ddl.extend(index_ddl(ns, collection, ix, false)?);
    }
    Ok(ddl)
}

/// `"schema"."table"` of a collection.
pub(crate) fn qualified_table(ns: &str, collection: &str) -> String {
    format!(
        "{}.{}",
        quote(&schema_name(ns)),
        quote(&records_table(collection))
    )
}

/// The statements that make index `ix` of a collection: its B-tree, and its column
/// (`add_column`: on a live table; a new table declares it) or side table.
pub(crate) fn index_ddl(
    ns: &str,
    collection: &str,
    ix: &IndexSpec,
    add_column: bool,
) -> Result<Vec<String>> {
    let schema = quote(&schema_name(ns));
    let table = records_table(collection);
    let qualified = qualified_table(ns, collection);
    let ty = column_type(ix.index_type)?;
    let mut ddl = Vec::new();
    if ix.multi {
        let side = multi_table(collection, &ix.name);
        let side_q = format!("{schema}.{}", quote(&side));
        ddl.push(format!(
            "CREATE TABLE {side_q} (value {ty} NOT NULL, \
             id text COLLATE \"C\" NOT NULL REFERENCES {qualified} (id) ON DELETE CASCADE, \
             PRIMARY KEY (value, id))"
        ));
        if ix.unique {
            ddl.push(format!(
                "CREATE UNIQUE INDEX {} ON {side_q} (value)",
                quote(&btree_name(&side, "value"))
            ));
        }
        // Deleting or rewriting a record finds its entries by id.
        ddl.push(format!(
            "CREATE INDEX {} ON {side_q} (id)",
            quote(&btree_name(&side, "id"))
        ));
    } else {
        let column = index_column(&ix.name);
        if add_column {
            ddl.push(format!(
                "ALTER TABLE {qualified} ADD COLUMN {} {ty}",
                quote(&column)
            ));
        }
        let (unique, keys) = if ix.unique {
            ("UNIQUE ", quote(&column))
        } else {
            ("", format!("{}, id", quote(&column)))
        };
        ddl.push(format!(
            "CREATE {unique}INDEX {} ON {qualified} ({keys})",
            quote(&btree_name(&table, &column))
        ));
    }
    Ok(ddl)
}

/// The statement that drops index `ix` of a collection with all its entries.
pub(crate) fn drop_index_ddl(ns: &str, collection: &str, ix: &IndexSpec) -> String {
    if ix.multi {
        format!(
            "DROP TABLE IF EXISTS {}.{}",
            quote(&schema_name(ns)),
            quote(&multi_table(collection, &ix.name))
        )
    } else {
        format!(
            "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
            qualified_table(ns, collection),
            quote(&index_column(&ix.name))
        )
    }
}

/// A collection's layout at one spec revision: every name resolved and quoted, and the
/// statement texts its writes use. Built once per revision (revisions are never reused, so a
/// layout is cached by revision alone) and shared by every connection.
#[derive(Debug)]
pub(crate) struct Layout {
    /// The namespace.
    pub ns: String,
    /// The collection.
    pub collection: String,
    /// The stored spec this layout is for.
    pub stored: StoredSpec,
    /// `"schema"."table"`.
    pub table: String,
    /// The single-valued indexes, in spec order.
    pub columns: Vec<IndexColumn>,
    /// The multi-valued indexes, in spec order.
    pub sides: Vec<SideTable>,
}

/// A single-valued index: its typed column in the records table.
#[derive(Debug)]
pub(crate) struct IndexColumn {
    pub index: String,
    /// Quoted.
    pub column: String,
    /// The B-tree's name, unquoted, as PostgreSQL names it in a unique violation.
    pub btree: String,
    pub index_type: IndexType,
    pub unique: bool,
}

/// A multi-valued index: its side table of (value, id).
#[derive(Debug)]
pub(crate) struct SideTable {
    pub index: String,
    /// `"schema"."table"`.
    pub table: String,
    /// The unique B-tree's name (or the primary key's), unquoted.
    pub btree: String,
    pub index_type: IndexType,
    pub unique: bool,
}

/// The SQL type name of an index type, for casts (`$1::bigint`).
pub(crate) fn cast_type(t: IndexType) -> Result<&'static str> {
    Ok(match column_type(t)? {
        "double precision" => "float8",
        other => other.split(' ').next().unwrap_or(other),
    })
}

/// `coalesce($n::timestamptz, now())`: the caller's time when the store passes one (the
/// `clock=caller` mode), the database's otherwise.
pub(crate) fn now_sql(placeholder: &str) -> String {
    format!("coalesce({placeholder}::timestamptz, now())")
}

/// The record columns every read selects, in this order (see `query::read_record`).
pub(crate) const RECORD_COLUMNS: &str =
    "id, version, body, blob, created_at, updated_at, expires_at";

impl Layout {
    pub(crate) fn new(ns: &str, collection: &str, stored: StoredSpec) -> Result<Self> {
        let schema = quote(&schema_name(ns));
        let table_name = records_table(collection);
        let table = format!("{schema}.{}", quote(&table_name));
        let mut columns = Vec::new();
        let mut sides = Vec::new();
        for ix in &stored.spec.indexes {
            column_type(ix.index_type)?;
            if ix.multi {
                let side = multi_table(collection, &ix.name);
                sides.push(SideTable {
                    index: ix.name.clone(),
                    table: format!("{schema}.{}", quote(&side)),
                    btree: btree_name(&side, "value"),
                    index_type: ix.index_type,
                    unique: ix.unique,
                });
            } else {
                let column = index_column(&ix.name);
                columns.push(IndexColumn {
                    index: ix.name.clone(),
                    btree: btree_name(&table_name, &column),
                    column: quote(&column),
                    index_type: ix.index_type,
                    unique: ix.unique,
                });
            }
        }
        let layout = Layout {
            ns: ns.to_owned(),
            collection: collection.to_owned(),
            stored,
            table,
            columns,
            sides,
        };
        Ok(layout)
    }

    /// The column of single-valued index `name`.
    pub(crate) fn column(&self, name: &str) -> Option<&IndexColumn> {
        self.columns.iter().find(|c| c.index == name)
    }

    /// The side table of multi-valued index `name`.
    pub(crate) fn side(&self, name: &str) -> Option<&SideTable> {
        self.sides.iter().find(|s| s.index == name)
    }

    /// The index a unique violation on B-tree `constraint` is about.
    pub(crate) fn index_of_btree(&self, constraint: &str) -> Option<&str> {
        self.columns
            .iter()
            .filter(|c| c.btree == constraint)
            .map(|c| c.index.as_str())
            .chain(
                self.sides
                    .iter()
                    .filter(|s| s.btree == constraint)
                    .map(|s| s.index.as_str()),
            )
            .next()
    }
}

/// A string as an index column holds it. PostgreSQL's `text` cannot hold U+0000, which JSON
/// strings may (`"a\u0000b"`), so U+0000 is written as U+0001 U+0001 and U+0001 itself as
/// U+0001 U+0002; every other string is stored as it is, readable with `psql`.
///
/// The escape keeps what queries rely on: it is one-to-one, so equality and uniqueness hold;
/// it keeps byte order (U+0000 sorted below every other character and still does, U+0001
/// next), so ranges, `ORDER BY` and cursors walk the B-tree as on every engine; and no code
/// is a prefix of another, so `s` starts with `p` exactly when `column(s)` starts with
/// `column(p)` — a prefix stays a range. No escape can leave every NUL-free string as it is
/// (those already fill the column's values), so the one character that must move is U+0001,
/// the only one that sorts between NUL's code and the rest.
pub(crate) fn text_to_column(s: &str) -> std::borrow::Cow<'_, str> {
    if !needs_escape(s) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\u{1}\u{1}"),
            '\u{1}' => out.push_str("\u{1}\u{2}"),
            c => out.push(c),
        }
    }
    out.into()
}

/// [`text_to_column`] of an owned string, which most strings are as they stand.
fn text_into_column(s: String) -> String {
    if needs_escape(&s) {
        text_to_column(&s).into_owned()
    } else {
        s
    }
}

fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b <= 1)
}

/// A string read from an index column: [`text_to_column`] undone.
pub(crate) fn text_from_column(s: String) -> String {
    if !s.contains('\u{1}') {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\u{1}') => out.push('\0'),
            Some('\u{2}') => out.push('\u{1}'),
            // Not written by Stowage (an edit by hand): kept as it stands.
            other => {
                out.push(c);
                out.extend(other);
            }
        }
    }
    out
}

/// An index value as a statement parameter, in its column's type. Statements cast every
/// index parameter (`$3::bigint`), so the type PostgreSQL asks for is the value's own.
#[derive(Debug)]
pub(crate) struct SqlValue(pub IndexValue);

impl ToSql for SqlValue {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            IndexValue::String(s) => text_to_column(s).as_ref().to_sql(ty, out),
            IndexValue::Integer(i) => i.to_sql(ty, out),
            IndexValue::Float(f) => f.to_sql(ty, out),
            IndexValue::Bool(b) => b.to_sql(ty, out),
            IndexValue::Timestamp(t) => to_system_time(*t).to_sql(ty, out),
            // IndexValue is non_exhaustive; column_type refuses a type not mapped here.
            other => Err(format!("no PostgreSQL encoding for {other:?}").into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::TEXT,
            Type::INT8,
            Type::FLOAT8,
            Type::BOOL,
            Type::TIMESTAMPTZ,
        ]
        .contains(ty)
    }

    to_sql_checked!();
}

/// A boxed statement parameter.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// Index values of one type as an array parameter (`$1::bigint[]`); `None` is SQL NULL.
pub(crate) fn typed_array(t: IndexType, values: Vec<Option<IndexValue>>) -> Param {
    fn collect<T>(
        values: Vec<Option<IndexValue>>,
        f: impl Fn(IndexValue) -> Option<T>,
    ) -> Vec<Option<T>> {
        values.into_iter().map(|v| v.and_then(&f)).collect()
    }
    match t {
        IndexType::Integer => Box::new(collect(values, |v| match v {
            IndexValue::Integer(i) => Some(i),
            _ => None,
        })),
        IndexType::Float => Box::new(collect(values, |v| match v {
            IndexValue::Float(f) => Some(f),
            _ => None,
        })),
        IndexType::Bool => Box::new(collect(values, |v| match v {
            IndexValue::Bool(b) => Some(b),
            _ => None,
        })),
        IndexType::Timestamp => Box::new(collect(values, |v| match v {
            IndexValue::Timestamp(t) => Some(to_system_time(t)),
            _ => None,
        })),
        _ => Box::new(collect(values, |v| match v {
            IndexValue::String(s) => Some(text_into_column(s)),
            _ => None,
        })),
    }
}

/// A row of [`RECORD_COLUMNS`] (from column `at` on) as a stored record.
pub(crate) fn read_record(row: &Row, at: usize) -> StoredRecord {
    let id: String = row.get(at);
    let version: i64 = row.get(at + 1);
    let body: Option<String> = row.get(at + 2);
    let blob: Option<Vec<u8>> = row.get(at + 3);
    let body = match (body, blob) {
        (Some(text), _) => Body::json(text),
        (None, Some(bytes)) => Body::binary(bytes),
        // The CHECK constraint rules this out.
        (None, None) => Body::binary(Vec::new()),
    };
    StoredRecord {
        id,
        version: version as Version,
        created_at: Timestamp::from(row.get::<_, SystemTime>(at + 4)),
        updated_at: Timestamp::from(row.get::<_, SystemTime>(at + 5)),
        expires_at: row
            .get::<_, Option<SystemTime>>(at + 6)
            .map(Timestamp::from),
        body,
    }
}

/// Statement parameters, numbered as they are pushed.
#[derive(Default)]
pub(crate) struct Params(pub Vec<Param>);

impl Params {
    /// Adds a parameter; returns its placeholder (`$n`).
    pub(crate) fn push(&mut self, p: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(p));
        format!("${}", self.0.len())
    }

    /// Adds a boxed parameter; returns its placeholder.
    pub(crate) fn push_boxed(&mut self, p: Param) -> String {
        self.0.push(p);
        format!("${}", self.0.len())
    }

    /// The parameters as tokio-postgres takes them.
    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A Stowage timestamp as the `SystemTime` tokio-postgres writes as `timestamptz`.
pub(crate) fn to_system_time(t: Timestamp) -> SystemTime {
    let us = t.as_micros();
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// The advisory lock key of a collection (of a namespace when `collection` is empty).
pub(crate) fn lock_key(ns: &str, collection: &str) -> i64 {
    // Advisory lock keys are signed 64-bit: the hash's bits as they are.
    stable_hash(&format!("stowage\0{ns}\0{collection}")) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escape_round_trips_and_keeps_byte_order_and_prefixes() {
        let strings = [
            "",
            "\0",
            "\0\0",
            "\0a",
            "\u{1}",
            "\u{1}\u{1}",
            "\u{1}\u{2}",
            "\u{2}",
            "a",
            "a\0",
            "a\0\u{1}",
            "a\u{1}\0",
            "a\u{2}",
            "ab",
            "é\0",
            "plain",
        ];
        assert_eq!(text_to_column("plain café"), "plain café");
        for a in strings {
            let col = text_to_column(a);
            assert!(!col.contains('\0'), "{a:?} -> {col:?}");
            assert_eq!(text_from_column(col.clone().into_owned()), a);
            assert_eq!(text_into_column(a.to_owned()), col);
            for b in strings {
                let cb = text_to_column(b);
                // Byte order, as PostgreSQL's COLLATE "C" compares.
                assert_eq!(
                    a.cmp(b),
                    col.as_bytes().cmp(cb.as_bytes()),
                    "{a:?} vs {b:?}"
                );
                assert_eq!(
                    a.starts_with(b),
                    col.starts_with(cb.as_ref()),
                    "{a:?} / {b:?}"
                );
            }
        }
    }

    #[test]
    fn names_that_fit_stay_as_they_are() {
        assert_eq!(records_table("incidents"), "incidents");
        assert_eq!(index_column("severity"), "ix_severity");
        assert_eq!(multi_table("incidents", "tags"), "incidents__tags");
        assert_eq!(schema_name("app"), "app");
        // Case is kept: quoted identifiers tell "A" from "a".
        assert_ne!(quote(&records_table("A")), quote(&records_table("a")));
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn long_and_reserved_names_get_a_hash_never_a_silent_cut() {
        let long = "c".repeat(63);
        let ix = format!("{}x", "i".repeat(61));
        let other_ix = format!("{}y", "i".repeat(61));
        for name in [
            index_column(&long),
            multi_table(&long, &ix),
            btree_name(&long, &index_column(&ix)),
        ] {
            assert_eq!(name.len(), MAX_IDENTIFIER, "{name}");
        }
        // Two names that share the kept prefix stay apart.
        assert_ne!(multi_table(&long, &ix), multi_table(&long, &other_ix));
        assert_ne!(index_column(&ix), index_column(&other_ix));
        // The same name maps the same way in every process.
        assert_eq!(multi_table(&long, &ix), multi_table(&long, &ix));
        for reserved in ["pg_things", "public", "information_schema", "stowage"] {
            let s = schema_name(reserved);
            assert!(s.starts_with("ns_") && s.len() <= MAX_IDENTIFIER, "{s}");
            assert_ne!(s, reserved);
        }
        assert_ne!(schema_name("public"), schema_name("ns_public"));
    }
}

//! The layout in SQLite, and how Stowage names become SQLite identifiers.
//!
//! The layout, readable with the `sqlite3` shell:
//!
//! - the catalog: `stowage_meta` (format version, the revision counter), `stowage_migrations`
//!   (each applied migration), `stowage_collections` (namespace, collection, revision, spec
//!   and building list as JSON, the table's name), `stowage_floors` (the version floor of
//!   every collection that ever removed a record), and the change log `stowage_log_heads`
//!   / `stowage_log`;
//! - a table per collection, `"<namespace>.<collection>"`: `id TEXT PRIMARY KEY` (ids sort
//!   by bytes: SQLite's default `BINARY` collation compares UTF-8 with `memcmp`), `version`,
//!   `body TEXT` for JSON exactly as written or `blob BLOB` for opaque bodies (exactly one
//!   is set), `created_at`, `updated_at`, `expires_at` (microseconds since the epoch), and
//!   one typed column per single-valued index (`"ix:<index>"`) with a B-tree on
//!   `(value, id)`, unique where declared. Tables are `STRICT` (a value of the wrong type is
//!   refused, not converted) rowid tables with a unique B-tree on `id`: records are appended
//!   in write order, and a write dirties few pages whatever the id (a `WITHOUT ROWID` table
//!   clustered on the id measured a third slower for writes: records of a few hundred bytes
//!   split its pages often);
//! - a side table per multi-valued index, `"<namespace>.<collection>.<index>"`:
//!   `(value, id)` as its primary key and a B-tree on `id`; its rows are removed with their
//!   record in the same transaction.
//!
//! Index values are typed columns: strings `TEXT` (byte order), integers `INTEGER` (all of
//! i64, beyond 2^53 too), floats `REAL`, booleans `INTEGER` 0/1, timestamps `INTEGER`
//! microseconds. They are taken from the body by Stowage, as on every engine, and written
//! with the record.
//!
//! Names: SQLite compares identifiers without regard to ASCII case, even quoted, so
//! collections `Users` and `users` would share a table. A name holding an upper-case letter
//! therefore gets `~` and 8 hex digits of a stable hash of its exact spelling; an all
//! lower-case name is used as it is. Stowage names are ASCII letters, digits, `_` and `-`,
//! so `.`, `:` and `~` never occur inside one, and every derived name is distinct.

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::Row;
use stowage_core::backend::{stable_hash, StoredSpec};
use stowage_core::{
    Body, ContentType, Error, ErrorKind, IndexType, IndexValue, Result, StoredRecord, Timestamp,
};
use stowage_sql::SqlLayout;

/// The format this build writes; a newer one is refused.
pub const FORMAT_VERSION: i64 = 1;

/// The catalog, created by migration 1.
pub(crate) const CATALOG_DDL: &str = "
CREATE TABLE IF NOT EXISTS stowage_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS stowage_migrations (
  version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS stowage_collections (
  namespace TEXT NOT NULL, collection TEXT NOT NULL, revision INTEGER NOT NULL,
  spec TEXT NOT NULL, building TEXT NOT NULL, records_table TEXT NOT NULL,
  PRIMARY KEY (namespace, collection)) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stowage_floors (
  namespace TEXT NOT NULL, collection TEXT NOT NULL, floor INTEGER NOT NULL,
  PRIMARY KEY (namespace, collection)) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stowage_log_heads (
  namespace TEXT PRIMARY KEY, last INTEGER NOT NULL) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stowage_log (
  namespace TEXT NOT NULL, token INTEGER NOT NULL, event TEXT NOT NULL,
  PRIMARY KEY (namespace, token)) STRICT, WITHOUT ROWID;
";

/// `name` as a quoted identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `name` as it is, or with a hash of its exact spelling where SQLite's case folding could
/// make it meet another (see the module docs).
pub fn distinct(name: &str) -> String {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        format!("{name}~{:08x}", stable_hash(name) as u32)
    } else {
        name.to_owned()
    }
}

/// The records table of a collection (unquoted).
pub fn records_table(ns: &str, collection: &str) -> String {
    distinct(&format!("{ns}.{collection}"))
}

/// The column of a single-valued index (unquoted).
pub fn index_column(index: &str) -> String {
    distinct(&format!("ix:{index}"))
}

/// The side table of a multi-valued index (unquoted).
pub fn side_table(ns: &str, collection: &str, index: &str) -> String {
    distinct(&format!("{ns}.{collection}.{index}"))
}

/// The SQLite column type of an index's values.
pub fn column_type(t: IndexType) -> Result<&'static str> {
    Ok(match t {
        IndexType::String => "TEXT",
        IndexType::Integer | IndexType::Bool | IndexType::Timestamp => "INTEGER",
        IndexType::Float => "REAL",
        // IndexType is non_exhaustive: a type added to core is refused until mapped here.
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "sqlite has no column type for {} indexes yet",
                    other.describe()
                ),
            ))
        }
    })
}

/// An index value as SQLite stores it.
pub fn sql_value(v: &IndexValue) -> Value {
    match v {
        IndexValue::String(s) => Value::Text(s.clone()),
        IndexValue::Integer(i) => Value::Integer(*i),
        IndexValue::Float(f) => Value::Real(*f),
        IndexValue::Bool(b) => Value::Integer(i64::from(*b)),
        IndexValue::Timestamp(t) => Value::Integer(t.as_micros()),
        // IndexValue is non_exhaustive; column_type refuses a type not mapped here.
        other => Value::Text(format!("{other:?}")),
    }
}

/// The index value a column holds, read back as `t`.
pub fn index_value(t: IndexType, v: ValueRef<'_>) -> Result<Option<IndexValue>> {
    let bad = || {
        Error::new(
            ErrorKind::Corrupted,
            format!("an index column holds a value that is not {}", t.describe()),
        )
    };
    Ok(Some(match (t, v) {
        (_, ValueRef::Null) => return Ok(None),
        (IndexType::String, ValueRef::Text(s)) => {
            IndexValue::String(String::from_utf8(s.to_vec()).map_err(|_| bad())?)
        }
        (IndexType::Integer, ValueRef::Integer(i)) => IndexValue::Integer(i),
        (IndexType::Float, ValueRef::Real(f)) => IndexValue::Float(f),
        (IndexType::Bool, ValueRef::Integer(i)) => IndexValue::Bool(i != 0),
        (IndexType::Timestamp, ValueRef::Integer(i)) => {
            IndexValue::Timestamp(Timestamp::from_micros(i))
        }
        _ => return Err(bad()),
    }))
}

/// The record columns every read selects, in this order (see [`read_record`]).
pub const RECORD_COLUMNS: &str = "id, version, body, blob, created_at, updated_at, expires_at";

/// The same columns of table alias `t`.
pub const RECORD_COLUMNS_T: &str =
    "t.id, t.version, t.body, t.blob, t.created_at, t.updated_at, t.expires_at";

/// A record from a row that starts with [`RECORD_COLUMNS`].
pub fn read_record(row: &Row<'_>) -> rusqlite::Result<StoredRecord> {
    let body = match row.get_ref(2)? {
        ValueRef::Text(t) => Body::json(t.to_vec()),
        _ => match row.get_ref(3)? {
            ValueRef::Blob(b) => Body::binary(b.to_vec()),
            _ => Body::binary(Vec::new()),
        },
    };
    Ok(StoredRecord {
        id: row.get(0)?,
        version: row.get::<_, i64>(1)? as u64,
        created_at: Timestamp::from_micros(row.get(4)?),
        updated_at: Timestamp::from_micros(row.get(5)?),
        expires_at: row.get::<_, Option<i64>>(6)?.map(Timestamp::from_micros),
        body,
    })
}

/// A body as the `(body, blob)` column pair.
pub fn body_columns(body: &Body) -> (ToSqlOutput<'_>, ToSqlOutput<'_>) {
    let null = ToSqlOutput::Owned(Value::Null);
    match body.content_type {
        ContentType::Json => match std::str::from_utf8(&body.bytes) {
            Ok(text) => (ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())), null),
            // The store checks JSON bodies; a body that is not UTF-8 is kept as bytes.
            Err(_) => (null, ToSqlOutput::Borrowed(ValueRef::Blob(&body.bytes))),
        },
        _ => (null, ToSqlOutput::Borrowed(ValueRef::Blob(&body.bytes))),
    }
}

/// A collection as SQL sees it: its table, its index columns and side tables, built from its
/// stored spec.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The stored spec it was built from.
    pub stored: StoredSpec,
    /// The records table, quoted.
    pub table: String,
    /// Single-valued indexes.
    pub columns: Vec<IndexColumn>,
    /// Multi-valued indexes.
    pub sides: Vec<SideTable>,
}

/// A single-valued index's column.
#[derive(Debug, Clone)]
pub struct IndexColumn {
    /// The index.
    pub index: String,
    /// The column, quoted.
    pub column: String,
    /// Its type.
    pub index_type: IndexType,
    /// Unique.
    pub unique: bool,
}

/// A multi-valued index's side table.
#[derive(Debug, Clone)]
pub struct SideTable {
    /// The index.
    pub index: String,
    /// The table, quoted.
    pub table: String,
    /// Its type.
    pub index_type: IndexType,
    /// Unique.
    pub unique: bool,
}

impl Layout {
    /// The layout of collection `collection` of `ns` under `stored`.
    pub fn new(ns: &str, collection: &str, stored: StoredSpec) -> Self {
        let mut columns = Vec::new();
        let mut sides = Vec::new();
        for ix in &stored.spec.indexes {
            if ix.multi {
                sides.push(SideTable {
                    index: ix.name.clone(),
                    table: quote(&side_table(ns, collection, &ix.name)),
                    index_type: ix.index_type,
                    unique: ix.unique,
                });
            } else {
                columns.push(IndexColumn {
                    index: ix.name.clone(),
                    column: quote(&index_column(&ix.name)),
                    index_type: ix.index_type,
                    unique: ix.unique,
                });
            }
        }
        Layout {
            table: quote(&records_table(ns, collection)),
            stored,
            columns,
            sides,
        }
    }

    /// The queryable layout: without the indexes being built.
    pub fn queryable(&self) -> Queryable<'_> {
        Queryable(self)
    }
}

/// A [`Layout`] as queries see it: indexes being built are not there yet.
#[derive(Debug, Clone, Copy)]
pub struct Queryable<'a>(&'a Layout);

impl SqlLayout for Queryable<'_> {
    fn column(&self, index: &str) -> Option<(&str, IndexType)> {
        if self.0.stored.building.iter().any(|b| b == index) {
            return None;
        }
        self.0
            .columns
            .iter()
            .find(|c| c.index == index)
            .map(|c| (c.column.as_str(), c.index_type))
    }

    fn side(&self, index: &str) -> Option<(&str, IndexType)> {
        if self.0.stored.building.iter().any(|b| b == index) {
            return None;
        }
        self.0
            .sides
            .iter()
            .find(|s| s.index == index)
            .map(|s| (s.table.as_str(), s.index_type))
    }
}

/// The DDL that creates a collection's table with `layout`'s indexes.
pub fn create_collection_ddl(ns: &str, collection: &str, layout: &Layout) -> Result<String> {
    let table_name = records_table(ns, collection);
    let mut columns = vec![
        "id TEXT NOT NULL UNIQUE".to_owned(),
        "version INTEGER NOT NULL".to_owned(),
        "body TEXT".to_owned(),
        "blob BLOB".to_owned(),
        "created_at INTEGER NOT NULL".to_owned(),
        "updated_at INTEGER NOT NULL".to_owned(),
        "expires_at INTEGER".to_owned(),
    ];
    for c in &layout.columns {
        columns.push(format!("{} {}", c.column, column_type(c.index_type)?));
    }
    let mut ddl = format!(
        "CREATE TABLE {} ({}) STRICT;\n\
         CREATE INDEX {} ON {} (expires_at) WHERE expires_at IS NOT NULL;\n",
        layout.table,
        columns.join(", "),
        quote(&format!("{table_name}:expires_at")),
        layout.table
    );
    for c in &layout.columns {
        ddl.push_str(&column_index_ddl(&table_name, &layout.table, c));
    }
    for s in &layout.sides {
        ddl.push_str(&side_table_ddl(s)?);
    }
    Ok(ddl)
}

/// The name of the B-tree on an index column.
fn column_index_name(table_name: &str, c: &IndexColumn) -> String {
    quote(&format!("{table_name}:{}", c.column.trim_matches('"')))
}

/// The B-tree on an index column: `(value, id)`, or unique on the value.
pub fn column_index_ddl(table_name: &str, table: &str, c: &IndexColumn) -> String {
    let name = column_index_name(table_name, c);
    if c.unique {
        format!("CREATE UNIQUE INDEX {name} ON {table} ({});\n", c.column)
    } else {
        format!("CREATE INDEX {name} ON {table} ({}, id);\n", c.column)
    }
}

/// Drops an index column with its B-tree.
pub fn drop_column_ddl(table_name: &str, table: &str, c: &IndexColumn) -> String {
    format!(
        "DROP INDEX IF EXISTS {};\nALTER TABLE {table} DROP COLUMN {};\n",
        column_index_name(table_name, c),
        c.column
    )
}

/// A side table with its B-trees.
pub fn side_table_ddl(s: &SideTable) -> Result<String> {
    let bare = s.table.trim_matches('"');
    let unique = if s.unique {
        format!(
            "CREATE UNIQUE INDEX {} ON {} (value);\n",
            quote(&format!("{bare}:unique")),
            s.table
        )
    } else {
        String::new()
    };
    Ok(format!(
        "CREATE TABLE {table} (value {ty} NOT NULL, id TEXT NOT NULL, PRIMARY KEY (value, id)) \
         STRICT, WITHOUT ROWID;\nCREATE INDEX {by_id} ON {table} (id);\n{unique}",
        table = s.table,
        ty = column_type(s.index_type)?,
        by_id = quote(&format!("{bare}:id")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_differ_in_case_stay_apart() {
        assert_eq!(records_table("app", "users"), "app.users");
        let upper = records_table("app", "Users");
        assert_ne!(upper.to_lowercase(), "app.users");
        assert_ne!(
            records_table("app", "USERS").to_lowercase(),
            upper.to_lowercase()
        );
        assert_eq!(index_column("email"), "ix:email");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}

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

use stowage_core::backend::stable_hash;
use stowage_core::{CollectionSpec, Error, ErrorKind, IndexType, Result};

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
    let schema = quote(&schema_name(ns));
    let table = records_table(collection);
    let qualified = format!("{schema}.{}", quote(&table));
    let mut columns = vec![
        "id text COLLATE \"C\" PRIMARY KEY".to_owned(),
        "version bigint NOT NULL".to_owned(),
        "body text".to_owned(),
        "blob bytea".to_owned(),
        "created_at timestamptz NOT NULL".to_owned(),
        "updated_at timestamptz NOT NULL".to_owned(),
        "expires_at timestamptz".to_owned(),
    ];
    let mut after = Vec::new();
    for ix in &spec.indexes {
        let ty = column_type(ix.index_type)?;
        if ix.multi {
            let side = multi_table(collection, &ix.name);
            let side_q = format!("{schema}.{}", quote(&side));
            after.push(format!(
                "CREATE TABLE {side_q} (value {ty} NOT NULL, \
                 id text COLLATE \"C\" NOT NULL REFERENCES {qualified} (id) ON DELETE CASCADE, \
                 PRIMARY KEY (value, id))"
            ));
            if ix.unique {
                after.push(format!(
                    "CREATE UNIQUE INDEX {} ON {side_q} (value)",
                    quote(&btree_name(&side, "value"))
                ));
            }
            // Deleting or rewriting a record finds its entries by id.
            after.push(format!(
                "CREATE INDEX {} ON {side_q} (id)",
                quote(&btree_name(&side, "id"))
            ));
        } else {
            let column = index_column(&ix.name);
            columns.push(format!("{} {ty}", quote(&column)));
            let (unique, keys) = if ix.unique {
                ("UNIQUE ", quote(&column))
            } else {
                ("", format!("{}, id", quote(&column)))
            };
            after.push(format!(
                "CREATE {unique}INDEX {} ON {qualified} ({keys})",
                quote(&btree_name(&table, &column))
            ));
        }
    }
    columns.push("CHECK ((body IS NULL) <> (blob IS NULL))".to_owned());
    let mut ddl = vec![format!(
        "CREATE TABLE {qualified} (\n  {}\n)",
        columns.join(",\n  ")
    )];
    ddl.push(format!(
        "CREATE INDEX {} ON {qualified} (expires_at) WHERE expires_at IS NOT NULL",
        quote(&btree_name(&table, "expires_at"))
    ));
    ddl.extend(after);
    Ok(ddl)
}

#[cfg(test)]
mod tests {
    use super::*;

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

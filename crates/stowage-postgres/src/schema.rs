//! The layout on PostgreSQL, and how Stowage names become PostgreSQL identifiers.
//!
//! The layout, readable with `psql` (built by the backend, next):
//!
//! - a schema per namespace, a table per collection: `id text COLLATE "C"` (ids sort by
//!   bytes, as on every engine), `version`, the body, `created_at`, `updated_at`,
//!   `expires_at`, and one typed column per single-valued index (`ix_<index>`) with a
//!   B-tree index, unique where declared;
//! - a side table per multi-valued index (`<collection>__<index>`: value, id) with a B-tree.
//!
//! Names: every identifier is quoted, so case is kept ("A" and "a" are two tables, as they
//! are two collections) and `-` is allowed. A Stowage name is at most 63 bytes, PostgreSQL's
//! limit, but derived names (`ix_` + an index, a collection and an index joined) can be
//! longer, and schema names starting with `pg_` are refused by PostgreSQL. Those are never
//! cut short silently: [`fit`] keeps a readable prefix and adds a stable hash of the whole
//! name, so two long names stay apart. The catalog records each mapping.

use stowage_core::backend::stable_hash;

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

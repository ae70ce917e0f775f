//! The catalog: specs as a compare-and-set on their revision, the DDL that follows a spec,
//! and dropping a collection. Spec changes run on the writer thread like every write, so
//! the DDL and the catalog row commit together.

use rusqlite::{params, Connection};
use stowage_core::backend::{Revision, SpecUpdate, StoredSpec};
use stowage_core::{ChangeEvent, ChangeOp, Error, Result, Timestamp};

use crate::group_commit::{decode_spec, Txn};
use crate::schema::{
    column_index_ddl, column_type, create_collection_ddl, drop_column_ddl, quote, records_table,
    side_table_ddl, Layout,
};

/// Stores a spec change as a compare-and-set on the revision, with its DDL: a new
/// collection gets its table; dropped indexes lose their columns or side tables; added ones
/// get theirs, empty (the store fills them). Covering changes nothing here: every read
/// finds the record in its row.
pub(crate) fn apply_spec_job(
    t: &mut Txn<'_>,
    ns: &str,
    coll: &str,
    update: &SpecUpdate,
    keep: u64,
) -> Result<Revision> {
    let old = t.layout(ns, coll)?;
    let current = old.as_ref().map(|l| l.stored.revision);
    if current != update.expected {
        return Err(Error::spec_conflict(coll, update.expected, current));
    }
    let new = Layout::new(
        ns,
        coll,
        StoredSpec {
            spec: update.spec.clone(),
            revision: t.next_revision()?,
            building: update.building.clone(),
        },
    );
    let table_name = records_table(ns, coll);
    let mut ddl = String::new();
    match &old {
        None => {
            // A table left without its catalog row (never by this code) would be in the way.
            ddl.push_str(&format!("DROP TABLE IF EXISTS {};\n", new.table));
            for s in &new.sides {
                ddl.push_str(&format!("DROP TABLE IF EXISTS {};\n", s.table));
            }
            ddl.push_str(&create_collection_ddl(ns, coll, &new)?);
        }
        Some(old) => {
            let change = old.stored.spec.diff(&new.stored.spec)?;
            for name in &change.dropped {
                if let Some(c) = old.columns.iter().find(|c| &c.index == name) {
                    ddl.push_str(&drop_column_ddl(&table_name, &old.table, c));
                } else if let Some(s) = old.sides.iter().find(|s| &s.index == name) {
                    ddl.push_str(&format!("DROP TABLE IF EXISTS {};\n", s.table));
                }
            }
            for ix in &change.added {
                if let Some(c) = new.columns.iter().find(|c| c.index == ix.name) {
                    ddl.push_str(&format!(
                        "ALTER TABLE {} ADD COLUMN {} {};\n",
                        new.table,
                        c.column,
                        column_type(c.index_type)?
                    ));
                    ddl.push_str(&column_index_ddl(&table_name, &new.table, c));
                } else if let Some(s) = new.sides.iter().find(|s| s.index == ix.name) {
                    ddl.push_str(&format!("DROP TABLE IF EXISTS {};\n", s.table));
                    ddl.push_str(&side_table_ddl(s)?);
                }
            }
        }
    }
    if !ddl.is_empty() {
        t.conn
            .execute_batch(&ddl)
            .map_err(t.err("changing a collection's tables"))?;
    }
    let spec = serde_json::to_string(&new.stored.spec)
        .map_err(|e| Error::internal("encoding a spec").with_source(e))?;
    let building = serde_json::to_string(&new.stored.building)
        .map_err(|e| Error::internal("encoding a building list").with_source(e))?;
    t.conn
        .execute(
            "INSERT INTO stowage_collections \
             (namespace, collection, revision, spec, building, records_table) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (namespace, collection) DO UPDATE SET \
             revision = excluded.revision, spec = excluded.spec, building = excluded.building",
            params![
                ns,
                coll,
                new.stored.revision as i64,
                spec,
                building,
                table_name
            ],
        )
        .map_err(t.err("storing a spec"))?;
    t.log(
        ns,
        ChangeEvent::new(ChangeOp::Spec, Some(coll), Timestamp::now()),
        keep,
    )?;
    Ok(new.stored.revision)
}

/// Drops a collection's tables and catalog row; its floor rises to the highest version it
/// held. `false` when it did not exist.
pub(crate) fn drop_job(t: &mut Txn<'_>, ns: &str, coll: &str, keep: u64) -> Result<bool> {
    let Some(layout) = t.layout(ns, coll)? else {
        return Ok(false);
    };
    let highest: i64 = t
        .conn
        .query_row(
            &format!("SELECT coalesce(max(version), 0) FROM {}", layout.table),
            [],
            |r| r.get(0),
        )
        .map_err(t.err("dropping a collection"))?;
    t.raise_floor(ns, coll, highest as u64)?;
    let mut ddl = format!("DROP TABLE IF EXISTS {};\n", layout.table);
    for s in &layout.sides {
        ddl.push_str(&format!("DROP TABLE IF EXISTS {};\n", s.table));
    }
    t.conn
        .execute_batch(&ddl)
        .map_err(t.err("dropping a collection"))?;
    t.conn
        .execute(
            "DELETE FROM stowage_collections WHERE namespace = ?1 AND collection = ?2",
            params![ns, coll],
        )
        .map_err(t.err("dropping a collection"))?;
    t.log(
        ns,
        ChangeEvent::new(ChangeOp::Drop, Some(coll), Timestamp::now()),
        keep,
    )?;
    Ok(true)
}

/// Every namespace holding a collection, by name.
pub(crate) fn list_namespaces(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut s = conn
        .prepare_cached("SELECT DISTINCT namespace FROM stowage_collections ORDER BY namespace")?;
    let rows = s.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Every collection of `ns` with its spec, by name.
pub(crate) fn list_specs(conn: &Connection, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
    let rows: Vec<(String, i64, String, String)> = conn
        .prepare_cached(
            "SELECT collection, revision, spec, building FROM stowage_collections \
             WHERE namespace = ?1 ORDER BY collection",
        )
        .and_then(|mut s| {
            s.query_map(params![ns], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect()
        })
        .map_err(|e| crate::error::sqlite_error(e, "listing collections", ns))?;
    rows.into_iter()
        .map(|(c, rev, spec, building)| Ok((c, decode_spec(rev, &spec, &building)?)))
        .collect()
}

/// The quoted name of a collection's table, for messages and raw reads in tests.
pub fn table_of(ns: &str, collection: &str) -> String {
    quote(&records_table(ns, collection))
}

//! The catalog: collection specs as a compare-and-set on their revision, the DDL that goes
//! with a spec change, the migrations table of each namespace, and the locks that keep
//! writes and spec changes of one collection apart.
//!
//! # Locks
//!
//! Every write takes a *shared* transaction-level advisory lock on its collection before it
//! reads the spec revision; a spec change, a fill of an index being built and every removal
//! of records (which may raise the version floor) take it *exclusive*. So a write never
//! commits under a spec it was not prepared for (the revision it checked cannot change
//! until it commits), and a record created at the same moment as another instance removes
//! one never reads a floor that is about to rise. Advisory locks live in the lock manager:
//! taking one writes nothing to disk.

use std::sync::Arc;

use deadpool_postgres::Transaction;
use stowage_core::backend::{Revision, SpecUpdate, StoredSpec};
use stowage_core::{ChangeOp, CollectionSpec, Error, ErrorKind, Result, Version};

use crate::error::pg_error;
use crate::feed::{append, Pending};
use crate::open::PostgresBackend;
use crate::pool::Conn;
use crate::schema::{
    collection_ddl, drop_index_ddl, index_ddl, lock_key, quote, records_table, schema_name, Layout,
};

/// Takes an advisory lock shared until the transaction ends: `$1` the key.
pub(crate) const LOCK_SHARED: &str = "SELECT pg_advisory_xact_lock_shared($1)";
/// Takes an advisory lock exclusive until the transaction ends: `$1` the key.
pub(crate) const LOCK_EXCLUSIVE: &str = "SELECT pg_advisory_xact_lock($1)";

/// Takes the collection's advisory lock for the rest of the transaction.
pub(crate) async fn lock(
    conn: Conn<'_>,
    ns: &str,
    collection: &str,
    exclusive: bool,
    target: &str,
) -> Result<()> {
    let sql = if exclusive {
        LOCK_EXCLUSIVE
    } else {
        LOCK_SHARED
    };
    conn.execute(sql, &[&lock_key(ns, collection)])
        .await
        .map_err(|e| pg_error(e, "locking a collection", target))?;
    Ok(())
}

/// A collection's catalog row: its spec and version floor.
pub(crate) struct CatalogEntry {
    pub stored: StoredSpec,
    pub floor: Version,
}

const SELECT_ENTRY: &str = "SELECT c.collection, c.revision, c.spec::text, c.building::text, \
     coalesce(f.floor, 0) FROM stowage.collections c LEFT JOIN stowage.version_floors f \
     USING (namespace, collection)";

pub(crate) fn entry_of(row: &tokio_postgres::Row) -> Result<(String, CatalogEntry)> {
    let name: String = row.get(0);
    let revision: i64 = row.get(1);
    let spec: &str = row.get(2);
    let building: &str = row.get(3);
    let floor: i64 = row.get(4);
    let corrupt = |what: &str, e: serde_json::Error| {
        Error::new(
            ErrorKind::Corrupted,
            format!("postgres catalog: the {what} of collection {name:?} cannot be read: {e}"),
        )
    };
    let spec: CollectionSpec = serde_json::from_str(spec).map_err(|e| corrupt("spec", e))?;
    let building: Vec<String> =
        serde_json::from_str(building).map_err(|e| corrupt("building list", e))?;
    let entry = CatalogEntry {
        stored: StoredSpec {
            spec,
            revision: revision as Revision,
            building,
        },
        floor: floor as Version,
    };
    Ok((name, entry))
}

/// The statement of [`read_entries`]: `$1` the namespace, `$2` the collections.
pub(crate) fn select_entries() -> String {
    format!("{SELECT_ENTRY} WHERE c.namespace = $1 AND c.collection = ANY($2)")
}

/// The catalog rows of some collections of `ns` (those that exist).
pub(crate) async fn read_entries(
    conn: Conn<'_>,
    ns: &str,
    collections: &[&str],
    target: &str,
) -> Result<Vec<(String, CatalogEntry)>> {
    let rows = conn
        .query(&select_entries(), &[&ns, &collections])
        .await
        .map_err(|e| pg_error(e, "reading the catalog", target))?;
    rows.iter().map(entry_of).collect()
}

/// Every collection of `ns`, ordered by name.
pub(crate) async fn list_entries(
    conn: Conn<'_>,
    ns: &str,
    target: &str,
) -> Result<Vec<(String, CatalogEntry)>> {
    let rows = conn
        .query(
            &format!("{SELECT_ENTRY} WHERE c.namespace = $1 ORDER BY c.collection"),
            &[&ns],
        )
        .await
        .map_err(|e| pg_error(e, "reading the catalog", target))?;
    rows.iter().map(entry_of).collect()
}

impl PostgresBackend {
    /// The layout and floor of one collection, with its revision checked: NotFound when it
    /// is gone, stale spec when `revision` is not current.
    pub(crate) async fn checked_layout(
        &self,
        conn: Conn<'_>,
        ns: &str,
        collection: &str,
        revision: Option<Revision>,
    ) -> Result<(Arc<Layout>, Version)> {
        let target = self.inner.pool.target();
        let entry = read_entries(conn, ns, &[collection], target)
            .await?
            .pop()
            .ok_or_else(|| Error::collection_not_found(ns, collection))?
            .1;
        if revision.is_some_and(|r| r != entry.stored.revision) {
            return Err(Error::stale_spec(collection));
        }
        Ok((self.layout(ns, collection, entry.stored)?, entry.floor))
    }

    /// Creates or changes a collection's spec, with its DDL, in one transaction: lock, check
    /// the expected revision, the layout's DDL, the catalog row (a new revision), the write
    /// function of that revision, the migration record, the change-feed event.
    pub(crate) async fn apply_spec_tx(
        &self,
        ns: &str,
        collection: &str,
        update: &SpecUpdate,
    ) -> Result<Revision> {
        let target = self.inner.pool.target().to_owned();
        let mut client = self.inner.pool.client("changing a spec").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error(e, "changing a spec", &target))?;
        lock(Conn::Tx(&tx), ns, collection, true, &target).await?;
        let current = read_entries(Conn::Tx(&tx), ns, &[collection], &target)
            .await?
            .pop();
        let current_revision = current.as_ref().map(|(_, e)| e.stored.revision);
        if current_revision != update.expected {
            return Err(Error::spec_conflict(
                collection,
                update.expected,
                current_revision,
            ));
        }
        let ddl_error = |e| pg_error(e, "changing the layout", &target);
        let Migration { ddl, what } = match &current {
            None => {
                // Schemas are shared by a namespace's collections: made under the
                // namespace's lock, so two instances creating collections race safely.
                lock(Conn::Tx(&tx), ns, "", true, &target).await?;
                Migration::create(ns, collection, &update.spec)?
            }
            Some((_, old)) => Migration::change(ns, collection, &old.stored, update)?,
        };
        for statement in &ddl {
            tx.batch_execute(statement).await.map_err(ddl_error)?;
        }
        let revision = store_spec(&tx, ns, collection, update, &target).await?;
        // The collection's write function, for this revision's layout.
        let layout = self.layout(
            ns,
            collection,
            StoredSpec {
                spec: update.spec.clone(),
                revision,
                building: update.building.clone(),
            },
        )?;
        tx.batch_execute(&layout.writer_ddl()?)
            .await
            .map_err(ddl_error)?;
        let change = if what.is_empty() {
            "spec stored again".to_owned()
        } else {
            what.join("; ")
        };
        self.record_migration(&tx, ns, collection, revision, &change, &target)
            .await?;
        log_change(&tx, ns, Pending::new(ChangeOp::Spec, collection), &target).await?;
        tx.commit()
            .await
            .map_err(|e| pg_error(e, "changing a spec", &target))?;
        Ok(revision)
    }

    /// Appends a spec change to the namespace's `__migrations` table (what psql shows of a
    /// collection's history).
    async fn record_migration(
        &self,
        tx: &Transaction<'_>,
        ns: &str,
        collection: &str,
        revision: Revision,
        change: &str,
        target: &str,
    ) -> Result<()> {
        tx.execute(
            &format!(
                "INSERT INTO {}.__migrations (revision, collection, change, instance) \
                 VALUES ($1, $2, $3, $4)",
                quote(&schema_name(ns))
            ),
            &[
                &(revision as i64),
                &collection,
                &change,
                &self.inner.instance,
            ],
        )
        .await
        .map_err(|e| pg_error(e, "recording a migration", target))?;
        Ok(())
    }

    /// Drops a collection's table and catalog row; its version floor stays.
    pub(crate) async fn drop_collection_tx(&self, ns: &str, collection: &str) -> Result<bool> {
        let target = self.inner.pool.target().to_owned();
        let mut client = self.inner.pool.client("dropping a collection").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error(e, "dropping a collection", &target))?;
        lock(Conn::Tx(&tx), ns, collection, true, &target).await?;
        let Some((_, entry)) = read_entries(Conn::Tx(&tx), ns, &[collection], &target)
            .await?
            .pop()
        else {
            return Ok(false);
        };
        let layout = self.layout(ns, collection, entry.stored)?;
        let highest: Option<i64> = tx
            .query_one(&format!("SELECT max(version) FROM {}", layout.table), &[])
            .await
            .map_err(|e| pg_error(e, "dropping a collection", &target))?
            .get(0);
        raise_floor(
            Conn::Tx(&tx),
            ns,
            collection,
            highest.unwrap_or(0) as Version,
            &target,
        )
        .await?;
        for side in &layout.sides {
            tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", side.table))
                .await
                .map_err(|e| pg_error(e, "dropping a collection", &target))?;
        }
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS {}; DROP FUNCTION IF EXISTS {}.{}",
            layout.table,
            quote(&schema_name(ns)),
            quote(&crate::writer::writer_name(collection))
        ))
        .await
        .map_err(|e| pg_error(e, "dropping a collection", &target))?;
        tx.execute(
            "DELETE FROM stowage.collections WHERE namespace = $1 AND collection = $2",
            &[&ns, &collection],
        )
        .await
        .map_err(|e| pg_error(e, "dropping a collection", &target))?;
        tx.execute(
            &format!(
                "INSERT INTO {}.__migrations (revision, collection, change, instance) \
                 VALUES (nextval('stowage.revisions'), $1, 'drop collection', $2)",
                quote(&schema_name(ns))
            ),
            &[&collection, &self.inner.instance],
        )
        .await
        .map_err(|e| pg_error(e, "recording a migration", &target))?;
        log_change(&tx, ns, Pending::new(ChangeOp::Drop, collection), &target).await?;
        tx.commit()
            .await
            .map_err(|e| pg_error(e, "dropping a collection", &target))?;
        Ok(true)
    }
}

/// Raises a collection's version floor to `version` (never lowers it). The caller holds the
/// collection's exclusive lock.
pub(crate) async fn raise_floor(
    conn: Conn<'_>,
    ns: &str,
    collection: &str,
    version: Version,
    target: &str,
) -> Result<()> {
    if version == 0 {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO stowage.version_floors AS f (namespace, collection, floor) \
         VALUES ($1, $2, $3) ON CONFLICT (namespace, collection) \
         DO UPDATE SET floor = greatest(f.floor, EXCLUDED.floor)",
        &[&ns, &collection, &(version as i64)],
    )
    .await
    .map_err(|e| pg_error(e, "raising a version floor", target))?;
    Ok(())
}

/// Logs one change of a catalog transaction (at the database's time).
async fn log_change(tx: &Transaction<'_>, ns: &str, event: Pending, target: &str) -> Result<()> {
    if let Some((sql, params)) = append(ns, &[event], None) {
        Conn::Tx(tx)
            .execute(&sql, &params.refs())
            .await
            .map_err(|e| pg_error(e, "logging a change", target))?;
    }
    Ok(())
}

fn describe(names: &[&str]) -> String {
    if names.is_empty() {
        "no indexes".to_owned()
    } else {
        format!("indexes {}", names.join(", "))
    }
}

/// What a spec change does to the layout (`ddl`) and how the migration record says it.
struct Migration {
    ddl: Vec<String>,
    what: Vec<String>,
}

impl Migration {
    /// A new collection: the namespace's schema and migration table if missing, the table
    /// and its indexes.
    fn create(ns: &str, collection: &str, spec: &CollectionSpec) -> Result<Migration> {
        let schema = quote(&schema_name(ns));
        let mut ddl = vec![
            format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {schema}.__migrations (\
                 revision bigint PRIMARY KEY, collection text COLLATE \"C\" NOT NULL, \
                 change text NOT NULL, at timestamptz NOT NULL DEFAULT now(), \
                 instance text NOT NULL)"
            ),
        ];
        ddl.extend(collection_ddl(ns, collection, spec)?);
        let indexes: Vec<&str> = spec.indexes.iter().map(|i| i.name.as_str()).collect();
        let what = vec![format!(
            "create collection {collection} with {}",
            describe(&indexes)
        )];
        Ok(Migration { ddl, what })
    }

    /// A changed spec: indexes dropped and added (to be built), builds finished, the default
    /// TTL, covering flags (which change nothing on PostgreSQL).
    fn change(
        ns: &str,
        collection: &str,
        old: &StoredSpec,
        update: &SpecUpdate,
    ) -> Result<Migration> {
        let change = old.spec.diff(&update.spec)?;
        let (mut ddl, mut what) = (Vec::new(), Vec::new());
        for name in &change.dropped {
            if let Some(ix) = old.spec.index_named(name) {
                ddl.push(drop_index_ddl(ns, collection, ix));
                what.push(format!("drop index {name}"));
            }
        }
        for ix in &change.added {
            ddl.extend(index_ddl(ns, collection, ix, true)?);
            what.push(format!("add index {} (building)", ix.name));
        }
        for name in &old.building {
            if !update.building.contains(name) && update.spec.index_named(name).is_some() {
                what.push(format!("index {name} built"));
            }
        }
        if old.spec.default_ttl_seconds != update.spec.default_ttl_seconds {
            let ttl =
                (update.spec.default_ttl_seconds).map_or("none".to_owned(), |s| format!("{s} s"));
            what.push(format!("default TTL {ttl}"));
        }
        if !change.covering_changed.is_empty() {
            let names: Vec<&str> = change.covering_changed.iter().map(String::as_str).collect();
            what.push(format!(
                "covering flag of {} (no change on PostgreSQL)",
                describe(&names)
            ));
        }
        Ok(Migration { ddl, what })
    }
}

/// Stores `update` as the collection's catalog row under a new revision, and returns it.
async fn store_spec(
    tx: &Transaction<'_>,
    ns: &str,
    collection: &str,
    update: &SpecUpdate,
    target: &str,
) -> Result<Revision> {
    let encoded = |e: serde_json::Error| Error::internal(format!("encoding a spec: {e}"));
    let spec_json = serde_json::to_string(&update.spec).map_err(encoded)?;
    let building_json = serde_json::to_string(&update.building).map_err(encoded)?;
    let row = tx
        .query_one(
            "INSERT INTO stowage.collections AS c (namespace, collection, revision, spec, \
             building, schema_name, table_name) \
             VALUES ($1, $2, nextval('stowage.revisions'), $3::text::jsonb, \
             $4::text::jsonb, $5, $6) \
             ON CONFLICT (namespace, collection) DO UPDATE SET revision = EXCLUDED.revision, \
             spec = EXCLUDED.spec, building = EXCLUDED.building RETURNING revision",
            &[
                &ns,
                &collection,
                &spec_json,
                &building_json,
                &schema_name(ns),
                &records_table(collection),
            ],
        )
        .await
        .map_err(|e| pg_error(e, "storing a spec", target))?;
    let revision: i64 = row.get(0);
    Ok(revision as Revision)
}

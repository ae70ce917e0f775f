//! Opening a database: the catalog schema made if missing, and its format checked.
//!
//! Several instances may open one fresh database at once. `CREATE … IF NOT EXISTS` alone
//! races (two creators can both pass the check, and one then fails on PostgreSQL's own
//! catalog), so the bootstrap runs in one transaction under an advisory lock: the first
//! instance creates, the others wait and find everything there.

use stowage_core::backend::stable_hash;
use stowage_core::{Error, ErrorKind, Result};

use crate::error::pg_error;
use crate::pool::PostgresPool;
use crate::schema::{quote, CATALOG_SCHEMA};

/// The catalog format this build writes and the newest it reads.
pub const FORMAT_VERSION: i64 = 1;

/// Makes the catalog if it is missing and checks its format: a database written by a newer
/// Stowage is refused (`Unsupported`) and left untouched.
pub(crate) async fn ensure_catalog(pool: &PostgresPool) -> Result<()> {
    let target = pool.target().to_owned();
    let mut client = pool.client("opening the catalog").await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg_error(e, "opening the catalog", &target))?;
    // Advisory lock keys are signed 64-bit: the hash's bits as they are.
    let key = stable_hash("stowage catalog bootstrap") as i64;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
        .await
        .map_err(|e| pg_error(e, "locking the catalog", &target))?;
    let s = quote(CATALOG_SCHEMA);
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.meta (
             key text COLLATE \"C\" PRIMARY KEY,
             value bigint NOT NULL);
         INSERT INTO {s}.meta (key, value) VALUES ('format', {FORMAT_VERSION})
             ON CONFLICT (key) DO NOTHING;"
    ))
    .await
    .map_err(|e| pg_error(e, "creating the catalog", &target))?;
    let format: i64 = tx
        .query_one(
            &format!("SELECT value FROM {s}.meta WHERE key = 'format'"),
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "reading the catalog format", &target))?
        .get(0);
    if format > FORMAT_VERSION {
        // Dropping the transaction rolls it back: nothing was changed.
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "postgres {target}: the Stowage catalog is format {format}, newer than this \
                 build reads ({FORMAT_VERSION}): upgrade Stowage"
            ),
        ));
    }
    tx.commit()
        .await
        .map_err(|e| pg_error(e, "creating the catalog", &target))
}

//! The catalog: each collection's spec (`…:specs`, JSON) and revision (`…:revs`), changed as
//! a compare-and-set by `spec.lua`; the set of namespaces; dropping a collection with
//! `drop.lua`. Specs are cached by revision: a revision names one spec of one collection
//! for good, so a cached entry is never stale.

use std::sync::Arc;

use redis::AsyncCommands;
use stowage_core::backend::{Revision, SpecUpdate, StoredSpec};
use stowage_core::{CollectionSpec, Error, ErrorKind, Result, Timestamp};

use crate::error::redis_error;
use crate::open::RedisBackend;
use crate::schema::namespaces_key;

/// How many specs the cache keeps before it starts again.
const SPEC_CACHE: usize = 4096;

fn encode(spec: &CollectionSpec, building: &[String]) -> Result<String> {
    serde_json::to_string(&serde_json::json!({ "spec": spec, "building": building }))
        .map_err(|e| Error::internal(format!("encoding a spec: {e}")))
}

fn decode(collection: &str, revision: &str, json: &str) -> Result<StoredSpec> {
    let corrupt = |what: String| {
        Error::new(
            ErrorKind::Corrupted,
            format!("redis catalog: collection {collection:?}: {what}"),
        )
    };
    #[derive(serde::Deserialize)]
    struct Stored {
        spec: CollectionSpec,
        building: Vec<String>,
    }
    let stored: Stored =
        serde_json::from_str(json).map_err(|e| corrupt(format!("its spec cannot be read: {e}")))?;
    Ok(StoredSpec {
        spec: stored.spec,
        revision: revision
            .parse()
            .map_err(|_| corrupt(format!("revision {revision:?} is not a number")))?,
        building: stored.building,
    })
}

impl RedisBackend {
    /// A collection's stored spec, if it exists.
    pub(crate) async fn load_spec_now(
        &self,
        ns: &str,
        collection: &str,
    ) -> Result<Option<StoredSpec>> {
        let keys = self.keys(ns);
        let (revision, json): (Option<String>, Option<String>) = redis::pipe()
            .hget(keys.revs(), collection)
            .hget(keys.specs(), collection)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, "reading a spec", &self.inner.target))?;
        match (revision, json) {
            (Some(r), Some(j)) => {
                let stored = decode(collection, &r, &j)?;
                self.remember(ns, collection, &stored);
                Ok(Some(stored))
            }
            _ => Ok(None),
        }
    }

    /// Every collection of `ns` with its spec, by name.
    pub(crate) async fn list_specs_now(&self, ns: &str) -> Result<Vec<(String, StoredSpec)>> {
        let keys = self.keys(ns);
        let (revisions, specs): (
            std::collections::BTreeMap<String, String>,
            std::collections::HashMap<String, String>,
        ) = redis::pipe()
            .hgetall(keys.revs())
            .hgetall(keys.specs())
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, "reading the specs", &self.inner.target))?;
        revisions
            .into_iter()
            .filter_map(|(c, r)| specs.get(&c).map(|j| (c, r, j)))
            .map(|(c, r, j)| Ok((c.clone(), decode(&c, &r, j)?)))
            .collect()
    }

    /// The spec of `collection` at `revision`: from the cache, or read (`None` when the
    /// collection is gone or at another revision).
    pub(crate) async fn spec_at(
        &self,
        ns: &str,
        collection: &str,
        revision: Revision,
    ) -> Result<Option<Arc<StoredSpec>>> {
        let key = (ns.to_owned(), collection.to_owned(), revision);
        if let Some(s) = self.inner.specs.lock().get(&key) {
            return Ok(Some(s.clone()));
        }
        Ok(self
            .load_spec_now(ns, collection)
            .await?
            .filter(|s| s.revision == revision)
            .map(Arc::new))
    }

    fn remember(&self, ns: &str, collection: &str, stored: &StoredSpec) {
        let mut cache = self.inner.specs.lock();
        if cache.len() >= SPEC_CACHE {
            cache.clear();
        }
        cache.insert(
            (ns.to_owned(), collection.to_owned(), stored.revision),
            Arc::new(stored.clone()),
        );
    }

    /// Creates or changes a collection's spec as a compare-and-set on its revision.
    pub(crate) async fn apply_spec_now(
        &self,
        ns: &str,
        collection: &str,
        update: &SpecUpdate,
        now: Timestamp,
    ) -> Result<Revision> {
        let keys = self.keys(ns);
        let dropped = match update.expected {
            Some(_) => match self.load_spec_now(ns, collection).await? {
                Some(old) => old.spec.diff(&update.spec)?.dropped,
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        let mut call = self.inner.spec_script.key(keys.revs());
        call.arg(keys.base())
            .arg(collection)
            .arg(update.expected.map_or(String::new(), |r| r.to_string()))
            .arg(encode(&update.spec, &update.building)?)
            .arg(self.inner.config.change_log)
            .arg(
                self.caller_now(now)
                    .map_or(String::new(), |n| n.to_string()),
            );
        for name in &dropped {
            call.arg(name);
        }
        let revision: Revision = match call.invoke_async(&mut self.conn()).await {
            Ok(r) => r,
            Err(e) if e.code() == Some("STOWAGE_SPEC_CONFLICT") => {
                let current = e.detail().and_then(|d| d.parse::<Revision>().ok());
                return Err(Error::spec_conflict(collection, update.expected, current));
            }
            Err(e) => return Err(redis_error(e, "changing a spec", &self.inner.target)),
        };
        // Outside the namespace's slot on a cluster, so not in the script: a namespace
        // listed once stays listed (it may be empty).
        self.conn()
            .sadd::<_, _, ()>(namespaces_key(&self.inner.config.prefix), ns)
            .await
            .map_err(|e| redis_error(e, "listing a namespace", &self.inner.target))?;
        self.remember(
            ns,
            collection,
            &StoredSpec {
                spec: update.spec.clone(),
                revision,
                building: update.building.clone(),
            },
        );
        Ok(revision)
    }

    /// Drops a collection and every key it has; its version floor stays.
    pub(crate) async fn drop_collection_now(
        &self,
        ns: &str,
        collection: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let Some(stored) = self.load_spec_now(ns, collection).await? else {
            return Ok(false);
        };
        let keys = self.keys(ns);
        let mut call = self.inner.drop_script.key(keys.revs());
        call.arg(keys.base())
            .arg(collection)
            .arg(self.inner.config.change_log)
            .arg(
                self.caller_now(now)
                    .map_or(String::new(), |n| n.to_string()),
            );
        for ix in &stored.spec.indexes {
            call.arg(&ix.name);
        }
        let dropped: i64 = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(e, "dropping a collection", &self.inner.target))?;
        Ok(dropped == 1)
    }

    /// NotFound unless a collection was ever made under the prefix (the set of namespaces
    /// exists from the first on).
    pub(crate) async fn found_or_no_store(&self) -> Result<()> {
        let prefix = &self.inner.config.prefix;
        let found: bool = self
            .conn()
            .exists(namespaces_key(prefix))
            .await
            .map_err(|e| redis_error(e, "looking for the store", &self.inner.target))?;
        if found {
            return Ok(());
        }
        Err(Error::no_store(
            format!("redis {} prefix {prefix:?}", self.inner.target),
            "no collection was ever made under this prefix",
        ))
    }

    /// Every namespace holding a collection, by name. The set lists every namespace that
    /// ever had one (it lives outside the namespaces' slots, so scripts cannot keep it
    /// exact); those whose collections all went are left out here.
    pub(crate) async fn namespaces_now(&self) -> Result<Vec<String>> {
        let failed = |e| redis_error(e, "listing namespaces", &self.inner.target);
        let mut names: Vec<String> = self
            .conn()
            .smembers(namespaces_key(&self.inner.config.prefix))
            .await
            .map_err(failed)?;
        names.sort();
        let held = futures_util::future::join_all(
            names
                .iter()
                .map(|ns| async move { self.conn().hlen::<_, u64>(self.keys(ns).revs()).await }),
        )
        .await;
        let mut out = Vec::new();
        for (name, held) in names.into_iter().zip(held) {
            if held.map_err(failed)? > 0 {
                out.push(name);
            }
        }
        Ok(out)
    }
}

//! Queries: an AND of predicates on indexes, an order, a limit and a cursor or page.

use std::collections::BTreeMap;
use std::ops::Bound;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backend::{CursorKey, Order, Predicate, PredicateOp, QueryRequest, RECORD_ID};
use crate::error::{Error, ErrorKind, Result};
use crate::record::Versioned;
use crate::spec::{CollectionSpec, IndexType};
use crate::value::IndexValue;

/// The tests on one index; all that are set must hold. This is also the JSON form the server
/// takes: `{"eq": "P0"}`, `{"in": ["Active", "Open"]}`, `{"gte": "…", "lt": "…"}`,
/// `{"prefix": "llm-"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Equal to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eq: Option<Value>,
    /// Equal to one of.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<Value>>,
    /// Greater than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<Value>,
    /// Greater than or equal to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<Value>,
    /// Less than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<Value>,
    /// Less than or equal to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<Value>,
    /// Starts with (string indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// An AND of [`Condition`]s keyed by index name. Its JSON form is the server's `where`:
/// `{"severity": {"eq": "P0"}, "created_at": {"gte": "2024-01-01T00:00:00Z"}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Filter(pub BTreeMap<String, Condition>);

impl Filter {
    /// Matches every record.
    pub fn new() -> Self {
        Self::default()
    }

    fn cond(&mut self, index: impl Into<String>) -> &mut Condition {
        self.0.entry(index.into()).or_default()
    }

    /// `index` equals `value`.
    pub fn eq(mut self, index: impl Into<String>, value: impl Into<Value>) -> Self {
        self.cond(index).eq = Some(value.into());
        self
    }

    /// `index` equals one of `values`.
    pub fn any_of<V: Into<Value>>(
        mut self,
        index: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        self.cond(index).any_of = Some(values.into_iter().map(Into::into).collect());
        self
    }

    /// `index` > `value`.
    pub fn gt(mut self, index: impl Into<String>, value: impl Into<Value>) -> Self {
        self.cond(index).gt = Some(value.into());
        self
    }

    /// `index` >= `value`.
    pub fn gte(mut self, index: impl Into<String>, value: impl Into<Value>) -> Self {
        self.cond(index).gte = Some(value.into());
        self
    }

    /// `index` < `value`.
    pub fn lt(mut self, index: impl Into<String>, value: impl Into<Value>) -> Self {
        self.cond(index).lt = Some(value.into());
        self
    }

    /// `index` <= `value`.
    pub fn lte(mut self, index: impl Into<String>, value: impl Into<Value>) -> Self {
        self.cond(index).lte = Some(value.into());
        self
    }

    /// The string `index` starts with `prefix`.
    pub fn prefix(mut self, index: impl Into<String>, prefix: impl Into<String>) -> Self {
        self.cond(index).prefix = Some(prefix.into());
        self
    }

    /// Whether the filter has no condition (it matches every record).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks the filter against a spec and turns it into backend predicates: on the
    /// spec's indexes, and on the record id (`"id"`, which no index may be called), ordered
    /// as [`Predicate`] says engines may rely on.
    // Long: one arm per condition, each a few lines; apart, they would be a table of tiny functions.
    #[allow(clippy::too_many_lines)]
    pub(crate) fn resolve(&self, spec: &CollectionSpec) -> Result<Vec<Predicate>> {
        let mut preds = Vec::new();
        for (name, cond) in &self.0 {
            let (ty, blind) = if name == RECORD_ID {
                (IndexType::String, false)
            } else {
                let ix = spec.index_named(name).ok_or_else(|| {
                    Error::invalid(format!(
                        "cannot filter on {name:?}: it is not an index of this collection \
                         (indexes: {}; \"id\" is the record id)",
                        index_names(spec)
                    ))
                })?;
                (ix.index_type, ix.blind)
            };
            let ranged = [&cond.gt, &cond.gte, &cond.lt, &cond.lte]
                .iter()
                .any(|b| b.is_some());
            if blind && (ranged || cond.prefix.is_some()) {
                return Err(Error::invalid(format!(
                    "index {name:?} is blind: it keeps keyed hashes of its values, so only eq \
                     and in work on it, not ranges or prefixes"
                )));
            }
            // Ids never hold U+0000 (and PostgreSQL's text could not take one as a bound).
            let id_test = |op: &str, s: &str| {
                if name == RECORD_ID && s.contains('\0') {
                    return Err(Error::invalid(format!(
                        "query {op} on id: an id never holds U+0000, so no record could match"
                    )));
                }
                Ok(())
            };
            let conv = |op: &str, v: &Value| {
                let value =
                    IndexValue::from_json(ty, v, &|| format!("query {op} on index {name:?}"))?;
                if let IndexValue::String(s) = &value {
                    id_test(op, s)?;
                }
                Ok::<_, Error>(value)
            };
            let mut push = |op| {
                preds.push(Predicate {
                    index: name.clone(),
                    op,
                });
            };
            if let Some(v) = &cond.eq {
                push(PredicateOp::Eq(conv("eq", v)?));
            }
            if let Some(vs) = &cond.any_of {
                if vs.is_empty() {
                    return Err(Error::invalid(format!(
                        "query in on index {name:?} has an empty list: it would match nothing"
                    )));
                }
                let vals = vs
                    .iter()
                    .map(|v| conv("in", v))
                    .collect::<Result<Vec<_>>>()?;
                push(PredicateOp::In(vals));
            }
            let lo = match (&cond.gt, &cond.gte) {
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(format!(
                        "query on index {name:?} has both gt and gte: give one"
                    )))
                }
                (Some(v), None) => Bound::Excluded(conv("gt", v)?),
                (None, Some(v)) => Bound::Included(conv("gte", v)?),
                (None, None) => Bound::Unbounded,
            };
            let hi = match (&cond.lt, &cond.lte) {
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(format!(
                        "query on index {name:?} has both lt and lte: give one"
                    )))
                }
                (Some(v), None) => Bound::Excluded(conv("lt", v)?),
                (None, Some(v)) => Bound::Included(conv("lte", v)?),
                (None, None) => Bound::Unbounded,
            };
            if lo != Bound::Unbounded || hi != Bound::Unbounded {
                push(PredicateOp::Range(lo, hi));
            }
            if let Some(p) = &cond.prefix {
                if ty != IndexType::String {
                    return Err(Error::invalid(format!(
                        "query prefix on index {name:?}: prefix needs a string index, this one \
                         is {}",
                        ty.as_str()
                    )));
                }
                id_test("prefix", p)?;
                push(PredicateOp::Prefix(p.clone()));
            }
            if cond == &Condition::default() {
                return Err(Error::invalid(format!(
                    "query on index {name:?} has no test"
                )));
            }
        }
        // Narrowest first, for engines that narrow by the first predicate: ids named one
        // by one, then indexes, then id ranges and prefixes (a stable sort: the rest keep
        // their order).
        preds.sort_by_key(|p| match (p.on_id(), &p.op) {
            (true, PredicateOp::Eq(_) | PredicateOp::In(_)) => 0,
            (false, _) => 1,
            (true, _) => 2,
        });
        Ok(preds)
    }
}

fn index_names(spec: &CollectionSpec) -> String {
    if spec.indexes.is_empty() {
        return "none".to_owned();
    }
    spec.indexes
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A query: a [`Filter`], an order, and a limit with a cursor or a page.
///
/// ```
/// use stowage_core::Query;
/// let q = Query::new()
///     .eq("severity", "P0")
///     .any_of("state", ["Active", "Open"])
///     .gte("created_at", "2024-01-01T00:00:00Z")
///     .order_by("created_at")
///     .descending()
///     .limit(50);
/// ```
///
/// Cursors are opaque strings. A cursor continues strictly after the last record of its page
/// in the query's order (value, then id), so records inserted or deleted between pages never
/// make another record appear twice or go missing. A cursor only works with the query that
/// made it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The predicates.
    #[serde(default, rename = "where")]
    pub filter: Filter,
    /// The index to order by, or `"id"` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_by: Option<String>,
    /// Largest first.
    #[serde(default)]
    pub desc: bool,
    /// At most this many records; `None`: all.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole_number::option"
    )]
    pub limit: Option<usize>,
    /// Continue after the page that returned this cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// 1-based page number, with `page_size`: for callers who want offsets.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole_number::option"
    )]
    pub page: Option<u64>,
    /// Records per page, with `page`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::whole_number::option"
    )]
    pub page_size: Option<usize>,
}

macro_rules! query_filter_methods {
    ($($(#[$doc:meta])* $name:ident),*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, index: impl Into<String>, value: impl Into<Value>) -> Self {
            self.filter = self.filter.$name(index, value);
            self
        }
    )*};
}

impl Query {
    /// Every record, in id order.
    pub fn new() -> Self {
        Self::default()
    }

    /// A query with this filter.
    pub fn filter(filter: Filter) -> Self {
        Query {
            filter,
            ..Self::default()
        }
    }

    query_filter_methods!(
        /// `index` equals `value`.
        eq,
        /// `index` > `value`.
        gt,
        /// `index` >= `value`.
        gte,
        /// `index` < `value`.
        lt,
        /// `index` <= `value`.
        lte
    );

    /// `index` equals one of `values`.
    pub fn any_of<V: Into<Value>>(
        mut self,
        index: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        self.filter = self.filter.any_of(index, values);
        self
    }

    /// The string `index` starts with `prefix`.
    pub fn prefix(mut self, index: impl Into<String>, prefix: impl Into<String>) -> Self {
        self.filter = self.filter.prefix(index, prefix);
        self
    }

    /// Orders by an index (only the records it holds), or by `"id"`.
    pub fn order_by(mut self, index: impl Into<String>) -> Self {
        self.order_by = Some(index.into());
        self
    }

    /// Largest first.
    pub fn descending(mut self) -> Self {
        self.desc = true;
        self
    }

    /// At most `n` records.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Continues after the page that returned `cursor`.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Page `page` (1-based) of `page_size` records.
    pub fn page(mut self, page: u64, page_size: usize) -> Self {
        self.page = Some(page);
        self.page_size = Some(page_size);
        self
    }

    /// Checks the query against a spec and turns it into a backend request. The request asks
    /// for one record more than the limit, to know whether a next page exists.
    pub(crate) fn resolve(
        &self,
        collection: &str,
        revision: crate::backend::Revision,
        spec: &CollectionSpec,
    ) -> Result<ResolvedQuery> {
        let filter = self.filter.resolve(spec)?;
        let index = match self.order_by.as_deref() {
            None | Some("id") => None,
            Some(name) => {
                let ix = spec.index_named(name).ok_or_else(|| {
                    Error::invalid(format!(
                        "cannot order by {name:?}: it is not an index of this collection \
                         (indexes: {})",
                        index_names(spec)
                    ))
                })?;
                if ix.multi {
                    return Err(Error::invalid(format!(
                        "cannot order by {name:?}: it is multi-valued, so a record has no single \
                         place in its order"
                    )));
                }
                if ix.blind {
                    return Err(Error::invalid(format!(
                        "cannot order by {name:?}: it is blind, and keyed hashes have no order"
                    )));
                }
                Some(name.to_owned())
            }
        };
        let order = Order {
            index,
            descending: self.desc,
        };
        let fingerprint = fingerprint(collection, &self.filter, &order);
        let (limit, offset) = match (self.page, self.page_size) {
            (None, None) => (self.limit, 0),
            (Some(page), Some(size)) => {
                if self.cursor.is_some() || self.limit.is_some() {
                    return Err(Error::invalid(
                        "page/page_size cannot be combined with cursor or limit",
                    ));
                }
                if page == 0 || size == 0 {
                    return Err(Error::invalid(
                        "page is 1-based and page_size must be at least 1",
                    ));
                }
                (Some(size), (page - 1).saturating_mul(size as u64))
            }
            _ => return Err(Error::invalid("page and page_size go together: give both")),
        };
        if limit == Some(0) {
            return Err(Error::invalid("limit must be at least 1"));
        }
        let after = match &self.cursor {
            None => None,
            Some(c) => Some(decode_cursor(c, fingerprint)?),
        };
        Ok(ResolvedQuery {
            request: QueryRequest {
                collection: collection.to_owned(),
                revision,
                filter,
                order,
                after,
                offset,
                limit: limit.map(|l| l.saturating_add(1)),
            },
            limit,
            fingerprint,
        })
    }
}

#[derive(Debug)]
pub(crate) struct ResolvedQuery {
    pub(crate) request: QueryRequest,
    pub(crate) limit: Option<usize>,
    pub(crate) fingerprint: u64,
}

/// One page of query results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The records, in the query's order.
    pub items: Vec<Versioned<T>>,
    /// Pass to [`Query::cursor`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CursorWire {
    q: u64,
    #[serde(flatten)]
    key: CursorKey,
}

/// FNV-1a of the query's shape, so that a cursor given to another query is refused instead
/// of silently skipping records. Stable across processes and releases (unlike `std`'s
/// hasher), since cursors outlive both.
fn fingerprint(collection: &str, filter: &Filter, order: &Order) -> u64 {
    fingerprint_of(
        &serde_json::json!([collection, filter, order.index, order.descending]).to_string(),
    )
}

/// The stable hash of a shape string.
pub(crate) fn fingerprint_of(shape: &str) -> u64 {
    crate::backend::stable_hash(shape)
}

pub(crate) fn encode_cursor(fingerprint: u64, key: CursorKey) -> String {
    let json = serde_json::to_vec(&CursorWire {
        q: fingerprint,
        key,
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

pub(crate) fn decode_cursor(cursor: &str, fingerprint: u64) -> Result<CursorKey> {
    // A cursor names a page; one this query never returned names none: NotFound (404 over
    // HTTP, where the cursor is part of what is asked for), not a malformed request.
    let bad = || {
        Error::new(
            ErrorKind::NotFound,
            "cursor not found: it is damaged or was not returned by this store; pass back a \
             next_cursor unchanged",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let wire: CursorWire = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if wire.q != fingerprint {
        return Err(Error::new(
            ErrorKind::NotFound,
            "cursor not found for this query: it belongs to another query, and a cursor only \
             continues the query (filter and order) that returned it",
        ));
    }
    Ok(wire.key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::IndexSpec;

    fn spec() -> CollectionSpec {
        CollectionSpec::new()
            .index(IndexSpec::string("severity", "/severity"))
            .index(IndexSpec::float("score", "/score"))
            .index(IndexSpec::string("tags", "/tags").multi())
    }

    #[test]
    fn server_json_form_parses() {
        let q: Query = serde_json::from_str(
            r#"{"where":{"severity":{"eq":"P0"},"score":{"gte":1,"lt":2.5}},
                "order_by":"score","desc":true,"limit":50,"cursor":null}"#,
        )
        .unwrap();
        assert_eq!(
            q,
            Query::new()
                .eq("severity", "P0")
                .gte("score", 1)
                .lt("score", 2.5)
                .order_by("score")
                .descending()
                .limit(50)
        );
        let r = q.resolve("c", 1, &spec()).unwrap();
        assert_eq!(r.request.filter.len(), 2);
        assert_eq!(r.request.limit, Some(51));
    }

    #[test]
    fn bad_queries_say_why() {
        let s = spec();
        let msg = |q: Query| q.resolve("c", 1, &s).err().map(|e| e.message().to_owned());
        assert!(msg(Query::new().eq("nope", 1))
            .unwrap()
            .contains("not an index"));
        assert!(msg(Query::new().eq("score", "high"))
            .unwrap()
            .contains("expected a number"));
        assert!(msg(Query::new().order_by("tags"))
            .unwrap()
            .contains("multi-valued"));
        assert!(msg(Query::new().prefix("score", "1"))
            .unwrap()
            .contains("string index"));
        assert!(msg(Query::new().limit(0)).unwrap().contains("at least 1"));
        assert!(msg(Query::new().page(0, 10)).unwrap().contains("1-based"));
        let e = decode_cursor("!!", 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("cursor not found"), "{e}");
    }

    #[test]
    fn cursor_is_bound_to_its_query() {
        let s = spec();
        let q = Query::new().order_by("score");
        let fp = q.resolve("c", 1, &s).unwrap().fingerprint;
        let c = encode_cursor(
            fp,
            CursorKey {
                value: Some(IndexValue::Float(1.0)),
                id: "a".into(),
            },
        );
        assert!(q.clone().cursor(c.clone()).resolve("c", 1, &s).is_ok());
        let other = Query::new().order_by("score").descending().cursor(c);
        assert!(other
            .resolve("c", 1, &s)
            .unwrap_err()
            .message()
            .contains("another query"));
    }
}

//! How a query becomes SQL, for the engines that speak it (feature `sql`): PostgreSQL and
//! SQLite share the shape of every query — live records only, one condition per predicate
//! on the index's typed column or through its side table, a keyset cursor as a row-value
//! comparison a B-tree on `(value, id)` walks from, the order — and differ only in how a
//! parameter is written, typed and listed, which each engine says in its [`Dialect`].
//!
//! The records table is aliased `t`; side tables of multi-valued indexes hold `(value, id)`
//! and are joined through `EXISTS`, aliased `s`.

#![deny(missing_docs)]

use std::ops::Bound;

use stowage_core::backend::{Order, Predicate, PredicateOp, QueryRequest};
use stowage_core::{Error, IndexType, IndexValue, Result, Timestamp};

/// A statement parameter, bound by the engine in its own types.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SqlParam {
    /// An index value, of its index's column type.
    Value(IndexValue),
    /// Several values of one index type, as one parameter (an array), for dialects that
    /// list them that way ([`Dialect::any_of`]).
    Values(IndexType, Vec<IndexValue>),
    /// A record id.
    Id(String),
    /// Now: the caller's time, or `None` for the engine's own clock.
    Now(Option<Timestamp>),
}

/// Parameters in the order their placeholders number them.
#[derive(Debug, Default)]
pub struct SqlParams(pub Vec<SqlParam>);

impl SqlParams {
    /// Adds a parameter; returns its number (from 1).
    pub fn push(&mut self, p: SqlParam) -> usize {
        self.0.push(p);
        self.0.len()
    }
}

/// How one engine writes what differs between SQL dialects.
pub trait Dialect {
    /// The placeholder of parameter `n` (from 1): `$n` on PostgreSQL, `?n` on SQLite.
    fn placeholder(&self, n: usize) -> String;

    /// A value parameter as an expression of `t`'s column type (PostgreSQL casts it).
    fn typed(&self, n: usize, t: IndexType) -> Result<String>;

    /// The test `expr` equals one of `values` (all of type `t`), pushing what it needs.
    fn any_of(
        &self,
        expr: &str,
        t: IndexType,
        values: &[IndexValue],
        params: &mut SqlParams,
    ) -> Result<String>;

    /// Now, from parameter `n` ([`SqlParam::Now`]), as the type of `expires_at`.
    fn now(&self, n: usize) -> String;
}

/// Where a collection's indexes live, as quoted SQL names.
pub trait SqlLayout {
    /// The column of a single-valued index (quoted) and its type.
    fn column(&self, index: &str) -> Option<(&str, IndexType)>;
    /// The side table of a multi-valued index (quoted, qualified where needed) and its type.
    fn side(&self, index: &str) -> Option<(&str, IndexType)>;
}

/// A query's `WHERE` conditions (live records matching the filter, after the cursor) and
/// `ORDER BY`, over records table alias `t`.
#[derive(Debug)]
pub struct QuerySql {
    /// The parameters the conditions number.
    pub params: SqlParams,
    /// Conditions, all of which hold (`AND`).
    pub conditions: Vec<String>,
    /// The `ORDER BY` list.
    pub order_by: String,
    /// The order column (`t."…"`), to select beside the record; `None` when ordering by id.
    pub order_column: Option<String>,
}

/// Builds the SQL of a query's filter, order and cursor. `now` is the caller's time, or
/// `None` where the engine decides expiry by its own clock.
pub fn query_sql(
    dialect: &dyn Dialect,
    layout: &dyn SqlLayout,
    req: &QueryRequest,
    now: Option<Timestamp>,
) -> Result<QuerySql> {
    let mut params = SqlParams::default();
    let now_at = params.push(SqlParam::Now(now));
    let mut conditions = vec![format!(
        "(t.expires_at IS NULL OR t.expires_at > {})",
        dialect.now(now_at)
    )];
    for p in &req.filter {
        conditions.push(predicate_sql(dialect, layout, p, &mut params)?);
    }
    let dir = if req.order.descending { "DESC" } else { "ASC" };
    let cmp = if req.order.descending { "<" } else { ">" };
    let (order_by, order_column) = if let Order {
        index: Some(index), ..
    } = &req.order
    {
        let (column, t) = layout
            .column(index)
            .ok_or_else(|| Error::invalid(format!("index {index:?} cannot order a query")))?;
        let col = format!("t.{column}");
        conditions.push(format!("{col} IS NOT NULL"));
        if let Some(after) = &req.after {
            if let Some(v) = &after.value {
                let v = dialect.typed(params.push(SqlParam::Value(v.clone())), t)?;
                let id = dialect.placeholder(params.push(SqlParam::Id(after.id.clone())));
                conditions.push(format!("({col}, t.id) {cmp} ({v}, {id})"));
            }
        }
        (format!("{col} {dir}, t.id {dir}"), Some(col))
    } else {
        if let Some(after) = &req.after {
            let id = dialect.placeholder(params.push(SqlParam::Id(after.id.clone())));
            conditions.push(format!("t.id {cmp} {id}"));
        }
        (format!("t.id {dir}"), None)
    };
    Ok(QuerySql {
        params,
        conditions,
        order_by,
        order_column,
    })
}

/// One predicate as SQL, on the index's column or through its side table, or on `t.id`.
fn predicate_sql(
    dialect: &dyn Dialect,
    layout: &dyn SqlLayout,
    p: &Predicate,
    params: &mut SqlParams,
) -> Result<String> {
    // Ids are bound as ids (PostgreSQL escapes index strings, never ids), and listed.
    let id = |v: &IndexValue, params: &mut SqlParams| match v {
        IndexValue::String(s) => Ok(dialect.placeholder(params.push(SqlParam::Id(s.clone())))),
        other => Err(Error::invalid(format!("an id is a string, not {other:?}"))),
    };
    let (expr, t, side) = if p.on_id() {
        ("t.id".to_owned(), IndexType::String, None)
    } else if let Some((column, t)) = layout.column(&p.index) {
        (format!("t.{column}"), t, None)
    } else if let Some((table, t)) = layout.side(&p.index) {
        ("s.value".to_owned(), t, Some(table))
    } else {
        return Err(Error::invalid(format!(
            "index {:?} is not queryable in this spec",
            p.index
        )));
    };
    let value = |v: &IndexValue, params: &mut SqlParams| {
        if p.on_id() {
            return id(v, params);
        }
        dialect.typed(params.push(SqlParam::Value(v.clone())), t)
    };
    let test = match &p.op {
        PredicateOp::Eq(v) => format!("{expr} = {}", value(v, params)?),
        PredicateOp::In(vs) if p.on_id() => {
            let list = vs
                .iter()
                .map(|v| id(v, params))
                .collect::<Result<Vec<_>>>()?;
            format!("{expr} IN ({})", list.join(", "))
        }
        PredicateOp::In(vs) => dialect.any_of(&expr, t, vs, params)?,
        PredicateOp::Range(lo, hi) => {
            let mut parts = Vec::new();
            match lo {
                Bound::Included(v) => parts.push(format!("{expr} >= {}", value(v, params)?)),
                Bound::Excluded(v) => parts.push(format!("{expr} > {}", value(v, params)?)),
                Bound::Unbounded => {}
            }
            match hi {
                Bound::Included(v) => parts.push(format!("{expr} <= {}", value(v, params)?)),
                Bound::Excluded(v) => parts.push(format!("{expr} < {}", value(v, params)?)),
                Bound::Unbounded => {}
            }
            if parts.is_empty() {
                format!("{expr} IS NOT NULL")
            } else {
                parts.join(" AND ")
            }
        }
        PredicateOp::Prefix(prefix) => {
            let lo = value(&IndexValue::String(prefix.clone()), params)?;
            match prefix_upper(prefix) {
                Some(upper) => format!(
                    "{expr} >= {lo} AND {expr} < {}",
                    value(&IndexValue::String(upper), params)?
                ),
                None => format!("{expr} >= {lo}"),
            }
        }
    };
    Ok(match side {
        None => test,
        Some(table) => format!("EXISTS (SELECT 1 FROM {table} s WHERE s.id = t.id AND {test})"),
    })
}

pub use stowage_core::backend::prefix_upper;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_upper_is_the_next_string_after_every_extension() {
        assert_eq!(prefix_upper("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper("\u{10FFFF}"), None);
        assert_eq!(prefix_upper(""), None);
        // The surrogate gap is skipped: U+D7FF is followed by U+E000.
        assert_eq!(prefix_upper("\u{D7FF}").as_deref(), Some("\u{E000}"));
    }
}

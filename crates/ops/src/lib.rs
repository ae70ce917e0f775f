//! Operations on whole stores, built on the public API of [`stowage_core`] only: copying
//! ([`copy_store`], [`copy_namespace`]), comparing and repairing two stores side by side
//! ([`compare_stores`], [`reconcile_stores`]), mirroring writes during a live migration
//! ([`MirrorLayer`]), checking bodies and indexes against records ([`check_store`]), and
//! purging records past their collection's retention rule ([`purge_retention`]).
//!
//! `stowage copy`, `backup`, `verify` and `purge` are these functions behind a command line;
//! `stowage serve` runs [`purge_retention`] in the background.
//!
//! # Decisions
//!
//! - **Copy** writes records exactly as they are ([`Collection::restore`](stowage_core::Collection::restore)),
//!   so ETags survive a copy or a restore; it resumes from a [`CopyCheckpoint`].
//! - **Retention** purges one instance at a time per namespace: a lease in the reserved
//!   namespace [`MAINTENANCE_NAMESPACE`].

#![deny(missing_docs)]

mod check;
mod copy;
mod mirror;
mod retention;

pub use check::{check_store, CheckReport, Finding};
pub use copy::{
    compare_stores, copy_namespace, copy_store, reconcile_stores, record_digest, Comparison,
    CopyCheckpoint, CopyReport, Overwrite, Selection,
};
pub use mirror::MirrorLayer;
pub use retention::{purge_retention, RetentionReport, LEASE, MAINTENANCE_NAMESPACE};
#[doc(hidden)]
pub use retention::{release_lease, take_lease};

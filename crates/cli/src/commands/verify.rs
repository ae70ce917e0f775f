//! `stowage verify`: check one store, or compare (and repair) two record by record.

use clap::Args;
use stowage::ops::{check_store, compare_stores, reconcile_stores, Selection};
use stowage::{Error, ErrorKind, Result, Store};

use crate::store::{builder, codec_config, open_url, CodecArgs, Create, SelectionArgs};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The store's URL.
    url: String,
    /// A second store to compare with, record by record.
    other: Option<String>,
    #[command(flatten)]
    selection: SelectionArgs,
    #[command(flatten)]
    codec: CodecArgs,
    /// With two stores: repair each record that differs from the first store's (never
    /// over a newer write), then report what differed.
    #[arg(long, requires = "other")]
    repair: bool,
    /// List at most this many problems (all are counted).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl VerifyArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let VerifyArgs {
            url,
            other,
            selection,
            codec,
            repair,
            limit,
            json,
        } = self;
        verify(
            &url,
            other.as_deref(),
            &selection,
            &codec,
            repair,
            limit,
            json,
        )
        .await
    }
}

/// Compares two stores and prints the differences; Conflict when there are any.
pub(super) async fn compare(
    src: &Store,
    dst: &Store,
    selection: &Selection,
    limit: usize,
    as_json: bool,
    repair: bool,
) -> Result<()> {
    let cmp = if repair {
        reconcile_stores(src, dst, selection, limit).await?
    } else {
        compare_stores(src, dst, selection, limit).await?
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&cmp).unwrap_or_default());
    } else {
        println!(
            "verify: {} records at the source, {} at the destination, {} differences",
            cmp.source_records, cmp.destination_records, cmp.difference_count
        );
        for d in &cmp.differences {
            println!(
                "  {}/{}/{}: {}",
                d.namespace,
                d.collection,
                d.id.as_deref().unwrap_or("*"),
                d.what
            );
        }
    }
    if repair && !cmp.agree() {
        println!("verify: repaired what differed; run verify again to see the two agree");
        return Ok(());
    }
    if cmp.agree() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Conflict,
            format!("the stores differ in {} places", cmp.difference_count),
        ))
    }
}

pub(crate) async fn verify(
    url: &str,
    other: Option<&str>,
    selection: &SelectionArgs,
    codec: &CodecArgs,
    repair: bool,
    limit: usize,
    as_json: bool,
) -> Result<()> {
    let selection = selection.selection();
    if let Some(other) = other {
        let src = open_url(url, codec, Create::No).await?;
        let dst = open_url(other, codec, Create::No).await?;
        return compare(&src, &dst, &selection, limit, as_json, repair).await;
    }
    // Bodies are checked as the engine stores them (frames and their checksums), records
    // and indexes through the codec; one engine under both (an embedded file opens once).
    let raw = builder(url, Create::No).open().await?;
    let config = codec_config(codec.keyring.as_deref(), codec.compress)?;
    let framed = config.is_some();
    let store = match config {
        Some(c) => Store::with_backend(std::sync::Arc::new(stowage::codec::CodecLayer::new(
            raw.backend().clone(),
            c,
        )?)),
        None => raw.clone(),
    };
    let report = check_store(&store, &raw, &selection, limit, |rec| {
        if framed {
            stowage::codec::check_frame(&rec.body)
        } else {
            None
        }
    })
    .await?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!(
            "verify: {} records and {} indexes checked, {} problems",
            report.records, report.indexes, report.finding_count
        );
        for f in &report.findings {
            println!(
                "  {}/{}/{}: {}",
                f.namespace,
                f.collection,
                f.id.as_deref().unwrap_or("*"),
                f.what
            );
        }
        for n in &report.not_checked {
            println!("  not checked: {n}");
        }
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Corrupted,
            format!("{} problems found", report.finding_count),
        ))
    }
}

//! `stowage copy`: every namespace and collection (or those named) into another store, resumable.

use std::path::PathBuf;

use clap::Args;
use stowage::ops::{copy_store, CopyCheckpoint, Overwrite, Selection};
use stowage::{Error, Result};

use super::verify::compare;
use crate::progress::{human_bytes, records_in, Meter};
use crate::store::{open_url, redacted, write_atomically, CodecArgs, Create, SelectionArgs};

#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// The source store's URL.
    source: String,
    /// The destination store's URL.
    destination: String,
    #[command(flatten)]
    selection: SelectionArgs,
    #[command(flatten)]
    codec: CodecArgs,
    /// Where progress is saved, and resumed from [default: ./stowage-copy.checkpoint].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Compare the two stores record by record afterwards (as `stowage verify SRC DST`).
    #[arg(long)]
    verify: bool,
    /// Leave a destination record that is as new as the source's or newer (the
    /// destination is being mirrored to: `serve --mirror-to`).
    #[arg(long)]
    keep_newer: bool,
}

impl CopyArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let CopyArgs {
            source,
            destination,
            selection,
            codec,
            checkpoint,
            verify,
            keep_newer,
        } = self;
        let overwrite = if keep_newer {
            Overwrite::Older
        } else {
            Overwrite::Always
        };
        copy(
            &source,
            &destination,
            &selection,
            &codec,
            checkpoint,
            verify,
            overwrite,
        )
        .await
    }
}

/// A copy's checkpoint file: where it is, and which copy it belongs to.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CopyCheckpointFile {
    source: String,
    destination: String,
    selection: Selection,
    at: CopyCheckpoint,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn copy(
    src_url: &str,
    dst_url: &str,
    selection: &SelectionArgs,
    codec: &CodecArgs,
    checkpoint: Option<PathBuf>,
    verify: bool,
    overwrite: Overwrite,
) -> Result<()> {
    let selection = selection.selection();
    let checkpoint = checkpoint.unwrap_or_else(|| PathBuf::from("stowage-copy.checkpoint"));
    let (source, destination) = (redacted(src_url), redacted(dst_url));
    let resume = match std::fs::read(&checkpoint) {
        Ok(bytes) => {
            let file: CopyCheckpointFile = serde_json::from_slice(&bytes).map_err(|e| {
                Error::invalid(format!(
                    "{} is not a copy checkpoint: {e}",
                    checkpoint.display()
                ))
            })?;
            if file.source != source
                || file.destination != destination
                || file.selection != selection
            {
                return Err(Error::invalid(format!(
                    "{} belongs to another copy ({} to {}): remove it, or give --checkpoint",
                    checkpoint.display(),
                    file.source,
                    file.destination
                )));
            }
            eprintln!(
                "copy: resuming after {}/{}/{} ({} records done)",
                file.at.namespace,
                file.at.collection,
                file.at.after.as_deref().unwrap_or(""),
                file.at.records
            );
            Some(file.at)
        }
        Err(_) => None,
    };
    let src = open_url(src_url, codec, Create::No).await?;
    let dst = open_url(dst_url, codec, Create::IfMissing).await?;
    let mut meter = Meter::new("copy", Some(records_in(&src, &selection).await?));
    let mut saved: Result<()> = Ok(());
    let report = copy_store(&src, &dst, &selection, overwrite, resume, |at| {
        meter.update(at.records, at.bytes);
        if saved.is_ok() {
            let file = CopyCheckpointFile {
                source: source.clone(),
                destination: destination.clone(),
                selection: selection.clone(),
                at: at.clone(),
            };
            saved = serde_json::to_vec(&file)
                .map_err(|e| Error::internal(e.to_string()))
                .and_then(|json| write_atomically(&checkpoint, &json));
        }
    })
    .await?;
    saved?;
    meter.finish(report.records, report.bytes);
    let _ = std::fs::remove_file(&checkpoint);
    println!(
        "copied {} collections, {} records ({}) from {} to {}",
        report.collections,
        report.records,
        human_bytes(report.bytes),
        source,
        destination
    );
    if report.kept_newer > 0 {
        println!(
            "{} records were newer at the destination and kept",
            report.kept_newer
        );
    }
    if verify {
        compare(&src, &dst, &selection, 20, false, false).await?;
    }
    Ok(())
}

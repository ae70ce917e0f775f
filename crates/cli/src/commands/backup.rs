//! `stowage backup`: a store (or the namespaces and collections named) into a portable archive.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use clap::Args;
use stowage::archive::{backup_store, Progress};
use stowage::{Error, Result};

use crate::progress::{human_bytes, records_in, Meter};
use crate::store::{open_url, CodecArgs, Create, SelectionArgs};

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The store's URL.
    url: String,
    /// The archive to write (replaced only once the backup is whole).
    file: PathBuf,
    #[command(flatten)]
    selection: SelectionArgs,
    #[command(flatten)]
    codec: CodecArgs,
}

impl BackupArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let BackupArgs {
            url,
            file,
            selection,
            codec,
        } = self;
        backup(&url, &file, &selection, &codec).await
    }
}

pub(crate) async fn backup(
    url: &str,
    file: &Path,
    selection: &SelectionArgs,
    codec: &CodecArgs,
) -> Result<()> {
    let selection = selection.selection();
    let store = open_url(url, codec, Create::No).await?;
    let mut meter = Meter::new("backup", Some(records_in(&store, &selection).await?));
    // Written beside the file and renamed over it: a failed backup leaves no archive.
    let temp = file.with_extension("partial");
    let out = std::fs::File::create(&temp)
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", temp.display())))?;
    let written = backup_store(&store, &selection, BufWriter::new(out), |p: Progress| {
        meter.update(p.records, p.bytes);
    })
    .await;
    let manifest = match written {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    std::fs::rename(&temp, file)
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", file.display())))?;
    let size = std::fs::metadata(file).map_or(0, |m| m.len());
    meter.finish(
        manifest.records(),
        manifest.collections.iter().map(|c| c.bytes).sum(),
    );
    println!(
        "backed up {} collections, {} records into {} ({}, sha256 {})",
        manifest.collections.len(),
        manifest.records(),
        file.display(),
        human_bytes(size),
        manifest.sha256
    );
    Ok(())
}

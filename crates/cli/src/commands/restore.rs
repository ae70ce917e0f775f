//! `stowage restore`: an archive into a store of any engine.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use clap::Args;
use stowage::archive::{restore_store, Progress};
use stowage::{Error, Result};

use crate::progress::Meter;
use crate::store::{open_url, CodecArgs, Create};

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The archive.
    file: PathBuf,
    /// The store's URL.
    url: String,
    #[command(flatten)]
    codec: CodecArgs,
}

impl RestoreArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let RestoreArgs { file, url, codec } = self;
        restore(&file, &url, &codec).await
    }
}

pub(crate) async fn restore(file: &Path, url: &str, codec: &CodecArgs) -> Result<()> {
    let open = || {
        std::fs::File::open(file)
            .map(BufReader::new)
            .map_err(|e| Error::invalid(format!("cannot read {}: {e}", file.display())))
    };
    let store = open_url(url, codec, Create::IfMissing).await?;
    let mut meter = Meter::new("restore", None);
    let manifest = restore_store(&store, open()?, |p: Progress| {
        meter.update(p.records, p.bytes);
    })
    .await?;
    meter.finish(
        manifest.records(),
        manifest.collections.iter().map(|c| c.bytes).sum(),
    );
    println!(
        "restored {} collections, {} records from {}",
        manifest.collections.len(),
        manifest.records(),
        file.display()
    );
    Ok(())
}

//! The operator commands: copy, verify, backup, restore, purge, stats, collections.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use stowage::archive::{backup_store, restore_store, Progress};
use stowage::ops::{
    check_store, compare_stores, copy_store, reconcile_stores, CopyCheckpoint, Overwrite, Selection,
};
use stowage::{Error, ErrorKind, Result, Store};

use crate::{codec_config, redacted, write_atomically, CodecArgs};

/// Which namespaces and collections a command covers.
#[derive(Debug, Args)]
pub(crate) struct SelectionArgs {
    /// Only this namespace (repeat for several) [default: all].
    #[arg(long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    /// Only collections of this name (repeat for several) [default: all].
    #[arg(long = "collection", value_name = "NAME")]
    collections: Vec<String>,
}

impl SelectionArgs {
    fn selection(&self) -> Selection {
        Selection {
            namespaces: self.namespaces.clone(),
            collections: self.collections.clone(),
        }
    }
}

/// Whether a command may make the store its URL names. Only commands that write what they
/// are given (`serve`, `put`, `restore`, the destination of `copy`) may; the others open
/// an existing store or fail with NotFound, so a mistyped path is never reported on as an
/// empty store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Open an existing store only.
    No,
    /// Make a new, empty store where there is none.
    IfMissing,
}

/// A store builder for a URL that creates the store only where `create` allows.
pub(crate) fn builder(url: &str, create: Create) -> stowage::StoreBuilder {
    Store::builder()
        .url(url)
        .create_if_missing(create == Create::IfMissing)
}

/// Opens a store by URL with the codec the flags ask for.
pub(crate) async fn open_url(url: &str, codec: &CodecArgs, create: Create) -> Result<Store> {
    let mut builder = builder(url, create);
    if let Some(c) = codec_config(codec.keyring.as_deref(), codec.compress)? {
        builder = builder.codec(c);
    }
    builder.open().await
}

/// Progress on stderr: a bar on a terminal, a plain line every few seconds otherwise.
struct Meter {
    bar: ProgressBar,
    started: Instant,
    last_line: Instant,
    what: &'static str,
}

impl Meter {
    fn new(what: &'static str, total: Option<u64>) -> Meter {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::no_length(),
        };
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} records, {prefix} ({per_sec}, ETA {eta})",
        ) {
            bar.set_style(style);
        }
        bar.set_message(what);
        Meter {
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
            what,
        }
    }

    fn update(&mut self, records: u64, bytes: u64) {
        self.bar.set_position(records);
        self.bar.set_prefix(human_bytes(bytes));
        // Not a terminal: the bar is hidden, so say where we are now and then.
        if self.bar.is_hidden() && self.last_line.elapsed() >= Duration::from_secs(2) {
            self.last_line = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "{}: {records} records, {} ({:.0} records/s)",
                self.what,
                human_bytes(bytes),
                records as f64 / secs
            );
        }
    }

    fn finish(self, records: u64, bytes: u64) {
        self.bar.finish_and_clear();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "{}: {records} records, {} in {secs:.1} s ({:.0} records/s)",
            self.what,
            human_bytes(bytes),
            records as f64 / secs
        );
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Records stored in the selected collections (expired ones not yet purged included): the
/// length of a progress bar.
async fn records_in(store: &Store, selection: &Selection) -> Result<u64> {
    let mut total = 0;
    for ns in selection.namespaces_of(store).await? {
        for s in store.namespace(&ns)?.stats().await? {
            if selection.collections.is_empty() || selection.collections.contains(&s.collection) {
                total += s.records;
            }
        }
    }
    Ok(total)
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

/// Compares two stores and prints the differences; Conflict when there are any.
async fn compare(
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
        meter.update(p.records, p.bytes)
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
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
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

pub(crate) async fn restore(file: &Path, url: &str, codec: &CodecArgs) -> Result<()> {
    let open = || {
        std::fs::File::open(file)
            .map(BufReader::new)
            .map_err(|e| Error::invalid(format!("cannot read {}: {e}", file.display())))
    };
    let store = open_url(url, codec, Create::IfMissing).await?;
    let mut meter = Meter::new("restore", None);
    let manifest = restore_store(&store, open()?, |p: Progress| {
        meter.update(p.records, p.bytes)
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

pub(crate) async fn purge(url: &str, codec: &CodecArgs) -> Result<()> {
    let store = open_url(url, codec, Create::No).await?;
    for ns in store.namespaces().await? {
        let s = store.namespace(&ns)?;
        let expired = s.purge_expired().await?;
        let kept = stowage::ops::purge_retention(&s).await?;
        let held = if kept.skipped {
            " (retention skipped: another instance is purging)"
        } else {
            ""
        };
        println!(
            "{ns}: {expired} expired and {} past retention purged{held}",
            kept.purged
        );
    }
    Ok(())
}

pub(crate) async fn stats(url: &str, codec: &CodecArgs, as_json: bool) -> Result<()> {
    let store = open_url(url, codec, Create::No).await?;
    let mut rows = Vec::new();
    for ns in store.namespaces().await? {
        let s = store.namespace(&ns)?;
        let specs = s.collections().await?;
        for c in s.stats().await? {
            let spec = specs
                .iter()
                .find(|(n, _)| *n == c.collection)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            let coll = s
                .existing_collection::<serde_json::Value>(&c.collection)
                .await?;
            let mut indexes = Vec::new();
            for ix in &spec.indexes {
                indexes.push(json!({"name": ix.name, "records": coll.indexed(&ix.name).await?}));
            }
            rows.push(json!({
                "namespace": ns, "collection": c.collection, "records": c.records,
                "bytes": c.bytes, "indexes": indexes,
            }));
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<24} {:>12} {:>12}  indexes (records held)",
        "namespace", "collection", "records", "bytes"
    );
    for r in &rows {
        let indexes: Vec<String> = r["indexes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| format!("{} {}", i["name"].as_str().unwrap_or(""), i["records"]))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{:<20} {:<24} {:>12} {:>12}  {}",
            r["namespace"].as_str().unwrap_or(""),
            r["collection"].as_str().unwrap_or(""),
            r["records"],
            human_bytes(r["bytes"].as_u64().unwrap_or(0)),
            indexes.join(", ")
        );
    }
    Ok(())
}

pub(crate) async fn collections(url: &str, codec: &CodecArgs, as_json: bool) -> Result<()> {
    let store = open_url(url, codec, Create::No).await?;
    let mut rows = Vec::new();
    for ns in store.namespaces().await? {
        for (name, spec) in store.namespace(&ns)?.collections().await? {
            rows.push(json!({"namespace": ns, "collection": name, "spec": spec}));
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        for r in &rows {
            println!(
                "{}/{}\t{}",
                r["namespace"].as_str().unwrap_or(""),
                r["collection"].as_str().unwrap_or(""),
                r["spec"]
            );
        }
    }
    Ok(())
}

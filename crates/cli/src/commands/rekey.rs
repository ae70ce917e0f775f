//! `stowage rekey`: every record rewritten under the key ring's newest key, resumable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use stowage::codec::{keys_in_use, RekeyCheckpoint};
use stowage::{CodecConfig, KeyRing, Result};

use crate::store::{builder, write_atomically, Create};
use crate::DEFAULT_URL;

#[derive(Debug, Args)]
pub(crate) struct RekeyArgs {
    /// The store's URL.
    #[arg(long, env = "STOWAGE_URL", default_value = DEFAULT_URL)]
    url: String,
    /// The key-ring file.
    #[arg(long, env = "STOWAGE_KEYRING")]
    keyring: PathBuf,
    /// Where progress is saved [default: the key ring's path with `.rekey` added].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

impl RekeyArgs {
    pub(crate) async fn run(self) -> Result<()> {
        let RekeyArgs {
            url,
            keyring,
            checkpoint,
        } = self;
        rekey(&url, &keyring, checkpoint).await
    }
}

async fn rekey(url: &str, keyring: &Path, checkpoint: Option<PathBuf>) -> Result<()> {
    let ring = KeyRing::load(keyring)?;
    let checkpoint = checkpoint.unwrap_or_else(|| {
        let mut p = keyring.as_os_str().to_owned();
        p.push(".rekey");
        PathBuf::from(p)
    });
    let resume: Option<RekeyCheckpoint> = match std::fs::read(&checkpoint) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            stowage::Error::invalid(format!(
                "{} is not a rekey checkpoint: {e}",
                checkpoint.display()
            ))
        })?),
        Err(_) => None,
    };
    if let Some(at) = &resume {
        eprintln!(
            "rekey: resuming after {}/{}/{} ({} records done)",
            at.namespace,
            at.collection,
            at.after.as_deref().unwrap_or(""),
            at.records + at.changed_meanwhile
        );
    }
    // The engine itself: the rekey puts its own codec layer over it.
    let engine = builder(url, Create::No).open().await?.backend().clone();
    let mut saved: Result<()> = Ok(());
    let mut last_line = std::time::Instant::now();
    let report = stowage::codec::rekey(
        engine.clone(),
        CodecConfig::new().encrypt(ring),
        resume,
        |at| {
            if saved.is_ok() {
                saved = serde_json::to_vec(at)
                    .map_err(|e| stowage::Error::internal(e.to_string()))
                    .and_then(|json| write_atomically(&checkpoint, &json));
            }
            if last_line.elapsed() >= Duration::from_secs(1) {
                last_line = std::time::Instant::now();
                eprintln!(
                    "rekey: {} records rewritten, now in {}/{}",
                    at.records, at.namespace, at.collection
                );
            }
        },
    )
    .await?;
    saved?;
    let _ = std::fs::remove_file(&checkpoint);
    println!(
        "rekey: {} records rewritten under key {} ({} changed by other writers meanwhile)",
        report.records, report.key, report.changed_meanwhile
    );
    let usage = keys_in_use(&engine).await?;
    let older: Vec<String> = usage
        .iter()
        .filter(|(k, _)| **k != report.key)
        .map(|(k, n)| match k {
            0 => format!("{n} unsealed"),
            k => format!("{n} under key {k}"),
        })
        .collect();
    if older.is_empty() {
        println!(
            "every record is sealed with key {}: older keys can be retired (stowage keyring retire)",
            report.key
        );
        Ok(())
    } else {
        Err(stowage::Error::new(
            stowage::ErrorKind::Conflict,
            format!(
                "records still sealed otherwise: {} (an instance with an older ring is writing?); \
                 run stowage rekey again",
                older.join(", ")
            ),
        ))
    }
}

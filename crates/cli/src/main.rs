//! The `stowage` command: one file per command in `commands/` (its arguments and what it
//! does), what they share in `store.rs` and `progress.rs`, `serve`'s configuration in
//! `config.rs`.

mod commands;
mod config;
mod progress;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stowage::Result;

use crate::commands::{
    backup, collections, copy, get, hash_token, keyring, purge, put, query, rekey, restore, serve,
    shred, stats, verify,
};
pub(crate) use crate::config::DEFAULT_URL;

/// Stowage: durable, indexed, versioned records for services.
#[derive(Debug, Parser)]
#[command(name = "stowage", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (default: redb://./stowage-data/stowage.redb on 127.0.0.1:7070).
    Serve(serve::ServeArgs),
    /// Print records and bytes per collection of a store, and the records each index holds.
    Stats(stats::StatsArgs),
    /// List every collection of a store with its spec.
    Collections(collections::CollectionsArgs),
    /// Copy every namespace and collection (or those named) into another store, of any
    /// engine: specs, then records with their versions, times and TTLs; resumes from its
    /// checkpoint file after an interruption.
    Copy(copy::CopyArgs),
    /// Check a store (record checksums, indexes against records both ways, no expired
    /// record indexed as live), or with two URLs compare two stores record by record;
    /// exits non-zero and lists what is wrong.
    Verify(verify::VerifyArgs),
    /// Write a store (or the namespaces and collections named) into a portable archive.
    Backup(backup::BackupArgs),
    /// Restore an archive into a store of any engine (it must not hold the archive's
    /// collections yet); a damaged archive is refused before anything is written.
    Restore(restore::RestoreArgs),
    /// Purge expired records and records past their collection's retention, once.
    Purge(purge::PurgeArgs),
    /// Print one record as JSON.
    Get(get::GetArgs),
    /// Write one record (JSON body) and print its new version.
    Put(put::PutArgs),
    /// Run a query (JSON, as POST /query takes it) and print the page.
    Query(query::QueryArgs),
    /// Print the SHA-256 of a token, as the configuration's tokens hold it.
    HashToken(hash_token::HashTokenArgs),
    /// Make, rotate and retire the keys of a key-ring file.
    #[command(subcommand)]
    Keyring(keyring::KeyringCommand),
    /// Rewrite every record under the key ring's newest key (versions, times, TTLs and ETags
    /// kept); resumes from its checkpoint file after an interruption.
    Rekey(rekey::RekeyArgs),
    /// Destroy a namespace's data keys, so none of its encrypted records can be read again
    /// — here or in any copy of them — then drop its collections.
    Shred(shred::ShredArgs),
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Stats(c) => c.run().await,
        Command::Collections(c) => c.run().await,
        Command::Copy(c) => c.run().await,
        Command::Verify(c) => c.run().await,
        Command::Backup(c) => c.run().await,
        Command::Restore(c) => c.run().await,
        Command::Purge(c) => c.run().await,
        Command::Get(c) => c.run().await,
        Command::Put(c) => c.run().await,
        Command::Query(c) => c.run().await,
        Command::HashToken(c) => {
            c.run();
            Ok(())
        }
        Command::Keyring(c) => c.run(),
        Command::Rekey(c) => c.run().await,
        Command::Shred(c) => c.run().await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stowage: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `stowage keyring`: make, rotate and retire the keys of a key-ring file.

use std::path::PathBuf;

use clap::Subcommand;
use stowage::{KeyRing, Result};

#[derive(Debug, Subcommand)]
pub(crate) enum KeyringCommand {
    /// Create a key-ring file holding one new key (never overwrites a file).
    New {
        /// The file to create (written with mode 0600).
        file: PathBuf,
    },
    /// Add a new key: writes are sealed with it from the next start on.
    Rotate {
        /// The key-ring file.
        file: PathBuf,
    },
    /// Remove a key no record needs any more (after `stowage rekey`).
    Retire {
        /// The key-ring file.
        file: PathBuf,
        /// The key's id.
        id: u32,
    },
    /// Print the ids of the keys in a ring (never the keys).
    List {
        /// The key-ring file.
        file: PathBuf,
    },
}

impl KeyringCommand {
    pub(crate) fn run(self) -> Result<()> {
        match self {
            KeyringCommand::New { file } => {
                KeyRing::create(&file)?;
                println!("created {} with key 1", file.display());
            }
            KeyringCommand::Rotate { file } => {
                let mut ring = KeyRing::load(&file)?;
                let id = ring.rotate();
                ring.save(&file)?;
                println!(
                "key {id} added to {}: restart every instance with it, then run `stowage rekey` \
                 to move older records onto it",
                file.display()
            );
            }
            KeyringCommand::Retire { file, id } => {
                let mut ring = KeyRing::load(&file)?;
                if ring.newest_id() == Some(id) {
                    return Err(stowage::Error::invalid(format!(
                        "key {id} is the newest: new writes are sealed with it (rotate first)"
                    )));
                }
                if !ring.retire(id) {
                    return Err(stowage::Error::not_found("key ring", &id.to_string()));
                }
                ring.save(&file)?;
                println!("key {id} retired from {}", file.display());
            }
            KeyringCommand::List { file } => {
                let ring = KeyRing::load(&file)?;
                for id in ring.ids() {
                    let newest = if ring.newest_id() == Some(id) {
                        " (newest: seals new writes)"
                    } else {
                        ""
                    };
                    println!("key {id}{newest}");
                }
            }
        }
        Ok(())
    }
}

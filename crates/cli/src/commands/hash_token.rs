//! `stowage hash-token`: the SHA-256 of a token, as the configuration holds it.

use clap::Args;
use stowage::Result;

#[derive(Debug, Args)]
pub(crate) struct HashTokenArgs {
    /// The token.
    token: String,
}

impl HashTokenArgs {
    pub(crate) async fn run(self) -> Result<()> {
        println!("{}", stowage_server::hash_token(&self.token));
        Ok(())
    }
}

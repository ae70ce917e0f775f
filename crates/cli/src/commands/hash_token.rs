//! `stowage hash-token`: the SHA-256 of a token, as the configuration holds it.

use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct HashTokenArgs {
    /// The token.
    token: String,
}

impl HashTokenArgs {
    pub(crate) fn run(self) {
        println!("{}", stowage_server::hash_token(&self.token));
    }
}

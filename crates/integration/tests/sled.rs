//! The conformance suite and the property test against real sled databases: on the engine
//! and under two pass-through layers.

use std::sync::Arc;

use stowage_core::backend::Backend;
use stowage_sled::{SledBackend, SledConfig};
use stowage_testkit::{suite, FileFixture, Layered};

fn folders() -> FileFixture {
    FileFixture::new("sled", |path| {
        Ok(Arc::new(SledBackend::open(SledConfig::new(path))?) as Arc<dyn Backend>)
    })
}

fn main() {
    let mut trials = suite("", folders);
    trials.extend(suite("layered", || Layered(folders())));
    stowage_testkit::main(trials);
}

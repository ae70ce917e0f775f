//! The conformance suite and the property test against real redb files: on the engine,
//! under two pass-through layers, and through the codec (compressed and sealed).

use std::sync::Arc;

use stowage_codec::testkit::sealed;
use stowage_core::backend::Backend;
use stowage_redb::{RedbBackend, RedbConfig};
use stowage_testkit::{suite, FileFixture, Layered};

fn files() -> FileFixture {
    FileFixture::new("redb", |path| {
        Ok(Arc::new(RedbBackend::open(RedbConfig::new(path))?) as Arc<dyn Backend>)
    })
}

fn main() {
    let mut trials = suite("", files);
    trials.extend(suite("layered", || Layered(files())));
    trials.extend(suite("sealed", || sealed(files())));
    stowage_testkit::main(trials);
}

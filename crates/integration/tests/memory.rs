//! The conformance suite on the memory engine: claiming everything, claiming little,
//! claiming batches within a collection of at most 16 ops; under two pass-through layers,
//! under the layers `stowage serve` stacks (metrics, then tracing), through the codec
//! (compressed and sealed) and through the near cache.

use std::sync::Arc;

use stowage_cache::testkit::cached;
use stowage_codec::testkit::sealed;
use stowage_core::backend::Backend;
use stowage_core::layer::{MetricsLayer, TracingLayer};
use stowage_core::{BatchScope, Capabilities, MemoryBackend};
use stowage_testkit::{suite, Layered, MemoryFixture, Wrapped};

/// Claims almost nothing, so every "unclaimed means Unsupported" path runs too.
fn restricted() -> MemoryFixture {
    let mut caps = Capabilities::default();
    caps.max_body_bytes = 1 << 20;
    MemoryFixture::with_capabilities(caps)
}

/// Batches atomic within one collection only and at most 16 ops long, as a Redis Cluster
/// hash slot allows.
fn collection_batches() -> MemoryFixture {
    let mut caps = MemoryBackend::full_capabilities();
    caps.batch_scope = BatchScope::Collection;
    caps.max_batch_ops = Some(16);
    MemoryFixture::with_capabilities(caps)
}

/// Under the layers `stowage serve` stacks.
fn observed() -> Wrapped<MemoryFixture> {
    Wrapped::new(MemoryFixture::new(), |b: Arc<dyn Backend>| {
        Ok(Arc::new(TracingLayer::new(Arc::new(MetricsLayer::new(b)))) as Arc<dyn Backend>)
    })
}

fn main() {
    let mut trials = suite("", MemoryFixture::new);
    trials.extend(suite("restricted", restricted));
    trials.extend(suite("collection_batches", collection_batches));
    trials.extend(suite("observed", observed));
    trials.extend(suite("layered", || Layered(MemoryFixture::new())));
    trials.extend(suite("sealed", || sealed(MemoryFixture::new())));
    trials.extend(suite("cached", || cached(MemoryFixture::new())));
    stowage_testkit::main(trials);
}

//! The conformance suite on the memory backend: claiming everything, claiming little,
//! claiming batches within a collection of at most 16 ops, and under two pass-through layers.

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used)]

use stowage_testkit::MemoryFixture;

stowage_testkit::conformance_tests!(MemoryFixture::new());

/// The same suite against a memory backend that claims almost nothing, so every
/// "unclaimed means Unsupported" path runs too.
mod restricted {
    use stowage_core::Capabilities;
    use stowage_testkit::MemoryFixture;

    fn fixture() -> MemoryFixture {
        let mut caps = Capabilities::default();
        caps.max_body_bytes = 1 << 20;
        MemoryFixture::with_capabilities(caps)
    }

    stowage_testkit::conformance_tests!(fixture());
}

/// Batches atomic within one collection only and at most 16 ops long, as a Redis Cluster
/// hash slot allows.
mod collection_batches {
    use stowage_core::{BatchScope, MemoryBackend};
    use stowage_testkit::MemoryFixture;

    fn fixture() -> MemoryFixture {
        let mut caps = MemoryBackend::full_capabilities();
        caps.batch_scope = BatchScope::Collection;
        caps.max_batch_ops = Some(16);
        MemoryFixture::with_capabilities(caps)
    }

    stowage_testkit::conformance_tests!(fixture());
}

/// The suite over the layers `stowage serve` stacks: metrics, then tracing.
mod observed {
    use std::sync::Arc;

    use async_trait::async_trait;
    use stowage_core::backend::Backend;
    use stowage_core::layer::{MetricsLayer, TracingLayer};
    use stowage_core::Result;
    use stowage_testkit::{Fixture, MemoryFixture};

    struct Observed(MemoryFixture);

    fn wrap(b: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(TracingLayer::new(Arc::new(MetricsLayer::new(b))))
    }

    #[async_trait]
    impl Fixture for Observed {
        async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
            let (b, location) = self.0.create().await?;
            Ok((wrap(b), location))
        }
        async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
            Ok(wrap(self.0.open(location).await?))
        }
    }

    stowage_testkit::conformance_tests!(Observed(MemoryFixture::new()));
}

/// The suite over two stacked pass-through layers: a layer that dropped or changed a call
/// would fail it.
mod layered {
    use stowage_testkit::{Layered, MemoryFixture};

    stowage_testkit::conformance_tests!(Layered(MemoryFixture::new()));
}

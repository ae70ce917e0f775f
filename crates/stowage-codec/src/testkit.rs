//! The conformance suite through the codec layer (feature `testkit`): [`Sealed`] wraps any
//! engine's fixture so every store the suite makes compresses (from 16 bytes, so nearly
//! every body) and encrypts.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use parking_lot::Mutex;
use stowage_core::backend::Backend;
use stowage_core::testkit::Fixture;
use stowage_core::Result;

use crate::{CodecConfig, CodecLayer, KeyRing};

/// `F`'s stores, each behind a codec layer that compresses and seals with one key ring.
#[derive(Debug)]
pub struct Sealed<F> {
    inner: F,
    ring: KeyRing,
    /// The engine under each wrapped store, by location: a second instance is opened
    /// from the engine, not from the wrapped store (which would seal twice). Weak: the
    /// suite drops every handle before reopening, and an embedded engine has one owner.
    engines: Mutex<HashMap<String, Weak<dyn Backend>>>,
}

impl<F> Sealed<F> {
    /// `inner`'s stores, sealed with a fresh key ring.
    pub fn new(inner: F) -> Self {
        Sealed {
            inner,
            ring: KeyRing::generate(),
            engines: Mutex::new(HashMap::new()),
        }
    }

    fn wrap(&self, location: &str, engine: Arc<dyn Backend>) -> Result<Arc<dyn Backend>> {
        self.engines
            .lock()
            .insert(location.to_owned(), Arc::downgrade(&engine));
        let config = CodecConfig::new()
            .compress_from(16)
            .encrypt(self.ring.clone());
        Ok(Arc::new(CodecLayer::new(engine, config)?))
    }
}

#[async_trait]
impl<F: Fixture> Fixture for Sealed<F> {
    async fn create(&self) -> Result<(Arc<dyn Backend>, String)> {
        let (engine, location) = self.inner.create().await?;
        Ok((self.wrap(&location, engine)?, location))
    }

    async fn open(&self, location: &str) -> Result<Arc<dyn Backend>> {
        let engine = self.inner.open(location).await?;
        self.wrap(location, engine)
    }

    async fn open_second(
        &self,
        location: &str,
        first: &Arc<dyn Backend>,
    ) -> Result<Arc<dyn Backend>> {
        let engine = self.engines.lock().get(location).and_then(Weak::upgrade);
        let Some(engine) = engine else {
            return Ok(first.clone());
        };
        let second = self.inner.open_second(location, &engine).await?;
        if Arc::ptr_eq(&second, &engine) {
            // An embedded engine has one owner: the second instance shares the first.
            return Ok(first.clone());
        }
        let config = CodecConfig::new()
            .compress_from(16)
            .encrypt(self.ring.clone());
        Ok(Arc::new(CodecLayer::new(second, config)?))
    }
}

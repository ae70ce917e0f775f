//! The whole conformance suite and the property test against a three-master Redis Cluster
//! of `redis-server` processes this test binary starts on high ports of 127.0.0.1 (in a
//! temporary directory; they die with the binary, however it ends). Every key of a
//! namespace carries one hash tag, so each namespace lives in one slot and its batches stay
//! atomic; the suite's namespaces spread over the three masters.

use std::sync::OnceLock;

use stowage_redis::testkit::PrivateCluster;

mod support;

static CLUSTER: OnceLock<PrivateCluster> = OnceLock::new();

fn cluster() -> support::RedisFixture {
    let cluster = CLUSTER.get_or_init(|| {
        PrivateCluster::start(3)
            .unwrap_or_else(|e| panic!("a private three-master Redis Cluster must start: {e}"))
    });
    support::RedisFixture::cluster(cluster.addresses())
}

stowage_testkit::conformance_tests!(super::super::cluster());

//! The whole conformance suite and the property test against a three-master Redis Cluster
//! of `redis-server` processes this test binary starts on high ports of 127.0.0.1 (in a
//! temporary directory; they die with the binary, however it ends). Every key of a
//! namespace carries one hash tag, so each namespace lives in one slot and its batches stay
//! atomic; the suite's namespaces spread over the three masters.
//!
//! A cluster takes seconds to start, and nextest runs every listed test in a process of its
//! own: the suite is listed as one test, `conformance`, that runs every suite test on one
//! cluster in this process and names each that fails (`--nocapture` shows them all).

use std::sync::OnceLock;

use stowage_redis::testkit::{PrivateCluster, RedisFixture};
use stowage_testkit::{in_one_process, suite};

static CLUSTER: OnceLock<PrivateCluster> = OnceLock::new();

fn cluster() -> RedisFixture {
    let cluster = CLUSTER.get_or_init(|| {
        PrivateCluster::start(3)
            .unwrap_or_else(|e| panic!("a private three-master Redis Cluster must start: {e}"))
    });
    RedisFixture::cluster(cluster.addresses())
}

fn main() {
    stowage_testkit::main(vec![in_one_process(
        "conformance",
        suite("cluster", cluster),
        2,
    )]);
}

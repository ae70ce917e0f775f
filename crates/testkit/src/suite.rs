//! The registry of suite tests and the runner a backend's test binary calls.
//!
//! Each group file ends with `const TESTS`, the list of its test functions. The functions
//! are private and the crate denies dead code, so a test written but not listed fails the
//! build, and a name listed but not written does not resolve: the list cannot miss a test,
//! however the test is formatted. [`GROUPS`] lists the groups the same way (a group left out
//! leaves its `TESTS` dead).
//!
//! The runner is [libtest-mimic]: a test binary with `harness = false` hands [`main`] the
//! suites it runs, and every test becomes one trial named `PREFIX::conformance::GROUP::TEST`
//! that `cargo test` and `cargo nextest` list, filter and run like a `#[test]`.
//!
//! [libtest-mimic]: https://docs.rs/libtest-mimic

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};

use crate::Fixture;

/// A suite test's body: an async function of the fixture.
type TestFn = fn(Arc<dyn Fixture>) -> Pin<Box<dyn Future<Output = ()>>>;

/// One suite test: its name and its body, run against a fixture.
#[derive(Clone, Copy)]
pub struct Test {
    /// The test function's name.
    pub name: &'static str,
    run: TestFn,
}

impl std::fmt::Debug for Test {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Test {
    #[doc(hidden)]
    pub const fn new(name: &'static str, run: TestFn) -> Self {
        Test { name, run }
    }

    /// Runs the test against `fixture` on a fresh multi-threaded runtime.
    pub fn run(&self, fixture: Arc<dyn Fixture>) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on((self.run)(fixture));
    }
}

/// Lists a group's test functions as [`Test`]s.
#[doc(hidden)]
#[macro_export]
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        &[$($crate::suite::Test::new(stringify!($name), |f| Box::pin($name(f)))),*]
    };
}

/// Every group of the suite with its tests.
pub const GROUPS: &[(&str, &[Test])] = &[
    ("crud", crate::crud::TESTS),
    ("versions", crate::versions::TESTS),
    ("ttl", crate::ttl::TESTS),
    ("indexes", crate::indexes::TESTS),
    ("covering", crate::covering::TESTS),
    ("query", crate::query::TESTS),
    ("scan", crate::scan::TESTS),
    ("batch", crate::batch::TESTS),
    ("values", crate::values::TESTS),
    ("catalog", crate::catalog::TESTS),
    ("instances", crate::instances::TESTS),
    ("transactions", crate::transactions::TESTS),
    ("copy", crate::copy::TESTS),
    ("retention", crate::retention::TESTS),
    ("watch", crate::watch::TESTS),
    ("invalid", crate::invalid::TESTS),
    ("capabilities", crate::capabilities::TESTS),
    ("mutations", crate::mutations::TESTS),
    ("property", crate::property::TESTS),
];

/// The suite test `GROUP::TEST`, to run one test on its own (against a fixture the whole
/// suite does not use). Panics naming `path` if the suite has no such test.
pub fn find(path: &str) -> Test {
    let (group, name) = path.split_once("::").unwrap_or(("", path));
    GROUPS
        .iter()
        .filter(|(g, _)| *g == group)
        .flat_map(|(_, tests)| tests.iter())
        .find(|t| t.name == name)
        .copied()
        .unwrap_or_else(|| panic!("the suite has no test {path}"))
}

/// The whole suite as trials named `PREFIX::conformance::GROUP::TEST` (no prefix:
/// `conformance::GROUP::TEST`), each against a fixture `fixture` makes for it.
pub fn suite<F: Fixture>(
    prefix: &str,
    fixture: impl Fn() -> F + Send + Sync + Clone + 'static,
) -> Vec<Trial> {
    let base = match prefix {
        "" => "conformance".to_owned(),
        p => format!("{p}::conformance"),
    };
    GROUPS
        .iter()
        .flat_map(|(group, tests)| tests.iter().map(move |t| (*group, *t)))
        .map(|(group, test)| {
            let fixture = fixture.clone();
            Trial::test(format!("{base}::{group}::{}", test.name), move || {
                test.run(Arc::new(fixture()));
                Ok(())
            })
        })
        .collect()
}

/// Runs `trials` with the command line's arguments (filters, `--list`, `--exact`,
/// `--test-threads`), as `cargo test` and `cargo nextest` call a test binary, and exits.
pub fn main(trials: Vec<Trial>) -> ! {
    libtest_mimic::run(&Arguments::from_args(), trials).exit()
}

/// One trial that runs every trial of `trials` in this process, `threads` at a time, and
/// fails naming those that failed: for a suite whose fixture is costly to start per process
/// (a private Redis Cluster), since nextest runs each listed trial in a process of its own.
pub fn in_one_process(name: &str, trials: Vec<Trial>, threads: usize) -> Trial {
    Trial::test(name, move || {
        let args = Arguments {
            test_threads: Some(threads),
            ..Arguments::default()
        };
        let conclusion = libtest_mimic::run(&args, trials);
        if conclusion.has_failed() {
            return Err(Failed::from(format!(
                "{} of {} suite tests failed (listed above)",
                conclusion.num_failed,
                conclusion.num_passed + conclusion.num_failed
            )));
        }
        Ok(())
    })
}

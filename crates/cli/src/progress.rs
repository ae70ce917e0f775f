//! Progress on stderr for long commands: a bar on a terminal, a plain line every few seconds
//! otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use stowage::ops::Selection;
use stowage::{Result, Store};

/// Progress on stderr: a bar on a terminal, a plain line every few seconds otherwise.
pub(crate) struct Meter {
    bar: ProgressBar,
    started: Instant,
    last_line: Instant,
    what: &'static str,
}

impl Meter {
    pub(crate) fn new(what: &'static str, total: Option<u64>) -> Meter {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::no_length(),
        };
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} records, {prefix} ({per_sec}, ETA {eta})",
        ) {
            bar.set_style(style);
        }
        bar.set_message(what);
        Meter {
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
            what,
        }
    }

    pub(crate) fn update(&mut self, records: u64, bytes: u64) {
        self.bar.set_position(records);
        self.bar.set_prefix(human_bytes(bytes));
        // Not a terminal: the bar is hidden, so say where we are now and then.
        if self.bar.is_hidden() && self.last_line.elapsed() >= Duration::from_secs(2) {
            self.last_line = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "{}: {records} records, {} ({:.0} records/s)",
                self.what,
                human_bytes(bytes),
                records as f64 / secs
            );
        }
    }

    pub(crate) fn finish(self, records: u64, bytes: u64) {
        self.bar.finish_and_clear();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "{}: {records} records, {} in {secs:.1} s ({:.0} records/s)",
            self.what,
            human_bytes(bytes),
            records as f64 / secs
        );
    }
}

pub(crate) fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Records stored in the selected collections (expired ones not yet purged included): the
/// length of a progress bar.
pub(crate) async fn records_in(store: &Store, selection: &Selection) -> Result<u64> {
    let mut total = 0;
    for ns in selection.namespaces_of(store).await? {
        for s in store.namespace(&ns)?.stats().await? {
            if selection.collections.is_empty() || selection.collections.contains(&s.collection) {
                total += s.records;
            }
        }
    }
    Ok(total)
}

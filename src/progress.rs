//! Progress for long copies: a byte bar with rate and ETA on a terminal, plain lines
//! (one per image, and one every 10% of bytes) when stderr is a pipe or a log file. The
//! total is what the copy says it will send (bytes mounted or already there are not in it),
//! so the count ends exactly at the total.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::copy::{CopyJob, CopyObserver};

pub struct Progress {
    verb: &'static str,
    bar: Option<ProgressBar>,
    quiet: bool,
    total: AtomicU64,
    done: AtomicU64,
    last_decile: Mutex<u64>,
}

impl Progress {
    /// `verb` says what happens to each image ("pushed", "exported").
    pub fn new(verb: &'static str, total_bytes: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            bar
        });
        Progress {
            verb,
            bar,
            quiet,
            total: AtomicU64::new(total_bytes),
            done: AtomicU64::new(0),
            last_decile: Mutex::new(0),
        }
    }

    /// A line that does not tear the bar.
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress {
    /// In plain mode, one line each time another tenth of the total is done.
    fn report(&self) {
        if self.quiet || self.bar.is_some() {
            return;
        }
        let mut last = self.last_decile.lock().expect("progress lock");
        let (done, total) = (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        );
        if total == 0 {
            return;
        }
        let decile = (done.min(total) * 10 / total).min(10);
        if decile > *last {
            *last = decile;
            eprintln!(
                "{}% ({} of {})",
                decile * 10,
                human_bytes(done),
                human_bytes(total)
            );
        }
    }
}

impl CopyObserver for Progress {
    fn to_send(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
        self.report();
    }

    fn bytes(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        match &self.bar {
            Some(bar) => bar.inc(n),
            None => self.report(),
        }
    }

    fn image_done(&self, job: &CopyJob, skipped: bool) {
        if skipped {
            self.println(&format!("up to date {}", job.target));
        } else if job.target == job.image.source {
            self.println(&format!("{} {}", self.verb, job.image.source));
        } else {
            self.println(&format!(
                "{} {} -> {}",
                self.verb, job.image.source, job.target
            ));
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

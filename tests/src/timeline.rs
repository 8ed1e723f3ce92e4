//! A timeline of what a long test did (faults, recoveries), with the time since the
//! start, to print when it fails.

use std::sync::Mutex;
use std::time::Instant;

pub struct Timeline {
    start: Instant,
    events: Mutex<Vec<String>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
        }
    }
}

impl Timeline {
    pub fn log(&self, what: impl Into<String>) {
        let line = format!(
            "{:>7.2}s {}",
            self.start.elapsed().as_secs_f64(),
            what.into()
        );
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    pub fn dump(&self) -> String {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

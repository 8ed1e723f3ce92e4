//! `process` check: the pid in `pid_file` must exist and not be stopped (a SIGSTOPped
//! storage process serves nothing, so state `T` fails).

use super::Outcome;
use crate::procfile::{read_small, ProcFile};
use std::path::Path;
use std::sync::Mutex;

/// `/proc/<pid>/stat` of the pid last read from the pid file, kept open across runs.
/// The pid file itself is read afresh every run: the node may have been restarted.
#[derive(Debug, Default)]
pub struct StatFile(Mutex<Option<(i32, ProcFile)>>);

pub fn probe(pid_file: &Path, stat_file: &StatFile) -> Outcome {
    let text = match read_small(pid_file) {
        Ok(t) => t,
        Err(e) => {
            return Outcome::fail(format!(
                "{}: {}",
                pid_file.display(),
                super::describe_io(&e)
            ))
        }
    };
    let pid: i32 = match text.trim().parse() {
        Ok(p) if p > 0 => p,
        _ => {
            return Outcome::fail(format!(
                "{}: no pid in {:?}",
                pid_file.display(),
                text.trim()
            ))
        }
    };
    let stat = {
        let mut kept = stat_file.0.lock().expect("stat file lock");
        if kept.as_ref().is_none_or(|(known, _)| *known != pid) {
            *kept = Some((pid, ProcFile::new(format!("/proc/{pid}/stat"))));
        }
        let (_, file) = kept.as_mut().expect("set above");
        match file.read() {
            Ok(s) => s,
            Err(_) => return Outcome::fail(format!("pid {pid} is not running")),
        }
    };
    match stat_state(&stat) {
        Some('T') | Some('t') => Outcome::fail(format!("pid {pid} is stopped (SIGSTOP)")),
        Some('Z') | Some('X') | Some('x') => {
            Outcome::fail(format!("pid {pid} is not running (zombie)"))
        }
        Some(state) => Outcome::pass(format!("pid {pid} running (state {state})")),
        None => Outcome::fail(format!("pid {pid}: unreadable /proc stat")),
    }
}

/// The state letter of `/proc/<pid>/stat`: the field after the `(comm)` that may
/// itself contain spaces and parentheses.
fn stat_state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::stat_state;

    #[test]
    fn parses_state_after_comm() {
        let cases = [
            ("123 (torua-node) S 1 2 3", Some('S')),
            ("123 (a) b) T 1", Some('T')),
            ("123 (x", None),
        ];
        for (stat, want) in cases {
            assert_eq!(stat_state(stat), want, "{stat}");
        }
    }
}

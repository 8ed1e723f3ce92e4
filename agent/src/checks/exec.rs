//! `exec` check: run a command; exit 0 passes, 1 warns, anything else fails. The
//! child is killed when the run is dropped (on timeout or shutdown).

use super::{describe_io, Outcome};
use std::process::Stdio;

/// Characters of the command's first output line kept in the message.
const MAX_OUTPUT: usize = 200;

pub async fn probe(argv: &[String]) -> Outcome {
    let output = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await;
    let output = match output {
        Ok(o) => o,
        Err(e) => return Outcome::fail(format!("cannot run {:?}: {}", argv[0], describe_io(&e))),
    };
    let first_line = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| l.chars().take(MAX_OUTPUT).collect::<String>())
    };
    let said = first_line(&output.stdout).or_else(|| first_line(&output.stderr));
    let with_output = |head: String| match &said {
        Some(line) => format!("{head}: {line}"),
        None => head,
    };
    match output.status.code() {
        Some(0) => Outcome::pass(with_output("exit status 0".into())),
        Some(1) => Outcome::warn(with_output("exit status 1".into())),
        Some(code) => Outcome::fail(with_output(format!("exit status {code}"))),
        None => {
            use std::os::unix::process::ExitStatusExt;
            let sig = output.status.signal().unwrap_or(0);
            Outcome::fail(with_output(format!("killed by signal {sig}")))
        }
    }
}

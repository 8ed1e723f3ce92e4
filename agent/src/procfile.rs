//! Reading small files such as `/proc/loadavg` and `/proc/<pid>/stat` once a second
//! with as few syscalls as possible.

use std::fs::File;
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Reads a whole small file in one `read` when it fits 1 KiB: `std::fs::read_to_string`
/// first stats the file (procfs reports size 0) and then probes with 32-byte reads, 6
/// to 9 syscalls where this takes 3.
pub fn read_small(path: &Path) -> io::Result<String> {
    read_from_start(&File::open(path)?)
}

/// Reads `file` from offset 0 to its end.
fn read_from_start(file: &File) -> io::Result<String> {
    let mut buf = [0u8; 1024];
    let mut n = read_at(file, &mut buf, 0)?;
    let mut bytes = buf[..n].to_vec();
    // A short read is the end for regular and procfs files; only a full buffer may
    // have more behind it.
    while n == buf.len() {
        n = read_at(file, &mut buf, bytes.len() as u64)?;
        bytes.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(bytes).map_err(|e| io::Error::new(ErrorKind::InvalidData, e))
}

fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A procfs file kept open and re-read from offset 0, where procfs generates its text
/// afresh: one `pread` a reading instead of open, read and close (and the path walk).
#[derive(Debug)]
pub struct ProcFile {
    path: PathBuf,
    file: Option<File>,
}

impl ProcFile {
    /// Opens nothing yet: the first [`ProcFile::read`] does.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ProcFile {
            path: path.into(),
            file: None,
        }
    }

    /// The file's current text. A kept descriptor that fails (its process exited:
    /// `ESRCH`) is dropped and the path opened again, so the answer is always the one
    /// a fresh open would give.
    pub fn read(&mut self) -> io::Result<String> {
        if let Some(file) = &self.file {
            if let Ok(text) = read_from_start(file) {
                return Ok(text);
            }
            self.file = None;
        }
        let file = File::open(&self.path)?;
        let text = read_from_start(&file)?;
        self.file = Some(file);
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_small_reads_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 5, 1023, 1024, 1025, 2048, 5000] {
            let path = dir.path().join(format!("f{len}"));
            let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            std::fs::write(&path, &text).unwrap();
            assert_eq!(read_small(&path).unwrap(), text, "{len} bytes");
        }
        let missing = read_small(&dir.path().join("none")).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn proc_file_rereads_fresh_text() {
        let mut own = ProcFile::new("/proc/self/stat");
        let first = own.read().unwrap();
        assert!(first.ends_with('\n'), "{first}");
        assert!(own.file.is_some(), "kept open");
        assert_eq!(
            own.read().unwrap().split(' ').next(),
            first.split(' ').next()
        );
        // /proc/self/schedstat counts this thread's run time: it moves between reads.
        let mut sched = ProcFile::new("/proc/thread-self/schedstat");
        let a = sched.read().unwrap();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(5) {}
        assert_ne!(sched.read().unwrap(), a);
    }

    #[test]
    fn proc_file_follows_the_path() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let mut stat = ProcFile::new(format!("/proc/{}/stat", child.id()));
        assert!(stat.read().unwrap().contains("(sleep)"));
        child.kill().unwrap();
        child.wait().unwrap();
        // The kept descriptor now fails; the path is gone too.
        assert_eq!(stat.read().unwrap_err().kind(), ErrorKind::NotFound);
        assert!(stat.file.is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = ProcFile::new(&path);
        assert!(file.read().is_err());
        std::fs::write(&path, "later\n").unwrap();
        assert_eq!(file.read().unwrap(), "later\n");
    }
}

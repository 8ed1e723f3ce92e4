//! Optional durability: an append-only log per shard plus an atomically replaced
//! `assignments.json`, replayed on start.
//!
//! Layout of `--data-dir`:
//! - `assignments.json`: `{"shards":[{"id":1,"epoch":3,"role":"primary"}]}`, written to a
//!   temp file, fsynced, then renamed over the old one, so a crash leaves either the
//!   old or the new file, never a torn one.
//! - `shard-{id}.log`: records in the snapshot framing ([`crate::wire`]). Only writes
//!   that won the version rule are appended, and replay applies the same rule, so the
//!   log is order-insensitive and replaying it twice is harmless.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use torua_protocol::node_api::Role;

use crate::wire::{self, Decoder, Record, WireError};

const ASSIGNMENTS: &str = "assignments.json";

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: invalid assignments file: {source}")]
    Assignments {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Bad bytes in the middle of a log are not a torn write; refusing to start is
    /// safer than silently dropping everything after them.
    #[error("{path}: corrupt log (truncate the file at the named byte to recover what precedes it): {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: WireError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: u32,
    pub epoch: u64,
    pub role: Role,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AssignmentsFile {
    shards: Vec<Assignment>,
}

/// A shard recovered from disk.
#[derive(Debug)]
pub struct Recovered {
    pub assignment: Assignment,
    pub records: Vec<Record>,
    pub log: ShardLog,
}

#[derive(Debug, Clone)]
pub struct Persist {
    dir: PathBuf,
    fsync: bool,
}

impl Persist {
    /// Opens (creating if needed) the data directory and replays it.
    pub fn open(dir: &Path, fsync: bool) -> Result<(Persist, Vec<Recovered>), PersistError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let p = Persist {
            dir: dir.to_owned(),
            fsync,
        };
        let path = dir.join(ASSIGNMENTS);
        let assignments = match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<AssignmentsFile>(&bytes)
                    .map_err(|source| PersistError::Assignments {
                        path: path.clone(),
                        source,
                    })?
                    .shards
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut recovered = Vec::with_capacity(assignments.len());
        for a in &assignments {
            let path = p.log_path(a.id);
            let records = match File::open(&path) {
                Ok(_) => replay(&path)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io_err(&path)(e)),
            };
            recovered.push(Recovered {
                assignment: *a,
                records,
                log: p.open_log(a.id)?,
            });
        }
        p.remove_orphan_logs(&assignments)?;
        Ok((p, recovered))
    }

    fn log_path(&self, id: u32) -> PathBuf {
        self.dir.join(format!("shard-{id}.log"))
    }

    /// A crash between dropping an assignment and removing its log leaves the log
    /// behind; its data must never come back under a later assignment.
    fn remove_orphan_logs(&self, assignments: &[Assignment]) -> Result<(), PersistError> {
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("shard-")?.strip_suffix(".log"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if !assignments.iter().any(|a| a.id == id) {
                tracing::warn!(shard = id, "removing log of a shard that is not assigned");
                self.remove_log(id)?;
            }
        }
        Ok(())
    }

    pub fn write_assignments(&self, shards: Vec<Assignment>) -> Result<(), PersistError> {
        let path = self.dir.join(ASSIGNMENTS);
        let tmp = self.dir.join(format!("{ASSIGNMENTS}.tmp"));
        let body = serde_json::to_vec_pretty(&AssignmentsFile { shards }).expect("serialisable");
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&body).map_err(io_err(&tmp))?;
        // Always fsync here, even without --fsync: assignments are rare and an epoch
        // that goes backwards after a crash would undo fencing.
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }

    pub fn open_log(&self, id: u32) -> Result<ShardLog, PersistError> {
        let path = self.log_path(id);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(ShardLog {
            file,
            path,
            fsync: self.fsync,
        })
    }

    pub fn remove_log(&self, id: u32) -> Result<(), PersistError> {
        let path = self.log_path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }
}

/// The open append handle of one shard's log.
#[derive(Debug)]
pub struct ShardLog {
    file: File,
    path: PathBuf,
    fsync: bool,
}

impl ShardLog {
    /// Appends whole records with one `write_all`, so a crash can only tear the last one.
    pub fn append(&mut self, records: &[&Record]) -> Result<(), PersistError> {
        let mut buf = BytesMut::new();
        for r in records {
            wire::encode(r, &mut buf);
        }
        self.file.write_all(&buf).map_err(io_err(&self.path))?;
        if self.fsync {
            self.file.sync_data().map_err(io_err(&self.path))?;
        }
        Ok(())
    }

    /// Drops every record (shard reset). Always synced: a reset that a crash undoes
    /// would bring stale data back under the new epoch.
    pub fn truncate(&mut self) -> Result<(), PersistError> {
        self.file.set_len(0).map_err(io_err(&self.path))?;
        self.file.sync_all().map_err(io_err(&self.path))
    }
}

/// Reads a log, tolerating a torn final record (cut off by a crash mid-append): the
/// file is truncated to its last complete record and a warning is logged.
pub fn replay(path: &Path) -> Result<Vec<Record>, PersistError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut decoder = Decoder::new();
    let mut records = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut chunk).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        decoder.push(&chunk[..n]);
        while let Some(r) = decoder
            .next_record()
            .map_err(|source| PersistError::Corrupt {
                path: path.to_owned(),
                source,
            })?
        {
            records.push(r);
        }
    }
    if let Err(e) = decoder.finish() {
        tracing::warn!(path = %path.display(), error = %e, "torn record at end of log; truncating it");
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.set_len(decoder.consumed()).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::rec;

    #[test]
    fn replay_tolerates_a_torn_tail_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![
            rec("a", 1, Some("one")),
            rec("b", 2, None),
            rec("c/d", 3, Some("x")),
        ];
        let mut full = BytesMut::new();
        let mut ends = vec![0usize];
        for r in &records {
            wire::encode(r, &mut full);
            ends.push(full.len());
        }
        for cut in 0..=full.len() {
            let path = dir.path().join("shard-1.log");
            fs::write(&path, &full[..cut]).unwrap();
            let got = replay(&path).unwrap();
            let complete = ends.iter().filter(|&&e| e > 0 && e <= cut).count();
            assert_eq!(got, records[..complete], "cut {cut}");
            // The torn part is gone, so the next append starts on a record boundary.
            assert_eq!(
                fs::metadata(&path).unwrap().len() as usize,
                ends[complete],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn corruption_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard-1.log");
        let mut buf = BytesMut::new();
        wire::encode(&rec("a", 1, Some("one")), &mut buf);
        buf.extend_from_slice(&[7, 0, 0, 0]);
        fs::write(&path, &buf).unwrap();
        assert!(matches!(replay(&path), Err(PersistError::Corrupt { .. })));
    }

    #[test]
    fn assignments_and_logs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (p, rec0) = Persist::open(dir.path(), true).unwrap();
        assert!(rec0.is_empty());
        let a = Assignment {
            id: 4,
            epoch: 9,
            role: Role::Replica,
        };
        p.write_assignments(vec![a]).unwrap();
        let mut log = p.open_log(4).unwrap();
        log.append(&[&rec("k", 1, Some("v")), &rec("k", 2, None)])
            .unwrap();
        // A log with no assignment is an orphan and must not survive.
        p.open_log(5)
            .unwrap()
            .append(&[&rec("z", 1, Some("v"))])
            .unwrap();
        drop(log);

        let (_, got) = Persist::open(dir.path(), false).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].assignment, a);
        assert_eq!(
            got[0].records,
            vec![rec("k", 1, Some("v")), rec("k", 2, None)]
        );
        assert!(!dir.path().join("shard-5.log").exists());
    }
}

//! Following a CDR file as the PBX appends to it (Asterisk `Master.csv`, FreeSWITCH
//! `Master.csv`), across rotation, from a checkpoint.
//!
//! Only whole lines are read: a line the writer has not finished is left for the next poll. The
//! [`Checkpoint`] (the file's inode, the byte offset after the last whole line read, and the
//! lines read) is what a caller stores together with the records of the same poll, in one
//! transaction: after a restart, reading resumes exactly after what was stored, so no record is
//! lost or read twice.
//!
//! Rotation: when the path names a new file (logrotate's rename and create), the old file is read
//! to its end first, then the new one from its start. A file that shrank under the same inode
//! (copytruncate) is read again from its start; a truncation is seen when a poll finds the file
//! shorter than what was read, so poll more often than the file regrows (every second is plenty). After a restart with a checkpoint of a file that
//! has been rotated meanwhile, the old file is looked for in the same folder by its inode
//! (`Master.csv.1`, say) and its rest read first.
//!
//! Formats with one record per line and no header only: `asterisk`, `freeswitch-csv`.

use crate::{from_reader, Format, ReadError, ReadOptions, RowError};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use tollguard_core::cdr::Cdr;

/// Where reading stands: inode, byte offset after the last whole line, lines read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The file's inode.
    pub inode: u64,
    /// Bytes read (whole lines).
    pub offset: u64,
    /// Lines read.
    pub line: u64,
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.inode, self.offset, self.line)
    }
}

impl FromStr for Checkpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Checkpoint, String> {
        let mut it = s.split(':').map(|p| p.parse::<u64>());
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(Ok(inode)), Some(Ok(offset)), Some(Ok(line)), None) => {
                Ok(Checkpoint { inode, offset, line })
            }
            _ => Err(format!("not a tail checkpoint (inode:offset:line): {s:?}")),
        }
    }
}

/// The most read in one poll.
const MAX_CHUNK: u64 = 8 << 20;

/// A followed file.
pub struct Tail {
    path: PathBuf,
    format: Format,
    options: ReadOptions,
    /// The file being read and where.
    file: Option<(File, PathBuf)>,
    at: Checkpoint,
    /// A checkpoint to resume from, until the file is first opened.
    resume: Option<Checkpoint>,
}

impl Tail {
    /// Follows `path`, resuming after `from` when given.
    pub fn new(
        path: &Path,
        format: Format,
        options: ReadOptions,
        from: Option<Checkpoint>,
    ) -> Result<Tail, String> {
        if !matches!(format, Format::Asterisk | Format::FreeswitchCsv) {
            return Err(format!(
                "{}: only asterisk and freeswitch-csv files can be followed (one record per line, no header)",
                path.display()
            ));
        }
        Ok(Tail {
            path: path.to_path_buf(),
            format,
            options,
            file: None,
            at: from.unwrap_or_default(),
            resume: from,
        })
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where reading stands after the last poll.
    pub fn checkpoint(&self) -> Checkpoint {
        self.at
    }

    /// Reads the whole lines appended since the last poll into `out` (malformed rows into `bad`);
    /// returns whether the checkpoint moved.
    pub fn poll(&mut self, out: &mut Vec<Cdr>, bad: &mut Vec<RowError>) -> io::Result<bool> {
        let before = self.at;
        if self.file.is_none() && !self.open()? {
            return Ok(false);
        }
        loop {
            self.read_chunk(out, bad)?;
            // At the end of what is there: has the path moved on to a new file, or shrunk?
            let meta = match std::fs::metadata(&self.path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break, // rotated, not yet recreated
                Err(e) => return Err(e),
            };
            let reading_path = self.file.as_ref().is_some_and(|(_, p)| *p == self.path);
            if meta.ino() != self.at.inode || !reading_path {
                // The old file is read to its end: on to the new one.
                let file = File::open(&self.path)?;
                self.file = Some((file, self.path.clone()));
                self.at = Checkpoint { inode: meta.ino(), offset: 0, line: 0 };
                continue;
            }
            if meta.len() < self.at.offset {
                // Truncated in place: read again from the start.
                self.at.offset = 0;
                self.at.line = 0;
                continue;
            }
            break;
        }
        Ok(self.at != before)
    }

    /// Opens the file at the checkpoint (or its rotated predecessor); false when there is none yet.
    fn open(&mut self) -> io::Result<bool> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match self.resume.take() {
            Some(cp) if cp.inode == meta.ino() => {
                self.file = Some((File::open(&self.path)?, self.path.clone()));
                self.at = if meta.len() < cp.offset {
                    Checkpoint { inode: cp.inode, offset: 0, line: 0 }
                } else {
                    cp
                };
            }
            Some(cp) => match self.find_inode(cp.inode)? {
                // Rotated while we were away: finish the old file first.
                Some(old) => {
                    self.file = Some((File::open(&old)?, old));
                    self.at = cp;
                }
                None => {
                    self.file = Some((File::open(&self.path)?, self.path.clone()));
                    self.at = Checkpoint { inode: meta.ino(), offset: 0, line: 0 };
                }
            },
            None => {
                self.file = Some((File::open(&self.path)?, self.path.clone()));
                self.at = Checkpoint { inode: meta.ino(), offset: 0, line: 0 };
            }
        }
        Ok(true)
    }

    /// A file in the same folder with this inode.
    fn find_inode(&self, inode: u64) -> io::Result<Option<PathBuf>> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.metadata().is_ok_and(|m| m.is_file() && m.ino() == inode) {
                return Ok(Some(entry.path()));
            }
        }
        Ok(None)
    }

    fn read_chunk(&mut self, out: &mut Vec<Cdr>, bad: &mut Vec<RowError>) -> io::Result<()> {
        let Some((file, name)) = self.file.as_mut() else { return Ok(()) };
        loop {
            file.seek(SeekFrom::Start(self.at.offset))?;
            let mut buf = Vec::new();
            file.by_ref().take(MAX_CHUNK).read_to_end(&mut buf)?;
            let Some(last) = buf.iter().rposition(|b| *b == b'\n') else { return Ok(()) };
            buf.truncate(last + 1);
            let lines = buf.iter().filter(|b| **b == b'\n').count() as u64;
            let label: Arc<str> = Arc::from(name.display().to_string());
            let mut reader = from_reader(self.format, label, Box::new(io::Cursor::new(buf)), &self.options)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mut cdr = Cdr::default();
            loop {
                match reader.read_into(&mut cdr) {
                    Ok(true) => {
                        cdr.line += self.at.line;
                        out.push(cdr.clone());
                    }
                    Ok(false) => break,
                    Err(ReadError::Row(mut r)) => {
                        r.line += self.at.line;
                        bad.push(r);
                    }
                    Err(ReadError::Io { error: source, .. }) => return Err(source),
                }
            }
            self.at.offset += last as u64 + 1;
            self.at.line += lines;
            if (last as u64 + 1) < MAX_CHUNK / 2 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn row(i: u32) -> String {
        format!(
            "\"acme\",\"201\",\"0201234{i:03}\",\"from-internal\",\"\",\"SIP/201-1\",\"SIP/trunk-1\",\"Dial\",\"\",\
             \"2026-01-19 09:00:00\",\"2026-01-19 09:00:05\",\"2026-01-19 09:01:05\",65,60,\"ANSWERED\",\
             \"DOCUMENTATION\",\"1768813200.{i}\",\"\"\n"
        )
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn ids(out: &[Cdr]) -> Vec<String> {
        out.iter().map(|c| c.call_id.clone()).collect()
    }

    #[test]
    fn whole_lines_rotation_and_resume() {
        let dir = tempfile::Builder::new().prefix("tollguard-tail-").tempdir().unwrap();
        let path = dir.path().join("Master.csv");
        let mut t = Tail::new(&path, Format::Asterisk, ReadOptions::default(), None).unwrap();
        let (mut out, mut bad) = (vec![], vec![]);
        assert!(!t.poll(&mut out, &mut bad).unwrap(), "no file yet");
        append(&path, &(row(1) + &row(2)));
        let half = row(3);
        append(&path, &half[..40]);
        assert!(t.poll(&mut out, &mut bad).unwrap());
        assert_eq!(ids(&out), ["1768813200.1", "1768813200.2"], "the unfinished line waits");
        append(&path, &half[40..]);
        append(&path, "not,a,row\n");
        out.clear();
        t.poll(&mut out, &mut bad).unwrap();
        assert_eq!(ids(&out), ["1768813200.3"]);
        assert_eq!(out[0].line, 3);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].to_string().contains("Master.csv:4:"), "{}", bad[0]);
        let cp = t.checkpoint();
        assert_eq!(cp.line, 4);
        assert_eq!(cp.to_string().parse::<Checkpoint>().unwrap(), cp);

        // Rotation while running: two more lines in the old file, then a new file.
        append(&path, &(row(4) + &row(5)));
        std::fs::rename(&path, dir.path().join("Master.csv.1")).unwrap();
        append(&path, &row(6));
        out.clear();
        t.poll(&mut out, &mut bad).unwrap();
        assert_eq!(ids(&out), ["1768813200.4", "1768813200.5", "1768813200.6"]);

        // A restart from a checkpoint: nothing again, then what is new.
        let cp = t.checkpoint();
        append(&path, &row(7));
        let mut t2 = Tail::new(&path, Format::Asterisk, ReadOptions::default(), Some(cp)).unwrap();
        out.clear();
        t2.poll(&mut out, &mut bad).unwrap();
        assert_eq!(ids(&out), ["1768813200.7"]);

        // Rotated while stopped: the rest of the old file first, found by its inode.
        let cp = t2.checkpoint();
        append(&path, &row(8));
        std::fs::rename(&path, dir.path().join("Master.csv.2")).unwrap();
        append(&path, &row(9));
        let mut t3 = Tail::new(&path, Format::Asterisk, ReadOptions::default(), Some(cp)).unwrap();
        out.clear();
        t3.poll(&mut out, &mut bad).unwrap();
        assert_eq!(ids(&out), ["1768813200.8", "1768813200.9"]);

        // copytruncate: the same file emptied, then written again.
        std::fs::write(&path, "").unwrap();
        out.clear();
        t3.poll(&mut out, &mut bad).unwrap();
        append(&path, &row(10));
        t3.poll(&mut out, &mut bad).unwrap();
        assert_eq!(ids(&out), ["1768813200.10"]);
        assert!(Tail::new(&path, Format::Cucm, ReadOptions::default(), None).is_err());
    }
}

//! # tollguard-ingest
//!
//! Reading call detail records as real PBXs and switches write them. Each format lives in its own
//! module and fills a reusable [`Cdr`] in place:
//!
//! | format | module | call id |
//! |---|---|---|
//! | Asterisk `cdr_csv` (16, 18 or 21 columns, no header) | [`asterisk`] | `uniqueid`; 16 columns: derived, see [`asterisk`] |
//! | FreeSWITCH `mod_cdr_csv` default template | [`freeswitch_csv`] | `uuid` |
//! | FreeSWITCH `mod_json_cdr` bodies | [`freeswitch_json`] | `variables.uuid` |
//! | Cisco CUCM flat files (header line of names, line of types) | [`cucm`] | `globalCallID_callManagerId-globalCallID_callId` |
//! | any CSV with a header, columns named by a [`generic::GenericMapping`] | [`generic`] | mapped column |
//!
//! A malformed row is reported as [`ReadError::Row`] naming file, line and reason; the reader
//! stays usable and the next call reads the next row. Only [`ReadError::Io`] ends a stream.
//!
//! ```no_run
//! use tollguard_core::cdr::Cdr;
//! use tollguard_ingest::{open, Format, ReadError, ReadOptions};
//! let mut reader = open(Format::Asterisk, "Master.csv".as_ref(), &ReadOptions::default()).unwrap();
//! let mut cdr = Cdr::default();
//! loop {
//!     match reader.read_into(&mut cdr) {
//!         Ok(true) => println!("{} -> {}", cdr.source, cdr.dialled),
//!         Ok(false) => break,
//!         Err(ReadError::Row(bad)) => eprintln!("skipped: {bad}"),
//!         Err(e) => panic!("{e}"),
//!     }
//! }
//! ```

use jiff::tz::TimeZone;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use tollguard_core::cdr::{Cdr, CdrStore};

pub mod asterisk;
pub mod cucm;
mod fastcsv;
pub mod freeswitch_csv;
pub mod freeswitch_json;
pub mod generic;
pub mod tail;
mod util;

/// A row that could not be read: where, and why. The row is skipped; nothing else is lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// The input's name (its path, or a name given by the caller).
    pub file: Arc<str>,
    /// One-based line where the bad row starts.
    pub line: u64,
    /// What is wrong, in lower case, naming the field.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Why a read did not give a record.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// One malformed row, skipped; reading may continue.
    #[error("{0}")]
    Row(RowError),
    /// The input cannot be read (any further); the stream ends.
    // Not `source` (nor #[source]): the message says it already, and an error chain would
    // print it twice ("file: reason: reason").
    #[error("{file}: {error}")]
    Io {
        /// The input's name.
        file: Arc<str>,
        /// The underlying error.
        error: io::Error,
    },
}

/// A stream of CDRs from one input.
pub trait CdrReader {
    /// Reads the next record into `cdr` (clearing it first). `Ok(true)`: a record was read;
    /// `Ok(false)`: end of input; `Err(ReadError::Row)`: a malformed row was skipped, call again.
    fn read_into(&mut self, cdr: &mut Cdr) -> Result<bool, ReadError>;

    /// Reads the next record onto the end of `store`, as [`CdrReader::read_into`] then
    /// [`CdrStore::push`] would (`scratch` is room for that); a reader may store records straight
    /// from its input instead. The results are those of `read_into`; nothing is stored on `Err`.
    fn read_to_store(&mut self, store: &mut CdrStore, scratch: &mut Cdr) -> Result<bool, ReadError> {
        let read = self.read_into(scratch)?;
        if read {
            store.push(scratch);
        }
        Ok(read)
    }

    /// Bytes consumed so far (for progress bars), when known.
    fn bytes_read(&self) -> u64 {
        0
    }
}

/// The supported input formats, named as on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `asterisk`: Asterisk `cdr_csv` Master.csv.
    Asterisk,
    /// `freeswitch-csv`: FreeSWITCH `mod_cdr_csv` with the default ("example") template.
    FreeswitchCsv,
    /// `freeswitch-json`: FreeSWITCH `mod_json_cdr` bodies (one JSON document per file, or one
    /// per line).
    FreeswitchJson,
    /// `cucm`: Cisco Unified CM CDR flat file.
    Cucm,
    /// `generic`: CSV with a header, mapped by configuration.
    Generic,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        Ok(match s {
            "asterisk" => Format::Asterisk,
            "freeswitch-csv" => Format::FreeswitchCsv,
            "freeswitch-json" => Format::FreeswitchJson,
            "cucm" => Format::Cucm,
            "generic" => Format::Generic,
            _ => {
                return Err(format!(
                "unknown format {s:?}: expected asterisk, freeswitch-csv, freeswitch-json, cucm or generic"
            ))
            }
        })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Asterisk => "asterisk",
            Format::FreeswitchCsv => "freeswitch-csv",
            Format::FreeswitchJson => "freeswitch-json",
            Format::Cucm => "cucm",
            Format::Generic => "generic",
        })
    }
}

/// What readers need besides the bytes.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// The zone of local timestamps (Asterisk and FreeSWITCH CSV write local time). Default UTC.
    pub tz: TimeZone,
    /// Column mapping for [`Format::Generic`].
    pub generic: Option<generic::GenericMapping>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { tz: TimeZone::UTC, generic: None }
    }
}

/// Opens a file in the given format.
pub fn open(format: Format, path: &Path, options: &ReadOptions) -> Result<Box<dyn CdrReader>, ReadError> {
    let name: Arc<str> = Arc::from(path.display().to_string());
    let file = File::open(path).map_err(|source| ReadError::Io { file: name.clone(), error: source })?;
    from_reader(format, name, Box::new(file), options)
}

/// Reads any byte stream in the given format; `name` is used in error messages.
pub fn from_reader(
    format: Format,
    name: Arc<str>,
    input: Box<dyn Read>,
    options: &ReadOptions,
) -> Result<Box<dyn CdrReader>, ReadError> {
    Ok(match format {
        Format::Asterisk => Box::new(asterisk::AsteriskReader::new(name, input, options.tz.clone())),
        Format::FreeswitchCsv => {
            Box::new(freeswitch_csv::FreeswitchCsvReader::new(name, input, options.tz.clone()))
        }
        Format::FreeswitchJson => Box::new(freeswitch_json::FreeswitchJsonReader::new(name, input)?),
        Format::Cucm => Box::new(cucm::CucmReader::new(name, input)?),
        Format::Generic => {
            let mapping = options.generic.clone().ok_or_else(|| ReadError::Io {
                file: name.clone(),
                error: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "format generic needs a [generic_csv] column mapping in the configuration",
                ),
            })?;
            Box::new(generic::GenericReader::new(name, input, mapping, options.tz.clone())?)
        }
    })
}

#[cfg(test)]
mod format_tests {
    use super::Format;

    #[test]
    fn a_format_reads_back_from_its_name() {
        for f in
            [Format::Asterisk, Format::FreeswitchCsv, Format::FreeswitchJson, Format::Cucm, Format::Generic]
        {
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        }
    }
}

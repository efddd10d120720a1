//! `.ica` launch files (`application/x-ica`), writer and parser (PROTOCOLS.md §5).
//!
//! An `.ica` file is INI-like text: `[Section]` headers, each followed by
//! `Key=Value` lines. [`IcaFile`] holds one as ordered sections of ordered
//! pairs; [`launch_file`] builds the file the store serves for a launch and
//! [`read_launch`] pulls back what a client needs from one.
//!
//! Gatehouse decides the dialect:
//! - [`IcaFile::encode`] writes `\r\n` after every line (the last one too),
//!   no blank lines, no comments, no BOM: the form Windows clients expect.
//! - [`IcaFile::decode`] accepts `\n` or `\r\n`, a leading UTF-8 BOM, blank
//!   lines, `;` comment lines and spaces or tabs around names, keys and values
//!   (trimmed away). It rejects key lines before the first section, lines
//!   without `=`, duplicate sections and duplicate keys within a section
//!   (an ambiguity a proxy and a client could resolve differently), and
//!   input past [`MAX_FILE_LEN`] bytes.
//! - Section and key names match ASCII-case-insensitively (as the Windows
//!   profile API does) and keep the spelling they were first given.
//! - [`IcaFile::set`] rejects anything [`IcaFile::decode`] would read back
//!   differently: control characters (so no `\r\n[Evil]` injection), edge
//!   whitespace, `[`/`]` in section names, `=` in keys, keys starting with
//!   `;` or `[`. So `decode(encode(file)) == file` for every file.
//!
//! Values such as `Address=` and `LogonTicket=` carry secrets; the `Debug`
//! of [`IcaFile`] and [`Launch`] redacts them.

use std::fmt;

mod launch;

pub use launch::{
    APPLICATION_SERVERS, CGP_PORT, ENCODING, Launch, LaunchParams, WF_CLIENT, launch_file,
    read_launch,
};

use crate::ticket::TicketError;

/// Largest `.ica` file [`IcaFile::decode`] accepts and [`IcaFile::set`] lets
/// a file grow to when encoded (64 KiB; launch files are under 2 KiB).
pub const MAX_FILE_LEN: usize = 64 * 1024;

/// Keys whose values `Debug` output redacts, because they carry a ticket or
/// a password.
const SECRET_KEYS: [&str; 4] = ["Address", "LogonTicket", "Password", "ClearPassword"];

/// An `.ica` file: ordered sections, each with ordered `key=value` pairs.
///
/// Every value of this type encodes to at most [`MAX_FILE_LEN`] bytes and
/// decodes back to itself.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IcaFile {
    sections: Vec<Section>,
    /// Invariant: `encode().len()`, kept `<= MAX_FILE_LEN`.
    encoded_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    name: String,
    entries: Vec<(String, String)>,
}

impl IcaFile {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` in `section` to `value`, replacing the value of an existing
    /// key (matched ASCII-case-insensitively) in place, else appending the
    /// key, creating the section at the end if needed.
    ///
    /// Errors: [`IcaError::Invalid`] for a section name, key or value that
    /// would not read back as given (see the module docs), and
    /// [`IcaError::TooLarge`] if the file would grow past [`MAX_FILE_LEN`].
    /// On error the file is unchanged.
    pub fn set(&mut self, section: &str, key: &str, value: &str) -> Result<(), IcaError> {
        for (part, text) in [
            (Part::Section, section),
            (Part::Key, key),
            (Part::Value, value),
        ] {
            check_text(part, text).map_err(|problem| IcaError::Invalid { part, problem })?;
        }
        let Some(at) = self.find_section(section) else {
            self.grow(section_len(section) + entry_len(key, value))?;
            self.sections.push(Section {
                name: section.to_owned(),
                entries: vec![(key.to_owned(), value.to_owned())],
            });
            return Ok(());
        };
        let entries = &mut self.sections[at].entries;
        match entries
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            Some((_, old)) => {
                // `old` is counted in `encoded_len`, so this cannot underflow.
                let new_len = self.encoded_len - old.len() + value.len();
                if new_len > MAX_FILE_LEN {
                    return Err(IcaError::TooLarge { max: MAX_FILE_LEN });
                }
                value.clone_into(old);
                self.encoded_len = new_len;
            }
            None => {
                let new_len = self.encoded_len + entry_len(key, value);
                if new_len > MAX_FILE_LEN {
                    return Err(IcaError::TooLarge { max: MAX_FILE_LEN });
                }
                entries.push((key.to_owned(), value.to_owned()));
                self.encoded_len = new_len;
            }
        }
        Ok(())
    }

    /// The value of `key` in `section` (both matched ASCII-case-insensitively).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        let section = &self.sections[self.find_section(section)?];
        section
            .entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The section names, in file order.
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|s| s.name.as_str())
    }

    /// The `(key, value)` pairs of `section` in file order; empty if there is
    /// no such section.
    pub fn entries(&self, section: &str) -> impl Iterator<Item = (&str, &str)> {
        let entries = match self.find_section(section) {
            Some(at) => self.sections[at].entries.as_slice(),
            None => &[],
        };
        entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Length in bytes of [`IcaFile::encode`]'s output (for `Content-Length`).
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    /// The file as text: `[Section]` lines followed by `Key=Value` lines,
    /// each ended by `\r\n`. At most [`MAX_FILE_LEN`] bytes.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len);
        for section in &self.sections {
            out.push('[');
            out.push_str(&section.name);
            out.push_str("]\r\n");
            for (key, value) in &section.entries {
                out.push_str(key);
                out.push('=');
                out.push_str(value);
                out.push_str("\r\n");
            }
        }
        out
    }

    /// Parses an `.ica` file, tolerating the variations listed in the module
    /// docs. Sections without keys are kept.
    ///
    /// Errors: [`IcaError::TooLarge`] past [`MAX_FILE_LEN`] bytes, else the
    /// first bad line as [`IcaError::OutsideSection`],
    /// [`IcaError::MissingEquals`], [`IcaError::UnclosedSection`],
    /// [`IcaError::DuplicateSection`], [`IcaError::DuplicateKey`] or
    /// [`IcaError::InvalidLine`] (1-based line numbers).
    pub fn decode(text: &str) -> Result<Self, IcaError> {
        if text.len() > MAX_FILE_LEN {
            return Err(IcaError::TooLarge { max: MAX_FILE_LEN });
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut file = Self::new();
        let mut current = None;
        for (index, line) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let check = |part, text| {
                check_text(part, text).map_err(|problem| IcaError::InvalidLine {
                    line: line_no,
                    part,
                    problem,
                })
            };
            // Strips the `\r` of a CRLF ending along with edge spaces/tabs.
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with(';') {
                continue;
            }
            if let Some(header) = line.strip_prefix('[') {
                let Some(name) = header.strip_suffix(']') else {
                    return Err(IcaError::UnclosedSection { line: line_no });
                };
                let name = name.trim_ascii();
                check(Part::Section, name)?;
                if file.find_section(name).is_some() {
                    return Err(IcaError::DuplicateSection { line: line_no });
                }
                file.grow(section_len(name))?;
                current = Some(file.sections.len());
                file.sections.push(Section {
                    name: name.to_owned(),
                    entries: Vec::new(),
                });
                continue;
            }
            let Some(at) = current else {
                return Err(IcaError::OutsideSection { line: line_no });
            };
            let Some((key, value)) = line.split_once('=') else {
                return Err(IcaError::MissingEquals { line: line_no });
            };
            let (key, value) = (key.trim_ascii(), value.trim_ascii());
            check(Part::Key, key)?;
            check(Part::Value, value)?;
            let entries = &file.sections[at].entries;
            if entries.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
                return Err(IcaError::DuplicateKey { line: line_no });
            }
            file.grow(entry_len(key, value))?;
            file.sections[at]
                .entries
                .push((key.to_owned(), value.to_owned()));
        }
        Ok(file)
    }

    fn find_section(&self, name: &str) -> Option<usize> {
        self.sections
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// Adds `bytes` to the encoded length, or fails past [`MAX_FILE_LEN`].
    fn grow(&mut self, bytes: usize) -> Result<(), IcaError> {
        match self.encoded_len.checked_add(bytes) {
            Some(len) if len <= MAX_FILE_LEN => {
                self.encoded_len = len;
                Ok(())
            }
            _ => Err(IcaError::TooLarge { max: MAX_FILE_LEN }),
        }
    }
}

impl fmt::Debug for IcaFile {
    /// Sections and their pairs, with the values of secret-bearing keys
    /// (`Address`, `LogonTicket`, passwords) redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for section in &self.sections {
            let entries: Vec<(&str, &str)> = section
                .entries
                .iter()
                .map(|(k, v)| (k.as_str(), redacted(k, v)))
                .collect();
            map.entry(&section.name, &entries);
        }
        map.finish()
    }
}

/// Which part of a line a [`TextProblem`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A `[Section]` name.
    Section,
    /// The key of a `Key=Value` line.
    Key,
    /// The value of a `Key=Value` line.
    Value,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Section => "section name",
            Self::Key => "key",
            Self::Value => "value",
        })
    }
}

/// Why a section name, key or value is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextProblem {
    /// Section names and keys must not be empty.
    #[error("is empty")]
    Empty,
    /// A control character (CR, LF, NUL, tab, ...) or U+2028/U+2029.
    #[error("contains a control or line-separator character")]
    ControlChar,
    /// Leading or trailing spaces, which decoding trims.
    #[error("starts or ends with whitespace")]
    EdgeWhitespace,
    /// `[` or `]` in a section name.
    #[error("contains '[' or ']'")]
    Bracket,
    /// `=` in a key.
    #[error("contains '='")]
    Equals,
    /// A key starting with `;` (a comment) or `[` (a section header).
    #[error("starts with ';' or '['")]
    LeadingMarker,
}

/// Why an `.ica` file could not be built, parsed or read as a launch.
///
/// Messages name lines, keys and reasons, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcaError {
    /// [`IcaFile::set`] was given text it cannot write faithfully.
    #[error("{part} {problem}")]
    Invalid {
        /// Which argument.
        part: Part,
        /// What is wrong with it.
        problem: TextProblem,
    },
    /// The encoded file would be, or the input is, larger than allowed.
    #[error("ica file larger than {max} bytes")]
    TooLarge {
        /// The limit, [`MAX_FILE_LEN`].
        max: usize,
    },
    /// A decoded line holds a bad section name, key or value.
    #[error("line {line}: {part} {problem}")]
    InvalidLine {
        /// 1-based line number.
        line: usize,
        /// Which part of the line.
        part: Part,
        /// What is wrong with it.
        problem: TextProblem,
    },
    /// A key line before the first section header.
    #[error("line {line}: key line outside any section")]
    OutsideSection {
        /// 1-based line number.
        line: usize,
    },
    /// A line that is neither blank, comment, header nor `key=value`.
    #[error("line {line}: no '=' in key line")]
    MissingEquals {
        /// 1-based line number.
        line: usize,
    },
    /// A line starting with `[` that does not end with `]`.
    #[error("line {line}: section header without closing ']'")]
    UnclosedSection {
        /// 1-based line number.
        line: usize,
    },
    /// A section header naming a section seen before.
    #[error("line {line}: section appears twice")]
    DuplicateSection {
        /// 1-based line number.
        line: usize,
    },
    /// A key seen before in the same section.
    #[error("line {line}: key appears twice in its section")]
    DuplicateKey {
        /// 1-based line number.
        line: usize,
    },
    /// [`launch_file`]: the launch name is one of the fixed section names.
    #[error("launch name is reserved for a section of the file")]
    ReservedName,
    /// [`launch_file`]: the gateway host is not a DNS name, IPv4 address or
    /// bracketed IPv6 address.
    #[error("gateway host is not a host name or address")]
    BadGatewayHost,
    /// [`read_launch`]: `[ApplicationServers]` is missing or empty.
    #[error("no entry in [ApplicationServers]")]
    NoApplication,
    /// [`read_launch`]: no section for the application the file names.
    #[error("no section for the application named in [ApplicationServers]")]
    MissingAppSection,
    /// [`read_launch`]: a required key is missing from the application's
    /// section.
    #[error("application section has no {key}")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// [`read_launch`]: a `host:port` value does not parse.
    #[error("{key} is not host:port")]
    BadHostPort {
        /// The key.
        key: &'static str,
    },
    /// [`read_launch`]: a numeric value does not parse.
    #[error("{key} is not a number")]
    BadNumber {
        /// The key.
        key: &'static str,
    },
    /// [`read_launch`]: the `Address` starts with `;` but is no STA ticket.
    #[error("address is not a valid sta ticket")]
    BadTicket(#[source] TicketError),
}

/// Checks that `text` would read back unchanged as the given part.
fn check_text(part: Part, text: &str) -> Result<(), TextProblem> {
    let problem = if text.is_empty() && part != Part::Value {
        Some(TextProblem::Empty)
    } else if text
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        Some(TextProblem::ControlChar)
    } else if text.trim_ascii().len() != text.len() {
        Some(TextProblem::EdgeWhitespace)
    } else {
        match part {
            Part::Section if text.contains(['[', ']']) => Some(TextProblem::Bracket),
            Part::Key if text.contains('=') => Some(TextProblem::Equals),
            Part::Key if text.starts_with([';', '[']) => Some(TextProblem::LeadingMarker),
            _ => None,
        }
    };
    problem.map_or(Ok(()), Err)
}

/// Encoded length of a `[name]\r\n` line.
fn section_len(name: &str) -> usize {
    name.len() + 4
}

/// Encoded length of a `key=value\r\n` line.
fn entry_len(key: &str, value: &str) -> usize {
    key.len() + value.len() + 3
}

fn redacted<'a>(key: &str, value: &'a str) -> &'a str {
    if SECRET_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
        "<redacted>"
    } else {
        value
    }
}

#[cfg(test)]
mod tests;

/// Entry points for the fuzz targets in `fuzz/`.
#[cfg(fuzzing)]
pub mod fuzz {
    use super::{IcaFile, MAX_FILE_LEN, read_launch};

    /// Decodes arbitrary UTF-8 as an `.ica` file; whatever decodes must
    /// encode within the size cap, to exactly `encoded_len` bytes, and decode
    /// back to the same file; reading it as a launch must not panic.
    pub fn ica(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(file) = IcaFile::decode(text) else {
            return;
        };
        let encoded = file.encode();
        assert_eq!(encoded.len(), file.encoded_len());
        assert!(encoded.len() <= MAX_FILE_LEN);
        assert_eq!(IcaFile::decode(&encoded), Ok(file.clone()));
        let _ = read_launch(&file);
    }
}

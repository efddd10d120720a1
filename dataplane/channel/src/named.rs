//! Named segments under `/dev/shm`, for planes in separate processes.
//!
//! A name `NAME` owns two files in its directory (default `/dev/shm`):
//! `NAME`, the segment (mode 0600), and `NAME.link`, the control plane's
//! unix socket where a data plane trades doorbells (see `link`). The
//! segment file is never removed by the planes: it outlives restarts of
//! either side, which is what lets the survivor keep its rings. Remove it
//! with [`SegmentName::remove`] when both planes are stopped.
//!
//! Attaching (`open`), under the creation lock:
//! - no file, or an empty one: create and initialize it;
//! - a valid segment of this geometry whose peer process is alive: resume
//!   the rings as they are. Each end continues from the index stored in
//!   the ring (a restarted producer from `tail`, a restarted consumer from
//!   `head`), so a half-written slot of a dead producer is simply
//!   overwritten, and a slot a dead consumer was reading is read again
//!   (at-least-once for that one message);
//! - a valid segment whose peer is not alive: drop every unread message
//!   (both sides' rings) — nobody is left who could answer or expect them;
//! - another geometry or layout version: recreate it if the peer is not
//!   alive, refuse otherwise.
//!
//! Then the side bumps its generation. Messages carry their sender's
//! generation and a port drops those that are not from the peer's current
//! one, so what a dead incarnation left in a resumed ring is discarded, and
//! request ids carry the asker's generation, so a late answer never matches
//! a new request.

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use crate::channel::{AttachError, io_error};
use crate::ids::CoreId;
use crate::mapping::{self, CreationLock, Mapping};
use crate::segment::{Direction, Geometry, Memory, Plane, Segment};

/// The directory named segments live in unless told otherwise.
pub const DEFAULT_SEGMENT_DIR: &str = "/dev/shm";
const MAX_NAME_BYTES: usize = 64;
// sockaddr_un's sun_path holds 108 bytes including the terminating zero.
const MAX_SOCKET_PATH_BYTES: usize = 107;

/// A validated segment name and the directory it lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName {
    dir: PathBuf,
    name: String,
}

/// A name that cannot name a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, or longer than 64 bytes.
    #[error("segment name must be 1 to {MAX_NAME_BYTES} bytes")]
    Length,
    /// A character outside `[A-Za-z0-9._-]`, or a leading dot.
    #[error("segment name may hold only A-Z a-z 0-9 . _ - and must not start with a dot")]
    Character,
    /// The link socket path would not fit a unix socket address.
    #[error("link socket path {0} is longer than {MAX_SOCKET_PATH_BYTES} bytes")]
    SocketPath(String),
}

impl SegmentName {
    /// `name` under [`DEFAULT_SEGMENT_DIR`].
    pub fn new(name: &str) -> Result<Self, NameError> {
        Self::in_dir(DEFAULT_SEGMENT_DIR, name)
    }

    /// `name` under `dir` (any directory; tmpfs keeps it in memory).
    pub fn in_dir(dir: impl Into<PathBuf>, name: &str) -> Result<Self, NameError> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(NameError::Length);
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.starts_with('.') || !name.chars().all(allowed) {
            return Err(NameError::Character);
        }
        let named = Self {
            dir: dir.into(),
            name: name.to_owned(),
        };
        let socket = named.link_path();
        if socket.as_os_str().len() > MAX_SOCKET_PATH_BYTES {
            return Err(NameError::SocketPath(socket.display().to_string()));
        }
        Ok(named)
    }

    /// The segment file.
    pub fn segment_path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// The control plane's link socket.
    pub fn link_path(&self) -> PathBuf {
        self.dir.join(format!("{}.link", self.name))
    }

    /// Removes both files (missing ones are fine). Only when both planes
    /// are stopped: a live side keeps its mapping but a new one would
    /// create a different segment.
    pub fn remove(&self) -> io::Result<()> {
        for path in [self.segment_path(), self.link_path()] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// A value that differs between segments created at different times or
/// by different processes (not a secret: it only catches a side linking
/// to a segment recreated behind its back).
pub(crate) fn nonce() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Opens the segment for `plane`: side lock, then create / validate /
/// reset under the creation lock. See [`crate::Side::open_named`].
pub(crate) fn open(
    name: &SegmentName,
    geometry: Geometry,
    plane: Plane,
) -> Result<Segment, AttachError> {
    let path = name.segment_path();
    let display = || path.display().to_string();
    let fd = mapping::open_file(&path).map_err(io_error("open segment file"))?;
    if !mapping::lock_side(fd.as_fd(), plane).map_err(io_error("lock segment side"))? {
        return Err(AttachError::SideBusy {
            plane,
            path: display(),
        });
    }
    let _creation = CreationLock::take(fd.as_fd()).map_err(io_error("lock segment creation"))?;
    let peer_alive = mapping::side_held_elsewhere(fd.as_fd(), plane.peer())
        .map_err(io_error("query peer side lock"))?;
    let size = rustix::fs::fstat(&fd)
        .map_err(|e| io_error("stat segment file")(e.into()))?
        .st_size;
    // The mapping keeps its own descriptor of the same open file
    // description, so the side lock lives as long as the mapping.
    let map = |len: usize| -> Result<Mapping, AttachError> {
        let dup = fd.try_clone().map_err(io_error("dup segment fd"))?;
        Mapping::map(dup, len).map_err(io_error("map segment"))
    };
    let layout_error = |source| AttachError::Layout {
        path: display(),
        source,
    };
    if size > 0 {
        let existing = Segment::validate(Memory::Mapped(map(size as usize)?), geometry);
        match existing {
            Ok(segment) => {
                if !peer_alive {
                    reset_rings(&segment);
                }
                return Ok(segment);
            }
            Err(e) if peer_alive => return Err(layout_error(e)),
            // Nobody else maps it: start over.
            Err(_) => {
                rustix::fs::ftruncate(&fd, 0)
                    .map_err(|e| io_error("truncate segment file")(e.into()))?;
            }
        }
    }
    rustix::fs::ftruncate(&fd, geometry.segment_bytes() as u64)
        .map_err(|e| io_error("size segment file")(e.into()))?;
    Segment::initialize(
        Memory::Mapped(map(geometry.segment_bytes())?),
        geometry,
        nonce(),
    )
    .map_err(layout_error)
}

/// Drops unread messages in every ring: only when no peer process is alive
/// (this side is the only user, under the creation lock).
fn reset_rings(segment: &Segment) {
    for core in 0..segment.geometry().cores() {
        for direction in [Direction::Requests, Direction::Answers] {
            segment.ring(CoreId(core), direction).reset_unshared();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_refuses_paths() {
        assert!(SegmentName::new("gatehouse").is_ok());
        assert!(SegmentName::new("gh-1.core_2").is_ok());
        assert_eq!(SegmentName::new(""), Err(NameError::Length));
        assert_eq!(SegmentName::new(&"a".repeat(65)), Err(NameError::Length));
        assert_eq!(SegmentName::new("../etc"), Err(NameError::Character));
        assert_eq!(SegmentName::new("a/b"), Err(NameError::Character));
        assert_eq!(SegmentName::new(".hidden"), Err(NameError::Character));
        assert!(matches!(
            SegmentName::in_dir("/".repeat(100), "abc"),
            Err(NameError::SocketPath(_))
        ));
    }

    #[test]
    fn names_two_files_side_by_side() {
        let n = SegmentName::in_dir("/tmp/x", "gh").unwrap();
        assert_eq!(n.segment_path(), PathBuf::from("/tmp/x/gh"));
        assert_eq!(n.link_path(), PathBuf::from("/tmp/x/gh.link"));
    }
}

//! Shared mappings (memfd or a file under `/dev/shm`) and the locks that
//! serialize creation and tell whether a side's process is alive.
//!
//! Locks on a named segment file:
//! - `flock(LOCK_EX)` around create/validate/reset, so two sides starting
//!   at once do not both initialize;
//! - an open-file-description lock (`F_OFD_SETLK`) on byte 0 (control
//!   plane) or byte 1 (data plane), held for the side's lifetime. A second
//!   process for the same side is refused, and the kernel drops the lock
//!   the moment the holder dies (even by `kill -9`), so the peer sees
//!   "gone" without waiting for a heartbeat timeout.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::ptr::{self, NonNull};

use rustix::fs::{FlockOperation, MemfdFlags, Mode, OFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::segment::Plane;

/// A read-write `MAP_SHARED` mapping of a whole file, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory owned by this value; the
// pointer is not tied to a thread. Every concurrent access to its contents
// goes through atomics or the ring's slot protocol (see `ring`, `segment`).
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only hands out the base pointer and the fd; see above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// A zeroed anonymous shared mapping of `len` bytes backed by a memfd
    /// (threads of one process; the fd could be passed to a child too).
    pub(crate) fn anonymous(len: usize) -> io::Result<Self> {
        let fd = rustix::fs::memfd_create("gatehouse-channel", MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        Self::map(fd, len)
    }

    /// Maps the first `len` bytes of `fd` (which must be at least that long)
    /// read-write and shared.
    pub(crate) fn map(fd: OwnedFd, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: a null hint lets the kernel choose a fresh address range,
        // so the new mapping aliases no existing Rust object. The fd is open
        // for the call. The mapping stays valid until `Drop` unmaps it; the
        // file is never shrunk while mapped by a live side (see `named`).
        let raw = unsafe {
            rustix::mm::mmap(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )
        }?;
        let ptr =
            NonNull::new(raw.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len, fd })
    }

    /// The first byte (page-aligned).
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The file behind the mapping (locks are taken on it).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the range `map` obtained, unmapped
        // once, here; every reference into it borrowed `self` (or the
        // segment/ports that own `self`), so none outlives this call.
        let result = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        debug_assert!(result.is_ok());
    }
}

/// Opens (creating, mode 0600) the segment file at `path`.
pub(crate) fn open_file(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?)
}

/// Holds the creation lock on `fd` until dropped.
#[derive(Debug)]
pub(crate) struct CreationLock<'a>(BorrowedFd<'a>);

impl<'a> CreationLock<'a> {
    /// Blocks until no other process is creating or validating the segment.
    pub(crate) fn take(fd: BorrowedFd<'a>) -> io::Result<Self> {
        rustix::fs::flock(fd, FlockOperation::LockExclusive)?;
        Ok(Self(fd))
    }
}

impl Drop for CreationLock<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, FlockOperation::Unlock);
    }
}

fn side_byte(plane: Plane) -> libc::off_t {
    match plane {
        Plane::Control => 0,
        Plane::Data => 1,
    }
}

fn side_lock(fd: BorrowedFd<'_>, cmd: libc::c_int, plane: Plane) -> io::Result<libc::flock> {
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: side_byte(plane),
        l_len: 1,
        // Must be zero for open-file-description locks.
        l_pid: 0,
    };
    // SAFETY: `fd` is an open descriptor for the duration of the call and
    // `lock` is a valid, initialized `struct flock` that the kernel reads
    // (SETLK) or overwrites (GETLK) in place; nothing else aliases it.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut lock as *mut libc::flock) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(lock)
}

/// Takes `plane`'s side lock on the segment file. `Ok(false)`: another
/// open file description (another live process for that side) holds it.
pub(crate) fn lock_side(fd: BorrowedFd<'_>, plane: Plane) -> io::Result<bool> {
    match side_lock(fd, libc::F_OFD_SETLK, plane) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether some other open file description holds `plane`'s side lock,
/// that is, whether that side's process is alive.
pub(crate) fn side_held_elsewhere(fd: BorrowedFd<'_>, plane: Plane) -> io::Result<bool> {
    let lock = side_lock(fd, libc::F_OFD_GETLK, plane)?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
#[cfg(not(miri))]
mod tests {
    use super::*;

    #[test]
    fn an_anonymous_mapping_is_zeroed_and_writable() {
        let m = Mapping::anonymous(8_192).unwrap();
        assert_eq!(m.base().as_ptr().align_offset(4_096), 0);
        // SAFETY: (test) in bounds of the 8 KiB mapping, which is alive.
        unsafe {
            assert_eq!(*m.base().as_ptr().add(8_191), 0);
            *m.base().as_ptr().add(8_191) = 7;
            assert_eq!(*m.base().as_ptr().add(8_191), 7);
        }
    }

    #[test]
    fn a_side_lock_is_exclusive_and_visible_to_the_other_side() {
        let dir = std::env::temp_dir().join(format!("gh-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seg");
        let a = open_file(&path).unwrap();
        let b = open_file(&path).unwrap();
        assert!(!side_held_elsewhere(b.as_fd(), Plane::Control).unwrap());
        assert!(lock_side(a.as_fd(), Plane::Control).unwrap());
        assert!(!lock_side(b.as_fd(), Plane::Control).unwrap());
        assert!(side_held_elsewhere(b.as_fd(), Plane::Control).unwrap());
        assert!(!side_held_elsewhere(a.as_fd(), Plane::Control).unwrap());
        assert!(lock_side(b.as_fd(), Plane::Data).unwrap());
        drop(a);
        assert!(!side_held_elsewhere(b.as_fd(), Plane::Control).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Eventfd doorbells: one per direction per core.
//!
//! A side *owns* the doorbells it waits on (its inbound bells) and holds a
//! descriptor for each doorbell of the peer it rings (its outbound bells).
//! In one process both are the same eventfds. Across processes the sides
//! trade their inbound bells over the link socket (see `link`) and each
//! installs what it received over its outbound descriptors with `dup3`:
//! the descriptor number a core thread rings never changes or closes, only
//! the eventfd behind it does, atomically, so a ring in flight lands on
//! either the old or the new eventfd and never on a reused number.
//!
//! All eventfds are non-blocking and close-on-exec. Ringing a saturated
//! eventfd (`EAGAIN`) is not an error: it is already rung.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};

/// Creates a doorbell: an eventfd, non-blocking, close-on-exec.
pub(crate) fn create() -> io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(
        0,
        EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
    )?)
}

/// Rings `bell` (adds 1 to the eventfd counter).
pub(crate) fn ring(bell: BorrowedFd<'_>) -> io::Result<()> {
    match rustix::io::write(bell, &1_u64.to_ne_bytes()) {
        Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Resets `bell`; `true` if it had been rung.
pub(crate) fn drain(bell: BorrowedFd<'_>) -> io::Result<bool> {
    let mut buf = [0_u8; 8];
    match rustix::io::read(bell, &mut buf) {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::AGAIN) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Blocks until `bell` is rung or `timeout` passes (`None`: no limit);
/// `true` if it is rung. Does not reset it.
pub(crate) fn wait(bell: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let timeout = timeout.map(|t| Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let mut fds = [PollFd::new(&bell, PollFlags::IN)];
    loop {
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One side's doorbells, indexed by core.
#[derive(Debug)]
pub(crate) struct Bells {
    /// Rung by the peer, waited on by this side.
    inbound: Vec<OwnedFd>,
    /// Rung by this side; replaced in place when the peer (re)links.
    outbound: Vec<OwnedFd>,
}

impl Bells {
    /// Bells for one process: `inbound[c]` is waited on here and
    /// `outbound[c]` rings the peer (the caller pairs them with the peer's).
    pub(crate) fn new(inbound: Vec<OwnedFd>, outbound: Vec<OwnedFd>) -> Self {
        debug_assert_eq!(inbound.len(), outbound.len());
        Self { inbound, outbound }
    }

    /// Fresh inbound bells and placeholder outbound bells (rung into the
    /// void until the peer links) for `cores` cores.
    pub(crate) fn unlinked(cores: usize) -> io::Result<Self> {
        let inbound = (0..cores).map(|_| create()).collect::<io::Result<_>>()?;
        let outbound = (0..cores).map(|_| create()).collect::<io::Result<_>>()?;
        Ok(Self { inbound, outbound })
    }

    pub(crate) fn inbound(&self, core: usize) -> BorrowedFd<'_> {
        self.inbound[core].as_fd()
    }

    pub(crate) fn outbound(&self, core: usize) -> BorrowedFd<'_> {
        self.outbound[core].as_fd()
    }

    pub(crate) fn inbound_all(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.inbound.iter().map(AsFd::as_fd)
    }

    pub(crate) fn cores(&self) -> usize {
        self.inbound.len()
    }

    /// Makes `outbound[core]` ring `received` from now on.
    pub(crate) fn install(&self, core: usize, received: BorrowedFd<'_>) -> io::Result<()> {
        let target = self.outbound[core].as_raw_fd();
        // SAFETY: both descriptors are open for the call: `received` is
        // borrowed and `target` belongs to `self.outbound[core]`, alive as
        // long as `self`. `dup3` atomically points `target` at `received`'s
        // eventfd and releases the old one; `target` stays open and owned by
        // the same OwnedFd, so no Rust owner loses or aliases a descriptor.
        // Threads ringing `target` concurrently reach one eventfd or the
        // other, which the link protocol tolerates (it rings after install).
        let rc = unsafe { libc::dup3(received.as_raw_fd(), target, libc::O_CLOEXEC) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
#[cfg(not(miri))]
mod tests {
    use super::*;

    #[test]
    fn a_rung_bell_is_readable_until_drained() {
        let bell = create().unwrap();
        assert!(!wait(bell.as_fd(), Some(Duration::ZERO)).unwrap());
        ring(bell.as_fd()).unwrap();
        ring(bell.as_fd()).unwrap();
        assert!(wait(bell.as_fd(), Some(Duration::ZERO)).unwrap());
        assert!(drain(bell.as_fd()).unwrap());
        assert!(!drain(bell.as_fd()).unwrap());
        assert!(!wait(bell.as_fd(), Some(Duration::from_millis(5))).unwrap());
    }

    #[test]
    fn install_redirects_an_outbound_bell_without_changing_its_number() {
        let bells = Bells::unlinked(1).unwrap();
        let before = bells.outbound(0).as_raw_fd();
        let peer = create().unwrap();
        bells.install(0, peer.as_fd()).unwrap();
        assert_eq!(bells.outbound(0).as_raw_fd(), before);
        ring(bells.outbound(0)).unwrap();
        assert!(drain(peer.as_fd()).unwrap());
    }
}

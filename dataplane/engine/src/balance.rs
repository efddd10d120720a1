//! Accept balancing: a core hands a connection it just accepted to the core
//! with the fewest open sessions.
//!
//! `SO_REUSEPORT` spreads connections over the cores' listeners by a hash
//! of the four-tuple: even over many connections, lumpy over a few (eight
//! connections on two cores land 6/2 or worse more than one time in four,
//! 5/3 more than two times in five), and a core with more sessions answers
//! each of them later. HAProxy's threads pick the least loaded thread at accept;
//! this does the same once per connection: when a core accepts while
//! another core owns fewer sessions, it gives the descriptor to that core
//! (through the target's inbox, a `flume` channel whose receive wakes the
//! target's runtime). Every byte of the session then moves on the target
//! core; nothing of it crosses cores.
//!
//! [`Loads`] is the one structure the cores share: a counter per core, each
//! in its own cache line, of the sessions it owns plus the connections on
//! their way to it. It is written at accept, hand-off and session end,
//! never per packet. The counts are a hint: two cores may pick the same
//! target in the same instant, which the next accepts even out.
#![allow(unsafe_code)]

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use monoio::net::TcpStream;

use crate::handler::ListenerId;

/// Sessions each core owns (or is about to), as every core sees them.
#[derive(Debug)]
pub(crate) struct Loads {
    slots: Box<[Slot]>,
}

/// One core's count, alone in its cache line so two cores' updates do not
/// contend.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot(AtomicU32);

impl Loads {
    pub(crate) fn new(cores: usize) -> Loads {
        Loads {
            slots: (0..cores).map(|_| Slot::default()).collect(),
        }
    }

    /// `core` owns one more session (or one is on its way to it).
    pub(crate) fn add(&self, core: usize) {
        if let Some(slot) = self.slots.get(core) {
            slot.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One of `core`'s sessions ended (or never arrived).
    pub(crate) fn remove(&self, core: usize) {
        if let Some(slot) = self.slots.get(core) {
            // Never below zero, whatever the order of events.
            let _ = slot
                .0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Where a connection `own` just accepted should run: `Some(core)`
    /// when another core owns fewer sessions than `own`, else `None`.
    pub(crate) fn pick(&self, own: usize) -> Option<usize> {
        pick(
            self.slots.iter().map(|slot| slot.0.load(Ordering::Relaxed)),
            own,
        )
    }

    #[cfg(test)]
    fn get(&self, core: usize) -> u32 {
        self.slots[core].0.load(Ordering::Relaxed)
    }
}

/// The policy, on plain numbers: the least loaded core (the lowest index
/// among equals) if it owns fewer sessions than `own`; `None` keeps the
/// connection where it is (ties included: a hand-off costs a wake-up).
pub(crate) fn pick(loads: impl Iterator<Item = u32>, own: usize) -> Option<usize> {
    let mut own_load = None;
    let mut least: Option<(usize, u32)> = None;
    for (core, load) in loads.enumerate() {
        if core == own {
            own_load = Some(load);
        } else if least.is_none_or(|(_, seen)| load < seen) {
            least = Some((core, load));
        }
    }
    match (own_load, least) {
        (Some(own_load), Some((core, load))) if load < own_load => Some(core),
        _ => None,
    }
}

/// A connection on its way from the core that accepted it to the core that
/// will serve it.
#[derive(Debug)]
pub(crate) struct Handoff {
    pub(crate) stream: std::net::TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) listener: ListenerId,
    pub(crate) local: SocketAddr,
}

/// The cores' shared loads and every core's inbox sender (indexed by core).
#[derive(Debug)]
pub(crate) struct Peers {
    pub(crate) loads: Arc<Loads>,
    pub(crate) inboxes: Arc<[flume::Sender<Handoff>]>,
}

/// What a core needs to balance: the peers and its own inbox.
#[derive(Debug)]
pub(crate) struct Balance {
    pub(crate) peers: Peers,
    pub(crate) inbox: flume::Receiver<Handoff>,
}

impl Balance {
    /// One `Balance` per core, or `None` for a single core (nothing to
    /// balance).
    pub(crate) fn for_cores(cores: usize) -> Option<Vec<Balance>> {
        if cores < 2 {
            return None;
        }
        let loads = Arc::new(Loads::new(cores));
        let (senders, inboxes): (Vec<_>, Vec<_>) = (0..cores).map(|_| flume::unbounded()).unzip();
        let senders: Arc<[flume::Sender<Handoff>]> = Arc::from(senders);
        Some(
            inboxes
                .into_iter()
                .map(|inbox| Balance {
                    peers: Peers {
                        loads: loads.clone(),
                        inboxes: senders.clone(),
                    },
                    inbox,
                })
                .collect(),
        )
    }
}

/// Takes the descriptor out of this core's runtime (deregistering it from
/// the legacy driver's poller) so another core can adopt it with
/// `TcpStream::from_std`.
pub(crate) fn detach(stream: TcpStream) -> std::net::TcpStream {
    let fd = stream.into_raw_fd();
    // SAFETY: `into_raw_fd` ended monoio's ownership of `fd` (a freshly
    // accepted stream has no other reference; monoio panics rather than
    // give up a shared descriptor) without closing it, so the std stream
    // becomes its only owner and closes it exactly once.
    unsafe { std::net::TcpStream::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_off_only_to_a_core_with_fewer_sessions() {
        assert_eq!(pick([3, 1].into_iter(), 0), Some(1));
        assert_eq!(pick([1, 3].into_iter(), 0), None);
        assert_eq!(pick([2, 2].into_iter(), 0), None, "a tie stays");
        assert_eq!(pick([2, 2, 1, 1].into_iter(), 0), Some(2), "lowest index");
        assert_eq!(pick([0, 5, 0].into_iter(), 1), Some(0));
        assert_eq!(pick([4].into_iter(), 0), None, "one core");
        assert_eq!(pick([1, 0].into_iter(), 7), None, "unknown core");
    }

    #[test]
    fn loads_count_per_core_and_never_go_below_zero() {
        let loads = Loads::new(2);
        loads.add(0);
        loads.add(0);
        loads.add(1);
        assert_eq!(loads.pick(0), Some(1));
        assert_eq!(loads.pick(1), None);
        loads.remove(0);
        loads.remove(1);
        loads.remove(1);
        assert_eq!((loads.get(0), loads.get(1)), (1, 0));
        loads.add(9);
        loads.remove(9);
    }

    #[test]
    fn a_detached_stream_still_carries_the_connection() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for legacy in [false, true] {
            let mut peer = std::net::TcpStream::connect(addr).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            let detached = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let detach_on = |accepted| async move {
                            detach(TcpStream::from_std(accepted).unwrap())
                        };
                        if legacy {
                            monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                                .build()
                                .unwrap()
                                .block_on(detach_on(accepted))
                        } else {
                            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                                .build()
                                .unwrap()
                                .block_on(detach_on(accepted))
                        }
                    })
                    .join()
                    .unwrap()
            });
            // The runtime that held it is gone; the descriptor lives on.
            let mut detached = detached;
            detached.set_nonblocking(false).unwrap();
            peer.write_all(b"ping").unwrap();
            let mut got = [0; 4];
            detached.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");
            detached.write_all(b"pong").unwrap();
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"pong");
        }
    }
}

//! The layout of the shared segment: header, per-side liveness, rings.
//!
//! ```text
//! offset                       size           contents
//!      0                        128           identity: magic "GHCHAN01", layout
//!                                             version, cores, slots per ring, slot
//!                                             bytes, total bytes, instance nonce
//!    128                        128           control-plane side: generation, attached,
//!                                             pid, heartbeat (monotonic ms)
//!    256                        128           data-plane side: same fields
//!   4096 + (2c + d) x R           R           ring of core c, direction d
//!                                             (d = 0 requests, 1 answers),
//!                                             R = ring::ring_bytes(slots)
//! ```
//!
//! Every shared field is an atomic, written once (identity, before the
//! magic is published with Release) or by its owning side; the ring module
//! owns the ring bytes. The segment runs on any page-aligned memory:
//! a mapping in production, a heap block in tests.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::ids::{CoreId, Generation, MonotonicMillis};
use crate::mapping::Mapping;
use crate::message::SLOT_BYTES;
use crate::ring::{CachePadded, RawRing, ring_bytes};

/// The most cores one segment serves.
pub const MAX_CORES: u16 = 256;
/// The most slots in one ring.
pub const MAX_SLOTS_PER_RING: u32 = 65_536;
/// A sensible ring size: 1,024 slots of 256 bytes (256 KiB per ring).
pub const DEFAULT_SLOTS_PER_RING: u32 = 1_024;

const MAGIC: u64 = u64::from_le_bytes(*b"GHCHAN01");
const LAYOUT_VERSION: u32 = 1;
const HEADER_REGION_BYTES: usize = 4_096;

/// Which plane a side of the channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plane {
    /// The tokio control plane: consumes requests, produces answers.
    Control,
    /// The data-plane cores: produce requests, consume answers.
    Data,
}

impl Plane {
    /// The other side.
    pub fn peer(self) -> Plane {
        match self {
            Plane::Control => Plane::Data,
            Plane::Data => Plane::Control,
        }
    }

    fn index(self) -> usize {
        match self {
            Plane::Control => 0,
            Plane::Data => 1,
        }
    }
}

impl std::fmt::Display for Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Plane::Control => "control-plane",
            Plane::Data => "data-plane",
        })
    }
}

/// Which ring of a core's pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Core -> control plane.
    Requests,
    /// Control plane -> core.
    Answers,
}

/// How many cores and how many slots per ring a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    cores: u16,
    slots_per_ring: u32,
}

/// A geometry outside the supported range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// Zero cores or more than [`MAX_CORES`].
    #[error("core count {0} is outside 1..={MAX_CORES}")]
    Cores(u16),
    /// Not a power of two in `2..=`[`MAX_SLOTS_PER_RING`].
    #[error("slots per ring {0} is not a power of two in 2..={MAX_SLOTS_PER_RING}")]
    Slots(u32),
}

impl Geometry {
    /// Validates `cores` (1..=256) and `slots_per_ring` (power of two,
    /// 2..=65,536).
    pub fn new(cores: u16, slots_per_ring: u32) -> Result<Self, GeometryError> {
        if cores == 0 || cores > MAX_CORES {
            return Err(GeometryError::Cores(cores));
        }
        if !slots_per_ring.is_power_of_two() || !(2..=MAX_SLOTS_PER_RING).contains(&slots_per_ring)
        {
            return Err(GeometryError::Slots(slots_per_ring));
        }
        Ok(Self {
            cores,
            slots_per_ring,
        })
    }

    /// Data-plane cores (ring pairs).
    pub fn cores(&self) -> u16 {
        self.cores
    }

    /// Slots in each ring.
    pub fn slots_per_ring(&self) -> u32 {
        self.slots_per_ring
    }

    /// Size of the whole segment in bytes.
    pub fn segment_bytes(&self) -> usize {
        HEADER_REGION_BYTES + 2 * usize::from(self.cores) * ring_bytes(self.slots_per_ring)
    }

    fn ring_offset(&self, core: u16, direction: Direction) -> usize {
        let index = 2 * usize::from(core)
            + match direction {
                Direction::Requests => 0,
                Direction::Answers => 1,
            };
        HEADER_REGION_BYTES + index * ring_bytes(self.slots_per_ring)
    }
}

/// Why existing memory is not a segment of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The magic is missing: not a channel segment (or not initialized).
    #[error("not a gatehouse channel segment")]
    Foreign,
    /// Written by a build with another layout.
    #[error("segment layout version {0}, this build speaks {LAYOUT_VERSION}")]
    Version(u32),
    /// Created for another geometry.
    #[error(
        "segment holds {found_cores} cores x {found_slots} slots, expected {expected_cores} x {expected_slots}"
    )]
    Geometry {
        /// Cores in the segment.
        found_cores: u32,
        /// Slots per ring in the segment.
        found_slots: u32,
        /// Cores asked for.
        expected_cores: u16,
        /// Slots per ring asked for.
        expected_slots: u32,
    },
    /// The memory is shorter than the geometry needs.
    #[error("segment of {found} bytes, {expected} needed")]
    Size {
        /// Bytes available.
        found: usize,
        /// Bytes needed.
        expected: usize,
    },
}

#[repr(C)]
struct Identity {
    magic: AtomicU64,
    layout_version: AtomicU32,
    cores: AtomicU32,
    slots_per_ring: AtomicU32,
    slot_bytes: AtomicU32,
    total_bytes: AtomicU64,
    instance: AtomicU64,
}

/// One side's liveness record, written only by that side.
#[repr(C)]
pub(crate) struct SideState {
    generation: AtomicU32,
    attached: AtomicU32,
    pid: AtomicU32,
    _reserved: AtomicU32,
    heartbeat_ms: AtomicU64,
}

#[repr(C)]
struct SegmentHeader {
    identity: CachePadded<Identity>,
    sides: [CachePadded<SideState>; 2],
}

const _: () = assert!(size_of::<SegmentHeader>() <= HEADER_REGION_BYTES);

/// The memory behind a segment.
#[derive(Debug)]
pub(crate) enum Memory {
    /// A shared mapping (memfd or named file).
    Mapped(Mapping),
    /// A heap block (tests).
    #[cfg(test)]
    Heap(crate::heap::HeapRegion),
}

impl Memory {
    fn base(&self) -> NonNull<u8> {
        match self {
            Memory::Mapped(m) => m.base(),
            #[cfg(test)]
            Memory::Heap(h) => h.base(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Memory::Mapped(m) => m.len(),
            #[cfg(test)]
            Memory::Heap(h) => h.len(),
        }
    }

    /// The mapping, when there is one (named segments lock through it).
    pub(crate) fn mapping(&self) -> Option<&Mapping> {
        match self {
            Memory::Mapped(m) => Some(m),
            #[cfg(test)]
            Memory::Heap(_) => None,
        }
    }
}

/// A validated segment over its memory.
#[derive(Debug)]
pub(crate) struct Segment {
    memory: Memory,
    geometry: Geometry,
}

impl Segment {
    /// Writes a fresh identity into zeroed `memory` (ring indices and sides
    /// start at zero), publishing the magic last.
    pub(crate) fn initialize(
        memory: Memory,
        geometry: Geometry,
        instance: u64,
    ) -> Result<Self, LayoutError> {
        Self::check_size(&memory, geometry)?;
        let segment = Self { memory, geometry };
        let id = &segment.header().identity.0;
        id.layout_version.store(LAYOUT_VERSION, Ordering::Relaxed);
        id.cores.store(u32::from(geometry.cores), Ordering::Relaxed);
        id.slots_per_ring
            .store(geometry.slots_per_ring, Ordering::Relaxed);
        // SLOT_BYTES is 256: fits.
        id.slot_bytes.store(SLOT_BYTES as u32, Ordering::Relaxed);
        id.total_bytes
            .store(geometry.segment_bytes() as u64, Ordering::Relaxed);
        id.instance.store(instance, Ordering::Relaxed);
        id.magic.store(MAGIC, Ordering::Release);
        Ok(segment)
    }

    /// Checks that `memory` holds a segment of `geometry`.
    pub(crate) fn validate(memory: Memory, geometry: Geometry) -> Result<Self, LayoutError> {
        if memory.len() < HEADER_REGION_BYTES {
            return Err(LayoutError::Size {
                found: memory.len(),
                expected: geometry.segment_bytes(),
            });
        }
        let segment = Self { memory, geometry };
        let id = &segment.header().identity.0;
        if id.magic.load(Ordering::Acquire) != MAGIC {
            return Err(LayoutError::Foreign);
        }
        let version = id.layout_version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(LayoutError::Version(version));
        }
        let found_cores = id.cores.load(Ordering::Relaxed);
        let found_slots = id.slots_per_ring.load(Ordering::Relaxed);
        let slot_bytes = id.slot_bytes.load(Ordering::Relaxed);
        let total = id.total_bytes.load(Ordering::Relaxed);
        if found_cores != u32::from(geometry.cores)
            || found_slots != geometry.slots_per_ring
            || slot_bytes as usize != SLOT_BYTES
            || total != geometry.segment_bytes() as u64
        {
            return Err(LayoutError::Geometry {
                found_cores,
                found_slots,
                expected_cores: geometry.cores,
                expected_slots: geometry.slots_per_ring,
            });
        }
        Self::check_size(&segment.memory, geometry)?;
        Ok(segment)
    }

    fn check_size(memory: &Memory, geometry: Geometry) -> Result<(), LayoutError> {
        let expected = geometry.segment_bytes();
        if memory.len() < expected {
            return Err(LayoutError::Size {
                found: memory.len(),
                expected,
            });
        }
        Ok(())
    }

    fn header(&self) -> &SegmentHeader {
        // SAFETY: the memory is page-aligned (mmap or a 4096-aligned heap
        // block) and at least HEADER_REGION_BYTES long (checked by both
        // constructors), so the header is in bounds and aligned. It is made
        // of atomics only, valid for any bit pattern including zero, and
        // atomics may be mutated through `&` by other threads or processes.
        // The reference lives no longer than `self`, which owns the memory.
        unsafe { self.memory.base().cast::<SegmentHeader>().as_ref() }
    }

    pub(crate) fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub(crate) fn memory(&self) -> &Memory {
        &self.memory
    }

    /// The nonce written at creation; both sides of a link compare it.
    pub(crate) fn instance(&self) -> u64 {
        self.header().identity.0.instance.load(Ordering::Relaxed)
    }

    pub(crate) fn side(&self, plane: Plane) -> &SideState {
        &self.header().sides[plane.index()].0
    }

    /// The ring of `core` in `direction`. The caller keeps `self` alive for
    /// as long as the ring is used (ports hold the segment in an `Arc`);
    /// `Producer::new` and `Consumer::new` state the one-end-each rule.
    pub(crate) fn ring(&self, core: CoreId, direction: Direction) -> RawRing {
        assert!(core.0 < self.geometry.cores, "core id beyond geometry");
        let offset = self.geometry.ring_offset(core.0, direction);
        // SAFETY: `offset` is a multiple of 128 from a page-aligned base,
        // and offset + ring_bytes(slots) <= segment_bytes() <= memory length
        // (checked at construction). The ring bytes were zeroed at creation
        // and are only touched by the ring module. Slots is a power of two
        // >= 2 (Geometry). Lifetime and the one-producer/one-consumer rule
        // are the caller's, as documented above and on the ring's ends.
        unsafe { RawRing::new(self.memory.base().add(offset), self.geometry.slots_per_ring) }
    }
}

/// What one side's record says, read by the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SideRecord {
    pub(crate) generation: Generation,
    pub(crate) attached: bool,
    pub(crate) pid: u32,
    pub(crate) heartbeat: MonotonicMillis,
}

impl SideState {
    /// Bumps the generation (never to zero) and marks the side attached.
    pub(crate) fn attach(&self, pid: u32, now: MonotonicMillis) -> Generation {
        let mut next = self.generation.load(Ordering::Acquire).wrapping_add(1);
        if next == 0 {
            next = 1;
        }
        self.pid.store(pid, Ordering::Relaxed);
        self.heartbeat_ms.store(now.0, Ordering::Release);
        self.generation.store(next, Ordering::Release);
        self.attached.store(1, Ordering::Release);
        Generation(next)
    }

    pub(crate) fn beat(&self, now: MonotonicMillis) {
        self.heartbeat_ms.fetch_max(now.0, Ordering::AcqRel);
    }

    pub(crate) fn detach(&self) {
        self.attached.store(0, Ordering::Release);
    }

    pub(crate) fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    pub(crate) fn record(&self) -> SideRecord {
        SideRecord {
            generation: self.generation(),
            attached: self.attached.load(Ordering::Acquire) != 0,
            pid: self.pid.load(Ordering::Relaxed),
            heartbeat: MonotonicMillis(self.heartbeat_ms.load(Ordering::Acquire)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::HeapRegion;

    fn geometry() -> Geometry {
        Geometry::new(2, 8).unwrap()
    }

    fn fresh() -> Segment {
        let g = geometry();
        Segment::initialize(Memory::Heap(HeapRegion::zeroed(g.segment_bytes())), g, 77).unwrap()
    }

    #[test]
    fn geometry_refuses_odd_slot_counts_and_zero_cores() {
        assert_eq!(Geometry::new(0, 8), Err(GeometryError::Cores(0)));
        assert_eq!(Geometry::new(257, 8), Err(GeometryError::Cores(257)));
        assert_eq!(Geometry::new(1, 1_000), Err(GeometryError::Slots(1_000)));
        assert_eq!(Geometry::new(1, 1), Err(GeometryError::Slots(1)));
        assert_eq!(
            Geometry::new(1, 131_072),
            Err(GeometryError::Slots(131_072))
        );
        assert!(Geometry::new(256, 65_536).is_ok());
    }

    #[test]
    fn rings_do_not_overlap_and_fit_the_segment() {
        let g = geometry();
        let mut offsets = Vec::new();
        for core in 0..g.cores() {
            offsets.push(g.ring_offset(core, Direction::Requests));
            offsets.push(g.ring_offset(core, Direction::Answers));
        }
        for pair in offsets.windows(2) {
            assert_eq!(pair[1] - pair[0], ring_bytes(8));
        }
        assert_eq!(offsets[0], HEADER_REGION_BYTES);
        assert_eq!(
            offsets.last().copied().unwrap() + ring_bytes(8),
            g.segment_bytes()
        );
    }

    #[test]
    fn validates_what_it_initialized() {
        let segment = fresh();
        assert_eq!(segment.instance(), 77);
        let Memory::Heap(heap) = segment.memory else {
            unreachable!()
        };
        let again = Segment::validate(Memory::Heap(heap), geometry()).unwrap();
        assert_eq!(again.instance(), 77);
    }

    #[test]
    fn refuses_zeroed_memory_as_foreign() {
        let g = geometry();
        let memory = Memory::Heap(HeapRegion::zeroed(g.segment_bytes()));
        assert_eq!(
            Segment::validate(memory, g).unwrap_err(),
            LayoutError::Foreign
        );
    }

    #[test]
    fn refuses_a_segment_of_another_geometry() {
        let Memory::Heap(heap) = fresh().memory else {
            unreachable!()
        };
        let err = Segment::validate(Memory::Heap(heap), Geometry::new(1, 8).unwrap()).unwrap_err();
        assert!(matches!(err, LayoutError::Geometry { found_cores: 2, .. }));
    }

    #[test]
    fn attaching_bumps_the_generation_and_detaching_keeps_it() {
        let segment = fresh();
        let side = segment.side(Plane::Data);
        assert_eq!(side.record().generation, Generation(0));
        assert!(!side.record().attached);
        assert_eq!(side.attach(10, MonotonicMillis(5)), Generation(1));
        side.beat(MonotonicMillis(9));
        side.beat(MonotonicMillis(7));
        let record = side.record();
        assert!(record.attached);
        assert_eq!(record.heartbeat, MonotonicMillis(9));
        side.detach();
        assert!(!side.record().attached);
        assert_eq!(side.attach(11, MonotonicMillis(20)), Generation(2));
        assert_eq!(
            segment.side(Plane::Control).record().generation,
            Generation(0)
        );
    }

    #[test]
    fn each_ring_of_a_segment_carries_its_own_messages() {
        use crate::ring::{Consumer, Producer};
        let segment = fresh();
        let mut producers = Vec::new();
        for core in 0..2 {
            for dir in [Direction::Requests, Direction::Answers] {
                // SAFETY: (test) one producer per ring.
                let producer = unsafe { Producer::new(segment.ring(CoreId(core), dir)) };
                producers.push((core, dir, producer));
            }
        }
        for (i, (_, _, p)) in producers.iter_mut().enumerate() {
            let _ = p.try_push(&[u8::try_from(i).unwrap(); 4]).unwrap();
        }
        for (i, (core, dir, _)) in producers.iter().enumerate() {
            // SAFETY: (test) one consumer per ring.
            let mut c = unsafe { Consumer::new(segment.ring(CoreId(*core), *dir)) };
            let mut slot = [0; SLOT_BYTES];
            assert!(c.try_pop(&mut slot).unwrap());
            assert_eq!(slot[0], u8::try_from(i).unwrap());
            assert!(!c.try_pop(&mut slot).unwrap());
        }
    }
}

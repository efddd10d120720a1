//! Test memory: a zeroed, page-aligned heap block standing in for a shared
//! mapping, so the ring and layout logic run without mmap (and under Miri,
//! which cannot mmap).

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// A zeroed heap block aligned to 4096, freed on drop.
#[derive(Debug)]
pub(crate) struct HeapRegion {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the block is plain memory owned by this value; concurrent access
// to its contents goes through the ring protocol and atomics.
unsafe impl Send for HeapRegion {}
// SAFETY: as above; `&HeapRegion` only hands out the base pointer.
unsafe impl Sync for HeapRegion {}

impl HeapRegion {
    /// Allocates `len` zeroed bytes (`len > 0`).
    pub(crate) fn zeroed(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 4096).unwrap();
        assert!(len > 0);
        // SAFETY: the layout has a non-zero size (asserted above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        Self { ptr, layout }
    }

    /// The first byte.
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with this very layout and
        // is freed once, here.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

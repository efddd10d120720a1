//! Byte views of monoio's rented buffers, for streams that copy through
//! user space (the TLS stream) instead of handing the buffer to the kernel.
//!
//! monoio's I/O traits take buffers by value (`IoBuf`, `IoBufMut`) and only
//! expose raw pointers. These three functions are the only `unsafe` code of
//! the gateway front; each leans on the contract of an `unsafe trait` that
//! the buffer's implementor promised to uphold.
#![allow(unsafe_code)]

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBufMut, IoVecWrapperMut};
use monoio::io::AsyncReadRent;

/// The initialised bytes of `buf`.
pub(crate) fn filled<T: IoBuf>(buf: &T) -> &[u8] {
    // SAFETY: `IoBuf` is an unsafe trait: its implementor guarantees that
    // `read_ptr()` points to `bytes_init()` initialised bytes which stay
    // valid and unchanged while the buffer is not moved or mutated; the
    // returned slice borrows `buf`, so neither can happen while it lives.
    unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) }
}

/// Copies as much of `src` as fits into `buf` (from its write position, as
/// a `read` would) and marks those bytes initialised; returns the count.
pub(crate) fn fill_from<T: IoBufMut>(buf: &mut T, src: &[u8]) -> usize {
    let n = src.len().min(buf.bytes_total());
    // SAFETY: `IoBufMut` is an unsafe trait: `write_ptr()` is valid for
    // writes of `bytes_total()` bytes, and `n` is no more than that. `src`
    // cannot overlap memory owned by `buf`, which we hold by `&mut`.
    // `set_init(n)` declares exactly the `n` bytes just written, which is
    // how monoio's own `&[u8]` reader fills a rented buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), buf.write_ptr(), n);
        buf.set_init(n);
    }
    n
}

/// `readv` in terms of `read`: reads into the first non-empty iovec only
/// (a short read is always allowed), then marks the bytes initialised.
pub(crate) async fn readv_first<R, T>(reader: &mut R, buf: T) -> BufResult<usize, T>
where
    R: AsyncReadRent,
    T: IoVecBufMut,
{
    let wrapper = match IoVecWrapperMut::new(buf) {
        Ok(wrapper) => wrapper,
        Err(buf) => return (Ok(0), buf),
    };
    let (result, wrapper) = reader.read(wrapper).await;
    let mut buf = wrapper.into_inner();
    if let Ok(n) = result {
        // SAFETY: `IoVecWrapperMut` exposes the first iovec of `buf` as the
        // write area, so a successful read of `n` bytes initialised exactly
        // the first `n` bytes of the vector, which is what `set_init` of an
        // `IoVecBufMut` counts (monoio's `PrefixedReadIo` does the same).
        unsafe { buf.set_init(n) };
    }
    (result, buf)
}

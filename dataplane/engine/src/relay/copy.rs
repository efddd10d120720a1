//! Copy relay: read into a pooled buffer, write it out, repeat.
//!
//! Works over any monoio owned-buffer stream halves (TLS included). The
//! buffer moves into each read and write and comes back with the result,
//! so the steady state allocates nothing.

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::{Failure, IoOp, RelaySide, Turn};
use crate::pool::BufPool;

/// Moves bytes `src` → `dst` until `src` reaches end of stream, then shuts
/// `dst` down for writing (FIN, or TLS close_notify then FIN). Calls `count`
/// with every chunk written.
pub(crate) async fn pump<R, W>(
    src: &mut R,
    src_side: RelaySide,
    dst: &mut W,
    dst_side: RelaySide,
    bufs: &BufPool,
    mut count: impl FnMut(u64),
) -> Result<(), Failure>
where
    R: AsyncReadRent,
    W: AsyncWriteRent,
{
    let mut loan = bufs.take();
    let mut turn = Turn::default();
    loop {
        let mut buf = loan.lend();
        buf.clear();
        let (read, buf) = src.read(buf).await;
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                loan.restore(buf);
                return Err(Failure::io(src_side, IoOp::Read, e.kind()));
            }
        };
        if n == 0 {
            loan.restore(buf);
            break;
        }
        let (written, buf) = dst.write_all(buf).await;
        loan.restore(buf);
        if let Err(e) = written {
            return Err(Failure::io(dst_side, IoOp::Write, e.kind()));
        }
        count(n as u64);
        turn.moved(n as u64).await;
    }
    // The peer may already be gone; the other direction reports that.
    let _ = dst.shutdown().await;
    Ok(())
}

/// Writes `bytes` to `dst` through pooled buffers (for bytes a handler read
/// ahead, e.g. during detection, that belong to the back end).
pub(crate) async fn write_prefix<W: AsyncWriteRent>(
    dst: &mut W,
    dst_side: RelaySide,
    bytes: &[u8],
    bufs: &BufPool,
) -> Result<(), Failure> {
    let mut loan = bufs.take();
    for chunk in bytes.chunks(crate::pool::BUF_SIZE) {
        let mut buf = loan.lend();
        buf.clear();
        buf.extend_from_slice(chunk);
        let (written, buf) = dst.write_all(buf).await;
        loan.restore(buf);
        if let Err(e) = written {
            return Err(Failure::io(dst_side, IoOp::Write, e.kind()));
        }
    }
    Ok(())
}

//! `gatehouse-load`: drives load through a gateway. Not written yet.
#![forbid(unsafe_code)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    anyhow::bail!("gatehouse-load: not written yet")
}

//! `gatehouse-icatool`: reads an `.ica` file. Not written yet.
#![forbid(unsafe_code)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_wire::rendezvous::fuzz::preamble(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::s2c::dns::fuzz::query(data));

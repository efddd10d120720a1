#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_wire::proxy::fuzz::proxy(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::push::fuzz::device_fields(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::auth::fuzz::otp_attribute(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::auth::fuzz::otpauth_uri(data));

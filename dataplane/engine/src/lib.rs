//! The Gatehouse data plane: monoio cores, listeners, detection, TLS,
//! protocol handlers and zero-copy relays.
//!
//! Not written yet.
#![deny(unsafe_code)]

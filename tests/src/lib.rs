//! Harness shared by the end-to-end tests in `tests/tests/`: starting the
//! real binaries and servers on loopback and stopping them by PID.
#![forbid(unsafe_code)]

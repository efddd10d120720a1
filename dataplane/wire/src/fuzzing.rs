//! Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing`).
//!
//! Each function feeds arbitrary bytes to one parser and checks the
//! properties that must hold for any input; a failed check panics, which the
//! fuzzer reports.

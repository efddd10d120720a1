//! Where the binaries under test are, building them first.
//!
//! An integration test runs from `<target>/<profile>/deps/`; the binaries
//! of the workspace land in `<target>/<profile>/`. Before the first use in
//! a test process, [`bin_dir`] runs
//! `cargo build -p gatehouse -p gatehouse-vda-sim -p gatehouse-push-device
//! -p gatehouse-ctl` (binaries `gatehouse`, `vda-sim`, `push-device`,
//! `gatehousectl`)
//! with that profile and target directory (cargo answers at once when they
//! are fresh), so a test never runs a binary older than the sources. With
//! `GATEHOUSE_E2E_BIN_DIR=DIR` set, the binaries are taken from `DIR` and
//! nothing is built.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Environment variable naming a directory with prebuilt `gatehouse` and
/// `vda-sim`; when set, the harness builds nothing.
pub const BIN_DIR_VAR: &str = "GATEHOUSE_E2E_BIN_DIR";

/// The `gatehouse` binary (package `gatehouse`), built if needed.
pub fn gatehouse() -> PathBuf {
    existing(bin_dir(), "gatehouse")
}

/// The `vda-sim` binary (package `gatehouse-vda-sim`), built if needed.
pub fn vda_sim() -> PathBuf {
    existing(bin_dir(), "vda-sim")
}

/// The `push-device` binary (package `gatehouse-push-device`), built if
/// needed.
pub fn push_device() -> PathBuf {
    existing(bin_dir(), "push-device")
}

/// The `gatehousectl` binary (package `gatehouse-ctl`), built if needed.
pub fn gatehousectl() -> PathBuf {
    existing(bin_dir(), "gatehousectl")
}

/// The `access-client` binary (package `gatehouse-access-client`), built
/// if needed.
pub fn access_client() -> PathBuf {
    existing(bin_dir(), "access-client")
}

/// The directory holding the binaries. The first call in a process builds
/// them (see the module docs); later calls return at once. Panics with
/// cargo's output if the build fails.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| match std::env::var_os(BIN_DIR_VAR) {
        Some(dir) => PathBuf::from(dir),
        None => build(),
    })
}

/// Variables cargo sets for a running test that describe its package.
const PACKAGE_VARS: &[&str] = &[
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// Prefixes of the same, e.g. `CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`.
const PACKAGE_VAR_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_EXE_"];

fn existing(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing (built by `cargo build -p gatehouse -p gatehouse-vda-sim`)",
        path.display()
    );
    path
}

/// Builds both binaries with the profile and target directory of the
/// running test executable; returns `<target>/<profile>`.
fn build() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps")
        .to_owned();
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(name) => name.to_owned(),
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(workspace)
        .args(["build", "--quiet", "--profile", &profile])
        .args(["-p", "gatehouse", "-p", "gatehouse-vda-sim"])
        .args(["-p", "gatehouse-push-device", "-p", "gatehouse-ctl"])
        .args(["-p", "gatehouse-access-client"])
        .args([
            "--bin",
            "gatehouse",
            "--bin",
            "vda-sim",
            "--bin",
            "push-device",
            "--bin",
            "gatehousectl",
            "--bin",
            "access-client",
        ])
        .stdin(Stdio::null());
    // Cargo gives a test process its package's build-time variables
    // (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...). Build scripts such as
    // ring's rerun when those change, so passing them on would rebuild
    // half the dependency tree here and again in the next plain build.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if PACKAGE_VARS.contains(&name)
            || PACKAGE_VAR_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix))
        {
            cargo.env_remove(name);
        }
    }
    // `<target>/<profile>`, unless cross-compiled (`<target>/<triple>/<profile>`):
    // only a cargo target directory holds CACHEDIR.TAG.
    if let Some(target) = profile_dir.parent()
        && target.join("CACHEDIR.TAG").is_file()
    {
        cargo.arg("--target-dir").arg(target);
    }
    let output = cargo.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building the binaries under test failed ({:?}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    profile_dir
}

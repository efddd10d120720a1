//! The TOTP and QR code implementations against independent tools from the
//! system packages: `oathtool --totp` (package `oathtool`) computes codes
//! that `gatehouse::auth::totp` must accept, at fixed times and now; and
//! `zbarimg` (package `zbar-tools`) decodes the QR PNG back to the exact
//! `otpauth://` URI. A missing tool fails the test with the package name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gatehouse::auth::otpauth::{OtpauthUri, qr_png};
use gatehouse::auth::totp::{
    Algorithm, TimeStep, TotpCode, TotpParams, TotpSecret, TotpVerdict, code_at, verify,
};

/// Runs a tool from a system package, failing clearly when it is missing;
/// killed if it has not exited within 30 s.
fn tool(program: &str, package: &str, args: &[&str]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program} ({e}): install the Debian package {package} (.ci/run does)"
            )
        });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn oathtool(args: &[&str]) -> String {
    let output = tool("oathtool", "oathtool", args);
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-auth-tools-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn oathtool_codes_at_fixed_times_are_accepted() {
    let secret = TotpSecret::generate().unwrap();
    let base32 = secret.to_base32();
    for time in [
        59_u64,
        1_111_111_109,
        1_234_567_890,
        1_700_000_015,
        2_000_000_000,
    ] {
        let now = format!("--now=@{time}");
        let printed = oathtool(&["--totp", "-b", &now, &base32]);
        assert_eq!(
            printed,
            code_at(&secret, time, TotpParams::GATEWAY).to_string()
        );
        let code = TotpCode::parse(&printed, TotpParams::GATEWAY).unwrap();
        assert_eq!(
            verify(&secret, code, time, TotpParams::GATEWAY, None),
            TotpVerdict::Accept {
                step: TimeStep(time / 30)
            },
            "oathtool code {printed} at {time}"
        );
    }
}

#[test]
fn oathtool_agrees_on_the_rfc_6238_seeds_for_every_hash() {
    let seeds: [(Algorithm, &str, &[u8]); 3] = [
        (Algorithm::Sha1, "--totp=sha1", b"12345678901234567890"),
        (
            Algorithm::Sha256,
            "--totp=sha256",
            b"12345678901234567890123456789012",
        ),
        (
            Algorithm::Sha512,
            "--totp=sha512",
            b"1234567890123456789012345678901234567890123456789012345678901234",
        ),
    ];
    for (algorithm, flag, seed) in seeds {
        let secret = TotpSecret::from_bytes(seed).unwrap();
        let params = TotpParams::new(algorithm, 8, 30).unwrap();
        for time in [59_u64, 1_234_567_890, 20_000_000_000] {
            let now = format!("--now=@{time}");
            let printed = oathtool(&[flag, "-b", "-d", "8", &now, &secret.to_base32()]);
            assert_eq!(
                printed,
                code_at(&secret, time, params).to_string(),
                "{algorithm:?} at {time}"
            );
        }
    }
}

#[test]
fn oathtool_code_of_now_is_accepted_once() {
    let secret = TotpSecret::generate().unwrap();
    let before = unix_now();
    let printed = oathtool(&["--totp", "-b", &secret.to_base32()]);
    let after = unix_now();
    let code = TotpCode::parse(&printed, TotpParams::GATEWAY).unwrap();
    // The ±1 step window covers a step boundary between the two readings.
    let TotpVerdict::Accept { step } = verify(&secret, code, after, TotpParams::GATEWAY, None)
    else {
        panic!("oathtool code {printed} (between {before} and {after}) refused");
    };
    assert!(
        (TotpParams::GATEWAY.step_at(before)..=TotpParams::GATEWAY.step_at(after)).contains(&step)
    );
    assert_eq!(
        verify(&secret, code, after, TotpParams::GATEWAY, Some(step)),
        TotpVerdict::Replay { step }
    );
}

fn zbarimg(png: &Path) -> String {
    let output = tool(
        "zbarimg",
        "zbar-tools",
        &["--quiet", "--raw", png.to_str().unwrap()],
    );
    let text = String::from_utf8(output.stdout).unwrap();
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}

#[test]
fn zbarimg_decodes_the_qr_png_to_the_exact_uri() {
    let dir = temp_dir("qr");
    let secret = TotpSecret::generate().unwrap();
    let uris = [
        OtpauthUri::gateway("Gatehouse", "alice", secret.clone(), Some("phone")),
        OtpauthUri::gateway(
            "ACME: VPN",
            "bob smith@corp.example",
            secret,
            Some("Pixel 8 Pro"),
        ),
    ];
    for (index, uri) in uris.iter().enumerate() {
        let text = uri.to_string();
        let path = dir.join(format!("qr{index}.png"));
        std::fs::write(&path, qr_png(&text).unwrap()).unwrap();
        let decoded = zbarimg(&path);
        assert_eq!(decoded, text);
        assert_eq!(&OtpauthUri::parse(&decoded).unwrap(), uri);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

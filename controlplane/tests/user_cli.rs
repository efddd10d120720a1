//! End to end: the real `gatehouse user` binary manages local users and OTP
//! devices in a data directory: add, list, passwd, del with exit codes 0, 1
//! (exists / does not exist) and 64 (usage); `otp add` prints a URI whose
//! QR PNG `zbarimg` decodes back, `oathtool` computes a code from it that
//! `otp verify` accepts once; the issuer comes from `[auth]` in the
//! configuration file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse::auth::otpauth::OtpauthUri;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gatehouse-user-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Kills the child on drop unless it was reaped.
struct Reap(Option<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `command` with `stdin` piped in, bounded by [`TIMEOUT`]; the
/// child is killed if the test fails first.
fn bounded(mut command: Command, stdin: &str) -> Run {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let mut guard = Reap(Some(child));
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let start = Instant::now();
    loop {
        let child = guard.0.as_mut().unwrap();
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(start.elapsed() < TIMEOUT, "{command:?} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = guard.0.take().unwrap().wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Runs `gatehouse user ARGS` on `data_dir` with `stdin` piped in.
fn user(data_dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command
        .arg("user")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "warn");
    bounded(command, stdin)
}

/// Runs `gatehouse user ARGS` with a configuration file.
fn user_configured(config: &Path, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command
        .arg("user")
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn");
    bounded(command, "")
}

fn expect(run: &Run, code: i32) {
    assert_eq!(run.code, code, "{run:?}");
}

/// Runs a tool from a system package, failing clearly when it is missing.
fn tool(program: &str, package: &str, args: &[&str]) -> String {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} not found: install the Debian package {package} (.ci/run does)"
    );
    let mut command = Command::new(program);
    command.args(args);
    let run = bounded(command, "");
    assert_eq!(run.code, 0, "{program} failed: {run:?}");
    run.stdout
}

#[test]
fn adds_lists_changes_and_deletes_users_with_exit_codes() {
    let dir = temp_dir("users");
    let data = dir.join("data");
    expect(&user(&data, &["list"], ""), 0);
    let added = user(&data, &["add", "alice", "--password-stdin"], "first pw\n");
    expect(&added, 0);
    assert_eq!(added.stdout, "user alice added\n");
    let mode = std::fs::metadata(data.join("gatehouse.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Standard input is not a terminal: the flag is optional.
    expect(&user(&data, &["add", "bob"], "bob pw\r\n"), 0);
    let again = user(&data, &["add", "alice", "--password-stdin"], "x\n");
    expect(&again, 1);
    assert!(
        again.stderr.contains("user alice already exists"),
        "{again:?}"
    );
    let listed = user(&data, &["list"], "");
    expect(&listed, 0);
    assert_eq!(listed.stdout, "alice\nbob\n");
    expect(
        &user(
            &data,
            &["passwd", "alice", "--password-stdin"],
            "second pw\n",
        ),
        0,
    );
    let missing = user(&data, &["passwd", "carol", "--password-stdin"], "x\n");
    expect(&missing, 1);
    assert!(
        missing.stderr.contains("user carol does not exist"),
        "{missing:?}"
    );
    expect(&user(&data, &["del", "alice"], ""), 0);
    let gone = user(&data, &["del", "alice"], "");
    expect(&gone, 1);
    assert!(
        gone.stderr.contains("user alice does not exist"),
        "{gone:?}"
    );
    assert_eq!(user(&data, &["list"], "").stdout, "bob\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_bad_names_empty_passwords_and_unknown_flags_with_64() {
    let dir = temp_dir("usage");
    let data = dir.join("data");
    let empty = user(&data, &["add", "alice", "--password-stdin"], "\n");
    expect(&empty, 64);
    assert!(empty.stderr.contains("password"), "{empty:?}");
    let padded = user(&data, &["add", " alice", "--password-stdin"], "pw\n");
    expect(&padded, 64);
    assert!(padded.stderr.contains("whitespace"), "{padded:?}");
    expect(&user(&data, &["add"], ""), 64);
    expect(&user(&data, &["list", "--colour"], ""), 64);
    expect(&user(&data, &["otp", "add", "alice", "a=b"], ""), 64);
    expect(&user(&data, &["otp", "verify", "alice", "12ab56"], ""), 64);
    // Nothing was added by the refused commands.
    assert_eq!(user(&data, &["list"], "").stdout, "");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn registers_an_otp_device_whose_qr_and_codes_work_once() {
    let dir = temp_dir("otp");
    let data = dir.join("data");
    let png = dir.join("phone.png");
    expect(&user(&data, &["add", "alice"], "pw\n"), 0);
    let added = user(
        &data,
        &[
            "otp",
            "add",
            "alice",
            "phone",
            "--qr",
            png.to_str().unwrap(),
        ],
        "",
    );
    expect(&added, 0);
    let uri_text = added.stdout.trim_end().to_owned();
    assert!(
        uri_text.starts_with("otpauth://totp/Gatehouse:alice?secret="),
        "{uri_text}"
    );
    let mode = std::fs::metadata(data.join("otp.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The QR code carries exactly the printed URI.
    let decoded = tool(
        "zbarimg",
        "zbar-tools",
        &["--quiet", "--raw", png.to_str().unwrap()],
    );
    assert_eq!(decoded.trim_end_matches('\n'), uri_text);
    let uri = OtpauthUri::parse(&uri_text).unwrap();
    assert_eq!(uri.device.as_deref(), Some("phone"));
    expect(&user(&data, &["otp", "add", "alice", "phone"], ""), 1);
    expect(&user(&data, &["otp", "add", "alice", "tablet"], ""), 0);
    assert_eq!(
        user(&data, &["otp", "list", "alice"], "").stdout,
        "phone\ntablet\n"
    );
    // oathtool computes the code from the URI's secret; the gateway takes
    // it once.
    let code = tool(
        "oathtool",
        "oathtool",
        &["--totp", "-b", &uri.secret.to_base32()],
    );
    let code = code.trim();
    let accepted = user(&data, &["otp", "verify", "alice", code], "");
    expect(&accepted, 0);
    assert_eq!(accepted.stdout, "accepted by device phone\n");
    let replayed = user(&data, &["otp", "verify", "alice", code], "");
    expect(&replayed, 1);
    assert!(replayed.stderr.contains("already used"), "{replayed:?}");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    expect(&user(&data, &["otp", "verify", "alice", wrong], ""), 1);
    expect(&user(&data, &["otp", "del", "alice", "phone"], ""), 0);
    expect(&user(&data, &["otp", "del", "alice", "phone"], ""), 1);
    assert_eq!(
        user(&data, &["otp", "list", "alice"], "").stdout,
        "tablet\n"
    );
    // Deleting the user drops the devices stored for them.
    expect(&user(&data, &["del", "alice"], ""), 0);
    assert_eq!(user(&data, &["otp", "list", "alice"], "").stdout, "");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn takes_the_issuer_and_key_file_from_the_configuration() {
    let dir = temp_dir("config");
    let key = dir.join("otp.key");
    std::fs::write(&key, format!("{}\n", "0f".repeat(32))).unwrap();
    let config = dir.join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[auth]\nissuer = \"ACME VPN\"\notp_key_file = {key:?}\n",
            dir.join("from-config")
        ),
    )
    .unwrap();
    let added = user_configured(&config, &["otp", "add", "dave", "phone"]);
    expect(&added, 0);
    let text = added.stdout;
    assert!(
        text.starts_with("otpauth://totp/ACME%20VPN:dave?"),
        "{text}"
    );
    assert!(dir.join("from-config/gatehouse.db").exists());
    assert!(!dir.join("from-config/otp.key").exists());
    // A bad configuration is a usage error.
    std::fs::write(&config, "[auth]\nissuer = \"\"\n").unwrap();
    let bad = user_configured(&config, &["list"]);
    expect(&bad, 64);
    assert!(bad.stderr.contains("auth.issuer"), "{bad:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

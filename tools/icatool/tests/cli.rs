//! Runs the `gatehouse-icatool` binary: `make` a launch file, then `show` it.
#![allow(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse-icatool");
const SECRET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
const LOGON: &str = "LOGON0123456789XYZ";

fn sta_ticket() -> String {
    format!(";40;STA01;{SECRET}")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// A file in this test's private temporary directory.
fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("icatool-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

fn make() -> String {
    stdout(&run(&[
        "make",
        "--name",
        "Notepad",
        "--sta-ticket",
        &sta_ticket(),
        "--gateway",
        "gw.example.com:443",
        "--logon-ticket",
        LOGON,
        "--reliability-ttl",
        "180",
        "--cgp-security-ticket",
    ]))
}

#[test]
fn make_writes_a_launch_file_with_crlf_lines() {
    let text = make();
    assert!(
        text.starts_with("[Encoding]\r\nInputEncoding=UTF-8\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("\r\nAddress={}\r\n", sta_ticket())),
        "{text}"
    );
    assert!(
        text.contains("\r\nSSLProxyHost=gw.example.com:443\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nCGPAddress=*:2598\r\n"), "{text}");
    assert!(text.contains("\r\nCGPSecurityTicket=On\r\n"), "{text}");
    assert!(text.ends_with("\r\n"));
}

#[test]
fn show_prints_the_launch_with_secrets_masked() {
    let path = temp_file("masked.ica", make().as_bytes());
    let table = stdout(&run(&["show", path.to_str().unwrap()]));
    assert!(!table.contains(SECRET), "{table}");
    assert!(!table.contains(LOGON), "{table}");
    for row in [
        "name             Notepad",
        "address          ;40;STA01;ABCD…",
        "sta id           STA01",
        "ticket version   40",
        "gateway          gw.example.com:443",
        "tls              on",
        "cgp address      *:2598",
        "initial program  #Notepad",
        "logon ticket     LOGO…",
        "reliability ttl  180 s",
        "cgp ticket       on",
    ] {
        assert!(
            table.lines().any(|l| l == row),
            "missing {row:?} in\n{table}"
        );
    }
}

#[test]
fn show_reveals_secrets_only_when_asked() {
    let path = temp_file("reveal.ica", make().as_bytes());
    let table = stdout(&run(&["show", "--reveal", path.to_str().unwrap()]));
    assert!(
        table.contains(&format!("address          {}", sta_ticket())),
        "{table}"
    );
    assert!(table.contains(LOGON), "{table}");
}

#[test]
fn show_prints_json() {
    let path = temp_file("json.ica", make().as_bytes());
    let json = stdout(&run(&["show", "--json", path.to_str().unwrap()]));
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["name"], "Notepad");
    assert_eq!(value["address"], ";40;STA01;ABCD…");
    assert_eq!(value["sta_id"], "STA01");
    assert_eq!(value["ticket_version"], "40");
    assert_eq!(value["gateway"]["host"], "gw.example.com");
    assert_eq!(value["gateway"]["port"], 443);
    assert_eq!(value["cgp_address"], "*:2598");
    assert_eq!(value["session_reliability_ttl"], 180);
    assert_eq!(value["cgp_security_ticket"], true);
    assert_eq!(value["revealed"], false);
    assert!(!json.contains(SECRET) && !json.contains(LOGON), "{json}");
}

#[test]
fn show_reads_stdin_and_tolerates_lf_line_endings() {
    let text = make().replace("\r\n", "\n");
    let mut child = Command::new(BIN)
        .args(["show", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let table = stdout(&child.wait_with_output().unwrap());
    assert!(
        table.contains("gateway          gw.example.com:443"),
        "{table}"
    );
}

#[test]
fn show_fails_on_a_malformed_file_naming_the_line() {
    let path = temp_file(
        "bad.ica",
        b"[ApplicationServers]\nA=\n[A]\nnot a key line\n",
    );
    let output = run(&["show", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 4"), "{stderr}");
}

#[test]
fn show_fails_on_a_missing_file() {
    let output = run(&["show", "/nonexistent/launch.ica"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("opening"));
}

#[test]
fn make_rejects_a_bad_ticket_and_a_bad_gateway() {
    let bad_ticket = run(&[
        "make",
        "--name",
        "A",
        "--sta-ticket",
        ";40;STA01;short",
        "--gateway",
        "gw:443",
    ]);
    assert!(!bad_ticket.status.success());
    assert!(String::from_utf8_lossy(&bad_ticket.stderr).contains("ticket of 5 bytes"));
    let bad_gateway = run(&[
        "make",
        "--name",
        "A",
        "--sta-ticket",
        &sta_ticket(),
        "--gateway",
        "gw",
    ]);
    assert!(!bad_gateway.status.success());
    assert!(String::from_utf8_lossy(&bad_gateway.stderr).contains("host:port"));
}

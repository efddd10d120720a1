//! `/metrics` on the internal listener of the real `gatehouse run`: after
//! a SOCKS launch and a refused ticket it shows the accepts, the refusal by
//! reason and the bytes each way, gathered from the core over the channel,
//! and it parses with the reference Prometheus text parser
//! (`prometheus_client.parser`, Debian package `python3-prometheus-client`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use gatehouse_tests::TIMEOUT;
use gatehouse_tests::gatehouse::Gatehouse;
use gatehouse_tests::socks::{self, REPLY_NOT_ALLOWED, REPLY_SUCCEEDED};
use gatehouse_tests::vda_sim::VdaSim;

/// A ticket of the right form that no STA issued.
const NEVER_ISSUED: &str = ";40;STA01;NEVER0ISSUED0BY0ANY0STA000000000";

/// The system Python, where Debian installs `prometheus_client` (a pyenv
/// `python3` earlier in `PATH` would not see it).
const PYTHON: &str = "/usr/bin/python3";

/// `GET /metrics` at `admin`: the status, the content type and the body.
fn scrape(admin: SocketAddr) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&admin, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// The value of the sample written exactly as `series` (name and labels).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

/// Parses `body` with `prometheus_client.parser`; returns what it printed
/// (`family type samples` per line), panicking with its error otherwise.
fn parse_with_prometheus_client(body: &str) -> String {
    assert!(
        std::path::Path::new(PYTHON).exists(),
        "{PYTHON} is missing: install python3-prometheus-client"
    );
    let script = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families as parse\n\
        for f in parse(sys.stdin.read()):\n    print(f.name, f.type, len(f.samples))\n";
    let mut child = Command::new(PYTHON)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client refuses /metrics: {}\n{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn metrics_show_a_launch_and_a_refusal_gathered_from_the_core_and_parse_as_prometheus_text() {
    let sim = VdaSim::start();
    let gatehouse = Gatehouse::start_logging("", "info,gatehouse=debug,gatehouse_engine=debug");
    let (status, content_type, before) = scrape(gatehouse.admin());
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert_eq!(
        sample(&before, "gatehouse_core_up{core=\"0\"}"),
        Some(1.0),
        "{before}"
    );
    assert_eq!(
        sample(&before, "gatehouse_core_accepts_total{core=\"0\"}"),
        Some(0.0)
    );

    // One launch that relays bytes, one refused ticket.
    let ticket = gatehouse.issue(sim.ica());
    let mut stream = socks::connect_tls(gatehouse.gateway(), &gatehouse.tls_client());
    assert_eq!(socks::launch(&mut stream, &ticket), REPLY_SUCCEEDED);
    socks::expect_detect_and_echo(&mut stream, b"bytes for the counters");
    stream.conn.send_close_notify();
    stream.flush().unwrap();
    drop(stream);
    let mut refused = socks::connect_tls(gatehouse.gateway(), &gatehouse.tls_client());
    assert_eq!(socks::launch(&mut refused, NEVER_ISSUED), REPLY_NOT_ALLOWED);
    socks::expect_closed(&mut refused);

    // The session's bytes are counted when it ends: poll (bounded).
    let refusal = "gatehouse_core_refusals_total{core=\"0\",reason=\"ticket_unknown\"}";
    let up = "gatehouse_core_bytes_total{core=\"0\",direction=\"up\"}";
    let down = "gatehouse_core_bytes_total{core=\"0\",direction=\"down\"}";
    let give_up = Instant::now() + TIMEOUT;
    let after = loop {
        let (_, _, body) = scrape(gatehouse.admin());
        let done = sample(&body, refusal) == Some(1.0)
            && sample(&body, up).is_some_and(|b| b > 0.0)
            && sample(&body, down).is_some_and(|b| b > 0.0)
            && sample(&body, "gatehouse_core_active_sessions{core=\"0\"}") == Some(0.0);
        if done {
            break body;
        }
        assert!(Instant::now() < give_up, "counters never moved:\n{body}");
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        sample(&after, "gatehouse_core_accepts_total{core=\"0\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &after,
            "gatehouse_ticket_redemptions_total{proto=\"socks5\",outcome=\"allowed\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "gatehouse_sta_requests_total{op=\"issue\",outcome=\"ok\"}"
        ),
        Some(1.0)
    );
    assert!(
        sample(&after, "gatehouse_channel_stats_rtt_seconds_count").is_some_and(|n| n >= 2.0),
        "every scrape's round trip is measured"
    );
    assert!(after.contains("gatehouse_channel_depth{core=\"0\",direction=\"to_core\"}"));

    let families = parse_with_prometheus_client(&after);
    for family in [
        "gatehouse_core_accepts counter 1",
        "gatehouse_core_bytes counter 2",
        "gatehouse_channel_stats_rtt_seconds histogram",
        "gatehouse_logins counter 0",
        "gatehouse_broker_decisions counter 0",
    ] {
        assert!(families.contains(family), "{family} in:\n{families}");
    }
    assert_json_log_lines_follow_the_catalogue(&gatehouse.stop_raw());
    assert_eq!(sim.stop().code(), Some(0));
}

/// `--log-format json`: every stderr line is one JSON object with the
/// fixed keys, and every Gatehouse event name is in docs/LOGS.md.
fn assert_json_log_lines_follow_the_catalogue(lines: &[String]) {
    let catalogue_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/LOGS.md");
    let catalogue = std::fs::read_to_string(catalogue_path).unwrap();
    assert!(lines.len() > 5, "the run logged: {lines:?}");
    for line in lines {
        let json: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not one JSON object ({error}): {line}"));
        let object = json.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["fields", "level", "target", "timestamp"], "{line}");
        let name = json["fields"]["message"].as_str().unwrap();
        let target = json["target"].as_str().unwrap();
        if target.starts_with("gatehouse") {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "event names are snake_case: {line}"
            );
            assert!(
                catalogue.contains(&format!("| `{name}` |")),
                "{name} is not in docs/LOGS.md: {line}"
            );
        }
    }
}

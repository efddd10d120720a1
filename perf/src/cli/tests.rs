//! Unit tests of [`super`].

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("gatehouse-load").chain(args.iter().copied()))
}

#[test]
fn fills_in_the_reference_shape_defaults() {
    let cli = parse(&["stream", "--target", "127.0.0.1:9000"]).unwrap();
    let Command::Stream(args) = cli.command else {
        panic!("not stream")
    };
    let config = args.config();
    assert_eq!(
        (config.connections, config.duration, config.write_size),
        (4, Duration::from_secs(6), 65_536)
    );
    assert!(!cli.json);

    let cli = parse(&["connrate", "--target", "127.0.0.1:9000"]).unwrap();
    let Command::Connrate(args) = cli.command else {
        panic!("not connrate")
    };
    let config = args.config().unwrap();
    assert_eq!((config.concurrency, config.message_size), (16, 1024));
    assert!(config.preamble.is_none());

    let cli = parse(&["rr", "--target", "127.0.0.1:9000"]).unwrap();
    let Command::Rr(args) = cli.command else {
        panic!("not rr")
    };
    assert_eq!(
        (args.config().connections, args.config().message_size),
        (8, 1024)
    );
}

#[test]
fn accepts_json_before_or_after_the_subcommand() {
    assert!(
        parse(&["--json", "rr", "--target", "127.0.0.1:1"])
            .unwrap()
            .json
    );
    assert!(
        parse(&["rr", "--target", "127.0.0.1:1", "--json"])
            .unwrap()
            .json
    );
}

#[test]
fn builds_a_socks5_preamble_with_the_ica_port_by_default() {
    let cli = parse(&[
        "connrate",
        "--target",
        "127.0.0.1:1080",
        "--preamble",
        "socks5",
        "--socks-host",
        ";40;STA1;T",
        "--seconds",
        "1.5",
    ])
    .unwrap();
    let Command::Connrate(args) = cli.command else {
        panic!("not connrate")
    };
    let config = args.config().unwrap();
    let preamble = config.preamble.unwrap();
    assert_eq!(
        (preamble.host.as_str(), preamble.port),
        (";40;STA1;T", 1494)
    );
    assert_eq!(config.duration, Duration::from_millis(1500));
}

#[test]
fn rejects_a_socks_host_longer_than_255_bytes() {
    let long = "x".repeat(256);
    let cli = parse(&[
        "connrate",
        "--target",
        "127.0.0.1:1080",
        "--preamble",
        "socks5",
        "--socks-host",
        &long,
    ])
    .unwrap();
    let Command::Connrate(args) = cli.command else {
        panic!("not connrate")
    };
    assert!(matches!(
        args.config(),
        Err(PreambleError::HostTooLong(256))
    ));
}

#[test]
fn rejects_zero_or_unbounded_durations_and_sizes() {
    for bad in [
        &["rr", "--target", "127.0.0.1:1", "--seconds", "0"][..],
        &["rr", "--target", "127.0.0.1:1", "--seconds", "7200"],
        &["rr", "--target", "127.0.0.1:1", "--seconds", "soon"],
        &["stream", "--target", "127.0.0.1:1", "--size", "0"],
        &["stream", "--target", "127.0.0.1:1", "--connections", "0"],
        &["connrate", "--target", "127.0.0.1:1", "--preamble", "http"],
        &["sink"],
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn parses_the_back_ends_and_idle() {
    let cli = parse(&["sink", "--listen", "127.0.0.1:0", "--threads", "1"]).unwrap();
    assert!(
        matches!(cli.command, Command::Sink(ServeArgs { threads: Some(t), .. }) if t.get() == 1)
    );
    let cli = parse(&["idle", "--target", "127.0.0.1:1", "--sources", "4"]).unwrap();
    let Command::Idle(args) = cli.command else {
        panic!("not idle")
    };
    let config = args.config();
    assert_eq!((config.connections, config.sources), (10_000, 4));
}

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
        preamble.destination,
        SocksDestination::Domain(SocksHost::new(";40;STA1;T").unwrap())
    );
    assert_eq!(preamble.port, 1494);
    assert!(config.tls.is_none());
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
    assert_eq!(
        args.config().unwrap_err(),
        ConfigError::Preamble(PreambleError::HostTooLong(256))
    );
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

fn connrate(args: &[&str]) -> Result<ConnrateConfig, ConfigError> {
    let mut all = vec!["connrate", "--target", "127.0.0.1:8443"];
    all.extend_from_slice(args);
    let Command::Connrate(args) = parse(&all).unwrap().command else {
        panic!("not connrate")
    };
    args.config()
}

#[test]
fn plans_tickets_from_an_sta_for_the_worker() {
    let config = connrate(&[
        "--preamble",
        "socks5",
        "--sta-url",
        "http://127.0.0.1:8080/scripts/ctxsta.dll",
        "--worker",
        "127.0.0.1:23102",
    ])
    .unwrap();
    let preamble = config.preamble.unwrap();
    let SocksDestination::Tickets(plan) = preamble.destination else {
        panic!("no tickets: {:?}", preamble.destination)
    };
    assert_eq!(plan.sta.addr, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(plan.sta.path, "/scripts/ctxsta.dll");
    assert_eq!(plan.worker, "127.0.0.1:23102");
    assert_eq!(
        (plan.count, plan.connections, plan.pipeline, preamble.port),
        (sta::DEFAULT_TICKETS, 4, 1, 1494)
    );

    let config = connrate(&[
        "--preamble",
        "socks5",
        "--sta-url",
        "http://127.0.0.1:8080/scripts/ctxsta.dll",
        "--worker",
        "127.0.0.1:23102",
        "--tickets",
        "5000",
        "--sta-connections",
        "2",
        "--sta-pipeline",
        "8",
    ])
    .unwrap();
    let Some(SocksPreamble {
        destination: SocksDestination::Tickets(plan),
        ..
    }) = config.preamble
    else {
        panic!("no tickets")
    };
    assert_eq!((plan.count, plan.connections, plan.pipeline), (5000, 2, 8));
}

#[test]
fn refuses_ticket_options_that_cannot_work() {
    let sta = "http://127.0.0.1:8080/scripts/ctxsta.dll";
    for bad in [
        // no worker
        &["--preamble", "socks5", "--sta-url", sta][..],
        // no preamble
        &["--sta-url", sta, "--worker", "127.0.0.1:1"],
        // a worker without an STA
        &["--preamble", "socks5", "--worker", "127.0.0.1:1"],
        // not http://IP:PORT/PATH
        &[
            "--preamble",
            "socks5",
            "--sta-url",
            "https://127.0.0.1:1/x",
            "--worker",
            "127.0.0.1:1",
        ],
        // unbounded or zero counts
        &[
            "--preamble",
            "socks5",
            "--sta-url",
            sta,
            "--worker",
            "127.0.0.1:1",
            "--tickets",
            "0",
        ],
        &[
            "--preamble",
            "socks5",
            "--sta-url",
            sta,
            "--worker",
            "127.0.0.1:1",
            "--tickets",
            "2000001",
        ],
        &[
            "--preamble",
            "socks5",
            "--sta-url",
            sta,
            "--worker",
            "127.0.0.1:1",
            "--sta-pipeline",
            "257",
        ],
        // two destinations at once
        &[
            "--preamble",
            "socks5",
            "--socks-ip",
            "127.0.0.1",
            "--socks-host",
            "x",
        ],
        &[
            "--preamble",
            "socks5",
            "--sta-url",
            sta,
            "--worker",
            "127.0.0.1:1",
            "--socks-host",
            "x",
        ],
    ] {
        let mut all = vec!["connrate", "--target", "127.0.0.1:8443"];
        all.extend_from_slice(bad);
        assert!(parse(&all).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn connects_to_an_ip_address_for_a_plain_socks_server() {
    let config = connrate(&[
        "--preamble",
        "socks5",
        "--socks-ip",
        "127.0.0.1",
        "--socks-port",
        "23102",
    ])
    .unwrap();
    let preamble = config.preamble.unwrap();
    assert_eq!(
        preamble.destination,
        SocksDestination::Ip("127.0.0.1".parse().unwrap())
    );
    assert_eq!(preamble.port, 23102);
    assert_eq!(
        connrate(&["--socks-ip", "127.0.0.1"]).unwrap_err(),
        ConfigError::NeedsPreamble
    );
}

#[test]
fn builds_tls_options_with_explicit_trust() {
    let config = connrate(&["--tls", "--tls-ca", "/tmp/gateway.crt"]).unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.ca, Some(PathBuf::from("/tmp/gateway.crt")));
    assert_eq!((tls.insecure, tls.resumption), (false, true));
    assert_eq!(tls.server_name, "localhost");

    let config = connrate(&[
        "--tls",
        "--tls-insecure",
        "--tls-server-name",
        "gw.example",
        "--tls-no-resumption",
    ])
    .unwrap();
    let tls = config.tls.unwrap();
    assert_eq!((tls.insecure, tls.resumption), (true, false));
    assert_eq!(tls.server_name, "gw.example");

    assert_eq!(connrate(&["--tls"]).unwrap_err(), ConfigError::NoTrust);
    assert!(parse(&["connrate", "--target", "127.0.0.1:1", "--tls-insecure"]).is_err());
    assert!(
        parse(&[
            "connrate",
            "--target",
            "127.0.0.1:1",
            "--tls",
            "--tls-insecure",
            "--tls-ca",
            "x"
        ])
        .is_err()
    );
}

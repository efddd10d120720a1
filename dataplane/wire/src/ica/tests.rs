use proptest::prelude::*;

use super::*;
use crate::ticket::{StaTicket, TicketError};

const SECRET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

fn sta_ticket() -> StaTicket {
    format!(";40;STA01;{SECRET}").parse().unwrap()
}

const EXAMPLE: &str = "[Encoding]\r\n\
InputEncoding=UTF-8\r\n\
[WFClient]\r\n\
Version=2\r\n\
RemoveICAFile=yes\r\n\
[ApplicationServers]\r\n\
Notepad=\r\n\
[Notepad]\r\n\
Address=;40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345\r\n\
InitialProgram=#Notepad\r\n\
CGPAddress=*:2598\r\n\
SSLEnable=On\r\n\
SSLProxyHost=gw.example.com:443\r\n\
TransportDriver=TCP/IP\r\n\
WinStationDriver=ICA 3.0\r\n\
LogonTicket=0123456789ABCDEF\r\n\
LogonTicketType=CTXS1\r\n\
SessionReliabilityTTL=180\r\n\
CGPSecurityTicket=On\r\n";

fn example() -> IcaFile {
    let ticket = sta_ticket();
    let params = LaunchParams {
        logon_ticket: Some("0123456789ABCDEF"),
        session_reliability_ttl: Some(180),
        cgp_security_ticket: true,
        ..LaunchParams::new("Notepad", &ticket, "gw.example.com", 443)
    };
    launch_file(&params).unwrap()
}

#[test]
fn writes_a_launch_file_byte_for_byte() {
    let file = example();
    assert_eq!(file.encode(), EXAMPLE);
    assert_eq!(file.encoded_len(), EXAMPLE.len());
}

#[test]
fn writes_only_the_required_keys_by_default() {
    let ticket = sta_ticket();
    let file = launch_file(&LaunchParams::new("Desk 1", &ticket, "10.0.0.1", 8443)).unwrap();
    let keys: Vec<_> = file.entries("Desk 1").map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "Address",
            "InitialProgram",
            "CGPAddress",
            "SSLEnable",
            "SSLProxyHost",
            "TransportDriver",
            "WinStationDriver"
        ]
    );
    assert_eq!(file.get("Desk 1", "InitialProgram"), Some("#Desk 1"));
    assert_eq!(file.get("Desk 1", "SSLProxyHost"), Some("10.0.0.1:8443"));
    assert_eq!(file.get(APPLICATION_SERVERS, "Desk 1"), Some(""));
}

#[test]
fn launch_options_override_defaults() {
    let ticket = sta_ticket();
    let extra = [("TWIMode", "On"), ("SSLEnable", "Off")];
    let params = LaunchParams {
        initial_program: Some("notepad.exe"),
        cgp_port: None,
        extra: &extra,
        ..LaunchParams::new("Notepad", &ticket, "[2001:db8::1]", 443)
    };
    let file = launch_file(&params).unwrap();
    assert_eq!(file.get("Notepad", "InitialProgram"), Some("notepad.exe"));
    assert_eq!(file.get("Notepad", "CGPAddress"), None);
    assert_eq!(file.get("Notepad", "TWIMode"), Some("On"));
    assert_eq!(file.get("Notepad", "SSLEnable"), Some("Off"));
    assert_eq!(
        file.get("Notepad", "SSLProxyHost"),
        Some("[2001:db8::1]:443")
    );
}

#[test]
fn rejects_launch_names_that_collide_with_fixed_sections() {
    let ticket = sta_ticket();
    for name in ["Encoding", "wfclient", "APPLICATIONSERVERS"] {
        assert_eq!(
            launch_file(&LaunchParams::new(name, &ticket, "gw", 443)),
            Err(IcaError::ReservedName)
        );
    }
}

#[test]
fn rejects_launch_names_that_cannot_be_written() {
    let ticket = sta_ticket();
    for (name, part, problem) in [
        ("", Part::Key, TextProblem::Empty),
        ("A=B", Part::Key, TextProblem::Equals),
        ("[Evil]", Part::Key, TextProblem::LeadingMarker),
        ("Ev]il", Part::Section, TextProblem::Bracket),
        ("App\r\n[Evil]", Part::Key, TextProblem::ControlChar),
    ] {
        assert_eq!(
            launch_file(&LaunchParams::new(name, &ticket, "gw", 443)),
            Err(IcaError::Invalid { part, problem }),
            "{name:?}"
        );
    }
}

#[test]
fn rejects_gateway_hosts_that_are_not_hosts() {
    let ticket = sta_ticket();
    for host in ["", "gw:443", "gw example", "::1", "[]", "gw\r\nX=1", "[::1"] {
        assert_eq!(
            launch_file(&LaunchParams::new("App", &ticket, host, 443)),
            Err(IcaError::BadGatewayHost),
            "{host:?}"
        );
    }
}

#[test]
fn reads_back_the_launch_it_wrote() {
    let launch = read_launch(&IcaFile::decode(EXAMPLE).unwrap()).unwrap();
    assert_eq!(
        launch,
        Launch {
            name: "Notepad".to_owned(),
            address: format!(";40;STA01;{SECRET}"),
            ticket: Some(sta_ticket()),
            gateway: Some(("gw.example.com".to_owned(), 443)),
            ssl_enable: true,
            cgp_address: Some("*:2598".to_owned()),
            initial_program: Some("#Notepad".to_owned()),
            logon_ticket: Some("0123456789ABCDEF".to_owned()),
            session_reliability_ttl: Some(180),
            cgp_security_ticket: true,
        }
    );
}

#[test]
fn reads_a_direct_launch_without_ticket_or_gateway() {
    let text = "[ApplicationServers]\nDesk=\nOther=\n[Desk]\nAddress=10.1.2.3:1494\n";
    let launch = read_launch(&IcaFile::decode(text).unwrap()).unwrap();
    assert_eq!(launch.name, "Desk");
    assert_eq!(launch.address, "10.1.2.3:1494");
    assert_eq!(launch.ticket, None);
    assert_eq!(launch.gateway, None);
    assert!(!launch.ssl_enable && !launch.cgp_security_ticket);
}

#[test]
fn reads_gateway_ports_and_ipv6_hosts() {
    for (value, host, port) in [
        ("gw", "gw", 443),
        ("gw:8443", "gw", 8443),
        ("[::1]", "[::1]", 443),
        ("[::1]:444", "[::1]", 444),
    ] {
        let text = format!("[ApplicationServers]\nA=\n[A]\nAddress=x\nSSLProxyHost={value}\n");
        let launch = read_launch(&IcaFile::decode(&text).unwrap()).unwrap();
        assert_eq!(launch.gateway, Some((host.to_owned(), port)), "{value}");
    }
}

#[test]
fn rejects_launches_missing_what_a_client_needs() {
    let read = |text: &str| read_launch(&IcaFile::decode(text).unwrap());
    assert_eq!(
        read("[WFClient]\nVersion=2\n"),
        Err(IcaError::NoApplication)
    );
    assert_eq!(
        read("[ApplicationServers]\nA=\n"),
        Err(IcaError::MissingAppSection)
    );
    assert_eq!(
        read("[ApplicationServers]\nA=\n[a]\nInitialProgram=#A\n"),
        Err(IcaError::MissingKey { key: "Address" })
    );
    assert_eq!(
        read("[ApplicationServers]\nA=\n[A]\nAddress=;40;STA01;short\n"),
        Err(IcaError::BadTicket(TicketError::TicketLength { len: 5 }))
    );
    for proxy in ["gw:http", "gw:70000", ":443", "gw:"] {
        assert_eq!(
            read(&format!(
                "[ApplicationServers]\nA=\n[A]\nAddress=x\nSSLProxyHost={proxy}\n"
            )),
            Err(IcaError::BadHostPort {
                key: "SSLProxyHost"
            }),
            "{proxy}"
        );
    }
    assert_eq!(
        read("[ApplicationServers]\nA=\n[A]\nAddress=x\nSessionReliabilityTTL=-1\n"),
        Err(IcaError::BadNumber {
            key: "SessionReliabilityTTL"
        })
    );
}

#[test]
fn debug_output_redacts_secrets() {
    let file = example();
    let launch = read_launch(&file).unwrap();
    for shown in [format!("{file:?}"), format!("{launch:?}")] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains("0123456789ABCDEF"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("gw.example.com"), "{shown}");
    }
}

#[test]
fn decodes_lf_blank_lines_comments_bom_and_padding() {
    let text = "\u{feff}; written by hand\n\n[Encoding]\n  InputEncoding = UTF-8 \t\n\
                ;[Evil]\n[ WFClient ]\r\nVersion=2\r\n\r\n";
    let file = IcaFile::decode(text).unwrap();
    assert_eq!(
        file.sections().collect::<Vec<_>>(),
        ["Encoding", "WFClient"]
    );
    assert_eq!(file.get("encoding", "INPUTENCODING"), Some("UTF-8"));
    assert_eq!(file.get("WFClient", "Version"), Some("2"));
    assert_eq!(
        file.encode(),
        "[Encoding]\r\nInputEncoding=UTF-8\r\n[WFClient]\r\nVersion=2\r\n"
    );
}

#[test]
fn decodes_values_holding_equals_and_semicolons() {
    let file = IcaFile::decode("[A]\nAddress=;40;S;T=U\nEmpty=\n").unwrap();
    assert_eq!(file.get("A", "Address"), Some(";40;S;T=U"));
    assert_eq!(file.get("A", "Empty"), Some(""));
}

#[test]
fn keeps_empty_sections() {
    let file = IcaFile::decode("[A]\n[B]\nk=v\n").unwrap();
    assert_eq!(file.sections().collect::<Vec<_>>(), ["A", "B"]);
    assert_eq!(file.encode(), "[A]\r\n[B]\r\nk=v\r\n");
}

#[test]
fn rejects_malformed_lines_with_their_number() {
    for (text, err) in [
        ("k=v\n", IcaError::OutsideSection { line: 1 }),
        ("[A]\n\njunk\n", IcaError::MissingEquals { line: 3 }),
        ("[A\n", IcaError::UnclosedSection { line: 1 }),
        ("[A] ; note\n", IcaError::UnclosedSection { line: 1 }),
        ("[A]\n[a]\n", IcaError::DuplicateSection { line: 2 }),
        ("[A]\nk=1\nK=2\n", IcaError::DuplicateKey { line: 3 }),
        (
            "[]\n",
            IcaError::InvalidLine {
                line: 1,
                part: Part::Section,
                problem: TextProblem::Empty,
            },
        ),
        (
            "[A]]\n",
            IcaError::InvalidLine {
                line: 1,
                part: Part::Section,
                problem: TextProblem::Bracket,
            },
        ),
        (
            "[A]\n=v\n",
            IcaError::InvalidLine {
                line: 2,
                part: Part::Key,
                problem: TextProblem::Empty,
            },
        ),
        (
            "[A]\nk=a\0b\n",
            IcaError::InvalidLine {
                line: 2,
                part: Part::Value,
                problem: TextProblem::ControlChar,
            },
        ),
        (
            "[A]\nk=a\rb\n",
            IcaError::InvalidLine {
                line: 2,
                part: Part::Value,
                problem: TextProblem::ControlChar,
            },
        ),
    ] {
        assert_eq!(IcaFile::decode(text), Err(err), "{text:?}");
    }
}

#[test]
fn rejects_input_past_the_size_cap() {
    let mut text = String::from("[A]\n");
    while text.len() <= MAX_FILE_LEN {
        text.push_str(";;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;\n");
    }
    assert_eq!(
        IcaFile::decode(&text),
        Err(IcaError::TooLarge { max: MAX_FILE_LEN })
    );
}

#[test]
fn rejects_lf_input_that_would_grow_past_the_cap_as_crlf() {
    // Under the cap as LF lines, over it once every line gains a CR.
    let mut text = String::from("[A]\n");
    let mut n = 0;
    while text.len() + 12 <= MAX_FILE_LEN {
        text.push_str(&format!("k{n:07}=v\n"));
        n += 1;
    }
    assert!(text.len() <= MAX_FILE_LEN);
    assert_eq!(
        IcaFile::decode(&text),
        Err(IcaError::TooLarge { max: MAX_FILE_LEN })
    );
}

#[test]
fn set_rejects_injection_attempts() {
    let mut file = example();
    let before = file.clone();
    for (section, key, value, part, problem) in [
        (
            "A",
            "k",
            "x\r\n[Evil]",
            Part::Value,
            TextProblem::ControlChar,
        ),
        (
            "A",
            "k",
            "x\n[Evil]\nk=v",
            Part::Value,
            TextProblem::ControlChar,
        ),
        ("A", "k", "x\0", Part::Value, TextProblem::ControlChar),
        (
            "A",
            "k",
            "x\u{2028}y",
            Part::Value,
            TextProblem::ControlChar,
        ),
        ("A", "k=v", "x", Part::Key, TextProblem::Equals),
        ("A", ";k", "x", Part::Key, TextProblem::LeadingMarker),
        ("A", "[B]", "x", Part::Key, TextProblem::LeadingMarker),
        ("A", "k\r\n[Evil]", "x", Part::Key, TextProblem::ControlChar),
        (
            "A]\r\n[B",
            "k",
            "x",
            Part::Section,
            TextProblem::ControlChar,
        ),
        ("A]", "k", "x", Part::Section, TextProblem::Bracket),
        ("[A", "k", "x", Part::Section, TextProblem::Bracket),
        ("", "k", "x", Part::Section, TextProblem::Empty),
        ("A", "", "x", Part::Key, TextProblem::Empty),
        ("A", " k", "x", Part::Key, TextProblem::EdgeWhitespace),
        ("A", "k", "x ", Part::Value, TextProblem::EdgeWhitespace),
        (" A", "k", "x", Part::Section, TextProblem::EdgeWhitespace),
    ] {
        assert_eq!(
            file.set(section, key, value),
            Err(IcaError::Invalid { part, problem }),
            "{section:?} {key:?} {value:?}"
        );
    }
    assert_eq!(file, before);
}

#[test]
fn set_replaces_values_case_insensitively_in_place() {
    let mut file = IcaFile::new();
    file.set("A", "One", "1").unwrap();
    file.set("A", "Two", "2").unwrap();
    file.set("a", "ONE", "uno").unwrap();
    assert_eq!(file.encode(), "[A]\r\nOne=uno\r\nTwo=2\r\n");
    assert_eq!(file.encoded_len(), file.encode().len());
}

#[test]
fn set_refuses_to_grow_past_the_cap() {
    let mut file = IcaFile::new();
    let big = "v".repeat(MAX_FILE_LEN - "[A]\r\nk=\r\n".len());
    file.set("A", "k", &big).unwrap();
    assert_eq!(file.encoded_len(), MAX_FILE_LEN);
    let before = file.clone();
    assert_eq!(
        file.set("A", "k2", ""),
        Err(IcaError::TooLarge { max: MAX_FILE_LEN })
    );
    assert_eq!(
        file.set("B", "k", ""),
        Err(IcaError::TooLarge { max: MAX_FILE_LEN })
    );
    assert_eq!(
        file.set("A", "k", &format!("{big}v")),
        Err(IcaError::TooLarge { max: MAX_FILE_LEN })
    );
    assert_eq!(file, before);
    file.set("A", "k", "short").unwrap();
    assert_eq!(file.encode(), "[A]\r\nk=short\r\n");
    assert_eq!(file.encoded_len(), file.encode().len());
    assert_eq!(IcaFile::decode(&before.encode()), Ok(before));
}

#[test]
fn no_prefix_of_a_valid_file_panics_and_line_prefixes_decode() {
    for end in 0..=EXAMPLE.len() {
        let Some(prefix) = EXAMPLE.get(..end) else {
            continue;
        };
        let decoded = IcaFile::decode(prefix);
        // A prefix that ends on a line boundary is a complete, smaller file.
        if prefix.ends_with('\n') || prefix.is_empty() {
            let file = decoded.unwrap();
            assert_eq!(file.encode(), prefix);
        }
    }
    assert_eq!(IcaFile::decode(EXAMPLE), Ok(example()));
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9 _.#*:;/=-]{0,12}[A-Za-z0-9_]?"
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9#*:;/=\\[\\]._-][A-Za-z0-9 #*:;/=\\[\\]._-]{0,20}[A-Za-z0-9#;=\\]]",
        "[\u{e9}\u{4e2d}\u{1f600}A]{1,4}",
    ]
}

fn ica_file() -> impl Strategy<Value = IcaFile> {
    let entry = (name(), name(), value());
    prop::collection::vec(entry, 0..24).prop_map(|entries| {
        let mut file = IcaFile::new();
        for (section, key, value) in entries {
            // Names drawn with '=' or ';' are not valid keys and names with
            // nothing else special are fine sections; skip what `set` refuses.
            let _ = file.set(&section, &key, &value);
        }
        file
    })
}

proptest! {
    #[test]
    fn round_trips_any_file(file in ica_file()) {
        let text = file.encode();
        prop_assert_eq!(text.len(), file.encoded_len());
        prop_assert_eq!(IcaFile::decode(&text), Ok(file.clone()));
        let lf = text.replace("\r\n", "\n");
        prop_assert_eq!(IcaFile::decode(&lf), Ok(file));
    }

    #[test]
    fn set_then_get_returns_the_value(section in name(), key in name(), value in value()) {
        let mut file = IcaFile::new();
        if file.set(&section, &key, &value).is_ok() {
            prop_assert_eq!(file.get(&section, &key), Some(value.as_str()));
            prop_assert_eq!(IcaFile::decode(&file.encode()), Ok(file));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text(text in "(?s).{0,300}") {
        if let Ok(file) = IcaFile::decode(&text) {
            prop_assert_eq!(IcaFile::decode(&file.encode()), Ok(file.clone()));
            let _ = read_launch(&file);
        }
    }

    #[test]
    fn never_panics_on_ini_like_text(text in "[\\[\\]=;A-Za-z \t\r\n\u{feff}]{0,300}") {
        if let Ok(file) = IcaFile::decode(&text) {
            prop_assert_eq!(IcaFile::decode(&file.encode()), Ok(file.clone()));
            let _ = read_launch(&file);
        }
    }

    #[test]
    fn never_panics_on_any_prefix_or_mutation_of_a_launch_file(
        cut in 0..EXAMPLE.len(),
        at in 0..EXAMPLE.len(),
        byte in prop::sample::select(b"\r\n[]=;\0 x".to_vec()),
    ) {
        if let Some(prefix) = EXAMPLE.get(..cut) {
            let _ = IcaFile::decode(prefix).map(|f| read_launch(&f));
        }
        let mut bytes = EXAMPLE.as_bytes().to_vec();
        bytes[at] = byte;
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Ok(file) = IcaFile::decode(text) {
                prop_assert_eq!(IcaFile::decode(&file.encode()), Ok(file.clone()));
                let _ = read_launch(&file);
            }
        }
    }

    #[test]
    fn reads_back_any_launch(
        ticket in ";(10|20|22|40);[A-Za-z0-9_-]{0,16};[A-Z0-9]{32}",
        name in "[A-Za-z0-9][A-Za-z0-9 ._-]{0,20}[A-Za-z0-9]",
        host in "[a-z0-9.-]{1,30}",
        port in any::<u16>(),
        ttl in prop::option::of(any::<u32>()),
        cgp in any::<bool>(),
    ) {
        let ticket: StaTicket = ticket.parse().unwrap();
        let params = LaunchParams {
            session_reliability_ttl: ttl,
            cgp_security_ticket: cgp,
            ..LaunchParams::new(&name, &ticket, &host, port)
        };
        // Names equal to a fixed section are refused; that is tested above.
        let Ok(file) = launch_file(&params) else { return Ok(()) };
        let launch = read_launch(&IcaFile::decode(&file.encode()).unwrap()).unwrap();
        prop_assert_eq!(launch.name, name);
        prop_assert_eq!(launch.ticket, Some(ticket));
        prop_assert_eq!(launch.gateway, Some((host, port)));
        prop_assert_eq!(launch.session_reliability_ttl, ttl);
        prop_assert_eq!(launch.cgp_security_ticket, cgp);
        prop_assert_eq!(launch.cgp_address.as_deref(), Some("*:2598"));
    }
}

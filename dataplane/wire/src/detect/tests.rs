use super::*;
use proptest::prelude::*;

fn default() -> DetectConfig {
    DetectConfig::default()
}

fn with_raw_ica() -> DetectConfig {
    DetectConfig {
        raw_ica: true,
        ..DetectConfig::default()
    }
}

fn done(protocol: Protocol) -> Result<Progress<Protocol>, DetectError> {
    Ok(Progress::Done {
        value: protocol,
        consumed: 0,
    })
}

fn need(at_least: usize) -> Result<Progress<Protocol>, DetectError> {
    Ok(Progress::NeedMore { at_least })
}

/// Every signature with the protocol it names, as a client would send it.
const SAMPLES: &[(&[u8], Protocol)] = &[
    (b"\x16\x03\x01", Protocol::Tls),
    (b"\x1aCGP/01", Protocol::Cgp),
    (b"\x05", Protocol::Socks5),
    (b"\x7f\x7fICA\x00", Protocol::RawIca),
    (b"GET ", Protocol::Http),
    (b"POST ", Protocol::Http),
    (b"HEAD ", Protocol::Http),
    (b"PUT ", Protocol::Http),
    (b"DELETE ", Protocol::Http),
    (b"OPTIONS ", Protocol::Http),
    (b"PATCH ", Protocol::Http),
    (b"CONNECT ", Protocol::Http),
];

#[test]
fn detects_every_signature_without_consuming() {
    for &(bytes, protocol) in SAMPLES {
        assert_eq!(detect(bytes, &with_raw_ica()), done(protocol), "{bytes:x?}");
    }
}

#[test]
fn every_prefix_needs_more_then_the_answer_stays_the_same() {
    let trailing = b"\x00\xffrest of the stream";
    for &(bytes, protocol) in SAMPLES {
        for i in 0..bytes.len() {
            match detect(&bytes[..i], &with_raw_ica()) {
                Ok(Progress::NeedMore { at_least }) => {
                    assert!(at_least > i, "{bytes:x?} at {i}");
                    assert!(at_least <= bytes.len(), "{bytes:x?} at {i}");
                }
                other => panic!("{bytes:x?} at {i}: {other:?}"),
            }
        }
        let mut longer = bytes.to_vec();
        for &byte in trailing {
            longer.push(byte);
            assert_eq!(detect(&longer, &with_raw_ica()), done(protocol));
        }
    }
}

#[test]
fn empty_input_needs_one_byte() {
    assert_eq!(detect(b"", &default()), need(1));
}

#[test]
fn need_more_names_the_shortest_signature_still_possible() {
    assert_eq!(detect(b"\x16", &default()), need(3));
    assert_eq!(detect(b"\x1a", &default()), need(7));
    assert_eq!(detect(b"P", &default()), need(4));
    assert_eq!(detect(b"PO", &default()), need(5));
    assert_eq!(detect(b"PA", &default()), need(6));
    assert_eq!(detect(b"PU", &default()), need(4));
    assert_eq!(detect(b"O", &default()), need(8));
    assert_eq!(detect(b"\x7f", &with_raw_ica()), need(6));
}

#[test]
fn detects_a_real_client_hello_record_and_an_http_request() {
    let hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    assert_eq!(detect(&hello, &default()), done(Protocol::Tls));
    let request = b"GET /vpn/index.html HTTP/1.1\r\nHost: gw\r\n\r\n";
    assert_eq!(detect(request, &default()), done(Protocol::Http));
    let greeting = [0x05, 0x02, 0x00, 0x02];
    assert_eq!(detect(&greeting, &default()), done(Protocol::Socks5));
}

#[test]
fn accepts_tls_record_versions_from_ssl3_to_0x0304() {
    for minor in 0x00..=0x04 {
        assert_eq!(
            detect(&[0x16, 0x03, minor], &default()),
            done(Protocol::Tls)
        );
    }
}

#[test]
fn rejects_tls_record_versions_outside_the_range() {
    assert_eq!(
        detect(&[0x16, 0x03, 0x05], &default()),
        Err(DetectError::Unrecognized)
    );
    assert_eq!(
        detect(&[0x16, 0x02], &default()),
        Err(DetectError::Unrecognized)
    );
    // An alert or application-data record is not the start of a handshake.
    assert_eq!(
        detect(&[0x17, 0x03, 0x03], &default()),
        Err(DetectError::Unrecognized)
    );
}

#[test]
fn rejects_as_soon_as_one_byte_rules_everything_out() {
    let cases: &[&[u8]] = &[
        b"X",
        b"\x00",
        b"\x04",       // SOCKS4
        b"get ",       // methods are case-sensitive
        b"PX",         // no method starts with PX
        b"GET/",       // the method must be followed by a space
        b"POSTS",      //
        b"\x1aCGP/02", // another CGP version
        b"\x16\x04",
    ];
    for &bytes in cases {
        assert_eq!(
            detect(bytes, &default()),
            Err(DetectError::Unrecognized),
            "{bytes:x?}"
        );
    }
}

#[test]
fn raw_ica_is_refused_unless_configured() {
    assert_eq!(detect(b"\x7f", &default()), Err(DetectError::Unrecognized));
    assert_eq!(
        detect(b"\x7f\x7fICA\x00", &default()),
        Err(DetectError::Unrecognized)
    );
    assert_eq!(
        detect(b"\x7f\x7fICA\x00", &with_raw_ica()),
        done(Protocol::RawIca)
    );
    assert_eq!(
        detect(b"\x7f\x7fICB", &with_raw_ica()),
        Err(DetectError::Unrecognized)
    );
}

#[test]
fn refuses_to_wait_past_the_byte_cap() {
    let small = DetectConfig {
        max_bytes: 4,
        raw_ica: false,
    };
    assert_eq!(
        detect(b"O", &small),
        Err(DetectError::TooManyBytes {
            at_least: 8,
            max: 4
        })
    );
    assert_eq!(detect(b"P", &small), need(4));
    assert_eq!(
        detect(b"PO", &small),
        Err(DetectError::TooManyBytes {
            at_least: 5,
            max: 4
        })
    );
    let zero = DetectConfig {
        max_bytes: 0,
        raw_ica: false,
    };
    assert_eq!(
        detect(b"", &zero),
        Err(DetectError::TooManyBytes {
            at_least: 1,
            max: 0
        })
    );
}

#[test]
fn a_complete_signature_is_recognised_whatever_the_cap() {
    let small = DetectConfig {
        max_bytes: 2,
        raw_ica: false,
    };
    assert_eq!(detect(b"OPTIONS * HTTP/1.1", &small), done(Protocol::Http));
}

#[test]
fn the_default_cap_covers_the_longest_signature() {
    assert_eq!(default().max_bytes, DEFAULT_MAX_DETECT_BYTES);
    assert!(!default().raw_ica);
    let longest = SAMPLES.iter().map(|(b, _)| b.len()).max().unwrap();
    assert!(DEFAULT_MAX_DETECT_BYTES >= longest);
}

#[test]
fn names_and_reasons_are_stable_labels() {
    let names: Vec<_> = Protocol::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["tls", "cgp", "socks5", "http", "raw_ica"]);
    assert_eq!(Protocol::RawIca.to_string(), "raw_ica");
    assert_eq!(DetectError::Unrecognized.reason(), "unknown_protocol");
    let too_many = DetectError::TooManyBytes {
        at_least: 8,
        max: 4,
    };
    assert_eq!(too_many.reason(), "too_many_bytes");
    assert_eq!(
        too_many.to_string(),
        "detection needs at least 8 bytes, more than the cap of 4"
    );
}

proptest! {
    #[test]
    fn never_panics_and_keeps_its_contract(
        data in proptest::collection::vec(any::<u8>(), 0..24),
        max_bytes in 0usize..20,
        raw_ica in any::<bool>(),
    ) {
        let config = DetectConfig { max_bytes, raw_ica };
        match detect(&data, &config) {
            Ok(Progress::Done { consumed, .. }) => prop_assert_eq!(consumed, 0),
            Ok(Progress::NeedMore { at_least }) => {
                prop_assert!(at_least > data.len());
                prop_assert!(at_least <= max_bytes);
            }
            Err(DetectError::TooManyBytes { at_least, max }) => {
                prop_assert!(at_least > max);
                prop_assert_eq!(max, max_bytes);
            }
            Err(DetectError::Unrecognized) => {}
        }
    }

    #[test]
    fn a_decision_does_not_change_when_more_bytes_arrive(
        sample in 0..SAMPLES.len(),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let (bytes, protocol) = SAMPLES[sample];
        let mut input = bytes.to_vec();
        input.extend_from_slice(&tail);
        prop_assert_eq!(detect(&input, &with_raw_ica()), done(protocol));
    }

    #[test]
    fn a_refusal_does_not_change_when_more_bytes_arrive(
        head in proptest::collection::vec(any::<u8>(), 1..8),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        if detect(&head, &with_raw_ica()) == Err(DetectError::Unrecognized) {
            let mut input = head.clone();
            input.extend_from_slice(&tail);
            prop_assert_eq!(detect(&input, &with_raw_ica()), Err(DetectError::Unrecognized));
        }
    }
}

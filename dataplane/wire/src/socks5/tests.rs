use std::fmt::Debug;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::Progress;

const TICKET: &[u8] = b";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
const TRAILING: &[u8] = b"\x7f\x7fICA\x00 and more";

/// Feeds every proper prefix of `message` (a complete, valid message) and
/// checks the answer is `NeedMore` with `at_least` in `(i, len]`; then the
/// whole message, and the message with trailing bytes, give the same `Done`.
fn assert_all_prefixes<'a, T: PartialEq + Debug>(
    message: &'a [u8],
    with_tail: &'a [u8],
    decode: impl Fn(&'a [u8]) -> Result<Progress<T>, Socks5Error>,
) -> T {
    assert!(with_tail.starts_with(message));
    for i in 0..message.len() {
        match decode(&message[..i]) {
            Ok(Progress::NeedMore { at_least }) => {
                assert!(at_least > i, "prefix {i}: at_least {at_least}");
                assert!(at_least <= message.len(), "prefix {i}: at_least {at_least}");
            }
            other => panic!("prefix {i} of {message:02x?}: {other:?}"),
        }
    }
    let whole = decode(message).unwrap();
    for end in message.len()..=with_tail.len() {
        assert_eq!(
            decode(&with_tail[..end]).unwrap(),
            whole,
            "with {end} bytes"
        );
    }
    match whole {
        Progress::Done { value, consumed } => {
            assert_eq!(consumed, message.len());
            value
        }
        Progress::NeedMore { at_least } => panic!("complete message needs {at_least}"),
    }
}

fn with_tail(message: &[u8]) -> Vec<u8> {
    [message, TRAILING].concat()
}

fn ticket_request() -> Vec<u8> {
    let mut bytes = vec![0x05, 0x01, 0x00, 0x03, u8::try_from(TICKET.len()).unwrap()];
    bytes.extend_from_slice(TICKET);
    bytes.extend_from_slice(&[0x05, 0xd6]);
    bytes
}

// --- greeting ---------------------------------------------------------------

#[test]
fn ica_client_greeting_selects_no_auth() {
    let greeting = [0x05, 0x02, 0x00, 0x02];
    let tail = with_tail(&greeting);
    let value = assert_all_prefixes(&greeting, &tail, decode_greeting);
    assert!(value.offers(0x00));
    assert!(value.offers(0x02));
    assert!(!value.offers(0x01));
    assert_eq!(value.select(), Method::NoAuth);
    assert_eq!(encode_method_selection(value.select()), [0x05, 0x00]);
}

#[test]
fn selects_user_pass_when_it_is_the_only_known_method_offered() {
    let greeting = decode_greeting(&[0x05, 0x02, 0x01, 0x02]).unwrap();
    let (value, consumed) = greeting.done().unwrap();
    assert_eq!(consumed, 4);
    assert_eq!(value.select(), Method::UserPass);
    assert_eq!(encode_method_selection(Method::UserPass), [0x05, 0x02]);
}

#[test]
fn selects_no_acceptable_method_when_only_gssapi_is_offered() {
    let (value, _) = decode_greeting(&[0x05, 0x01, 0x01])
        .unwrap()
        .done()
        .unwrap();
    assert_eq!(value.select(), Method::NoAcceptable);
    assert_eq!(encode_method_selection(value.select()), [0x05, 0xff]);
}

#[test]
fn rejects_greeting_without_methods() {
    assert_eq!(decode_greeting(&[0x05, 0x00]), Err(Socks5Error::NoMethods));
    assert_eq!(
        decode_greeting(&[0x05, 0x00, 0x00]),
        Err(Socks5Error::NoMethods)
    );
}

#[test]
fn rejects_greeting_of_another_version_from_the_first_byte() {
    assert_eq!(decode_greeting(&[0x04]), Err(Socks5Error::BadVersion(0x04)));
    assert_eq!(
        decode_greeting(&[0x04, 0x01, 0x00, 0x00, 0x50]),
        Err(Socks5Error::BadVersion(0x04))
    );
}

#[test]
fn greeting_may_offer_every_code_once_or_repeatedly() {
    let mut all = vec![0x05, 0xff];
    all.extend(0..=0xfe_u8);
    let (value, consumed) = decode_greeting(&all).unwrap().done().unwrap();
    assert_eq!(consumed, 257);
    assert_eq!(value.codes().count(), 255);
    assert!(!value.offers(0xff));
    let (repeated, _) = decode_greeting(&[0x05, 0x03, 0x02, 0x02, 0x02])
        .unwrap()
        .done()
        .unwrap();
    assert_eq!(repeated.codes().collect::<Vec<_>>(), [0x02]);
}

#[test]
fn encode_greeting_writes_methods_in_order_and_decodes_back() {
    let mut out = vec![0xaa];
    encode_greeting(&[Method::NoAuth, Method::UserPass], &mut out);
    assert_eq!(out, [0xaa, 0x05, 0x02, 0x00, 0x02]);
    let mut empty = Vec::new();
    encode_greeting(&[], &mut empty);
    assert_eq!(decode_greeting(&empty), Err(Socks5Error::NoMethods));
    let mut many = Vec::new();
    encode_greeting(&[Method::UserPass; 300], &mut many);
    assert_eq!(many.len(), 257);
    assert_eq!(many[1], 0xff);
    let (value, _) = decode_greeting(&many).unwrap().done().unwrap();
    assert_eq!(value.select(), Method::UserPass);
}

#[test]
fn method_codes_round_trip() {
    for method in [Method::NoAuth, Method::UserPass, Method::NoAcceptable] {
        assert_eq!(Method::from_code(method.code()), Some(method));
    }
    assert_eq!(Method::from_code(0x01), None);
}

#[test]
fn greeting_debug_lists_the_offered_codes() {
    let (value, _) = decode_greeting(&[0x05, 0x02, 0x02, 0x00])
        .unwrap()
        .done()
        .unwrap();
    assert_eq!(format!("{value:?}"), "Greeting { methods: [0x00, 0x02] }");
}

// --- user/password ----------------------------------------------------------

#[test]
fn decodes_user_pass_and_stops_at_the_request() {
    let mut message = Vec::new();
    encode_userpass(b"alice", b"s3cret", &mut message).unwrap();
    assert_eq!(message, b"\x01\x05alice\x06s3cret");
    let tail = with_tail(&message);
    let value = assert_all_prefixes(&message, &tail, decode_userpass);
    assert_eq!(value.username, b"alice");
    assert_eq!(value.password, b"s3cret");
}

#[test]
fn accepts_empty_user_name_and_password() {
    let message = [0x01, 0x00, 0x00];
    let tail = with_tail(&message);
    let value = assert_all_prefixes(&message, &tail, decode_userpass);
    assert_eq!(value.username, b"");
    assert_eq!(value.password, b"");
}

#[test]
fn rejects_user_pass_of_another_version() {
    assert_eq!(
        decode_userpass(&[0x05, 0x01, 0x00]),
        Err(Socks5Error::BadUserPassVersion(0x05))
    );
}

#[test]
fn user_pass_status_is_zero_only_on_success() {
    assert_eq!(encode_userpass_status(true), [0x01, 0x00]);
    assert_eq!(encode_userpass_status(false), [0x01, 0x01]);
}

#[test]
fn encode_userpass_refuses_fields_over_255_bytes_and_writes_nothing() {
    let long = [b'x'; 256];
    let mut out = vec![0xaa];
    assert_eq!(
        encode_userpass(&long, b"p", &mut out),
        Err(Socks5Error::FieldTooLong {
            field: "username",
            len: 256
        })
    );
    assert_eq!(
        encode_userpass(b"u", &long, &mut out),
        Err(Socks5Error::FieldTooLong {
            field: "password",
            len: 256
        })
    );
    assert_eq!(out, [0xaa]);
    encode_userpass(&long[..255], &long[..255], &mut out).unwrap();
    assert_eq!(out.len(), 1 + 3 + 510);
}

#[test]
fn user_pass_debug_never_shows_the_password() {
    let value = UserPass {
        username: b"alice",
        password: b"s3cret",
    };
    let debug = format!("{value:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains("115"),
        "{debug}"
    );
}

// --- request ----------------------------------------------------------------

#[test]
fn ticket_text_request_parses_as_domain_with_port_1494() {
    let request = ticket_request();
    let tail = with_tail(&request);
    let value = assert_all_prefixes(&request, &tail, decode_request);
    assert_eq!(
        value,
        Request {
            command: Command::Connect,
            address: Address::Domain(TICKET),
            port: 1494,
        }
    );
}

#[test]
fn requests_of_every_address_type_round_trip() {
    let domain = b"worker01.example.test";
    let cases = [
        (Address::Ipv4(Ipv4Addr::new(10, 1, 2, 3)), 10),
        (Address::Domain(domain), 7 + domain.len()),
        (
            Address::Ipv6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7)),
            22,
        ),
    ];
    for (address, len) in cases {
        let mut bytes = Vec::new();
        encode_request(Command::Connect, &address, 2598, &mut bytes).unwrap();
        assert_eq!(bytes.len(), len);
        assert_eq!(bytes[..4], [0x05, 0x01, 0x00, address.atyp()]);
        assert_eq!(bytes[len - 2..], [0x0a, 0x26]);
        let tail = with_tail(&bytes);
        let value = assert_all_prefixes(&bytes, &tail, decode_request);
        assert_eq!(value.address, address);
        assert_eq!(value.port, 2598);
        assert_eq!(value.command, Command::Connect);
    }
}

#[test]
fn ipv4_request_has_the_rfc_layout() {
    let bytes = [0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x50];
    let (value, consumed) = decode_request(&bytes).unwrap().done().unwrap();
    assert_eq!(consumed, 10);
    assert_eq!(value.address, Address::Ipv4(Ipv4Addr::LOCALHOST));
    assert_eq!(value.port, 80);
}

#[test]
fn decodes_every_command_so_the_engine_can_refuse_it() {
    for (code, command) in [
        (0x01, Command::Connect),
        (0x02, Command::Bind),
        (0x03, Command::UdpAssociate),
        (0x00, Command::Other(0x00)),
        (0x09, Command::Other(0x09)),
    ] {
        let bytes = [0x05, code, 0x00, 0x01, 127, 0, 0, 1, 0x05, 0xd6];
        let (value, _) = decode_request(&bytes).unwrap().done().unwrap();
        assert_eq!(value.command, command);
        assert_eq!(command.code(), code);
        assert_eq!(Command::from_code(code), command);
    }
}

#[test]
fn rejects_zero_length_domain_as_soon_as_its_length_arrives() {
    let error = decode_request(&[0x05, 0x01, 0x00, 0x03, 0x00]).unwrap_err();
    assert_eq!(error, Socks5Error::EmptyDomain);
    assert_eq!(error.reply(), Some(Reply::GeneralFailure));
}

#[test]
fn rejects_unknown_address_type_with_reply_08() {
    let error = decode_request(&[0x05, 0x01, 0x00, 0x02]).unwrap_err();
    assert_eq!(error, Socks5Error::UnsupportedAddressType(0x02));
    assert_eq!(error.reply(), Some(Reply::AddressTypeNotSupported));
    assert_eq!(
        encode_reply(error.reply().unwrap(), SocketAddr::from(([0, 0, 0, 0], 0))).as_bytes(),
        [0x05, 0x08, 0x00, 0x01, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn rejects_non_zero_reserved_byte_before_the_address() {
    let error = decode_request(&[0x05, 0x01, 0x01]).unwrap_err();
    assert_eq!(error, Socks5Error::NonZeroReserved(0x01));
    assert_eq!(error.reply(), Some(Reply::GeneralFailure));
}

#[test]
fn rejects_request_of_another_version_without_a_reply() {
    let error = decode_request(&[0x04, 0x01, 0x00, 0x50]).unwrap_err();
    assert_eq!(error, Socks5Error::BadVersion(0x04));
    assert_eq!(error.reply(), None);
}

#[test]
fn encode_request_refuses_empty_and_long_domains_and_writes_nothing() {
    let mut out = vec![0xaa];
    assert_eq!(
        encode_request(Command::Connect, &Address::Domain(b""), 1494, &mut out),
        Err(Socks5Error::EmptyDomain)
    );
    let long = [b'a'; 256];
    assert_eq!(
        encode_request(Command::Connect, &Address::Domain(&long), 1494, &mut out),
        Err(Socks5Error::FieldTooLong {
            field: "domain",
            len: 256
        })
    );
    assert_eq!(out, [0xaa]);
    encode_request(
        Command::Connect,
        &Address::Domain(&long[..255]),
        1494,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.len(), 1 + 7 + 255);
}

#[test]
fn request_debug_never_shows_the_ticket() {
    let request = ticket_request();
    let (value, _) = decode_request(&request).unwrap().done().unwrap();
    let debug = format!("{value:?}");
    assert!(
        !debug.contains("ABCDEFGH") && !debug.contains("STA01"),
        "{debug}"
    );
    assert!(debug.contains("Domain(<42 bytes>)"), "{debug}");
}

// --- reply ------------------------------------------------------------------

#[test]
fn gateway_success_reply_is_the_ipv4_zero_address() {
    let reply = encode_reply(Reply::Succeeded, SocketAddr::from(([0, 0, 0, 0], 0)));
    assert_eq!(
        reply.as_bytes(),
        [0x05, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
    );
}

#[test]
fn every_refusal_has_its_exact_reply_bytes() {
    let zero = SocketAddr::from(([0, 0, 0, 0], 0));
    let expected = [
        (Refusal::TicketRejected, 0x02, "ticket_rejected"),
        (Refusal::BackendRefused, 0x05, "backend_refused"),
        (Refusal::BackendUnreachable, 0x04, "backend_unreachable"),
        (Refusal::BackendTimeout, 0x04, "backend_timeout"),
        (Refusal::UnsupportedCommand, 0x07, "unsupported_command"),
        (
            Refusal::UnsupportedAddressType,
            0x08,
            "unsupported_address_type",
        ),
        (Refusal::Overloaded, 0x01, "overloaded"),
        (Refusal::Internal, 0x01, "internal"),
    ];
    for (refusal, code, reason) in expected {
        assert_eq!(
            encode_reply(refusal.reply(), zero).as_bytes(),
            [0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0],
            "{refusal:?}"
        );
        assert_eq!(refusal.reason(), reason);
    }
}

#[test]
fn reply_codes_are_zero_to_eight() {
    let replies = [
        Reply::Succeeded,
        Reply::GeneralFailure,
        Reply::NotAllowed,
        Reply::NetworkUnreachable,
        Reply::HostUnreachable,
        Reply::ConnectionRefused,
        Reply::TtlExpired,
        Reply::CommandNotSupported,
        Reply::AddressTypeNotSupported,
    ];
    for (code, reply) in (0u8..).zip(replies) {
        assert_eq!(reply.code(), code);
        assert_eq!(Reply::from_code(code), Some(reply));
    }
    assert_eq!(Reply::from_code(0x09), None);
}

#[test]
fn replies_round_trip_with_ipv4_and_ipv6_addresses() {
    let cases = [
        (Reply::Succeeded, SocketAddr::from(([0, 0, 0, 0], 0)), 10),
        (
            Reply::HostUnreachable,
            SocketAddr::from(([192, 0, 2, 1], 1080)),
            10,
        ),
        (
            Reply::ConnectionRefused,
            SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 443)),
            22,
        ),
    ];
    for (reply, bound, len) in cases {
        let encoded = encode_reply(reply, bound);
        assert_eq!(encoded.as_bytes().len(), len);
        let bytes = encoded.as_bytes();
        let tail = with_tail(bytes);
        let value = assert_all_prefixes(bytes, &tail, decode_reply);
        assert_eq!(value, (reply, bound));
    }
}

#[test]
fn decode_reply_rejects_what_it_cannot_name() {
    assert_eq!(
        decode_reply(&[0x05, 0x09]),
        Err(Socks5Error::UnknownReply(0x09))
    );
    assert_eq!(
        decode_reply(&[0x05, 0x00, 0x00, 0x03]),
        Err(Socks5Error::DomainInReply)
    );
    assert_eq!(decode_reply(&[0x00]), Err(Socks5Error::BadVersion(0x00)));
    assert_eq!(
        decode_reply(&[0x05, 0x00, 0x02]),
        Err(Socks5Error::NonZeroReserved(0x02))
    );
    assert_eq!(
        decode_reply(&[0x05, 0x00, 0x00, 0x05]),
        Err(Socks5Error::UnsupportedAddressType(0x05))
    );
}

#[test]
fn encoded_reply_debug_shows_its_bytes() {
    let reply = encode_reply(Reply::NotAllowed, SocketAddr::from(([0, 0, 0, 0], 0)));
    assert_eq!(
        format!("{reply:?}"),
        "EncodedReply([05, 02, 00, 01, 00, 00, 00, 00, 00, 00])"
    );
}

// --- errors -----------------------------------------------------------------

#[test]
fn only_request_stage_errors_carry_a_reply() {
    let cases = [
        (Socks5Error::BadVersion(4), None, "bad_version"),
        (Socks5Error::NoMethods, None, "no_methods"),
        (
            Socks5Error::BadUserPassVersion(2),
            None,
            "bad_userpass_version",
        ),
        (
            Socks5Error::EmptyDomain,
            Some(Reply::GeneralFailure),
            "empty_domain",
        ),
        (
            Socks5Error::UnsupportedAddressType(2),
            Some(Reply::AddressTypeNotSupported),
            "unsupported_address_type",
        ),
        (
            Socks5Error::NonZeroReserved(1),
            Some(Reply::GeneralFailure),
            "non_zero_reserved",
        ),
        (Socks5Error::UnknownReply(9), None, "unknown_reply"),
        (Socks5Error::DomainInReply, None, "domain_in_reply"),
        (
            Socks5Error::FieldTooLong {
                field: "domain",
                len: 300,
            },
            None,
            "field_too_long",
        ),
    ];
    for (error, reply, reason) in cases {
        assert_eq!(error.reply(), reply, "{error:?}");
        assert_eq!(error.reason(), reason);
        let message = error.to_string();
        assert!(
            message.starts_with(|c: char| c.is_ascii_lowercase()),
            "{message}"
        );
        assert!(!message.ends_with('.'), "{message}");
    }
    assert_eq!(
        Socks5Error::BadVersion(4).to_string(),
        "unsupported socks version 0x04"
    );
}

// --- properties -------------------------------------------------------------

/// The contract every decoder keeps on any input.
fn check_any<T>(
    data: &[u8],
    answer: Result<Progress<T>, Socks5Error>,
) -> Result<(), TestCaseError> {
    match answer {
        Ok(Progress::NeedMore { at_least }) => prop_assert!(at_least > data.len()),
        Ok(Progress::Done { consumed, .. }) => {
            prop_assert!(consumed > 0 && consumed <= data.len());
        }
        Err(_) => {}
    }
    Ok(())
}

fn arb_address() -> impl Strategy<Value = (u8, Vec<u8>)> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| (ATYP_IPV4, o.to_vec())),
        proptest::collection::vec(any::<u8>(), 1..=255).prop_map(|d| (ATYP_DOMAIN, d)),
        any::<[u8; 16]>().prop_map(|o| (ATYP_IPV6, o.to_vec())),
    ]
}

fn address_of(atyp: u8, bytes: &[u8]) -> Address<'_> {
    match atyp {
        ATYP_IPV4 => Address::Ipv4(<[u8; 4]>::try_from(bytes).unwrap().into()),
        ATYP_IPV6 => Address::Ipv6(<[u8; 16]>::try_from(bytes).unwrap().into()),
        _ => Address::Domain(bytes),
    }
}

proptest! {
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_any(&data, decode_greeting(&data))?;
        check_any(&data, decode_userpass(&data))?;
        check_any(&data, decode_request(&data))?;
        check_any(&data, decode_reply(&data))?;
    }

    #[test]
    fn decoders_never_panic_on_socks_shaped_bytes(
        head in prop_oneof![Just(0x05u8), Just(0x01u8)],
        rest in proptest::collection::vec(prop_oneof![0u8..10, any::<u8>()], 0..40),
    ) {
        let data = [&[head][..], &rest].concat();
        check_any(&data, decode_greeting(&data))?;
        check_any(&data, decode_userpass(&data))?;
        check_any(&data, decode_request(&data))?;
        check_any(&data, decode_reply(&data))?;
    }

    #[test]
    fn greetings_round_trip(codes in proptest::collection::vec(any::<u8>(), 1..=255)) {
        let mut bytes = vec![0x05, u8::try_from(codes.len()).unwrap()];
        bytes.extend_from_slice(&codes);
        let (value, consumed) = decode_greeting(&bytes).unwrap().done().unwrap();
        prop_assert_eq!(consumed, bytes.len());
        for code in 0..=u8::MAX {
            prop_assert_eq!(value.offers(code), codes.contains(&code));
        }
    }

    #[test]
    fn user_pass_round_trips(
        username in proptest::collection::vec(any::<u8>(), 0..=255),
        password in proptest::collection::vec(any::<u8>(), 0..=255),
    ) {
        let mut bytes = Vec::new();
        encode_userpass(&username, &password, &mut bytes).unwrap();
        let (value, consumed) = decode_userpass(&bytes).unwrap().done().unwrap();
        prop_assert_eq!(consumed, bytes.len());
        prop_assert_eq!(value.username, &username[..]);
        prop_assert_eq!(value.password, &password[..]);
    }

    #[test]
    fn requests_round_trip(code in any::<u8>(), (atyp, raw) in arb_address(), port in any::<u16>()) {
        let request = Request { command: Command::from_code(code), address: address_of(atyp, &raw), port };
        let mut bytes = Vec::new();
        encode_request(request.command, &request.address, request.port, &mut bytes).unwrap();
        let tail = with_tail(&bytes);
        let value = assert_all_prefixes(&bytes, &tail, decode_request);
        prop_assert_eq!(value, request);
    }

    #[test]
    fn replies_round_trip(code in 0u8..=8, v6 in any::<bool>(), raw in any::<[u8; 16]>(), port in any::<u16>()) {
        let reply = Reply::from_code(code).unwrap();
        let bound = if v6 {
            SocketAddr::new(Ipv6Addr::from(raw).into(), port)
        } else {
            SocketAddr::new(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).into(), port)
        };
        let encoded = encode_reply(reply, bound);
        let (value, consumed) = decode_reply(encoded.as_bytes()).unwrap().done().unwrap();
        prop_assert_eq!(consumed, encoded.as_bytes().len());
        prop_assert_eq!(value, (reply, bound));
    }
}

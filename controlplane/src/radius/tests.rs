//! Byte vectors and properties of the RADIUS codec.
//!
//! The vectors were computed with Python's `hashlib` and `hmac` (an
//! implementation independent of this one), secret `xyzzy5461` and the
//! Request Authenticator of RFC 2865 §7.1. The RFC's own example packets
//! are not used: their authenticators do not verify with the secret the
//! RFC names.

use proptest::prelude::*;

use super::access::{hide_password, message_authenticator, response_authenticator};
use super::packet::{AUTHENTICATOR_LEN, HEADER_LEN, attribute};
use super::*;

const REQUEST_AUTHENTICATOR: &str = "0f403f9473978 03c91bf1a1ac7ba2a93";

fn hex(text: &str) -> Vec<u8> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn secret() -> SharedSecret {
    SharedSecret::new(b"xyzzy5461".to_vec()).unwrap()
}

fn authenticator() -> Authenticator {
    Authenticator(hex(REQUEST_AUTHENTICATOR).try_into().unwrap())
}

fn nas() -> NasIdentity {
    NasIdentity {
        identifier: Some("gatehouse".to_owned()),
        ip_address: Some([192, 168, 1, 16].into()),
    }
}

fn pending(nas: &NasIdentity) -> PendingAccess {
    AccessRequest {
        identifier: Identifier(0x2a),
        authenticator: authenticator(),
        user_name: "nemo",
        password: b"arctangent",
        nas,
        state: Some(b"state-1"),
    }
    .encode(&secret())
    .unwrap()
}

const LAX: ResponsePolicy = ResponsePolicy {
    require_message_authenticator: false,
};
const STRICT: ResponsePolicy = ResponsePolicy {
    require_message_authenticator: true,
};

/// A response to [`pending`] signed like a server would: optional
/// Message-Authenticator first, then `attrs`.
fn signed_response(code: u8, identifier: u8, attrs: &[(u8, &[u8])], mac: bool) -> Vec<u8> {
    let mut out = vec![code, identifier, 0, 0];
    out.extend_from_slice(&authenticator().0);
    if mac {
        out.extend_from_slice(&[attribute::MESSAGE_AUTHENTICATOR, 18]);
        out.extend_from_slice(&[0; 16]);
    }
    for (kind, value) in attrs {
        out.push(*kind);
        out.push(u8::try_from(value.len() + 2).unwrap());
        out.extend_from_slice(value);
    }
    let len = u16::try_from(out.len()).unwrap();
    out[2..4].copy_from_slice(&len.to_be_bytes());
    if mac {
        let value = message_authenticator(&secret(), &out);
        out[22..38].copy_from_slice(&value);
    }
    let auth = response_authenticator(&out, &authenticator(), &secret());
    out[4..20].copy_from_slice(&auth);
    out
}

#[test]
fn hides_passwords_of_one_two_and_three_blocks() {
    let cases: [(&[u8], &str); 4] = [
        (b"arctangent", "4bfcf288361111477779f79deb82b302"),
        (b"0123456789abcdef", "1abfa3cf634a4015213496ff88e6d664"),
        (
            b"0123456789abcdef0123456789abcdef",
            "1abfa3cf634a4015213496ff88e6d664ff56e18f701cbd6249d9cfe368876a08",
        ),
        (
            b"correct horse battery staple, twice over",
            "49e1e38e321c0202716285ee8ea2d163794eebcf0e2fa5dc3567cf0fa12c7edf\
             704fd2b3efaa2bb8fd422612ca187fd5",
        ),
    ];
    for (password, expected) in cases {
        let hidden = hide_password(password, &secret(), &authenticator()).unwrap();
        assert_eq!(
            hidden,
            hex(expected),
            "{}",
            String::from_utf8_lossy(password)
        );
        let revealed = access::reveal_password(&hidden, &secret(), &authenticator());
        assert_eq!(&revealed[..password.len()], password);
        assert!(revealed[password.len()..].iter().all(|&b| b == 0));
    }
}

#[test]
fn hides_an_empty_password_as_one_block_and_refuses_past_128_bytes() {
    assert_eq!(
        hide_password(b"", &secret(), &authenticator())
            .unwrap()
            .len(),
        16
    );
    assert_eq!(
        hide_password(&[b'x'; 128], &secret(), &authenticator())
            .unwrap()
            .len(),
        128
    );
    assert_eq!(
        hide_password(&[b'x'; 129], &secret(), &authenticator()),
        Err(EncodeError::PasswordTooLong { len: 129 })
    );
}

#[test]
fn encodes_an_access_request_byte_for_byte_with_the_message_authenticator_first() {
    let nas = nas();
    let expected = hex(
        "012a00580f403f947397803c91bf1a1ac7ba2a9350120833ca1254508a904e8026eec04d\
         0ff401066e656d6f02124bfcf288361111477779f79deb82b3020406c0a80110200b67\
         617465686f757365180973746174652d31",
    );
    let pending = pending(&nas);
    assert_eq!(pending.datagram(), expected.as_slice());
    assert_eq!(pending.identifier(), Identifier(0x2a));
    let packet = Packet::decode(pending.datagram()).unwrap();
    assert_eq!(packet.code(), Code::AccessRequest.to_byte());
    let first = packet.attributes().next().unwrap();
    assert_eq!(first.kind, attribute::MESSAGE_AUTHENTICATOR);
}

#[test]
fn refuses_requests_out_of_rfc_range() {
    let nas = nas();
    let request = |user: &'static str, state: Option<&'static [u8]>, nas: &NasIdentity| {
        AccessRequest {
            identifier: Identifier(1),
            authenticator: authenticator(),
            user_name: user,
            password: b"pw",
            nas,
            state,
        }
        .encode(&secret())
        .err()
    };
    assert_eq!(request("", None, &nas), Some(EncodeError::UserNameEmpty));
    let long: &'static str = Box::leak("u".repeat(254).into_boxed_str());
    assert_eq!(
        request(long, None, &nas),
        Some(EncodeError::UserNameTooLong { len: 254 })
    );
    assert_eq!(
        request("alice", Some(b""), &nas),
        Some(EncodeError::BadState { len: 0 })
    );
    assert_eq!(
        request("alice", None, &NasIdentity::default()),
        Some(EncodeError::MissingNasIdentity)
    );
    let empty_name = NasIdentity {
        identifier: Some(String::new()),
        ip_address: None,
    };
    assert_eq!(
        request("alice", None, &empty_name),
        Some(EncodeError::BadNasIdentifier { len: 0 })
    );
    assert_eq!(SharedSecret::new(Vec::new()), Err(SecretError::Empty));
}

#[test]
fn decodes_a_challenge_with_prompt_and_state() {
    let nas = nas();
    let datagram = hex(
        "0b2a004f5b7d4f7ce92ab14e7cdd35212634f50750126a9f2d0fc3fa7e80dc047e6efd5c3e64\
         1217456e74657220796f757220746f6b656e20636f64651812a17290265e4e5e585d0d3d73\
         0c59f439",
    );
    let response = pending(&nas)
        .handle_response(&datagram, &secret(), STRICT)
        .unwrap();
    assert_eq!(response.kind, ResponseKind::Challenge);
    assert_eq!(
        response.reply_message.as_deref(),
        Some("Enter your token code")
    );
    assert_eq!(
        response.state,
        Some(hex("a17290265e4e5e585d0d3d730c59f439"))
    );
}

#[test]
fn accepts_an_accept_without_message_authenticator_only_when_not_required() {
    let nas = nas();
    let datagram = hex("022a00144c1508856d7bb0a9b14a175ae6673849");
    let response = pending(&nas)
        .handle_response(&datagram, &secret(), LAX)
        .unwrap();
    assert_eq!(response.kind, ResponseKind::Accept);
    assert_eq!(response.reply_message, None);
    assert_eq!(
        pending(&nas).handle_response(&datagram, &secret(), STRICT),
        Err(ResponseError::MessageAuthenticatorMissing)
    );
}

#[test]
fn joins_several_reply_messages_of_a_reject() {
    let nas = nas();
    let datagram = hex(
        "032a0035d48b502114bd938d124928d2c7a8d38a50126fa92d58b8b6e131a65a33e82bf0\
         d6191205426164120a70617373776f7264",
    );
    let response = pending(&nas)
        .handle_response(&datagram, &secret(), STRICT)
        .unwrap();
    assert_eq!(response.kind, ResponseKind::Reject);
    assert_eq!(response.reply_message.as_deref(), Some("Bad\npassword"));
}

#[test]
fn refuses_a_response_signed_with_another_secret() {
    let nas = nas();
    let datagram = hex("022a00144c1508856d7bb0a9b14a175ae6673849");
    let other = SharedSecret::new(b"not-the-secret".to_vec()).unwrap();
    assert_eq!(
        pending(&nas).handle_response(&datagram, &other, LAX),
        Err(ResponseError::AuthenticatorMismatch)
    );
}

#[test]
fn refuses_a_response_to_another_identifier() {
    let nas = nas();
    let datagram = signed_response(0x02, 0x2b, &[], true);
    assert_eq!(
        pending(&nas).handle_response(&datagram, &secret(), STRICT),
        Err(ResponseError::IdentifierMismatch {
            expected: Identifier(0x2a),
            got: Identifier(0x2b)
        })
    );
}

#[test]
fn refuses_a_bad_message_authenticator_even_with_a_valid_response_authenticator() {
    let nas = nas();
    let mut datagram = signed_response(0x02, 0x2a, &[], true);
    datagram[30] ^= 0x01;
    let auth = response_authenticator(&datagram, &authenticator(), &secret());
    datagram[4..20].copy_from_slice(&auth);
    assert_eq!(
        pending(&nas).handle_response(&datagram, &secret(), LAX),
        Err(ResponseError::MessageAuthenticatorMismatch)
    );
}

#[test]
fn refuses_duplicate_or_short_message_authenticators() {
    let nas = nas();
    let twice = signed_response(
        0x02,
        0x2a,
        &[(attribute::MESSAGE_AUTHENTICATOR, &[0; 16])],
        true,
    );
    assert_eq!(
        pending(&nas).handle_response(&twice, &secret(), LAX),
        Err(ResponseError::BadMessageAuthenticator)
    );
    let short = signed_response(
        0x02,
        0x2a,
        &[(attribute::MESSAGE_AUTHENTICATOR, &[0; 15])],
        false,
    );
    assert_eq!(
        pending(&nas).handle_response(&short, &secret(), LAX),
        Err(ResponseError::BadMessageAuthenticator)
    );
}

#[test]
fn refuses_codes_outside_the_access_exchange_and_double_state() {
    let nas = nas();
    for code in [0x01, 0x04, 0x05, 0x0c, 0x2b, 0xff] {
        let datagram = signed_response(code, 0x2a, &[], true);
        assert_eq!(
            pending(&nas).handle_response(&datagram, &secret(), STRICT),
            Err(ResponseError::UnexpectedCode(code))
        );
    }
    let datagram = signed_response(
        0x0b,
        0x2a,
        &[(attribute::STATE, b"a"), (attribute::STATE, b"b")],
        true,
    );
    assert_eq!(
        pending(&nas).handle_response(&datagram, &secret(), STRICT),
        Err(ResponseError::BadState)
    );
}

#[test]
fn refuses_malformed_framing() {
    let cases: [(Vec<u8>, DecodeError); 6] = [
        (vec![2; 19], DecodeError::TooShort { len: 19 }),
        (
            [&[2, 1, 0, 19][..], &[0; 16]].concat(),
            DecodeError::BadLength { length: 19 },
        ),
        (
            [&[2, 1, 0x10, 0x01][..], &[0; 4_200]].concat(),
            DecodeError::BadLength { length: 4_097 },
        ),
        (
            [&[2, 1, 0, 30][..], &[0; 20]].concat(),
            DecodeError::Truncated {
                length: 30,
                received: 24,
            },
        ),
        (
            [&[2, 1, 0, 22][..], &[0; 16], &[18, 1]].concat(),
            DecodeError::AttributeTooShort {
                offset: 20,
                length: 1,
            },
        ),
        (
            [&[2, 1, 0, 23][..], &[0; 16], &[18, 4, b'x']].concat(),
            DecodeError::AttributeOverrun { offset: 20 },
        ),
    ];
    for (datagram, expected) in cases {
        assert_eq!(Packet::decode(&datagram), Err(expected), "{datagram:02x?}");
    }
    let lone = [&[2, 1, 0, 21][..], &[0; 16], &[18]].concat();
    assert_eq!(
        Packet::decode(&lone),
        Err(DecodeError::AttributeOverrun { offset: 20 })
    );
}

#[test]
fn ignores_padding_after_the_length() {
    let nas = nas();
    let mut datagram = signed_response(0x02, 0x2a, &[(attribute::REPLY_MESSAGE, b"hi")], true);
    datagram.extend_from_slice(&[0xff; 7]);
    let response = pending(&nas)
        .handle_response(&datagram, &secret(), STRICT)
        .unwrap();
    assert_eq!(response.reply_message.as_deref(), Some("hi"));
}

#[test]
fn refuses_every_strict_prefix_of_a_valid_response() {
    let nas = nas();
    let datagram = signed_response(
        0x0b,
        0x2a,
        &[
            (attribute::REPLY_MESSAGE, b"Enter"),
            (attribute::STATE, b"s"),
        ],
        true,
    );
    assert!(
        pending(&nas)
            .handle_response(&datagram, &secret(), STRICT)
            .is_ok()
    );
    for end in 0..datagram.len() {
        let refused = pending(&nas).handle_response(&datagram[..end], &secret(), STRICT);
        assert!(
            matches!(refused, Err(ResponseError::Malformed(_))),
            "prefix {end}: {refused:?}"
        );
    }
}

#[test]
fn shared_secret_is_not_printed() {
    assert_eq!(format!("{:?}", secret()), "SharedSecret(..)");
    let nas = nas();
    let shown = format!("{:?}", pending(&nas));
    assert!(
        !shown.contains("arctangent") && !shown.contains("4bfc"),
        "{shown}"
    );
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let nas = nas();
        let _ = Packet::decode(&data);
        let _ = pending(&nas).handle_response(&data, &secret(), STRICT);
        fuzz::response(&data);
    }

    #[test]
    fn decoding_a_corrupted_valid_response_never_panics(
        at in 0usize..80,
        byte in any::<u8>(),
    ) {
        let mut data = signed_response(
            0x0b,
            0x2a,
            &[(attribute::REPLY_MESSAGE, b"Enter your token code"), (attribute::STATE, b"xyz")],
            true,
        );
        let at = at % data.len();
        data[at] = byte;
        fuzz::response(&data);
    }

    #[test]
    fn hidden_passwords_reveal_to_themselves(
        password in proptest::collection::vec(any::<u8>(), 0..=128),
        auth in any::<[u8; AUTHENTICATOR_LEN]>(),
    ) {
        let authenticator = Authenticator(auth);
        let hidden = hide_password(&password, &secret(), &authenticator).unwrap();
        prop_assert_eq!(hidden.len() % 16, 0);
        prop_assert!(hidden.len() >= 16);
        let revealed = access::reveal_password(&hidden, &secret(), &authenticator);
        prop_assert_eq!(&revealed[..password.len()], password.as_slice());
    }

    #[test]
    fn signed_responses_decode_to_their_attributes(
        prompt in proptest::collection::vec(any::<u8>(), 1..=253),
        state in proptest::collection::vec(any::<u8>(), 1..=253),
        mac in any::<bool>(),
    ) {
        let nas = nas();
        let data = signed_response(
            0x0b,
            0x2a,
            &[(attribute::REPLY_MESSAGE, &prompt), (attribute::STATE, &state)],
            mac,
        );
        let response = pending(&nas).handle_response(&data, &secret(), LAX).unwrap();
        prop_assert_eq!(response.kind, ResponseKind::Challenge);
        let expected_prompt = String::from_utf8_lossy(&prompt).into_owned();
        prop_assert_eq!(response.reply_message, Some(expected_prompt));
        prop_assert_eq!(response.state, Some(state));
        prop_assert_eq!(data.len() >= HEADER_LEN, true);
    }
}

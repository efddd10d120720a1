//! Unit tests of [`super`].

use super::*;

const SUCCESS_V4: [u8; 10] = [0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];

#[test]
fn encodes_the_greeting_ica_clients_send_with_no_auth() {
    assert_eq!(GREETING, [0x05, 0x01, 0x00]);
}

#[test]
fn encodes_connect_with_the_ticket_text_as_domain() {
    let host = SocksHost::new(";40;STA1;ABCD").unwrap();
    let mut expected = vec![0x05, 0x01, 0x00, 0x03, 13];
    expected.extend_from_slice(b";40;STA1;ABCD");
    expected.extend_from_slice(&[0x05, 0xd6]);
    assert_eq!(encode_connect(&host, ICA_PORT), expected);
}

#[test]
fn rejects_host_text_that_does_not_fit_atyp_3() {
    assert_eq!(SocksHost::new(""), Err(PreambleError::EmptyHost));
    assert_eq!(
        SocksHost::new("x".repeat(256)),
        Err(PreambleError::HostTooLong(256))
    );
    assert!(SocksHost::new("x".repeat(255)).is_ok());
}

#[test]
fn accepts_no_auth_after_every_prefix_asks_for_more() {
    let input = [0x05, 0x00];
    for cut in 0..input.len() {
        assert_eq!(
            decode_method_choice(&input[..cut]),
            Ok(Progress::NeedMore { at_least: 2 })
        );
    }
    assert_eq!(
        decode_method_choice(&input),
        Ok(Progress::Done {
            value: (),
            consumed: 2
        })
    );
}

#[test]
fn rejects_a_method_other_than_no_auth() {
    assert_eq!(
        decode_method_choice(&[0x05, 0xff]),
        Err(PreambleError::MethodRefused(0xff))
    );
    assert_eq!(
        decode_method_choice(&[0x04, 0x00]),
        Err(PreambleError::BadVersion(0x04))
    );
}

#[test]
fn accepts_a_success_reply_after_every_prefix_asks_for_more() {
    for cut in 0..SUCCESS_V4.len() {
        match decode_connect_reply(&SUCCESS_V4[..cut]) {
            Ok(Progress::NeedMore { at_least }) => assert!(at_least > cut),
            other => panic!("prefix {cut}: {other:?}"),
        }
    }
    let mut longer = SUCCESS_V4.to_vec();
    longer.extend_from_slice(b"ICA\0");
    assert_eq!(
        decode_connect_reply(&longer),
        Ok(Progress::Done {
            value: (),
            consumed: 10
        })
    );
}

#[test]
fn measures_replies_with_domain_and_ipv6_addresses() {
    let domain = [0x05, 0x00, 0x00, 0x03, 3, b'a', b'b', b'c', 0x05, 0xd6];
    assert_eq!(
        decode_connect_reply(&domain),
        Ok(Progress::Done {
            value: (),
            consumed: 10
        })
    );
    let mut v6 = vec![0x05, 0x00, 0x00, 0x04];
    v6.extend_from_slice(&[0; 18]);
    assert_eq!(
        decode_connect_reply(&v6),
        Ok(Progress::Done {
            value: (),
            consumed: 22
        })
    );
}

#[test]
fn rejects_refusals_and_unknown_address_types() {
    assert_eq!(
        decode_connect_reply(&[0x05, 0x02]),
        Err(PreambleError::Refused(0x02))
    );
    assert_eq!(
        decode_connect_reply(&[0x05, 0x00, 0x00, 0x09]),
        Err(PreambleError::BadAddressType(0x09))
    );
}

#[test]
fn encodes_connect_to_an_ipv4_or_ipv6_address() {
    let v4 = encode_connect_ip("127.0.0.1".parse().unwrap(), 23102);
    assert_eq!(v4, [0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x5a, 0x3e]);
    let v6 = encode_connect_ip("::1".parse().unwrap(), 1494);
    assert_eq!(v6.len(), 4 + 16 + 2);
    assert_eq!(v6[..4], [0x05, 0x01, 0x00, 0x04]);
    assert_eq!(v6[19], 1);
    assert_eq!(v6[20..], [0x05, 0xd6]);
}

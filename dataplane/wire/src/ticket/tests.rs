use proptest::prelude::*;

use super::*;

const SECRET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
const TEXT: &str = ";40;STA01;ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

fn sample() -> StaTicket {
    StaTicket {
        version: TicketVersion::V40,
        sta_id: StaId::decode(b"STA01").unwrap(),
        ticket: Ticket::decode(SECRET.as_bytes()).unwrap(),
    }
}

#[test]
fn decodes_a_version_40_ticket() {
    let ticket = StaTicket::decode(TEXT.as_bytes()).unwrap();
    assert_eq!(ticket, sample());
    assert_eq!(ticket.sta_id.as_str(), "STA01");
    assert_eq!(ticket.ticket.as_str(), SECRET);
    assert!(ticket.version.supports_reliability());
}

#[test]
fn decodes_every_known_version() {
    for (text, version) in [
        ("10", TicketVersion::V10),
        ("20", TicketVersion::V20),
        ("22", TicketVersion::V22),
        ("40", TicketVersion::V40),
    ] {
        let full = format!(";{text};STA01;{SECRET}");
        assert_eq!(StaTicket::decode(full.as_bytes()).unwrap().version, version);
        assert_eq!(version.as_str(), text);
        assert_eq!(version.supports_reliability(), text == "40");
    }
}

#[test]
fn decodes_an_empty_sta_id() {
    let ticket: StaTicket = format!(";22;;{SECRET}").parse().unwrap();
    assert!(ticket.sta_id.is_empty());
    assert_eq!(ticket.to_text(), format!(";22;;{SECRET}"));
}

#[test]
fn decodes_a_sixteen_character_sta_id_with_dash_and_underscore() {
    let ticket: StaTicket = format!(";40;STA_0123-abcdEF;{SECRET}").parse().unwrap();
    assert_eq!(ticket.sta_id.as_str(), "STA_0123-abcdEF");
    let longest = format!(";40;{};{SECRET}", "A".repeat(MAX_STA_ID_LEN));
    assert_eq!(
        StaTicket::decode(longest.as_bytes()).unwrap().to_text(),
        longest
    );
    assert_eq!(longest.len(), MAX_TEXT_LEN);
}

#[test]
fn encodes_the_wire_form() {
    let mut out = String::from("Address=");
    sample().encode(&mut out);
    assert_eq!(out, format!("Address={TEXT}"));
    assert_eq!(sample().to_text(), TEXT);
}

#[test]
fn rejects_text_without_leading_semicolon() {
    assert_eq!(
        StaTicket::decode(&TEXT.as_bytes()[1..]),
        Err(TicketError::Malformed)
    );
    assert_eq!(StaTicket::decode(b""), Err(TicketError::Malformed));
}

#[test]
fn rejects_wrong_field_counts() {
    for text in [
        ";".to_owned(),
        ";40".to_owned(),
        ";40;STA01".to_owned(),
        format!(";40;STA01;{SECRET};"),
        format!(";40;STA01;{SECRET};1494"),
        format!(";40;STA;01;{SECRET}"),
    ] {
        assert_eq!(
            StaTicket::decode(text.as_bytes()),
            Err(TicketError::Malformed),
            "{text}"
        );
    }
}

#[test]
fn rejects_unknown_and_malformed_versions() {
    let decode = |v: &str| StaTicket::decode(format!(";{v};STA01;{SECRET}").as_bytes());
    assert_eq!(decode("30"), Err(TicketError::UnknownVersion(30)));
    assert_eq!(decode("04"), Err(TicketError::UnknownVersion(4)));
    assert_eq!(decode("4"), Err(TicketError::BadVersionField { len: 1 }));
    assert_eq!(decode("400"), Err(TicketError::BadVersionField { len: 3 }));
    assert_eq!(decode(""), Err(TicketError::BadVersionField { len: 0 }));
    assert_eq!(decode("4a"), Err(TicketError::BadVersionField { len: 2 }));
    assert_eq!(
        TicketError::UnknownVersion(4).to_string(),
        "unknown sta ticket version 04"
    );
}

#[test]
fn rejects_long_sta_ids() {
    let id = "S".repeat(MAX_STA_ID_LEN + 1);
    assert_eq!(
        StaTicket::decode(format!(";40;{id};{SECRET}").as_bytes()),
        Err(TicketError::StaIdTooLong { len: 17 })
    );
}

#[test]
fn rejects_sta_ids_with_bad_characters() {
    for (id, at, byte) in [
        ("STA 1", 3, b' '),
        ("STA.1", 3, b'.'),
        ("ST\u{e9}", 2, 0xc3),
        ("\0", 0, 0),
    ] {
        assert_eq!(
            StaTicket::decode(format!(";40;{id};{SECRET}").as_bytes()),
            Err(TicketError::StaIdBadChar { at, byte }),
            "{id:?}"
        );
    }
    assert!(StaId::try_from("a;b").is_err());
}

#[test]
fn rejects_tickets_of_the_wrong_length() {
    for len in [0, 1, 31, 33, 64] {
        let ticket = "A".repeat(len);
        assert_eq!(
            StaTicket::decode(format!(";40;STA01;{ticket}").as_bytes()),
            Err(TicketError::TicketLength { len })
        );
    }
}

#[test]
fn rejects_tickets_with_lowercase_or_symbols() {
    let mut lower = SECRET.to_owned();
    lower.replace_range(5..6, "f");
    assert_eq!(
        StaTicket::decode(format!(";40;STA01;{lower}").as_bytes()),
        Err(TicketError::TicketBadChar { at: 5 })
    );
    let mut symbol = SECRET.to_owned();
    symbol.replace_range(31..32, "=");
    assert_eq!(
        Ticket::try_from(symbol.as_str()),
        Err(TicketError::TicketBadChar { at: 31 })
    );
}

#[test]
fn rejects_surrounding_whitespace_when_strict() {
    for text in [
        format!(" {TEXT}"),
        format!("{TEXT} "),
        format!("{TEXT}\r\n"),
    ] {
        assert!(StaTicket::decode(text.as_bytes()).is_err(), "{text:?}");
    }
}

#[test]
fn accepts_the_text_of_an_ica_address_line() {
    for line in [
        TEXT.to_owned(),
        format!("Address={TEXT}"),
        format!("Address={TEXT}\r\n"),
        format!("  {TEXT} "),
    ] {
        assert_eq!(
            StaTicket::decode_ica_address(&line),
            Ok(sample()),
            "{line:?}"
        );
    }
    assert_eq!(
        StaTicket::decode_ica_address("Address=10.0.0.1:1494"),
        Err(TicketError::Malformed)
    );
}

#[test]
fn rejects_every_strict_prefix_of_a_valid_text() {
    let text = TEXT.as_bytes();
    for end in 0..text.len() {
        assert!(
            StaTicket::decode(&text[..end]).is_err(),
            "prefix of {end} bytes was accepted"
        );
    }
    assert_eq!(StaTicket::decode(text), Ok(sample()));
}

#[test]
fn compares_tickets_by_value() {
    let a = Ticket::decode(SECRET.as_bytes()).unwrap();
    let same = Ticket::decode(SECRET.as_bytes()).unwrap();
    let mut other = SECRET.to_owned();
    other.replace_range(31..32, "6");
    let other = Ticket::decode(other.as_bytes()).unwrap();
    assert_eq!(a, same);
    assert_ne!(a, other);
    assert!(bool::from(a.ct_eq(&same)));
    assert!(!bool::from(a.ct_eq(&other)));
}

#[test]
fn debug_and_display_mask_the_secret() {
    let ticket = sample();
    let debug = format!("{ticket:?}");
    let display = ticket.to_string();
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(!debug.contains(&SECRET[4..]), "{debug}");
    assert!(debug.contains("ABCD…"), "{debug}");
    assert_eq!(display, ";40;STA01;ABCD…");
    assert_eq!(format!("{:?}", ticket.ticket), "Ticket(\"ABCD…\")");
}

#[test]
fn errors_never_contain_ticket_bytes() {
    // A ticket with one bad byte: the error must not echo the other 31.
    let bad = format!(";40;STA01;{}x", &SECRET[..31]);
    let err = StaTicket::decode(bad.as_bytes()).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&SECRET[..8]), "{shown}");
    // A secret pushed into the version field is not echoed either.
    let swapped = format!(";{SECRET};STA01;40");
    let err = StaTicket::decode(swapped.as_bytes()).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&SECRET[..8]), "{shown}");
}

#[test]
fn generates_tickets_from_injected_randomness() {
    let mut counter = 0u8;
    let mut fill = |buf: &mut [u8]| {
        for b in buf {
            *b = counter;
            counter = counter.wrapping_add(1);
        }
    };
    let ticket = Ticket::generate(&mut fill).unwrap();
    assert_eq!(ticket.as_str(), "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345");
    assert!(Ticket::decode(ticket.as_str().as_bytes()).is_ok());
}

#[test]
fn generation_skips_bytes_that_would_bias_the_alphabet() {
    // Bytes 252..=255 are rejected; 251 maps to '9' (251 % 36 = 35).
    let mut round = 0;
    let mut fill = |buf: &mut [u8]| {
        round += 1;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = if i % 2 == 0 { 255 } else { 251 };
        }
    };
    let ticket = Ticket::generate(&mut fill).unwrap();
    assert_eq!(ticket.as_str(), "9".repeat(TICKET_LEN));
    assert_eq!(round, 1);
}

#[test]
fn generation_gives_up_on_a_source_of_only_rejected_bytes() {
    let mut calls = 0;
    let mut fill = |buf: &mut [u8]| {
        calls += 1;
        buf.fill(0xFF);
    };
    assert_eq!(Ticket::generate(&mut fill), Err(GenerateError));
    assert_eq!(calls, 64);
}

#[test]
fn generation_maps_accepted_bytes_uniformly_onto_the_alphabet() {
    // Every byte value below 252 maps to one character and each character
    // gets exactly 7 of them; 252..=255 are never used.
    let mut counts = [0usize; 36];
    for value in 0..=u8::MAX {
        let generated = Ticket::generate(&mut |buf: &mut [u8]| buf.fill(value));
        if value >= 252 {
            assert_eq!(generated, Err(GenerateError), "{value}");
            continue;
        }
        let ticket = generated.unwrap();
        let first = ticket.as_str().as_bytes()[0];
        assert!(ticket.as_str().bytes().all(|c| c == first));
        let at = TICKET_ALPHABET.iter().position(|a| *a == first).unwrap();
        assert_eq!(at, usize::from(value) % 36);
        counts[at] += 1;
    }
    assert!(counts.iter().all(|c| *c == 7), "{counts:?}");
}

fn version() -> impl Strategy<Value = TicketVersion> {
    prop::sample::select(TicketVersion::ALL.to_vec())
}

prop_compose! {
    fn sta_ticket()(
        version in version(),
        id in "[A-Za-z0-9_-]{0,16}",
        secret in "[A-Z0-9]{32}",
    ) -> StaTicket {
        StaTicket {
            version,
            sta_id: id.parse().unwrap(),
            ticket: secret.parse().unwrap(),
        }
    }
}

proptest! {
    #[test]
    fn round_trips_any_valid_ticket(ticket in sta_ticket()) {
        let text = ticket.to_text();
        prop_assert!(text.len() <= MAX_TEXT_LEN);
        prop_assert_eq!(StaTicket::decode(text.as_bytes()), Ok(ticket.clone()));
        prop_assert_eq!(StaTicket::decode_ica_address(&format!("Address={text}")), Ok(ticket));
    }

    #[test]
    fn rejects_every_strict_prefix_of_any_valid_ticket(ticket in sta_ticket()) {
        let text = ticket.to_text();
        for end in 0..text.len() {
            prop_assert!(StaTicket::decode(&text.as_bytes()[..end]).is_err());
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(ticket) = StaTicket::decode(&bytes) {
            prop_assert_eq!(ticket.to_text().into_bytes(), bytes);
        }
    }

    #[test]
    fn never_panics_on_near_valid_text(text in ";[0-9]{0,3};[A-Za-z0-9_;-]{0,18};[A-Z0-9a-z;]{30,34}") {
        if let Ok(ticket) = StaTicket::decode(text.as_bytes()) {
            prop_assert_eq!(ticket.to_text(), text);
        }
    }

    #[test]
    fn generated_tickets_always_decode(seed in any::<u64>()) {
        let mut state = seed;
        let mut fill = |buf: &mut [u8]| {
            for b in buf {
                // xorshift64: any byte stream will do for this property.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
        };
        let ticket = Ticket::generate(&mut fill).unwrap();
        prop_assert_eq!(Ticket::decode(ticket.as_str().as_bytes()), Ok(ticket));
    }
}

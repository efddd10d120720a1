//! RFC 4226 Appendix D and RFC 6238 Appendix B vectors, the window, replay
//! refusal and secret/code parsing.

use super::*;

const SEED_SHA1: &[u8] = b"12345678901234567890";
const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

/// RFC 6238 Appendix B: (time, SHA-1, SHA-256, SHA-512), 8 digits.
const RFC6238: [(u64, &str, &str, &str); 6] = [
    (59, "94287082", "46119246", "90693936"),
    (1_111_111_109, "07081804", "68084774", "25091201"),
    (1_111_111_111, "14050471", "67062674", "99943326"),
    (1_234_567_890, "89005924", "91819424", "93441116"),
    (2_000_000_000, "69279037", "90698825", "38618901"),
    (20_000_000_000, "65353130", "77737706", "47863826"),
];

fn params(algorithm: Algorithm, digits: u64) -> TotpParams {
    TotpParams::new(algorithm, digits, 30).unwrap()
}

fn secret(bytes: &[u8]) -> TotpSecret {
    TotpSecret::from_bytes(bytes).unwrap()
}

fn code(text: &str) -> TotpCode {
    TotpCode::parse(text, TotpParams::GATEWAY).unwrap()
}

#[test]
fn matches_the_rfc_4226_hotp_vectors() {
    let expected = [
        755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871, 520_489,
    ];
    let key = secret(SEED_SHA1);
    for (counter, want) in expected.into_iter().enumerate() {
        assert_eq!(
            hotp(&key, counter as u64, TotpParams::GATEWAY),
            want,
            "counter {counter}"
        );
    }
}

#[test]
fn matches_the_rfc_6238_appendix_b_vectors() {
    let seeds = [
        (Algorithm::Sha1, SEED_SHA1),
        (Algorithm::Sha256, SEED_SHA256),
        (Algorithm::Sha512, SEED_SHA512),
    ];
    for (time, sha1, sha256, sha512) in RFC6238 {
        for ((algorithm, seed), want) in seeds.into_iter().zip([sha1, sha256, sha512]) {
            let got = code_at(&secret(seed), time, params(algorithm, 8));
            assert_eq!(got.to_string(), want, "{algorithm:?} at {time}");
        }
    }
}

#[test]
fn six_digit_codes_are_the_low_digits_of_the_rfc_vectors() {
    for (time, sha1, _, _) in RFC6238 {
        let got = code_at(&secret(SEED_SHA1), time, TotpParams::GATEWAY);
        assert_eq!(got.to_string(), sha1[2..], "at {time}");
    }
}

#[test]
fn verifies_the_rfc_vectors_at_their_time() {
    for (time, sha1, _, _) in RFC6238 {
        let verdict = verify(
            &secret(SEED_SHA1),
            code(&sha1[2..]),
            time,
            TotpParams::GATEWAY,
            None,
        );
        assert_eq!(
            verdict,
            TotpVerdict::Accept {
                step: TimeStep(time / 30)
            }
        );
    }
}

#[test]
fn accepts_one_step_either_side_and_no_further() {
    let key = secret(SEED_SHA1);
    let now: u64 = 1_234_567_890;
    for (offset, accepted) in [
        (-60_i64, false),
        (-30, true),
        (0, true),
        (30, true),
        (60, false),
    ] {
        let at = now.checked_add_signed(offset).unwrap();
        let typed = code_at(&key, at, TotpParams::GATEWAY);
        let verdict = verify(&key, typed, now, TotpParams::GATEWAY, None);
        assert_eq!(
            matches!(verdict, TotpVerdict::Accept { .. }),
            accepted,
            "offset {offset}: {verdict:?}"
        );
    }
}

#[test]
fn refuses_a_code_for_a_step_already_accepted() {
    let key = secret(SEED_SHA1);
    let now = 1_234_567_890;
    let typed = code_at(&key, now, TotpParams::GATEWAY);
    let TotpVerdict::Accept { step } = verify(&key, typed, now, TotpParams::GATEWAY, None) else {
        panic!("first use refused");
    };
    // The same code, again, in the same step and in the next one.
    for at in [now, now + 30] {
        assert_eq!(
            verify(&key, typed, at, TotpParams::GATEWAY, Some(step)),
            TotpVerdict::Replay { step }
        );
    }
    // An older code is refused too, a newer one accepted.
    let older = code_at(&key, now - 30, TotpParams::GATEWAY);
    assert!(matches!(
        verify(&key, older, now, TotpParams::GATEWAY, Some(step)),
        TotpVerdict::Replay { .. }
    ));
    let newer = code_at(&key, now + 30, TotpParams::GATEWAY);
    assert_eq!(
        verify(&key, newer, now, TotpParams::GATEWAY, Some(step)),
        TotpVerdict::Accept {
            step: TimeStep(step.0 + 1)
        }
    );
}

#[test]
fn rejects_a_wrong_code_and_a_code_of_other_length() {
    let key = secret(SEED_SHA1);
    let now = 59;
    assert_eq!(
        verify(&key, code("000000"), now, TotpParams::GATEWAY, None),
        TotpVerdict::Reject
    );
    // The 8-digit code is not accepted as a 6-digit one, even if its low
    // digits match.
    let eight = TotpCode::parse("94287082", params(Algorithm::Sha1, 8)).unwrap();
    assert_eq!(
        verify(&key, eight, now, TotpParams::GATEWAY, None),
        TotpVerdict::Reject
    );
}

#[test]
fn verifies_at_time_zero_without_underflow() {
    let key = secret(SEED_SHA1);
    let typed = code_at(&key, 0, TotpParams::GATEWAY);
    assert_eq!(
        verify(&key, typed, 0, TotpParams::GATEWAY, None),
        TotpVerdict::Accept { step: TimeStep(0) }
    );
}

#[test]
fn verify_any_names_the_device_that_matched() {
    let first = secret(SEED_SHA1);
    let second = TotpSecret::generate().unwrap();
    let now = 2_000_000_000;
    let typed = code_at(&second, now, TotpParams::GATEWAY);
    let candidates = [
        Candidate {
            secret: &first,
            last_accepted: None,
        },
        Candidate {
            secret: &second,
            last_accepted: None,
        },
    ];
    let step = TotpParams::GATEWAY.step_at(now);
    assert_eq!(
        verify_any(&candidates, typed, now, TotpParams::GATEWAY),
        AnyVerdict::Accept { index: 1, step }
    );
    let used = [
        candidates[0],
        Candidate {
            secret: &second,
            last_accepted: Some(step),
        },
    ];
    assert_eq!(
        verify_any(&used, typed, now, TotpParams::GATEWAY),
        AnyVerdict::Replay { index: 1, step }
    );
    assert_eq!(
        verify_any(&[], typed, now, TotpParams::GATEWAY),
        AnyVerdict::Reject
    );
}

#[test]
fn generated_secrets_are_160_bits_and_differ() {
    let a = TotpSecret::generate().unwrap();
    let b = TotpSecret::generate().unwrap();
    assert_eq!(a.as_bytes().len(), 20);
    assert_eq!(a.to_base32().len(), 32);
    assert_ne!(a, b);
}

#[test]
fn base32_round_trips_in_any_case_with_or_without_padding() {
    let key = secret(SEED_SHA1);
    let text = key.to_base32();
    assert_eq!(text, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    assert_eq!(TotpSecret::from_base32(&text).unwrap(), key);
    assert_eq!(TotpSecret::from_base32(&text.to_lowercase()).unwrap(), key);
    let ten = secret(b"01234567890");
    let padded = data_encoding::BASE32.encode(ten.as_bytes());
    assert!(padded.ends_with('='));
    assert_eq!(TotpSecret::from_base32(&padded).unwrap(), ten);
}

#[test]
fn refuses_secrets_that_are_not_base32_or_too_short() {
    assert_eq!(TotpSecret::from_base32("GEZ1"), Err(SecretError::NotBase32));
    assert_eq!(
        TotpSecret::from_base32("GEZDGNBV"),
        Err(SecretError::Length(5))
    );
    assert!(TotpSecret::from_base32(&"A".repeat(4_096)).is_err());
    assert!(TotpSecret::from_bytes(&[0; 129]).is_err());
}

#[test]
fn parses_typed_codes_strictly() {
    assert_eq!(code(" 012345 ").to_string(), "012345");
    for bad in [
        "",
        "12345",
        "1234567",
        "12a456",
        "+12345",
        "-12345",
        "１２３４５６",
    ] {
        assert!(TotpCode::parse(bad, TotpParams::GATEWAY).is_err(), "{bad}");
    }
}

#[test]
fn refuses_parameters_out_of_range() {
    assert_eq!(
        TotpParams::new(Algorithm::Sha1, 5, 30),
        Err(ParamsError::Digits(5))
    );
    assert_eq!(
        TotpParams::new(Algorithm::Sha1, 6, 0),
        Err(ParamsError::Period(0))
    );
    assert_eq!(Algorithm::from_name("sha256"), Some(Algorithm::Sha256));
    assert_eq!(Algorithm::from_name("MD5"), None);
}

#[test]
fn debug_output_hides_secrets_and_codes() {
    let key = secret(SEED_SHA1);
    assert_eq!(format!("{key:?}"), "TotpSecret(..)");
    assert_eq!(format!("{:?}", code("123456")), "TotpCode(..)");
}

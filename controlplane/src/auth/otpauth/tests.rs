//! Key URI writing and reading, refusals, and the QR PNG's shape.

use super::*;
use crate::auth::totp::Algorithm;

fn rfc_secret() -> TotpSecret {
    TotpSecret::from_bytes(b"12345678901234567890").unwrap()
}

#[test]
fn writes_the_gateway_uri_with_encoded_labels() {
    let uri = OtpauthUri::gateway("Gatehouse", "alice", rfc_secret(), Some("phone"));
    assert_eq!(
        uri.to_string(),
        "otpauth://totp/Gatehouse:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
         &issuer=Gatehouse&algorithm=SHA1&digits=6&period=30&device=phone"
    );
    let uri = OtpauthUri::gateway("ACME: VPN", "bob smith@corp", rfc_secret(), Some("Pixel 8"));
    assert_eq!(
        uri.to_string(),
        "otpauth://totp/ACME%3A%20VPN:bob%20smith%40corp?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
         &issuer=ACME%3A%20VPN&algorithm=SHA1&digits=6&period=30&device=Pixel%208"
    );
}

#[test]
fn reads_back_what_it_writes() {
    for (issuer, account, device) in [
        ("Gatehouse", "alice", Some("phone")),
        ("ACME: VPN", "bob smith@corp", None),
        ("Société", "zoë", Some("téléphone")),
        ("a&b=c?d/e#f", "x:y+z%", Some("p&q")),
    ] {
        let uri = OtpauthUri::gateway(issuer, account, rfc_secret(), device);
        assert_eq!(OtpauthUri::parse(&uri.to_string()).unwrap(), uri, "{uri}");
    }
    let no_issuer = OtpauthUri {
        issuer: None,
        ..OtpauthUri::gateway("x", "a:b", rfc_secret(), None)
    };
    assert_eq!(
        OtpauthUri::parse(&no_issuer.to_string()).unwrap(),
        no_issuer
    );
}

#[test]
fn reads_uris_of_other_issuers_with_defaults() {
    let uri = OtpauthUri::parse(
        "OTPAUTH://TOTP/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example",
    )
    .unwrap();
    assert_eq!(uri.issuer.as_deref(), Some("Example"));
    assert_eq!(uri.account, "alice@google.com");
    assert_eq!(uri.params, TotpParams::GATEWAY);
    assert_eq!(uri.secret.to_base32(), "JBSWY3DPEHPK3PXP");
    let uri = OtpauthUri::parse(
        "otpauth://totp/ACME%20Co:%20john?secret=jbswy3dpehpk3pxp&algorithm=sha256&digits=8&period=60&extra=1",
    )
    .unwrap();
    assert_eq!(uri.issuer.as_deref(), Some("ACME Co"));
    assert_eq!(uri.account, "john");
    assert_eq!(
        uri.params,
        TotpParams::new(Algorithm::Sha256, 8, 60).unwrap()
    );
    let uri = OtpauthUri::parse("otpauth://totp/john?secret=JBSWY3DPEHPK3PXP").unwrap();
    assert_eq!(uri.issuer, None);
}

#[test]
fn refuses_what_is_not_a_usable_totp_uri() {
    let s = "secret=JBSWY3DPEHPK3PXP";
    let cases: Vec<(String, OtpauthError)> = vec![
        (format!("http://totp/a?{s}"), OtpauthError::Scheme),
        (
            format!("otpauth://hotp/a?{s}&counter=1"),
            OtpauthError::Type,
        ),
        (format!("otpauth://totp/?{s}"), OtpauthError::NoAccount),
        (format!("otpauth://totp/A:?{s}"), OtpauthError::NoAccount),
        (
            "otpauth://totp/a?issuer=x".to_owned(),
            OtpauthError::NoSecret,
        ),
        (
            format!("otpauth://totp/a?{s}&{s}"),
            OtpauthError::Parameter { name: s.to_owned() },
        ),
        (
            format!("otpauth://totp/a?{s}&oops"),
            OtpauthError::Parameter {
                name: "oops".to_owned(),
            },
        ),
        (
            format!("otpauth://totp/a?{s}&algorithm=MD5"),
            OtpauthError::Algorithm,
        ),
        (
            format!("otpauth://totp/a?{s}&digits=five"),
            OtpauthError::Number { name: "digits" },
        ),
        (
            format!("otpauth://totp/a?{s}&digits=9"),
            OtpauthError::Params(ParamsError::Digits(9)),
        ),
        (
            format!("otpauth://totp/a?{s}&period=0"),
            OtpauthError::Params(ParamsError::Period(0)),
        ),
        (
            format!("otpauth://totp/X:a?{s}&issuer=Y"),
            OtpauthError::IssuerMismatch,
        ),
        (
            format!("otpauth://totp/a%0Ab?{s}"),
            OtpauthError::Text {
                part: "label".to_owned(),
            },
        ),
        (
            format!("otpauth://totp/a?{s}&issuer=%FF"),
            OtpauthError::Text {
                part: "issuer".to_owned(),
            },
        ),
        (
            format!("otpauth://totp/a?{}", "x".repeat(5_000)),
            OtpauthError::TooLong,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(OtpauthUri::parse(&text), Err(want), "{text}");
    }
    assert!(matches!(
        OtpauthUri::parse("otpauth://totp/a?secret=JBSW"),
        Err(OtpauthError::Secret(_))
    ));
}

#[test]
fn draws_a_square_png_with_a_quiet_zone() {
    let uri = OtpauthUri::gateway("Gatehouse", "alice", rfc_secret(), Some("phone")).to_string();
    let png_bytes = qr_png(&uri).unwrap();
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.width, info.height);
    assert_eq!(info.width as usize % QR_MODULE_PIXELS, 0);
    let side = info.width as usize;
    let quiet = QR_QUIET_MODULES * QR_MODULE_PIXELS;
    // The quiet zone is white; the finder pattern's corner is black.
    assert!(pixels[..quiet * side].iter().all(|&p| p == 0xff));
    assert_eq!(pixels[quiet * side + quiet], 0x00);
}

#[test]
fn refuses_text_too_long_for_a_qr_code() {
    assert!(matches!(
        qr_png(&"x".repeat(8_000)),
        Err(QrError::TooLong(_))
    ));
}

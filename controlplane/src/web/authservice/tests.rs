//! The `GetAccessInformation` parser: the SOAP shapes a store sends, every
//! refusal typed, every prefix of a valid request refused or read the
//! same, arbitrary bytes never panic; the answer's escaping.

use proptest::prelude::*;

use super::*;

const REQUEST: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\
<soap:Header/><soap:Body><GetAccessInformation xmlns=\"http://citrix.com/authservice/\">\
<sessionId>SESSION-1</sessionId><username>alice</username><domain>EXAMPLE</domain>\
</GetAccessInformation></soap:Body></soap:Envelope>";

#[test]
fn reads_the_session_user_and_domain_of_a_soap_request() {
    let request = decode(REQUEST.as_bytes()).unwrap();
    assert_eq!(request.session_id, "SESSION-1");
    assert_eq!(request.username, "alice");
    assert_eq!(request.domain.as_deref(), Some("EXAMPLE"));
    assert!(!format!("{request:?}").contains("SESSION-1"), "redacted");
}

#[test]
fn reads_any_prefix_entities_and_cdata_and_ignores_unknown_fields() {
    let text = "<e:Envelope xmlns:e=\"x\"><e:Body><a:GetAccessInformation xmlns:a=\"y\">\
<a:SessionID><![CDATA[S]]>&#49;</a:SessionID><a:extra>z</a:extra>\
<a:UserName> bob &amp; co </a:UserName></a:GetAccessInformation></e:Body></e:Envelope>";
    let request = decode(text.as_bytes()).unwrap();
    assert_eq!(request.session_id, "S1");
    assert_eq!(request.username, "bob & co");
    assert_eq!(request.domain, None);
}

#[test]
fn refuses_what_is_not_a_get_access_information_request() {
    let cases: [(&str, AuthServiceError); 6] = [
        ("<nope/>", AuthServiceError::NotGetAccessInformation),
        (
            "<Envelope><Body><Other/></Body></Envelope>",
            AuthServiceError::NotGetAccessInformation,
        ),
        (
            "<Envelope><Body><GetAccessInformation><username>a</username></GetAccessInformation></Body></Envelope>",
            AuthServiceError::Missing("sessionId"),
        ),
        (
            "<Envelope><Body><GetAccessInformation><sessionId>s</sessionId><username> </username></GetAccessInformation></Body></Envelope>",
            AuthServiceError::Missing("username"),
        ),
        (
            "<Envelope><Body><GetAccessInformation><sessionId>&xxe;</sessionId></GetAccessInformation></Body></Envelope>",
            AuthServiceError::UnknownEntity,
        ),
        ("", AuthServiceError::NotGetAccessInformation),
    ];
    for (text, expected) in cases {
        assert_eq!(decode(text.as_bytes()), Err(expected), "{text}");
    }
    let doctype = "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><Envelope/>";
    assert!(matches!(
        decode(doctype.as_bytes()),
        Err(AuthServiceError::Syntax(_))
    ));
    assert_eq!(decode(&[0xff, 0xfe]), Err(AuthServiceError::NotUtf8));
    let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
    assert_eq!(
        decode(&big),
        Err(AuthServiceError::TooLarge(MAX_DOCUMENT_BYTES + 1))
    );
    let deep = format!(
        "<Envelope><Body><GetAccessInformation>{}{}</GetAccessInformation></Body></Envelope>",
        "<a>".repeat(MAX_DEPTH),
        "</a>".repeat(MAX_DEPTH)
    );
    assert_eq!(decode(deep.as_bytes()), Err(AuthServiceError::TooComplex));
    let long = format!(
        "<Envelope><Body><GetAccessInformation><username>{}</username></GetAccessInformation></Body></Envelope>",
        "a".repeat(MAX_FIELD_BYTES + 1)
    );
    assert_eq!(decode(long.as_bytes()), Err(AuthServiceError::TooComplex));
}

#[test]
fn every_prefix_of_a_request_is_refused_or_read_the_same() {
    let full = decode(REQUEST.as_bytes()).unwrap();
    for end in 0..REQUEST.len() {
        if let Ok(request) = decode(&REQUEST.as_bytes()[..end]) {
            assert_eq!(request, full, "prefix of {end} bytes");
        }
    }
}

#[test]
fn the_answer_lists_the_filters_escaped() {
    let text = encode_result("a<b", &["r1".to_owned(), "x&y".to_owned()]);
    assert!(text.contains("<User>a&lt;b</User>"), "{text}");
    assert!(
        text.contains("<Filters><Filter>r1</Filter><Filter>x&amp;y</Filter></Filters>"),
        "{text}"
    );
    assert!(text.contains(NAMESPACE));
    let empty = encode_result("alice", &[]);
    assert!(empty.contains("<Filters></Filters>"), "{empty}");
    let fault = encode_fault("Client", "unknown session");
    assert!(
        fault.contains("<faultcode>soap:Client</faultcode>"),
        "{fault}"
    );
}

#[test]
fn a_user_name_matches_bare_or_with_a_domain_in_any_case() {
    assert!(names_user("alice", "alice"));
    assert!(names_user("EXAMPLE\\Alice", "alice"));
    assert!(!names_user("EXAMPLE\\bob", "alice"));
    assert!(!names_user("alice2", "alice"));
}

proptest! {
    #[test]
    fn the_parser_survives_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        fuzz::request(&data);
    }

    #[test]
    fn the_parser_survives_mutated_requests(index in 0..REQUEST.len(), byte in any::<u8>()) {
        let mut data = REQUEST.as_bytes().to_vec();
        data[index] = byte;
        fuzz::request(&data);
    }
}

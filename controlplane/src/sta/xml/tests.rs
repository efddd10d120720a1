//! Byte vectors, round trips and rejections of the STA XML codec.

use std::collections::BTreeMap;
use std::time::Duration;

use gatehouse_wire::ticket::{StaTicket, TicketError};
use proptest::prelude::*;

use super::*;
use crate::sta::tests::{sample_data, sta_id};
use crate::sta::{AddrError, CgpAddress, Redeemed, StaError, TicketData, TicketKind, XData};

const SECRET: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

fn ticket() -> StaTicket {
    StaTicket::decode(format!(";40;STA01;{SECRET}").as_bytes()).unwrap()
}

/// A request as a store front would write it: indented, an XML
/// declaration, `XData` as an escaped inner document.
const REQUEST_TICKET: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- issued by the store front -->
<CtxSTAProtocol version="4.0">
  <RequestTicket>
    <AllowedTicketType>STA-v1</AllowedTicketType>
    <AllowedTicketType>STA-v4</AllowedTicketType>
    <AllowedAuthorityIDType>STA-v1</AllowedAuthorityIDType>
    <TicketData>
      <Value name="ICAAddress">10.0.0.5:1494</Value>
      <Value name="CGPAddress">*:2598</Value>
      <Value name="XData">&lt;XData&gt;&lt;Server&gt;vda-01&lt;/Server&gt;&lt;User&gt;alice&lt;/User&gt;&lt;Domain&gt;CORP&lt;/Domain&gt;&lt;App&gt;Notepad &amp;lt;x64&amp;gt; &amp;amp; &amp;quot;friends&amp;quot;&lt;/App&gt;&lt;Protocol&gt;ICA&lt;/Protocol&gt;&lt;/XData&gt;</Value>
      <Value name="SessionId">s-42</Value>
    </TicketData>
    <Control><Refreshable>true</Refreshable></Control>
  </RequestTicket>
</CtxSTAProtocol>
"#;

#[test]
fn decodes_a_request_ticket_document() {
    let request = Request::decode(REQUEST_TICKET.as_bytes()).unwrap();
    assert_eq!(
        request,
        Request::Ticket {
            data: sample_data(),
            kind: TicketKind::Refreshable,
        }
    );
}

#[test]
fn encodes_a_request_ticket_document_exactly() {
    let request = Request::Ticket {
        data: TicketData::new("10.0.0.5:1494".parse().unwrap()),
        kind: TicketKind::SingleUse,
    };
    assert_eq!(
        request.encode(),
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><CtxSTAProtocol version="4.0">"#,
            "<RequestTicket><AllowedTicketType>STA-v4</AllowedTicketType>",
            "<AllowedAuthorityIDType>STA-v1</AllowedAuthorityIDType>",
            r#"<TicketData><Value name="ICAAddress">10.0.0.5:1494</Value></TicketData>"#,
            "</RequestTicket></CtxSTAProtocol>"
        )
    );
}

#[test]
fn encodes_request_data_exactly() {
    assert_eq!(
        Request::Data(ticket()).encode(),
        format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><CtxSTAProtocol version="4.0">"#,
                "<RequestData><AuthorityID>STA01</AuthorityID><Ticket>{}</Ticket>",
                "<TicketVersion>40</TicketVersion></RequestData></CtxSTAProtocol>"
            ),
            SECRET
        )
    );
}

#[test]
fn decodes_request_data_in_any_order_with_whitespace() {
    let doc = format!(
        "<CtxSTAProtocol version=\"4.0\">\n <RequestData>\n  <TicketVersion> 40 </TicketVersion>\n  \
         <Ticket>\n{SECRET}\n</Ticket>\n  <AuthorityID>STA01</AuthorityID>\n </RequestData>\n</CtxSTAProtocol>"
    );
    assert_eq!(Request::decode(doc.as_bytes()), Ok(Request::Data(ticket())));
}

#[test]
fn decodes_refresh_revoke_and_id_requests() {
    let refresh = Request::Refresh(ticket()).encode();
    assert!(refresh.contains("<RequestRefresh><AuthorityID>STA01</AuthorityID>"));
    assert_eq!(
        Request::decode(refresh.as_bytes()),
        Ok(Request::Refresh(ticket()))
    );
    let revoke = Request::Revoke(ticket()).encode();
    assert_eq!(
        Request::decode(revoke.as_bytes()),
        Ok(Request::Revoke(ticket()))
    );
    let id = r#"<CtxSTAProtocol version="4.0"><RequestId/></CtxSTAProtocol>"#;
    assert_eq!(Request::decode(id.as_bytes()), Ok(Request::Id));
}

#[test]
fn encodes_response_ticket_exactly() {
    let response = Response::Ticket(IssuedTicket {
        ticket: ticket(),
        lifetime: Some(Duration::from_secs(100)),
    });
    assert_eq!(
        response.encode(),
        format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><CtxSTAProtocol version="4.0">"#,
                "<ResponseTicket><AuthorityID>STA01</AuthorityID><Ticket>{}</Ticket>",
                "<TicketVersion>40</TicketVersion><Lifetime>100</Lifetime></ResponseTicket>",
                "</CtxSTAProtocol>"
            ),
            SECRET
        )
    );
}

#[test]
fn decodes_a_response_ticket_without_lifetime() {
    let doc = format!(
        r#"<CtxSTAProtocol version="4.0"><ResponseTicket><AuthorityID>STA01</AuthorityID><Ticket>{SECRET}</Ticket><TicketVersion>40</TicketVersion></ResponseTicket></CtxSTAProtocol>"#
    );
    assert_eq!(
        Response::decode(doc.as_bytes()),
        Ok(Response::Ticket(IssuedTicket {
            ticket: ticket(),
            lifetime: None
        }))
    );
}

#[test]
fn decodes_a_response_data_document() {
    let doc = r#"<?xml version="1.0"?>
<CtxSTAProtocol version="4.0">
  <ResponseData>
    <TicketData>
      <Value name="ICAAddress">vda-01.corp:1494</Value>
      <Value name="CGPAddress">[fe80::1]:2598</Value>
    </TicketData>
  </ResponseData>
</CtxSTAProtocol>"#;
    let Response::Data(redeemed) = Response::decode(doc.as_bytes()).unwrap() else {
        panic!("not ResponseData");
    };
    assert_eq!(redeemed.kind, TicketKind::SingleUse);
    assert_eq!(redeemed.data.ica_address.to_string(), "vda-01.corp:1494");
    assert_eq!(
        redeemed.data.cgp_target().unwrap().to_string(),
        "[fe80::1]:2598"
    );
}

#[test]
fn encodes_an_error_response_exactly() {
    let response = Response::Error(ErrorReply::from_sta(StaError::Reused));
    assert_eq!(
        response.encode(),
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><CtxSTAProtocol version="4.0">"#,
            "<ResponseError><ErrorId>reused-ticket</ErrorId><Message>ticket already used</Message>",
            "</ResponseError></CtxSTAProtocol>"
        )
    );
}

#[test]
fn every_response_round_trips() {
    let responses = [
        Response::Ticket(IssuedTicket {
            ticket: ticket(),
            lifetime: Some(Duration::from_secs(500)),
        }),
        Response::Refresh(IssuedTicket {
            ticket: ticket(),
            lifetime: None,
        }),
        Response::Data(Redeemed {
            data: sample_data(),
            kind: TicketKind::Refreshable,
        }),
        Response::Revoke,
        Response::Id(sta_id("STA-02_x")),
        Response::Error(ErrorReply {
            id: ErrorId::Full,
            message: "a <b> & 'c'".to_owned(),
        }),
    ];
    for response in responses {
        let doc = response.encode();
        assert_eq!(Response::decode(doc.as_bytes()), Ok(response), "{doc}");
    }
}

#[test]
fn error_ids_round_trip_and_map_to_sta_errors() {
    for error in [
        StaError::UnknownTicket,
        StaError::Expired,
        StaError::Reused,
        StaError::Revoked,
        StaError::WrongAuthority,
        StaError::Full,
        StaError::NotRefreshable,
    ] {
        let id = ErrorId::from(error);
        assert_eq!(ErrorId::decode(id.as_str()), id);
        assert_eq!(id.sta_error(), Some(error));
    }
    assert_eq!(ErrorId::decode("no-such-id"), ErrorId::Unspecified);
    assert_eq!(ErrorId::from(StaError::Random).sta_error(), None);
}

#[test]
fn escapes_special_characters_both_ways() {
    let mut data = TicketData::new("h:1".parse().unwrap());
    data.values.insert(
        "Note".to_owned(),
        "<a href=\"x\">&amp; 'q'\r\n</a>".to_owned(),
    );
    let request = Request::Ticket {
        data,
        kind: TicketKind::SingleUse,
    };
    let doc = request.encode();
    assert!(doc.contains("&lt;a href=&quot;x&quot;&gt;&amp;amp; &apos;q&apos;&#13;\n&lt;/a&gt;"));
    assert_eq!(Request::decode(doc.as_bytes()), Ok(request));
}

#[test]
fn accepts_cdata_and_character_references_in_values() {
    let doc = r#"<CtxSTAProtocol version="4.0"><RequestTicket><TicketData>
        <Value name="ICAAddress"><![CDATA[10.0.0.5]]>&#58;1494</Value>
        <Value name="Note">&#x41;&#66;</Value>
    </TicketData></RequestTicket></CtxSTAProtocol>"#;
    let Request::Ticket { data, kind } = Request::decode(doc.as_bytes()).unwrap() else {
        panic!("not RequestTicket");
    };
    assert_eq!(kind, TicketKind::SingleUse);
    assert_eq!(data.ica_address.to_string(), "10.0.0.5:1494");
    assert_eq!(data.values["Note"], "AB");
}

#[test]
fn refreshable_control_accepts_its_spellings() {
    for (text, kind) in [
        ("<Refreshable/>", TicketKind::Refreshable),
        ("<Refreshable>1</Refreshable>", TicketKind::Refreshable),
        ("<Refreshable>false</Refreshable>", TicketKind::SingleUse),
        ("", TicketKind::SingleUse),
    ] {
        let doc = format!(
            r#"<CtxSTAProtocol version="4.0"><RequestTicket><TicketData><Value name="ICAAddress">h:1</Value></TicketData><Control>{text}</Control></RequestTicket></CtxSTAProtocol>"#
        );
        let Ok(Request::Ticket { kind: got, .. }) = Request::decode(doc.as_bytes()) else {
            panic!("{doc}");
        };
        assert_eq!(got, kind, "{text}");
    }
}

fn request_ticket_with(data: &str) -> String {
    format!(
        r#"<CtxSTAProtocol version="4.0"><RequestTicket><TicketData>{data}</TicketData></RequestTicket></CtxSTAProtocol>"#
    )
}

fn rejects(doc: &str) -> XmlError {
    match Request::decode(doc.as_bytes()) {
        Ok(request) => panic!("accepted {request:?} from {doc}"),
        Err(error) => error,
    }
}

#[test]
fn refuses_doctype_and_entity_expansion() {
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<CtxSTAProtocol version="4.0"><RequestId>&lol2;</RequestId></CtxSTAProtocol>"#;
    assert_eq!(rejects(laughs), XmlError::DocType);
    let external = r#"<!DOCTYPE x SYSTEM "file:///etc/passwd"><CtxSTAProtocol version="4.0"><RequestId/></CtxSTAProtocol>"#;
    assert_eq!(rejects(external), XmlError::DocType);
    let undeclared = request_ticket_with(r#"<Value name="ICAAddress">&xxe;</Value>"#);
    assert_eq!(rejects(&undeclared), XmlError::UnknownEntity);
}

#[test]
fn refuses_wrong_root_version_and_encoding() {
    assert!(matches!(
        rejects("<NFuseProtocol version=\"4.0\"><RequestId/></NFuseProtocol>"),
        XmlError::WrongRoot { .. }
    ));
    assert_eq!(
        rejects(r#"<CtxSTAProtocol version="3.0"><RequestId/></CtxSTAProtocol>"#),
        XmlError::UnsupportedVersion {
            found: "3.0".to_owned()
        }
    );
    assert!(matches!(
        rejects("<CtxSTAProtocol><RequestId/></CtxSTAProtocol>"),
        XmlError::MissingAttribute {
            name: "version",
            ..
        }
    ));
    assert_eq!(
        rejects(
            r#"<?xml version="1.0" encoding="ISO-8859-1"?><CtxSTAProtocol version="4.0"><RequestId/></CtxSTAProtocol>"#
        ),
        XmlError::NotUtf8
    );
    assert_eq!(
        Request::decode(b"<CtxSTAProtocol version=\"4.0\">\xff</CtxSTAProtocol>"),
        Err(XmlError::NotUtf8)
    );
    assert_eq!(rejects(""), XmlError::MissingRoot);
}

#[test]
fn refuses_documents_over_the_size_limit() {
    let padding = " ".repeat(MAX_DOCUMENT_BYTES);
    let doc = format!(r#"<CtxSTAProtocol version="4.0"><RequestId/></CtxSTAProtocol>{padding}"#);
    assert!(matches!(rejects(&doc), XmlError::TooLarge { .. }));
}

#[test]
fn refuses_structural_mistakes() {
    assert!(matches!(
        rejects(r#"<CtxSTAProtocol version="4.0"><RequestNothing/></CtxSTAProtocol>"#),
        XmlError::UnexpectedElement { .. }
    ));
    assert!(matches!(
        rejects(r#"<CtxSTAProtocol version="4.0"></CtxSTAProtocol>"#),
        XmlError::MissingElement { .. }
    ));
    assert!(matches!(
        rejects(r#"<CtxSTAProtocol version="4.0"><RequestId/><RequestId/></CtxSTAProtocol>"#),
        XmlError::UnexpectedElement { .. }
    ));
    assert_eq!(
        rejects(r#"<CtxSTAProtocol version="4.0"><RequestId/></CtxSTAProtocol><x/>"#),
        XmlError::TrailingContent
    );
    assert!(matches!(
        rejects(r#"<CtxSTAProtocol version="4.0">text<RequestId/></CtxSTAProtocol>"#),
        XmlError::UnexpectedText { .. }
    ));
    assert!(matches!(
        rejects(r#"<CtxSTAProtocol version="4.0"><RequestId></CtxSTAProtocol>"#),
        XmlError::Syntax { .. }
    ));
    assert!(matches!(
        rejects(r#"<CtxSTAProtocol version="4.0"><RequestId>"#),
        XmlError::Syntax { .. }
    ));
    let twice = format!(
        "<CtxSTAProtocol version=\"4.0\"><RequestData><AuthorityID>STA01</AuthorityID>\
         <AuthorityID>STA01</AuthorityID><Ticket>{SECRET}</Ticket><TicketVersion>40</TicketVersion>\
         </RequestData></CtxSTAProtocol>"
    );
    assert_eq!(
        rejects(&twice),
        XmlError::DuplicateElement {
            name: "AuthorityID",
            parent: "RequestData"
        }
    );
}

#[test]
fn refuses_bad_ticket_data() {
    assert_eq!(
        rejects(&request_ticket_with(
            r#"<Value name="CGPAddress">h:2598</Value>"#
        )),
        XmlError::MissingValue { name: "ICAAddress" }
    );
    assert_eq!(
        rejects(&request_ticket_with(
            r#"<Value name="ICAAddress">h</Value>"#
        )),
        XmlError::BadAddress {
            name: "ICAAddress",
            source: AddrError::MissingPort
        }
    );
    assert!(matches!(
        rejects(&request_ticket_with(
            r#"<Value name="ICAAddress">h:1</Value><Value name="ICAAddress">h:2</Value>"#
        )),
        XmlError::DuplicateValue { .. }
    ));
    assert!(matches!(
        rejects(&request_ticket_with(r#"<Value name="a b">x</Value>"#)),
        XmlError::BadValueName { .. }
    ));
    assert!(matches!(
        rejects(&request_ticket_with(r#"<Value>x</Value>"#)),
        XmlError::MissingAttribute { name: "name", .. }
    ));
    assert!(matches!(
        rejects(&request_ticket_with(
            r#"<Value name="ICAAddress">h:1</Value><Value name="XData">&lt;Other/&gt;</Value>"#
        )),
        XmlError::UnexpectedElement { .. }
    ));
    assert_eq!(
        rejects(&request_ticket_with(
            r#"<Value name="ICAAddress">h:1&#1;</Value>"#
        )),
        XmlError::ForbiddenChar { element: "Value" }
    );
    let many: String = (0..40)
        .map(|i| format!(r#"<Value name="V{i}">x</Value>"#))
        .collect();
    assert_eq!(
        rejects(&request_ticket_with(&many)),
        XmlError::TooMany {
            parent: "TicketData",
            max: crate::sta::MAX_EXTRA_VALUES + 3
        }
    );
    let big = "x".repeat(crate::sta::MAX_TICKET_DATA_BYTES);
    assert!(matches!(
        rejects(&request_ticket_with(&format!(
            r#"<Value name="ICAAddress">h:1</Value><Value name="Big">{big}</Value>"#
        ))),
        XmlError::DataTooLarge { .. }
    ));
}

#[test]
fn refuses_ticket_types_it_does_not_issue() {
    let doc = r#"<CtxSTAProtocol version="4.0"><RequestTicket><AllowedTicketType>STA-v1</AllowedTicketType><TicketData><Value name="ICAAddress">h:1</Value></TicketData></RequestTicket></CtxSTAProtocol>"#;
    assert_eq!(rejects(doc), XmlError::UnsupportedTicketType);
    assert_eq!(
        ErrorReply::from_xml(&XmlError::UnsupportedTicketType).id,
        ErrorId::UnsupportedTicketType
    );
    let doc = r#"<CtxSTAProtocol version="4.0"><RequestTicket><AllowedAuthorityIDType>X</AllowedAuthorityIDType><TicketData><Value name="ICAAddress">h:1</Value></TicketData></RequestTicket></CtxSTAProtocol>"#;
    assert_eq!(rejects(doc), XmlError::UnsupportedAuthorityIdType);
}

#[test]
fn errors_never_quote_the_ticket_secret() {
    let almost = "0123456789abcdefGHIJKLMNOPQRSTUV";
    let doc = format!(
        "<CtxSTAProtocol version=\"4.0\"><RequestData><AuthorityID>STA01</AuthorityID>\
         <Ticket>{almost}</Ticket><TicketVersion>40</TicketVersion></RequestData></CtxSTAProtocol>"
    );
    let error = rejects(&doc);
    assert_eq!(
        error,
        XmlError::BadTicket {
            element: "Ticket",
            source: TicketError::TicketBadChar { at: 10 }
        }
    );
    let message = error.to_string();
    assert!(!message.contains("abcdef"), "{message}");
    let long = format!(
        "<CtxSTAProtocol version=\"4.0\"><RequestData><Ticket>{}</Ticket></RequestData></CtxSTAProtocol>",
        "S".repeat(1_000)
    );
    assert!(!rejects(&long).to_string().contains("SSSS"));
}

#[test]
fn request_values_reserved_names_are_not_duplicated() {
    let mut data = TicketData::new("h:1".parse().unwrap());
    data.values
        .insert("ICAAddress".to_owned(), "x:2".to_owned());
    let doc = Request::Ticket {
        data,
        kind: TicketKind::SingleUse,
    }
    .encode();
    let Ok(Request::Ticket { data, .. }) = Request::decode(doc.as_bytes()) else {
        panic!("{doc}");
    };
    assert_eq!(data.ica_address.to_string(), "h:1");
    assert!(data.values.is_empty());
}

fn text() -> impl Strategy<Value = String> {
    // Printable text (XML cannot carry most control characters) with the
    // characters that need escaping over-represented.
    proptest::string::string_regex("[ -~\u{a0}-\u{2ff}\t\n\r<>&'\"]{0,40}").unwrap()
}

fn data_strategy() -> impl Strategy<Value = TicketData> {
    let host = proptest::string::string_regex("[a-z0-9][a-z0-9.-]{0,20}").unwrap();
    let cgp = prop_oneof![
        Just(None),
        (1_u16..).prop_map(|port| Some(CgpAddress::SameHost { port })),
    ];
    let xdata = proptest::option::of(
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
        )
            .prop_map(|(server, user, domain, app, protocol)| XData {
                server,
                user,
                domain,
                app,
                protocol,
            }),
    );
    let values = proptest::collection::btree_map(
        proptest::string::string_regex("[A-Za-z][A-Za-z0-9_.-]{0,10}")
            .unwrap()
            .prop_filter("reserved", |name| {
                ![ICA_ADDRESS, CGP_ADDRESS, XDATA].contains(&name.as_str())
            }),
        text(),
        0..5,
    );
    (host, 1_u16.., cgp, xdata, values).prop_map(|(host, port, cgp_address, xdata, values)| {
        TicketData {
            ica_address: crate::sta::WorkerAddr { host, port },
            cgp_address,
            xdata,
            values: values.into_iter().collect::<BTreeMap<_, _>>(),
        }
    })
}

fn sta_ticket() -> impl Strategy<Value = StaTicket> {
    (
        proptest::string::string_regex("[A-Za-z0-9_-]{0,16}").unwrap(),
        proptest::string::string_regex("[A-Z0-9]{32}").unwrap(),
        0_usize..4,
    )
        .prop_map(|(id, secret, version)| {
            let version = ["10", "20", "22", "40"][version];
            StaTicket::decode(format!(";{version};{id};{secret}").as_bytes()).unwrap()
        })
}

fn request_strategy() -> impl Strategy<Value = Request> {
    prop_oneof![
        (data_strategy(), any::<bool>()).prop_map(|(data, refreshable)| Request::Ticket {
            data,
            kind: if refreshable {
                TicketKind::Refreshable
            } else {
                TicketKind::SingleUse
            },
        }),
        sta_ticket().prop_map(Request::Data),
        sta_ticket().prop_map(Request::Refresh),
        sta_ticket().prop_map(Request::Revoke),
        Just(Request::Id),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(request in request_strategy()) {
        let doc = request.encode();
        prop_assert_eq!(Request::decode(doc.as_bytes()), Ok(request));
    }

    #[test]
    fn redeemed_data_round_trips(data in data_strategy(), refreshable in any::<bool>()) {
        let kind = if refreshable { TicketKind::Refreshable } else { TicketKind::SingleUse };
        let response = Response::Data(Redeemed { data, kind });
        let doc = response.encode();
        prop_assert_eq!(Response::decode(doc.as_bytes()), Ok(response));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Request::decode(&bytes);
        let _ = Response::decode(&bytes);
    }

    /// Valid documents with one byte changed: the interesting inputs for a
    /// parser. Whatever still decodes must round-trip.
    #[test]
    fn mutated_documents_never_panic(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        for doc in [REQUEST_TICKET.to_owned(), Request::Data(ticket()).encode()] {
            let mut bytes = doc.into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Ok(request) = Request::decode(&bytes) {
                prop_assert_eq!(Request::decode(request.encode().as_bytes()), Ok(request));
            }
        }
    }
}

/// The schema document, `docs/STA.md` at the repository root.
const SCHEMA_DOC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/STA.md"));

#[test]
fn every_example_in_the_schema_document_decodes() {
    let examples: Vec<&str> = SCHEMA_DOC
        .split("```xml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .collect();
    assert!(examples.len() >= 10, "found {}", examples.len());
    for example in examples {
        let bytes = example.as_bytes();
        assert!(
            Request::decode(bytes).is_ok() || Response::decode(bytes).is_ok(),
            "{example}\nrequest: {:?}\nresponse: {:?}",
            Request::decode(bytes),
            Response::decode(bytes)
        );
    }
}

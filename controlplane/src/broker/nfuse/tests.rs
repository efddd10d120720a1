use super::*;

const ENVELOPE: &str = r#"<?xml version="1.0" encoding="utf-8"?><!DOCTYPE NFuseProtocol SYSTEM "NFuse.dtd"><NFuseProtocol version="5.1">"#;

fn doc(body: &str) -> Vec<u8> {
    format!("{ENVELOPE}{body}</NFuseProtocol>").into_bytes()
}

const CREDS: &str = r#"<Credentials><UserName>alice</UserName><Password encoding="cleartext">s3cret &amp; more</Password><Domain Type="NT">CORP</Domain></Credentials>"#;

#[test]
fn the_seeds_capabilities_request_decodes() {
    let envelope = decode(&doc("<RequestCapabilities></RequestCapabilities>")).unwrap();
    assert_eq!(envelope.version, Version { major: 5, minor: 1 });
    assert_eq!(envelope.request, Request::Capabilities);
}

#[test]
fn credentials_decode_in_cleartext_with_entities() {
    let envelope = decode(&doc(&format!(
        "<RequestValidateCredentials>{CREDS}</RequestValidateCredentials>"
    )))
    .unwrap();
    let Request::ValidateCredentials { credentials } = envelope.request else {
        panic!("not a validate request");
    };
    assert_eq!(credentials.user, "alice");
    assert_eq!(credentials.password.expose(), "s3cret & more");
    assert_eq!(credentials.domain.as_deref(), Some("CORP"));
    assert!(
        !format!("{credentials:?}").contains("s3cret"),
        "debug hides the password"
    );
}

#[test]
fn ctx1_passwords_are_decoded() {
    let body = format!(
        "<RequestValidateCredentials><Credentials><UserName>bob</UserName><Password encoding=\"ctx1\">{}</Password></Credentials></RequestValidateCredentials>",
        ctx1::encode("Password1")
    );
    let Request::ValidateCredentials { credentials } = decode(&doc(&body)).unwrap().request else {
        panic!("not a validate request");
    };
    assert_eq!(credentials.password.expose(), "Password1");
}

#[test]
fn a_bad_ctx1_password_is_failed_credentials() {
    let body = "<RequestValidateCredentials><Credentials><UserName>bob</UserName><Password encoding=\"ctx1\">XYZ</Password></Credentials></RequestValidateCredentials>";
    let refusal = decode(&doc(body)).unwrap_err();
    assert_eq!(refusal.kind, Some(RequestKind::ValidateCredentials));
    assert_eq!(refusal.error.error_id(), ErrorId::FailedCredentials);
    let answer = refusal.response().encode("5.1");
    assert!(answer.contains("<ResponseValidateCredentials><ErrorId>failed-credentials</ErrorId></ResponseValidateCredentials>"), "{answer}");
}

#[test]
fn the_seeds_app_data_and_address_requests_decode() {
    let client =
        "<ClientName>PC1</ClientName><ClientAddress addresstype=\"dot\">10.1.2.3</ClientAddress>";
    let app_data = format!(
        "<RequestAppData><Scope traverse=\"subtree\"></Scope><DesiredDetails>rade-offline-mode</DesiredDetails><ServerType>all</ServerType><ClientType>ica30</ClientType><ClientType>content</ClientType>{CREDS}{client}</RequestAppData>"
    );
    let Request::AppData {
        credentials,
        client: info,
        server_types,
        client_types,
    } = decode(&doc(&app_data)).unwrap().request
    else {
        panic!("not app data");
    };
    assert_eq!(credentials.unwrap().user, "alice");
    assert_eq!(info.address, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(info.name.as_deref(), Some("PC1"));
    assert_eq!(server_types, ["all"]);
    assert_eq!(client_types, ["ica30", "content"]);

    let address = format!(
        "<RequestAddress><Name><AppName>Pool Desktop</AppName></Name>{client}<ServerAddress addresstype=\"dns-port\"></ServerAddress>{CREDS}<ClientType>ica30</ClientType></RequestAddress>"
    );
    let Request::Address {
        app, address_type, ..
    } = decode(&doc(&address)).unwrap().request
    else {
        panic!("not address");
    };
    assert_eq!(app, "Pool Desktop");
    assert_eq!(address_type.as_deref(), Some("dns-port"));
}

#[test]
fn ticket_and_reconnect_requests_decode() {
    let body = format!(
        "<RequestTicket>{CREDS}<TicketType>CtxLogon</TicketType><TicketTag>ABC</TicketTag><TimetoLive>200</TimetoLive></RequestTicket>"
    );
    let Request::Ticket { tag, ttl_secs, .. } = decode(&doc(&body)).unwrap().request else {
        panic!("not ticket");
    };
    assert_eq!((tag.as_str(), ttl_secs), ("ABC", Some(200)));
    let body = format!("<RequestReconnectSessionData>{CREDS}</RequestReconnectSessionData>");
    assert_eq!(
        decode(&doc(&body)).unwrap().request.kind(),
        RequestKind::ReconnectSessionData
    );
}

#[test]
fn versions_from_1_to_5_are_accepted_and_6_is_a_version_mismatch() {
    for version in ["1.1", "4.0", "5.2"] {
        let text =
            format!("<NFuseProtocol version=\"{version}\"><RequestCapabilities/></NFuseProtocol>");
        assert_eq!(
            decode(text.as_bytes()).unwrap().version.to_string(),
            version
        );
    }
    let refusal =
        decode(b"<NFuseProtocol version=\"6.0\"><RequestAppData/></NFuseProtocol>").unwrap_err();
    assert_eq!(refusal.error.error_id(), ErrorId::VersionMismatch);
    let answer = refusal.response().encode(PROTOCOL_VERSION);
    assert!(
        answer.contains("<ResponseAppData><ErrorId>version-mismatch</ErrorId></ResponseAppData>"),
        "{answer}"
    );
    let refusal = decode(b"<NFuseProtocol version=\"five\"><RequestCapabilities/></NFuseProtocol>")
        .unwrap_err();
    assert_eq!(refusal.error, NfuseError::BadVersion);
}

#[test]
fn malformed_documents_are_refused_with_a_reason() {
    let cases: [(&[u8], NfuseError); 6] = [
        (b"<NFuseProtocol version=\"5.1\"><RequestCapabilities>", NfuseError::Syntax(0)),
        (b"<Other version=\"5.1\"/>", NfuseError::WrongRoot),
        (b"<NFuseProtocol version=\"5.1\"><RequestNothing/></NFuseProtocol>", NfuseError::UnknownRequest),
        (b"<NFuseProtocol version=\"5.1\"><RequestCapabilities>&xxe;</RequestCapabilities></NFuseProtocol>", NfuseError::UnknownEntity),
        (b"\xff\xfe<", NfuseError::NotUtf8),
        (b"<NFuseProtocol version=\"5.1\"><RequestAddress><Name></Name></RequestAddress></NFuseProtocol>", NfuseError::Missing("AppName")),
    ];
    for (input, expected) in cases {
        let error = decode(input).unwrap_err().error;
        match expected {
            NfuseError::Syntax(_) => assert!(matches!(error, NfuseError::Syntax(_)), "{error:?}"),
            expected => assert_eq!(error, expected),
        }
    }
}

#[test]
fn limits_on_size_depth_and_elements_hold() {
    let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
    assert_eq!(
        decode(&big).unwrap_err().error,
        NfuseError::TooLarge(MAX_DOCUMENT_BYTES + 1)
    );
    let deep = format!(
        "<NFuseProtocol version=\"5.1\">{}{}</NFuseProtocol>",
        "<a>".repeat(20),
        "</a>".repeat(20)
    );
    assert_eq!(
        decode(deep.as_bytes()).unwrap_err().error,
        NfuseError::TooComplex
    );
    let wide = format!(
        "<NFuseProtocol version=\"5.1\"><RequestCapabilities>{}</RequestCapabilities></NFuseProtocol>",
        "<a/>".repeat(MAX_ELEMENTS)
    );
    assert_eq!(
        decode(wide.as_bytes()).unwrap_err().error,
        NfuseError::TooComplex
    );
}

#[test]
fn an_internal_doctype_subset_declares_nothing() {
    let input = b"<!DOCTYPE NFuseProtocol [<!ENTITY x \"boom\">]><NFuseProtocol version=\"5.1\"><RequestValidateCredentials><Credentials><UserName>&x;</UserName><Password>p</Password></Credentials></RequestValidateCredentials></NFuseProtocol>";
    assert_eq!(decode(input).unwrap_err().error, NfuseError::UnknownEntity);
}

#[test]
fn answers_encode_as_the_protocol_says() {
    let capabilities = Response::Capabilities.encode("5.1");
    assert!(capabilities.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert!(capabilities.contains("<NFuseProtocol version=\"5.1\"><ResponseCapabilities><CapabilityId>separate-credentials-validation</CapabilityId>"));
    let apps = Response::AppData(vec![AppEntry {
        name: "Pool".to_owned(),
        display: "Pool <Desktop>".to_owned(),
        desktop: true,
        description: None,
    }])
    .encode("5.1");
    assert!(apps.contains("<AppData><InName>Pool</InName><FName>Pool &lt;Desktop&gt;</FName><Details><Settings appisdesktop=\"true\"></Settings></Details>"), "{apps}");
    let ticket = Response::Ticket {
        ticket: "0123456789ABCDEF0123456789ABCDEF".to_owned(),
    }
    .encode("5.1");
    assert!(
        ticket.contains("<ResponseTicket><Ticket>0123456789ABCDEF0123456789ABCDEF</Ticket><TicketType>CtxLogon</TicketType></ResponseTicket>"),
        "{ticket}"
    );
    let error = Response::Error {
        kind: None,
        id: ErrorId::Unspecified,
    }
    .encode("5.1");
    assert!(
        error.contains(
            "<ResponseProtocolError><ErrorId>unspecified</ErrorId></ResponseProtocolError>"
        )
    );
    for id in [
        "failed-credentials",
        "account-locked-out",
        "expired-credentials",
        "no-server",
        "mfserver-overloaded",
        "version-mismatch",
        "service-unavailable",
        "unspecified",
    ] {
        assert_eq!(ErrorId::parse(id).unwrap().as_str(), id);
    }
}

#[test]
fn the_fuzz_entry_point_survives_hostile_bytes() {
    let inputs: [&[u8]; 8] = [
        b"",
        b"<",
        b"<NFuseProtocol version=\"5.1\">",
        b"<NFuseProtocol version=\"5.1\"></NFuseProtocol><x/>",
        b"<?xml version=\"1.0\" encoding=\"latin1\"?><NFuseProtocol/>",
        b"<NFuseProtocol version=\"255.255\"><RequestTicket/></NFuseProtocol>",
        b"<NFuseProtocol version=\"5.1\"><RequestTicket><TicketTag>a</TicketTag><TimetoLive>-1</TimetoLive></RequestTicket></NFuseProtocol>",
        b"<NFuseProtocol version=\"5.1\"><![CDATA[x]]></NFuseProtocol>",
    ];
    for input in inputs {
        fuzz::request(input);
    }
    for seed in 0u32..2_000 {
        let base = doc(&format!("<RequestAppData>{CREDS}</RequestAppData>"));
        let mut mutated = base.clone();
        let at = (seed.wrapping_mul(2_654_435_761) as usize) % mutated.len();
        mutated[at] = (seed % 256) as u8;
        mutated.truncate(mutated.len() - (seed as usize % 7));
        fuzz::request(&mutated);
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1_024)) {
        fuzz::request(&bytes);
    }

    #[test]
    fn any_user_and_password_survive_the_xml_and_ctx1(
        user in "[a-zA-Z0-9._-]{1,32}",
        password in "\\PC{1,32}",
        ctx1_encoded in proptest::prelude::any::<bool>(),
    ) {
        let (encoding, text) = if ctx1_encoded {
            ("ctx1", ctx1::encode(&password))
        } else {
            let mut escaped = String::new();
            escape_into(&mut escaped, &password);
            ("cleartext", escaped)
        };
        let body = format!(
            "<RequestValidateCredentials><Credentials><UserName>{user}</UserName><Password encoding=\"{encoding}\">{text}</Password></Credentials></RequestValidateCredentials>"
        );
        let Request::ValidateCredentials { credentials } = decode(&doc(&body)).unwrap().request else {
            panic!("not a validate request");
        };
        proptest::prop_assert_eq!(credentials.user, user);
        proptest::prop_assert_eq!(credentials.password.expose(), password.as_str());
    }
}

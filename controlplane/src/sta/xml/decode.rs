//! Decoding of `CtxSTAProtocol` documents: a pull parser over quick-xml
//! events with the schema-independent checks (size, encoding, DOCTYPE,
//! entities, stray text), and one function per element of the schema.

use std::collections::BTreeMap;
use std::time::Duration;

use gatehouse_wire::ticket::{StaId, StaTicket, Ticket, TicketVersion};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::{
    AUTHORITY_ID_TYPE, CGP_ADDRESS, ErrorId, ErrorReply, ICA_ADDRESS, IssuedTicket,
    MAX_DOCUMENT_BYTES, MAX_MESSAGE_BYTES, MAX_VALUE_NAME_BYTES, PROTOCOL_VERSION, ROOT, Request,
    Response, TICKET_TYPE, XDATA, XmlError, truncate,
};
use crate::sta::{
    CgpAddress, MAX_EXTRA_VALUES, MAX_TICKET_DATA_BYTES, Redeemed, TicketData, TicketKind,
    WorkerAddr, XData,
};

/// Longest lifetime a `Lifetime` element may state, in seconds.
const MAX_LIFETIME_SECS: u64 = 1_000_000;

/// Longest typed leaf (IDs, versions, numbers) before it is refused.
const MAX_SHORT_TEXT: usize = 256;

/// Longest name quoted in an error.
const MAX_QUOTED: usize = 64;

/// [`Request::decode`].
pub(super) fn request(input: &[u8]) -> Result<Request, XmlError> {
    let mut parser = Parser::new(input)?;
    parser.root()?;
    const PARENT: &str = ROOT;
    let element = parser.child(PARENT)?.ok_or(XmlError::MissingElement {
        name: "a request",
        parent: PARENT,
    })?;
    let request = match element.name().as_ref() {
        b"RequestTicket" => decode_request_ticket(&mut parser)?,
        b"RequestData" => Request::Data(decode_ticket_ref(&mut parser, "RequestData")?),
        b"RequestRefresh" => Request::Refresh(decode_ticket_ref(&mut parser, "RequestRefresh")?),
        b"RequestRevoke" => Request::Revoke(decode_ticket_ref(&mut parser, "RequestRevoke")?),
        b"RequestId" => {
            parser.empty("RequestId")?;
            Request::Id
        }
        _ => return Err(unexpected(&element, PARENT)),
    };
    parser.finish(PARENT)?;
    Ok(request)
}

/// [`Response::decode`].
pub(super) fn response(input: &[u8]) -> Result<Response, XmlError> {
    let mut parser = Parser::new(input)?;
    parser.root()?;
    const PARENT: &str = ROOT;
    let element = parser.child(PARENT)?.ok_or(XmlError::MissingElement {
        name: "a response",
        parent: PARENT,
    })?;
    let response = match element.name().as_ref() {
        b"ResponseTicket" => Response::Ticket(decode_issued(&mut parser, "ResponseTicket")?),
        b"ResponseRefresh" => Response::Refresh(decode_issued(&mut parser, "ResponseRefresh")?),
        b"ResponseData" => Response::Data(decode_response_data(&mut parser)?),
        b"ResponseRevoke" => {
            parser.empty("ResponseRevoke")?;
            Response::Revoke
        }
        b"ResponseId" => Response::Id(decode_response_id(&mut parser)?),
        b"ResponseError" => Response::Error(decode_error(&mut parser)?),
        _ => return Err(unexpected(&element, PARENT)),
    };
    parser.finish(PARENT)?;
    Ok(response)
}

fn decode_request_ticket(parser: &mut Parser<'_>) -> Result<Request, XmlError> {
    const PARENT: &str = "RequestTicket";
    let (mut ticket_types, mut authority_types) = (Vec::new(), Vec::new());
    let (mut data, mut kind) = (None, None);
    while let Some(element) = parser.child(PARENT)? {
        match element.name().as_ref() {
            b"AllowedTicketType" => ticket_types.push(parser.short_text("AllowedTicketType")?),
            b"AllowedAuthorityIDType" => {
                authority_types.push(parser.short_text("AllowedAuthorityIDType")?);
            }
            b"TicketData" => {
                set_once(&mut data, decode_ticket_data(parser)?, "TicketData", PARENT)?
            }
            b"Control" => set_once(&mut kind, decode_control(parser)?, "Control", PARENT)?,
            _ => return Err(unexpected(&element, PARENT)),
        }
        // Each list is bounded by the document size; a request needs few.
        if ticket_types.len() + authority_types.len() > MAX_EXTRA_VALUES {
            return Err(XmlError::TooMany {
                parent: PARENT,
                max: MAX_EXTRA_VALUES,
            });
        }
    }
    if !ticket_types.is_empty() && !ticket_types.iter().any(|t| t == TICKET_TYPE) {
        return Err(XmlError::UnsupportedTicketType);
    }
    if !authority_types.is_empty() && !authority_types.iter().any(|t| t == AUTHORITY_ID_TYPE) {
        return Err(XmlError::UnsupportedAuthorityIdType);
    }
    Ok(Request::Ticket {
        data: data.ok_or(XmlError::MissingElement {
            name: "TicketData",
            parent: PARENT,
        })?,
        kind: kind.unwrap_or(TicketKind::SingleUse),
    })
}

/// `AuthorityID`, `Ticket`, `TicketVersion`, each once, any order.
fn decode_ticket_ref(parser: &mut Parser<'_>, parent: &'static str) -> Result<StaTicket, XmlError> {
    // Without `with_lifetime` a `Lifetime` element is refused as unexpected.
    let (ticket, _) = decode_ticket_fields(parser, parent, false)?;
    Ok(ticket)
}

fn decode_issued(parser: &mut Parser<'_>, parent: &'static str) -> Result<IssuedTicket, XmlError> {
    let (ticket, lifetime) = decode_ticket_fields(parser, parent, true)?;
    Ok(IssuedTicket { ticket, lifetime })
}

fn decode_ticket_fields(
    parser: &mut Parser<'_>,
    parent: &'static str,
    with_lifetime: bool,
) -> Result<(StaTicket, Option<Duration>), XmlError> {
    let (mut sta_id, mut secret, mut version, mut lifetime) = (None, None, None, None);
    while let Some(element) = parser.child(parent)? {
        match element.name().as_ref() {
            b"AuthorityID" => {
                let text = parser.short_text("AuthorityID")?;
                let id = StaId::decode(text.as_bytes()).map_err(|source| XmlError::BadTicket {
                    element: "AuthorityID",
                    source,
                })?;
                set_once(&mut sta_id, id, "AuthorityID", parent)?;
            }
            b"Ticket" => {
                let text = parser.short_text("Ticket")?;
                let ticket =
                    Ticket::decode(text.as_bytes()).map_err(|source| XmlError::BadTicket {
                        element: "Ticket",
                        source,
                    })?;
                set_once(&mut secret, ticket, "Ticket", parent)?;
            }
            b"TicketVersion" => {
                let text = parser.short_text("TicketVersion")?;
                let parsed = TicketVersion::decode(text.as_bytes()).map_err(|source| {
                    XmlError::BadTicket {
                        element: "TicketVersion",
                        source,
                    }
                })?;
                set_once(&mut version, parsed, "TicketVersion", parent)?;
            }
            b"Lifetime" if with_lifetime => {
                let secs = parser
                    .short_text("Lifetime")?
                    .parse::<u64>()
                    .ok()
                    .filter(|secs| *secs <= MAX_LIFETIME_SECS)
                    .ok_or(XmlError::BadNumber {
                        element: "Lifetime",
                    })?;
                set_once(&mut lifetime, Duration::from_secs(secs), "Lifetime", parent)?;
            }
            _ => return Err(unexpected(&element, parent)),
        }
    }
    let missing = |name| XmlError::MissingElement { name, parent };
    let ticket = StaTicket {
        version: version.ok_or(missing("TicketVersion"))?,
        sta_id: sta_id.ok_or(missing("AuthorityID"))?,
        ticket: secret.ok_or(missing("Ticket"))?,
    };
    Ok((ticket, lifetime))
}

fn decode_response_data(parser: &mut Parser<'_>) -> Result<Redeemed, XmlError> {
    const PARENT: &str = "ResponseData";
    let (mut data, mut kind) = (None, None);
    while let Some(element) = parser.child(PARENT)? {
        match element.name().as_ref() {
            b"TicketData" => {
                set_once(&mut data, decode_ticket_data(parser)?, "TicketData", PARENT)?
            }
            b"Control" => set_once(&mut kind, decode_control(parser)?, "Control", PARENT)?,
            _ => return Err(unexpected(&element, PARENT)),
        }
    }
    Ok(Redeemed {
        data: data.ok_or(XmlError::MissingElement {
            name: "TicketData",
            parent: PARENT,
        })?,
        kind: kind.unwrap_or(TicketKind::SingleUse),
    })
}

fn decode_response_id(parser: &mut Parser<'_>) -> Result<StaId, XmlError> {
    const PARENT: &str = "ResponseId";
    let mut sta_id = None;
    while let Some(element) = parser.child(PARENT)? {
        if element.name().as_ref() != b"AuthorityID" {
            return Err(unexpected(&element, PARENT));
        }
        let text = parser.short_text("AuthorityID")?;
        let id = StaId::decode(text.as_bytes()).map_err(|source| XmlError::BadTicket {
            element: "AuthorityID",
            source,
        })?;
        set_once(&mut sta_id, id, "AuthorityID", PARENT)?;
    }
    sta_id.ok_or(XmlError::MissingElement {
        name: "AuthorityID",
        parent: PARENT,
    })
}

fn decode_error(parser: &mut Parser<'_>) -> Result<ErrorReply, XmlError> {
    const PARENT: &str = "ResponseError";
    let (mut id, mut message) = (None, None);
    while let Some(element) = parser.child(PARENT)? {
        match element.name().as_ref() {
            b"ErrorId" => {
                let text = parser.short_text("ErrorId")?;
                set_once(&mut id, ErrorId::decode(&text), "ErrorId", PARENT)?;
            }
            b"Message" => {
                let text = parser.text("Message", MAX_MESSAGE_BYTES)?;
                set_once(&mut message, text, "Message", PARENT)?;
            }
            _ => return Err(unexpected(&element, PARENT)),
        }
    }
    Ok(ErrorReply {
        id: id.ok_or(XmlError::MissingElement {
            name: "ErrorId",
            parent: PARENT,
        })?,
        message: message.unwrap_or_default(),
    })
}

/// `Control`, holding at most one `Refreshable`.
fn decode_control(parser: &mut Parser<'_>) -> Result<TicketKind, XmlError> {
    const PARENT: &str = "Control";
    let mut refreshable = None;
    while let Some(element) = parser.child(PARENT)? {
        if element.name().as_ref() != b"Refreshable" {
            return Err(unexpected(&element, PARENT));
        }
        let value = match parser.short_text("Refreshable")?.as_str() {
            "" | "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(XmlError::BadBool {
                    element: "Refreshable",
                });
            }
        };
        set_once(&mut refreshable, value, "Refreshable", PARENT)?;
    }
    Ok(if refreshable == Some(true) {
        TicketKind::Refreshable
    } else {
        TicketKind::SingleUse
    })
}

/// `TicketData`: `Value name="..."` items.
fn decode_ticket_data(parser: &mut Parser<'_>) -> Result<TicketData, XmlError> {
    const PARENT: &str = "TicketData";
    let mut values = BTreeMap::new();
    let mut total = 0_usize;
    while let Some(element) = parser.child(PARENT)? {
        if element.name().as_ref() != b"Value" {
            return Err(unexpected(&element, PARENT));
        }
        let name = attribute(&element, b"name")?.ok_or(XmlError::MissingAttribute {
            name: "name",
            element: "Value",
        })?;
        if name.is_empty()
            || name.len() > MAX_VALUE_NAME_BYTES
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(XmlError::BadValueName { name: quote(&name) });
        }
        let text = parser.text("Value", MAX_TICKET_DATA_BYTES)?;
        total += name.len() + text.len();
        if total > MAX_TICKET_DATA_BYTES {
            return Err(XmlError::DataTooLarge {
                max: MAX_TICKET_DATA_BYTES,
            });
        }
        if values.len() >= MAX_EXTRA_VALUES + 3 {
            return Err(XmlError::TooMany {
                parent: PARENT,
                max: MAX_EXTRA_VALUES + 3,
            });
        }
        if values.contains_key(&name) {
            return Err(XmlError::DuplicateValue { name });
        }
        values.insert(name, text);
    }
    let ica = values
        .remove(ICA_ADDRESS)
        .ok_or(XmlError::MissingValue { name: ICA_ADDRESS })?;
    let ica_address =
        WorkerAddr::decode(ica.trim_ascii()).map_err(|source| XmlError::BadAddress {
            name: ICA_ADDRESS,
            source,
        })?;
    let cgp_address =
        match values.remove(CGP_ADDRESS) {
            None => None,
            Some(text) => Some(CgpAddress::decode(text.trim_ascii()).map_err(|source| {
                XmlError::BadAddress {
                    name: CGP_ADDRESS,
                    source,
                }
            })?),
        };
    let xdata = match values.remove(XDATA) {
        None => None,
        Some(text) => Some(decode_xdata(&text)?),
    };
    Ok(TicketData {
        ica_address,
        cgp_address,
        xdata,
        values,
    })
}

/// The inner document of `XData`: `<XData>` with optional `Server`, `User`,
/// `Domain`, `App`, `Protocol` leaves.
fn decode_xdata(text: &str) -> Result<XData, XmlError> {
    const PARENT: &str = "XData";
    let mut parser = Parser::new(text.as_bytes())?;
    let root = parser.next_element(PARENT)?;
    if root.name().as_ref() != b"XData" {
        return Err(unexpected(&root, PARENT));
    }
    let mut xdata = XData::default();
    while let Some(element) = parser.child(PARENT)? {
        let (field, name) = match element.name().as_ref() {
            b"Server" => (&mut xdata.server, "Server"),
            b"User" => (&mut xdata.user, "User"),
            b"Domain" => (&mut xdata.domain, "Domain"),
            b"App" => (&mut xdata.app, "App"),
            b"Protocol" => (&mut xdata.protocol, "Protocol"),
            _ => return Err(unexpected(&element, PARENT)),
        };
        let value = parser.text(name, MAX_TICKET_DATA_BYTES)?;
        set_once(field, value, name, PARENT)?;
    }
    parser.trailing()?;
    Ok(xdata)
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    name: &'static str,
    parent: &'static str,
) -> Result<(), XmlError> {
    if slot.is_some() {
        return Err(XmlError::DuplicateElement { name, parent });
    }
    *slot = Some(value);
    Ok(())
}

fn unexpected(element: &BytesStart<'_>, parent: &'static str) -> XmlError {
    XmlError::UnexpectedElement {
        found: quote(&String::from_utf8_lossy(element.name().as_ref())),
        parent,
    }
}

fn attribute(element: &BytesStart<'_>, key: &[u8]) -> Result<Option<String>, XmlError> {
    for attr in element.attributes() {
        let attr = attr.map_err(|_| XmlError::Syntax { at: 0 })?;
        if attr.key.as_ref() == key {
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|_| XmlError::UnknownEntity)?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

fn quote(text: &str) -> String {
    truncate(text, MAX_QUOTED).to_owned()
}

fn is_xml_whitespace(text: &[u8]) -> bool {
    text.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// A pull reader over one whole document, with the schema-independent
/// checks (size, encoding, DOCTYPE, entities, stray text).
struct Parser<'a> {
    reader: Reader<&'a [u8]>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Result<Self, XmlError> {
        if input.len() > MAX_DOCUMENT_BYTES {
            return Err(XmlError::TooLarge {
                len: input.len(),
                max: MAX_DOCUMENT_BYTES,
            });
        }
        let text = std::str::from_utf8(input).map_err(|_| XmlError::NotUtf8)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        Ok(Self { reader })
    }

    fn event(&mut self) -> Result<Event<'a>, XmlError> {
        self.reader.read_event().map_err(|_| XmlError::Syntax {
            at: self.reader.error_position(),
        })
    }

    /// Reads the root element and checks its name and version.
    fn root(&mut self) -> Result<(), XmlError> {
        let root = self.next_element(ROOT)?;
        if root.name().as_ref() != ROOT.as_bytes() {
            return Err(XmlError::WrongRoot {
                found: quote(&String::from_utf8_lossy(root.name().as_ref())),
            });
        }
        match attribute(&root, b"version")? {
            None => Err(XmlError::MissingAttribute {
                name: "version",
                element: ROOT,
            }),
            Some(version) if version.trim_ascii() == PROTOCOL_VERSION => Ok(()),
            Some(version) => Err(XmlError::UnsupportedVersion {
                found: quote(&version),
            }),
        }
    }

    /// The first element of the document, after the optional declaration
    /// and comments.
    fn next_element(&mut self, expected: &'static str) -> Result<BytesStart<'a>, XmlError> {
        loop {
            match self.event()? {
                Event::Start(element) => return Ok(element),
                Event::Decl(decl) => {
                    if let Some(encoding) = decl.encoding() {
                        let encoding = encoding.map_err(|_| XmlError::NotUtf8)?;
                        if !encoding.eq_ignore_ascii_case(b"utf-8") {
                            return Err(XmlError::NotUtf8);
                        }
                    }
                }
                Event::Comment(_) => {}
                Event::Text(text) if is_xml_whitespace(&text) => {}
                Event::DocType(_) => return Err(XmlError::DocType),
                Event::Eof => return Err(XmlError::MissingRoot),
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(XmlError::UnexpectedText { parent: expected });
                }
                Event::PI(_) | Event::End(_) | Event::Empty(_) => {
                    return Err(XmlError::UnexpectedMarkup { parent: expected });
                }
            }
        }
    }

    /// The next child element of `parent`, or `None` at `parent`'s end tag.
    fn child(&mut self, parent: &'static str) -> Result<Option<BytesStart<'a>>, XmlError> {
        loop {
            match self.event()? {
                Event::Start(element) => return Ok(Some(element)),
                Event::End(_) => return Ok(None),
                Event::Comment(_) => {}
                Event::Text(text) if is_xml_whitespace(&text) => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(XmlError::UnexpectedText { parent });
                }
                Event::DocType(_) => return Err(XmlError::DocType),
                Event::Eof => {
                    return Err(XmlError::Syntax {
                        at: self.reader.buffer_position(),
                    });
                }
                Event::Decl(_) | Event::PI(_) | Event::Empty(_) => {
                    return Err(XmlError::UnexpectedMarkup { parent });
                }
            }
        }
    }

    /// An element that must have no content.
    fn empty(&mut self, element: &'static str) -> Result<(), XmlError> {
        match self.child(element)? {
            None => Ok(()),
            Some(child) => Err(unexpected(&child, element)),
        }
    }

    /// The unescaped text of the current element up to its end tag, at most
    /// `max` bytes, verbatim.
    fn text(&mut self, element: &'static str, max: usize) -> Result<String, XmlError> {
        let mut out = String::new();
        loop {
            match self.event()? {
                Event::Text(text) => {
                    let text = text.xml10_content().map_err(|_| XmlError::NotUtf8)?;
                    out.push_str(&text);
                }
                Event::CData(data) => {
                    let data = data.decode().map_err(|_| XmlError::NotUtf8)?;
                    out.push_str(&data);
                }
                Event::GeneralRef(reference) => {
                    let resolved = match reference.resolve_char_ref() {
                        Ok(Some(c)) => c,
                        Ok(None) => match &*reference {
                            b"lt" => '<',
                            b"gt" => '>',
                            b"amp" => '&',
                            b"apos" => '\'',
                            b"quot" => '"',
                            _ => return Err(XmlError::UnknownEntity),
                        },
                        Err(_) => return Err(XmlError::UnknownEntity),
                    };
                    out.push(resolved);
                }
                Event::Comment(_) => {}
                Event::End(_) => break,
                Event::Start(child) => return Err(unexpected(&child, element)),
                Event::DocType(_) => return Err(XmlError::DocType),
                Event::Eof => {
                    return Err(XmlError::Syntax {
                        at: self.reader.buffer_position(),
                    });
                }
                Event::Decl(_) | Event::PI(_) | Event::Empty(_) => {
                    return Err(XmlError::UnexpectedMarkup { parent: element });
                }
            }
            if out.len() > max {
                return Err(XmlError::TooLong { element, max });
            }
        }
        // XML 1.0 allows tab, LF and CR among the control characters only.
        if out
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(XmlError::ForbiddenChar { element });
        }
        Ok(out)
    }

    /// A typed leaf: text trimmed of surrounding whitespace.
    fn short_text(&mut self, element: &'static str) -> Result<String, XmlError> {
        let text = self.text(element, MAX_SHORT_TEXT)?;
        Ok(text.trim_matches([' ', '\t', '\n', '\r']).to_owned())
    }

    /// After the root's only child: reads the root's end tag (refusing a
    /// second child), then only whitespace and comments may follow.
    fn finish(&mut self, parent: &'static str) -> Result<(), XmlError> {
        if let Some(extra) = self.child(parent)? {
            return Err(unexpected(&extra, parent));
        }
        self.trailing()
    }

    /// After the root's end tag: only whitespace and comments may follow.
    fn trailing(&mut self) -> Result<(), XmlError> {
        loop {
            match self.event()? {
                Event::Eof => return Ok(()),
                Event::Comment(_) => {}
                Event::Text(text) if is_xml_whitespace(&text) => {}
                _ => return Err(XmlError::TrailingContent),
            }
        }
    }
}

//! Why a `CtxSTAProtocol` document was refused.

use gatehouse_wire::ticket::TicketError;

use super::ROOT;
use crate::sta::AddrError;

/// Why a document was refused. Never quotes element text (a `Ticket`
/// element is a secret); names and attribute values are quoted truncated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Larger than [`super::MAX_DOCUMENT_BYTES`].
    #[error("document of {len} bytes exceeds {max}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not UTF-8, or declared in another encoding.
    #[error("document is not utf-8")]
    NotUtf8,
    /// Not well-formed XML.
    #[error("malformed xml near byte {at}")]
    Syntax {
        /// Byte offset where the reader gave up.
        at: u64,
    },
    /// A `<!DOCTYPE ...>`: refused, so no entity can ever be declared.
    #[error("doctype declarations are refused")]
    DocType,
    /// A processing instruction, declaration or DOCTYPE where none may be.
    #[error("unexpected markup in {parent}")]
    UnexpectedMarkup {
        /// The element it appeared in.
        parent: &'static str,
    },
    /// An entity reference other than the five XML predefined ones.
    #[error("reference to an undeclared entity")]
    UnknownEntity,
    /// A character XML 1.0 forbids (control characters).
    #[error("{element} holds a control character")]
    ForbiddenChar {
        /// The element.
        element: &'static str,
    },
    /// No root element.
    #[error("missing root element {ROOT}")]
    MissingRoot,
    /// The root element is not `CtxSTAProtocol`.
    #[error("root element {found:?} is not {ROOT}")]
    WrongRoot {
        /// The root's name (truncated).
        found: String,
    },
    /// The root's `version` is not `4.0`.
    #[error("protocol version {found:?} is not 4.0")]
    UnsupportedVersion {
        /// The version given (truncated).
        found: String,
    },
    /// A required attribute is missing.
    #[error("missing attribute {name} on {element}")]
    MissingAttribute {
        /// Attribute name.
        name: &'static str,
        /// Element name.
        element: &'static str,
    },
    /// An element this schema does not have there.
    #[error("unexpected element {found:?} in {parent}")]
    UnexpectedElement {
        /// The element's name (truncated).
        found: String,
        /// Where it appeared.
        parent: &'static str,
    },
    /// A required element is missing.
    #[error("missing element {name} in {parent}")]
    MissingElement {
        /// The missing element.
        name: &'static str,
        /// Where it belongs.
        parent: &'static str,
    },
    /// An element that may appear once appeared twice.
    #[error("duplicate element {name} in {parent}")]
    DuplicateElement {
        /// The element.
        name: &'static str,
        /// Where.
        parent: &'static str,
    },
    /// Non-whitespace text between elements.
    #[error("unexpected text in {parent}")]
    UnexpectedText {
        /// The element holding it.
        parent: &'static str,
    },
    /// Anything but whitespace and comments after the root element.
    #[error("content after the root element")]
    TrailingContent,
    /// A leaf longer than its limit.
    #[error("{element} longer than {max} bytes")]
    TooLong {
        /// The element.
        element: &'static str,
        /// Its limit.
        max: usize,
    },
    /// Too many items: more `Value`s in `TicketData` than
    /// `MAX_EXTRA_VALUES + 3`, or more allowed-type elements in
    /// `RequestTicket` than [`crate::sta::MAX_EXTRA_VALUES`].
    #[error("more than {max} items in {parent}")]
    TooMany {
        /// Where.
        parent: &'static str,
        /// The limit.
        max: usize,
    },
    /// A `Value` name appeared twice.
    #[error("duplicate value {name:?} in TicketData")]
    DuplicateValue {
        /// The name.
        name: String,
    },
    /// A `Value` name that is empty, longer than [`super::MAX_VALUE_NAME_BYTES`],
    /// or has characters outside letters, digits, `_`, `-`, `.`.
    #[error("bad value name {name:?}")]
    BadValueName {
        /// The name (truncated).
        name: String,
    },
    /// `TicketData` without `ICAAddress`.
    #[error("missing value {name} in TicketData")]
    MissingValue {
        /// The value's name.
        name: &'static str,
    },
    /// An address value that is not `host:port`.
    #[error("value {name}: {source}")]
    BadAddress {
        /// `ICAAddress` or `CGPAddress`.
        name: &'static str,
        /// What is wrong.
        #[source]
        source: AddrError,
    },
    /// `AuthorityID`, `Ticket` or `TicketVersion` did not parse.
    #[error("{element}: {source}")]
    BadTicket {
        /// The element.
        element: &'static str,
        /// What is wrong (never the secret).
        #[source]
        source: TicketError,
    },
    /// `Refreshable` is not `true`, `false`, `1`, `0` or empty.
    #[error("{element} is not true or false")]
    BadBool {
        /// The element.
        element: &'static str,
    },
    /// `Lifetime` is not a whole number of seconds up to 1 000 000.
    #[error("{element} is not a whole number of seconds")]
    BadNumber {
        /// The element.
        element: &'static str,
    },
    /// `AllowedTicketType` elements are present and none is `STA-v4`.
    #[error("no allowed ticket type is STA-v4")]
    UnsupportedTicketType,
    /// `AllowedAuthorityIDType` elements are present and none is `STA-v1`.
    #[error("no allowed authority id type is STA-v1")]
    UnsupportedAuthorityIdType,
    /// The ticket data exceeds [`crate::sta::MAX_TICKET_DATA_BYTES`].
    #[error("ticket data exceeds {max} bytes")]
    DataTooLarge {
        /// The limit.
        max: usize,
    },
}

//! The bounded element tree NFuse requests are read from: at most
//! [`MAX_DOCUMENT_BYTES`] of UTF-8, [`MAX_DEPTH`] levels, [`MAX_ELEMENTS`]
//! elements, [`MAX_TEXT_BYTES`] of text per element; the DOCTYPE line is
//! skipped unread, only predefined entities and character references
//! resolve.

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::{MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_ELEMENTS, MAX_TEXT_BYTES, NfuseError};

/// An element of the bounded tree.
#[derive(Debug, Default)]
pub(super) struct Node {
    pub(super) name: String,
    pub(super) attrs: Vec<(String, String)>,
    pub(super) children: Vec<Node>,
    pub(super) text: String,
}

impl Node {
    pub(super) fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub(super) fn texts(&self, name: &str) -> Vec<String> {
        self.children
            .iter()
            .filter(|c| c.name == name)
            .map(|c| c.text.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect()
    }

    pub(super) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

pub(super) fn parse_tree(input: &[u8]) -> Result<Node, NfuseError> {
    if input.len() > MAX_DOCUMENT_BYTES {
        return Err(NfuseError::TooLarge(input.len()));
    }
    let text = std::str::from_utf8(input).map_err(|_| NfuseError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|_| NfuseError::Syntax(reader.error_position()))?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(NfuseError::Syntax(reader.buffer_position()));
                }
                elements += 1;
                if elements > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(NfuseError::TooComplex);
                }
                stack.push(node_of(&start)?);
            }
            Event::End(_) => {
                let done = stack
                    .pop()
                    .ok_or(NfuseError::Syntax(reader.buffer_position()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(content) => {
                let Some(current) = stack.last_mut() else {
                    if content.iter().all(|b| b.is_ascii_whitespace()) {
                        continue;
                    }
                    return Err(NfuseError::Syntax(reader.buffer_position()));
                };
                let content = content.xml10_content().map_err(|_| NfuseError::NotUtf8)?;
                push_text(current, &content)?;
            }
            Event::CData(data) => {
                let current = stack
                    .last_mut()
                    .ok_or(NfuseError::Syntax(reader.buffer_position()))?;
                let data = data.decode().map_err(|_| NfuseError::NotUtf8)?;
                push_text(current, &data)?;
            }
            Event::GeneralRef(reference) => {
                let current = stack
                    .last_mut()
                    .ok_or(NfuseError::Syntax(reader.buffer_position()))?;
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => match &*reference {
                        b"lt" => '<',
                        b"gt" => '>',
                        b"amp" => '&',
                        b"apos" => '\'',
                        b"quot" => '"',
                        _ => return Err(NfuseError::UnknownEntity),
                    },
                    Err(_) => return Err(NfuseError::UnknownEntity),
                };
                push_text(current, resolved.encode_utf8(&mut [0; 4]))?;
            }
            Event::Decl(decl) => {
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(|_| NfuseError::NotUtf8)?;
                    if !encoding.eq_ignore_ascii_case(b"utf-8") {
                        return Err(NfuseError::NotUtf8);
                    }
                }
            }
            // The DOCTYPE line is allowed before the root only; its content
            // (an internal subset could declare entities) is never read.
            Event::DocType(_) if stack.is_empty() && root.is_none() => {}
            Event::DocType(_) | Event::PI(_) | Event::Empty(_) => {
                return Err(NfuseError::Syntax(reader.buffer_position()));
            }
            Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(NfuseError::Syntax(reader.buffer_position()));
    }
    root.ok_or(NfuseError::WrongRoot)
}

fn node_of(start: &BytesStart<'_>) -> Result<Node, NfuseError> {
    let name = std::str::from_utf8(start.name().as_ref())
        .map_err(|_| NfuseError::NotUtf8)?
        .to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|_| NfuseError::Syntax(0))?;
        let key = std::str::from_utf8(attr.key.as_ref())
            .map_err(|_| NfuseError::NotUtf8)?
            .to_owned();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|_| NfuseError::UnknownEntity)?
            .into_owned();
        if value.len() > MAX_TEXT_BYTES || attrs.len() >= 16 {
            return Err(NfuseError::TooComplex);
        }
        attrs.push((key, value));
    }
    Ok(Node {
        name,
        attrs,
        ..Node::default()
    })
}

fn push_text(node: &mut Node, text: &str) -> Result<(), NfuseError> {
    if node.text.len() + text.len() > MAX_TEXT_BYTES {
        return Err(NfuseError::TooComplex);
    }
    node.text.push_str(text);
    Ok(())
}

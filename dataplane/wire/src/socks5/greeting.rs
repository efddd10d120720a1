//! The method negotiation: greeting `05 NMETHODS METHODS...` and the
//! server's selection `05 METHOD` (RFC 1928 §3).

use super::{SOCKS5_VERSION, Socks5Error, check_version};
use crate::Progress;

/// An authentication method the gateway can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `00`: no authentication.
    NoAuth,
    /// `02`: RFC 1929 user/password.
    UserPass,
    /// `FF`: none of the offered methods is acceptable; the client must close.
    NoAcceptable,
}

impl Method {
    /// The wire code: `00`, `02` or `FF`.
    pub fn code(self) -> u8 {
        match self {
            Method::NoAuth => 0x00,
            Method::UserPass => 0x02,
            Method::NoAcceptable => 0xFF,
        }
    }

    /// The method with this wire code, if the gateway knows it.
    pub fn from_code(code: u8) -> Option<Method> {
        match code {
            0x00 => Some(Method::NoAuth),
            0x02 => Some(Method::UserPass),
            0xFF => Some(Method::NoAcceptable),
            _ => None,
        }
    }
}

/// A decoded greeting: the set of method codes the client offers.
///
/// Order and repetitions on the wire carry no meaning (the server chooses),
/// so they are not kept. 32 bytes, no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    /// Bit `code` is set when method `code` is offered.
    offered: [u64; 4],
}

impl Greeting {
    /// Whether the client offers the method with wire code `code`.
    pub fn offers(&self, code: u8) -> bool {
        let (word, bit) = Greeting::position(code);
        self.offered
            .get(word)
            .is_some_and(|w| w & (1u64 << bit) != 0)
    }

    /// The method the gateway answers with: [`Method::NoAuth`] if offered,
    /// else [`Method::UserPass`] if offered, else [`Method::NoAcceptable`].
    pub fn select(&self) -> Method {
        if self.offers(Method::NoAuth.code()) {
            Method::NoAuth
        } else if self.offers(Method::UserPass.code()) {
            Method::UserPass
        } else {
            Method::NoAcceptable
        }
    }

    /// The offered codes in ascending order.
    pub fn codes(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=u8::MAX).filter(|&code| self.offers(code))
    }

    fn empty() -> Greeting {
        Greeting { offered: [0; 4] }
    }

    fn insert(&mut self, code: u8) {
        let (word, bit) = Greeting::position(code);
        if let Some(w) = self.offered.get_mut(word) {
            *w |= 1u64 << bit;
        }
    }

    fn position(code: u8) -> (usize, u32) {
        (usize::from(code / 64), u32::from(code % 64))
    }
}

impl std::fmt::Debug for Greeting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Greeting")
            .field("methods", &DebugCodes(self))
            .finish()
    }
}

struct DebugCodes<'a>(&'a Greeting);

impl std::fmt::Debug for DebugCodes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.codes().map(Hex)).finish()
    }
}

struct Hex(u8);

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#04x}", self.0)
    }
}

/// Decodes a client greeting `05 NMETHODS METHODS...`.
///
/// `input` starts at the first byte the client sent. `Done.consumed` is
/// `2 + NMETHODS`; bytes after it belong to the next message. While
/// incomplete, `NeedMore.at_least` is the length of the shortest greeting
/// the bytes so far allow (3 before `NMETHODS` is known).
///
/// Errors: [`Socks5Error::BadVersion`] on a first byte other than `05`,
/// [`Socks5Error::NoMethods`] when `NMETHODS` is 0; both are known from the
/// first 2 bytes.
pub fn decode_greeting(input: &[u8]) -> Result<Progress<Greeting>, Socks5Error> {
    check_version(input)?;
    let Some(&count) = input.get(1) else {
        return Ok(Progress::NeedMore { at_least: 3 });
    };
    if count == 0 {
        return Err(Socks5Error::NoMethods);
    }
    let total = 2 + usize::from(count);
    let Some(methods) = input.get(2..total) else {
        return Ok(Progress::NeedMore { at_least: total });
    };
    let mut greeting = Greeting::empty();
    for &code in methods {
        greeting.insert(code);
    }
    Ok(Progress::Done {
        value: greeting,
        consumed: total,
    })
}

/// The server's answer to a greeting: `05 METHOD`.
pub fn encode_method_selection(method: Method) -> [u8; 2] {
    [SOCKS5_VERSION, method.code()]
}

/// Appends a client greeting offering `methods` in the given order (client side).
///
/// A greeting holds at most 255 methods; any after the 255th are left out
/// (there are only three distinct [`Method`]s, so those are repeats). An
/// empty `methods` writes `05 00`, which servers refuse: tests use that.
pub fn encode_greeting(methods: &[Method], out: &mut Vec<u8>) {
    let methods = methods.get(..255).unwrap_or(methods);
    out.push(SOCKS5_VERSION);
    // `methods` has at most 255 entries here, so the length fits.
    out.push(u8::try_from(methods.len()).unwrap_or(u8::MAX));
    out.extend(methods.iter().map(|m| m.code()));
}

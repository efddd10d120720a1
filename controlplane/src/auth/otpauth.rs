//! `otpauth://totp/` URIs (the Key URI format authenticator apps scan,
//! PROTOCOLS.md §9) and the QR code PNG that carries one.
//!
//! Written: `otpauth://totp/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30[&device=NAME]`,
//! every label part and value percent-encoded except RFC 3986 unreserved
//! characters (a `:` inside the issuer or account is `%3A`; the separator
//! is a literal `:`).
//!
//! Read ([`OtpauthUri::parse`], sans-IO, used by `tools/push-device`):
//! scheme and type case-insensitive; `secret` required; `issuer`,
//! `algorithm` (default SHA1), `digits` (default 6), `period` (default 30)
//! and `device` optional; unknown parameters ignored, repeated ones
//! refused; a label issuer that differs from `issuer=` refused; control
//! characters refused; at most [`MAX_URI_BYTES`]. `+` is a literal plus.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::auth::totp::{Algorithm, ParamsError, SecretError, TotpParams, TotpSecret};

/// Longest URI [`OtpauthUri::parse`] reads.
pub const MAX_URI_BYTES: usize = 4_096;

/// Pixels per QR module in [`qr_png`].
pub const QR_MODULE_PIXELS: usize = 8;

/// Light modules around the symbol (ISO/IEC 18004 asks for 4).
pub const QR_QUIET_MODULES: usize = 4;

const SCHEME: &str = "otpauth://";

/// Everything but RFC 3986 unreserved characters is percent-encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A TOTP key URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpauthUri {
    /// The service (the gateway's name); shown by the app above the code.
    pub issuer: Option<String>,
    /// The account (the user name).
    pub account: String,
    /// The shared secret.
    pub secret: TotpSecret,
    /// Hash, digits, period.
    pub params: TotpParams,
    /// The device name the gateway registered it under, when given.
    pub device: Option<String>,
}

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtpauthError {
    /// Longer than [`MAX_URI_BYTES`].
    #[error("otpauth uri is longer than {MAX_URI_BYTES} bytes")]
    TooLong,
    /// Not `otpauth://`.
    #[error("not an otpauth:// uri")]
    Scheme,
    /// `otpauth://hotp/` or another type.
    #[error("otpauth type must be totp")]
    Type,
    /// No account in the label.
    #[error("otpauth uri has no account name")]
    NoAccount,
    /// A bad percent-encoding, invalid UTF-8 or a control character.
    #[error("otpauth uri {part} is not valid text")]
    Text {
        /// `label` or the parameter's name.
        part: String,
    },
    /// A `key=value` pair without `=`, or a parameter given twice.
    #[error("otpauth parameter {name} is malformed or repeated")]
    Parameter {
        /// The parameter.
        name: String,
    },
    /// No `secret=`.
    #[error("otpauth uri has no secret")]
    NoSecret,
    /// `secret=` is not a usable base32 secret.
    #[error("otpauth secret is not usable")]
    Secret(#[source] SecretError),
    /// `algorithm=` is not SHA1, SHA256 or SHA512.
    #[error("otpauth algorithm is not sha1, sha256 or sha512")]
    Algorithm,
    /// `digits=` or `period=` is not a number in range.
    #[error("otpauth parameters out of range")]
    Params(#[source] ParamsError),
    /// `digits=` or `period=` is not a number.
    #[error("otpauth {name} is not a number")]
    Number {
        /// `digits` or `period`.
        name: &'static str,
    },
    /// The label's issuer differs from `issuer=`.
    #[error("otpauth label issuer differs from the issuer parameter")]
    IssuerMismatch,
}

/// Why a QR code could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum QrError {
    /// The text does not fit in a QR code.
    #[error("text does not fit in a qr code")]
    TooLong(#[source] qrcode::types::QrError),
    /// The PNG encoder failed.
    #[error("cannot encode the qr code as png")]
    Png(#[source] png::EncodingError),
}

impl OtpauthUri {
    /// A URI for the gateway's parameters ([`TotpParams::GATEWAY`]).
    pub fn gateway(issuer: &str, account: &str, secret: TotpSecret, device: Option<&str>) -> Self {
        Self {
            issuer: Some(issuer.to_owned()),
            account: account.to_owned(),
            secret,
            params: TotpParams::GATEWAY,
            device: device.map(str::to_owned),
        }
    }

    /// Parses a key URI (see the module documentation for what is
    /// accepted).
    ///
    /// Errors: [`OtpauthError`] for the first problem found.
    pub fn parse(text: &str) -> Result<Self, OtpauthError> {
        if text.len() > MAX_URI_BYTES {
            return Err(OtpauthError::TooLong);
        }
        let scheme = text.get(..SCHEME.len()).ok_or(OtpauthError::Scheme)?;
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Err(OtpauthError::Scheme);
        }
        let rest = text.get(SCHEME.len()..).ok_or(OtpauthError::Scheme)?;
        let (kind, rest) = rest.split_once('/').ok_or(OtpauthError::Type)?;
        if !kind.eq_ignore_ascii_case("totp") {
            return Err(OtpauthError::Type);
        }
        let (label, query) = rest.split_once('?').unwrap_or((rest, ""));
        let query = Query::parse(query)?;
        let issuer = query.text("issuer")?;
        let (label_issuer, account) = match label.split_once(':') {
            Some((issuer, account)) => (Some(decode_text(issuer, "label")?), account),
            None => (None, label),
        };
        let mut account = decode_text(account, "label")?;
        // Authenticators accept "Issuer: account".
        if label_issuer.is_some() {
            account = account.trim_start_matches(' ').to_owned();
        }
        if account.is_empty() {
            return Err(OtpauthError::NoAccount);
        }
        let issuer = match (label_issuer, issuer) {
            (Some(a), Some(b)) if a != b => return Err(OtpauthError::IssuerMismatch),
            (a, b) => b.or(a),
        };
        let secret = query.value("secret").ok_or(OtpauthError::NoSecret)?;
        let secret = TotpSecret::from_base32(secret).map_err(OtpauthError::Secret)?;
        let algorithm = match query.value("algorithm") {
            Some(name) => Algorithm::from_name(name).ok_or(OtpauthError::Algorithm)?,
            None => Algorithm::Sha1,
        };
        let digits = query.number("digits")?.unwrap_or(6);
        let period = query.number("period")?.unwrap_or(30);
        let params = TotpParams::new(algorithm, digits, period).map_err(OtpauthError::Params)?;
        Ok(Self {
            issuer,
            account,
            secret,
            params,
            device: query.text("device")?,
        })
    }
}

impl fmt::Display for OtpauthUri {
    /// The URI text (see the module documentation).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("otpauth://totp/")?;
        if let Some(issuer) = &self.issuer {
            write!(f, "{}:", utf8_percent_encode(issuer, ENCODE))?;
        }
        write!(f, "{}", utf8_percent_encode(&self.account, ENCODE))?;
        write!(f, "?secret={}", self.secret.to_base32())?;
        if let Some(issuer) = &self.issuer {
            write!(f, "&issuer={}", utf8_percent_encode(issuer, ENCODE))?;
        }
        write!(
            f,
            "&algorithm={}&digits={}&period={}",
            self.params.algorithm().as_str(),
            self.params.digits(),
            self.params.period_secs()
        )?;
        if let Some(device) = &self.device {
            write!(f, "&device={}", utf8_percent_encode(device, ENCODE))?;
        }
        Ok(())
    }
}

/// A QR code (error correction level M) of `text` as a grayscale PNG:
/// [`QR_MODULE_PIXELS`] pixels per module, a [`QR_QUIET_MODULES`] quiet
/// zone, black on white.
///
/// Errors: [`QrError`].
pub fn qr_png(text: &str) -> Result<Vec<u8>, QrError> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)
        .map_err(QrError::TooLong)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QR_QUIET_MODULES) * QR_MODULE_PIXELS;
    let mut pixels = vec![0xff_u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let x0 = (index % modules + QR_QUIET_MODULES) * QR_MODULE_PIXELS;
        let y0 = (index / modules + QR_QUIET_MODULES) * QR_MODULE_PIXELS;
        for y in y0..y0 + QR_MODULE_PIXELS {
            let row = y * side;
            if let Some(run) = pixels.get_mut(row + x0..row + x0 + QR_MODULE_PIXELS) {
                run.fill(0x00);
            }
        }
    }
    // A version 40 symbol is 177 modules: side stays far below u32::MAX.
    let side = u32::try_from(side).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(QrError::Png)?;
    writer.write_image_data(&pixels).map_err(QrError::Png)?;
    writer.finish().map_err(QrError::Png)?;
    Ok(out)
}

/// The query of a key URI: raw `name=value` pairs (names ASCII
/// case-insensitive), each name at most once.
struct Query<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Result<Self, OtpauthError> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let bad = || OtpauthError::Parameter {
                name: pair.chars().take(32).collect(),
            };
            let (name, value) = pair.split_once('=').ok_or_else(bad)?;
            if pairs.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return Err(bad());
            }
            pairs.push((name, value));
        }
        Ok(Self { pairs })
    }

    /// The raw (still percent-encoded) value.
    fn value(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn text(&self, name: &str) -> Result<Option<String>, OtpauthError> {
        self.value(name).map(|v| decode_text(v, name)).transpose()
    }

    fn number(&self, name: &'static str) -> Result<Option<u64>, OtpauthError> {
        self.value(name)
            .map(|v| {
                if v.is_empty() || v.len() > 8 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(OtpauthError::Number { name });
                }
                v.parse().map_err(|_| OtpauthError::Number { name })
            })
            .transpose()
    }
}

fn decode_text(raw: &str, part: &str) -> Result<String, OtpauthError> {
    let bad = || OtpauthError::Text {
        part: part.to_owned(),
    };
    let text = percent_decode_str(raw).decode_utf8().map_err(|_| bad())?;
    if text.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(text.into_owned())
}

#[cfg(test)]
mod tests;

//! Decoding a QR code PNG back to its text.

use std::io::Cursor;

/// Why no text came out of a PNG.
#[derive(Debug, thiserror::Error)]
pub enum QrDecodeError {
    /// Not a PNG this reader handles.
    #[error("cannot read the png")]
    Png(#[source] png::DecodingError),
    /// A PNG of an unexpected layout.
    #[error("unsupported png layout")]
    Layout,
    /// No QR code was found or it did not decode.
    #[error("no readable qr code in the image")]
    NoCode,
}

/// The text of the first QR code found in a PNG (any colour type; 16-bit
/// samples are stripped to 8).
///
/// Errors: [`QrDecodeError`].
pub fn decode_png(bytes: &[u8]) -> Result<String, QrDecodeError> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(QrDecodeError::Png)?;
    let size = reader.output_buffer_size().ok_or(QrDecodeError::Layout)?;
    let mut buffer = vec![0_u8; size];
    let info = reader.next_frame(&mut buffer).map_err(QrDecodeError::Png)?;
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(QrDecodeError::Layout),
    };
    let (width, height) = (info.width as usize, info.height as usize);
    let line = info.line_size;
    if line < width * channels || buffer.len() < line * height {
        return Err(QrDecodeError::Layout);
    }
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
        let at = y * line + x * channels;
        match channels {
            1 | 2 => buffer.get(at).copied().unwrap_or(255),
            _ => {
                let px = buffer.get(at..at + 3).unwrap_or(&[255, 255, 255]);
                ((u16::from(px[0]) + u16::from(px[1]) + u16::from(px[2])) / 3) as u8
            }
        }
    });
    image
        .detect_grids()
        .into_iter()
        .find_map(|grid| grid.decode().ok().map(|(_, text)| text))
        .ok_or(QrDecodeError::NoCode)
}

#[cfg(test)]
mod tests {
    use gatehouse::auth::otpauth::{OtpauthUri, qr_png};
    use gatehouse::auth::totp::TotpSecret;

    use super::*;

    #[test]
    fn a_gateway_qr_code_decodes_to_its_uri() {
        let secret = TotpSecret::from_bytes(&[7; 20]).unwrap();
        let uri = OtpauthUri::gateway("Gatehouse", "alice", secret, Some("phone")).to_string();
        let png = qr_png(&uri).unwrap();
        assert_eq!(decode_png(&png).unwrap(), uri);
    }

    #[test]
    fn garbage_is_not_a_qr_code() {
        assert!(matches!(
            decode_png(b"not a png"),
            Err(QrDecodeError::Png(_))
        ));
    }
}

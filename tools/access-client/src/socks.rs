//! The data connection of one flow: TLS to the gateway, SOCKS5 CONNECT
//! whose domain is the flow's one-time ticket (RFC 1928, ATYP 0x03), then
//! plain bytes both ways.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{ClientError, Gateway};

const SOCKS5_VERSION: u8 = 0x05;
const NO_AUTH: u8 = 0x00;
const CMD_CONNECT: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV4: u8 = 0x01;
const ATYP_IPV6: u8 = 0x04;

/// The greeting and CONNECT request for `ticket` (at most 255 bytes).
///
/// Errors: [`ClientError::Io`] for a ticket too long for a domain.
pub fn request(ticket: &str) -> Result<Vec<u8>, ClientError> {
    let len = u8::try_from(ticket.len())
        .map_err(|_| ClientError::Io("ticket longer than 255 bytes".to_owned()))?;
    let mut out = vec![SOCKS5_VERSION, 1, NO_AUTH];
    out.extend_from_slice(&[SOCKS5_VERSION, CMD_CONNECT, 0x00, ATYP_DOMAIN, len]);
    out.extend_from_slice(ticket.as_bytes());
    out.extend_from_slice(&[0, 0]);
    Ok(out)
}

/// Opens the data connection for `ticket`: TLS, greeting and CONNECT
/// pipelined, then the method choice and the reply read.
///
/// Errors: [`ClientError::Io`], [`ClientError::Socks`] (the reply code).
pub async fn open(
    gateway: &Gateway,
    ticket: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ClientError> {
    let io = |e: std::io::Error| ClientError::Io(e.to_string());
    let mut stream = gateway.connect().await?;
    stream.write_all(&request(ticket)?).await.map_err(io)?;
    let mut choice = [0; 2];
    stream.read_exact(&mut choice).await.map_err(io)?;
    if choice != [SOCKS5_VERSION, NO_AUTH] {
        return Err(ClientError::Socks(choice[1]));
    }
    let mut head = [0; 4];
    stream.read_exact(&mut head).await.map_err(io)?;
    if head[0] != SOCKS5_VERSION || head[1] != 0x00 {
        return Err(ClientError::Socks(head[1]));
    }
    let rest = match head[3] {
        ATYP_IPV4 => 4 + 2,
        ATYP_IPV6 => 16 + 2,
        ATYP_DOMAIN => {
            let mut len = [0; 1];
            stream.read_exact(&mut len).await.map_err(io)?;
            usize::from(len[0]) + 2
        }
        other => return Err(ClientError::Socks(other)),
    };
    let mut bound = vec![0; rest];
    stream.read_exact(&mut bound).await.map_err(io)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_request_carries_the_ticket_as_the_domain() {
        let bytes = request(";40;STA01;ABC").unwrap();
        assert_eq!(&bytes[..3], &[5, 1, 0]);
        assert_eq!(&bytes[3..8], &[5, 1, 0, 3, 13]);
        assert_eq!(&bytes[8..21], b";40;STA01;ABC");
        assert_eq!(&bytes[21..], &[0, 0]);
        assert!(request(&"x".repeat(256)).is_err());
    }
}

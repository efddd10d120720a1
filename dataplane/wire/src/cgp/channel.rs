//! Channel packets: CHANNEL_OPEN_REQUEST, CHANNEL_OPEN_RESPONSE,
//! CHANNEL_CLOSE and the three DATA packets. Each type reads and writes the
//! body after the packet's extensions; [`super::Frame`] adds the framing.

use super::reader::Reader;
use super::varlen::{encode_bytes, encode_varlen};
use super::{CgpError, ChannelId, ServiceId};

/// Why a channel or a session ends (CHANNEL_CLOSE, FINISH_REQUEST).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(pub u16);

impl Reason {
    /// The sender is done; nothing went wrong.
    pub const NORMAL: Reason = Reason(0);
    /// The sender hit an error on this channel or session.
    pub const ERROR: Reason = Reason(1);
    /// The sender timed out waiting for its peer.
    pub const TIMEOUT: Reason = Reason(2);
}

/// The answer to a channel open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpenStatus(pub u16);

impl OpenStatus {
    /// The channel is open.
    pub const OPENED: OpenStatus = OpenStatus(0);
    /// No service is bound under the requested id.
    pub const UNKNOWN_SERVICE: OpenStatus = OpenStatus(1);
    /// The service refused the channel.
    pub const REFUSED: OpenStatus = OpenStatus(2);
    /// The channel id is already in use.
    pub const CHANNEL_IN_USE: OpenStatus = OpenStatus(3);
}

/// CHANNEL_OPEN_REQUEST body: `u16 channel, u16 service, varlen len + params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelOpenRequest<'a> {
    /// The channel to open.
    pub channel: ChannelId,
    /// The service, by the id its services-binding entry gave it.
    pub service: ServiceId,
    /// Service-specific open parameters, opaque to CGP.
    pub params: &'a [u8],
}

/// CHANNEL_OPEN_RESPONSE body: `u16 channel, u16 status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelOpenResponse {
    /// The channel the request named.
    pub channel: ChannelId,
    /// [`OpenStatus::OPENED`] or why not.
    pub status: OpenStatus,
}

/// CHANNEL_CLOSE body: `u16 channel, u16 reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelClose {
    /// The channel to close.
    pub channel: ChannelId,
    /// Why.
    pub reason: Reason,
}

/// DATA and DATA_REALTIME body: `u16 channel, payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a> {
    /// The channel the payload belongs to.
    pub channel: ChannelId,
    /// The payload: the rest of the packet.
    pub payload: &'a [u8],
}

/// DATA_REALTIME_WITH_ACK body: `varlen ack delta, u16 channel, payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRealtimeWithAck<'a> {
    /// Peer messages newly acknowledged (as [`super::Reliability::ack`]).
    pub ack: u16,
    /// The channel the payload belongs to.
    pub channel: ChannelId,
    /// The payload: the rest of the packet.
    pub payload: &'a [u8],
}

impl<'a> ChannelOpenRequest<'a> {
    /// Reads a complete CHANNEL_OPEN_REQUEST body.
    ///
    /// # Errors
    /// [`CgpError::Truncated`], [`CgpError::TrailingBytes`],
    /// [`CgpError::NonCanonicalVarlen`].
    pub fn decode_body(body: &'a [u8]) -> Result<Self, CgpError> {
        let mut reader = Reader::new(body);
        let open = ChannelOpenRequest {
            channel: ChannelId(reader.u16("channel id")?),
            service: ServiceId(reader.u16("service id")?),
            params: reader.prefixed("channel open params")?,
        };
        reader.finish("channel open request")?;
        Ok(open)
    }

    /// Appends the body.
    ///
    /// # Errors
    /// [`CgpError::VarlenOverflow`] when `params` exceeds 32 767 bytes.
    pub fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), CgpError> {
        out.extend_from_slice(&self.channel.0.to_le_bytes());
        out.extend_from_slice(&self.service.0.to_le_bytes());
        encode_bytes(self.params, out)
    }
}

impl ChannelOpenResponse {
    /// Reads a complete CHANNEL_OPEN_RESPONSE body.
    ///
    /// # Errors
    /// [`CgpError::Truncated`], [`CgpError::TrailingBytes`].
    pub fn decode_body(body: &[u8]) -> Result<Self, CgpError> {
        let mut reader = Reader::new(body);
        let response = ChannelOpenResponse {
            channel: ChannelId(reader.u16("channel id")?),
            status: OpenStatus(reader.u16("channel open status")?),
        };
        reader.finish("channel open response")?;
        Ok(response)
    }

    /// Appends the body.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.channel.0.to_le_bytes());
        out.extend_from_slice(&self.status.0.to_le_bytes());
    }
}

impl ChannelClose {
    /// Reads a complete CHANNEL_CLOSE body.
    ///
    /// # Errors
    /// [`CgpError::Truncated`], [`CgpError::TrailingBytes`].
    pub fn decode_body(body: &[u8]) -> Result<Self, CgpError> {
        let mut reader = Reader::new(body);
        let close = ChannelClose {
            channel: ChannelId(reader.u16("channel id")?),
            reason: Reason(reader.u16("channel close reason")?),
        };
        reader.finish("channel close")?;
        Ok(close)
    }

    /// Appends the body.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.channel.0.to_le_bytes());
        out.extend_from_slice(&self.reason.0.to_le_bytes());
    }
}

impl<'a> Data<'a> {
    /// Reads a complete DATA or DATA_REALTIME body.
    ///
    /// # Errors
    /// [`CgpError::Truncated`] when the body is shorter than a channel id.
    pub fn decode_body(body: &'a [u8]) -> Result<Self, CgpError> {
        let mut reader = Reader::new(body);
        Ok(Data {
            channel: ChannelId(reader.u16("channel id")?),
            payload: reader.rest(),
        })
    }

    /// Appends the body (the packet encoder checks the total length).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.channel.0.to_le_bytes());
        out.extend_from_slice(self.payload);
    }
}

impl<'a> DataRealtimeWithAck<'a> {
    /// Reads a complete DATA_REALTIME_WITH_ACK body.
    ///
    /// # Errors
    /// [`CgpError::Truncated`], [`CgpError::NonCanonicalVarlen`].
    pub fn decode_body(body: &'a [u8]) -> Result<Self, CgpError> {
        let mut reader = Reader::new(body);
        Ok(DataRealtimeWithAck {
            ack: reader.varlen("ack delta")?,
            channel: ChannelId(reader.u16("channel id")?),
            payload: reader.rest(),
        })
    }

    /// Appends the body (the packet encoder checks the total length).
    ///
    /// # Errors
    /// [`CgpError::VarlenOverflow`] when `ack` exceeds 32 767.
    pub fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), CgpError> {
        encode_varlen(usize::from(self.ack), out)?;
        out.extend_from_slice(&self.channel.0.to_le_bytes());
        out.extend_from_slice(self.payload);
        Ok(())
    }
}

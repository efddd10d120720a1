//! Typed packets: [`Frame`] = extensions + one [`Message`] per command.

use super::bind::{decode_capabilities, encode_capabilities};
use super::channel::{
    ChannelClose, ChannelOpenRequest, ChannelOpenResponse, Data, DataRealtimeWithAck, Reason,
};
use super::packet::{Extensions, Packet, decode_packet_of, encode_packet_with};
use super::reader::Reader;
use super::{BindRequest, BindResponse, CgpError, Command};
use crate::Progress;

/// FINISH_REQUEST body: `u16 reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinishRequest {
    /// Why the sender ends the session.
    pub reason: Reason,
}

/// The typed body of a packet, one variant per [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// 01, see [`BindRequest`].
    BindRequest(BindRequest<'a>),
    /// 02, see [`BindResponse`].
    BindResponse(BindResponse<'a>),
    /// 03, see [`FinishRequest`].
    FinishRequest(FinishRequest),
    /// 04, empty body.
    FinishResponse,
    /// 05, empty body.
    Nop,
    /// 06, see [`ChannelOpenRequest`].
    ChannelOpenRequest(ChannelOpenRequest<'a>),
    /// 07, see [`ChannelOpenResponse`].
    ChannelOpenResponse(ChannelOpenResponse),
    /// 08, see [`ChannelClose`].
    ChannelClose(ChannelClose),
    /// 09, see [`Data`].
    Data(Data<'a>),
    /// 0A, see [`Data`].
    DataRealtime(Data<'a>),
    /// 0B, see [`DataRealtimeWithAck`].
    DataRealtimeWithAck(DataRealtimeWithAck<'a>),
}

/// A typed packet: its header extensions and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header extensions; must be empty for BIND_* and DATA_REALTIME*.
    pub extensions: Extensions,
    /// The message.
    pub message: Message<'a>,
}

impl<'a> Message<'a> {
    /// The command this message is sent under.
    pub fn command(&self) -> Command {
        match self {
            Message::BindRequest(_) => Command::BindRequest,
            Message::BindResponse(_) => Command::BindResponse,
            Message::FinishRequest(_) => Command::FinishRequest,
            Message::FinishResponse => Command::FinishResponse,
            Message::Nop => Command::Nop,
            Message::ChannelOpenRequest(_) => Command::ChannelOpenRequest,
            Message::ChannelOpenResponse(_) => Command::ChannelOpenResponse,
            Message::ChannelClose(_) => Command::ChannelClose,
            Message::Data(_) => Command::Data,
            Message::DataRealtime(_) => Command::DataRealtime,
            Message::DataRealtimeWithAck(_) => Command::DataRealtimeWithAck,
        }
    }

    /// Reads the complete body of a `command` packet (after its extensions).
    ///
    /// # Errors
    /// The body errors of each type; [`CgpError::TrailingBytes`] for a
    /// non-empty FINISH_RESPONSE or NOP body.
    pub fn decode_body(command: Command, body: &'a [u8]) -> Result<Self, CgpError> {
        Ok(match command {
            Command::BindRequest => Message::BindRequest(BindRequest {
                capabilities: decode_capabilities(body)?,
            }),
            Command::BindResponse => Message::BindResponse(BindResponse {
                capabilities: decode_capabilities(body)?,
            }),
            Command::FinishRequest => {
                let mut reader = Reader::new(body);
                let reason = Reason(reader.u16("finish reason")?);
                reader.finish("finish request")?;
                Message::FinishRequest(FinishRequest { reason })
            }
            Command::FinishResponse => {
                Reader::new(body).finish("finish response")?;
                Message::FinishResponse
            }
            Command::Nop => {
                Reader::new(body).finish("nop")?;
                Message::Nop
            }
            Command::ChannelOpenRequest => {
                Message::ChannelOpenRequest(ChannelOpenRequest::decode_body(body)?)
            }
            Command::ChannelOpenResponse => {
                Message::ChannelOpenResponse(ChannelOpenResponse::decode_body(body)?)
            }
            Command::ChannelClose => Message::ChannelClose(ChannelClose::decode_body(body)?),
            Command::Data => Message::Data(Data::decode_body(body)?),
            Command::DataRealtime => Message::DataRealtime(Data::decode_body(body)?),
            Command::DataRealtimeWithAck => {
                Message::DataRealtimeWithAck(DataRealtimeWithAck::decode_body(body)?)
            }
        })
    }

    /// Appends the body (without length, command or extensions).
    ///
    /// # Errors
    /// The encoder errors of each type, e.g. [`CgpError::VarlenOverflow`].
    pub fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), CgpError> {
        match self {
            Message::BindRequest(bind) => encode_capabilities(&bind.capabilities, out)?,
            Message::BindResponse(bind) => encode_capabilities(&bind.capabilities, out)?,
            Message::FinishRequest(finish) => out.extend_from_slice(&finish.reason.0.to_le_bytes()),
            Message::FinishResponse | Message::Nop => {}
            Message::ChannelOpenRequest(open) => open.encode_body(out)?,
            Message::ChannelOpenResponse(response) => response.encode_body(out),
            Message::ChannelClose(close) => close.encode_body(out),
            Message::Data(data) | Message::DataRealtime(data) => data.encode_body(out),
            Message::DataRealtimeWithAck(data) => data.encode_body(out)?,
        }
        Ok(())
    }
}

impl<'a> Frame<'a> {
    /// Reads one packet of any command from the start of `input` and types
    /// its body.
    ///
    /// # Errors
    /// The errors of [`super::decode_packet`] and [`Message::decode_body`].
    pub fn decode(input: &'a [u8]) -> Result<Progress<Self>, CgpError> {
        Ok(match decode_packet_of(input, None)? {
            Progress::Done { value, consumed } => Progress::Done {
                value: Frame::from_packet(&value)?,
                consumed,
            },
            Progress::NeedMore { at_least } => Progress::NeedMore { at_least },
        })
    }

    /// Types the body of an already framed packet.
    ///
    /// # Errors
    /// The errors of [`Message::decode_body`].
    pub fn from_packet(packet: &Packet<'a>) -> Result<Self, CgpError> {
        Ok(Frame {
            extensions: packet.extensions,
            message: Message::decode_body(packet.command, packet.body)?,
        })
    }

    /// Appends this frame as a packet to `out`.
    ///
    /// # Errors
    /// [`CgpError::ExtensionsNotAllowed`], [`CgpError::PacketTooLong`] and
    /// the errors of [`Message::encode_body`]; `out` is then unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CgpError> {
        let start = out.len();
        encode_packet_with(self.message.command(), &self.extensions, out, |out| {
            self.message.encode_body(out)
        })
        .inspect_err(|_| out.truncate(start))
    }
}

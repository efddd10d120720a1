//! A push-approval device simulator for tests and demos (issue 6 item 5).
//!
//! - [`qr`]: reads an `otpauth://` URI back out of the QR code PNG the
//!   gateway's /manageotp page shows.
//! - [`client`]: a minimal HTTP/1.1 client over TCP or TLS (rustls with a
//!   CA file: the gateway's self-signed certificate).
//! - [`device`]: registers with the gateway's push endpoints, long-polls,
//!   and answers each push (approve with a number, or deny) per
//!   [`device::Answer`].
//!
//! The protocol and the TOTP code are the gateway's own
//! (`gatehouse::push::protocol`, `gatehouse::auth::totp`), so the two
//! cannot drift apart.

pub mod client;
pub mod device;
pub mod qr;

//! Status payloads on `homeward/v1/{device}/status`: the device publishes `online`, retained,
//! when it connects, and registers `offline`, retained, as its MQTT last will, so the broker
//! publishes it when the connection drops without a clean disconnect. Exact ASCII, no quotes,
//! no newline.

use crate::error::{DecodeError, Snippet};

/// A device's connection status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// `online`: published retained on connect.
    Online,
    /// `offline`: the last will, retained.
    Offline,
}

impl Status {
    /// The payload bytes.
    pub const fn as_bytes(self) -> &'static [u8] {
        self.as_str().as_bytes()
    }

    /// The payload as text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Offline => "offline",
        }
    }

    /// The status for exactly `online` or `offline`.
    pub fn from_bytes(payload: &[u8]) -> Option<Self> {
        match payload {
            b"online" => Some(Status::Online),
            b"offline" => Some(Status::Offline),
            _ => None,
        }
    }
}

/// The payload for `status`.
pub const fn encode_status(status: Status) -> &'static [u8] {
    status.as_bytes()
}

/// Reads a status payload; anything but the exact bytes `online` or `offline` is an
/// `invalid_value` error naming field `status`.
pub fn decode_status(payload: &[u8]) -> Result<Status, DecodeError> {
    Status::from_bytes(payload).ok_or_else(|| {
        let mut shown = Snippet::empty();
        for chunk in payload.utf8_chunks() {
            shown.push_str(chunk.valid());
            if !chunk.invalid().is_empty() {
                shown.push(char::REPLACEMENT_CHARACTER);
            }
        }
        DecodeError::unknown_value("status", shown, "online or offline")
    })
}

//! MQTT topics: `homeward/v1/{device}/events|status|downlink`.
//!
//! | topic                        | direction         | QoS | retained | payload                     |
//! |------------------------------|-------------------|-----|----------|-----------------------------|
//! | `homeward/v1/D/events`       | device -> server  | 1   | no       | one [`Event`](crate::Event) |
//! | `homeward/v1/D/status`       | device -> anyone  | 1   | yes      | `online` / `offline` (last will) |
//! | `homeward/v1/D/downlink`     | server -> device  | 1   | no       | one [`Downlink`](crate::Downlink) |
//!
//! The device id `D` is also the device's MQTT username and client id; the server takes a
//! device's identity from the topic (which the broker's ACL ties to the credentials), never
//! from a payload.

use core::fmt;

pub use crate::text::DeviceId;

/// Every topic starts with this.
pub const PREFIX: &str = "homeward/v1/";
/// What the server subscribes to for events (wrapped in `$share/...` when shared).
pub const EVENTS_FILTER: &str = "homeward/v1/+/events";
/// What the server subscribes to for device status.
pub const STATUS_FILTER: &str = "homeward/v1/+/status";
/// Every device's downlink, for monitoring tools and tests.
pub const DOWNLINK_FILTER: &str = "homeward/v1/+/downlink";
/// The longest topic: prefix, a 64-character device id, `/downlink`.
pub const MAX_TOPIC_LEN: usize = PREFIX.len() + DeviceId::MAX_LEN + "/downlink".len();

/// Which of a device's topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// `.../events`: device to server, QoS 1, one event per message.
    Events,
    /// `.../status`: retained `online`, and `offline` as the last will.
    Status,
    /// `.../downlink`: server to device, QoS 1, acks and notices.
    Downlink,
}

impl TopicKind {
    /// The last topic level.
    pub const fn as_str(self) -> &'static str {
        match self {
            TopicKind::Events => "events",
            TopicKind::Status => "status",
            TopicKind::Downlink => "downlink",
        }
    }

    /// The MQTT QoS to publish with: 1 for all three.
    pub const fn qos(self) -> u8 {
        1
    }

    /// Whether messages on this topic are published retained (only status).
    pub const fn retained(self) -> bool {
        matches!(self, TopicKind::Status)
    }

    fn from_str(s: &str) -> Option<Self> {
        [TopicKind::Events, TopicKind::Status, TopicKind::Downlink]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Whether `id` is a valid device id: 1 to 64 characters of `[A-Za-z0-9_-]` (so it can never
/// contain an MQTT wildcard or level separator).
pub fn valid_device_id(id: &str) -> bool {
    DeviceId::is_valid(id)
}

/// A device's topic, formatted on demand (`Display`), without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topic<'a> {
    /// The device.
    pub device: &'a DeviceId,
    /// Which topic.
    pub kind: TopicKind,
}

impl fmt::Display for Topic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}/{}", self.device, self.kind.as_str())
    }
}

/// Writes the `kind` topic of `device` into `w`.
pub fn write<W: fmt::Write>(w: &mut W, device: &DeviceId, kind: TopicKind) -> fmt::Result {
    write!(w, "{}", Topic { device, kind })
}

/// Writes `homeward/v1/{device}/events`.
pub fn write_events<W: fmt::Write>(w: &mut W, device: &DeviceId) -> fmt::Result {
    write(w, device, TopicKind::Events)
}

/// Writes `homeward/v1/{device}/status`.
pub fn write_status<W: fmt::Write>(w: &mut W, device: &DeviceId) -> fmt::Result {
    write(w, device, TopicKind::Status)
}

/// Writes `homeward/v1/{device}/downlink`.
pub fn write_downlink<W: fmt::Write>(w: &mut W, device: &DeviceId) -> fmt::Result {
    write(w, device, TopicKind::Downlink)
}

/// The topic in a fixed buffer, for the firmware.
pub fn to_buf(device: &DeviceId, kind: TopicKind) -> heapless::String<MAX_TOPIC_LEN> {
    let mut s = heapless::String::new();
    // Cannot fail: MAX_TOPIC_LEN is the longest topic there is.
    let _ = write(&mut s, device, kind);
    s
}

/// The topic as a `String`.
#[cfg(feature = "std")]
pub fn topic(device: &DeviceId, kind: TopicKind) -> std::string::String {
    std::string::ToString::to_string(&Topic { device, kind })
}

/// `homeward/v1/{device}/events` as a `String`.
#[cfg(feature = "std")]
pub fn events(device: &DeviceId) -> std::string::String {
    topic(device, TopicKind::Events)
}

/// `homeward/v1/{device}/status` as a `String`.
#[cfg(feature = "std")]
pub fn status(device: &DeviceId) -> std::string::String {
    topic(device, TopicKind::Status)
}

/// `homeward/v1/{device}/downlink` as a `String`.
#[cfg(feature = "std")]
pub fn downlink(device: &DeviceId) -> std::string::String {
    topic(device, TopicKind::Downlink)
}

/// Splits a topic into its device id and kind; `None` unless it is exactly one of the three
/// topics with a valid device id.
pub fn parse(topic: &str) -> Option<(&str, TopicKind)> {
    let rest = topic.strip_prefix(PREFIX)?;
    let (device, kind) = rest.split_once('/')?;
    let kind = TopicKind::from_str(kind)?;
    valid_device_id(device).then_some((device, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_parses() {
        let d = DeviceId::new("hub-0042").unwrap();
        let mut s = heapless::String::<MAX_TOPIC_LEN>::new();
        write_events(&mut s, &d).unwrap();
        assert_eq!(s, "homeward/v1/hub-0042/events");
        assert_eq!(parse(&s), Some(("hub-0042", TopicKind::Events)));
        assert_eq!(to_buf(&d, TopicKind::Status), "homeward/v1/hub-0042/status");
        assert_eq!(
            parse("homeward/v1/hub-0042/downlink"),
            Some(("hub-0042", TopicKind::Downlink))
        );
        let long = DeviceId::new(&"x".repeat(64)).unwrap();
        assert_eq!(to_buf(&long, TopicKind::Downlink).len(), MAX_TOPIC_LEN);
    }

    #[test]
    fn refuses_other_topics() {
        for t in [
            "homeward/v1/+/events",
            "homeward/v1//events",
            "homeward/v1/a/b/events",
            "homeward/v2/a/events",
            "homeward/v1/a/event",
            "homeward/v1/a/events/",
            "homeward/v1/a.b/events",
            "",
        ] {
            assert_eq!(parse(t), None, "{t}");
        }
        assert!(!valid_device_id(&"x".repeat(65)));
        assert!(!valid_device_id("#"));
    }
}

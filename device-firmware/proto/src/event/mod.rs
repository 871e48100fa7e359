//! Events, device to server: the envelope ([`Event`]), the closed set of kinds ([`EventKind`])
//! with their SCAIP mapping and priority, and each kind's typed fields ([`EventBody`]).
//!
//! Every value type here checks its range when it is built, so an `Event` that exists always
//! encodes, and its encoding always decodes back to an equal value. The encoders and decoders
//! live in `json` and `cbor`; `fields` holds the one table of field names and CBOR keys and the
//! rules for which kind takes which field, shared by both decoders.

pub(crate) mod cbor;
pub(crate) mod fields;
pub(crate) mod json;

use core::fmt;
use core::str::FromStr;

use crate::error::{DecodeError, Num, Snippet};
use crate::text::{Id, Memo};

/// The lowest valid `seq`. Devices number their events from 1.
pub const MIN_SEQ: u64 = 1;
/// The highest valid `seq`: `i64::MAX`, so that it fits a PostgreSQL `bigint`.
pub const MAX_SEQ: u64 = i64::MAX as u64;
/// The lowest valid device time `t`: the Unix epoch. A device whose clock is unset sends
/// times near it; the server flags them, the wire format carries them.
pub const MIN_TIME_MS: i64 = 0;
/// The highest valid device time `t`: 9999-12-31T23:59:59.999Z, so that every accepted time
/// fits the server's timestamp types.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $name:literal;)*) => {
        /// What an event reports. The JSON name is [`as_str`](Self::as_str), the CBOR code
        /// [`code`](Self::code); both are stable for wire format version 1.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($(#[$doc])* $variant = $code,)*
        }

        impl EventKind {
            /// Every kind, in code order.
            pub const ALL: [EventKind; 23] = [$(EventKind::$variant,)*];

            /// The JSON name, snake_case.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            /// The kind for a JSON name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(EventKind::$variant),)*
                    _ => None,
                }
            }

            /// The kind for a CBOR code.
            pub const fn from_code(code: u8) -> Option<Self> {
                match code {
                    $($code => Some(EventKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    /// The wearer pressed the personal trigger.
    PendantAlarm = 1, "pendant_alarm";
    /// A fall detector raised an alarm (`confidence` required).
    FallDetected = 2, "fall_detected";
    /// The wearer cancelled a detected fall within the grace window.
    FallCancelled = 3, "fall_cancelled";
    /// An alarm was reset at the device.
    AlarmReset = 4, "alarm_reset";
    /// A responder pressed the presence button on site.
    ResponderPresent = 5, "responder_present";
    /// No activity for `minutes`.
    Inactivity = 6, "inactivity";
    /// A door opened.
    DoorOpened = 7, "door_opened";
    /// A door stayed open too long.
    DoorOpenTooLong = 8, "door_open_too_long";
    /// Smoke detector alarm.
    Smoke = 9, "smoke";
    /// Heat detector alarm.
    Heat = 10, "heat";
    /// Carbon monoxide alarm.
    Co = 11, "co";
    /// Flood detector alarm.
    Flood = 12, "flood";
    /// Bed occupancy changed.
    BedOccupancy = 13, "bed_occupancy";
    /// Chair occupancy changed.
    ChairOccupancy = 14, "chair_occupancy";
    /// A pill dispenser dose was not taken.
    PillMissed = 15, "pill_missed";
    /// Periodic liveness report with battery and signal.
    Heartbeat = 16, "heartbeat";
    /// Battery low.
    BatteryLow = 17, "battery_low";
    /// Mains power lost.
    PowerFailure = 18, "power_failure";
    /// Mains power back.
    PowerRestored = 19, "power_restored";
    /// The hub lost its IP link (reported once it is back).
    LinkFailure = 20, "link_failure";
    /// The hub's IP link came back.
    LinkRestored = 21, "link_restored";
    /// A care worker checked in to a visit.
    CheckIn = 22, "check_in";
    /// A care worker checked out of a visit.
    CheckOut = 23, "check_out";
}

/// A SCAIP (CLC/TS 50134-9) message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScaipMessageType {
    /// `ME`: alarm.
    Alarm,
    /// `RE`: reset.
    Reset,
    /// `IN`: information.
    Information,
    /// `PI`: heartbeat.
    Heartbeat,
}

impl ScaipMessageType {
    /// The two-letter SCAIP code: `ME`, `RE`, `IN` or `PI`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ScaipMessageType::Alarm => "ME",
            ScaipMessageType::Reset => "RE",
            ScaipMessageType::Information => "IN",
            ScaipMessageType::Heartbeat => "PI",
        }
    }
}

impl EventKind {
    /// The CBOR code (also the `repr` value).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Whether the server stores this kind at once instead of holding it for a batch:
    /// alarms that someone must answer.
    pub const fn is_priority(self) -> bool {
        matches!(
            self,
            EventKind::PendantAlarm
                | EventKind::FallDetected
                | EventKind::Smoke
                | EventKind::Heat
                | EventKind::Co
                | EventKind::Flood
                | EventKind::Inactivity
                | EventKind::DoorOpenTooLong
        )
    }

    /// The SCAIP mapping: (device type `dty`, status code `stc`, message type). Codes are the
    /// numbers SCAIP writes as four decimal digits (`3` is `0003`); `None` where SCAIP has no
    /// fitting code.
    pub const fn scaip(self) -> (Option<u16>, Option<u16>, ScaipMessageType) {
        use ScaipMessageType::{Alarm, Heartbeat, Information, Reset};
        match self {
            EventKind::PendantAlarm => (Some(3), Some(10), Alarm),
            EventKind::FallDetected => (Some(5), Some(9), Alarm),
            EventKind::FallCancelled => (Some(5), Some(93), Reset),
            EventKind::AlarmReset => (Some(4), Some(93), Reset),
            EventKind::ResponderPresent => (Some(48), Some(88), Information),
            EventKind::Inactivity => (Some(10), Some(9), Alarm),
            EventKind::DoorOpened => (Some(14), Some(76), Information),
            EventKind::DoorOpenTooLong => (Some(14), Some(77), Alarm),
            EventKind::Smoke => (Some(23), Some(9), Alarm),
            EventKind::Heat => (Some(25), Some(9), Alarm),
            EventKind::Co => (Some(26), Some(9), Alarm),
            EventKind::Flood => (Some(33), Some(9), Alarm),
            EventKind::BedOccupancy => (Some(12), Some(117), Information),
            EventKind::ChairOccupancy => (Some(44), Some(120), Information),
            EventKind::PillMissed => (None, Some(81), Alarm),
            EventKind::Heartbeat => (Some(48), None, Heartbeat),
            EventKind::BatteryLow => (None, Some(16), Information),
            EventKind::PowerFailure => (Some(48), Some(85), Information),
            EventKind::PowerRestored => (Some(48), Some(86), Information),
            EventKind::LinkFailure => (Some(48), Some(23), Information),
            EventKind::LinkRestored => (Some(48), Some(112), Information),
            EventKind::CheckIn | EventKind::CheckOut => (None, None, Information),
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = DecodeError;
    /// Parses a JSON name; the error is ``unknown kind `...` ``.
    fn from_str(s: &str) -> Result<Self, DecodeError> {
        Self::from_name(s).ok_or_else(|| DecodeError::unknown_kind(Snippet::new(s)))
    }
}

/// How a care worker proved presence at a visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckMethod {
    /// A GNSS fix (`lat` and `lon` required). JSON `gps`, CBOR 1.
    Gps = 1,
    /// An NFC or QR tag in the home (`tag` required). JSON `tag`, CBOR 2.
    Tag = 2,
    /// A call from the home's phone (`caller_id` required). JSON `phone`, CBOR 3.
    Phone = 3,
    /// Recorded by hand (`reason` required). JSON `manual`, CBOR 4.
    Manual = 4,
}

impl CheckMethod {
    /// Every method, in code order.
    pub const ALL: [CheckMethod; 4] = [
        CheckMethod::Gps,
        CheckMethod::Tag,
        CheckMethod::Phone,
        CheckMethod::Manual,
    ];

    /// The JSON name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckMethod::Gps => "gps",
            CheckMethod::Tag => "tag",
            CheckMethod::Phone => "phone",
            CheckMethod::Manual => "manual",
        }
    }

    /// The CBOR code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The method for a JSON name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The method for a CBOR code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }
}

impl fmt::Display for CheckMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A percentage, 0 to 100 (`confidence`, `battery`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Percent(u8);

impl Percent {
    /// `Some` when `value <= 100`.
    pub const fn new(value: u8) -> Option<Self> {
        if value <= 100 {
            Some(Self(value))
        } else {
            None
        }
    }

    /// The value, 0 to 100.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// Received signal strength in dBm, -150 to 0 (`signal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignalDbm(i16);

impl SignalDbm {
    /// The weakest value accepted.
    pub const MIN: i16 = -150;
    /// The strongest value accepted.
    pub const MAX: i16 = 0;

    /// `Some` when `value` is in -150..=0.
    pub const fn new(value: i16) -> Option<Self> {
        if value >= Self::MIN && value <= Self::MAX {
            Some(Self(value))
        } else {
            None
        }
    }

    /// The value in dBm.
    pub const fn get(self) -> i16 {
        self.0
    }
}

/// A position fix from the device: `lat` and `lon` in degrees (WGS 84), with the optional
/// `accuracy_m` (metres, 0 to 10000) and `fix_age_s` (seconds since the fix was taken).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoFix {
    lat: f64,
    lon: f64,
    accuracy_m: Option<f32>,
    fix_age_s: Option<u32>,
}

impl GeoFix {
    /// The largest `accuracy_m` accepted.
    pub const MAX_ACCURACY_M: f32 = 10_000.0;

    /// `Some` when `lat` is in -90..=90 and `lon` in -180..=180 (NaN is in neither).
    pub fn new(lat: f64, lon: f64) -> Option<Self> {
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some(Self {
            lat,
            lon,
            accuracy_m: None,
            fix_age_s: None,
        })
    }

    /// Adds the fix's accuracy; `None` unless `accuracy_m` is in 0..=10000.
    pub fn with_accuracy_m(self, accuracy_m: f32) -> Option<Self> {
        (0.0..=Self::MAX_ACCURACY_M)
            .contains(&accuracy_m)
            .then_some(Self {
                accuracy_m: Some(accuracy_m),
                ..self
            })
    }

    /// Adds the fix's age.
    pub fn with_fix_age_s(self, fix_age_s: u32) -> Self {
        Self {
            fix_age_s: Some(fix_age_s),
            ..self
        }
    }

    /// Latitude in degrees, -90 to 90.
    pub fn lat(&self) -> f64 {
        self.lat
    }
    /// Longitude in degrees, -180 to 180.
    pub fn lon(&self) -> f64 {
        self.lon
    }
    /// Horizontal accuracy in metres, 0 to 10000.
    pub fn accuracy_m(&self) -> Option<f32> {
        self.accuracy_m
    }
    /// Seconds between taking the fix and the event's time.
    pub fn fix_age_s(&self) -> Option<u32> {
        self.fix_age_s
    }
}

/// The fields of a `check_in` or `check_out`.
///
/// Built by the constructor for its method, which takes the field that method requires, so a
/// value that exists always has it; the other fields are added with the `with_*` methods.
#[derive(Clone, Debug, PartialEq)]
pub struct VisitCheck {
    method: CheckMethod,
    visit: Option<Id>,
    person: Option<Id>,
    fix: Option<GeoFix>,
    tag: Option<Id>,
    caller_id: Option<Id>,
    reason: Option<Id>,
    memo: Option<Memo>,
}

impl VisitCheck {
    fn with_method(method: CheckMethod) -> Self {
        Self {
            method,
            visit: None,
            person: None,
            fix: None,
            tag: None,
            caller_id: None,
            reason: None,
            memo: None,
        }
    }

    /// Presence proved by a position fix.
    pub fn by_gps(fix: GeoFix) -> Self {
        Self::with_method(CheckMethod::Gps).with_fix(fix)
    }
    /// Presence proved by reading the home's tag.
    pub fn by_tag(tag: Id) -> Self {
        Self::with_method(CheckMethod::Tag).with_tag(tag)
    }
    /// Presence proved by a call from the home's phone.
    pub fn by_phone(caller_id: Id) -> Self {
        Self::with_method(CheckMethod::Phone).with_caller_id(caller_id)
    }
    /// Recorded by hand, with a reason code.
    pub fn by_manual(reason: Id) -> Self {
        Self::with_method(CheckMethod::Manual).with_reason(reason)
    }

    /// The scheduled visit's reference.
    pub fn with_visit(self, visit: Id) -> Self {
        Self {
            visit: Some(visit),
            ..self
        }
    }
    /// The person served.
    pub fn with_person(self, person: Id) -> Self {
        Self {
            person: Some(person),
            ..self
        }
    }
    /// A position fix (required by, but not limited to, [`CheckMethod::Gps`]).
    pub fn with_fix(self, fix: GeoFix) -> Self {
        Self {
            fix: Some(fix),
            ..self
        }
    }
    /// The tag read.
    pub fn with_tag(self, tag: Id) -> Self {
        Self {
            tag: Some(tag),
            ..self
        }
    }
    /// The calling number or line id.
    pub fn with_caller_id(self, caller_id: Id) -> Self {
        Self {
            caller_id: Some(caller_id),
            ..self
        }
    }
    /// The reason code for a manual record.
    pub fn with_reason(self, reason: Id) -> Self {
        Self {
            reason: Some(reason),
            ..self
        }
    }
    /// A free-text note.
    pub fn with_memo(self, memo: Memo) -> Self {
        Self {
            memo: Some(memo),
            ..self
        }
    }

    /// How presence was proved.
    pub fn method(&self) -> CheckMethod {
        self.method
    }
    /// The scheduled visit's reference.
    pub fn visit(&self) -> Option<&Id> {
        self.visit.as_ref()
    }
    /// The person served.
    pub fn person(&self) -> Option<&Id> {
        self.person.as_ref()
    }
    /// The position fix; always `Some` for [`CheckMethod::Gps`].
    pub fn fix(&self) -> Option<&GeoFix> {
        self.fix.as_ref()
    }
    /// The tag read; always `Some` for [`CheckMethod::Tag`].
    pub fn tag(&self) -> Option<&Id> {
        self.tag.as_ref()
    }
    /// The caller id; always `Some` for [`CheckMethod::Phone`].
    pub fn caller_id(&self) -> Option<&Id> {
        self.caller_id.as_ref()
    }
    /// The reason code; always `Some` for [`CheckMethod::Manual`].
    pub fn reason(&self) -> Option<&Id> {
        self.reason.as_ref()
    }
    /// The free-text note.
    pub fn memo(&self) -> Option<&Memo> {
        self.memo.as_ref()
    }
}

/// An event's kind with that kind's own fields. Field types carry their ranges, so every
/// value of this type is valid on the wire. Each variant is documented at its [`EventKind`]
/// namesake; the fields and their ranges are in `docs/wire-format.md`.
#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    PendantAlarm,
    FallDetected {
        confidence: Percent,
    },
    FallCancelled {
        confidence: Option<Percent>,
    },
    AlarmReset,
    ResponderPresent,
    Inactivity {
        minutes: u16,
    },
    DoorOpened,
    DoorOpenTooLong {
        minutes: Option<u16>,
    },
    Smoke,
    Heat,
    Co,
    Flood,
    BedOccupancy {
        occupied: bool,
    },
    ChairOccupancy {
        occupied: bool,
    },
    PillMissed,
    /// `interval_s` is the heartbeat interval the device promises, in seconds.
    Heartbeat {
        battery: Percent,
        signal: SignalDbm,
        interval_s: Option<u32>,
    },
    BatteryLow {
        battery: Percent,
    },
    PowerFailure,
    PowerRestored,
    LinkFailure,
    LinkRestored,
    CheckIn(VisitCheck),
    CheckOut(VisitCheck),
}

impl EventBody {
    /// The kind of this body.
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::PendantAlarm => EventKind::PendantAlarm,
            EventBody::FallDetected { .. } => EventKind::FallDetected,
            EventBody::FallCancelled { .. } => EventKind::FallCancelled,
            EventBody::AlarmReset => EventKind::AlarmReset,
            EventBody::ResponderPresent => EventKind::ResponderPresent,
            EventBody::Inactivity { .. } => EventKind::Inactivity,
            EventBody::DoorOpened => EventKind::DoorOpened,
            EventBody::DoorOpenTooLong { .. } => EventKind::DoorOpenTooLong,
            EventBody::Smoke => EventKind::Smoke,
            EventBody::Heat => EventKind::Heat,
            EventBody::Co => EventKind::Co,
            EventBody::Flood => EventKind::Flood,
            EventBody::BedOccupancy { .. } => EventKind::BedOccupancy,
            EventBody::ChairOccupancy { .. } => EventKind::ChairOccupancy,
            EventBody::PillMissed => EventKind::PillMissed,
            EventBody::Heartbeat { .. } => EventKind::Heartbeat,
            EventBody::BatteryLow { .. } => EventKind::BatteryLow,
            EventBody::PowerFailure => EventKind::PowerFailure,
            EventBody::PowerRestored => EventKind::PowerRestored,
            EventBody::LinkFailure => EventKind::LinkFailure,
            EventBody::LinkRestored => EventKind::LinkRestored,
            EventBody::CheckIn(_) => EventKind::CheckIn,
            EventBody::CheckOut(_) => EventKind::CheckOut,
        }
    }
}

/// One event as it travels: the envelope and the body.
///
/// The server's uniqueness key is (device, `seq`, `t`): a device that resends an event must
/// send the same `seq` and `t`, which it does by keeping the `Event` (or its bytes) until an
/// [`Ack`](crate::Downlink::Ack) covers it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    seq: u64,
    time_ms: i64,
    sensor: Option<u16>,
    body: EventBody,
}

impl Event {
    /// An event without a `sensor`. Fails naming `seq` unless it is in
    /// [`MIN_SEQ`]..=[`MAX_SEQ`], or `t` unless `time_ms` is in
    /// [`MIN_TIME_MS`]..=[`MAX_TIME_MS`].
    pub fn new(seq: u64, time_ms: i64, body: EventBody) -> Result<Self, DecodeError> {
        check_seq("seq", seq)?;
        check_time(time_ms)?;
        Ok(Self {
            seq,
            time_ms,
            sensor: None,
            body,
        })
    }

    /// Sets the sub-device number behind a hub that produced the event.
    pub fn with_sensor(self, sensor: u16) -> Self {
        Self {
            sensor: Some(sensor),
            ..self
        }
    }

    /// The per-device sequence number, 1 to `i64::MAX`.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// The device's time, milliseconds since the Unix epoch (UTC).
    pub fn time_ms(&self) -> i64 {
        self.time_ms
    }
    /// The sub-device number behind a hub, if any.
    pub fn sensor(&self) -> Option<u16> {
        self.sensor
    }
    /// The kind and its fields.
    pub fn body(&self) -> &EventBody {
        &self.body
    }
    /// The body, by value.
    pub fn into_body(self) -> EventBody {
        self.body
    }
    /// The kind.
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// Refuses an event whose device time is more than `max_future_ms` ahead of the
    /// receiver's clock `now_ms` (both in ms since the Unix epoch). The decoders cannot check
    /// this: it needs the receiver's clock. The error names field `t` and has reason code
    /// `time_in_future`.
    pub fn validate_time(&self, now_ms: i64, max_future_ms: i64) -> Result<(), DecodeError> {
        if i128::from(self.time_ms) > i128::from(now_ms) + i128::from(max_future_ms) {
            return Err(DecodeError::time_in_future(
                self.time_ms,
                now_ms,
                max_future_ms,
            ));
        }
        Ok(())
    }
}

pub(crate) fn check_seq(field: &'static str, seq: u64) -> Result<(), DecodeError> {
    if (MIN_SEQ..=MAX_SEQ).contains(&seq) {
        Ok(())
    } else {
        Err(DecodeError::out_of_range(
            field,
            Num::Uint(seq),
            Num::Uint(MIN_SEQ),
            Num::Uint(MAX_SEQ),
        ))
    }
}

fn check_time(time_ms: i64) -> Result<(), DecodeError> {
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&time_ms) {
        Ok(())
    } else {
        Err(DecodeError::out_of_range(
            "t",
            Num::Int(time_ms),
            Num::Int(MIN_TIME_MS),
            Num::Int(MAX_TIME_MS),
        ))
    }
}

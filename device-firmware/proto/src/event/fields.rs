//! The one table of event fields: JSON name, CBOR key and canonical order; which kind takes
//! which field; and the rules that turn a set of decoded fields into an [`Event`]. Both
//! encoders walk [`for_each_field`]; both decoders fill a [`Raw`] and call [`Raw::finish`]
//! (the stored fields' decoder [`Raw::finish_fields`]), so the encodings cannot drift apart.

use super::{
    CheckMethod, Event, EventBody, EventKind, GeoFix, Percent, SignalDbm, VisitCheck, MAX_SEQ,
    MAX_TIME_MS, MIN_SEQ, MIN_TIME_MS,
};
use crate::error::{Because, DecodeError, Owner};
use crate::source::{float_field, int_field, Enumerated, Source, Text};
use crate::text::{Id, Memo, ID_RULE, MEMO_NUL_RULE, MEMO_RULE};

/// Every field an event can carry. The declaration order is the canonical order: JSON writes
/// fields in it and CBOR keys ascend in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Seq,
    T,
    Kind,
    Sensor,
    Confidence,
    Minutes,
    Occupied,
    Battery,
    Signal,
    IntervalS,
    Method,
    Visit,
    Person,
    Lat,
    Lon,
    AccuracyM,
    FixAgeS,
    Tag,
    CallerId,
    Reason,
    Memo,
}

impl Field {
    pub(crate) const ALL: [Field; 21] = [
        Field::Seq,
        Field::T,
        Field::Kind,
        Field::Sensor,
        Field::Confidence,
        Field::Minutes,
        Field::Occupied,
        Field::Battery,
        Field::Signal,
        Field::IntervalS,
        Field::Method,
        Field::Visit,
        Field::Person,
        Field::Lat,
        Field::Lon,
        Field::AccuracyM,
        Field::FixAgeS,
        Field::Tag,
        Field::CallerId,
        Field::Reason,
        Field::Memo,
    ];

    /// The JSON name, and the name error messages use.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Field::Seq => "seq",
            Field::T => "t",
            Field::Kind => "kind",
            Field::Sensor => "sensor",
            Field::Confidence => "confidence",
            Field::Minutes => "minutes",
            Field::Occupied => "occupied",
            Field::Battery => "battery",
            Field::Signal => "signal",
            Field::IntervalS => "interval_s",
            Field::Method => "method",
            Field::Visit => "visit",
            Field::Person => "person",
            Field::Lat => "lat",
            Field::Lon => "lon",
            Field::AccuracyM => "accuracy_m",
            Field::FixAgeS => "fix_age_s",
            Field::Tag => "tag",
            Field::CallerId => "caller_id",
            Field::Reason => "reason",
            Field::Memo => "memo",
        }
    }

    /// The CBOR map key: 0 to 3 for the envelope, 10 and up for kind fields, one key per field
    /// name whatever the kind. Stable for wire format version 1: never reuse or renumber.
    pub(crate) const fn key(self) -> u8 {
        match self {
            Field::Seq => 0,
            Field::T => 1,
            Field::Kind => 2,
            Field::Sensor => 3,
            Field::Confidence => 10,
            Field::Minutes => 11,
            Field::Occupied => 12,
            Field::Battery => 13,
            Field::Signal => 14,
            Field::IntervalS => 15,
            Field::Method => 16,
            Field::Visit => 17,
            Field::Person => 18,
            Field::Lat => 19,
            Field::Lon => 20,
            Field::AccuracyM => 21,
            Field::FixAgeS => 22,
            Field::Tag => 23,
            Field::CallerId => 24,
            Field::Reason => 25,
            Field::Memo => 26,
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    pub(crate) fn from_key(key: i128) -> Option<Field> {
        Field::ALL.into_iter().find(|f| i128::from(f.key()) == key)
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

const ENVELOPE: [Field; 4] = [Field::Seq, Field::T, Field::Kind, Field::Sensor];

const VISIT_CHECK_FIELDS: [Field; 11] = [
    Field::Method,
    Field::Visit,
    Field::Person,
    Field::Lat,
    Field::Lon,
    Field::AccuracyM,
    Field::FixAgeS,
    Field::Tag,
    Field::CallerId,
    Field::Reason,
    Field::Memo,
];

/// The fields a kind takes besides the envelope, in canonical order.
pub(crate) fn kind_fields(kind: EventKind) -> &'static [Field] {
    match kind {
        EventKind::FallDetected | EventKind::FallCancelled => &[Field::Confidence],
        EventKind::Inactivity | EventKind::DoorOpenTooLong => &[Field::Minutes],
        EventKind::BedOccupancy | EventKind::ChairOccupancy => &[Field::Occupied],
        EventKind::Heartbeat => &[Field::Battery, Field::Signal, Field::IntervalS],
        EventKind::BatteryLow => &[Field::Battery],
        EventKind::CheckIn | EventKind::CheckOut => &VISIT_CHECK_FIELDS,
        EventKind::PendantAlarm
        | EventKind::AlarmReset
        | EventKind::ResponderPresent
        | EventKind::DoorOpened
        | EventKind::Smoke
        | EventKind::Heat
        | EventKind::Co
        | EventKind::Flood
        | EventKind::PillMissed
        | EventKind::PowerFailure
        | EventKind::PowerRestored
        | EventKind::LinkFailure
        | EventKind::LinkRestored => &[],
    }
}

/// A field's value as the encoders see it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Val<'a> {
    Uint(u64),
    Int(i64),
    Bool(bool),
    F64(f64),
    F32(f32),
    Text(&'a str),
    Kind(EventKind),
    Method(CheckMethod),
}

/// Calls `f` for every field of `event` that is present, in canonical order.
pub(crate) fn for_each_field<'a, E>(
    event: &'a Event,
    f: &mut impl FnMut(Field, Val<'a>) -> Result<(), E>,
) -> Result<(), E> {
    f(Field::Seq, Val::Uint(event.seq))?;
    f(Field::T, Val::Int(event.time_ms))?;
    f(Field::Kind, Val::Kind(event.kind()))?;
    if let Some(sensor) = event.sensor {
        f(Field::Sensor, Val::Uint(sensor.into()))?;
    }
    for_each_body_field(&event.body, f)
}

/// Calls `f` for every field of `body` that is present, in canonical order.
pub(crate) fn for_each_body_field<'a, E>(
    body: &'a EventBody,
    f: &mut impl FnMut(Field, Val<'a>) -> Result<(), E>,
) -> Result<(), E> {
    match body {
        EventBody::FallDetected { confidence } => {
            f(Field::Confidence, Val::Uint(confidence.get().into()))
        }
        EventBody::FallCancelled { confidence } => match confidence {
            Some(c) => f(Field::Confidence, Val::Uint(c.get().into())),
            None => Ok(()),
        },
        EventBody::Inactivity { minutes } => f(Field::Minutes, Val::Uint((*minutes).into())),
        EventBody::DoorOpenTooLong { minutes } => match minutes {
            Some(m) => f(Field::Minutes, Val::Uint((*m).into())),
            None => Ok(()),
        },
        EventBody::BedOccupancy { occupied } | EventBody::ChairOccupancy { occupied } => {
            f(Field::Occupied, Val::Bool(*occupied))
        }
        EventBody::Heartbeat {
            battery,
            signal,
            interval_s,
        } => {
            f(Field::Battery, Val::Uint(battery.get().into()))?;
            f(Field::Signal, Val::Int(signal.get().into()))?;
            match interval_s {
                Some(i) => f(Field::IntervalS, Val::Uint((*i).into())),
                None => Ok(()),
            }
        }
        EventBody::BatteryLow { battery } => f(Field::Battery, Val::Uint(battery.get().into())),
        EventBody::CheckIn(v) | EventBody::CheckOut(v) => visit_check_fields(v, f),
        EventBody::PendantAlarm
        | EventBody::AlarmReset
        | EventBody::ResponderPresent
        | EventBody::DoorOpened
        | EventBody::Smoke
        | EventBody::Heat
        | EventBody::Co
        | EventBody::Flood
        | EventBody::PillMissed
        | EventBody::PowerFailure
        | EventBody::PowerRestored
        | EventBody::LinkFailure
        | EventBody::LinkRestored => Ok(()),
    }
}

fn visit_check_fields<'a, E>(
    v: &'a VisitCheck,
    f: &mut impl FnMut(Field, Val<'a>) -> Result<(), E>,
) -> Result<(), E> {
    f(Field::Method, Val::Method(v.method))?;
    let mut text = |field, value: &'a Option<Id>| match value {
        Some(id) => f(field, Val::Text(id.as_str())),
        None => Ok(()),
    };
    text(Field::Visit, &v.visit)?;
    text(Field::Person, &v.person)?;
    if let Some(fix) = &v.fix {
        f(Field::Lat, Val::F64(fix.lat))?;
        f(Field::Lon, Val::F64(fix.lon))?;
        if let Some(a) = fix.accuracy_m {
            f(Field::AccuracyM, Val::F32(a))?;
        }
        if let Some(age) = fix.fix_age_s {
            f(Field::FixAgeS, Val::Uint(age.into()))?;
        }
    }
    let mut text = |field, value: &'a Option<Id>| match value {
        Some(id) => f(field, Val::Text(id.as_str())),
        None => Ok(()),
    };
    text(Field::Tag, &v.tag)?;
    text(Field::CallerId, &v.caller_id)?;
    text(Field::Reason, &v.reason)?;
    match &v.memo {
        Some(memo) => f(Field::Memo, Val::Text(memo.as_str())),
        None => Ok(()),
    }
}

/// How many fields `for_each_field` will visit (the CBOR map length).
pub(crate) fn count_fields(event: &Event) -> u64 {
    let mut n = 0;
    let counted: Result<(), core::convert::Infallible> = for_each_field(event, &mut |_, _| {
        n += 1;
        Ok(())
    });
    match counted {
        Ok(()) => n,
        Err(never) => match never {},
    }
}

impl Enumerated for EventKind {
    const EXPECTED: &'static str = "an event kind";
    fn from_name(name: &str) -> Option<Self> {
        EventKind::from_name(name)
    }
    fn from_code(code: i128) -> Option<Self> {
        u8::try_from(code).ok().and_then(EventKind::from_code)
    }
    fn unknown_name(_field: &'static str, name: crate::error::Snippet) -> DecodeError {
        DecodeError::unknown_kind(name)
    }
    fn unknown_code(_field: &'static str, code: i128) -> DecodeError {
        DecodeError::unknown_kind_code(code)
    }
}

impl Enumerated for CheckMethod {
    const EXPECTED: &'static str = "one of gps, tag, phone, manual (CBOR 1 to 4)";
    fn from_name(name: &str) -> Option<Self> {
        CheckMethod::from_name(name)
    }
    fn from_code(code: i128) -> Option<Self> {
        u8::try_from(code).ok().and_then(CheckMethod::from_code)
    }
}

/// The fields of one event as they are decoded, in whatever order they come.
#[derive(Default)]
pub(crate) struct Raw {
    seen: u32,
    seq: Option<u64>,
    t: Option<i64>,
    kind: Option<EventKind>,
    sensor: Option<u16>,
    confidence: Option<Percent>,
    minutes: Option<u16>,
    occupied: Option<bool>,
    battery: Option<Percent>,
    signal: Option<SignalDbm>,
    interval_s: Option<u32>,
    method: Option<CheckMethod>,
    visit: Option<Id>,
    person: Option<Id>,
    lat: Option<f64>,
    lon: Option<f64>,
    accuracy_m: Option<f32>,
    fix_age_s: Option<u32>,
    tag: Option<Id>,
    caller_id: Option<Id>,
    reason: Option<Id>,
    memo: Option<Memo>,
}

fn id<S: Source>(src: &mut S, field: &'static str) -> Result<Id, DecodeError> {
    match src.text::<{ Id::MAX_LEN }>(field)? {
        Text::Fits(s) => Id::new(&s).ok_or(DecodeError::invalid(field, ID_RULE)),
        Text::TooLong => Err(DecodeError::invalid(field, ID_RULE)),
    }
}

fn memo<S: Source>(src: &mut S, field: &'static str) -> Result<Memo, DecodeError> {
    match src.text::<{ Memo::MAX_LEN }>(field)? {
        Text::Fits(s) if s.contains('\0') => Err(DecodeError::invalid(field, MEMO_NUL_RULE)),
        Text::Fits(s) => Memo::new(&s).ok_or(DecodeError::invalid(field, MEMO_RULE)),
        Text::TooLong => Err(DecodeError::invalid(field, MEMO_RULE)),
    }
}

fn percent<S: Source>(src: &mut S, field: &'static str) -> Result<Percent, DecodeError> {
    int_field(src, field, 0u8, 100).map(Percent)
}

impl Raw {
    /// Reads the value of `field` from `src`, checking its type and range.
    pub(crate) fn set<S: Source>(&mut self, field: Field, src: &mut S) -> Result<(), DecodeError> {
        let name = field.name();
        if self.seen & field.bit() != 0 {
            return Err(DecodeError::duplicate(name));
        }
        self.seen |= field.bit();
        match field {
            Field::Seq => self.seq = Some(int_field(src, name, MIN_SEQ, MAX_SEQ)?),
            Field::T => self.t = Some(int_field(src, name, MIN_TIME_MS, MAX_TIME_MS)?),
            Field::Kind => self.kind = Some(src.enumerated(name)?),
            Field::Sensor => self.sensor = Some(int_field(src, name, u16::MIN, u16::MAX)?),
            Field::Confidence => self.confidence = Some(percent(src, name)?),
            Field::Minutes => self.minutes = Some(int_field(src, name, u16::MIN, u16::MAX)?),
            Field::Occupied => self.occupied = Some(src.boolean(name)?),
            Field::Battery => self.battery = Some(percent(src, name)?),
            Field::Signal => {
                let dbm = int_field(src, name, SignalDbm::MIN, SignalDbm::MAX)?;
                self.signal = Some(SignalDbm(dbm));
            }
            Field::IntervalS => self.interval_s = Some(int_field(src, name, u32::MIN, u32::MAX)?),
            Field::Method => self.method = Some(src.enumerated(name)?),
            Field::Visit => self.visit = Some(id(src, name)?),
            Field::Person => self.person = Some(id(src, name)?),
            Field::Lat => self.lat = Some(float_field(name, src.float(name)?, -90.0, 90.0)?),
            Field::Lon => self.lon = Some(float_field(name, src.float(name)?, -180.0, 180.0)?),
            Field::AccuracyM => {
                let a = src.float32(name)?;
                float_field(name, a.into(), 0.0, GeoFix::MAX_ACCURACY_M.into())?;
                self.accuracy_m = Some(a);
            }
            Field::FixAgeS => self.fix_age_s = Some(int_field(src, name, u32::MIN, u32::MAX)?),
            Field::Tag => self.tag = Some(id(src, name)?),
            Field::CallerId => self.caller_id = Some(id(src, name)?),
            Field::Reason => self.reason = Some(id(src, name)?),
            Field::Memo => self.memo = Some(memo(src, name)?),
        }
        Ok(())
    }

    /// Applies the rules that span fields: the envelope is complete, every field belongs to
    /// the kind, and the kind's (and the check-in method's) required fields are present.
    pub(crate) fn finish(self) -> Result<Event, DecodeError> {
        let always = |f: Field| DecodeError::missing(f.name(), Because::Always);
        let seq = self.seq.ok_or_else(|| always(Field::Seq))?;
        let time_ms = self.t.ok_or_else(|| always(Field::T))?;
        let kind = self.kind.ok_or_else(|| always(Field::Kind))?;
        let sensor = self.sensor;
        self.check_allowed(kind, &ENVELOPE)?;
        let body = self.body(kind)?;
        Ok(Event {
            seq,
            time_ms,
            sensor,
            body,
        })
    }

    /// [`finish`](Self::finish) for the kind's own fields alone, the kind given beside them
    /// (as the server stores an event): an envelope field among them is not allowed.
    pub(crate) fn finish_fields(self, kind: EventKind) -> Result<EventBody, DecodeError> {
        self.check_allowed(kind, &[])?;
        self.body(kind)
    }

    /// Every field seen belongs to `envelope` or to the kind.
    fn check_allowed(&self, kind: EventKind, envelope: &[Field]) -> Result<(), DecodeError> {
        let allowed = envelope
            .iter()
            .chain(kind_fields(kind))
            .fold(0, |bits, f| bits | f.bit());
        match Field::ALL
            .into_iter()
            .find(|f| self.seen & f.bit() & !allowed != 0)
        {
            Some(f) => Err(DecodeError::not_allowed(f.name(), Owner::Kind(kind))),
            None => Ok(()),
        }
    }

    /// The kind's body from its fields: the kind's (and the check-in method's) required
    /// fields are present.
    fn body(self, kind: EventKind) -> Result<EventBody, DecodeError> {
        let need = |f: Field| DecodeError::missing(f.name(), Because::Kind(kind));
        let body = match kind {
            EventKind::PendantAlarm => EventBody::PendantAlarm,
            EventKind::FallDetected => EventBody::FallDetected {
                confidence: self.confidence.ok_or_else(|| need(Field::Confidence))?,
            },
            EventKind::FallCancelled => EventBody::FallCancelled {
                confidence: self.confidence,
            },
            EventKind::AlarmReset => EventBody::AlarmReset,
            EventKind::ResponderPresent => EventBody::ResponderPresent,
            EventKind::Inactivity => EventBody::Inactivity {
                minutes: self.minutes.ok_or_else(|| need(Field::Minutes))?,
            },
            EventKind::DoorOpened => EventBody::DoorOpened,
            EventKind::DoorOpenTooLong => EventBody::DoorOpenTooLong {
                minutes: self.minutes,
            },
            EventKind::Smoke => EventBody::Smoke,
            EventKind::Heat => EventBody::Heat,
            EventKind::Co => EventBody::Co,
            EventKind::Flood => EventBody::Flood,
            EventKind::BedOccupancy => EventBody::BedOccupancy {
                occupied: self.occupied.ok_or_else(|| need(Field::Occupied))?,
            },
            EventKind::ChairOccupancy => EventBody::ChairOccupancy {
                occupied: self.occupied.ok_or_else(|| need(Field::Occupied))?,
            },
            EventKind::PillMissed => EventBody::PillMissed,
            EventKind::Heartbeat => EventBody::Heartbeat {
                battery: self.battery.ok_or_else(|| need(Field::Battery))?,
                signal: self.signal.ok_or_else(|| need(Field::Signal))?,
                interval_s: self.interval_s,
            },
            EventKind::BatteryLow => EventBody::BatteryLow {
                battery: self.battery.ok_or_else(|| need(Field::Battery))?,
            },
            EventKind::PowerFailure => EventBody::PowerFailure,
            EventKind::PowerRestored => EventBody::PowerRestored,
            EventKind::LinkFailure => EventBody::LinkFailure,
            EventKind::LinkRestored => EventBody::LinkRestored,
            EventKind::CheckIn => EventBody::CheckIn(self.visit_check(kind)?),
            EventKind::CheckOut => EventBody::CheckOut(self.visit_check(kind)?),
        };
        Ok(body)
    }

    fn visit_check(self, kind: EventKind) -> Result<VisitCheck, DecodeError> {
        let method = self
            .method
            .ok_or_else(|| DecodeError::missing(Field::Method.name(), Because::Kind(kind)))?;
        let partner = |missing: Field, present: Field| {
            DecodeError::missing(missing.name(), Because::Partner(present.name()))
        };
        let fix = match (self.lat, self.lon) {
            (Some(lat), Some(lon)) => Some(GeoFix {
                lat,
                lon,
                accuracy_m: self.accuracy_m,
                fix_age_s: self.fix_age_s,
            }),
            (Some(_), None) => return Err(partner(Field::Lon, Field::Lat)),
            (None, Some(_)) => return Err(partner(Field::Lat, Field::Lon)),
            (None, None) if self.accuracy_m.is_some() => {
                return Err(partner(Field::Lat, Field::AccuracyM))
            }
            (None, None) if self.fix_age_s.is_some() => {
                return Err(partner(Field::Lat, Field::FixAgeS))
            }
            (None, None) => None,
        };
        let required = match method {
            CheckMethod::Gps => (Field::Lat, fix.is_some()),
            CheckMethod::Tag => (Field::Tag, self.tag.is_some()),
            CheckMethod::Phone => (Field::CallerId, self.caller_id.is_some()),
            CheckMethod::Manual => (Field::Reason, self.reason.is_some()),
        };
        if let (field, false) = required {
            return Err(DecodeError::missing(field.name(), Because::Method(method)));
        }
        Ok(VisitCheck {
            method,
            visit: self.visit,
            person: self.person,
            fix,
            tag: self.tag,
            caller_id: self.caller_id,
            reason: self.reason,
            memo: self.memo,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_are_unique_and_ordered() {
        for (i, a) in Field::ALL.iter().enumerate() {
            assert_eq!(Field::from_name(a.name()), Some(*a));
            assert_eq!(Field::from_key(a.key().into()), Some(*a));
            if let Some(b) = Field::ALL.get(i + 1) {
                assert!(a.key() < b.key(), "keys ascend in canonical order");
            }
        }
    }

    #[test]
    fn kind_fields_follow_canonical_order() {
        for kind in EventKind::ALL {
            let keys = kind_fields(kind).iter().map(|f| f.key());
            assert!(keys.clone().zip(keys.skip(1)).all(|(a, b)| a < b), "{kind}");
        }
    }
}

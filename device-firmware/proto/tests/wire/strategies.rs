//! Proptest strategies for every valid value of the wire format.

use homeward_proto::*;
use proptest::prelude::*;

pub fn id() -> impl Strategy<Value = Id> {
    "[A-Za-z0-9._:+-]{1,64}".prop_map(|s| Id::new(&s).unwrap())
}

/// Any characters but NUL, control characters and non-ASCII included, cut to 500 bytes.
pub fn memo() -> impl Strategy<Value = Memo> {
    prop::collection::vec(any::<char>(), 0..200).prop_map(|chars| {
        let mut s = String::new();
        for c in chars.into_iter().filter(|&c| c != '\0') {
            if s.len() + c.len_utf8() > Memo::MAX_LEN {
                break;
            }
            s.push(c);
        }
        Memo::new(&s).unwrap()
    })
}

/// Values in `lo..=hi`, with the edges, zeros and subnormals that formatting gets wrong.
fn float_in(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => lo..=hi,
        1 => prop::sample::select(vec![lo, hi, 0.0, -0.0, 5e-324, -5e-324, 1e-7, 0.1, 1.0 / 3.0]),
    ]
}

fn accuracy() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => 0.0f32..=10_000.0,
        1 => prop::sample::select(vec![0.0f32, -0.0, 10_000.0, 1e-45, 1e-6, 0.1]),
    ]
}

pub fn fix() -> impl Strategy<Value = GeoFix> {
    (
        float_in(-90.0, 90.0),
        float_in(-180.0, 180.0),
        prop::option::of(accuracy()),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(lat, lon, acc, age)| {
            let mut fix = GeoFix::new(lat, lon).unwrap();
            if let Some(a) = acc {
                fix = fix.with_accuracy_m(a).unwrap();
            }
            if let Some(age) = age {
                fix = fix.with_fix_age_s(age);
            }
            fix
        })
}

pub fn visit_check() -> impl Strategy<Value = VisitCheck> {
    let base = prop_oneof![
        fix().prop_map(VisitCheck::by_gps),
        id().prop_map(VisitCheck::by_tag),
        id().prop_map(VisitCheck::by_phone),
        id().prop_map(VisitCheck::by_manual),
    ];
    let optional = (
        prop::option::of(id()),
        prop::option::of(id()),
        prop::option::of(fix()),
        prop::option::of(id()),
        prop::option::of(id()),
        prop::option::of(id()),
        prop::option::of(memo()),
    );
    (base, optional).prop_map(|(mut v, (visit, person, fix, tag, caller, reason, memo))| {
        if let Some(x) = visit {
            v = v.with_visit(x);
        }
        if let Some(x) = person {
            v = v.with_person(x);
        }
        if v.fix().is_none() {
            if let Some(x) = fix {
                v = v.with_fix(x);
            }
        }
        if v.tag().is_none() {
            if let Some(x) = tag {
                v = v.with_tag(x);
            }
        }
        if v.caller_id().is_none() {
            if let Some(x) = caller {
                v = v.with_caller_id(x);
            }
        }
        if v.reason().is_none() {
            if let Some(x) = reason {
                v = v.with_reason(x);
            }
        }
        if let Some(x) = memo {
            v = v.with_memo(x);
        }
        v
    })
}

fn percent() -> impl Strategy<Value = Percent> {
    (0u8..=100).prop_map(|p| Percent::new(p).unwrap())
}

pub fn body_of(kind: EventKind) -> BoxedStrategy<EventBody> {
    match kind {
        EventKind::PendantAlarm => Just(EventBody::PendantAlarm).boxed(),
        EventKind::FallDetected => percent()
            .prop_map(|confidence| EventBody::FallDetected { confidence })
            .boxed(),
        EventKind::FallCancelled => prop::option::of(percent())
            .prop_map(|confidence| EventBody::FallCancelled { confidence })
            .boxed(),
        EventKind::AlarmReset => Just(EventBody::AlarmReset).boxed(),
        EventKind::ResponderPresent => Just(EventBody::ResponderPresent).boxed(),
        EventKind::Inactivity => any::<u16>()
            .prop_map(|minutes| EventBody::Inactivity { minutes })
            .boxed(),
        EventKind::DoorOpened => Just(EventBody::DoorOpened).boxed(),
        EventKind::DoorOpenTooLong => prop::option::of(any::<u16>())
            .prop_map(|minutes| EventBody::DoorOpenTooLong { minutes })
            .boxed(),
        EventKind::Smoke => Just(EventBody::Smoke).boxed(),
        EventKind::Heat => Just(EventBody::Heat).boxed(),
        EventKind::Co => Just(EventBody::Co).boxed(),
        EventKind::Flood => Just(EventBody::Flood).boxed(),
        EventKind::BedOccupancy => any::<bool>()
            .prop_map(|occupied| EventBody::BedOccupancy { occupied })
            .boxed(),
        EventKind::ChairOccupancy => any::<bool>()
            .prop_map(|occupied| EventBody::ChairOccupancy { occupied })
            .boxed(),
        EventKind::PillMissed => Just(EventBody::PillMissed).boxed(),
        EventKind::Heartbeat => (percent(), -150i16..=0, prop::option::of(any::<u32>()))
            .prop_map(|(battery, signal, interval_s)| EventBody::Heartbeat {
                battery,
                signal: SignalDbm::new(signal).unwrap(),
                interval_s,
            })
            .boxed(),
        EventKind::BatteryLow => percent()
            .prop_map(|battery| EventBody::BatteryLow { battery })
            .boxed(),
        EventKind::PowerFailure => Just(EventBody::PowerFailure).boxed(),
        EventKind::PowerRestored => Just(EventBody::PowerRestored).boxed(),
        EventKind::LinkFailure => Just(EventBody::LinkFailure).boxed(),
        EventKind::LinkRestored => Just(EventBody::LinkRestored).boxed(),
        EventKind::CheckIn => visit_check().prop_map(EventBody::CheckIn).boxed(),
        EventKind::CheckOut => visit_check().prop_map(EventBody::CheckOut).boxed(),
    }
}

pub fn event_of(kind: EventKind) -> impl Strategy<Value = Event> {
    (
        MIN_SEQ..=MAX_SEQ,
        MIN_TIME_MS..=MAX_TIME_MS,
        prop::option::of(any::<u16>()),
        body_of(kind),
    )
        .prop_map(|(seq, t, sensor, body)| {
            let event = Event::new(seq, t, body).unwrap();
            match sensor {
                Some(s) => event.with_sensor(s),
                None => event,
            }
        })
}

pub fn event() -> impl Strategy<Value = Event> {
    prop::sample::select(EventKind::ALL.to_vec()).prop_flat_map(event_of)
}

pub fn downlink() -> impl Strategy<Value = Downlink> {
    let ranges = prop::collection::vec((MIN_SEQ..=MAX_SEQ, 0u64..1000), 0..24).prop_map(|pairs| {
        let mut a = AckRanges::new();
        for (first, len) in pairs {
            a.insert_range(first, first.saturating_add(len).min(MAX_SEQ));
        }
        a
    });
    let notice = (
        prop::sample::select(NoticeKind::ALL.to_vec()),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(kind, alarm)| Notice { kind, alarm });
    prop_oneof![
        ranges.prop_map(Downlink::Ack),
        notice.prop_map(Downlink::Notice)
    ]
}

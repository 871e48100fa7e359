//! Seeded randomness and the event mix.

use std::collections::BTreeMap;

use homeward_proto::{EventBody, Id, Percent, SignalDbm, VisitCheck};

/// SplitMix64: small, fast and the same on every machine, so a seed fixes a run's choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Weighted choice among kinds.
#[derive(Debug, Clone)]
pub struct Mix {
    kinds: Vec<(String, u64)>,
    total: u64,
}

impl Mix {
    pub fn new(weights: &BTreeMap<String, u32>) -> Self {
        let mut total = 0;
        let mut kinds = Vec::new();
        for (k, w) in weights {
            if *w > 0 {
                total += u64::from(*w);
                kinds.push((k.clone(), total));
            }
        }
        Self { kinds, total }
    }

    pub fn pick(&self, rng: &mut Rng) -> EventBody {
        let x = rng.below(self.total);
        let kind = self
            .kinds
            .iter()
            .find(|(_, upto)| x < *upto)
            .map(|(k, _)| k.as_str())
            .unwrap_or("heartbeat");
        body_for(kind, rng).expect("kinds were checked when the scenario was loaded")
    }
}

/// An event body of `kind` with plausible field values. `None` for kinds that do not go over
/// MQTT in this harness (check-ins go over HTTP) or unknown names.
pub fn body_for(kind: &str, rng: &mut Rng) -> Option<EventBody> {
    let pct = |rng: &mut Rng, lo: u64, hi: u64| {
        Percent::new((lo + rng.below(hi - lo + 1)) as u8).expect("0..=100")
    };
    Some(match kind {
        "heartbeat" => EventBody::Heartbeat {
            battery: pct(rng, 20, 100),
            signal: SignalDbm::new(-50 - rng.below(60) as i16).expect("in range"),
            interval_s: Some(900),
        },
        "pendant_alarm" => EventBody::PendantAlarm,
        "fall_detected" => EventBody::FallDetected {
            confidence: pct(rng, 60, 99),
        },
        "fall_cancelled" => EventBody::FallCancelled {
            confidence: Some(pct(rng, 60, 99)),
        },
        "alarm_reset" => EventBody::AlarmReset,
        "responder_present" => EventBody::ResponderPresent,
        "inactivity" => EventBody::Inactivity {
            minutes: 60 + rng.below(240) as u16,
        },
        "door_opened" => EventBody::DoorOpened,
        "door_open_too_long" => EventBody::DoorOpenTooLong {
            minutes: Some(10 + rng.below(50) as u16),
        },
        "smoke" => EventBody::Smoke,
        "heat" => EventBody::Heat,
        "co" => EventBody::Co,
        "flood" => EventBody::Flood,
        "bed_occupancy" => EventBody::BedOccupancy {
            occupied: rng.below(2) == 0,
        },
        "chair_occupancy" => EventBody::ChairOccupancy {
            occupied: rng.below(2) == 0,
        },
        "pill_missed" => EventBody::PillMissed,
        "battery_low" => EventBody::BatteryLow {
            battery: pct(rng, 1, 15),
        },
        "power_failure" => EventBody::PowerFailure,
        "power_restored" => EventBody::PowerRestored,
        "link_failure" => EventBody::LinkFailure,
        "link_restored" => EventBody::LinkRestored,
        _ => return None,
    })
}

/// Kinds that raise a care alarm (`event: alarm` on the live stream; technical alarms such as
/// battery_low go out as `technical_alarm`): their publish time is kept to time the live stream.
pub fn raises_alarm(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::PendantAlarm
            | EventBody::FallDetected { .. }
            | EventBody::Inactivity { .. }
            | EventBody::DoorOpenTooLong { .. }
            | EventBody::Smoke
            | EventBody::Heat
            | EventBody::Co
            | EventBody::Flood
            | EventBody::PillMissed
    )
}

/// A care worker's check-in (even `n`) or check-out (odd `n`) of visit `n / 2`, by tag.
pub fn visit_check(phone: usize, n: u64) -> EventBody {
    let visit = n / 2;
    let id = |s: String| Id::new(&s).expect("valid id");
    let check = VisitCheck::by_tag(id(format!("T-{phone}-{visit}")))
        .with_visit(id(format!("V-{phone}-{visit}")))
        .with_person(id(format!("P:{phone}")));
    if n.is_multiple_of(2) {
        EventBody::CheckIn(check)
    } else {
        EventBody::CheckOut(check)
    }
}

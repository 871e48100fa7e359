//! The closed sets of the alarm domain (categories, kinds, severities, states, outcome codes,
//! staff actions), each mapped to its SQL text explicitly, and the view of an alarm that the
//! API and the live stream send.

use chrono::{DateTime, Utc};
use homeward_proto::EventKind;
use serde::{Deserialize, Serialize};

use crate::sql_enum;

sql_enum! {
    /// Care alarms are about the person; technical alarms about the equipment (device health).
    Category {
        Care = "care",
        Technical = "technical",
    }
}

sql_enum! {
    /// What an alarm is about. Care kinds carry the name of the event that raises them.
    AlarmKind {
        PendantAlarm = "pendant_alarm",
        FallDetected = "fall_detected",
        Inactivity = "inactivity",
        DoorOpenTooLong = "door_open_too_long",
        Smoke = "smoke",
        Heat = "heat",
        Co = "co",
        Flood = "flood",
        PillMissed = "pill_missed",
        HeartbeatMissing = "heartbeat_missing",
        BatteryLow = "battery_low",
        PowerFailure = "power_failure",
        LinkFailure = "link_failure",
    }
}

sql_enum! {
    /// How urgent an alarm is (as telecare device platforms grade them).
    Severity {
        Critical = "critical",
        High = "high",
        Medium = "medium",
        Low = "low",
    }
}

sql_enum! {
    /// Where an alarm is in its lifecycle.
    State {
        Raised = "raised",
        Acknowledged = "acknowledged",
        Dispatched = "dispatched",
        OnSite = "on_site",
        Resolved = "resolved",
        Closed = "closed",
        /// Technical alarms only: the matching restore event arrived.
        Cleared = "cleared",
    }
}

sql_enum! {
    /// How a care alarm ended.
    Outcome {
        FalseOrAccidental = "false_or_accidental",
        ResolvedByTalking = "resolved_by_talking",
        FamilyOrKeyholderAttended = "family_or_keyholder_attended",
        ResponderAttendedNoInjury = "responder_attended_no_injury",
        MinorInjuryTreatedAtHome = "minor_injury_treated_at_home",
        AmbulanceCalledNotConveyed = "ambulance_called_not_conveyed",
        ConveyedToHospital = "conveyed_to_hospital",
        AdmittedToHospital = "admitted_to_hospital",
    }
}

sql_enum! {
    /// What staff (or responders) do to an alarm through the API.
    Action {
        Acknowledge = "acknowledge",
        Dispatch = "dispatch",
        Arrive = "arrive",
        Resolve = "resolve",
        Close = "close",
    }
}

sql_enum! {
    /// One step in an alarm's history (`alarm_events.transition`).
    Transition {
        Raised = "raised",
        Repeated = "repeated",
        Acknowledged = "acknowledged",
        Dispatched = "dispatched",
        OnSite = "on_site",
        Resolved = "resolved",
        Closed = "closed",
        Cleared = "cleared",
        /// A fall still without anyone on site `long_lie_minutes` after it was raised: the
        /// alarm stays in its state and becomes a long lie (live events only; not a state).
        LongLie = "long_lie",
    }
}

impl State {
    /// The states in which an alarm is open (and repeats fold into it).
    pub const OPEN: &'static [State] = &[
        State::Raised,
        State::Acknowledged,
        State::Dispatched,
        State::OnSite,
    ];

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }
}

impl Action {
    /// The state the action leads to, and the states it may start from.
    pub fn step(self, category: Category) -> Option<(State, &'static [State])> {
        use State::*;
        match (self, category) {
            (Action::Acknowledge, _) => Some((Acknowledged, &[Raised])),
            (Action::Dispatch, Category::Care) => Some((Dispatched, &[Acknowledged])),
            (Action::Arrive, Category::Care) => Some((OnSite, &[Raised, Acknowledged, Dispatched])),
            (Action::Resolve, Category::Care) => {
                Some((Resolved, &[Acknowledged, Dispatched, OnSite]))
            }
            (Action::Close, Category::Care) => Some((Closed, &[Resolved])),
            (Action::Dispatch | Action::Arrive | Action::Resolve | Action::Close, _) => None,
        }
    }
}

impl State {
    pub fn transition(self) -> Transition {
        match self {
            State::Raised => Transition::Raised,
            State::Acknowledged => Transition::Acknowledged,
            State::Dispatched => Transition::Dispatched,
            State::OnSite => Transition::OnSite,
            State::Resolved => Transition::Resolved,
            State::Closed => Transition::Closed,
            State::Cleared => Transition::Cleared,
        }
    }
}

impl AlarmKind {
    pub fn category(self) -> Category {
        match self {
            AlarmKind::HeartbeatMissing
            | AlarmKind::BatteryLow
            | AlarmKind::PowerFailure
            | AlarmKind::LinkFailure => Category::Technical,
            AlarmKind::PendantAlarm
            | AlarmKind::FallDetected
            | AlarmKind::Inactivity
            | AlarmKind::DoorOpenTooLong
            | AlarmKind::Smoke
            | AlarmKind::Heat
            | AlarmKind::Co
            | AlarmKind::Flood
            | AlarmKind::PillMissed => Category::Care,
        }
    }

    /// Severity: a person who may be hurt, or fire and gas, is critical; risks that can wait
    /// minutes are high; a missed pill is medium; a low battery is low.
    pub fn severity(self) -> Severity {
        match self {
            AlarmKind::PendantAlarm
            | AlarmKind::FallDetected
            | AlarmKind::Smoke
            | AlarmKind::Heat
            | AlarmKind::Co => Severity::Critical,
            AlarmKind::Inactivity
            | AlarmKind::DoorOpenTooLong
            | AlarmKind::Flood
            | AlarmKind::HeartbeatMissing
            | AlarmKind::LinkFailure => Severity::High,
            AlarmKind::PillMissed | AlarmKind::PowerFailure => Severity::Medium,
            AlarmKind::BatteryLow => Severity::Low,
        }
    }

    /// The alarm an event raises, if any (door open too long only at night: decided by the
    /// caller).
    pub fn raised_by(kind: EventKind) -> Option<Self> {
        Some(match kind {
            EventKind::PendantAlarm => AlarmKind::PendantAlarm,
            EventKind::FallDetected => AlarmKind::FallDetected,
            EventKind::Inactivity => AlarmKind::Inactivity,
            EventKind::DoorOpenTooLong => AlarmKind::DoorOpenTooLong,
            EventKind::Smoke => AlarmKind::Smoke,
            EventKind::Heat => AlarmKind::Heat,
            EventKind::Co => AlarmKind::Co,
            EventKind::Flood => AlarmKind::Flood,
            EventKind::PillMissed => AlarmKind::PillMissed,
            EventKind::BatteryLow => AlarmKind::BatteryLow,
            EventKind::PowerFailure => AlarmKind::PowerFailure,
            EventKind::LinkFailure => AlarmKind::LinkFailure,
            _ => return None,
        })
    }

    /// The technical alarm an event clears (heartbeats are handled apart: they clear
    /// `heartbeat_missing`, and `battery_low` when the battery is above the threshold).
    pub fn cleared_by(kind: EventKind) -> Option<Self> {
        match kind {
            EventKind::PowerRestored => Some(AlarmKind::PowerFailure),
            EventKind::LinkRestored => Some(AlarmKind::LinkFailure),
            _ => None,
        }
    }
}

/// An alarm as the API and the live stream show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[schema(as = Alarm)]
pub struct AlarmView {
    pub id: i64,
    #[serde(skip)]
    pub organisation_id: i32,
    pub category: Category,
    pub kind: AlarmKind,
    pub severity: Severity,
    pub state: State,
    pub person_id: Option<i32>,
    /// The device of the latest event folded into the alarm, and that event's seq.
    pub device_uid: String,
    pub seq: i64,
    pub count: i32,
    pub is_fall: bool,
    pub long_lie: bool,
    pub raised_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub on_site_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub outcome: Option<Outcome>,
    pub closed_at: Option<DateTime<Utc>>,
    pub cleared_at: Option<DateTime<Utc>>,
}

/// The columns [`AlarmView::from_row`] reads, for `RETURNING` and `SELECT` on `alarms a`.
pub const VIEW_COLUMNS: &str = "a.id, a.organisation_id, a.category, a.kind, a.severity, a.state, \
    a.person_id, (SELECT d.uid FROM devices d WHERE d.id = a.last_device_id) AS device_uid, \
    a.last_seq, a.count, a.is_fall, a.long_lie, a.raised_at, a.received_at, a.last_seen_at, \
    a.acknowledged_at, a.dispatched_at, a.on_site_at, a.resolved_at, a.outcome, a.closed_at, \
    a.cleared_at";

#[derive(Debug, thiserror::Error)]
#[error("column {column} holds {value:?}, which is not a known value")]
pub struct UnknownValue {
    pub column: &'static str,
    pub value: String,
}

fn parse_col<T>(
    row: &tokio_postgres::Row,
    column: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, UnknownValue> {
    let text: String = row.get(column);
    parse(&text).ok_or(UnknownValue {
        column,
        value: text,
    })
}

impl AlarmView {
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Self, UnknownValue> {
        let outcome: Option<String> = row.get("outcome");
        let outcome = match outcome {
            None => None,
            Some(text) => Some(Outcome::parse(&text).ok_or(UnknownValue {
                column: "outcome",
                value: text,
            })?),
        };
        Ok(Self {
            id: row.get("id"),
            organisation_id: row.get("organisation_id"),
            category: parse_col(row, "category", Category::parse)?,
            kind: parse_col(row, "kind", AlarmKind::parse)?,
            severity: parse_col(row, "severity", Severity::parse)?,
            state: parse_col(row, "state", State::parse)?,
            person_id: row.get("person_id"),
            device_uid: row
                .get::<_, Option<String>>("device_uid")
                .unwrap_or_default(),
            seq: row.get("last_seq"),
            count: row.get("count"),
            is_fall: row.get("is_fall"),
            long_lie: row.get("long_lie"),
            raised_at: row.get("raised_at"),
            received_at: row.get("received_at"),
            last_seen_at: row.get("last_seen_at"),
            acknowledged_at: row.get("acknowledged_at"),
            dispatched_at: row.get("dispatched_at"),
            on_site_at: row.get("on_site_at"),
            resolved_at: row.get("resolved_at"),
            outcome,
            closed_at: row.get("closed_at"),
            cleared_at: row.get("cleared_at"),
        })
    }

    /// The live-stream event for this alarm after `transition`.
    pub fn live_event(&self, transition: Transition) -> crate::live::LiveEvent {
        let mut data = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = data.as_object_mut() {
            map.insert("transition".into(), transition.as_str().into());
        }
        crate::live::LiveEvent {
            organisation_id: self.organisation_id,
            topic: match self.category {
                Category::Care => "alarm",
                Category::Technical => "technical_alarm",
            },
            at: Utc::now(),
            data,
        }
    }
}

/// Whether `hour` (0..24, local) falls in the night window `[start, end)`, which may wrap
/// midnight (22 to 7).
pub fn is_night(hour: u32, start: u32, end: u32) -> bool {
    if start == end {
        false
    } else if start < end {
        (start..end).contains(&hour)
    } else {
        hour >= start || hour < end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enum_round_trips_through_its_sql_text() {
        for v in Category::ALL {
            assert_eq!(Category::parse(v.as_str()), Some(*v));
        }
        for v in AlarmKind::ALL {
            assert_eq!(AlarmKind::parse(v.as_str()), Some(*v));
            // JSON and SQL agree.
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::Value::from(v.as_str())
            );
        }
        for v in State::ALL {
            assert_eq!(State::parse(v.as_str()), Some(*v));
        }
        for v in Outcome::ALL {
            assert_eq!(Outcome::parse(v.as_str()), Some(*v));
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::Value::from(v.as_str())
            );
        }
        assert_eq!(Outcome::ALL.len(), 8);
        assert_eq!(State::parse("open"), None);
    }

    #[test]
    fn every_care_event_raises_a_care_alarm_and_technical_events_technical_ones() {
        // What each event kind should raise, decided here kind by kind: the match has no
        // wildcard, so a new event kind does not compile until it is placed.
        fn expected(k: EventKind) -> Option<Category> {
            use EventKind::*;
            match k {
                PendantAlarm | FallDetected | Inactivity | DoorOpenTooLong | Smoke | Heat | Co
                | Flood | PillMissed => Some(Category::Care),
                BatteryLow | PowerFailure | LinkFailure => Some(Category::Technical),
                FallCancelled | AlarmReset | ResponderPresent | DoorOpened | BedOccupancy
                | ChairOccupancy | Heartbeat | PowerRestored | LinkRestored | CheckIn
                | CheckOut => None,
            }
        }
        for k in EventKind::ALL {
            let alarm = AlarmKind::raised_by(k);
            assert_eq!(alarm.map(|a| a.category()), expected(k), "{k:?}");
            if let Some(alarm) = alarm {
                assert_eq!(alarm.as_str(), k.as_str(), "{k:?} raises its namesake");
            }
        }
        assert_eq!(AlarmKind::raised_by(EventKind::Heartbeat), None);
        assert_eq!(
            AlarmKind::cleared_by(EventKind::PowerRestored),
            Some(AlarmKind::PowerFailure)
        );
        assert_eq!(AlarmKind::FallDetected.severity(), Severity::Critical);
        assert_eq!(AlarmKind::BatteryLow.severity(), Severity::Low);
    }

    #[test]
    fn actions_follow_the_lifecycle() {
        let (to, from) = Action::Resolve.step(Category::Care).unwrap();
        assert_eq!(to, State::Resolved);
        assert!(
            !from.contains(&State::Raised),
            "acknowledge before resolving"
        );
        assert_eq!(
            Action::Close.step(Category::Care).unwrap().1,
            &[State::Resolved]
        );
        assert!(Action::Dispatch.step(Category::Technical).is_none());
        assert_eq!(
            Action::Acknowledge.step(Category::Technical).unwrap().0,
            State::Acknowledged
        );
        assert!(State::OnSite.is_open() && !State::Resolved.is_open() && !State::Cleared.is_open());
    }

    #[test]
    fn night_windows_may_wrap_midnight() {
        assert!(is_night(23, 22, 7));
        assert!(is_night(0, 22, 7));
        assert!(is_night(6, 22, 7));
        assert!(!is_night(7, 22, 7));
        assert!(!is_night(12, 22, 7));
        assert!(is_night(2, 1, 5));
        assert!(!is_night(5, 1, 5));
        assert!(!is_night(3, 4, 4));
    }
}

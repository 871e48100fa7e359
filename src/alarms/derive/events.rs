//! The events derivation reads, from the live feed or from the `events` table, reduced to what
//! it needs. A stored event's fields are decoded by the wire format's own decoder of the
//! stored form, so both sources give the same [`Input`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use homeward_proto::{EventBody, EventKind};

use super::sql::EVENTS_QUERY;
use crate::alarms::AlarmError;
use crate::ingest::CommittedEvent;

/// The event kinds derivation looks at; everything else passes by.
pub const RELEVANT_KINDS: [EventKind; 18] = [
    EventKind::PendantAlarm,
    EventKind::FallDetected,
    EventKind::FallCancelled,
    EventKind::AlarmReset,
    EventKind::ResponderPresent,
    EventKind::Inactivity,
    EventKind::DoorOpenTooLong,
    EventKind::Smoke,
    EventKind::Heat,
    EventKind::Co,
    EventKind::Flood,
    EventKind::PillMissed,
    EventKind::Heartbeat,
    EventKind::BatteryLow,
    EventKind::PowerFailure,
    EventKind::PowerRestored,
    EventKind::LinkFailure,
    EventKind::LinkRestored,
];

/// One stored event, reduced to what derivation needs.
#[derive(Debug, Clone)]
pub struct Input {
    pub device_id: i32,
    pub organisation_id: i32,
    pub device_uid: Arc<str>,
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub kind: EventKind,
    pub battery: Option<i16>,
    pub signal: Option<i16>,
    pub interval_s: Option<i64>,
}

impl Input {
    /// `None` for events derivation does not look at.
    pub fn from_committed(e: &CommittedEvent) -> Option<Self> {
        let kind = e.event.kind();
        if !RELEVANT_KINDS.contains(&kind) {
            return None;
        }
        let (battery, signal, interval_s) = readings(e.event.body());
        Some(Self {
            device_id: e.device_id,
            organisation_id: e.organisation_id,
            device_uid: e.device_uid.clone(),
            seq: e.seq,
            occurred_at: e.occurred_at,
            received_at: e.received_at,
            kind,
            battery,
            signal,
            interval_s,
        })
    }

    /// From a row of [`EVENTS_QUERY`].
    pub fn from_row(row: &tokio_postgres::Row) -> Option<Self> {
        let code: i16 = row.get("kind");
        let kind = EventKind::from_code(u8::try_from(code).ok()?)?;
        if !RELEVANT_KINDS.contains(&kind) {
            return None;
        }
        let device_id: i32 = row.get("device_id");
        let seq: i64 = row.get("seq");
        // A kind without fields is stored as NULL rather than `{}`.
        let data: Option<&str> = row.get("data");
        let fields = homeward_proto::decode_fields_json(kind, data.unwrap_or("{}").as_bytes());
        let (battery, signal, interval_s) = match fields {
            Ok(body) => readings(&body),
            Err(e) => {
                // Stored events passed validation at intake: this would be a bug, not input.
                // The kind has its own column, so the event still counts, without its fields.
                tracing::warn!(device_id, seq, error = %e, "a stored event does not decode");
                (None, None, None)
            }
        };
        let uid: String = row.get("uid");
        Some(Self {
            device_id,
            organisation_id: row.get("organisation_id"),
            device_uid: uid.into(),
            seq,
            occurred_at: row.get("occurred_at"),
            received_at: row.get("received_at"),
            kind,
            battery,
            signal,
            interval_s,
        })
    }
}

/// The battery, signal and promised heartbeat interval an event carries.
fn readings(body: &EventBody) -> (Option<i16>, Option<i16>, Option<i64>) {
    match body {
        EventBody::Heartbeat {
            battery,
            signal,
            interval_s,
        } => (
            Some(i16::from(battery.get())),
            Some(signal.get()),
            interval_s.map(i64::from),
        ),
        EventBody::BatteryLow { battery } => (Some(i16::from(battery.get())), None, None),
        _ => (None, None, None),
    }
}

/// The stored events derivation looks at, received after `since` and at or before `until`
/// (`None`: to the end), in the order received, as a portal of `tx` that [`next_events`]
/// fetches a chunk at a time: one query over the whole range (pages by key would each scan and
/// sort every event received since `since` again, as `received_at` has no index of its own).
pub async fn events_portal(
    tx: &tokio_postgres::Transaction<'_>,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<tokio_postgres::Portal, AlarmError> {
    let statement = tx.prepare(EVENTS_QUERY).await?;
    let no_limit: Option<i64> = None;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&relevant_codes(), &since, &0i32, &0i64, &no_limit, &until];
    Ok(tx.bind(&statement, &params).await?)
}

/// The next `n` events of an [`events_portal`], and whether there may be more.
pub async fn next_events(
    tx: &tokio_postgres::Transaction<'_>,
    portal: &tokio_postgres::Portal,
    n: i32,
) -> Result<(Vec<Input>, bool), AlarmError> {
    let rows = tx.query_portal(portal, n).await?;
    let more = rows.len() >= usize::try_from(n).unwrap_or(0);
    Ok((rows.iter().filter_map(Input::from_row).collect(), more))
}

pub fn relevant_codes() -> Vec<i16> {
    RELEVANT_KINDS.iter().map(|k| i16::from(k.code())).collect()
}

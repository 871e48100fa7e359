//! Deriving alarms from events and staff actions: the one place that changes `alarms`,
//! `alarm_events` and `device_health`. The live feed, start-up catch-up and [`rebuild`]
//! (crate::alarms::rebuild) all go through these functions, so they give the same rows.
//!
//! Concurrency (several instances): an alarm is opened with `INSERT ... ON CONFLICT` on the
//! partial unique index of open alarms, so a repeat folds instead of opening a second one; every
//! transition is an `UPDATE` of rows first locked with `SELECT ... FOR UPDATE` and filtered on
//! their current state, so a transition made concurrently by someone else is never overwritten.
//! Each transition appends a row to `alarm_events` naming its cause: an event (device, seq),
//! which makes event processing idempotent, or a staff action.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use homeward_proto::{EventBody, EventKind};

use crate::db::cached;

use super::model::{
    is_night, AlarmKind, AlarmView, Category, Outcome, State, Transition, VIEW_COLUMNS,
};
use super::{AlarmError, AlarmSettings};
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
        let (battery, signal, interval_s) = match e.event.body() {
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
        };
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
        let data: Option<serde_json::Value> = row.get("data");
        let field = |name: &str| {
            data.as_ref()
                .and_then(|d| d.get(name))
                .and_then(|v| v.as_i64())
        };
        let uid: String = row.get("uid");
        Some(Self {
            device_id: row.get("device_id"),
            organisation_id: row.get("organisation_id"),
            device_uid: uid.into(),
            seq: row.get("seq"),
            occurred_at: row.get("occurred_at"),
            received_at: row.get("received_at"),
            kind,
            battery: field("battery").and_then(|v| i16::try_from(v).ok()),
            signal: field("signal").and_then(|v| i16::try_from(v).ok()),
            interval_s: field("interval_s"),
        })
    }
}

/// Stored events derivation looks at, in the order they were received, after the key
/// (`$2` received_at, `$3` device, `$4` seq), at most `$5`.
pub const EVENTS_QUERY: &str = "SELECT e.device_id, d.organisation_id, d.uid, e.seq, \
     e.occurred_at, e.received_at, e.kind, e.data \
     FROM events e JOIN devices d ON d.id = e.device_id \
     WHERE e.kind = ANY($1) AND (e.received_at, e.device_id, e.seq) > ($2, $3, $4) \
     ORDER BY e.received_at, e.device_id, e.seq \
     LIMIT $5";

/// Reads stored events after `after` (received_at, device, seq), a page at a time.
pub async fn events_page(
    c: &impl GenericClient,
    after: (DateTime<Utc>, i32, i64),
    limit: i64,
) -> Result<(Vec<Input>, Option<(DateTime<Utc>, i32, i64)>), AlarmError> {
    let rows = cached::query(
        c,
        EVENTS_QUERY,
        &[&relevant_codes(), &after.0, &after.1, &after.2, &limit],
    )
    .await?;
    let next = rows
        .last()
        .filter(|_| rows.len() as i64 == limit)
        .map(|r| (r.get("received_at"), r.get("device_id"), r.get("seq")));
    Ok((rows.iter().filter_map(Input::from_row).collect(), next))
}

pub fn relevant_codes() -> Vec<i16> {
    RELEVANT_KINDS.iter().map(|k| i16::from(k.code())).collect()
}

/// The settings as derivation uses them.
#[derive(Debug, Clone)]
pub struct Rules {
    pub default_interval_s: i64,
    pub missing_factor: f64,
    pub battery_ok_above: i16,
    pub long_lie_secs: f64,
    pub night_start_hour: u32,
    pub night_end_hour: u32,
    pub timezone: String,
}

impl From<&AlarmSettings> for Rules {
    fn from(s: &AlarmSettings) -> Self {
        Self {
            default_interval_s: i64::from(s.heartbeat_interval_secs.max(1)),
            missing_factor: s.heartbeat_missing_factor.max(1.0),
            battery_ok_above: i16::from(s.battery_low_percent),
            long_lie_secs: f64::from(s.long_lie_minutes) * 60.0,
            night_start_hour: s.night_start_hour,
            night_end_hour: s.night_end_hour,
            timezone: s.timezone.clone(),
        }
    }
}

impl Rules {
    /// When a device whose last heartbeat came at `last` with promised `interval_s` counts as
    /// missing. Computed here (not in SQL) so the live check and a rebuild agree to the
    /// microsecond.
    pub fn heartbeat_due(&self, last: DateTime<Utc>, interval_s: i64) -> DateTime<Utc> {
        let micros = (interval_s as f64 * self.missing_factor * 1e6).round() as i64;
        last + Duration::microseconds(micros)
    }
}

/// One change to publish once its transaction has committed.
#[derive(Debug, Clone)]
pub struct Change {
    pub view: AlarmView,
    pub transition: Transition,
}

/// Alarm ids to reuse, by the event that opened them (rebuild keeps ids stable so staff
/// actions still point at their alarms). Empty in live derivation.
pub type IdMap = HashMap<(i32, i64, AlarmKind), i64>;

/// What caused a transition.
#[derive(Debug, Clone, Copy)]
pub enum Cause {
    Event { device_id: i32, seq: i64 },
    Action(i64),
}

impl Cause {
    /// `alarm_events`' device_id, seq and action_id.
    fn columns(self) -> (Option<i32>, Option<i64>, Option<i64>) {
        match self {
            Cause::Event { device_id, seq } => (Some(device_id), Some(seq), None),
            Cause::Action(id) => (None, None, Some(id)),
        }
    }
}

/// Which alarms a transition applies to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Id(i64),
    /// Every matching alarm of a person (or device), optionally of one kind.
    Fold {
        key: &'a str,
        kind: Option<AlarmKind>,
    },
}

pub struct Step<'a> {
    pub organisation_id: i32,
    pub category: Category,
    pub target: Target<'a>,
    pub from: &'a [State],
    pub to: State,
    pub at: DateTime<Utc>,
    pub user_id: Option<i32>,
    pub outcome: Option<Outcome>,
    pub fall: Option<bool>,
    pub cause: Cause,
}

/// The alarm a step targets by id (a staff action, a clear by id), found by its primary key
/// alone and checked after (with the organisation and category in the same WHERE, the planner
/// scanned the organisation's alarms by `alarms_org_received_idx` while their statistics were
/// those of an empty table). Both targets take the same parameters, so the statement after them
/// is shared.
const STEP_BY_ID_SQL: &str = "WITH locked AS MATERIALIZED ( \
       SELECT id, state, organisation_id, category FROM alarms WHERE id = $4::int8 FOR UPDATE), \
     prev AS ( \
       SELECT id, state FROM locked \
        WHERE organisation_id = $1 AND category = $2 AND state = ANY($3::text[]) \
          AND $5::text IS NULL AND $6::text IS NULL) ";

/// The open alarms of a fold (by the partial index `alarms_one_open_idx`, which is why the open
/// states are spelt out: every fold step starts from open states).
const STEP_BY_FOLD_SQL: &str = "WITH prev AS ( \
       SELECT id, state FROM alarms \
        WHERE organisation_id = $1 AND fold_key = $5::text \
          AND state IN ('raised', 'acknowledged', 'dispatched', 'on_site') \
          AND state = ANY($3::text[]) AND category = $2 \
          AND ($6::text IS NULL OR kind = $6::text) AND $4::int8 IS NULL \
        ORDER BY id FOR UPDATE) ";

/// The update, and the row it appends to each alarm's history (`alarm_events`), in one
/// statement: `$13` the transition, `$14`/`$15` the causing event or `$16` the staff action.
const STEP_SQL: &str = ", updated AS (UPDATE alarms a SET \
       state = $7::text, \
       acknowledged_at = CASE WHEN $7::text = 'acknowledged' THEN $8::timestamptz ELSE a.acknowledged_at END, \
       acknowledged_by = CASE WHEN $7::text = 'acknowledged' THEN $9::int4 ELSE a.acknowledged_by END, \
       dispatched_at = CASE WHEN $7::text = 'dispatched' THEN $8::timestamptz ELSE a.dispatched_at END, \
       dispatched_by = CASE WHEN $7::text = 'dispatched' THEN $9::int4 ELSE a.dispatched_by END, \
       on_site_at = CASE WHEN $7::text = 'on_site' THEN $8::timestamptz ELSE a.on_site_at END, \
       on_site_by = CASE WHEN $7::text = 'on_site' THEN $9::int4 ELSE a.on_site_by END, \
       resolved_at = CASE WHEN $7::text = 'resolved' THEN $8::timestamptz ELSE a.resolved_at END, \
       resolved_by = CASE WHEN $7::text = 'resolved' THEN $9::int4 ELSE a.resolved_by END, \
       outcome = CASE WHEN $7::text = 'resolved' THEN $10::text ELSE a.outcome END, \
       closed_at = CASE WHEN $7::text = 'closed' THEN $8::timestamptz ELSE a.closed_at END, \
       closed_by = CASE WHEN $7::text = 'closed' THEN $9::int4 ELSE a.closed_by END, \
       cleared_at = CASE WHEN $7::text = 'cleared' THEN $8::timestamptz ELSE a.cleared_at END, \
       is_fall = a.is_fall OR COALESCE($11::bool, false), \
       long_lie = (a.is_fall OR COALESCE($11::bool, false)) AND COALESCE( \
           extract(epoch FROM (CASE WHEN $7::text = 'on_site' THEN $8::timestamptz ELSE a.on_site_at END) \
                   - a.raised_at) >= $12::float8, false) \
     FROM prev WHERE a.id = prev.id \
     RETURNING prev.state AS from_state, ";

const STEP_RECORD_SQL: &str = "), recorded AS ( \
       INSERT INTO alarm_events (organisation_id, alarm_id, at, transition, from_state, to_state, \
                                 device_id, seq, action_id) \
       SELECT organisation_id, id, $8::timestamptz, $13::text, from_state, $7::text, \
              $14::int4, $15::int8, $16::int8 FROM updated) \
     SELECT * FROM updated";

fn step_sql(target: &str) -> String {
    format!("{target}{STEP_SQL}{VIEW_COLUMNS}{STEP_RECORD_SQL}")
}

fn raise_sql(conflict: &str) -> String {
    format!("{RAISE_SQL}{conflict}{VIEW_COLUMNS}{RAISE_RECORD_SQL}")
}

/// Prepares on this connection every statement [`derive_event`] may run, so that a run of
/// events can be sent at once and still execute in order (a statement prepared on first use
/// would go out after the ones behind it).
pub async fn prepare_event_statements(c: &impl GenericClient) -> Result<(), AlarmError> {
    for sql in [
        step_sql(STEP_BY_ID_SQL),
        step_sql(STEP_BY_FOLD_SQL),
        raise_sql(FOLD_SQL),
        raise_many_sql(),
    ] {
        c.prepare_cached(&sql).await?;
    }
    Ok(())
}

/// Applies one transition to the alarms it targets (none if none is in a `from` state).
pub async fn step(
    c: &impl GenericClient,
    rules: &Rules,
    s: &Step<'_>,
) -> Result<Vec<Change>, AlarmError> {
    let from: Vec<&str> = s.from.iter().map(|st| st.as_str()).collect();
    let (id, fold_key, kind) = match s.target {
        Target::Id(id) => (Some(id), None, None),
        Target::Fold { key, kind } => (None, Some(key), kind.map(|k| k.as_str())),
    };
    let target = if id.is_some() {
        STEP_BY_ID_SQL
    } else {
        debug_assert!(
            s.from.iter().all(|st| st.is_open()),
            "fold steps start from open states"
        );
        STEP_BY_FOLD_SQL
    };
    let sql = step_sql(target);
    let transition = s.to.transition();
    let (device_id, seq, action_id) = s.cause.columns();
    let rows = cached::query(
        c,
        &sql,
        &[
            &s.organisation_id,
            &s.category.as_str(),
            &from,
            &id,
            &fold_key,
            &kind,
            &s.to.as_str(),
            &s.at,
            &s.user_id,
            &s.outcome.map(|o| o.as_str()),
            &s.fall,
            &rules.long_lie_secs,
            &transition.as_str(),
            &device_id,
            &seq,
            &action_id,
        ],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Change {
                view: AlarmView::from_row(row)?,
                transition,
            })
        })
        .collect()
}

const RAISE_SQL: &str =
    "WITH raised AS (INSERT INTO alarms AS a (id, organisation_id, category, kind, severity, \
       state, fold_key, person_id, source_device_id, source_seq, last_device_id, last_seq, count, \
       is_fall, raised_at, received_at, last_seen_at) \
     VALUES (COALESCE($1::int8, nextval(pg_get_serial_sequence('alarms', 'id'))), $2, $3, $4, $5, \
       'raised', $6, $7, $8, $9, $8, $9, 1, $10, $11, $12, $11) ";

/// The alarm raised (or folded into) and the row it appends to its history, in one statement.
const RAISE_RECORD_SQL: &str = "), recorded AS ( \
       INSERT INTO alarm_events (organisation_id, alarm_id, at, transition, to_state, device_id, seq) \
       SELECT organisation_id, id, $11, CASE WHEN inserted THEN 'raised' ELSE 'repeated' END, \
              state, $8, $9 FROM raised) \
     SELECT * FROM raised";

/// A repeat while one is open folds into it.
const FOLD_SQL: &str = "ON CONFLICT (organisation_id, fold_key, kind) \
       WHERE state IN ('raised', 'acknowledged', 'dispatched', 'on_site') \
     DO UPDATE SET count = a.count + 1, \
       last_seen_at = GREATEST(a.last_seen_at, excluded.last_seen_at), \
       last_device_id = excluded.last_device_id, last_seq = excluded.last_seq \
     RETURNING (a.xmax = 0) AS inserted, ";

/// One `heartbeat_missing` per silence: the sweep and a late heartbeat may both try; the
/// first wins.
const ONCE_SQL: &str = "ON CONFLICT DO NOTHING RETURNING true AS inserted, ";

/// A new alarm to open, or fold into the open one of the same kind and fold key.
struct Raise<'a> {
    input: &'a Input,
    kind: AlarmKind,
    fold_key: String,
    person_id: Option<i32>,
    /// The event the alarm stands on: the triggering event, or for a missing heartbeat the
    /// last heartbeat heard.
    source_seq: i64,
    raised_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
}

async fn raise(
    c: &impl GenericClient,
    ids: &IdMap,
    r: Raise<'_>,
) -> Result<Option<Change>, AlarmError> {
    let reuse = ids.get(&(r.input.device_id, r.source_seq, r.kind)).copied();
    let conflict = if r.kind == AlarmKind::HeartbeatMissing {
        ONCE_SQL
    } else {
        FOLD_SQL
    };
    let sql = raise_sql(conflict);
    let row = cached::query_opt(
        c,
        &sql,
        &[
            &reuse,
            &r.input.organisation_id,
            &r.kind.category().as_str(),
            &r.kind.as_str(),
            &r.kind.severity().as_str(),
            &r.fold_key,
            &r.person_id,
            &r.input.device_id,
            &r.source_seq,
            &(r.kind == AlarmKind::FallDetected),
            &r.raised_at,
            &r.received_at,
        ],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    let inserted: bool = row.get("inserted");
    let mut view = AlarmView::from_row(&row)?;
    let transition = if inserted {
        Transition::Raised
    } else {
        Transition::Repeated
    };
    // A missing heartbeat names the heartbeat it stands on; the stream shows the event seen.
    view.seq = r.source_seq;
    Ok(Some(Change { view, transition }))
}

/// What a pass looks up once for all its events rather than once for each: which of them
/// already caused a transition (catch-up and retries see events again), and each device's
/// person. [`Known::default`] looks each up when asked (a rebuild, where staff actions come
/// between events).
#[derive(Debug, Default)]
pub struct Known {
    loaded: bool,
    done: HashSet<(i32, i64)>,
    person: HashMap<i32, Option<i32>>,
    /// The local hour (rules' time zone) of each `door_open_too_long`'s device time.
    hour: HashMap<DateTime<Utc>, u32>,
}

impl Known {
    /// Looks up every event of `inputs` except heartbeats (which [`Heartbeats`] handles).
    pub async fn load(
        c: &impl GenericClient,
        rules: &Rules,
        inputs: &[Input],
    ) -> Result<Self, AlarmError> {
        let mut known = Self {
            loaded: true,
            ..Self::default()
        };
        let (devices, seqs): (Vec<i32>, Vec<i64>) = inputs
            .iter()
            .filter(|i| i.kind != EventKind::Heartbeat)
            .map(|i| (i.device_id, i.seq))
            .unzip();
        if devices.is_empty() {
            return Ok(known);
        }
        for row in cached::query(
            c,
            // A probe of the index per event whatever the plan (a LATERAL ... LIMIT is never
            // turned into a join; as a semi-join, a generic plan hashed all of alarm_events).
            "SELECT k.device_id, k.seq FROM unnest($1::int4[], $2::int8[]) AS k (device_id, seq) \
              CROSS JOIN LATERAL (SELECT 1 FROM alarm_events e WHERE e.device_id IS NOT NULL \
                                     AND e.device_id = k.device_id AND e.seq = k.seq LIMIT 1) found",
            &[&devices, &seqs],
        )
        .await?
        {
            known.done.insert((row.get(0), row.get(1)));
        }
        let mut unique = devices;
        unique.sort_unstable();
        unique.dedup();
        for row in cached::query(
            c,
            "SELECT id, person_id FROM devices WHERE id = ANY($1)",
            &[&unique],
        )
        .await?
        {
            known.person.insert(row.get(0), row.get(1));
        }
        let times: Vec<DateTime<Utc>> = inputs
            .iter()
            .filter(|i| i.kind == EventKind::DoorOpenTooLong)
            .map(|i| i.occurred_at)
            .collect();
        if !times.is_empty() {
            for row in cached::query(
                c,
                "SELECT t, extract(hour FROM (t AT TIME ZONE $2::text))::int4 \
                   FROM unnest($1::timestamptz[]) AS t",
                &[&times, &rules.timezone],
            )
            .await?
            {
                let hour: i32 = row.get(1);
                known
                    .hour
                    .insert(row.get(0), u32::try_from(hour).unwrap_or(0));
            }
        }
        Ok(known)
    }

    /// Whether the event already caused a transition, when [`load`](Self::load) looked.
    pub fn done(&self, input: &Input) -> Option<bool> {
        self.loaded
            .then(|| self.done.contains(&(input.device_id, input.seq)))
    }

    /// Takes note that the event caused a transition.
    pub fn mark_done(&mut self, input: &Input) {
        self.done.insert((input.device_id, input.seq));
    }

    async fn is_done(&self, c: &impl GenericClient, input: &Input) -> Result<bool, AlarmError> {
        if self.loaded {
            Ok(self.done.contains(&(input.device_id, input.seq)))
        } else {
            already_done(c, input.device_id, input.seq).await
        }
    }

    async fn person(
        &self,
        c: &impl GenericClient,
        device_id: i32,
    ) -> Result<Option<i32>, AlarmError> {
        if let Some(person) = self.person.get(&device_id) {
            return Ok(*person);
        }
        let row = cached::query_opt(
            c,
            "SELECT person_id FROM devices WHERE id = $1",
            &[&device_id],
        )
        .await?;
        Ok(row.and_then(|r| r.get(0)))
    }
}

async fn already_done(
    c: &impl GenericClient,
    device_id: i32,
    seq: i64,
) -> Result<bool, AlarmError> {
    let row = cached::query_one(
        c,
        "SELECT EXISTS (SELECT 1 FROM alarm_events WHERE device_id = $1 AND seq = $2)",
        &[&device_id, &seq],
    )
    .await?;
    Ok(row.get(0))
}

/// What repeats of a care alarm fold on: the person, or the device when it has none.
async fn care_fold(
    c: &impl GenericClient,
    known: &Known,
    input: &Input,
) -> Result<(String, Option<i32>), AlarmError> {
    Ok(match known.person(c, input.device_id).await? {
        Some(p) => (format!("p{p}"), Some(p)),
        None => (device_fold(input.device_id), None),
    })
}

fn device_fold(device_id: i32) -> String {
    format!("d{device_id}")
}

async fn local_hour(
    c: &impl GenericClient,
    at: DateTime<Utc>,
    tz: &str,
) -> Result<u32, AlarmError> {
    let row = cached::query_one(
        c,
        "SELECT extract(hour FROM ($1::timestamptz AT TIME ZONE $2::text))::int4",
        &[&at, &tz],
    )
    .await?;
    let hour: i32 = row.get(0);
    Ok(u32::try_from(hour).unwrap_or(0))
}

/// Applies one event other than a heartbeat (heartbeats go through [`Heartbeats`]).
pub async fn apply_event(
    c: &impl GenericClient,
    rules: &Rules,
    ids: &IdMap,
    known: &mut Known,
    input: &Input,
) -> Result<Vec<Change>, AlarmError> {
    if known.is_done(c, input).await? {
        return Ok(Vec::new());
    }
    let changes = derive_event(c, rules, ids, known, input).await?;
    if !changes.is_empty() {
        known.done.insert((input.device_id, input.seq));
    }
    Ok(changes)
}

/// The key an event's transitions are ordered on: events with different keys touch different
/// alarms, so they may apply in any order. `None` when the event does nothing (or [`Known`]
/// did not see it).
pub fn order_key(rules: &Rules, known: &Known, input: &Input) -> Option<String> {
    let care = |input: &Input| {
        let person = known.person.get(&input.device_id)?;
        Some(match person {
            Some(p) => format!("p{p}"),
            None => device_fold(input.device_id),
        })
    };
    if let Some(kind) = AlarmKind::raised_by(input.kind) {
        if kind == AlarmKind::DoorOpenTooLong {
            let hour = known.hour.get(&input.occurred_at)?;
            if !is_night(*hour, rules.night_start_hour, rules.night_end_hour) {
                return None;
            }
        }
        return match kind.category() {
            Category::Care => care(input),
            Category::Technical => Some(device_fold(input.device_id)),
        };
    }
    if AlarmKind::cleared_by(input.kind).is_some() {
        return Some(device_fold(input.device_id));
    }
    match input.kind {
        EventKind::FallCancelled | EventKind::AlarmReset | EventKind::ResponderPresent => {
            care(input)
        }
        _ => None,
    }
}

/// An alarm to raise: its kind, fold key, person and the event raising it.
pub type PlannedRaise<'a> = (AlarmKind, String, Option<i32>, &'a Input);

/// An alarm an event raises, when [`Known`] has all it needs: the input for [`raise_many`].
pub fn planned_raise<'a>(
    rules: &Rules,
    known: &Known,
    input: &'a Input,
) -> Option<PlannedRaise<'a>> {
    let kind = AlarmKind::raised_by(input.kind)?;
    let fold_key = order_key(rules, known, input)?;
    let person_id = match kind.category() {
        Category::Care => *known.person.get(&input.device_id)?,
        Category::Technical => None,
    };
    Some((kind, fold_key, person_id, input))
}

/// Raises (or folds) several alarms in one statement, with their history rows. No two may
/// share an open alarm's key (organisation, fold key, kind): one statement cannot fold twice
/// into the same row. Returns each raise's change, in the order given (`None`: nothing).
pub async fn raise_many(
    c: &impl GenericClient,
    ids: &IdMap,
    raises: &[PlannedRaise<'_>],
) -> Result<Vec<Option<Change>>, AlarmError> {
    let n = raises.len();
    let mut reuse = Vec::with_capacity(n);
    let mut org = Vec::with_capacity(n);
    let mut category = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut severity = Vec::with_capacity(n);
    let mut fold = Vec::with_capacity(n);
    let mut person = Vec::with_capacity(n);
    let mut device = Vec::with_capacity(n);
    let mut seq = Vec::with_capacity(n);
    let mut fall = Vec::with_capacity(n);
    let mut raised_at = Vec::with_capacity(n);
    let mut received_at = Vec::with_capacity(n);
    for (k, fold_key, person_id, input) in raises {
        reuse.push(ids.get(&(input.device_id, input.seq, *k)).copied());
        org.push(input.organisation_id);
        category.push(k.category().as_str());
        kind.push(k.as_str());
        severity.push(k.severity().as_str());
        fold.push(fold_key.as_str());
        person.push(*person_id);
        device.push(input.device_id);
        seq.push(input.seq);
        fall.push(*k == AlarmKind::FallDetected);
        raised_at.push(input.occurred_at);
        received_at.push(input.received_at);
    }
    let rows = cached::query(
        c,
        &raise_many_sql(),
        &[
            &reuse,
            &org,
            &category,
            &kind,
            &severity,
            &fold,
            &person,
            &device,
            &seq,
            &fall,
            &raised_at,
            &received_at,
        ],
    )
    .await?;
    let mut by_event: HashMap<(i32, i64), Change> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let inserted: bool = row.get("inserted");
        let view = AlarmView::from_row(row)?;
        let transition = if inserted {
            Transition::Raised
        } else {
            Transition::Repeated
        };
        by_event.insert(
            (row.get("raised_device_id"), view.seq),
            Change { view, transition },
        );
    }
    Ok(raises
        .iter()
        .map(|(_, _, _, input)| by_event.remove(&(input.device_id, input.seq)))
        .collect())
}

fn raise_many_sql() -> String {
    format!(
        "WITH input AS MATERIALIZED ( \
           SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::text[], $5::text[], \
                                $6::text[], $7::int4[], $8::int4[], $9::int8[], $10::bool[], \
                                $11::timestamptz[], $12::timestamptz[]) \
             AS i (reuse, organisation_id, category, kind, severity, fold_key, person_id, \
                   device_id, seq, is_fall, raised_at, received_at)), \
         raised AS (INSERT INTO alarms AS a (id, organisation_id, category, kind, severity, \
             state, fold_key, person_id, source_device_id, source_seq, last_device_id, last_seq, \
             count, is_fall, raised_at, received_at, last_seen_at) \
           SELECT COALESCE(reuse, nextval(pg_get_serial_sequence('alarms', 'id'))), \
                  organisation_id, category, kind, severity, 'raised', fold_key, person_id, \
                  device_id, seq, device_id, seq, 1, is_fall, raised_at, received_at, raised_at \
             FROM input \
           {FOLD_SQL}{VIEW_COLUMNS}, a.last_device_id AS raised_device_id), \
         recorded AS ( \
           INSERT INTO alarm_events (organisation_id, alarm_id, at, transition, to_state, \
                                     device_id, seq) \
           SELECT r.organisation_id, r.id, i.raised_at, \
                  CASE WHEN r.inserted THEN 'raised' ELSE 'repeated' END, r.state, \
                  i.device_id, i.seq \
             FROM raised r JOIN input i ON i.device_id = r.raised_device_id AND i.seq = r.last_seq) \
         SELECT * FROM raised"
    )
}

/// [`apply_event`] without the check that the event was already derived. At most one
/// statement when [`Known::load`] saw the event.
pub async fn derive_event(
    c: &impl GenericClient,
    rules: &Rules,
    ids: &IdMap,
    known: &Known,
    input: &Input,
) -> Result<Vec<Change>, AlarmError> {
    let cause = Cause::Event {
        device_id: input.device_id,
        seq: input.seq,
    };
    if let Some(kind) = AlarmKind::raised_by(input.kind) {
        if kind == AlarmKind::DoorOpenTooLong {
            let hour = match known.hour.get(&input.occurred_at) {
                Some(hour) => *hour,
                None => local_hour(c, input.occurred_at, &rules.timezone).await?,
            };
            if !is_night(hour, rules.night_start_hour, rules.night_end_hour) {
                return Ok(Vec::new());
            }
        }
        let (fold_key, person_id) = match kind.category() {
            Category::Care => care_fold(c, known, input).await?,
            Category::Technical => (device_fold(input.device_id), None),
        };
        let change = raise(
            c,
            ids,
            Raise {
                input,
                kind,
                fold_key,
                person_id,
                source_seq: input.seq,
                raised_at: input.occurred_at,
                received_at: input.received_at,
            },
        )
        .await?;
        return Ok(change.into_iter().collect());
    }
    if let Some(kind) = AlarmKind::cleared_by(input.kind) {
        let key = device_fold(input.device_id);
        return step(
            c,
            rules,
            &Step {
                organisation_id: input.organisation_id,
                category: Category::Technical,
                target: Target::Fold {
                    key: &key,
                    kind: Some(kind),
                },
                from: &[State::Raised, State::Acknowledged],
                to: State::Cleared,
                at: input.occurred_at,
                user_id: None,
                outcome: None,
                fall: None,
                cause,
            },
        )
        .await;
    }
    let (kind, from, to, outcome): (Option<AlarmKind>, &[State], State, Option<Outcome>) =
        match input.kind {
            // The wearer cancelled a fall already sent, or reset the alarm at the hub before
            // anyone answered: resolved as false or accidental.
            EventKind::FallCancelled => (
                Some(AlarmKind::FallDetected),
                &[State::Raised],
                State::Resolved,
                Some(Outcome::FalseOrAccidental),
            ),
            EventKind::AlarmReset => (
                None,
                &[State::Raised],
                State::Resolved,
                Some(Outcome::FalseOrAccidental),
            ),
            // SCAIP 0088, presence after alarm: a responder is on site for every open alarm.
            EventKind::ResponderPresent => (
                None,
                &[State::Raised, State::Acknowledged, State::Dispatched],
                State::OnSite,
                None,
            ),
            _ => return Ok(Vec::new()),
        };
    let (key, _) = care_fold(c, known, input).await?;
    step(
        c,
        rules,
        &Step {
            organisation_id: input.organisation_id,
            category: Category::Care,
            target: Target::Fold { key: &key, kind },
            from,
            to,
            at: input.occurred_at,
            user_id: None,
            outcome,
            fall: None,
            cause,
        },
    )
    .await
}

#[derive(Debug, Clone, Copy)]
struct Beat {
    at: DateTime<Utc>,
    seq: i64,
    interval_s: i64,
}

/// What derivation knows of the devices whose heartbeats a pass handles: their latest
/// heartbeat (`device_health`, locked for the pass) and their open technical alarms a heartbeat
/// may clear. Loaded once per pass, kept up to date in memory as the pass goes, and written
/// back once at its end, so each device's `device_health` row changes once per pass rather
/// than once per run of heartbeats (under load that update, repeated inside one long
/// transaction, left dead row versions nothing could prune).
#[derive(Debug, Default)]
pub struct Heartbeats {
    prev: HashMap<i32, Beat>,
    /// Open technical alarms a heartbeat may clear: (device, kind) -> (id, raised_at).
    open: HashMap<(i32, AlarmKind), (i64, DateTime<Utc>)>,
    /// The newest heartbeat derived per device.
    latest: HashMap<i32, Latest>,
}

/// A device's newest heartbeat, as `device_health` keeps it.
#[derive(Debug, Clone, Copy)]
struct Latest {
    organisation_id: i32,
    received_at: DateTime<Utc>,
    seq: i64,
    battery: Option<i16>,
    signal: Option<i16>,
}

impl Heartbeats {
    /// Locks and reads the state of the devices sending the heartbeats among `inputs`.
    pub async fn load(c: &impl GenericClient, inputs: &[Input]) -> Result<Self, AlarmError> {
        let mut devices: Vec<i32> = inputs
            .iter()
            .filter(|i| i.kind == EventKind::Heartbeat)
            .map(|i| i.device_id)
            .collect::<HashSet<i32>>()
            .into_iter()
            .collect();
        let mut state = Self::default();
        if devices.is_empty() {
            return Ok(state);
        }
        // Locked in device order, as written at the end: two instances never wait on each
        // other in a circle.
        devices.sort_unstable();
        for row in cached::query(
            c,
            "SELECT device_id, last_heartbeat_at, last_seq, interval_s FROM device_health \
                  WHERE device_id = ANY($1) ORDER BY device_id FOR UPDATE",
            &[&devices],
        )
        .await?
        {
            let interval: i32 = row.get(3);
            state.prev.insert(
                row.get(0),
                Beat {
                    at: row.get(1),
                    seq: row.get(2),
                    interval_s: i64::from(interval),
                },
            );
        }
        for row in cached::query(
            c,
            "SELECT last_device_id, kind, id, raised_at FROM alarms \
                  WHERE last_device_id = ANY($1) AND category = 'technical' \
                    AND kind IN ('heartbeat_missing', 'battery_low') \
                    AND state IN ('raised', 'acknowledged', 'dispatched', 'on_site')",
            &[&devices],
        )
        .await?
        {
            let kind: String = row.get(1);
            if let Some(kind) = AlarmKind::parse(&kind) {
                state
                    .open
                    .insert((row.get(0), kind), (row.get(2), row.get(3)));
            }
        }
        Ok(state)
    }

    /// Takes note of what another event of `device_id` did in this pass: a `battery_low` it
    /// raised is one a later heartbeat may clear.
    pub fn note(&mut self, device_id: i32, changes: &[Change]) {
        for change in changes {
            let kind = change.view.kind;
            if !matches!(kind, AlarmKind::HeartbeatMissing | AlarmKind::BatteryLow) {
                continue;
            }
            if change.view.state.is_open() {
                self.open
                    .insert((device_id, kind), (change.view.id, change.view.raised_at));
            } else if self
                .open
                .get(&(device_id, kind))
                .is_some_and(|(id, _)| *id == change.view.id)
            {
                self.open.remove(&(device_id, kind));
            }
        }
    }

    /// Derives one heartbeat of a device [`load`](Self::load) saw: raises `heartbeat_missing`
    /// for a silence longer than allowed that the sweep has not caught yet, clears
    /// `heartbeat_missing`, and clears `battery_low` when the battery is above the threshold.
    pub async fn apply(
        &mut self,
        c: &impl GenericClient,
        rules: &Rules,
        ids: &IdMap,
        hb: &Input,
    ) -> Result<Vec<Change>, AlarmError> {
        let mut changes = Vec::new();
        let interval_s = hb
            .interval_s
            .filter(|s| *s > 0)
            .unwrap_or(rules.default_interval_s);
        let newer = self
            .prev
            .get(&hb.device_id)
            .is_none_or(|p| hb.received_at > p.at);
        if !newer {
            // Seen before (catch-up, retry) or older than what is known: nothing to derive.
            // `device_health` is written in the same transaction as any alarm a heartbeat
            // raises or clears, so a heartbeat already derived is never newer than it: no need
            // to look each one up in `alarm_events` (that lookup was most of the cost under
            // load).
            return Ok(changes);
        }
        let cause = Cause::Event {
            device_id: hb.device_id,
            seq: hb.seq,
        };
        if let Some(p) = self.prev.get(&hb.device_id).copied() {
            let due = rules.heartbeat_due(p.at, p.interval_s);
            if hb.received_at > due
                && !self
                    .open
                    .contains_key(&(hb.device_id, AlarmKind::HeartbeatMissing))
            {
                let raised = raise(
                    c,
                    ids,
                    Raise {
                        input: hb,
                        kind: AlarmKind::HeartbeatMissing,
                        fold_key: device_fold(hb.device_id),
                        person_id: None,
                        source_seq: p.seq,
                        raised_at: due,
                        received_at: due,
                    },
                )
                .await?;
                if let Some(change) = raised {
                    self.open.insert(
                        (hb.device_id, AlarmKind::HeartbeatMissing),
                        (change.view.id, due),
                    );
                    changes.push(change);
                }
            }
        }
        // Any heartbeat newer than the one a silence stands on ends it (an injected clock
        // can put the silence after the heartbeat; the clearing time never precedes it).
        if let Some((id, raised_at)) = self
            .open
            .remove(&(hb.device_id, AlarmKind::HeartbeatMissing))
        {
            let at = hb.received_at.max(raised_at);
            changes.extend(clear(c, rules, hb, id, at, cause).await?);
        }
        if hb.battery.is_some_and(|b| b > rules.battery_ok_above) {
            if let Some((id, raised_at)) = self
                .open
                .get(&(hb.device_id, AlarmKind::BatteryLow))
                .copied()
            {
                if hb.occurred_at >= raised_at {
                    changes.extend(clear(c, rules, hb, id, hb.occurred_at, cause).await?);
                    self.open.remove(&(hb.device_id, AlarmKind::BatteryLow));
                }
            }
        }
        self.prev.insert(
            hb.device_id,
            Beat {
                at: hb.received_at,
                seq: hb.seq,
                interval_s,
            },
        );
        self.latest.insert(
            hb.device_id,
            Latest {
                organisation_id: hb.organisation_id,
                received_at: hb.received_at,
                seq: hb.seq,
                battery: hb.battery,
                signal: hb.signal,
            },
        );
        Ok(changes)
    }

    /// Writes each device's newest heartbeat to `device_health`, one statement for the pass.
    pub async fn store(self, c: &impl GenericClient, rules: &Rules) -> Result<(), AlarmError> {
        if self.latest.is_empty() {
            return Ok(());
        }
        let n = self.latest.len();
        let (mut dev, mut org, mut at, mut seq) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut interval, mut battery, mut signal) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut latest: Vec<_> = self.latest.into_iter().collect();
        latest.sort_unstable_by_key(|(device_id, _)| *device_id);
        for (device_id, l) in latest {
            let interval_s = self
                .prev
                .get(&device_id)
                .map_or(rules.default_interval_s, |p| p.interval_s);
            dev.push(device_id);
            org.push(l.organisation_id);
            at.push(l.received_at);
            seq.push(l.seq);
            interval.push(i32::try_from(interval_s).unwrap_or(i32::MAX));
            battery.push(l.battery);
            signal.push(l.signal);
        }
        cached::execute(
            c,
            "INSERT INTO device_health (device_id, organisation_id, last_heartbeat_at, last_seq, \
                                        interval_s, battery, signal) \
             SELECT * FROM unnest($1::int4[], $2::int4[], $3::timestamptz[], $4::int8[], \
                                  $5::int4[], $6::int2[], $7::int2[]) \
             ON CONFLICT (device_id) DO UPDATE SET \
               last_heartbeat_at = excluded.last_heartbeat_at, last_seq = excluded.last_seq, \
               interval_s = excluded.interval_s, battery = excluded.battery, signal = excluded.signal \
             WHERE device_health.last_heartbeat_at < excluded.last_heartbeat_at",
            &[&dev, &org, &at, &seq, &interval, &battery, &signal],
        )
        .await?;
        Ok(())
    }
}

/// Applies a run of heartbeats (no other event between them) in one go: [`Heartbeats`] for
/// just these.
pub async fn apply_heartbeats(
    c: &impl GenericClient,
    rules: &Rules,
    ids: &IdMap,
    run: &[Input],
) -> Result<Vec<Change>, AlarmError> {
    let mut state = Heartbeats::load(c, run).await?;
    let mut changes = Vec::new();
    for hb in run.iter().filter(|i| i.kind == EventKind::Heartbeat) {
        changes.extend(state.apply(c, rules, ids, hb).await?);
    }
    state.store(c, rules).await?;
    Ok(changes)
}

async fn clear(
    c: &impl GenericClient,
    rules: &Rules,
    input: &Input,
    id: i64,
    at: DateTime<Utc>,
    cause: Cause,
) -> Result<Vec<Change>, AlarmError> {
    let mut changes = step(
        c,
        rules,
        &Step {
            organisation_id: input.organisation_id,
            category: Category::Technical,
            target: Target::Id(id),
            from: &[State::Raised, State::Acknowledged],
            to: State::Cleared,
            at,
            user_id: None,
            outcome: None,
            fall: None,
            cause,
        },
    )
    .await?;
    for change in &mut changes {
        change.view.seq = input.seq;
        change.view.device_uid = input.device_uid.to_string();
    }
    Ok(changes)
}

/// Raises `heartbeat_missing` for every enabled device silent beyond its allowance at `now`.
/// Run periodically (any instance: the insert is idempotent) and at the end of a rebuild.
pub async fn sweep(
    c: &impl GenericClient,
    rules: &Rules,
    ids: &IdMap,
    now: DateTime<Utc>,
) -> Result<Vec<Change>, AlarmError> {
    let rows = cached::query(
        c,
        "SELECT h.device_id, h.organisation_id, d.uid, h.last_heartbeat_at, h.last_seq, \
                    h.interval_s \
               FROM device_health h JOIN devices d ON d.id = h.device_id \
              WHERE d.disabled_at IS NULL \
                AND h.last_heartbeat_at + make_interval(secs => h.interval_s * $1::float8) <= $2 \
                AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.source_device_id = h.device_id \
                                   AND a.source_seq = h.last_seq AND a.kind = 'heartbeat_missing') \
              ORDER BY h.device_id",
        &[&rules.missing_factor, &now],
    )
    .await?;
    let mut changes = Vec::new();
    for row in rows {
        let last: DateTime<Utc> = row.get(3);
        let interval: i32 = row.get(5);
        let due = rules.heartbeat_due(last, i64::from(interval));
        if due >= now {
            continue;
        }
        let uid: String = row.get(2);
        let input = Input {
            device_id: row.get(0),
            organisation_id: row.get(1),
            device_uid: uid.into(),
            seq: row.get(4),
            occurred_at: due,
            received_at: due,
            kind: EventKind::Heartbeat,
            battery: None,
            signal: None,
            interval_s: None,
        };
        let raised = raise(
            c,
            ids,
            Raise {
                input: &input,
                kind: AlarmKind::HeartbeatMissing,
                fold_key: device_fold(input.device_id),
                person_id: None,
                source_seq: input.seq,
                raised_at: due,
                received_at: due,
            },
        )
        .await?;
        changes.extend(raised);
    }
    Ok(changes)
}

/// A staff action as stored in `alarm_actions`.
#[derive(Debug, Clone)]
pub struct ActionRow {
    pub id: i64,
    pub organisation_id: i32,
    pub alarm_id: i64,
    pub action: super::model::Action,
    pub user_id: i32,
    pub at: DateTime<Utc>,
    pub outcome: Option<Outcome>,
    pub fall: Option<bool>,
}

/// Applies a recorded staff action. Empty when the alarm is not (or no longer) in a state the
/// action may start from; the API checks that first, under the same row lock.
pub async fn apply_action(
    c: &impl GenericClient,
    rules: &Rules,
    a: &ActionRow,
) -> Result<Vec<Change>, AlarmError> {
    let row = cached::query_opt(
        c,
        "SELECT category FROM alarms WHERE id = $1 AND organisation_id = $2",
        &[&a.alarm_id, &a.organisation_id],
    )
    .await?;
    let Some(row) = row else {
        return Ok(Vec::new());
    };
    let text: String = row.get(0);
    let Some(category) = Category::parse(&text) else {
        return Ok(Vec::new());
    };
    let Some((to, from)) = a.action.step(category) else {
        return Ok(Vec::new());
    };
    step(
        c,
        rules,
        &Step {
            organisation_id: a.organisation_id,
            category,
            target: Target::Id(a.alarm_id),
            from,
            to,
            at: a.at,
            user_id: Some(a.user_id),
            outcome: a.outcome,
            fall: a.fall,
            cause: Cause::Action(a.id),
        },
    )
    .await
}

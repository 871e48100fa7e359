//! Deriving alarms from events and staff actions: the one place that changes `alarms`,
//! `alarm_events` and `device_health`. The live feed, start-up catch-up and
//! [`rebuild`](mod@crate::alarms::rebuild) all go through these functions, so they give the same
//! rows.
//!
//! Concurrency (several instances): an alarm is opened with `INSERT ... ON CONFLICT` on the
//! partial unique index of open alarms, so a repeat folds instead of opening a second one; every
//! transition is an `UPDATE` of rows first locked with `SELECT ... FOR UPDATE` and filtered on
//! their current state, so a transition made concurrently by someone else is never overwritten.
//! Each transition appends a row to `alarm_events` naming its cause: an event (device, seq),
//! which makes event processing idempotent, or a staff action.
//!
//! - `events`: the events derivation reads ([`Input`]), live or stored.
//! - This module: what an event does to alarms ([`derive_event`], [`apply_event`]), as
//!   transitions ([`step`]) and raises ([`raise_many`]).
//! - `heartbeats`: device health ([`Heartbeats`], [`sweep`]): missing heartbeats, and the
//!   technical alarms a heartbeat clears.
//! - `actions`: staff actions as transitions ([`apply_action`]).
//! - `sql`: the statements that make the changes.

mod actions;
mod events;
mod heartbeats;
mod sql;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use homeward_proto::EventKind;

use super::model::{is_night, AlarmKind, AlarmView, Category, Outcome, State, Transition};
use super::{AlarmError, AlarmSettings};
use crate::db::cached;
use sql::{raise_many_sql, raise_sql, FOLD_SQL, ONCE_SQL};

pub use actions::{apply_action, ActionRow};
pub use events::{events_portal, next_events, relevant_codes, Input, RELEVANT_KINDS};
pub use heartbeats::{apply_heartbeats, sweep, Heartbeats};
pub use sql::{prepare_event_statements, step_many_sql, EVENTS_QUERY};

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

/// Applies one transition to the alarms it targets (none if none is in a `from` state).
pub async fn step(
    c: &impl GenericClient,
    rules: &Rules,
    s: &Step<'_>,
) -> Result<Vec<Change>, AlarmError> {
    debug_assert!(
        matches!(s.target, Target::Id(_)) || s.from.iter().all(|st| st.is_open()),
        "fold steps start from open states"
    );
    Ok(step_many(c, rules, std::slice::from_ref(s))
        .await?
        .pop()
        .unwrap_or_default())
}

/// Applies several transitions in one statement, each as [`step`] would. No two may target the
/// same alarm (steps of one round of a pass have different fold keys). Returns each step's
/// changes, in the order given.
pub async fn step_many(
    c: &impl GenericClient,
    rules: &Rules,
    steps: &[Step<'_>],
) -> Result<Vec<Vec<Change>>, AlarmError> {
    let n = steps.len();
    let mut org = Vec::with_capacity(n);
    let mut category = Vec::with_capacity(n);
    let mut from = Vec::with_capacity(n);
    let mut id = Vec::with_capacity(n);
    let mut fold = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut to = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    let mut user = Vec::with_capacity(n);
    let mut outcome = Vec::with_capacity(n);
    let mut fall = Vec::with_capacity(n);
    let mut transition = Vec::with_capacity(n);
    let mut device = Vec::with_capacity(n);
    let mut seq = Vec::with_capacity(n);
    let mut action = Vec::with_capacity(n);
    for s in steps {
        org.push(s.organisation_id);
        category.push(s.category.as_str());
        from.push(
            s.from
                .iter()
                .map(|st| st.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        match s.target {
            Target::Id(target) => {
                id.push(Some(target));
                fold.push(None);
                kind.push(None);
            }
            Target::Fold { key, kind: k } => {
                id.push(None);
                fold.push(Some(key));
                kind.push(k.map(|k| k.as_str()));
            }
        }
        to.push(s.to.as_str());
        at.push(s.at);
        user.push(s.user_id);
        outcome.push(s.outcome.map(|o| o.as_str()));
        fall.push(s.fall);
        transition.push(s.to.transition().as_str());
        let (d, q, a) = s.cause.columns();
        device.push(d);
        seq.push(q);
        action.push(a);
    }
    let rows = cached::query(
        c,
        &step_many_sql(),
        &[
            &org,
            &category,
            &from,
            &id,
            &fold,
            &kind,
            &to,
            &at,
            &user,
            &outcome,
            &fall,
            &transition,
            &device,
            &seq,
            &action,
            &rules.long_lie_secs,
        ],
    )
    .await?;
    let mut out: Vec<Vec<Change>> = vec![Vec::new(); n];
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        let step: i64 = row.get("step");
        let view = AlarmView::from_row(row)?;
        found.push((step, view));
    }
    // In id order within a step, as [`step`] locks and returns them.
    found.sort_by_key(|(step, view)| (*step, view.id));
    for (step, view) in found {
        let Some(i) = usize::try_from(step - 1).ok().filter(|i| *i < n) else {
            continue;
        };
        out[i].push(Change {
            view,
            transition: steps[i].to.transition(),
        });
    }
    Ok(out)
}

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

/// [`apply_event`] without the check that the event was already derived. At most one
/// statement when [`Known::load`] saw the event.
pub async fn derive_event(
    c: &impl GenericClient,
    rules: &Rules,
    ids: &IdMap,
    known: &Known,
    input: &Input,
) -> Result<Vec<Change>, AlarmError> {
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
    let Some(t) = EventStep::of(input) else {
        return Ok(Vec::new());
    };
    let key = match t.category {
        Category::Technical => device_fold(input.device_id),
        Category::Care => care_fold(c, known, input).await?.0,
    };
    step(c, rules, &t.step(input, &key)).await
}

/// The transition an event other than a raise makes to the open alarms of its fold (the
/// device's technical ones, or the person's care ones), before the fold key is known.
#[derive(Debug, Clone, Copy)]
pub struct EventStep {
    category: Category,
    kind: Option<AlarmKind>,
    from: &'static [State],
    to: State,
    outcome: Option<Outcome>,
}

impl EventStep {
    pub fn of(input: &Input) -> Option<Self> {
        if AlarmKind::raised_by(input.kind).is_some() {
            return None;
        }
        if let Some(kind) = AlarmKind::cleared_by(input.kind) {
            return Some(Self {
                category: Category::Technical,
                kind: Some(kind),
                from: &[State::Raised, State::Acknowledged],
                to: State::Cleared,
                outcome: None,
            });
        }
        let (kind, from, to, outcome): (Option<AlarmKind>, &'static [State], State, _) =
            match input.kind {
                // The wearer cancelled a fall already sent, or reset the alarm at the hub
                // before anyone answered: resolved as false or accidental.
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
                // SCAIP 0088, presence after alarm: a responder is on site for every open
                // alarm.
                EventKind::ResponderPresent => (
                    None,
                    &[State::Raised, State::Acknowledged, State::Dispatched],
                    State::OnSite,
                    None,
                ),
                _ => return None,
            };
        Some(Self {
            category: Category::Care,
            kind,
            from,
            to,
            outcome,
        })
    }

    /// The step on the alarms of fold `key`.
    pub fn step<'a>(&self, input: &Input, key: &'a str) -> Step<'a> {
        Step {
            organisation_id: input.organisation_id,
            category: self.category,
            target: Target::Fold {
                key,
                kind: self.kind,
            },
            from: self.from,
            to: self.to,
            at: input.occurred_at,
            user_id: None,
            outcome: self.outcome,
            fall: None,
            cause: Cause::Event {
                device_id: input.device_id,
                seq: input.seq,
            },
        }
    }
}

/// An event's step with its fold key, when [`Known`] has all it needs: the input for
/// [`step_many`].
pub fn planned_step(rules: &Rules, known: &Known, input: &Input) -> Option<(EventStep, String)> {
    let t = EventStep::of(input)?;
    Some((t, order_key(rules, known, input)?))
}

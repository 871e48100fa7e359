//! Device health: each device's latest heartbeat (`device_health`), the `heartbeat_missing`
//! alarm a silence raises (by a late heartbeat or by the periodic [`sweep`]) and the
//! technical alarms a heartbeat clears (`heartbeat_missing`, and `battery_low` once the
//! battery is back above the threshold).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use homeward_proto::EventKind;

use super::{
    device_fold, raise, step_many, Cause, Change, IdMap, Input, Raise, Rules, Step, Target,
};
use crate::alarms::model::{AlarmKind, AlarmView, Category, State, Transition, VIEW_COLUMNS};
use crate::alarms::AlarmError;
use crate::db::cached;

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
    /// Clears decided and not yet written: [`flush`](Self::flush) writes them in one
    /// statement.
    pending: Vec<Clear>,
}

/// A technical alarm a heartbeat clears.
#[derive(Debug)]
struct Clear {
    id: i64,
    at: DateTime<Utc>,
    organisation_id: i32,
    device_id: i32,
    seq: i64,
    device_uid: std::sync::Arc<str>,
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
        if let Some(p) = self.prev.get(&hb.device_id).copied() {
            let due = rules.heartbeat_due(p.at, p.interval_s);
            if hb.received_at > due
                && !self
                    .open
                    .contains_key(&(hb.device_id, AlarmKind::HeartbeatMissing))
            {
                // A clear not yet written would leave the earlier silence open in the table,
                // and this one would fold into it.
                changes.extend(self.flush(c, rules).await?);
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
            self.clear(hb, id, at);
        }
        if hb.battery.is_some_and(|b| b > rules.battery_ok_above) {
            if let Some((id, raised_at)) = self
                .open
                .get(&(hb.device_id, AlarmKind::BatteryLow))
                .copied()
            {
                if hb.occurred_at >= raised_at {
                    self.clear(hb, id, hb.occurred_at);
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

    fn clear(&mut self, hb: &Input, id: i64, at: DateTime<Utc>) {
        self.pending.push(Clear {
            id,
            at,
            organisation_id: hb.organisation_id,
            device_id: hb.device_id,
            seq: hb.seq,
            device_uid: hb.device_uid.clone(),
        });
    }

    /// Writes the clears the heartbeats applied since the last flush decided, in one statement,
    /// and returns their changes. Call it before anything else may touch those alarms (the
    /// pass does at the end of each run of heartbeats, and [`apply_heartbeats`] before it
    /// stores). [`store`](Self::store) does not flush: call this first.
    pub async fn flush(
        &mut self,
        c: &impl GenericClient,
        rules: &Rules,
    ) -> Result<Vec<Change>, AlarmError> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let pending = std::mem::take(&mut self.pending);
        let steps: Vec<Step<'_>> = pending
            .iter()
            .map(|p| Step {
                organisation_id: p.organisation_id,
                category: Category::Technical,
                target: Target::Id(p.id),
                from: &[State::Raised, State::Acknowledged],
                to: State::Cleared,
                at: p.at,
                user_id: None,
                outcome: None,
                fall: None,
                cause: Cause::Event {
                    device_id: p.device_id,
                    seq: p.seq,
                },
            })
            .collect();
        let mut changes = Vec::new();
        for (p, mut done) in pending.iter().zip(step_many(c, rules, &steps).await?) {
            for change in &mut done {
                change.view.seq = p.seq;
                change.view.device_uid = p.device_uid.to_string();
            }
            changes.extend(done);
        }
        Ok(changes)
    }

    /// Writes each device's newest heartbeat to `device_health`, one statement for the pass.
    /// Clears still pending must have been [flushed](Self::flush).
    pub async fn store(self, c: &impl GenericClient, rules: &Rules) -> Result<(), AlarmError> {
        debug_assert!(self.pending.is_empty(), "clears flushed before the store");
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
    changes.extend(state.flush(c, rules).await?);
    state.store(c, rules).await?;
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
    changes.extend(escalate_long_lies(c, rules, now).await?);
    Ok(changes)
}

/// Falls with no one on site `long_lie_secs` after they were raised, still open at `now`,
/// become long lies now (the live stream says so at that moment, with the transition
/// `long_lie`), rather than only when someone finally arrives. The step that records arrival
/// or resolution keeps the flag, and reaches the same answer from the times alone, so a
/// rebuild agrees with what was escalated live.
async fn escalate_long_lies(
    c: &impl GenericClient,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<Vec<Change>, AlarmError> {
    let rows = cached::query(
        c,
        &format!(
            "UPDATE alarms a SET long_lie = true \
              WHERE a.is_fall AND NOT a.long_lie AND a.on_site_at IS NULL \
                AND a.state IN ('raised', 'acknowledged', 'dispatched') \
                AND a.raised_at <= $1::timestamptz - make_interval(secs => $2::float8) \
             RETURNING {VIEW_COLUMNS}"
        ),
        &[&now, &rules.long_lie_secs],
    )
    .await?;
    let mut changes = Vec::with_capacity(rows.len());
    for row in &rows {
        changes.push(Change {
            view: AlarmView::from_row(row)?,
            transition: Transition::LongLie,
        });
    }
    Ok(changes)
}

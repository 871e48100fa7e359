//! Visits assembled from raw check events: pairing, matching to the schedule, verification and
//! the office's adjustments folded in.
//!
//! The unit of work is one device (a worker's phone, or a home's hub that reads a tag): its
//! visits are recomputed from all its check events, the reference data and the adjustments,
//! then upserted by their key and the stale ones deleted, under a per-device advisory lock.
//! That one path serves live derivation, the catch-up at start-up and [`rebuild`], so they
//! cannot disagree, and running it twice changes nothing.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use homeward_proto::{CheckMethod, EventBody, EventKind, VisitCheck};
use serde::{Deserialize, Serialize};

use super::geofence::{self, Fence, Fix, GeofencePolicy, Reason, Verdict};
use super::{AdjustmentKind, EvvError, EvvSettings};

/// First key of the advisory locks taken by this module ("EVV" in ASCII).
pub(crate) const LOCK_CLASS: i32 = 0x0045_5656;
/// Second key of the lock taken by the missed-visit check (devices use their id, always > 0).
pub(crate) const LOCK_MISSED: i32 = 0;

/// The condition on `column` (`events.kind`) that picks the check events. Their codes are
/// written into the statement's text, never passed as parameters: the partial indexes on check
/// events (`WHERE kind IN (22, 23)`) serve only a statement whose text implies their condition.
fn is_check(column: &str) -> String {
    format!(
        "{column} IN ({}, {})",
        EventKind::CheckIn.code(),
        EventKind::CheckOut.code()
    )
}

#[derive(Debug, Clone)]
struct CheckEvent {
    seq: i64,
    at: DateTime<Utc>,
    check: VisitCheck,
}

/// A fix's accuracy as a double, as the stored decimal reads: the device sends a float32,
/// written as its shortest decimal (`12.3`), and the figures are worked out from that decimal,
/// not from the float32's binary value (12.300000190734863).
fn accuracy_m(check: &VisitCheck) -> Option<f64> {
    let a = check.fix()?.accuracy_m()?;
    Some(a.to_string().parse().unwrap_or(f64::from(a)))
}

/// A check as a visit shows it: what the phone sent (one fix, no track) and the verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckRecord {
    pub seq: Option<i64>,
    pub at: Option<DateTime<Utc>>,
    pub method: String,
    pub verdict: Verdict,
    pub reason: Reason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowance_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radius_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_age_s: Option<u32>,
    #[serde(default)]
    pub stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manual_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
}

/// A person as verification needs them.
#[derive(Debug, Clone)]
struct Home {
    lat: Option<f64>,
    lon: Option<f64>,
    radius_m: Option<f64>,
    tag: Option<String>,
    phone: Option<String>,
    policy: GeofencePolicy,
}

#[derive(Debug, Clone)]
struct Scheduled {
    id: i64,
    person_id: i32,
    worker_id: Option<i32>,
    window_start: DateTime<Utc>,
}

/// One row of `visits`, as derived.
#[derive(Debug, Clone)]
struct VisitRow {
    organisation_id: i32,
    visit_key: String,
    device_id: Option<i32>,
    worker_id: Option<i32>,
    person_id: Option<i32>,
    scheduled_visit_id: Option<i64>,
    match_method: &'static str,
    check_in: Option<CheckRecord>,
    check_out: Option<CheckRecord>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    superseded: bool,
    adjusted_start: Option<DateTime<Utc>>,
    adjusted_end: Option<DateTime<Utc>>,
    adjustments: i32,
    resolution_code: Option<String>,
}

/// The key of a visit that began with raw event (device, seq).
pub fn event_key(device_id: i32, seq: i64) -> String {
    format!("e:{device_id}:{seq}")
}

/// The key of a visit recorded by the office (manual entry `adjustment_id`).
pub fn manual_key(adjustment_id: i64) -> String {
    format!("m:{adjustment_id}")
}

/// Recomputes the visits of each device, one transaction per device.
pub async fn derive_devices(
    client: &mut deadpool_postgres::Client,
    settings: &EvvSettings,
    devices: &[i32],
) -> Result<(), EvvError> {
    for &device in devices {
        let tx = client.transaction().await?;
        derive_device(&tx, settings, device).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Recomputes one device's visits inside the caller's transaction.
pub async fn derive_device(
    tx: &impl GenericClient,
    settings: &EvvSettings,
    device_id: i32,
) -> Result<(), EvvError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &device_id],
    )
    .await?;
    let Some(device) = tx
        .query_opt(
            "SELECT organisation_id, worker_id, person_id FROM devices WHERE id = $1",
            &[&device_id],
        )
        .await?
    else {
        return Ok(());
    };
    let org: i32 = device.get(0);
    let device_worker: Option<i32> = device.get(1);
    let device_person: Option<i32> = device.get(2);
    let rows = tx
        .query(
            &format!(
                "SELECT seq, occurred_at, kind, data::text FROM events
                  WHERE device_id = $1 AND {}
                  ORDER BY occurred_at, seq",
                is_check("kind")
            ),
            &[&device_id],
        )
        .await?;
    // Pair check-ins with check-outs in device time.
    let mut pairs: Vec<(Option<CheckEvent>, Option<CheckEvent>, bool)> = Vec::new();
    let mut open: Option<CheckEvent> = None;
    for row in &rows {
        let seq: i64 = row.get(0);
        let code: i16 = row.get(2);
        // The statement picks check events only.
        let Some(kind) = u8::try_from(code).ok().and_then(EventKind::from_code) else {
            continue;
        };
        // A kind without fields is stored as NULL rather than `{}`.
        let data: Option<&str> = row.get(3);
        let body = match homeward_proto::decode_fields_json(kind, data.unwrap_or("{}").as_bytes()) {
            Ok(body) => body,
            Err(e) => {
                // Stored events passed validation at intake; this would be a bug, not input.
                tracing::warn!(device_id, seq, error = %e, "a stored check event does not decode");
                continue;
            }
        };
        let (check_in, check) = match body {
            EventBody::CheckIn(check) => (true, check),
            EventBody::CheckOut(check) => (false, check),
            _ => continue,
        };
        let event = CheckEvent {
            seq,
            at: row.get(1),
            check,
        };
        if check_in {
            if let Some(prev) = open.take() {
                pairs.push((Some(prev), None, true));
            }
            open = Some(event);
        } else {
            match open.take() {
                Some(start) if compatible(&start.check, &event.check) => {
                    pairs.push((Some(start), Some(event), false));
                }
                Some(start) => {
                    pairs.push((Some(start), None, true));
                    pairs.push((None, Some(event), false));
                }
                None => pairs.push((None, Some(event), false)),
            }
        }
    }
    if let Some(start) = open.take() {
        pairs.push((Some(start), None, false));
    }

    let mut derived = Vec::with_capacity(pairs.len());
    for (start, end, superseded) in pairs {
        let first = start.as_ref().or(end.as_ref());
        let Some(first) = first else { continue };
        let key = event_key(device_id, first.seq);
        let (person, scheduled, method) =
            resolve(tx, settings, org, device_worker, device_person, first).await?;
        let home = match person {
            Some(p) => load_home(tx, settings, org, p).await?,
            None => None,
        };
        let worker = device_worker.or(scheduled.as_ref().and_then(|s| s.worker_id));
        let check_in = start.as_ref().map(|e| verify(settings, home.as_ref(), e));
        let check_out = end.as_ref().map(|e| verify(settings, home.as_ref(), e));
        derived.push(VisitRow {
            organisation_id: org,
            visit_key: key,
            device_id: Some(device_id),
            worker_id: worker,
            person_id: person,
            scheduled_visit_id: scheduled.map(|s| s.id),
            match_method: method,
            check_in,
            check_out,
            started_at: start.as_ref().map(|e| e.at),
            ended_at: end.as_ref().map(|e| e.at),
            superseded,
            adjusted_start: None,
            adjusted_end: None,
            adjustments: 0,
            resolution_code: None,
        });
    }
    apply_adjustments(tx, org, &mut derived).await?;
    let keys: Vec<String> = derived.iter().map(|v| v.visit_key.clone()).collect();
    for row in &derived {
        upsert(tx, row).await?;
    }
    tx.execute(
        "DELETE FROM visits WHERE device_id = $1 AND visit_key <> ALL($2)",
        &[&device_id, &keys],
    )
    .await?;
    Ok(())
}

/// A check-out closes the open check-in unless both name different scheduled visits.
fn compatible(start: &VisitCheck, end: &VisitCheck) -> bool {
    match (start.visit(), end.visit()) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Who was visited and which scheduled visit this was: from the visit reference, else the
/// person reference, the home's tag or landline, the device's person, else the worker's
/// schedule around that time (nearest home to the fix).
async fn resolve(
    tx: &impl GenericClient,
    settings: &EvvSettings,
    org: i32,
    worker: Option<i32>,
    device_person: Option<i32>,
    event: &CheckEvent,
) -> Result<(Option<i32>, Option<Scheduled>, &'static str), EvvError> {
    let d = &event.check;
    if let Some(reference) = d.visit() {
        let row = tx
            .query_opt(
                "SELECT id, person_id, worker_id, window_start FROM scheduled_visits
                  WHERE organisation_id = $1 AND reference = $2",
                &[&org, &reference.as_str()],
            )
            .await?;
        if let Some(r) = row {
            let s = scheduled_from_row(&r);
            return Ok((Some(s.person_id), Some(s), "visit_reference"));
        }
    }
    let mut person = None;
    let mut method = "none";
    if let Some(reference) = d.person() {
        person = tx
            .query_opt(
                "SELECT id FROM people WHERE organisation_id = $1 AND external_ref = $2",
                &[&org, &reference.as_str()],
            )
            .await?
            .map(|r| r.get::<_, i32>(0));
        method = "person_reference";
    }
    if person.is_none() && d.method() == CheckMethod::Tag {
        if let Some(tag) = d.tag() {
            person = tx
                .query_opt(
                    "SELECT id FROM people WHERE organisation_id = $1 AND home_tag = $2",
                    &[&org, &tag.as_str()],
                )
                .await?
                .map(|r| r.get::<_, i32>(0));
            method = "tag";
        }
    }
    if person.is_none() && d.method() == CheckMethod::Phone {
        if let Some(caller) = d.caller_id() {
            person = tx
                .query_opt(
                    "SELECT id FROM people WHERE organisation_id = $1 AND home_phone = $2
                      ORDER BY id LIMIT 1",
                    &[&org, &caller.as_str()],
                )
                .await?
                .map(|r| r.get::<_, i32>(0));
            method = "phone";
        }
    }
    if person.is_none() && device_person.is_some() {
        person = device_person;
        method = "device";
    }
    let tolerance = Duration::minutes(i64::from(settings.match_tolerance_minutes));
    let (from, to) = (event.at - tolerance, event.at + tolerance);
    if let Some(p) = person {
        let rows = tx
            .query(
                "SELECT id, person_id, worker_id, window_start FROM scheduled_visits
                  WHERE organisation_id = $1 AND person_id = $2 AND cancelled_at IS NULL
                    AND window_start <= $4 AND window_end >= $3",
                &[&org, &p, &from, &to],
            )
            .await?;
        let best = rows.iter().map(scheduled_from_row).min_by_key(|s| {
            (
                // Prefer this worker's visit, then the nearest start.
                u8::from(worker.is_some() && s.worker_id != worker),
                (s.window_start - event.at).num_seconds().abs(),
                s.id,
            )
        });
        return Ok((Some(p), best, method));
    }
    let Some(w) = worker else {
        return Ok((None, None, "none"));
    };
    let rows = tx
        .query(
            "SELECT s.id, s.person_id, s.worker_id, s.window_start, p.home_lat, p.home_lon
               FROM scheduled_visits s JOIN people p ON p.id = s.person_id
              WHERE s.organisation_id = $1 AND s.worker_id = $2 AND s.cancelled_at IS NULL
                AND s.window_start <= $4 AND s.window_end >= $3",
            &[&org, &w, &from, &to],
        )
        .await?;
    let fix = d.fix().map(|f| (f.lat(), f.lon()));
    let best = rows
        .iter()
        .map(|r| {
            let s = scheduled_from_row(r);
            let home: Option<(f64, f64)> = r.get::<_, Option<f64>>(4).zip(r.get(5));
            // Rank by distance when both are known (millimetres, to order as integers).
            let distance = match (fix, home) {
                (Some((la, lo)), Some((hla, hlo))) => {
                    (geofence::distance_m(la, lo, hla, hlo) * 1000.0) as i64
                }
                _ => i64::MAX,
            };
            (distance, (s.window_start - event.at).num_seconds().abs(), s)
        })
        .min_by_key(|(d, t, s)| (*d, *t, s.id))
        .map(|(_, _, s)| s);
    match best {
        Some(s) => Ok((Some(s.person_id), Some(s), "worker_schedule")),
        None => Ok((None, None, "none")),
    }
}

fn scheduled_from_row(r: &tokio_postgres::Row) -> Scheduled {
    Scheduled {
        id: r.get(0),
        person_id: r.get(1),
        worker_id: r.get(2),
        window_start: r.get(3),
    }
}

async fn load_home(
    tx: &impl GenericClient,
    settings: &EvvSettings,
    org: i32,
    person: i32,
) -> Result<Option<Home>, EvvError> {
    let row = tx
        .query_opt(
            "SELECT p.id, p.home_lat, p.home_lon, p.geofence_radius_m, p.home_tag, p.home_phone,
                    coalesce(p.geofence_policy, a.geofence_policy)
               FROM people p
               LEFT JOIN evv_area_policies a
                 ON a.organisation_id = p.organisation_id AND a.area = p.area
              WHERE p.organisation_id = $1 AND p.id = $2",
            &[&org, &person],
        )
        .await?;
    Ok(row.map(|r| Home {
        lat: r.get(1),
        lon: r.get(2),
        radius_m: r.get::<_, Option<f32>>(3).map(f64::from),
        tag: r.get(4),
        phone: r.get(5),
        policy: r
            .get::<_, Option<&str>>(6)
            .and_then(GeofencePolicy::parse)
            .unwrap_or(settings.geofence_policy),
    }))
}

/// The verdict on one check, with its reason.
fn verify(settings: &EvvSettings, home: Option<&Home>, event: &CheckEvent) -> CheckRecord {
    let d = &event.check;
    let text = |id: Option<&homeward_proto::Id>| id.map(|id| id.as_str().to_owned());
    let fix = d.fix();
    let mut record = CheckRecord {
        seq: Some(event.seq),
        at: Some(event.at),
        method: d.method().as_str().to_owned(),
        verdict: Verdict::Unverified,
        reason: Reason::PersonUnknown,
        distance_m: None,
        allowance_m: None,
        radius_m: None,
        accuracy_m: accuracy_m(d),
        fix_age_s: fix.and_then(|f| f.fix_age_s()),
        stale: false,
        lat: fix.map(|f| f.lat()),
        lon: fix.map(|f| f.lon()),
        tag: text(d.tag()),
        caller_id: text(d.caller_id()),
        manual_reason: text(d.reason()),
        memo: d.memo().map(|m| m.as_str().to_owned()),
    };
    let Some(home) = home else {
        return record;
    };
    let refuse = match home.policy {
        GeofencePolicy::Reject => Verdict::Rejected,
        GeofencePolicy::Warn => Verdict::Warning,
    };
    match d.method() {
        CheckMethod::Tag => {
            let ok = home.tag.is_some() && home.tag.as_deref() == d.tag().map(|t| t.as_str());
            (record.verdict, record.reason) = if ok {
                (Verdict::Verified, Reason::TagMatched)
            } else {
                (refuse, Reason::TagMismatch)
            };
        }
        CheckMethod::Phone => {
            let ok =
                home.phone.is_some() && home.phone.as_deref() == d.caller_id().map(|c| c.as_str());
            (record.verdict, record.reason) = if ok {
                (Verdict::Verified, Reason::CallerIdMatched)
            } else {
                (refuse, Reason::CallerIdMismatch)
            };
        }
        CheckMethod::Manual => {
            (record.verdict, record.reason) = (Verdict::Unverified, Reason::ManualEntry);
        }
        CheckMethod::Gps => match (record.lat.zip(record.lon), home.lat.zip(home.lon)) {
            (Some((lat, lon)), Some((home_lat, home_lon))) => {
                let fence = Fence {
                    home_lat,
                    home_lon,
                    radius_m: home
                        .radius_m
                        .unwrap_or(f64::from(settings.default_geofence_radius_m)),
                    allowance_cap_m: f64::from(settings.accuracy_allowance_cap_m),
                    max_fix_age_s: settings.max_fix_age_secs,
                    policy: home.policy,
                };
                let c = geofence::check(
                    &fence,
                    &Fix {
                        lat,
                        lon,
                        accuracy_m: record.accuracy_m,
                        fix_age_s: record.fix_age_s,
                    },
                );
                record.verdict = c.verdict;
                record.reason = c.reason;
                // Rounded to centimetres so that the stored figure is stable across platforms.
                record.distance_m = Some((c.distance_m * 100.0).round() / 100.0);
                record.allowance_m = Some(c.allowance_m);
                record.radius_m = Some(fence.radius_m);
                record.stale = c.stale;
            }
            // A GPS check without a home to compare with.
            _ => {
                (record.verdict, record.reason) = (Verdict::Unverified, Reason::NoHomeLocation);
            }
        },
    }
    record
}

/// Folds the office's corrections (oldest first; a later value wins) into the derived rows.
async fn apply_adjustments(
    tx: &impl GenericClient,
    org: i32,
    rows: &mut [VisitRow],
) -> Result<(), EvvError> {
    if rows.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = rows.iter().map(|v| v.visit_key.clone()).collect();
    let adjustments = tx
        .query(
            "SELECT a.visit_key, a.adjusted_start, a.adjusted_end, a.scheduled_visit_id,
                    s.person_id, s.worker_id, a.resolution_code
               FROM visit_adjustments a
               LEFT JOIN scheduled_visits s ON s.id = a.scheduled_visit_id
              WHERE a.organisation_id = $1 AND a.visit_key = ANY($2)
              ORDER BY a.id",
            &[&org, &keys],
        )
        .await?;
    let index: HashMap<String, usize> = keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
    for a in adjustments {
        let key: String = a.get(0);
        let Some(&i) = index.get(&key) else { continue };
        let row = &mut rows[i];
        row.adjustments += 1;
        if let Some(start) = a.get::<_, Option<DateTime<Utc>>>(1) {
            row.adjusted_start = Some(start);
        }
        if let Some(end) = a.get::<_, Option<DateTime<Utc>>>(2) {
            row.adjusted_end = Some(end);
        }
        if let Some(scheduled) = a.get::<_, Option<i64>>(3) {
            // The office matched a queued visit to the schedule.
            row.scheduled_visit_id = Some(scheduled);
            row.person_id = a.get(4);
            row.worker_id = row.worker_id.or(a.get(5));
            row.match_method = "office";
        }
        if let Some(code) = a.get::<_, Option<String>>(6) {
            row.resolution_code = Some(code);
        }
    }
    Ok(())
}

/// Recomputes the visit recorded by a manual entry (and any later corrections of it).
pub async fn derive_manual_entry(
    tx: &impl GenericClient,
    adjustment_id: i64,
) -> Result<(), EvvError> {
    let Some(a) = tx
        .query_opt(
            "SELECT a.organisation_id, a.scheduled_visit_id, a.adjusted_start, a.adjusted_end,
                    a.reason_code, a.memo, s.person_id, s.worker_id, a.resolution_code
               FROM visit_adjustments a JOIN scheduled_visits s ON s.id = a.scheduled_visit_id
              WHERE a.id = $1 AND a.kind = $2",
            &[&adjustment_id, &AdjustmentKind::ManualEntry.as_str()],
        )
        .await?
    else {
        return Ok(());
    };
    let office_check = |at: Option<DateTime<Utc>>| CheckRecord {
        seq: None,
        at,
        method: "manual".into(),
        verdict: Verdict::Unverified,
        reason: Reason::ManualEntry,
        distance_m: None,
        allowance_m: None,
        radius_m: None,
        accuracy_m: None,
        fix_age_s: None,
        stale: false,
        lat: None,
        lon: None,
        tag: None,
        caller_id: None,
        manual_reason: a.get(4),
        memo: a.get(5),
    };
    let mut rows = [VisitRow {
        organisation_id: a.get(0),
        visit_key: manual_key(adjustment_id),
        device_id: None,
        worker_id: a.get(7),
        person_id: a.get(6),
        scheduled_visit_id: a.get(1),
        match_method: "office",
        check_in: Some(office_check(a.get(2))),
        check_out: Some(office_check(a.get(3))),
        started_at: None,
        ended_at: None,
        superseded: false,
        adjusted_start: a.get(2),
        adjusted_end: a.get(3),
        adjustments: 1,
        resolution_code: a.get(8),
    }];
    // Later corrections of the manual visit.
    let org = rows[0].organisation_id;
    let base = rows[0].adjustments;
    apply_adjustments(tx, org, &mut rows).await?;
    rows[0].adjustments = rows[0].adjustments.max(base);
    upsert(tx, &rows[0]).await
}

async fn upsert(tx: &impl GenericClient, v: &VisitRow) -> Result<(), EvvError> {
    let check_in = v.check_in.as_ref().map(serde_json::to_value).transpose()?;
    let check_out = v.check_out.as_ref().map(serde_json::to_value).transpose()?;
    tx.execute(
        "INSERT INTO visits (organisation_id, visit_key, device_id, worker_id, person_id,
                             scheduled_visit_id, match_method, check_in, check_out, started_at,
                             ended_at, superseded, adjusted_start, adjusted_end, adjustments,
                             resolution_code)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (visit_key) DO UPDATE SET
             worker_id = EXCLUDED.worker_id, person_id = EXCLUDED.person_id,
             scheduled_visit_id = EXCLUDED.scheduled_visit_id,
             match_method = EXCLUDED.match_method, check_in = EXCLUDED.check_in,
             check_out = EXCLUDED.check_out, started_at = EXCLUDED.started_at,
             ended_at = EXCLUDED.ended_at, superseded = EXCLUDED.superseded,
             adjusted_start = EXCLUDED.adjusted_start, adjusted_end = EXCLUDED.adjusted_end,
             adjustments = EXCLUDED.adjustments, resolution_code = EXCLUDED.resolution_code",
        &[
            &v.organisation_id,
            &v.visit_key,
            &v.device_id,
            &v.worker_id,
            &v.person_id,
            &v.scheduled_visit_id,
            &v.match_method,
            &check_in,
            &check_out,
            &v.started_at,
            &v.ended_at,
            &v.superseded,
            &v.adjusted_start,
            &v.adjusted_end,
            &v.adjustments,
            &v.resolution_code,
        ],
    )
    .await?;
    Ok(())
}

/// The devices whose check events were stored at or after `since` (all of them when `None`).
pub async fn devices_with_checks_since(
    client: &impl GenericClient,
    since: Option<DateTime<Utc>>,
) -> Result<(Vec<i32>, Option<DateTime<Utc>>), EvvError> {
    let rows = client
        .query(
            &format!(
                "SELECT device_id, max(received_at) FROM events
                  WHERE {} AND ($1::timestamptz IS NULL OR received_at >= $1)
                  GROUP BY device_id ORDER BY device_id",
                is_check("kind")
            ),
            &[&since],
        )
        .await?;
    let newest = rows.iter().map(|r| r.get::<_, DateTime<Utc>>(1)).max();
    Ok((rows.iter().map(|r| r.get(0)).collect(), newest))
}

/// Re-derives the devices that have visits near a scheduled visit's window (the schedule
/// changed, so their matching may change), and those of the worker and person involved.
pub async fn devices_near_window(
    client: &impl GenericClient,
    settings: &EvvSettings,
    org: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<i32>, EvvError> {
    let tolerance = Duration::minutes(i64::from(settings.match_tolerance_minutes));
    let (from, to) = (from - tolerance, to + tolerance);
    let rows = client
        .query(
            &format!(
                "SELECT DISTINCT e.device_id FROM events e JOIN devices d ON d.id = e.device_id
                  WHERE d.organisation_id = $1 AND {}
                    AND e.occurred_at BETWEEN $2 AND $3
                  ORDER BY 1",
                is_check("e.kind")
            ),
            &[&org, &from, &to],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Recomputes every derived visit from the raw events, the reference data and the
/// adjustments, in one transaction, and moves the checkpoint to the newest check event.
pub async fn rebuild(pool: &deadpool_postgres::Pool) -> Result<RebuildReport, EvvError> {
    rebuild_with(pool, &EvvSettings::default()).await
}

/// [`rebuild`] with the configured settings (the geofence figures change verdicts).
pub async fn rebuild_with(
    pool: &deadpool_postgres::Pool,
    settings: &EvvSettings,
) -> Result<RebuildReport, EvvError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("DELETE FROM visits", &[]).await?;
    let (devices, newest) = devices_with_checks_since(&tx, None).await?;
    for &device in &devices {
        derive_device(&tx, settings, device).await?;
    }
    let manual = tx
        .query(
            "SELECT id FROM visit_adjustments WHERE kind = $1 ORDER BY id",
            &[&AdjustmentKind::ManualEntry.as_str()],
        )
        .await?;
    for row in &manual {
        derive_manual_entry(&tx, row.get(0)).await?;
    }
    if let Some(newest) = newest {
        save_checkpoint(&tx, newest).await?;
    }
    let visits: i64 = tx
        .query_one("SELECT count(*) FROM visits", &[])
        .await?
        .get(0);
    tx.commit().await?;
    Ok(RebuildReport {
        devices: devices.len(),
        manual_entries: manual.len(),
        visits: visits as usize,
    })
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct RebuildReport {
    pub devices: usize,
    pub manual_entries: usize,
    pub visits: usize,
}

pub async fn load_checkpoint(
    client: &impl GenericClient,
) -> Result<Option<DateTime<Utc>>, EvvError> {
    Ok(client
        .query_opt("SELECT received_at FROM evv_checkpoint", &[])
        .await?
        .map(|r| r.get(0)))
}

pub async fn save_checkpoint(
    client: &impl GenericClient,
    received_at: DateTime<Utc>,
) -> Result<(), EvvError> {
    client
        .execute(
            "INSERT INTO evv_checkpoint (id, received_at) VALUES (true, $1)
             ON CONFLICT (id) DO UPDATE
               SET received_at = GREATEST(evv_checkpoint.received_at, EXCLUDED.received_at)",
            &[&received_at],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_condition_is_the_partial_indexes_own() {
        // Else the planner could not use them.
        let migration = include_str!("../../migrations/0003_visits.sql");
        let condition = format!("WHERE {};", is_check("kind"));
        assert_eq!(condition, "WHERE kind IN (22, 23);");
        assert_eq!(migration.matches(&condition).count(), 2);
    }

    #[test]
    fn accuracy_reads_as_its_stored_decimal() {
        let fix = homeward_proto::GeoFix::new(51.5, -0.12).unwrap();
        let with = |a: f32| VisitCheck::by_gps(fix.with_accuracy_m(a).unwrap());
        assert_eq!(accuracy_m(&with(12.3)), Some(12.3));
        assert_eq!(accuracy_m(&with(1e-45)), Some(1e-45));
        assert_eq!(accuracy_m(&with(10_000.0)), Some(10_000.0));
        assert_eq!(accuracy_m(&VisitCheck::by_gps(fix)), None);
    }
}

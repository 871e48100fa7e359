//! What a visit shows: its exceptions, its punctuality and duration (context), whether it is
//! complete, and who may see whose names. Pure: a stored visit in, the view out; no database,
//! no HTTP. The routes and [`super::figures`] both take their rules from here, so a visit
//! listed as late is counted as late.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use super::derive::CheckRecord;
use super::geofence::Reason;
use super::EvvSettings;

/// A visit as stored, with its scheduled visit, person and worker (each may be missing).
#[derive(Debug, Clone)]
pub struct VisitRecord {
    pub id: i64,
    pub provider_id: i32,
    pub person_id: Option<i32>,
    pub worker_id: Option<i32>,
    pub scheduled_visit_id: Option<i64>,
    pub match_method: String,
    pub check_in: Option<CheckRecord>,
    pub check_out: Option<CheckRecord>,
    /// The phone's times.
    pub raw: Times,
    /// The office's times.
    pub adjusted: Times,
    /// A later check-in by the same phone came before this visit's check-out.
    pub superseded: bool,
    pub adjustments: i32,
    pub resolution_code: Option<String>,
    pub scheduled_reference: Option<String>,
    pub service_type: Option<String>,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    pub outcomes: Vec<String>,
    pub person_ref: Option<String>,
    pub pseudonym: Option<String>,
    pub person_name: Option<String>,
    pub worker_ref: Option<String>,
    pub worker_name: Option<String>,
}

/// Exceptions: what needs fixing or acknowledging. Late and short visits are not among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionKind {
    MissingCheckIn,
    MissingCheckOut,
    OutsideGeofence,
    Unscheduled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VisitException {
    #[serde(rename = "type")]
    pub kind: ExceptionKind,
    /// `fix` (times must be supplied) or `acknowledge`.
    pub needs: &'static str,
    pub resolved: bool,
}

/// A visit as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VisitView {
    pub id: i64,
    pub provider_id: i32,
    pub person: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_name: Option<String>,
    pub worker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_name: Option<String>,
    pub scheduled_visit_id: Option<i64>,
    pub scheduled_reference: Option<String>,
    pub service_type: Option<String>,
    pub outcomes: Vec<String>,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    pub match_method: String,
    /// The times the phone recorded, never changed.
    pub raw: Times,
    /// The office's adjusted times, when any.
    pub adjusted: Times,
    /// What counts: adjusted where given, else raw.
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub date: Option<NaiveDate>,
    /// Coarse location, as the Cures Act asks: "home" or "community".
    pub location: &'static str,
    pub check_in: Option<CheckRecord>,
    pub check_out: Option<CheckRecord>,
    pub superseded: bool,
    pub adjustments: i32,
    pub resolution_code: Option<String>,
    pub completed: bool,
    pub exceptions: Vec<VisitException>,
    /// Punctuality and duration, as context only: never a fault, never money.
    pub context: Context,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Times {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl Times {
    /// What counts: `self` (the office's times) where given, else `raw`.
    pub fn over(self, raw: Times) -> Times {
        Times {
            start: self.start.or(raw.start),
            end: self.end.or(raw.end),
        }
    }
}

/// Punctuality and duration of a visit: context, never a fault, never a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Context {
    /// The start is later than the window's start by more than `evv.late_after_minutes`, by
    /// any amount: 15 min 30 s with a 15-minute rule is late.
    pub late: bool,
    /// How late, in whole minutes (truncated; 0 when early), for display only: `late` is
    /// decided on the exact times.
    pub late_by_minutes: Option<i64>,
    pub duration_minutes: Option<i64>,
    pub window_minutes: Option<i64>,
    /// Shorter than its window.
    pub short: bool,
}

/// Whether a visit that started at `start` is late for a window opening at `window_start`:
/// later than the threshold by any amount. The one rule for the visits API and the figures.
pub fn is_late(start: DateTime<Utc>, window_start: DateTime<Utc>, settings: &EvvSettings) -> bool {
    start - window_start > Duration::minutes(i64::from(settings.late_after_minutes))
}

/// The context of a visit with these counted times and this window.
pub fn context(times: Times, window: Times, settings: &EvvSettings) -> Context {
    let late = times
        .start
        .zip(window.start)
        .is_some_and(|(s, ws)| is_late(s, ws, settings));
    let late_by = times
        .start
        .zip(window.start)
        .map(|(s, ws)| (s - ws).num_minutes().max(0));
    let duration = times
        .start
        .zip(times.end)
        .map(|(s, e)| (e - s).num_minutes());
    let window_minutes = window
        .start
        .zip(window.end)
        .map(|(s, e)| (e - s).num_minutes());
    Context {
        late,
        late_by_minutes: late_by,
        duration_minutes: duration,
        window_minutes,
        short: duration.zip(window_minutes).is_some_and(|(d, w)| d < w),
    }
}

/// The exceptions of a visit at `now`.
fn exceptions(
    v: &VisitRecord,
    outside: bool,
    settings: &EvvSettings,
    now: DateTime<Utc>,
) -> Vec<VisitException> {
    let grace = Duration::minutes(i64::from(settings.missed_visit_grace_minutes));
    let mut exceptions = Vec::new();
    if v.raw.start.is_none() && v.check_in.is_none() {
        exceptions.push(VisitException {
            kind: ExceptionKind::MissingCheckIn,
            needs: "fix",
            resolved: v.adjusted.start.is_some(),
        });
    }
    if v.raw.end.is_none() {
        let deadline = match (v.window_end, v.raw.start) {
            (Some(we), _) => Some(we + grace),
            (None, Some(s)) => {
                Some(s + Duration::minutes(i64::from(settings.open_visit_limit_minutes)))
            }
            (None, None) => None,
        };
        if v.superseded || deadline.is_some_and(|d| now > d) {
            exceptions.push(VisitException {
                kind: ExceptionKind::MissingCheckOut,
                needs: "fix",
                resolved: v.adjusted.end.is_some(),
            });
        }
    }
    if outside {
        exceptions.push(VisitException {
            kind: ExceptionKind::OutsideGeofence,
            needs: "acknowledge",
            resolved: v.resolution_code.is_some(),
        });
    }
    if v.scheduled_visit_id.is_none() {
        exceptions.push(VisitException {
            kind: ExceptionKind::Unscheduled,
            needs: "acknowledge",
            resolved: v.resolution_code.is_some(),
        });
    }
    exceptions
}

/// The visit as `/v1/visits` shows it at `now`. With `pseudonymise` (commissioners), people
/// appear by pseudonym, workers as `W<id>`, with no names, coordinates, tags, calling lines
/// or memos.
pub fn visit_view(
    v: VisitRecord,
    pseudonymise: bool,
    settings: &EvvSettings,
    now: DateTime<Utc>,
) -> VisitView {
    let outside = [&v.check_in, &v.check_out].iter().any(|c| {
        c.as_ref()
            .is_some_and(|c| c.reason == Reason::OutsideGeofence)
    });
    let exceptions = exceptions(&v, outside, settings, now);
    let counted = v.adjusted.over(v.raw);
    let window = Times {
        start: v.window_start,
        end: v.window_end,
    };
    let completed = counted.start.is_some()
        && counted.end.is_some()
        && v.person_id.is_some()
        && v.worker_id.is_some()
        && v.service_type.is_some();
    let (person, worker) = if pseudonymise {
        (v.pseudonym, v.worker_id.map(|w| format!("W{w}")))
    } else {
        (v.person_ref, v.worker_ref)
    };
    VisitView {
        id: v.id,
        provider_id: v.provider_id,
        person,
        person_id: v.person_id.filter(|_| !pseudonymise),
        person_name: v.person_name.filter(|_| !pseudonymise),
        worker,
        worker_id: v.worker_id.filter(|_| !pseudonymise),
        worker_name: v.worker_name.filter(|_| !pseudonymise),
        scheduled_visit_id: v.scheduled_visit_id,
        scheduled_reference: v.scheduled_reference,
        service_type: v.service_type,
        outcomes: v.outcomes,
        window_start: v.window_start,
        window_end: v.window_end,
        match_method: v.match_method,
        raw: v.raw,
        adjusted: v.adjusted,
        start: counted.start,
        end: counted.end,
        date: counted.start.map(|s| s.date_naive()),
        location: if outside { "community" } else { "home" },
        check_in: v.check_in.map(|c| redact(c, pseudonymise)),
        check_out: v.check_out.map(|c| redact(c, pseudonymise)),
        superseded: v.superseded,
        adjustments: v.adjustments,
        resolution_code: v.resolution_code,
        completed,
        exceptions,
        context: context(counted, window, settings),
    }
}

/// Commissioners see verdicts and distances, not where a home is.
fn redact(mut c: CheckRecord, pseudonymise: bool) -> CheckRecord {
    if pseudonymise {
        c.lat = None;
        c.lon = None;
        c.tag = None;
        c.caller_id = None;
        c.memo = None;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evv::geofence::Verdict;

    fn t(minutes: i64, seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap()
            + Duration::minutes(minutes)
            + Duration::seconds(seconds)
    }

    fn check(reason: Reason) -> CheckRecord {
        CheckRecord {
            seq: Some(1),
            at: Some(t(0, 0)),
            method: "gps".into(),
            verdict: Verdict::Verified,
            reason,
            distance_m: Some(10.0),
            allowance_m: Some(8.0),
            radius_m: Some(150.0),
            accuracy_m: Some(8.0),
            fix_age_s: Some(3),
            stale: false,
            lat: Some(51.5),
            lon: Some(-0.12),
            tag: Some("tag-1".into()),
            caller_id: Some("+441234".into()),
            manual_reason: None,
            memo: Some("gate code 1234".into()),
        }
    }

    /// A scheduled visit, window 0 to 30 minutes, checked in at `start_s` seconds and out at
    /// 40 minutes, by a known worker for a known person.
    fn record(start_s: i64) -> VisitRecord {
        VisitRecord {
            id: 7,
            provider_id: 3,
            person_id: Some(11),
            worker_id: Some(5),
            scheduled_visit_id: Some(21),
            match_method: "visit_reference".into(),
            check_in: Some(check(Reason::WithinGeofence)),
            check_out: Some(check(Reason::WithinGeofence)),
            raw: Times {
                start: Some(t(0, start_s)),
                end: Some(t(40, 0)),
            },
            adjusted: Times::default(),
            superseded: false,
            adjustments: 0,
            resolution_code: None,
            scheduled_reference: Some("V-1".into()),
            service_type: Some("personal_care".into()),
            window_start: Some(t(0, 0)),
            window_end: Some(t(30, 0)),
            outcomes: vec!["I can wash myself".into()],
            person_ref: Some("P-1".into()),
            pseudonym: Some("P0123456789ab".into()),
            person_name: Some("Ada".into()),
            worker_ref: Some("W-1".into()),
            worker_name: Some("Bea".into()),
        }
    }

    fn view(v: VisitRecord) -> VisitView {
        visit_view(v, false, &EvvSettings::default(), t(24 * 60, 0))
    }

    #[test]
    fn late_means_past_the_threshold_by_any_amount() {
        // The default rule: 15 minutes.
        let at = |s| view(record(s)).context;
        assert!(!at(15 * 60).late, "exactly on the threshold is not late");
        let c = at(15 * 60 + 1);
        assert!(c.late, "one second past it is");
        let c30 = at(15 * 60 + 30);
        assert!(c30.late);
        // Shown in whole minutes, truncated: the flag does not depend on the display.
        assert_eq!(
            (c.late_by_minutes, c30.late_by_minutes),
            (Some(15), Some(15))
        );
        assert_eq!(
            at(-5 * 60).late_by_minutes,
            Some(0),
            "early is 0 minutes late"
        );
        assert!(!at(-5 * 60).late);
    }

    #[test]
    fn lateness_follows_the_setting_and_the_office_s_times() {
        let settings = EvvSettings {
            late_after_minutes: 5,
            ..EvvSettings::default()
        };
        let v = |r| visit_view(r, false, &settings, t(24 * 60, 0)).context.late;
        assert!(v(record(5 * 60 + 30)));
        assert!(!v(record(5 * 60)));
        // The office moved the start to the window's opening: no longer late.
        let mut r = record(20 * 60);
        r.adjusted.start = Some(t(0, 0));
        assert!(!v(r));
        // No window (unscheduled): never late.
        let mut r = record(20 * 60);
        r.window_start = None;
        r.window_end = None;
        let c = visit_view(r, false, &settings, t(24 * 60, 0)).context;
        assert_eq!(
            (c.late, c.late_by_minutes, c.window_minutes),
            (false, None, None)
        );
    }

    #[test]
    fn duration_and_short_are_context() {
        let v = view(record(20 * 60));
        assert_eq!(v.context.duration_minutes, Some(20));
        assert_eq!(v.context.window_minutes, Some(30));
        assert!(v.context.short);
        assert!(v.exceptions.is_empty(), "late and short are not exceptions");
        let v = view(record(0));
        assert_eq!(v.context.duration_minutes, Some(40));
        assert!(!v.context.short);
    }

    #[test]
    fn complete_needs_start_end_person_worker_and_service() {
        let v = view(record(0));
        assert!(v.completed);
        assert_eq!(v.date, Some(t(0, 0).date_naive()));
        for strip in 0..4 {
            let mut r = record(0);
            match strip {
                0 => r.raw.end = None,
                1 => r.person_id = None,
                2 => r.worker_id = None,
                _ => r.service_type = None,
            }
            assert!(!view(r).completed, "case {strip}");
        }
        // The office's end completes a visit the phone never closed.
        let mut r = record(0);
        r.raw.end = None;
        r.adjusted.end = Some(t(35, 0));
        let v = view(r);
        assert!(v.completed);
        assert_eq!(v.end, Some(t(35, 0)));
        assert_eq!(v.raw.end, None);
    }

    #[test]
    fn exceptions_and_their_resolution() {
        // A check-out with no check-in.
        let mut r = record(0);
        r.raw.start = None;
        r.check_in = None;
        assert_eq!(
            view(r.clone()).exceptions,
            vec![VisitException {
                kind: ExceptionKind::MissingCheckIn,
                needs: "fix",
                resolved: false
            }]
        );
        r.adjusted.start = Some(t(1, 0));
        assert!(view(r).exceptions[0].resolved);

        // No check-out: an exception only after the window's end plus the grace period
        // (30 minutes by default), or at once when superseded.
        let mut r = record(0);
        r.raw.end = None;
        let at = |r: &VisitRecord, now| {
            visit_view(r.clone(), false, &EvvSettings::default(), now)
                .exceptions
                .iter()
                .map(|e| e.kind)
                .collect::<Vec<_>>()
        };
        assert!(at(&r, t(60, 0)).is_empty());
        assert_eq!(at(&r, t(60, 1)), vec![ExceptionKind::MissingCheckOut]);
        r.superseded = true;
        assert_eq!(at(&r, t(1, 0)), vec![ExceptionKind::MissingCheckOut]);
        // Unscheduled: after `open_visit_limit_minutes` (240) from the check-in.
        let mut r = record(0);
        r.raw.end = None;
        r.scheduled_visit_id = None;
        r.window_start = None;
        r.window_end = None;
        assert_eq!(at(&r, t(240, 0)), vec![ExceptionKind::Unscheduled]);
        assert_eq!(
            at(&r, t(240, 1)),
            vec![ExceptionKind::MissingCheckOut, ExceptionKind::Unscheduled]
        );

        // Outside the fence: acknowledged by a resolution code, and the location is coarse.
        let mut r = record(0);
        r.check_out = Some(check(Reason::OutsideGeofence));
        let v = view(r.clone());
        assert_eq!(v.location, "community");
        assert_eq!(
            v.exceptions,
            vec![VisitException {
                kind: ExceptionKind::OutsideGeofence,
                needs: "acknowledge",
                resolved: false
            }]
        );
        r.resolution_code = Some("worker_confirmed".into());
        assert!(view(r).exceptions[0].resolved);
        assert_eq!(view(record(0)).location, "home");
    }

    #[test]
    fn commissioners_see_pseudonyms_and_no_home() {
        let v = visit_view(record(0), true, &EvvSettings::default(), t(60, 0));
        assert_eq!(v.person.as_deref(), Some("P0123456789ab"));
        assert_eq!(v.worker.as_deref(), Some("W5"));
        assert_eq!((v.person_id, v.worker_id), (None, None));
        assert_eq!(
            (v.person_name.as_deref(), v.worker_name.as_deref()),
            (None, None)
        );
        for c in [v.check_in.unwrap(), v.check_out.unwrap()] {
            assert_eq!((c.lat, c.lon), (None, None));
            assert_eq!((c.tag, c.caller_id, c.memo), (None, None, None));
            // Verdicts and distances stay.
            assert_eq!((c.verdict, c.distance_m), (Verdict::Verified, Some(10.0)));
        }
        let json = serde_json::to_value(visit_view(
            record(0),
            true,
            &EvvSettings::default(),
            t(60, 0),
        ))
        .unwrap();
        for hidden in ["person_id", "person_name", "worker_id", "worker_name"] {
            assert!(json.get(hidden).is_none(), "{hidden} in {json}");
        }

        let v = view(record(0));
        assert_eq!(v.person.as_deref(), Some("P-1"));
        assert_eq!(v.worker.as_deref(), Some("W-1"));
        assert_eq!((v.person_id, v.worker_id), (Some(11), Some(5)));
        assert_eq!(v.person_name.as_deref(), Some("Ada"));
        let c = v.check_in.unwrap();
        assert_eq!(
            (c.lat, c.memo.as_deref()),
            (Some(51.5), Some("gate code 1234"))
        );
    }
}

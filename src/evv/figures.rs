//! Visit figures over a period: how many visits, how many late, the share punctual, the
//! median duration and the share of check-ins verified. Context, never a price.
//!
//! This module owns these figures: a report that needs them calls [`visit_figures`] instead of
//! counting visits itself. Lateness is [`super::view::is_late`], the rule `/v1/visits` shows,
//! so a visit listed as late is counted as late.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::geofence::Verdict;
use super::view::{self, Times};
use super::{EvvError, EvvSettings};

/// The time a visit is filed under (for periods and ordering): its start (the office's, else
/// the phone's), else its end. SQL on `visits v`.
pub(crate) const VISIT_AT: &str = "coalesce(v.adjusted_start, v.started_at, v.ended_at)";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisitFigures {
    pub visits: i64,
    /// Visits with both a start and a scheduled window: those punctuality is measured on.
    pub timed: i64,
    /// Of `timed`, those late ([`view::is_late`]).
    pub late: i64,
    /// `(timed - late) / timed`; `None` when nothing was timed.
    pub punctual_share: Option<f64>,
    /// Over visits with a start and an end, in minutes (fractional).
    pub median_duration_minutes: Option<f64>,
    /// Check-ins verified, of check-ins with a verdict.
    pub check_ins_verified_share: Option<f64>,
}

/// One visit as the figures read it.
#[derive(Debug, Clone, Copy)]
struct Timed {
    times: Times,
    window: Times,
    /// `Some(true)` verified, `Some(false)` another verdict, `None` no check-in.
    verified: Option<bool>,
}

/// The figures of the visits of `people` at `organisations` filed in `[from, to)`
/// ([`VISIT_AT`]).
pub async fn visit_figures(
    c: &impl GenericClient,
    settings: &EvvSettings,
    organisations: &[i32],
    people: &[i32],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<VisitFigures, EvvError> {
    let rows = c
        .query(
            &format!(
                "SELECT coalesce(v.adjusted_start, v.started_at), coalesce(v.adjusted_end, v.ended_at),
                        s.window_start, s.window_end, v.check_in->>'verdict'
                   FROM visits v LEFT JOIN scheduled_visits s ON s.id = v.scheduled_visit_id
                  WHERE v.organisation_id = ANY($1) AND v.person_id = ANY($2)
                    AND {VISIT_AT} >= $3 AND {VISIT_AT} < $4"
            ),
            &[&organisations, &people, &from, &to],
        )
        .await?;
    let visits: Vec<Timed> = rows
        .iter()
        .map(|r| Timed {
            times: Times {
                start: r.get(0),
                end: r.get(1),
            },
            window: Times {
                start: r.get(2),
                end: r.get(3),
            },
            verified: r
                .get::<_, Option<String>>(4)
                .map(|v| v == Verdict::Verified.as_str()),
        })
        .collect();
    Ok(figures(&visits, settings))
}

/// A required visit missed (for a contract's missed-visit penalty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissedVisit {
    pub scheduled_visit_id: i64,
    pub person_id: i32,
    pub window_start: DateTime<Utc>,
}

/// The scheduled visits of `people` at `organisation` whose window opened in `[from, to)` and
/// that were missed, as known at `known_at`: due (window start +
/// `evv.missed_visit_grace_minutes`, the rule the missed-visit alert uses) by `due_by`,
/// scheduled by `known_at`, no visit started (a matched
/// check-in or an adjusted start, at any time: a late visit is late, not missed), and not
/// cancelled before it was due (a cancellation after the visit was due does not undo the miss;
/// the alert, which pages the office, clears on it all the same). Unlike the alert, windows of
/// any age count.
pub async fn missed_visits(
    c: &impl GenericClient,
    settings: &EvvSettings,
    organisation: i32,
    people: &[i32],
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    due_by: DateTime<Utc>,
    known_at: DateTime<Utc>,
) -> Result<Vec<MissedVisit>, EvvError> {
    let grace = f64::from(settings.missed_visit_grace_minutes);
    let rows = c
        .query(
            "SELECT s.id, s.person_id, s.window_start FROM scheduled_visits s
              WHERE s.organisation_id = $1 AND s.person_id = ANY($2)
                AND s.window_start >= $3 AND s.window_start < $4
                AND s.created_at <= $7
                AND s.window_start + ($6::float8 * interval '1 minute') <= $5
                AND (s.cancelled_at IS NULL OR s.cancelled_at > $7
                     OR s.cancelled_at > s.window_start + ($6::float8 * interval '1 minute'))
                AND NOT EXISTS (SELECT 1 FROM visits v
                                 WHERE v.scheduled_visit_id = s.id
                                   AND (v.started_at IS NOT NULL OR v.adjusted_start IS NOT NULL))
              ORDER BY s.id",
            &[
                &organisation,
                &people,
                &from,
                &to,
                &due_by,
                &grace,
                &known_at,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| MissedVisit {
            scheduled_visit_id: r.get(0),
            person_id: r.get(1),
            window_start: r.get(2),
        })
        .collect())
}

fn share(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

fn figures(visits: &[Timed], settings: &EvvSettings) -> VisitFigures {
    let timed = visits
        .iter()
        .filter(|v| v.times.start.is_some() && v.window.start.is_some())
        .count() as i64;
    let late = visits
        .iter()
        .filter(|v| view::context(v.times, v.window, settings).late)
        .count() as i64;
    let mut durations: Vec<f64> = visits
        .iter()
        .filter_map(|v| v.times.start.zip(v.times.end))
        .map(|(s, e)| minutes(e - s))
        .collect();
    let checked = visits.iter().filter(|v| v.verified.is_some()).count() as i64;
    let verified = visits.iter().filter(|v| v.verified == Some(true)).count() as i64;
    VisitFigures {
        visits: visits.len() as i64,
        timed,
        late,
        punctual_share: share(timed - late, timed),
        median_duration_minutes: median(&mut durations),
        check_ins_verified_share: share(verified, checked),
    }
}

/// Minutes, to the microsecond PostgreSQL stores.
fn minutes(d: chrono::Duration) -> f64 {
    match d.num_microseconds() {
        Some(us) => us as f64 / 1_000_000.0 / 60.0,
        None => d.num_seconds() as f64 / 60.0,
    }
}

/// The median as PostgreSQL's `percentile_cont(0.5)` computes it (the mean of the two middle
/// values for an even count).
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return None;
    }
    // The two middle values (one and the same for an odd count).
    let lo = values[(n - 1) / 2];
    let hi = values[n / 2];
    Some(lo + (hi - lo) * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t(minutes: i64, seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap()
            + Duration::minutes(minutes)
            + Duration::seconds(seconds)
    }

    fn visit(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>, scheduled: bool) -> Timed {
        Timed {
            times: Times { start, end },
            window: Times {
                start: scheduled.then(|| t(0, 0)),
                end: scheduled.then(|| t(30, 0)),
            },
            verified: start.map(|_| true),
        }
    }

    #[test]
    fn lateness_is_counted_by_the_rule_the_visits_show() {
        let settings = EvvSettings::default();
        let visits = [
            // 15 min 30 s late with a 15-minute rule: late.
            visit(Some(t(15, 30)), Some(t(45, 0)), true),
            // Exactly 15 minutes: on time.
            visit(Some(t(15, 0)), Some(t(40, 0)), true),
            // Unscheduled: not timed.
            visit(Some(t(50, 0)), Some(t(60, 0)), false),
            // No start yet: not timed.
            visit(None, Some(t(20, 0)), true),
        ];
        let f = figures(&visits, &settings);
        assert_eq!((f.visits, f.timed, f.late), (4, 2, 1));
        assert_eq!(f.punctual_share, Some(0.5));
        for v in &visits[..2] {
            assert_eq!(
                view::context(v.times, v.window, &settings).late,
                view::is_late(v.times.start.unwrap(), t(0, 0), &settings)
            );
        }
        // Durations 29.5, 25 and 10 minutes: the median is 25.
        assert_eq!(f.median_duration_minutes, Some(25.0));
        assert_eq!(f.check_ins_verified_share, Some(1.0));
    }

    #[test]
    fn nothing_to_measure_gives_no_share() {
        let f = figures(&[], &EvvSettings::default());
        assert_eq!(f.visits, 0);
        assert_eq!(
            (
                f.punctual_share,
                f.median_duration_minutes,
                f.check_ins_verified_share
            ),
            (None, None, None)
        );
    }

    #[test]
    fn median_is_percentile_cont() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0]), Some(3.0));
        assert_eq!(median(&mut [4.0, 1.0]), Some(2.5));
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&mut [1.0, 10.0, 2.0, 4.0]), Some(3.0));
        assert_eq!(minutes(Duration::seconds(90)), 1.5);
    }
}

//! Response figures per provider and period, against the telecare targets (the TSA code of practice):
//! calls answered 97.5% within 60 s and 99% within 180 s (TSA code of practice); mobile
//! responders on site 90% within 45 minutes and all within 60 minutes. All configurable.
//!
//! Definitions (docs/alarms.md):
//! - a *call* is a care alarm received in the period, except one the device itself cancelled
//!   (fall cancelled, reset) before anyone acknowledged it; time to answer is acknowledged_at
//!   minus received_at; a call not (yet) answered counts as not answered within any target;
//! - a *responder visit* is a care alarm to which a responder was dispatched; time to arrive is
//!   on_site_at minus received_at; not arrived counts as not within any target;
//! - *resolved without an ambulance*: a resolved care alarm whose outcome code does not
//!   [involve an ambulance](involves_ambulance) (an activity measure, not an outcome).
//!
//! This module owns these figures: `/v1/alarms/response-times` shows [`response_times`], and a
//! report that needs alarm context calls [`figures`] instead of counting alarms itself.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::model::Outcome;
use super::{AlarmError, AlarmSettings};

/// Whether an outcome code means an ambulance was called. Every code is listed, so a new one
/// must be classed here before it compiles.
pub fn involves_ambulance(o: Outcome) -> bool {
    match o {
        Outcome::AmbulanceCalledNotConveyed
        | Outcome::ConveyedToHospital
        | Outcome::AdmittedToHospital => true,
        Outcome::FalseOrAccidental
        | Outcome::ResolvedByTalking
        | Outcome::FamilyOrKeyholderAttended
        | Outcome::ResponderAttendedNoInjury
        | Outcome::MinorInjuryTreatedAtHome => false,
    }
}

/// The SQL text of the outcome codes that involve an ambulance.
fn ambulance_codes() -> Vec<&'static str> {
    Outcome::ALL
        .iter()
        .copied()
        .filter(|o| involves_ambulance(*o))
        .map(Outcome::as_str)
        .collect()
}

/// Whose alarms the figures count.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    /// The providers whose alarms count.
    pub organisations: &'a [i32],
    /// Only these people's alarms; `None`: every alarm of the providers.
    pub people: Option<&'a [i32]>,
    /// Only alarms of people this commissioner funds on the alarm's day (`homeward_funded`).
    pub funded_by: Option<i32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ResponseTarget)]
pub struct Target {
    /// The limit, in seconds (answer) or minutes (on site).
    pub within: u32,
    /// Share of the denominator within the limit; `null` when there was nothing to measure.
    pub share: Option<f64>,
    pub target_share: f64,
    pub met: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AnswerFigures)]
pub struct Answer {
    pub calls: i64,
    pub answered: i64,
    pub median_secs: Option<f64>,
    pub p90_secs: Option<f64>,
    /// Limits in seconds.
    pub targets: Vec<Target>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OnSiteFigures)]
pub struct OnSite {
    pub dispatched: i64,
    pub arrived: i64,
    pub median_minutes: Option<f64>,
    pub p90_minutes: Option<f64>,
    /// Limits in minutes.
    pub targets: Vec<Target>,
}

/// `GET /v1/alarms/response-times`: one provider's [`Figures`] over a period.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResponseFigures {
    pub provider_id: i32,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The figures of the care alarms of a [`Selection`] received in a period.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AlarmFigures)]
pub struct Figures {
    /// Care alarms received, calls or not.
    pub alarms: i64,
    pub answer: Answer,
    pub on_site: OnSite,
    pub falls: i64,
    pub long_lies: i64,
    /// Resolved alarms by outcome code.
    #[schema(value_type = std::collections::BTreeMap<String, i64>)]
    pub outcomes: serde_json::Map<String, serde_json::Value>,
    /// An activity measure, not an outcome: resolved alarms whose outcome involved
    /// no ambulance.
    pub resolved_without_ambulance: i64,
}

fn target(within: u32, hits: i64, of: i64, target_share: f64) -> Target {
    let share = (of > 0).then(|| hits as f64 / of as f64);
    Target {
        within,
        share,
        target_share,
        met: share.map(|s| s >= target_share),
    }
}

/// `commissioner`: count only alarms of people that commissioner funds on the alarm's day
/// (`homeward_funded`); `None` for the provider's own view of all its alarms.
pub async fn response_times(
    c: &impl GenericClient,
    s: &AlarmSettings,
    provider_id: i32,
    commissioner: Option<i32>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<ResponseFigures, AlarmError> {
    let selection = Selection {
        organisations: &[provider_id],
        people: None,
        funded_by: commissioner,
    };
    Ok(ResponseFigures {
        provider_id,
        from,
        to,
        figures: figures(c, s, selection, from, to).await?,
    })
}

/// The figures of the care alarms of `selection` received in `[from, to)`.
pub async fn figures(
    c: &impl GenericClient,
    s: &AlarmSettings,
    selection: Selection<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Figures, AlarmError> {
    let Selection {
        organisations,
        people,
        funded_by,
    } = selection;
    let ambulance = ambulance_codes();
    let answer_t = f64::from(s.answer_target_secs);
    let answer_l = f64::from(s.answer_limit_secs);
    let site_t = f64::from(s.on_site_target_minutes) * 60.0;
    let site_l = f64::from(s.on_site_limit_minutes) * 60.0;
    let row = c
        .query_one(
            "WITH a AS ( \
               SELECT *, \
                      extract(epoch FROM acknowledged_at - received_at)::float8 AS answer_s, \
                      extract(epoch FROM on_site_at - received_at)::float8 AS arrive_s, \
                      NOT (acknowledged_at IS NULL AND resolved_at IS NOT NULL AND resolved_by IS NULL) AS is_call \
                 FROM alarms \
                WHERE organisation_id = ANY($1) AND category = 'care' \
                  AND received_at >= $2 AND received_at < $3 \
                  AND ($9::int[] IS NULL OR person_id = ANY($9)) \
                  AND ($8::int IS NULL OR homeward_funded($8, organisation_id, person_id, \
                                                         (received_at AT TIME ZONE 'UTC')::date))) \
             SELECT count(*), \
                    count(*) FILTER (WHERE is_call), \
                    count(*) FILTER (WHERE is_call AND answer_s IS NOT NULL), \
                    count(*) FILTER (WHERE is_call AND answer_s <= $4), \
                    count(*) FILTER (WHERE is_call AND answer_s <= $5), \
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY answer_s) FILTER (WHERE is_call), \
                    percentile_cont(0.9) WITHIN GROUP (ORDER BY answer_s) FILTER (WHERE is_call), \
                    count(*) FILTER (WHERE dispatched_at IS NOT NULL), \
                    count(*) FILTER (WHERE dispatched_at IS NOT NULL AND arrive_s IS NOT NULL), \
                    count(*) FILTER (WHERE dispatched_at IS NOT NULL AND arrive_s <= $6), \
                    count(*) FILTER (WHERE dispatched_at IS NOT NULL AND arrive_s <= $7), \
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY arrive_s) FILTER (WHERE dispatched_at IS NOT NULL), \
                    percentile_cont(0.9) WITHIN GROUP (ORDER BY arrive_s) FILTER (WHERE dispatched_at IS NOT NULL), \
                    count(*) FILTER (WHERE is_fall), \
                    count(*) FILTER (WHERE long_lie), \
                    count(*) FILTER (WHERE outcome IS NOT NULL AND outcome <> ALL($10)) \
               FROM a",
            &[
                &organisations,
                &from,
                &to,
                &answer_t,
                &answer_l,
                &site_t,
                &site_l,
                &funded_by,
                &people,
                &ambulance,
            ],
        )
        .await?;
    let calls: i64 = row.get(1);
    let dispatched: i64 = row.get(7);
    let mut outcomes = serde_json::Map::new();
    for r in c
        .query(
            "SELECT outcome, count(*) FROM alarms \
              WHERE organisation_id = ANY($1) AND category = 'care' AND outcome IS NOT NULL \
                AND received_at >= $2 AND received_at < $3 \
                AND ($5::int[] IS NULL OR person_id = ANY($5)) \
                AND ($4::int IS NULL OR homeward_funded($4, organisation_id, person_id, \
                                                       (received_at AT TIME ZONE 'UTC')::date)) \
              GROUP BY outcome ORDER BY outcome",
            &[&organisations, &from, &to, &funded_by, &people],
        )
        .await?
    {
        outcomes.insert(r.get::<_, String>(0), r.get::<_, i64>(1).into());
    }
    Ok(Figures {
        alarms: row.get(0),
        answer: Answer {
            calls,
            answered: row.get(2),
            median_secs: row.get(5),
            p90_secs: row.get(6),
            targets: vec![
                target(
                    s.answer_target_secs,
                    row.get(3),
                    calls,
                    s.answer_target_share,
                ),
                target(s.answer_limit_secs, row.get(4), calls, s.answer_limit_share),
            ],
        },
        on_site: OnSite {
            dispatched,
            arrived: row.get(8),
            median_minutes: row.get::<_, Option<f64>>(11).map(|v| v / 60.0),
            p90_minutes: row.get::<_, Option<f64>>(12).map(|v| v / 60.0),
            targets: vec![
                target(
                    s.on_site_target_minutes,
                    row.get(9),
                    dispatched,
                    s.on_site_target_share,
                ),
                target(
                    s.on_site_limit_minutes,
                    row.get(10),
                    dispatched,
                    s.on_site_limit_share,
                ),
            ],
        },
        falls: row.get(13),
        long_lies: row.get(14),
        outcomes,
        resolved_without_ambulance: row.get(15),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambulance_codes_are_the_three_that_call_one() {
        assert_eq!(
            ambulance_codes(),
            [
                "ambulance_called_not_conveyed",
                "conveyed_to_hospital",
                "admitted_to_hospital"
            ]
        );
    }

    #[test]
    fn shares_and_targets() {
        let t = target(60, 39, 40, 0.975);
        assert_eq!(t.share, Some(0.975));
        assert_eq!(t.met, Some(true));
        let t = target(60, 38, 40, 0.975);
        assert_eq!(t.met, Some(false));
        let t = target(60, 0, 0, 0.975);
        assert_eq!((t.share, t.met), (None, None));
    }
}

//! Loads a report's input rows as they were known at the report's `known_at`, one function per
//! source, each sorted so that the whole can be hashed.
//!
//! Outcome records (service periods, hospital stays, reablement episodes, care-home admissions,
//! deaths, recorded falls) are versioned and never updated (migration 0010): the record as known
//! at T is its newest version recorded by T, and a withdrawn record is left out. Every query
//! here takes `known_at` as `$1` and reads those tables only through [`known!`].

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::GenericClient;

use super::ascof::{CareHomeStay, Episode};
use super::measures::{
    Admission, ComparisonMember, ContractHours, Inputs, Period, PersonInput, PlanInput, PlanOutcome,
};
use super::OutcomeSettings;
use crate::http::ApiError;

/// The records of a versioned table as known at `$1`, as a subquery: the newest version of each
/// record recorded by then, withdrawn records left out. Versions of one record form a chain
/// (each names the one it replaces, at most one successor each), so the newest is the highest
/// id.
macro_rules! known {
    ($table:literal) => {
        concat!(
            "(SELECT * FROM (SELECT DISTINCT ON (record_id) * FROM ",
            $table,
            " WHERE recorded_at <= $1 ORDER BY record_id, id DESC) newest WHERE NOT newest.withdrawn)"
        )
    };
}
pub(crate) use known;

/// The filters a scope becomes for one caller: the tenant always comes from the credential.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Filter {
    pub provider: Option<i32>,
    pub commissioner: Option<i32>,
    pub person: Option<i32>,
    pub contract: Option<i32>,
    /// Whose population figures apply.
    pub population_of: Option<i32>,
}

/// The start of a day (UTC).
pub(super) fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Who is in scope, and the organisations whose rows they have.
struct People {
    by_id: BTreeMap<i32, PersonInput>,
    ids: Vec<i32>,
    orgs: Vec<i32>,
}

/// Everything a scope reads, as known at `p.known_at`.
pub(super) async fn load(
    c: &impl GenericClient,
    f: &Filter,
    p: &Period,
    s: &OutcomeSettings,
) -> Result<(Inputs, Vec<i32>, Vec<i32>), ApiError> {
    let mut who = service_periods(c, f, p).await?;
    alarm_falls(c, &mut who, p, s).await?;
    hospital_stays(c, &mut who, p).await?;
    recorded_falls(c, &mut who, p).await?;
    care_home_admissions(c, &mut who, p).await?;
    deaths(c, &mut who, p).await?;
    reablement_episodes(c, &mut who, p).await?;
    let plans = plans(c, &who, f, p).await?;
    let populations = populations(c, f, p).await?;
    let hours = contract_hours(c, &who, f, p).await?;
    let comparison = comparison(c, f, p).await?;
    let reference_rates = reference_rates(c, f, p).await?;
    Ok((
        Inputs {
            people: who.by_id.into_values().collect(),
            plans,
            populations,
            population_of: f.population_of,
            hours,
            comparison,
            reference_rates,
        },
        who.ids,
        who.orgs,
    ))
}

async fn service_periods(
    c: &impl GenericClient,
    f: &Filter,
    p: &Period,
) -> Result<People, ApiError> {
    let rows = c
        .query(
            concat!(
                "SELECT sp.person_id, sp.started_on, sp.ended_on, sp.history_from, pe.date_of_birth, sp.organisation_id,
                        c.commissioner_id
                   FROM ",
                known!("service_periods"),
                " sp
                   JOIN people pe ON pe.id = sp.person_id
                   LEFT JOIN contracts c ON c.id = sp.contract_id
                  WHERE ($2::int IS NULL OR sp.organisation_id = $2)
                    AND ($3::int IS NULL OR c.commissioner_id = $3)
                    AND ($4::int IS NULL OR sp.person_id = $4)
                    AND ($5::int IS NULL OR sp.contract_id = $5)
                    AND sp.started_on < $6 AND (sp.ended_on IS NULL OR sp.ended_on >= $7)
                  ORDER BY sp.person_id, sp.started_on, sp.record_id"
            ),
            &[&p.known_at, &f.provider, &f.commissioner, &f.person, &f.contract, &p.to, &p.from],
        )
        .await?;
    let mut by_id: BTreeMap<i32, PersonInput> = BTreeMap::new();
    let mut orgs = Vec::new();
    for r in rows {
        let id: i32 = r.get(0);
        let org: i32 = r.get(5);
        if !orgs.contains(&org) {
            orgs.push(org);
        }
        let e = by_id.entry(id).or_insert_with(|| PersonInput {
            person_id: id,
            date_of_birth: r.get(4),
            ..Default::default()
        });
        e.periods.push((r.get(1), r.get(2), r.get(3)));
        if let Some(commissioner) = r.get::<_, Option<i32>>(6) {
            e.funding.push((r.get(1), r.get(2), commissioner));
        }
    }
    orgs.sort_unstable();
    let ids = by_id.keys().copied().collect();
    Ok(People { by_id, ids, orgs })
}

/// Falls raised by alarms, from far enough back for the history window to 92 days after the
/// period (the longest look-ahead). Alarms are derived from events, not recorded by people: one
/// counts when it was raised by `known_at`.
async fn alarm_falls(
    c: &impl GenericClient,
    who: &mut People,
    p: &Period,
    s: &OutcomeSettings,
) -> Result<(), ApiError> {
    let earliest = who
        .by_id
        .values()
        .filter_map(|x| x.service_start())
        .min()
        .unwrap_or(p.from)
        .min(p.from)
        - chrono::Duration::days(i64::from(s.history_days));
    let until = p.as_of.max(p.to) + chrono::Duration::days(92);
    for r in c
        .query(
            "SELECT person_id, raised_at, long_lie, outcome FROM alarms
              WHERE organisation_id = ANY($2) AND is_fall AND person_id = ANY($3)
                AND raised_at >= $4 AND raised_at < $5 AND raised_at <= $1
              ORDER BY person_id, raised_at, id",
            &[
                &p.known_at,
                &who.orgs,
                &who.ids,
                &midnight(earliest),
                &midnight(until),
            ],
        )
        .await?
    {
        if let Some(x) = who.by_id.get_mut(&r.get::<_, i32>(0)) {
            let at: DateTime<Utc> = r.get(1);
            x.falls.push((at.date_naive(), r.get(2), r.get(3)));
        }
    }
    Ok(())
}

/// The first version's `recorded_at` of a record of `$table` aliased `x`: when the record
/// became known, whatever was corrected later (the baseline is locked at enrolment on it).
macro_rules! first_recorded {
    ($table:literal) => {
        concat!(
            "(SELECT min(v.recorded_at) FROM ",
            $table,
            " v WHERE v.record_id = x.record_id)"
        )
    };
}

/// Hospital stays, for the ASCOF measures (`stays`) and the avoided estimates (`admissions`:
/// emergency or not, whether a reablement episode followed the stay, i.e. the index stay, and
/// when the record was first recorded).
async fn hospital_stays(
    c: &impl GenericClient,
    who: &mut People,
    p: &Period,
) -> Result<(), ApiError> {
    for r in c
        .query(
            concat!(
                "WITH index_stays AS (SELECT DISTINCT named.record_id FROM ",
                known!("reablement_episodes"),
                " e JOIN hospital_stays named ON named.id = e.hospital_stay_id
                    WHERE e.person_id = ANY($3))
                 SELECT x.person_id, x.record_id, x.admitted_on, x.discharged_on, x.emergency, ",
                first_recorded!("hospital_stays"),
                ", x.record_id IN (SELECT record_id FROM index_stays)
                   FROM ",
                known!("hospital_stays"),
                " x WHERE x.organisation_id = ANY($2) AND x.person_id = ANY($3)
                  ORDER BY x.person_id, x.admitted_on, x.record_id"
            ),
            &[&p.known_at, &who.orgs, &who.ids],
        )
        .await?
    {
        if let Some(x) = who.by_id.get_mut(&r.get::<_, i32>(0)) {
            x.stays.push((r.get(1), r.get(2), r.get(3)));
            x.admissions.push(Admission {
                admitted_on: r.get(2),
                emergency: r.get(4),
                first_recorded_at: r.get(5),
                index: r.get(6),
            });
        }
    }
    Ok(())
}

async fn recorded_falls(
    c: &impl GenericClient,
    who: &mut People,
    p: &Period,
) -> Result<(), ApiError> {
    for r in c
        .query(
            concat!(
                "SELECT x.person_id, x.occurred_on, ",
                first_recorded!("recorded_falls"),
                " FROM ",
                known!("recorded_falls"),
                " x WHERE x.organisation_id = ANY($2) AND x.person_id = ANY($3)
                  ORDER BY x.person_id, x.occurred_on, x.record_id"
            ),
            &[&p.known_at, &who.orgs, &who.ids],
        )
        .await?
    {
        if let Some(x) = who.by_id.get_mut(&r.get::<_, i32>(0)) {
            x.recorded_falls.push((r.get(1), r.get(2)));
        }
    }
    Ok(())
}

async fn care_home_admissions(
    c: &impl GenericClient,
    who: &mut People,
    p: &Period,
) -> Result<(), ApiError> {
    for r in c
        .query(
            concat!(
                "SELECT person_id, admitted_on, permanent, setting, discharged_on, returned_home FROM ",
                known!("care_home_admissions"),
                " a WHERE organisation_id = ANY($2) AND person_id = ANY($3)
                  ORDER BY person_id, admitted_on, record_id"
            ),
            &[&p.known_at, &who.orgs, &who.ids],
        )
        .await?
    {
        if let Some(x) = who.by_id.get_mut(&r.get::<_, i32>(0)) {
            x.care_home.push(CareHomeStay {
                admitted_on: r.get(1),
                permanent: r.get(2),
                setting: r.get(3),
                discharged_on: r.get(4),
                returned_home: r.get(5),
            });
        }
    }
    Ok(())
}

async fn deaths(c: &impl GenericClient, who: &mut People, p: &Period) -> Result<(), ApiError> {
    for r in c
        .query(
            concat!(
                "SELECT person_id, died_on FROM ",
                known!("deaths"),
                " d WHERE organisation_id = ANY($2) AND person_id = ANY($3)
                  ORDER BY person_id, record_id"
            ),
            &[&p.known_at, &who.orgs, &who.ids],
        )
        .await?
    {
        if let Some(x) = who.by_id.get_mut(&r.get::<_, i32>(0)) {
            x.died_on = Some(r.get(1));
        }
    }
    Ok(())
}

async fn reablement_episodes(
    c: &impl GenericClient,
    who: &mut People,
    p: &Period,
) -> Result<(), ApiError> {
    // An episode names the version of the stay it followed; the stay is read as known now.
    for r in c
        .query(
            concat!(
                "SELECT e.person_id, e.started_on, e.ended_on, e.result, h.discharged_on, e.aim_home,
                        ec.commissioner_id, e.existing_client, e.follow_up_on, e.follow_up
                   FROM ",
                known!("reablement_episodes"),
                " e LEFT JOIN contracts ec ON ec.id = e.contract_id
                   LEFT JOIN hospital_stays named ON named.id = e.hospital_stay_id
                   LEFT JOIN ",
                known!("hospital_stays"),
                " h ON h.record_id = named.record_id
                  WHERE e.organisation_id = ANY($2) AND e.person_id = ANY($3)
                  ORDER BY e.person_id, e.started_on, e.record_id"
            ),
            &[&p.known_at, &who.orgs, &who.ids],
        )
        .await?
    {
        if let Some(x) = who.by_id.get_mut(&r.get::<_, i32>(0)) {
            let follow_up: Option<NaiveDate> = r.get(8);
            x.episodes.push(Episode {
                started_on: r.get(1),
                ended_on: r.get(2),
                result: r.get(3),
                discharged_on: r.get(4),
                aim_home: r.get(5),
                funded_by: r.get(6),
                existing_client: r.get(7),
                follow_up: follow_up.map(|on| (on, r.get(9))),
            });
        }
    }
    Ok(())
}

/// A plan outcome is achieved when the person answered "yes" through their own link or code
/// (dated by the first such answer recorded by `known_at`), and verified when the council's
/// newest verdict recorded by `known_at` is `verified`. The columns provider staff once filled
/// (`plan_outcomes.achieved_on`, `confirmed_at`) are not read: such achievements are not
/// payable.
async fn plans(
    c: &impl GenericClient,
    who: &People,
    f: &Filter,
    p: &Period,
) -> Result<Vec<PlanInput>, ApiError> {
    let mut plans: Vec<PlanInput> = Vec::new();
    for r in c
        .query(
            "SELECT pl.id, pl.person_id, pl.contract_id, pl.value_pence,
                    CASE WHEN pl.agreed_by_person_at IS NOT NULL AND pl.agreed_by_provider_at IS NOT NULL
                          AND pl.agreed_by_council_at IS NOT NULL
                          AND greatest(pl.agreed_by_person_at, pl.agreed_by_provider_at, pl.agreed_by_council_at) <= $1
                         THEN (greatest(pl.agreed_by_person_at, pl.agreed_by_provider_at, pl.agreed_by_council_at)
                               AT TIME ZONE 'UTC')::date END,
                    o.id, o.payable, o.kind, o.target_date,
                    (SELECT (k.confirmed_at AT TIME ZONE 'UTC')::date FROM plan_outcome_confirmations k
                      WHERE k.outcome_id = o.id AND k.answer = 'yes' AND k.confirmed_at <= $1
                      ORDER BY k.confirmed_at, k.id LIMIT 1),
                    coalesce((SELECT v.verdict = 'verified' FROM plan_outcome_verifications v
                               WHERE v.outcome_id = o.id AND v.verified_at <= $1
                               ORDER BY v.verified_at DESC, v.id DESC LIMIT 1), false)
               FROM outcome_plans pl JOIN plan_outcomes o ON o.plan_id = pl.id
              WHERE pl.organisation_id = ANY($2) AND pl.person_id = ANY($3)
                AND ($4::int IS NULL OR pl.contract_id = $4) AND pl.created_at <= $1
              ORDER BY pl.id, o.id",
            &[&p.known_at, &who.orgs, &who.ids, &f.contract],
        )
        .await?
    {
        let plan_id: i64 = r.get(0);
        if plans.last().map(|x| x.plan_id) != Some(plan_id) {
            plans.push(PlanInput {
                plan_id,
                person_id: r.get(1),
                contract_id: r.get(2),
                value_pence: r.get(3),
                agreed_on: r.get(4),
                outcomes: Vec::new(),
            });
        }
        if let Some(pl) = plans.last_mut() {
            pl.outcomes.push(PlanOutcome {
                id: r.get(5),
                payable: r.get(6),
                kind: r.get(7),
                target_date: r.get(8),
                achieved_on: r.get(9),
                verified: r.get(10),
            });
        }
    }
    Ok(plans)
}

/// Hours delivered per contract in the period, as context (never a price): visits of the people
/// in scope filed in the period ([`crate::evv::figures::VISIT_AT`]) and started by `known_at`,
/// not superseded, whose check-in was verified and whose end is after their start (the times
/// `/v1/visits` shows: the office's adjusted times where given). A visit belongs to the contract
/// of the person's service period (as known at `known_at`, within the scope's filters) covering
/// the visit's UTC date; visits outside any contracted period are left out.
async fn contract_hours(
    c: &impl GenericClient,
    who: &People,
    f: &Filter,
    p: &Period,
) -> Result<Vec<ContractHours>, ApiError> {
    let at = crate::evv::figures::VISIT_AT;
    let sql = format!(
        "SELECT sp.contract_id, count(*),
                coalesce(sum(extract(epoch FROM coalesce(v.adjusted_end, v.ended_at)
                                              - coalesce(v.adjusted_start, v.started_at))), 0)::float8 / 3600.0
           FROM visits v
           JOIN LATERAL (SELECT s.contract_id FROM {sp} s JOIN contracts k ON k.id = s.contract_id
                          WHERE s.person_id = v.person_id AND s.organisation_id = v.organisation_id
                            AND ($6::int IS NULL OR s.contract_id = $6)
                            AND ($7::int IS NULL OR k.commissioner_id = $7)
                            AND ({at} AT TIME ZONE 'UTC')::date >= s.started_on
                            AND (s.ended_on IS NULL OR ({at} AT TIME ZONE 'UTC')::date <= s.ended_on)
                          ORDER BY s.started_on DESC, s.record_id LIMIT 1) sp ON true
          WHERE v.organisation_id = ANY($2) AND v.person_id = ANY($3)
            AND {at} >= $4 AND {at} < $5 AND {at} <= $1
            AND NOT v.superseded AND v.check_in->>'verdict' = $8
            AND coalesce(v.adjusted_end, v.ended_at) > coalesce(v.adjusted_start, v.started_at)
          GROUP BY sp.contract_id ORDER BY sp.contract_id",
        sp = known!("service_periods"),
    );
    let verified = crate::evv::geofence::Verdict::Verified.as_str();
    Ok(c.query(
        &sql,
        &[
            &p.known_at,
            &who.orgs,
            &who.ids,
            &midnight(p.from),
            &midnight(p.to),
            &f.contract,
            &f.commissioner,
            &verified,
        ],
    )
    .await?
    .iter()
    .map(|r| ContractHours {
        contract_id: r.get(0),
        verified_visits: r.get(1),
        hours: r.get(2),
    })
    .collect())
}

/// Who wrote the records one source holds, and what the commissioner made of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Provenance {
    /// Records whose version as known was written by the provider's staff.
    pub recorded_by_provider: u64,
    /// ... by the commissioner funding the person.
    pub recorded_by_commissioner: u64,
    /// Records whose version as known carries a commissioner's newest verdict `verified`.
    pub verified: u64,
    /// ... `disputed`.
    pub disputed: u64,
}

macro_rules! provenance_of {
    ($table:literal) => {
        concat!(
            "SELECT '",
            $table,
            "'::text AS source, k.recorder, v.verdict FROM ",
            known!($table),
            " k LEFT JOIN LATERAL (SELECT v.verdict FROM outcome_record_verifications v
                  WHERE v.source = '",
            $table,
            "' AND v.version_id = k.id AND v.verified_at <= $1
                  ORDER BY v.verified_at DESC, v.id DESC LIMIT 1) v ON true
              WHERE k.organisation_id = ANY($2) AND k.person_id = ANY($3)"
        )
    };
}

/// For each outcome source, the records of the people in scope as known at `known_at`: how
/// many the provider and the commissioner wrote (the version as known), and how many the
/// commissioner had verified or disputed by then. Context for a report's reader; the figures
/// do not depend on it.
pub(super) async fn provenance(
    c: &impl GenericClient,
    orgs: &[i32],
    ids: &[i32],
    known_at: DateTime<Utc>,
) -> Result<BTreeMap<&'static str, Provenance>, ApiError> {
    const SOURCES: [&str; 6] = [
        "service_periods",
        "hospital_stays",
        "reablement_episodes",
        "care_home_admissions",
        "deaths",
        "recorded_falls",
    ];
    let mut out: BTreeMap<&'static str, Provenance> = SOURCES
        .iter()
        .map(|s| (*s, Provenance::default()))
        .collect();
    let rows = c
        .query(
            concat!(
                "SELECT source, recorder, verdict, count(*) FROM (",
                provenance_of!("service_periods"),
                " UNION ALL ",
                provenance_of!("hospital_stays"),
                " UNION ALL ",
                provenance_of!("reablement_episodes"),
                " UNION ALL ",
                provenance_of!("care_home_admissions"),
                " UNION ALL ",
                provenance_of!("deaths"),
                " UNION ALL ",
                provenance_of!("recorded_falls"),
                ") x GROUP BY 1, 2, 3"
            ),
            &[&known_at, &orgs, &ids],
        )
        .await?;
    for r in rows {
        let source: String = r.get(0);
        let Some(p) = SOURCES
            .iter()
            .find(|s| **s == source)
            .and_then(|s| out.get_mut(s))
        else {
            continue;
        };
        let n = r.get::<_, i64>(3).unsigned_abs();
        match r.get::<_, &str>(1) {
            "commissioner" => p.recorded_by_commissioner += n,
            _ => p.recorded_by_provider += n,
        }
        match r.get::<_, Option<&str>>(2) {
            Some("verified") => p.verified += n,
            Some("disputed") => p.disputed += n,
            _ => {}
        }
    }
    Ok(out)
}

/// The commissioner's populations as known at `known_at`: the newest row of each age group.
async fn populations(
    c: &impl GenericClient,
    f: &Filter,
    p: &Period,
) -> Result<Vec<(String, i32)>, ApiError> {
    let mut populations = Vec::new();
    if let Some(comm) = f.population_of {
        for r in c
            .query(
                "SELECT DISTINCT ON (age_group) age_group, population FROM commissioner_populations
                  WHERE commissioner_id = $2 AND recorded_at <= $1 ORDER BY age_group, id DESC",
                &[&p.known_at, &comm],
            )
            .await?
        {
            populations.push((r.get(0), r.get(1)));
        }
    }
    Ok(populations)
}

/// The comparison cohort of a scope with a commissioner, as known at `known_at`: members of the
/// commissioner's cohorts (for a contract's scope, those naming the contract or none), the
/// newest version of each recorded by then, withdrawn ones left out, with their events recorded
/// by then.
async fn comparison(
    c: &impl GenericClient,
    f: &Filter,
    p: &Period,
) -> Result<Vec<ComparisonMember>, ApiError> {
    let Some(commissioner) = f.population_of else {
        return Ok(Vec::new());
    };
    let rows = c
        .query(
            "WITH cohorts AS (
                 SELECT id FROM comparison_cohorts
                  WHERE commissioner_id = $2 AND recorded_at <= $1
                    AND ($3::int IS NULL OR contract_id IS NULL OR contract_id = $3)),
             members AS (
                 SELECT * FROM (SELECT DISTINCT ON (cohort_id, reference) * FROM comparison_members
                                 WHERE cohort_id IN (SELECT id FROM cohorts) AND recorded_at <= $1
                                 ORDER BY cohort_id, reference, id DESC) m
                  WHERE NOT m.withdrawn)
             SELECT m.cohort_id, m.reference, m.index_date, m.follow_from, m.ended_on, e.kind, e.occurred_on
               FROM members m
               LEFT JOIN comparison_events e
                 ON e.cohort_id = m.cohort_id AND e.reference = m.reference AND e.recorded_at <= $1
                AND NOT EXISTS (SELECT 1 FROM comparison_event_withdrawals w
                                 WHERE w.event_id = e.id AND w.recorded_at <= $1)
              ORDER BY m.cohort_id, m.reference, e.occurred_on, e.kind",
            &[&p.known_at, &commissioner, &f.contract],
        )
        .await?;
    let mut out: Vec<ComparisonMember> = Vec::new();
    let mut last: Option<(i32, String)> = None;
    for r in rows {
        let key = (r.get::<_, i32>(0), r.get::<_, String>(1));
        if last.as_ref() != Some(&key) {
            out.push(ComparisonMember {
                index_date: r.get(2),
                follow_from: r.get(3),
                ended_on: r.get(4),
                events: Vec::new(),
            });
            last = Some(key);
        }
        let kind: Option<String> = r.get(5);
        if let (Some(kind), Some(m)) = (
            kind.as_deref().and_then(super::comparison::parse_kind),
            out.last_mut(),
        ) {
            m.events.push((kind, r.get(6)));
        }
    }
    Ok(out)
}

/// The reference rates in the contract's terms, for a contract's scope: the terms version
/// valid on the period's first day (as a statement prices it), as set by `known_at`.
async fn reference_rates(
    c: &impl GenericClient,
    f: &Filter,
    p: &Period,
) -> Result<Option<super::estimate::ReferenceRates>, ApiError> {
    let Some(contract) = f.contract else {
        return Ok(None);
    };
    let Some(row) = c
        .query_opt(
            "SELECT terms -> 'reference_rates' FROM contract_terms
              WHERE contract_id = $2 AND valid_from <= $3 AND set_at <= $1
              ORDER BY version DESC LIMIT 1",
            &[&p.known_at, &contract, &p.from],
        )
        .await?
    else {
        return Ok(None);
    };
    let v: Option<serde_json::Value> = row.get(0);
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v).map(Some).map_err(|e| {
            ApiError::Unexpected(anyhow::anyhow!(
                "contract {contract} has reference rates this version cannot read: {e}"
            ))
        }),
    }
}

//! Reports: resolve a scope for the caller (tenant-filtered), load its rows, hash them, compute
//! the indicators (pure, in [`super::measures`]) and the context, and export as JSON or CSV.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use super::measures::{self, Indicators, Inputs, Period, PersonInput, PlanInput, PlanOutcome};
use super::{OutcomeSettings, METHOD_VERSION};
use crate::auth::Caller;
use crate::http::ApiError;

/// What a report covers.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Scope {
    Person(i32),
    Provider(i32),
    Contract(i32),
    /// A commissioner's whole population: everyone served under its contracts.
    Population,
}

impl Scope {
    pub fn parse(kind: &str, id: Option<i32>) -> Result<Self, ApiError> {
        let need =
            || id.ok_or_else(|| ApiError::invalid("id", format!("required for scope `{kind}`")));
        Ok(match kind {
            "person" => Self::Person(need()?),
            "provider" => Self::Provider(need()?),
            "contract" => Self::Contract(need()?),
            "population" => Self::Population,
            _ => {
                return Err(ApiError::invalid(
                    "scope",
                    "one of person, provider, contract, population",
                ))
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Person(_) => "person",
            Self::Provider(_) => "provider",
            Self::Contract(_) => "contract",
            Self::Population => "population",
        }
    }

    pub fn id(&self) -> Option<i32> {
        match *self {
            Self::Person(i) | Self::Provider(i) | Self::Contract(i) => Some(i),
            Self::Population => None,
        }
    }
}

/// The filters a scope becomes for this caller: the tenant always comes from the credential.
#[derive(Debug, Clone, Copy)]
struct Filter {
    provider: Option<i32>,
    commissioner: Option<i32>,
    person: Option<i32>,
    contract: Option<i32>,
    /// Whose population figures apply.
    population_of: Option<i32>,
}

async fn filter_for(
    c: &impl GenericClient,
    caller: &Caller,
    scope: Scope,
) -> Result<Filter, ApiError> {
    let visibility = crate::auth::visibility(caller, c).await?;
    let commissioner = visibility.funded_by().is_some();
    let org = visibility.organisation();
    let mut f = Filter {
        provider: None,
        commissioner: None,
        person: None,
        contract: None,
        population_of: None,
    };
    if commissioner {
        f.commissioner = Some(org);
        f.population_of = Some(org);
    } else {
        f.provider = Some(org);
    }
    match scope {
        Scope::Person(id) => f.person = Some(id),
        Scope::Provider(id) => {
            // A provider only itself; a commissioner only a provider it contracts.
            f.provider = Some(visibility.one_provider(Some(id))?);
        }
        Scope::Contract(id) => {
            let row = c
                .query_opt(
                    "SELECT commissioner_id FROM contracts WHERE id = $1 AND (commissioner_id = $2 OR provider_id = $2)",
                    &[&id, &org],
                )
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("contract {id}")))?;
            f.contract = Some(id);
            f.population_of = Some(row.get(0));
        }
        Scope::Population => {
            if !commissioner {
                return Err(ApiError::Forbidden(
                    "population reports are for commissioners; providers ask for scope=provider"
                        .into(),
                ));
            }
        }
    }
    Ok(f)
}

/// The start of a day (UTC).
fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn utc_date(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

/// Loads every input row of a scope, sorted, so that it can be hashed.
async fn load(
    c: &impl GenericClient,
    f: &Filter,
    p: &Period,
    s: &OutcomeSettings,
) -> Result<(Inputs, Vec<i32>, Vec<i32>), ApiError> {
    let rows = c
        .query(
            "SELECT sp.person_id, sp.started_on, sp.ended_on, sp.history_from, pe.date_of_birth, sp.organisation_id
               FROM service_periods sp
               JOIN people pe ON pe.id = sp.person_id
               LEFT JOIN contracts c ON c.id = sp.contract_id
              WHERE ($1::int IS NULL OR sp.organisation_id = $1)
                AND ($2::int IS NULL OR c.commissioner_id = $2)
                AND ($3::int IS NULL OR sp.person_id = $3)
                AND ($4::int IS NULL OR sp.contract_id = $4)
                AND sp.started_on < $5 AND (sp.ended_on IS NULL OR sp.ended_on >= $6)
              ORDER BY sp.person_id, sp.started_on, sp.id",
            &[&f.provider, &f.commissioner, &f.person, &f.contract, &p.to, &p.from],
        )
        .await?;
    let mut people: BTreeMap<i32, PersonInput> = BTreeMap::new();
    let mut orgs = Vec::new();
    for r in rows {
        let id: i32 = r.get(0);
        let org: i32 = r.get(5);
        if !orgs.contains(&org) {
            orgs.push(org);
        }
        let e = people.entry(id).or_insert_with(|| PersonInput {
            person_id: id,
            date_of_birth: r.get(4),
            ..Default::default()
        });
        e.periods.push((r.get(1), r.get(2), r.get(3)));
    }
    orgs.sort_unstable();
    let ids: Vec<i32> = people.keys().copied().collect();
    // Falls before service count toward history: read back far enough.
    let earliest = people
        .values()
        .filter_map(|x| x.service_start())
        .min()
        .unwrap_or(p.from)
        .min(p.from)
        - chrono::Duration::days(i64::from(s.history_days));
    let until = p.as_of.max(p.to) + chrono::Duration::days(92);
    let lo = earliest.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    let hi = until.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    for r in c
        .query(
            "SELECT person_id, raised_at, long_lie, outcome FROM alarms
              WHERE organisation_id = ANY($1) AND is_fall AND person_id = ANY($2)
                AND raised_at >= $3 AND raised_at < $4
              ORDER BY person_id, raised_at, id",
            &[&orgs, &ids, &lo, &hi],
        )
        .await?
    {
        if let Some(x) = people.get_mut(&r.get::<_, i32>(0)) {
            x.falls.push((utc_date(r.get(1)), r.get(2), r.get(3)));
        }
    }
    for r in c
        .query(
            "SELECT person_id, id, admitted_on, discharged_on FROM hospital_stays
              WHERE organisation_id = ANY($1) AND person_id = ANY($2) ORDER BY person_id, admitted_on, id",
            &[&orgs, &ids],
        )
        .await?
    {
        if let Some(x) = people.get_mut(&r.get::<_, i32>(0)) {
            x.stays.push((r.get(1), r.get(2), r.get(3)));
        }
    }
    for r in c
        .query(
            "SELECT person_id, occurred_on FROM recorded_falls
              WHERE organisation_id = ANY($1) AND person_id = ANY($2) ORDER BY person_id, occurred_on, id",
            &[&orgs, &ids],
        )
        .await?
    {
        if let Some(x) = people.get_mut(&r.get::<_, i32>(0)) {
            x.recorded_falls.push(r.get(1));
        }
    }
    for r in c
        .query(
            "SELECT person_id, admitted_on, permanent, setting FROM care_home_admissions
              WHERE organisation_id = ANY($1) AND person_id = ANY($2) ORDER BY person_id, admitted_on, id",
            &[&orgs, &ids],
        )
        .await?
    {
        if let Some(x) = people.get_mut(&r.get::<_, i32>(0)) {
            x.care_home.push((r.get(1), r.get(2), r.get(3)));
        }
    }
    for r in c
        .query(
            "SELECT person_id, died_on FROM deaths WHERE organisation_id = ANY($1) AND person_id = ANY($2)",
            &[&orgs, &ids],
        )
        .await?
    {
        if let Some(x) = people.get_mut(&r.get::<_, i32>(0)) {
            x.died_on = Some(r.get(1));
        }
    }
    for r in c
        .query(
            "SELECT e.person_id, e.started_on, e.ended_on, e.result, h.discharged_on, e.aim_home
               FROM reablement_episodes e LEFT JOIN hospital_stays h ON h.id = e.hospital_stay_id
              WHERE e.organisation_id = ANY($1) AND e.person_id = ANY($2)
              ORDER BY e.person_id, e.started_on, e.id",
            &[&orgs, &ids],
        )
        .await?
    {
        if let Some(x) = people.get_mut(&r.get::<_, i32>(0)) {
            x.episodes
                .push((r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)));
        }
    }
    let mut plans: Vec<PlanInput> = Vec::new();
    for r in c
        .query(
            "SELECT pl.id, pl.person_id, pl.contract_id, pl.value_pence,
                    CASE WHEN pl.agreed_by_person_at IS NOT NULL AND pl.agreed_by_provider_at IS NOT NULL
                          AND pl.agreed_by_council_at IS NOT NULL
                         THEN (greatest(pl.agreed_by_person_at, pl.agreed_by_provider_at, pl.agreed_by_council_at)
                               AT TIME ZONE 'UTC')::date END,
                    o.id, o.payable, o.kind, o.target_date, o.achieved_on
               FROM outcome_plans pl JOIN plan_outcomes o ON o.plan_id = pl.id
              WHERE pl.organisation_id = ANY($1) AND pl.person_id = ANY($2)
                AND ($3::int IS NULL OR pl.contract_id = $3)
              ORDER BY pl.id, o.id",
            &[&orgs, &ids, &f.contract],
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
            });
        }
    }
    let mut populations = Vec::new();
    if let Some(comm) = f.population_of {
        for r in c
            .query(
                "SELECT age_group, population FROM commissioner_populations WHERE commissioner_id = $1 ORDER BY age_group",
                &[&comm],
            )
            .await?
        {
            populations.push((r.get(0), r.get(1)));
        }
    }
    Ok((
        Inputs {
            people: people.into_values().collect(),
            plans,
            populations,
        },
        ids,
        orgs,
    ))
}

/// Context, labelled as such: never an outcome, never a price.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Context {
    pub label: &'static str,
    pub visits: i64,
    pub visits_late: i64,
    pub punctual_share: Option<f64>,
    pub median_duration_minutes: Option<f64>,
    pub check_ins_verified_share: Option<f64>,
    pub care_alarms: i64,
    pub median_answer_secs: Option<f64>,
    pub answered_within_target_share: Option<f64>,
    pub median_on_site_minutes: Option<f64>,
    /// An activity measure, not an outcome.
    pub alarm_calls_resolved_without_ambulance: i64,
    pub alarm_calls_resolved_without_ambulance_label: &'static str,
}

/// The context figures of the people in scope over the period. Each comes from the module that
/// owns it, so a report and the API views agree: visits from [`crate::evv::figures`] (the
/// lateness rule `/v1/visits` shows), alarms from [`crate::alarms::figures`] (the definitions
/// of `/v1/alarms/response-times`: answer shares over calls, ambulance codes from the outcome
/// set).
async fn context(
    c: &impl GenericClient,
    ids: &[i32],
    orgs: &[i32],
    p: &Period,
    settings: &Settings<'_>,
) -> Result<Context, ApiError> {
    let (from, to) = (midnight(p.from), midnight(p.to));
    let v = crate::evv::figures::visit_figures(c, settings.visits, orgs, ids, from, to).await?;
    let selection = crate::alarms::figures::Selection {
        organisations: orgs,
        people: Some(ids),
        funded_by: None,
    };
    let a = crate::alarms::figures::figures(c, settings.alarms, selection, from, to).await?;
    Ok(Context {
        label: "context, not an outcome: never a price",
        visits: v.visits,
        visits_late: v.late,
        punctual_share: v.punctual_share,
        median_duration_minutes: v.median_duration_minutes,
        check_ins_verified_share: v.check_ins_verified_share,
        care_alarms: a.alarms,
        median_answer_secs: a.answer.median_secs,
        answered_within_target_share: a.answer.targets.first().and_then(|t| t.share),
        median_on_site_minutes: a.on_site.median_minutes,
        alarm_calls_resolved_without_ambulance: a.resolved_without_ambulance,
        alarm_calls_resolved_without_ambulance_label: "activity measure, not an outcome",
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct InputSummary {
    pub people: usize,
    pub service_periods: usize,
    pub falls: usize,
    pub hospital_stays: usize,
    pub reablement_episodes: usize,
    pub care_home_admissions: usize,
    pub plans: usize,
    /// SHA-256 of the input rows (and the settings used), hex.
    pub hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub method_version: &'static str,
    pub estimate_method: &'static str,
    pub scope: Scope,
    pub period: Period,
    pub inputs: InputSummary,
    pub indicators: Indicators,
    pub context: Context,
}

/// The hash of what a report reads: the rows, the settings, the period and the context
/// figures (aggregates of visits and alarms).
pub fn input_hash(inputs: &Inputs, s: &OutcomeSettings, p: &Period, context: &Context) -> String {
    let mut h = Sha256::new();
    h.update(METHOD_VERSION.as_bytes());
    for part in [
        serde_json::to_vec(inputs),
        serde_json::to_vec(s),
        serde_json::to_vec(p),
        serde_json::to_vec(context),
    ] {
        h.update(part.unwrap_or_default());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

pub struct Loaded {
    pub inputs: Inputs,
    pub people: Vec<i32>,
    pub orgs: Vec<i32>,
}

pub async fn load_scope(
    c: &impl GenericClient,
    caller: &Caller,
    scope: Scope,
    p: &Period,
    s: &OutcomeSettings,
) -> Result<Loaded, ApiError> {
    let f = filter_for(c, caller, scope).await?;
    let (inputs, people, orgs) = load(c, &f, p, s).await?;
    if let Scope::Person(id) = scope {
        if people.is_empty() {
            return Err(ApiError::NotFound(format!(
                "person {id} (with service in the period)"
            )));
        }
    }
    Ok(Loaded {
        inputs,
        people,
        orgs,
    })
}

/// The settings a report reads: its own, and those of the modules whose figures it shows as
/// context.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub outcomes: &'a OutcomeSettings,
    /// For the visit figures (what counts as late).
    pub visits: &'a crate::evv::EvvSettings,
    /// For the alarm figures (the answer target).
    pub alarms: &'a crate::alarms::AlarmSettings,
}

pub async fn build(
    c: &impl GenericClient,
    caller: &Caller,
    scope: Scope,
    p: Period,
    settings: Settings<'_>,
) -> Result<Report, ApiError> {
    let s = settings.outcomes;
    let loaded = load_scope(c, caller, scope, &p, s).await?;
    let context = context(c, &loaded.people, &loaded.orgs, &p, &settings).await?;
    let inputs = &loaded.inputs;
    let summary = InputSummary {
        people: inputs.people.len(),
        service_periods: inputs.people.iter().map(|x| x.periods.len()).sum(),
        falls: inputs.people.iter().map(|x| x.falls.len()).sum(),
        hospital_stays: inputs.people.iter().map(|x| x.stays.len()).sum(),
        reablement_episodes: inputs.people.iter().map(|x| x.episodes.len()).sum(),
        care_home_admissions: inputs.people.iter().map(|x| x.care_home.len()).sum(),
        plans: inputs.plans.len(),
        hash: input_hash(inputs, s, &p, &context),
    };
    Ok(Report {
        method_version: METHOD_VERSION,
        estimate_method: super::estimate::METHOD,
        scope,
        period: p,
        inputs: summary,
        indicators: measures::indicators(inputs, &p, s),
        context,
    })
}

fn fmt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.6}")).unwrap_or_default()
}

/// One row per figure: indicator, value, lower, upper, note.
pub fn to_csv(r: &Report) -> Result<String, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut row = |name: &str, v: Option<f64>, lo: Option<f64>, hi: Option<f64>, note: &str| {
        w.write_record([name, &fmt(v), &fmt(lo), &fmt(hi), note])
    };
    let i = &r.indicators;
    let res: Result<(), csv::Error> = (|| {
        row("indicator", None, None, None, "value,lower,upper,note")?;
        row(
            "report.period",
            None,
            None,
            None,
            &format!(
                "{} to {} (as of {})",
                r.period.from, r.period.to, r.period.as_of
            ),
        )?;
        row(
            "report.scope",
            r.scope.id().map(f64::from),
            None,
            None,
            r.scope.name(),
        )?;
        row("report.method_version", None, None, None, r.method_version)?;
        row("report.input_hash", None, None, None, &r.inputs.hash)?;
        row("falls.count", Some(i.falls.falls as f64), None, None, "")?;
        row(
            "falls.person_days",
            Some(i.falls.person_days as f64),
            None,
            None,
            "",
        )?;
        row(
            "falls.rate_per_1000_person_days",
            i.falls.rate_per_1000_person_days,
            i.falls.rate_interval.map(|x| x[0]),
            i.falls.rate_interval.map(|x| x[1]),
            "exact Poisson",
        )?;
        row(
            "falls.long_lies",
            Some(i.falls.long_lies as f64),
            None,
            None,
            "",
        )?;
        row(
            "falls.conveyed_to_hospital",
            Some(i.falls.conveyed_to_hospital as f64),
            None,
            None,
            "",
        )?;
        row(
            "falls.admitted_to_hospital",
            Some(i.falls.admitted_to_hospital as f64),
            None,
            None,
            "",
        )?;
        for (name, a) in [
            ("falls_avoided", &i.falls_avoided),
            ("admissions_avoided", &i.admissions_avoided),
        ] {
            row(
                name,
                Some(a.avoided),
                Some(a.interval[0]),
                Some(a.interval[1]),
                a.method,
            )?;
            row(
                &format!("{name}.expected"),
                Some(a.expected),
                Some(a.expected_interval[0]),
                Some(a.expected_interval[1]),
                "",
            )?;
            row(
                &format!("{name}.observed"),
                Some(a.observed as f64),
                Some(a.observed_interval[0]),
                Some(a.observed_interval[1]),
                "",
            )?;
        }
        let sh = &i.still_at_home_91_days;
        row(
            "ascof.still_at_home_91_days",
            sh.share.share,
            None,
            None,
            &format!(
                "{}/{}; pending {}",
                sh.share.numerator, sh.share.denominator, sh.pending
            ),
        )?;
        let st = &i.short_term_outcome;
        row(
            "ascof.short_term_no_further_or_lower_support",
            st.share.share,
            None,
            None,
            &format!("{}/{}", st.share.numerator, st.share.denominator),
        )?;
        for g in &i.permanent_care_home_admissions {
            row(
                &format!(
                    "ascof.permanent_care_home_admissions_per_100k.{}",
                    g.age_group
                ),
                g.per_100k,
                None,
                None,
                &format!(
                    "{} admissions; per year {}",
                    g.admissions,
                    fmt(g.per_100k_per_year)
                ),
            )?;
        }
        let pl = &i.outcome_plans;
        for (name, s) in [
            ("early", &pl.early),
            ("on_time", &pl.on_time),
            ("late", &pl.late),
            ("not_achieved", &pl.not_achieved),
        ] {
            row(
                &format!("plans.payable.{name}"),
                s.share,
                None,
                None,
                &format!("{}/{}", s.numerator, s.denominator),
            )?;
        }
        let c = &r.context;
        row("context.visits", Some(c.visits as f64), None, None, c.label)?;
        row(
            "context.visit_punctual_share",
            c.punctual_share,
            None,
            None,
            c.label,
        )?;
        row(
            "context.visit_median_duration_minutes",
            c.median_duration_minutes,
            None,
            None,
            c.label,
        )?;
        row(
            "context.check_ins_verified_share",
            c.check_ins_verified_share,
            None,
            None,
            c.label,
        )?;
        row(
            "context.alarm_median_answer_secs",
            c.median_answer_secs,
            None,
            None,
            c.label,
        )?;
        row(
            "context.alarm_answered_within_target_share",
            c.answered_within_target_share,
            None,
            None,
            c.label,
        )?;
        row(
            "context.alarm_median_on_site_minutes",
            c.median_on_site_minutes,
            None,
            None,
            c.label,
        )?;
        row(
            "context.alarm_calls_resolved_without_ambulance",
            Some(c.alarm_calls_resolved_without_ambulance as f64),
            None,
            None,
            c.alarm_calls_resolved_without_ambulance_label,
        )?;
        Ok(())
    })();
    res.map_err(|e| ApiError::Unexpected(e.into()))?;
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
    String::from_utf8(bytes).map_err(|e| ApiError::Unexpected(e.into()))
}

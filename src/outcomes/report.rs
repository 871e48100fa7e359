//! Reports: resolve a scope for the caller (tenant-filtered), load its rows, hash them, compute
//! the indicators (pure, in [`super::measures`]) and the context, and export as JSON or CSV.

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use super::load::{load, midnight, Filter};
use super::measures::{self, Indicators, Inputs, Period};
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

async fn filter_for(
    c: &impl GenericClient,
    caller: &Caller,
    scope: Scope,
) -> Result<Filter, ApiError> {
    let visibility = crate::auth::visibility(caller, c).await?;
    let commissioner = visibility.funded_by().is_some();
    let org = visibility.organisation();
    let mut f = Filter::default();
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
    /// Per outcome source (table name): how many records of the people in scope, as known,
    /// the provider and the commissioner recorded, and how many the commissioner verified or
    /// disputed.
    pub provenance: std::collections::BTreeMap<&'static str, super::load::Provenance>,
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
        // Not `known_at`: the same rows read at another moment hash the same.
        serde_json::to_vec(&(p.from, p.to, p.as_of)),
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

/// [`Settings`] as stored with a report, so that it can be computed again with the values in
/// force when it was produced, whatever the configuration is now.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StoredSettings {
    pub outcomes: OutcomeSettings,
    pub visits: crate::evv::EvvSettings,
    pub alarms: crate::alarms::AlarmSettings,
}

impl Settings<'_> {
    pub fn stored(&self) -> StoredSettings {
        StoredSettings {
            outcomes: self.outcomes.clone(),
            visits: self.visits.clone(),
            alarms: self.alarms.clone(),
        }
    }
}

impl StoredSettings {
    pub fn borrow(&self) -> Settings<'_> {
        Settings {
            outcomes: &self.outcomes,
            visits: &self.visits,
            alarms: &self.alarms,
        }
    }
}

/// A report with who it covers: the people in scope and their organisations.
pub struct Built {
    pub report: Report,
    pub people: Vec<i32>,
    pub orgs: Vec<i32>,
}

pub async fn build(
    c: &impl GenericClient,
    caller: &Caller,
    scope: Scope,
    p: Period,
    settings: Settings<'_>,
) -> Result<Report, ApiError> {
    Ok(build_for(c, caller, scope, p, settings).await?.report)
}

/// [`build`], keeping who the report covers.
pub async fn build_for(
    c: &impl GenericClient,
    caller: &Caller,
    scope: Scope,
    p: Period,
    settings: Settings<'_>,
) -> Result<Built, ApiError> {
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
        provenance: super::load::provenance(c, &loaded.orgs, &loaded.people, p.known_at).await?,
        hash: input_hash(inputs, s, &p, &context),
    };
    let report = Report {
        method_version: METHOD_VERSION,
        estimate_method: super::estimate::METHOD,
        scope,
        period: p,
        inputs: summary,
        indicators: measures::indicators(inputs, &p, s),
        context,
    };
    Ok(Built {
        report,
        people: loaded.people,
        orgs: loaded.orgs,
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
            (
                "care_home_admissions_avoided",
                &i.care_home_admissions_avoided,
            ),
        ] {
            row(
                name,
                a.avoided,
                a.interval.map(|x| x[0]),
                a.interval.map(|x| x[1]),
                &format!("{}; {}", a.label, a.method),
            )?;
            row(&format!("{name}.expected"), a.expected, None, None, "")?;
            row(
                &format!("{name}.observed"),
                Some(a.observed as f64),
                None,
                None,
                a.sources,
            )?;
            row(
                &format!("{name}.comparison_people"),
                Some(a.comparison_people as f64),
                None,
                None,
                "",
            )?;
            row(
                &format!("{name}.backfilled_after_enrolment"),
                Some(a.backfilled_after_enrolment as f64),
                None,
                None,
                "baseline rows first recorded after the service began: not counted",
            )?;
        }
        let share = |s: &measures::Share| {
            let note = format!("{}/{}", s.numerator, s.denominator);
            let note = if s.suppressed {
                format!(
                    "{note}; suppressed (denominator under {})",
                    measures::MIN_DENOMINATOR
                )
            } else {
                note
            };
            (
                s.share,
                s.interval.map(|x| x[0]),
                s.interval.map(|x| x[1]),
                note,
            )
        };
        let sh = &i.still_at_home_91_days;
        let (v, lo, hi, n) = share(&sh.share);
        row(
            "ascof.still_at_home_91_days",
            v,
            lo,
            hi,
            &format!(
                "{}; {n}; pending {}; unknown status {} (not at home); Wilson",
                sh.measure, sh.pending, sh.unknown_status
            ),
        )?;
        let st = &i.short_term_outcome;
        let (v, lo, hi, n) = share(&st.share);
        row(
            "ascof.short_term_outcome",
            v,
            lo,
            hi,
            &format!(
                "{}; {n}; pending {}; excluded: life event {}, declined {}, self-funded {}, existing clients {}; Wilson",
                st.measure,
                st.pending,
                st.excluded_life_event,
                st.excluded_declined,
                st.excluded_self_funded,
                st.existing_clients
            ),
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
                    "{}; {} admissions; transfers excluded {}; per year {}",
                    g.measure,
                    g.admissions,
                    g.transfers_excluded,
                    fmt(g.per_100k_per_year)
                ),
            )?;
        }
        let ir = &i.independence_regained;
        for (name, s) in [("at_end", &ir.at_end), ("at_91_days", &ir.at_91_days)] {
            let (v, lo, hi, n) = share(s);
            row(
                &format!("independence_regained.{name}"),
                v,
                lo,
                hi,
                &format!("{n}; Wilson"),
            )?;
        }
        let pl = &i.outcome_plans;
        for (kind, t) in [
            ("", None),
            ("reablement.", Some(&pl.reablement)),
            ("maintenance.", Some(&pl.maintenance)),
        ] {
            let (early, on_time, late, not_achieved, value, due, achieved) = match t {
                None => (
                    &pl.early,
                    &pl.on_time,
                    &pl.late,
                    &pl.not_achieved,
                    pl.value_share,
                    pl.value_due_pence,
                    pl.value_achieved_pence,
                ),
                Some(t) => (
                    &t.early,
                    &t.on_time,
                    &t.late,
                    &t.not_achieved,
                    t.value_share,
                    t.value_due_pence,
                    t.value_achieved_pence,
                ),
            };
            for (name, s) in [
                ("early", early),
                ("on_time", on_time),
                ("late", late),
                ("not_achieved", not_achieved),
            ] {
                let (v, lo, hi, n) = share(s);
                row(&format!("plans.payable.{kind}{name}"), v, lo, hi, &n)?;
            }
            row(
                &format!("plans.payable.{kind}value_achieved_share"),
                value,
                None,
                None,
                &format!("{achieved}/{due} pence"),
            )?;
        }
        for h in &i.hours_delivered.by_contract {
            row(
                &format!("context.hours_delivered.contract.{}", h.contract_id),
                Some(h.hours),
                None,
                None,
                &format!(
                    "{} verified visits; {}",
                    h.verified_visits, i.hours_delivered.label
                ),
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

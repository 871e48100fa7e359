//! Providers compared: `GET /v1/outcomes/funnel`, a commissioner's providers on one indicator
//! over one period, each from its own report (scope `provider`, so each provider's figures are
//! exactly those its report shows), with the funnel's limits ([`super::funnel`]). The console's
//! funnel plot draws this.
//!
//! For commissioners only: a provider sees only its own figures, and comparing it with
//! providers it cannot see would show theirs. (An auditor reads each provider's own report.)

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::funnel::{self, Band, Family, Limits};
use super::measures::Period;
use super::report::{self, Report, Scope};
use crate::auth::{Caller, OrgKind, Role};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(funnel_endpoint);
}

/// Who may compare providers.
pub const COMPARERS: &[Role] = &[Role::Commissioner];

/// An indicator a funnel compares: a rate with its exposure or a share with its denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    /// Falls per 1,000 person-days of service (`indicators.falls`).
    Falls,
    /// ASCOF 2D: at home 91 days after discharge to reablement.
    StillAtHome91Days,
    /// ASCOF 2A: short-term service with no or low-level further support.
    ShortTermOutcome,
    /// Payable plan outcomes achieved on time, of those due.
    PlanOutcomesOnTime,
}

impl Indicator {
    pub const ALL: [Self; 4] = [
        Self::Falls,
        Self::StillAtHome91Days,
        Self::ShortTermOutcome,
        Self::PlanOutcomesOnTime,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Falls => "falls",
            Self::StillAtHome91Days => "still_at_home_91_days",
            Self::ShortTermOutcome => "short_term_outcome",
            Self::PlanOutcomesOnTime => "plan_outcomes_on_time",
        }
    }

    /// In words.
    pub fn label(self) -> &'static str {
        match self {
            Self::Falls => "Falls per 1,000 days of service",
            Self::StillAtHome91Days => "At home 91 days after leaving hospital (ASCOF 2D)",
            Self::ShortTermOutcome => {
                "Short-term support with no or low-level support after (ASCOF 2A)"
            }
            Self::PlanOutcomesOnTime => "Outcomes in people's plans achieved on time",
        }
    }

    /// What the denominator counts, in words.
    pub fn denominator_label(self) -> &'static str {
        match self {
            Self::Falls => "days of service",
            Self::StillAtHome91Days => "people discharged",
            Self::ShortTermOutcome => "episodes ended",
            Self::PlanOutcomesOnTime => "outcomes due",
        }
    }

    pub fn family(self) -> Family {
        match self {
            Self::Falls => Family::Rate,
            _ => Family::Share,
        }
    }

    /// What a value is multiplied by to be shown: 1,000 for a rate per 1,000 days, 100 for a
    /// share shown as a percentage.
    pub fn shown_per(self) -> f64 {
        match self.family() {
            Family::Rate => 1000.0,
            Family::Share => 100.0,
        }
    }

    /// (numerator, denominator) in `r`.
    pub fn figures(self, r: &Report) -> (u64, f64) {
        let i = &r.indicators;
        let share = |s: &super::measures::Share| (s.numerator, s.denominator as f64);
        match self {
            Self::Falls => (i.falls.falls, i.falls.person_days as f64),
            Self::StillAtHome91Days => share(&i.still_at_home_91_days.share),
            Self::ShortTermOutcome => share(&i.short_term_outcome.share),
            Self::PlanOutcomesOnTime => share(&i.outcome_plans.on_time),
        }
    }
}

/// One provider in a funnel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderPoint {
    pub provider_id: i32,
    pub name: String,
    pub numerator: u64,
    /// Days of service (falls) or people or outcomes (shares).
    pub denominator: f64,
    /// `numerator / denominator` (per day for falls, a share otherwise); `null` when too few.
    pub value: Option<f64>,
    pub band: Band,
    /// The band in words.
    pub band_words: &'static str,
    /// The SHA-256 of the provider's report inputs, as its own report gives it.
    pub input_hash: String,
}

/// A funnel plot's data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderFunnel {
    pub indicator: Indicator,
    pub label: &'static str,
    pub denominator_label: &'static str,
    pub family: Family,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub as_of: NaiveDate,
    /// Whose knowledge the figures read.
    pub known_at: DateTime<Utc>,
    /// The pooled value of the providers compared.
    pub target: Option<f64>,
    pub providers: Vec<ProviderPoint>,
    /// Limits along the denominator, for drawing.
    pub curve: Vec<Limits>,
    pub method: &'static str,
}

pub const METHOD: &str = "funnel/1: target = pooled value of the providers compared; exact \
    Poisson (rates) or binomial (shares) limits at 95% and 99.8%, interpolated between whole \
    counts (Spiegelhalter 2005); not adjusted for case mix";

/// The funnel of `indicator` over `p` for the caller's (a commissioner's) providers.
pub async fn provider_funnel(
    c: &impl GenericClient,
    caller: &Caller,
    indicator: Indicator,
    p: Period,
    settings: report::Settings<'_>,
) -> Result<ProviderFunnel, ApiError> {
    caller.require(COMPARERS)?;
    if caller.organisation_kind != OrgKind::Commissioner {
        return Err(ApiError::Forbidden(
            "funnel plots compare providers for a commissioner; a provider reads its own report"
                .into(),
        ));
    }
    let visibility = crate::auth::visibility(caller, c).await?;
    let names = c
        .query(
            "SELECT id, name FROM organisations WHERE id = ANY($1) ORDER BY name, id",
            &[&visibility.providers()],
        )
        .await?;
    let mut figures = Vec::with_capacity(names.len());
    let mut points = Vec::with_capacity(names.len());
    for row in &names {
        let id: i32 = row.get(0);
        let r = report::build(c, caller, Scope::Provider(id), p, settings).await?;
        let (num, den) = indicator.figures(&r);
        figures.push((id, num, den));
        points.push((id, row.get::<_, String>(1), r.inputs.hash));
    }
    let f = funnel::funnel(indicator.family(), &figures);
    let providers = f
        .points
        .iter()
        .zip(points)
        .map(|(pt, (provider_id, name, input_hash))| ProviderPoint {
            provider_id,
            name,
            numerator: pt.numerator,
            denominator: pt.denominator,
            value: pt.value,
            band: pt.band,
            band_words: pt.band.words(),
            input_hash,
        })
        .collect();
    Ok(ProviderFunnel {
        indicator,
        label: indicator.label(),
        denominator_label: indicator.denominator_label(),
        family: f.family,
        from: p.from,
        to: p.to,
        as_of: p.as_of,
        known_at: p.known_at,
        target: f.target,
        providers,
        curve: f.curve,
        method: METHOD,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct FunnelQuery {
    /// The indicator compared.
    #[param(inline, value_type = Indicator)]
    indicator: String,
    /// The first day of the period; before `to`, at most three years before it.
    from: NaiveDate,
    /// The day after the period.
    to: NaiveDate,
    /// The day the figures are judged on, not before `to`; default 91 days after `to`, not
    /// after today.
    as_of: Option<NaiveDate>,
}

/// Parses an indicator's name, naming the parameter when it is not one.
pub fn indicator_param(s: &str) -> Result<Indicator, ApiError> {
    Indicator::parse(s).ok_or_else(|| {
        ApiError::invalid(
            "indicator",
            format!("one of {}", Indicator::ALL.map(Indicator::name).join(", ")),
        )
    })
}

/// The commissioner's providers compared on one indicator: each provider's numerator,
/// denominator and value from its own report for the period, the pooled target, where each
/// lies against the 95% and 99.8% limits, and the limits along the denominator for drawing a
/// funnel plot.
#[utoipa::path(
    operation_id = "get_provider_funnel",
    tag = "outcomes",
    params(FunnelQuery),
    responses(
        (status = 200, description = "The funnel: `providers` (with `band`), `target`, \
            `curve` (the limits at denominators along the plot) and the method.",
            body = ProviderFunnel),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/outcomes/funnel")]
async fn funnel_endpoint(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<FunnelQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(COMPARERS)?;
    let indicator = indicator_param(&q.indicator)?;
    let p = super::reports::period_of(q.from, q.to, q.as_of)?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let f = provider_funnel(&*tx, &caller, indicator, p, state.report_settings()).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(f))
}

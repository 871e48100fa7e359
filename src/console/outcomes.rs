//! Outcomes in the console: the organisation's contracts; per contract, the indicators with
//! their intervals over the last quarters (charts and the same figures as tables), response
//! times against the target, visits as context, the people's own feedback and the payment
//! statements (CSV); for a commissioner, the funnel plot comparing its providers.
//!
//! Every figure comes from the function behind the API's (`contracts::list`,
//! `report::build` with scope `contract`, `compare::provider_funnel`, `statements::issued_csv`),
//! so a page and the API always agree. Pages compute and show; they store nothing (the API's
//! report and statement endpoints store what they give out). People appear by pseudonym to a
//! commissioner, whose reading of their feedback is logged as the API's person-level views are.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{Datelike, Months, NaiveDate, Utc};
use serde::Deserialize;

use super::charts::{self, Bar, FunnelChart, FunnelPoint};
use super::error::html_response;
use super::{ConsoleError, ConsoleUser, Section};
use crate::auth::{OrgKind, Role};
use crate::http::{ApiError, AppState};
use crate::outcomes::compare::{self, Indicator};
use crate::outcomes::contracts::{self, ContractSummary, ContractsQuery};
use crate::outcomes::funnel::Family;
use crate::outcomes::measures::Share;
use crate::outcomes::report::{self, Report, Scope};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/outcomes", web::get().to(overview))
        .route("/outcomes/contracts/{id}", web::get().to(contract_page))
        .route("/outcomes/providers/{id}", web::get().to(provider_page))
        .route("/outcomes/funnel", web::get().to(funnel_page))
        .route(
            "/outcomes/statements/{id}.csv",
            web::get().to(statement_csv),
        )
        .route(
            "/outcomes/contracts/{id}/people.csv",
            web::get().to(people_csv),
        );
}

/// Who may open the outcome pages: as the API's reports.
pub const READERS: &[Role] = &[
    Role::ProviderAdmin,
    Role::ProviderStaff,
    Role::Commissioner,
    Role::Auditor,
];

/// How many complete quarters a contract's page shows before the current one.
const QUARTERS: usize = 4;

/// A quarter of the financial year (April to March), as councils report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quarter {
    pub from: NaiveDate,
    /// The day after.
    pub to: NaiveDate,
}

impl Quarter {
    /// The quarter holding `day`.
    pub fn of(day: NaiveDate) -> Self {
        let month0 = (day.month0() / 3) * 3;
        let from = NaiveDate::from_ymd_opt(day.year(), month0 + 1, 1).unwrap_or(day);
        Self {
            from,
            to: from + Months::new(3),
        }
    }

    pub fn before(self) -> Self {
        Self::of(self.from - chrono::Duration::days(1))
    }

    /// "Apr–Jun 2026".
    pub fn label(self) -> String {
        let last = self.to - chrono::Duration::days(1);
        format!(
            "{}–{} {}",
            self.from.format("%b"),
            last.format("%b"),
            last.year()
        )
    }

    /// The financial year's quarter: "2026-27 Q1".
    pub fn financial(self) -> String {
        let (year, q) = match self.from.month() {
            4..=6 => (self.from.year(), 1),
            7..=9 => (self.from.year(), 2),
            10..=12 => (self.from.year(), 3),
            _ => (self.from.year() - 1, 4),
        };
        format!("{year}-{:02} Q{q}", (year + 1) % 100)
    }
}

/// The last [`QUARTERS`] complete quarters and the current one, oldest first.
fn recent_quarters(today: NaiveDate) -> Vec<Quarter> {
    let mut q = Quarter::of(today);
    let mut all = vec![q];
    for _ in 0..QUARTERS {
        q = q.before();
        all.push(q);
    }
    all.reverse();
    all
}

/// A percentage or a rate in words: "42.0%".
fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

struct ContractRow {
    c: ContractSummary,
    /// The other party: the provider for a commissioner, the commissioner for a provider.
    party: String,
    ends: String,
}

#[derive(Template)]
#[template(path = "outcomes.html")]
struct OverviewPage {
    shell: super::Shell,
    organisation: String,
    organisation_id: i32,
    commissioner: bool,
    party_heading: &'static str,
    contracts: Vec<ContractRow>,
    more: bool,
    proposals: Vec<super::proposals::ProposalRow>,
    /// Commissioners: the form that proposes a contract.
    may_propose: bool,
    form_token: String,
    done: Option<String>,
    problem: Option<String>,
}

async fn overview(
    user: ConsoleUser,
    state: web::Data<AppState>,
    said: web::Query<super::error::Said>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(READERS)?;
    let commissioner = user.caller.organisation_kind == OrgKind::Commissioner;
    let c = state.db(&user.caller).await?;
    let page = contracts::list(
        &**c,
        &user.caller,
        &ContractsQuery {
            provider_id: None,
            on: None,
            after: None,
            limit: Some(1000),
        },
    )
    .await?;
    let rows = page
        .items
        .into_iter()
        .map(|c| ContractRow {
            party: if commissioner {
                c.provider_name.clone()
            } else {
                c.commissioner_name.clone()
            },
            ends: c
                .ends_on
                .map_or_else(|| "open-ended".to_owned(), |d| d.to_string()),
            c,
        })
        .collect();
    let page = OverviewPage {
        shell: user.shell("Outcomes", Section::Outcomes),
        organisation: user.organisation_name.clone(),
        organisation_id: user.caller.organisation_id,
        commissioner,
        party_heading: if commissioner {
            "Provider"
        } else {
            "Commissioner"
        },
        contracts: rows,
        more: page.next_after.is_some(),
        proposals: super::proposals::open_rows(&c, &user).await?,
        may_propose: user.caller.role == Role::Commissioner,
        form_token: user.form_token.clone(),
        done: said.done.clone(),
        problem: said.problem.clone(),
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// One row of a chart's table.
struct FigureRow {
    quarter: String,
    value: String,
    interval: String,
    counts: String,
}

/// A chart and the table of its figures.
struct Chart {
    id: &'static str,
    title: &'static str,
    note: &'static str,
    svg: String,
    rows: Vec<FigureRow>,
}

fn share_bar(q: Quarter, s: &Share) -> (Bar, FigureRow) {
    let bar = Bar {
        label: q.label(),
        value: s.share.map(|v| v * 100.0),
        interval: s.interval.map(|[a, b]| [a * 100.0, b * 100.0]),
        missing: if s.suppressed { "too few" } else { "none" },
    };
    let row = FigureRow {
        quarter: q.label(),
        value: if s.suppressed {
            "suppressed (under 5)".to_owned()
        } else {
            percent(s.share)
        },
        interval: s.interval.map_or_else(
            || "–".to_owned(),
            |[a, b]| format!("{} to {}", percent(Some(a)), percent(Some(b))),
        ),
        counts: format!("{} of {}", s.numerator, s.denominator),
    };
    (bar, row)
}

fn share_chart(
    id: &'static str,
    title: &'static str,
    note: &'static str,
    quarters: &[(Quarter, Report)],
    pick: impl Fn(&Report) -> &Share,
) -> Chart {
    let (bars, rows): (Vec<_>, Vec<_>) =
        quarters.iter().map(|(q, r)| share_bar(*q, pick(r))).unzip();
    Chart {
        id,
        title,
        note,
        svg: charts::intervals(id, title, "%", &bars),
        rows,
    }
}

fn falls_chart(quarters: &[(Quarter, Report)]) -> Chart {
    let title = "Falls per 1,000 days of service";
    let (bars, rows): (Vec<_>, Vec<_>) = quarters
        .iter()
        .map(|(q, r)| {
            let f = &r.indicators.falls;
            let bar = Bar {
                label: q.label(),
                value: f.rate_per_1000_person_days,
                interval: f.rate_interval,
                missing: "no days of service",
            };
            let row = FigureRow {
                quarter: q.label(),
                value: f
                    .rate_per_1000_person_days
                    .map_or_else(|| "–".to_owned(), |v| format!("{v:.2}")),
                interval: f
                    .rate_interval
                    .map_or_else(|| "–".to_owned(), |[a, b]| format!("{a:.2} to {b:.2}")),
                counts: format!(
                    "{} falls in {} days; {} long lies",
                    f.falls, f.person_days, f.long_lies
                ),
            };
            (bar, row)
        })
        .unzip();
    Chart {
        id: "falls",
        title,
        note: "Falls raised by alarms, over the days each person was served. Alarms miss some falls, so this undercounts. Lower is better.",
        svg: charts::intervals("falls", title, "", &bars),
        rows,
    }
}

/// One quarter's avoided figures and context, as a table row.
struct QuarterContext {
    quarter: String,
    falls_avoided: String,
    admissions_avoided: String,
    design: &'static str,
    care_alarms: i64,
    median_answer: String,
    within_target: String,
    visits: i64,
    visits_late: i64,
    punctual: String,
}

fn avoided(a: &crate::outcomes::measures::Avoided) -> String {
    match (a.avoided, a.interval) {
        (Some(v), Some([lo, hi])) => format!("{v:.1} ({lo:.1} to {hi:.1})"),
        (Some(v), None) => format!("{v:.1}"),
        _ => "not estimated".to_owned(),
    }
}

fn context_row(q: Quarter, r: &Report) -> QuarterContext {
    let i = &r.indicators;
    let x = &r.context;
    QuarterContext {
        quarter: q.label(),
        falls_avoided: avoided(&i.falls_avoided),
        admissions_avoided: avoided(&i.admissions_avoided),
        design: i.falls_avoided.label,
        care_alarms: x.care_alarms,
        median_answer: x
            .median_answer_secs
            .map_or_else(|| "–".to_owned(), |s| format!("{s:.0} seconds")),
        within_target: percent(x.answered_within_target_share),
        visits: x.visits,
        visits_late: x.visits_late,
        punctual: percent(x.punctual_share),
    }
}

struct StatementRow {
    id: i64,
    period: String,
    total: String,
    issued_at: String,
}

struct FeedbackRow {
    at: String,
    person: String,
    outcome: String,
    answer: &'static str,
    feedback: String,
}

#[derive(Template)]
#[template(path = "contract.html")]
struct ContractPage {
    shell: super::Shell,
    c: ContractSummary,
    ends: String,
    commissioner: bool,
    charts: Vec<Chart>,
    context: Vec<QuarterContext>,
    answer_target_secs: u32,
    statements: Vec<StatementRow>,
    feedback: Vec<FeedbackRow>,
    exceptions: Vec<ExceptionRow>,
    today: String,
    /// The quarters whose person-level data can be downloaded, newest first.
    quarters: Vec<Choice>,
}

/// The contract `id` of the caller's organisation, or `NotFound`.
async fn find_contract(
    c: &impl tokio_postgres::GenericClient,
    user: &ConsoleUser,
    id: &str,
) -> Result<ContractSummary, ConsoleError> {
    let id: i32 = id.parse().map_err(|_| ConsoleError::NotFound)?;
    // The page of contracts after `id - 1` starts with `id` when it is the caller's.
    let page = contracts::list(
        c,
        &user.caller,
        &ContractsQuery {
            provider_id: None,
            on: None,
            after: Some(id.saturating_sub(1)),
            limit: Some(1),
        },
    )
    .await?;
    page.items
        .into_iter()
        .find(|k| k.id == id)
        .ok_or(ConsoleError::NotFound)
}

/// Reports of `scope` for each of the recent quarters that overlap `(starts_on, ends_on)`, the
/// current one to date.
async fn quarter_reports(
    c: &impl tokio_postgres::GenericClient,
    user: &ConsoleUser,
    state: &AppState,
    scope: Scope,
    (starts_on, ends_on): (NaiveDate, Option<NaiveDate>),
) -> Result<Vec<(Quarter, Report)>, ConsoleError> {
    let today = Utc::now().date_naive();
    let mut quarters = Vec::new();
    for q in recent_quarters(today) {
        if q.to <= starts_on || ends_on.is_some_and(|e| q.from > e) {
            continue;
        }
        let p = crate::outcomes::reports::period_of(
            q.from,
            q.to.min(today + chrono::Duration::days(1)),
            None,
        )?;
        let r = report::build(c, &user.caller, scope, p, state.report_settings()).await?;
        quarters.push((q, r));
    }
    Ok(quarters)
}

/// The four indicator charts of a contract's or a provider's page.
fn figure_charts(quarters: &[(Quarter, Report)]) -> Vec<Chart> {
    vec![
        falls_chart(quarters),
        share_chart(
            "at-home",
            "At home 91 days after leaving hospital (ASCOF 2D)",
            "People 65 and over discharged to reablement who were at home 91 days later. Higher is better.",
            quarters,
            |r| &r.indicators.still_at_home_91_days.share,
        ),
        share_chart(
            "short-term",
            "Short-term support with no or low-level support after (ASCOF 2A)",
            "Episodes of short-term support that ended with no further or only low-level support. Higher is better.",
            quarters,
            |r| &r.indicators.short_term_outcome.share,
        ),
        share_chart(
            "plans",
            "Outcomes in people's plans achieved on time",
            "Payable \"I can\" outcomes due in the quarter that the person confirmed and the council verified by their date. Higher is better.",
            quarters,
            |r| &r.indicators.outcome_plans.on_time,
        ),
    ]
}

#[derive(Template)]
#[template(path = "provider_outcomes.html")]
struct ProviderPage {
    shell: super::Shell,
    provider_name: String,
    /// The contracts it covers (a commissioner's with this provider, or a provider's all).
    contracts: Vec<ContractSummary>,
    commissioner: bool,
    charts: Vec<Chart>,
    context: Vec<QuarterContext>,
    answer_target_secs: u32,
    exceptions: Vec<ExceptionRow>,
    today: String,
}

/// A provider's outcomes across every contract the caller's organisation has with it (a
/// commissioner), or across all its own (a provider, for itself only): the report of scope
/// `provider`, quarter by quarter, with the same charts and tables as a contract's page.
async fn provider_page(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(READERS)?;
    let provider: i32 = id.parse().map_err(|_| ConsoleError::NotFound)?;
    let commissioner = user.caller.organisation_kind == OrgKind::Commissioner;
    let mut client = state.db(&user.caller).await?;
    let tx = client.transaction().await?;
    let listed = contracts::list(
        &*tx,
        &user.caller,
        &ContractsQuery {
            provider_id: Some(provider),
            on: None,
            after: None,
            limit: Some(1000),
        },
    )
    .await?
    .items;
    // Only a provider the caller contracts, or the caller itself.
    let first = listed.first().ok_or(ConsoleError::NotFound)?;
    if !commissioner && provider != user.caller.organisation_id {
        return Err(ConsoleError::NotFound);
    }
    let provider_name = first.provider_name.clone();
    let starts_on = listed.iter().map(|k| k.starts_on).min().unwrap_or_default();
    let ends_on = if listed.iter().any(|k| k.ends_on.is_none()) {
        None
    } else {
        listed.iter().filter_map(|k| k.ends_on).max()
    };
    let quarters = quarter_reports(
        &*tx,
        &user,
        &state,
        Scope::Provider(provider),
        (starts_on, ends_on),
    )
    .await?;
    tx.commit().await?;
    drop(client);
    let page = ProviderPage {
        shell: user.shell(format!("Outcomes of {provider_name}"), Section::Outcomes),
        provider_name,
        contracts: listed,
        commissioner,
        charts: figure_charts(&quarters),
        context: quarters.iter().map(|(q, r)| context_row(*q, r)).collect(),
        answer_target_secs: state.settings.alarms.answer_target_secs,
        exceptions: exceptions(&state, &user, provider).await?,
        today: Utc::now().date_naive().to_string(),
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// Most feedback shown on a contract's page.
const MAX_FEEDBACK: i64 = 50;

async fn contract_page(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(READERS)?;
    let commissioner = user.caller.organisation_kind == OrgKind::Commissioner;
    let mut client = state.db(&user.caller).await?;
    let tx = client.transaction().await?;
    let k = find_contract(&*tx, &user, &id).await?;
    let today = Utc::now().date_naive();
    let quarters = quarter_reports(
        &*tx,
        &user,
        &state,
        Scope::Contract(k.id),
        (k.starts_on, k.ends_on),
    )
    .await?;
    let charts = figure_charts(&quarters);
    let context = quarters.iter().map(|(q, r)| context_row(*q, r)).collect();
    let statements = tx
        .query(
            "SELECT id, period_from, period_to, total_pence, issued_at FROM payment_statements
              WHERE contract_id = $1 ORDER BY period_from DESC, id DESC LIMIT 100",
            &[&k.id],
        )
        .await?
        .iter()
        .map(|r| {
            let pence: i64 = r.get(3);
            let to: NaiveDate = r.get(2);
            StatementRow {
                id: r.get(0),
                period: format!(
                    "{} to {}",
                    r.get::<_, NaiveDate>(1),
                    to - chrono::Duration::days(1)
                ),
                total: pounds(pence),
                issued_at: r
                    .get::<_, chrono::DateTime<Utc>>(4)
                    .format("%-d %b %Y")
                    .to_string(),
            }
        })
        .collect();
    let feedback = feedback(&*tx, &user, k.id, commissioner).await?;
    tx.commit().await?;
    drop(client);
    let exceptions = exceptions(&state, &user, k.provider_id).await?;
    let page = ContractPage {
        shell: user.shell(format!("Contract {}", k.reference), Section::Outcomes),
        ends: k
            .ends_on
            .map_or_else(|| "open-ended".to_owned(), |d| d.to_string()),
        c: k,
        commissioner,
        charts,
        context,
        answer_target_secs: state.settings.alarms.answer_target_secs,
        statements,
        feedback,
        exceptions,
        today: today.to_string(),
        quarters: quarters
            .iter()
            .rev()
            .map(|(q, _)| Choice {
                value: q.from.to_string(),
                label: format!("{} ({})", q.label(), q.financial()),
                selected: false,
            })
            .collect(),
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// A visit exception as the contract page lists it.
struct ExceptionRow {
    at: String,
    /// A pseudonym to a commissioner.
    person: String,
    what: &'static str,
    status: &'static str,
}

/// How many days of visit exceptions the contract page lists.
const EXCEPTION_DAYS: i64 = 31;

/// The provider's visit exceptions of the last [`EXCEPTION_DAYS`] days, resolved or not, newest
/// first: those of `GET /v1/visits/exceptions` (people by pseudonym to a commissioner, whose
/// reading is logged), kept to the contract's provider.
async fn exceptions(
    state: &AppState,
    user: &ConsoleUser,
    provider: i32,
) -> Result<Vec<ExceptionRow>, ConsoleError> {
    let client = state.db(&user.caller).await?;
    let to = Utc::now();
    let from = to - chrono::Duration::days(EXCEPTION_DAYS);
    let mut items =
        crate::evv::exceptions_between(state, &user.caller, &client, (from, to), true).await?;
    items.retain(|e| e.provider_id == provider);
    items.sort_by_key(|e| std::cmp::Reverse(e.at));
    let times: Vec<_> = items.iter().filter_map(|e| e.at).collect();
    let clock =
        super::people::Clock::load(&client, &state.settings.alarms.timezone, &times).await?;
    Ok(items
        .into_iter()
        .map(|e| ExceptionRow {
            at: e.at.map_or_else(|| "–".to_owned(), |t| clock.full(t)),
            person: e.person.unwrap_or_else(|| "unknown".to_owned()),
            what: super::people::exception_words(e.kind),
            status: if e.resolved { "Resolved" } else { "Open" },
        })
        .collect())
}

/// "£1,234.56".
fn pounds(pence: i64) -> String {
    let sign = if pence < 0 { "−" } else { "" };
    let p = pence.unsigned_abs();
    let whole = (p / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}£{grouped}.{:02}", p % 100)
}

/// The people's answers with feedback for outcomes of plans under contract `contract`, newest
/// first; by pseudonym for a commissioner (whose reading is logged).
async fn feedback(
    c: &impl tokio_postgres::GenericClient,
    user: &ConsoleUser,
    contract: i32,
    commissioner: bool,
) -> Result<Vec<FeedbackRow>, ConsoleError> {
    let rows = c
        .query(
            "SELECT k.confirmed_at, CASE WHEN $2 THEN p.pseudonym ELSE p.display_name END,
                    o.statement, k.answer, k.feedback
               FROM plan_outcome_confirmations k
               JOIN plan_outcomes o ON o.id = k.outcome_id
               JOIN outcome_plans pl ON pl.id = o.plan_id
               JOIN people p ON p.id = pl.person_id
              WHERE pl.contract_id = $1 AND k.feedback IS NOT NULL
              ORDER BY k.confirmed_at DESC, k.id DESC LIMIT $3",
            &[&contract, &commissioner, &MAX_FEEDBACK],
        )
        .await?;
    if !rows.is_empty() {
        crate::audit::read_by_commissioner(
            c,
            &user.caller,
            "console.contract_feedback",
            serde_json::json!({"contract_id": contract, "rows": rows.len()}),
        )
        .await?;
    }
    Ok(rows
        .iter()
        .map(|r| FeedbackRow {
            at: r
                .get::<_, chrono::DateTime<Utc>>(0)
                .format("%-d %b %Y")
                .to_string(),
            person: r.get(1),
            outcome: r.get(2),
            answer: if r.get::<_, &str>(3) == "yes" {
                "Yes, I can do this now"
            } else {
                "Not yet"
            },
            feedback: r.get(4),
        })
        .collect())
}

#[derive(Deserialize)]
struct FunnelQuery {
    indicator: Option<String>,
    /// A quarter's first day (`2026-04-01`); default the last complete quarter.
    quarter: Option<NaiveDate>,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

struct ProviderRow {
    number: usize,
    name: String,
    value: String,
    counts: String,
    band: &'static str,
}

#[derive(Template)]
#[template(path = "funnel.html")]
struct FunnelPage {
    shell: super::Shell,
    indicators: Vec<Choice>,
    quarters: Vec<Choice>,
    title: String,
    period: String,
    svg: Option<String>,
    target: String,
    providers: Vec<ProviderRow>,
    method: &'static str,
}

async fn funnel_page(
    user: ConsoleUser,
    state: web::Data<AppState>,
    q: web::Query<FunnelQuery>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(compare::COMPARERS)?;
    let indicator = match q.indicator.as_deref() {
        None | Some("") => Indicator::Falls,
        Some(s) => compare::indicator_param(s)?,
    };
    let today = Utc::now().date_naive();
    let choices = recent_quarters(today);
    let default = choices[choices.len() - 2];
    let quarter = match q.quarter {
        None => default,
        Some(d) => *choices
            .iter()
            .find(|c| c.from == d)
            .ok_or_else(|| ConsoleError::BadForm("Choose one of the quarters listed.".into()))?,
    };
    let p = crate::outcomes::reports::period_of(
        quarter.from,
        quarter.to.min(today + chrono::Duration::days(1)),
        None,
    )?;
    let mut client = state.db(&user.caller).await?;
    let tx = client.transaction().await?;
    let f =
        compare::provider_funnel(&*tx, &user.caller, indicator, p, state.report_settings()).await?;
    tx.commit().await?;
    let per = indicator.shown_per();
    let unit = match indicator.family() {
        Family::Rate => "",
        Family::Share => "%",
    };
    let shown = |v: f64| match indicator.family() {
        Family::Rate => format!("{:.2}", v * per),
        Family::Share => format!("{:.1}%", v * per),
    };
    let providers: Vec<ProviderRow> = f
        .providers
        .iter()
        .enumerate()
        .map(|(i, pt)| ProviderRow {
            number: i + 1,
            name: pt.name.clone(),
            value: pt.value.map_or_else(|| "–".to_owned(), shown),
            counts: format!(
                "{} of {} {}",
                pt.numerator,
                charts::number(pt.denominator),
                f.denominator_label
            ),
            band: pt.band_words,
        })
        .collect();
    let points: Vec<FunnelPoint> = f
        .providers
        .iter()
        .enumerate()
        .filter_map(|(i, pt)| {
            Some(FunnelPoint {
                number: i + 1,
                denominator: pt.denominator,
                value: pt.value? * per,
            })
        })
        .collect();
    let svg = f.target.map(|target| {
        charts::funnel(&FunnelChart {
            id: "funnel",
            title: &format!("Funnel plot: {}", f.label),
            x_label: f.denominator_label,
            unit,
            per,
            target,
            curve: &f.curve,
            points: &points,
        })
    });
    let page = FunnelPage {
        shell: user.shell("Providers compared", Section::Outcomes),
        indicators: Indicator::ALL
            .iter()
            .map(|i| Choice {
                value: i.name().to_owned(),
                label: i.label().to_owned(),
                selected: *i == indicator,
            })
            .collect(),
        quarters: choices
            .iter()
            .rev()
            .map(|c| Choice {
                value: c.from.to_string(),
                label: format!("{} ({})", c.label(), c.financial()),
                selected: *c == quarter,
            })
            .collect(),
        title: f.label.to_owned(),
        period: format!(
            "{} ({}), as known on {}",
            quarter.label(),
            quarter.financial(),
            today
        ),
        svg,
        target: f.target.map_or_else(|| "–".to_owned(), shown),
        providers,
        method: compare::METHOD,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

async fn statement_csv(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(READERS)?;
    let id: i64 = id.parse().map_err(|_| ConsoleError::NotFound)?;
    let c = state.db(&user.caller).await?;
    crate::outcomes::statements::issued_csv(&**c, &user.caller, id)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => ConsoleError::NotFound,
            e => e.into(),
        })
}

#[derive(Deserialize)]
struct PeopleQuery {
    /// A quarter's first day, one of the contract page's.
    quarter: NaiveDate,
}

/// The contract's person-level data for a quarter, pseudonymised (as
/// `GET /v1/outcomes/export?scope=contract`).
async fn people_csv(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<PeopleQuery>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(READERS)?;
    let today = Utc::now().date_naive();
    let quarter = recent_quarters(today)
        .into_iter()
        .find(|c| c.from == q.quarter)
        .ok_or_else(|| ConsoleError::BadForm("Choose one of the quarters listed.".into()))?;
    let mut client = state.db(&user.caller).await?;
    let tx = client.transaction().await?;
    let k = find_contract(&*tx, &user, &id).await?;
    let p = crate::outcomes::reports::period_of(
        quarter.from,
        quarter.to.min(today + chrono::Duration::days(1)),
        None,
    )?;
    let (bytes, rows) = crate::outcomes::export::csv(
        &*tx,
        &user.caller,
        Scope::Contract(k.id),
        &p,
        state.report_settings(),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("X-Rows", rows.to_string()))
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"people-{}-{}.csv\"",
                k.reference
                    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
                quarter.from
            ),
        ))
        .body(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn quarters_follow_the_financial_year() {
        let q = Quarter::of(day(2026, 12, 2));
        assert_eq!((q.from, q.to), (day(2026, 10, 1), day(2027, 1, 1)));
        assert_eq!(q.label(), "Oct–Dec 2026");
        assert_eq!(q.financial(), "2026-27 Q3");
        assert_eq!(Quarter::of(day(2027, 2, 28)).financial(), "2026-27 Q4");
        assert_eq!(Quarter::of(day(2026, 4, 1)).financial(), "2026-27 Q1");
        let all = recent_quarters(day(2026, 12, 2));
        assert_eq!(all.len(), QUARTERS + 1);
        assert_eq!(all[0].from, day(2025, 10, 1));
        assert_eq!(all[4].from, day(2026, 10, 1));
        assert!(all.windows(2).all(|w| w[0].to == w[1].from));
    }

    #[test]
    fn money_in_pounds() {
        assert_eq!(pounds(0), "£0.00");
        assert_eq!(pounds(12_345_678), "£123,456.78");
        assert_eq!(pounds(-100_000), "−£1,000.00");
        assert_eq!(pounds(99), "£0.99");
    }
}

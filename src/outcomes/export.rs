//! The person-level export, pseudonymised: `GET /v1/outcomes/export`, one CSV row per person
//! in a report's scope over its period, from the very rows the report reads
//! ([`super::report::load_scope`]), so a commissioner can check a figure person by person or
//! join it to its own records by pseudonym. Never a name, a reference, an address or a date of
//! birth: the person's pseudonym, an age band, months rather than days for the service's
//! start and end, and counts.
//!
//! A commissioner's reading is logged (`person_data.read`), as its other person-level views are.

use actix_web::{get, web, HttpResponse};
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use tokio_postgres::GenericClient;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use super::measures::{age_on, Inputs, Period, PersonInput};
use super::report::{self, Scope};
use super::routes::READERS;
use crate::auth::Caller;
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(export);
}

/// The columns, in order.
pub const COLUMNS: [&str; 14] = [
    "pseudonym",
    "age_band",
    "service_from_month",
    "service_to_month",
    "days_at_risk",
    "alarm_falls",
    "long_lies",
    "recorded_falls",
    "hospital_admissions",
    "emergency_admissions",
    "permanent_care_home_admission",
    "died",
    "plan_outcomes_due",
    "plan_outcomes_achieved_verified",
];

/// An age band on `day`: `18-64`, `65-74`, `75-84`, `85+`, or `unknown`.
fn age_band(dob: Option<NaiveDate>, day: NaiveDate) -> &'static str {
    match dob.map(|d| age_on(d, day)) {
        None => "unknown",
        Some(a) if a < 65 => "18-64",
        Some(a) if a < 75 => "65-74",
        Some(a) if a < 85 => "75-84",
        Some(_) => "85+",
    }
}

fn month(d: NaiveDate) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// One person's row (without the pseudonym, which the caller looks up).
pub fn row(x: &PersonInput, inputs: &Inputs, p: &Period) -> Vec<String> {
    let in_period = |d: NaiveDate| d >= p.from && d < p.to;
    let falls: Vec<_> = x.falls.iter().filter(|f| x.at_risk(f.0, p)).collect();
    let (due, achieved) = inputs
        .plans
        .iter()
        .filter(|plan| plan.person_id == x.person_id)
        .flat_map(|plan| plan.outcomes.iter())
        .filter(|o| o.payable && in_period(o.target_date))
        .fold((0, 0), |(due, ok), o| {
            (
                due + 1,
                ok + usize::from(o.verified_achievement().is_some_and(|d| d <= p.as_of)),
            )
        });
    vec![
        age_band(x.date_of_birth, p.from).to_owned(),
        x.service_start().map(month).unwrap_or_default(),
        x.periods
            .iter()
            .map(|s| s.1)
            .collect::<Option<Vec<_>>>()
            .and_then(|ends| ends.into_iter().max())
            .map(month)
            .unwrap_or_default(),
        x.days_at_risk(p).to_string(),
        falls.len().to_string(),
        falls.iter().filter(|f| f.1).count().to_string(),
        x.recorded_falls
            .iter()
            .filter(|f| in_period(f.0))
            .count()
            .to_string(),
        x.stays
            .iter()
            .filter(|s| in_period(s.1))
            .count()
            .to_string(),
        x.admissions
            .iter()
            .filter(|a| a.emergency && in_period(a.admitted_on))
            .count()
            .to_string(),
        yes_no(
            x.care_home
                .iter()
                .any(|c| c.permanent && in_period(c.admitted_on)),
        ),
        yes_no(x.died_on.is_some_and(in_period)),
        due.to_string(),
        achieved.to_string(),
    ]
}

/// The export as CSV bytes (cells a spreadsheet would read as a formula made text).
pub async fn csv(
    c: &impl GenericClient,
    caller: &Caller,
    scope: Scope,
    p: &Period,
    settings: report::Settings<'_>,
) -> Result<(Vec<u8>, usize), ApiError> {
    caller.require(READERS)?;
    let loaded = report::load_scope(c, caller, scope, p, settings.outcomes).await?;
    let ids: Vec<i32> = loaded.inputs.people.iter().map(|x| x.person_id).collect();
    let pseudonyms: std::collections::HashMap<i32, String> = c
        .query(
            "SELECT id, pseudonym FROM people WHERE id = ANY($1)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut rows: Vec<Vec<String>> = loaded
        .inputs
        .people
        .iter()
        .map(|x| {
            let mut r = vec![pseudonyms.get(&x.person_id).cloned().unwrap_or_default()];
            r.extend(row(x, &loaded.inputs, p));
            r
        })
        .collect();
    // By pseudonym: an order that says nothing about who was served first.
    rows.sort();
    let write = (|| -> Result<(), csv::Error> {
        w.write_record(COLUMNS)?;
        for r in &rows {
            w.write_record(r)?;
        }
        Ok(())
    })();
    write.map_err(|e| ApiError::Unexpected(e.into()))?;
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
    crate::audit::read_by_commissioner(
        c,
        caller,
        "outcomes_export",
        serde_json::json!({"scope": scope, "from": p.from, "to": p.to, "rows": rows.len()}),
    )
    .await?;
    Ok((super::reports::safe_csv(&bytes)?, rows.len()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `provider` (default), `contract` or `population` (commissioners).
    pub scope: Option<String>,
    /// The provider or contract of the scope; a provider's own by default.
    pub id: Option<i32>,
    /// The first day of the period; before `to`, at most three years before it.
    pub from: NaiveDate,
    /// The day after the period.
    pub to: NaiveDate,
    /// The day plan outcomes are judged on, not before `to`; default 91 days after `to`, not
    /// after today.
    pub as_of: Option<NaiveDate>,
}

/// The scope of an export: as a report's, but never one person.
pub fn scope_of(caller: &Caller, q: &ExportQuery) -> Result<Scope, ApiError> {
    let kind = q.scope.as_deref().unwrap_or("provider");
    if kind == "person" {
        return Err(ApiError::invalid(
            "scope",
            "one of provider, contract, population (a person's data is not exported alone)",
        ));
    }
    let own = (caller.organisation_kind == crate::auth::OrgKind::Provider && kind == "provider")
        .then_some(caller.organisation_id);
    Scope::parse(kind, q.id.or(own))
}

/// Person-level data of a report's scope over its period, pseudonymised, as CSV: one row per
/// person (by pseudonym) with an age band, the months their service started and ended, days at
/// risk, falls (alarm and recorded), long lies, hospital and emergency admissions, a permanent
/// care-home admission, death, and payable plan outcomes due and achieved (confirmed by the
/// person, verified by the council).
#[utoipa::path(
    operation_id = "export_outcomes_people",
    tag = "outcomes",
    params(ExportQuery),
    responses(
        (status = 200, description = "The CSV; `X-Rows` is the number of people.",
            content((String = "text/csv")),
            headers(("X-Rows" = i64, description = "The number of people."))),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[get("/v1/outcomes/export")]
async fn export(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let scope = scope_of(&caller, &q)?;
    let p = super::reports::period_of(q.from, q.to, q.as_of)?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let (bytes, rows) = csv(&*tx, &caller, scope, &p, state.report_settings()).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("X-Rows", rows.to_string()))
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"people-{}-{}.csv\"", p.from, p.to),
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
    fn a_row_counts_what_happened_in_the_period_and_names_no_one() {
        let p = Period {
            from: day(2026, 4, 1),
            to: day(2026, 7, 1),
            as_of: day(2026, 9, 1),
            known_at: chrono::Utc::now(),
        };
        let x = PersonInput {
            person_id: 7,
            date_of_birth: Some(day(1944, 8, 9)),
            periods: vec![(day(2025, 11, 3), None, None)],
            falls: vec![
                (day(2026, 5, 1), true, None),
                (day(2026, 5, 9), false, None),
                // Before the period.
                (day(2026, 3, 9), false, None),
            ],
            recorded_falls: vec![(day(2026, 6, 2), chrono::Utc::now())],
            stays: vec![(1, day(2026, 6, 10), Some(day(2026, 6, 12)))],
            ..PersonInput::default()
        };
        let inputs = Inputs::default();
        let r = row(&x, &inputs, &p);
        assert_eq!(r.len(), COLUMNS.len() - 1);
        assert_eq!(r[0], "75-84");
        assert_eq!((r[1].as_str(), r[2].as_str()), ("2025-11", ""));
        // 91 days less the two in hospital after the admission day.
        assert_eq!(r[3], "89");
        assert_eq!(
            (r[4].as_str(), r[5].as_str(), r[6].as_str()),
            ("2", "1", "1")
        );
        assert_eq!((r[7].as_str(), r[8].as_str()), ("1", "0"));
        assert_eq!((r[9].as_str(), r[10].as_str()), ("no", "no"));
        assert_eq!(age_band(None, p.from), "unknown");
        assert_eq!(age_band(Some(day(1970, 1, 1)), p.from), "18-64");
    }
}

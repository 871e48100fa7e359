//! Today's visits for the office: missed visits, exceptions to resolve, and every visit of the
//! day (planned and actual times, verified or not, late), and a visit's page with its
//! adjustments and the form to record one.
//!
//! - "Today" is the calendar day in the configured time zone (`alarms.timezone`).
//! - The lists are the API's: `GET /v1/visits` ([`crate::evv::visits_between`]),
//!   `GET /v1/visits/exceptions` ([`crate::evv::exceptions_between`]) and
//!   `GET /v1/missed-visits` ([`crate::evv::missed_alerts`]); the visit is
//!   `GET /v1/visits/{id}` ([`crate::evv::visit_detail`]).
//! - The adjustment form is applied by [`crate::evv::apply_adjustment`], the function behind
//!   `POST /v1/visits/{id}/adjustments`: the same reason codes, checks, audit row and
//!   re-derivation. Times are typed in local time and converted by the database, which knows
//!   the zone's rules. Then back to the visit's page (Post/Redirect/Get).
//! - Provider admins and staff, as the API's writers; another organisation's visit is a page
//!   that does not exist (404), and so is its form.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::error::html_response;
use super::people::{exception_words, visit_details, Clock};
use super::{see_other, ConsoleError, ConsoleUser, Section, Shell};
use crate::evv::geofence::Verdict;
use crate::evv::view::VisitView;
use crate::evv::{AdjustmentReason, NewAdjustment};
use crate::http::{ApiError, AppState};
use crate::people::EDITORS;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/visits", web::get().to(today))
        .route("/visits/{id}", web::get().to(show))
        .route("/visits/{id}/adjustments", web::post().to(adjust));
}

/// A reason code in words, for the adjustment form.
fn reason_label(reason: AdjustmentReason) -> &'static str {
    match reason {
        AdjustmentReason::ForgotCheckIn => "The worker forgot to check in",
        AdjustmentReason::ForgotCheckOut => "The worker forgot to check out",
        AdjustmentReason::DeviceFailure => "The phone failed",
        AdjustmentReason::NoSignal => "No signal at the home",
        AdjustmentReason::WrongLocationPin => "The home's location is wrong",
        AdjustmentReason::WrongVisit => "Checked in to the wrong visit",
        AdjustmentReason::WrongTime => "The recorded time is wrong",
        AdjustmentReason::OfficeEntry => "Entered by the office",
        AdjustmentReason::Other => "Other (say what in the memo)",
    }
}

/// The reason codes and their words, for the form's list.
fn reasons() -> Vec<(&'static str, &'static str)> {
    AdjustmentReason::ALL
        .iter()
        .map(|r| (r.as_str(), reason_label(*r)))
        .collect()
}

/// Whether a visit's checks were all verified, in words.
fn verification(v: &VisitView) -> &'static str {
    let verdicts: Vec<Verdict> = [&v.check_in, &v.check_out]
        .into_iter()
        .flatten()
        .map(|c| c.verdict)
        .collect();
    if verdicts.is_empty() {
        "No checks"
    } else if verdicts.iter().all(|v| *v == Verdict::Verified) {
        "Verified"
    } else if verdicts.contains(&Verdict::Rejected) {
        "Not verified (rejected)"
    } else if verdicts.contains(&Verdict::Warning) {
        "Accepted with a warning"
    } else {
        "Could not be verified"
    }
}

/// One visit of the day.
struct VisitRow {
    id: i64,
    planned: String,
    actual: String,
    person: String,
    worker: String,
    verification: &'static str,
    late: Option<String>,
    open_exceptions: Vec<&'static str>,
}

fn visit_row(v: &VisitView, clock: &Clock) -> VisitRow {
    let name = |name: &Option<String>, reference: &Option<String>| match (name, reference) {
        (Some(n), Some(r)) => format!("{n} ({r})"),
        (None, Some(r)) => r.clone(),
        (_, None) => "unknown".to_owned(),
    };
    VisitRow {
        id: v.id,
        planned: if v.window_start.is_some() {
            clock.span(v.window_start, v.window_end)
        } else {
            "not planned".to_owned()
        },
        actual: clock.span(v.start, v.end),
        person: name(&v.person_name, &v.person),
        worker: name(&v.worker_name, &v.worker),
        verification: verification(v),
        late: v.context.late.then(|| {
            format!(
                "Late by {} min",
                v.context.late_by_minutes.unwrap_or_default()
            )
        }),
        open_exceptions: v
            .exceptions
            .iter()
            .filter(|e| !e.resolved)
            .map(|e| exception_words(e.kind))
            .collect(),
    }
}

struct ExceptionRow {
    what: &'static str,
    needs: &'static str,
    person: String,
    worker: String,
    at: String,
    visit_id: Option<i64>,
}

struct MissedRow {
    reference: String,
    person: String,
    person_id: i32,
    window_start: String,
    due: String,
}

#[derive(Template)]
#[template(path = "visits.html")]
struct VisitsPage {
    shell: Shell,
    day: String,
    summary: String,
    missed: Vec<MissedRow>,
    exceptions: Vec<ExceptionRow>,
    visits: Vec<VisitRow>,
}

/// The start and end of today in the configured time zone, and the day in words.
async fn today_bounds(
    client: &crate::db::Client,
    tz: &str,
) -> Result<(DateTime<Utc>, DateTime<Utc>, String), ConsoleError> {
    let r = client
        .query_one(
            "SELECT date_trunc('day', now() AT TIME ZONE $1) AT TIME ZONE $1, \
                    (date_trunc('day', now() AT TIME ZONE $1) + interval '1 day') AT TIME ZONE $1, \
                    to_char(now() AT TIME ZONE $1, 'FMDay FMDD FMMonth YYYY')",
            &[&tz],
        )
        .await?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

async fn today(
    user: ConsoleUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(EDITORS)?;
    let client = state.db(&user.caller).await?;
    let tz = &state.settings.alarms.timezone;
    let (start, end, day) = today_bounds(&client, tz).await?;
    let now = Utc::now();
    let range = (start, end);
    let visits =
        crate::evv::visits_between(&state, &user.caller, &client, range, None, now).await?;
    let exceptions =
        crate::evv::exceptions_between(&state, &user.caller, &client, range, false).await?;
    let missed = crate::evv::missed_alerts(&client, &user.caller, false, None, 1000)
        .await?
        .items;
    let times: Vec<DateTime<Utc>> = visits
        .iter()
        .flat_map(|v| [v.window_start, v.window_end, v.start, v.end])
        .flatten()
        .chain(exceptions.iter().filter_map(|e| e.at))
        .chain(missed.iter().flat_map(|m| [m.window_start, m.due_at]))
        .collect();
    let clock = Clock::load(&client, tz, &times).await?;
    let visits: Vec<VisitRow> = visits.iter().map(|v| visit_row(v, &clock)).collect();
    let summary = summary(&visits, exceptions.len(), missed.len());
    let page = VisitsPage {
        shell: user.shell("Visits today", Section::Visits),
        day,
        summary,
        missed: missed
            .iter()
            .map(|m| MissedRow {
                reference: m.reference.clone(),
                person: m.person_ref.clone(),
                person_id: m.person_id,
                window_start: clock.full(m.window_start),
                due: clock.full(m.due_at),
            })
            .collect(),
        exceptions: exceptions
            .iter()
            .map(|e| ExceptionRow {
                what: exception_words(e.kind),
                needs: if e.needs == "fix" {
                    "times to fix"
                } else {
                    "to acknowledge"
                },
                person: e.person.clone().unwrap_or_else(|| "unknown".into()),
                worker: e.worker.clone().unwrap_or_else(|| "unknown".into()),
                at: e.at.map_or_else(|| "no time".into(), |t| clock.full(t)),
                visit_id: e.visit_id,
            })
            .collect(),
        visits,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// "5 visits today: 3 verified, 1 late, 1 with exceptions to resolve. 2 missed."
fn summary(visits: &[VisitRow], exceptions: usize, missed: usize) -> String {
    let verified = visits
        .iter()
        .filter(|v| v.verification == "Verified")
        .count();
    let late = visits.iter().filter(|v| v.late.is_some()).count();
    let visits_words = match visits.len() {
        0 => "No visits checked in today".to_owned(),
        1 => "1 visit today".to_owned(),
        n => format!("{n} visits today"),
    };
    format!(
        "{visits_words}: {verified} verified, {late} late. {exceptions} exceptions to resolve. \
         {missed} missed visits not yet cleared."
    )
}

#[derive(Template)]
#[template(path = "visit.html")]
struct VisitPage {
    shell: Shell,
    id: i64,
    form_token: String,
    what: String,
    person: String,
    person_id: Option<i32>,
    worker: String,
    details: Vec<String>,
    history: Vec<HistoryRow>,
    reasons: Vec<(&'static str, &'static str)>,
    notice: Option<String>,
    tz: String,
}

struct HistoryRow {
    when: String,
    reason: String,
    change: String,
    by: String,
}

#[derive(Debug, Default, Deserialize)]
struct AfterAdjust {
    done: Option<i64>,
}

/// `id` as a visit id, or a page that does not exist.
fn visit_id(id: &str) -> Result<i64, ConsoleError> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ConsoleError::NotFound)
}

async fn show(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<AfterAdjust>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(EDITORS)?;
    let id = visit_id(&path)?;
    let client = state.db(&user.caller).await?;
    let (v, history) = crate::evv::visit_detail(&state, &user.caller, &client, id).await?;
    let tz = state.settings.alarms.timezone.clone();
    let at =
        |h: &Value, field: &str| -> Option<DateTime<Utc>> { h.get(field)?.as_str()?.parse().ok() };
    let times: Vec<DateTime<Utc>> = [v.window_start, v.window_end, v.start, v.end]
        .into_iter()
        .flatten()
        .chain(history.iter().flat_map(|h| {
            [at(h, "recorded_at"), at(h, "start"), at(h, "end")]
                .into_iter()
                .flatten()
        }))
        .collect();
    let clock = Clock::load(&client, &tz, &times).await?;
    let history = history
        .iter()
        .map(|h| {
            let text = |f: &str| h.get(f).and_then(Value::as_str).unwrap_or_default();
            let mut change = Vec::new();
            if let Some(t) = at(h, "start") {
                change.push(format!("start {}", clock.full(t)));
            }
            if let Some(t) = at(h, "end") {
                change.push(format!("end {}", clock.full(t)));
            }
            if !text("resolution_code").is_empty() {
                change.push(format!(
                    "resolved as {}",
                    text("resolution_code").replace('_', " ")
                ));
            }
            if !text("memo").is_empty() {
                change.push(format!("memo: {}", text("memo")));
            }
            HistoryRow {
                when: at(h, "recorded_at")
                    .map(|t| clock.full(t))
                    .unwrap_or_default(),
                reason: AdjustmentReason::parse(text("reason_code")).map_or_else(
                    || text("reason_code").to_owned(),
                    |r| reason_label(r).to_owned(),
                ),
                change: change.join("; "),
                by: text("recorded_by").to_owned(),
            }
        })
        .collect();
    let row = visit_row(&v, &clock);
    let what = match (&v.service_type, &v.scheduled_reference) {
        (Some(s), Some(r)) => format!("{} ({r})", s.replace('_', " ")),
        (Some(s), None) => s.replace('_', " "),
        (None, Some(r)) => format!("Visit {r}"),
        (None, None) => "Unscheduled visit".to_owned(),
    };
    let mut details = visit_details(&v, &clock);
    details.insert(0, format!("Verification: {}", row.verification));
    let page = VisitPage {
        shell: user.shell(format!("Visit {id}"), Section::Visits),
        id,
        form_token: user.form_token.clone(),
        what,
        person: row.person,
        person_id: v.person_id,
        worker: row.worker,
        details,
        history,
        reasons: reasons(),
        notice: q
            .done
            .map(|a| format!("Adjustment {a} was recorded; the visit shows it below.")),
        tz,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// The adjustment form: the reason (required), start and end in local time, a resolution
/// code and a memo (each optional; empty means not given). Its `csrf` field was checked
/// before this runs.
#[derive(Debug, Deserialize)]
struct AdjustForm {
    reason_code: String,
    start: Option<String>,
    end: Option<String>,
    resolution_code: Option<String>,
    memo: Option<String>,
}

fn given(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A `datetime-local` value ("2026-03-02T09:05") in the zone `tz`, as a time.
async fn local_time(
    client: &crate::db::Client,
    tz: &str,
    field: &str,
    value: Option<String>,
) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    let Some(value) = given(value) else {
        return Ok(None);
    };
    let naive = chrono::NaiveDateTime::parse_from_str(&value, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(&value, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| {
            ConsoleError::BadForm(format!(
                "The {field} time could not be read: give a date and a time."
            ))
        })?;
    let row = client
        .query_one("SELECT $1::timestamp AT TIME ZONE $2", &[&naive, &tz])
        .await?;
    Ok(Some(row.get(0)))
}

async fn adjust(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<AdjustForm>,
) -> Result<HttpResponse, ConsoleError> {
    let id = visit_id(&path)?;
    user.require(EDITORS)?;
    let form = form.into_inner();
    let client = state.db(&user.caller).await?;
    let tz = &state.settings.alarms.timezone;
    let adjustment = NewAdjustment {
        start: local_time(&client, tz, "start", form.start).await?,
        end: local_time(&client, tz, "end", form.end).await?,
        scheduled_visit_id: None,
        reason_code: form.reason_code,
        memo: given(form.memo),
        resolution_code: given(form.resolution_code),
    };
    drop(client);
    match crate::evv::apply_adjustment(&state, &user.caller, id, adjustment).await {
        Ok(recorded) => Ok(see_other(&format!(
            "/console/visits/{id}?done={}",
            recorded.id
        ))),
        Err(ApiError::Validation(errors)) => Err(ConsoleError::BadForm(
            errors
                .iter()
                .map(|e| match e.field.as_str() {
                    "" => e.message.clone(),
                    field => format!("{}: {}", field.replace('_', " "), e.message),
                })
                .collect::<Vec<_>>()
                .join("; "),
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_code_the_api_accepts_is_offered_in_words() {
        let offered = reasons();
        assert_eq!(offered.len(), AdjustmentReason::ALL.len());
        assert!(offered
            .iter()
            .all(|(code, words)| AdjustmentReason::parse(code).is_some() && !words.is_empty()));
    }
}

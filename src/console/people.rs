//! The provider's people: a list with a search by name or reference, and each person's page:
//! who they are, how to reach their home and get in, their devices, a timeline of what
//! happened to them (visits, alarms, falls, reablement, hospital) over a chosen window, and
//! their "I can" outcome plans.
//!
//! - The same roles as `GET /v1/people`: provider admins and staff ([`crate::people::EDITORS`]).
//!   Responders see a person's address and key-safe code on the alarm's page instead.
//! - The page reads through the API's own functions where the API has them: the person
//!   ([`crate::people::store::find_person`]), their visits as `GET /v1/visits` shows them
//!   ([`crate::evv::visits_between`]), their outcome records as
//!   `GET /v1/outcomes/people/{id}/episodes` ([`crate::outcomes::person_records`]) and their
//!   plans as `GET /v1/outcome-plans/{id}` ([`crate::outcomes::person_plans`]).
//! - Another organisation's person is a page that does not exist (404), as in the API.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::board::{kind_label, outcome_label, state_label};
use super::error::html_response;
use super::{see_other, ConsoleError, ConsoleUser, Section, Shell};
use crate::alarms::model::{AlarmView, Category, State, VIEW_COLUMNS};
use crate::auth::Role;
use crate::evv::view::VisitView;
use crate::http::{ApiError, AppState};
use crate::people::store::{find_person, Person};
use crate::people::{apply_update, PersonUpdate, EDITORS};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/people", web::get().to(list))
        .route("/people/{id}", web::get().to(show))
        .route("/people/{id}/home", web::post().to(change_home));
}

/// Most people the list shows (the count above it says when there are more).
const MAX_LISTED: i64 = 500;

/// The windows the person's page offers, in days; the first is not the default.
const WINDOWS: &[i64] = &[7, 30, 90, 365];
const DEFAULT_DAYS: i64 = 30;

/// Whether `role` may read key-safe codes: the provider's roles that respond to alarms.
pub(super) fn may_see_key_safe(role: Role) -> bool {
    crate::alarms::routes::ANYONE.contains(&role)
}

struct PersonRow {
    id: i32,
    name: String,
    reference: String,
    area: String,
    devices: String,
    open_alarms: i64,
}

#[derive(Template)]
#[template(path = "people.html")]
struct PeoplePage {
    shell: Shell,
    search: String,
    people: Vec<PersonRow>,
    count: String,
}

#[derive(Debug, Default, Deserialize)]
struct Search {
    q: Option<String>,
}

async fn list(
    user: ConsoleUser,
    state: web::Data<AppState>,
    q: web::Query<Search>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(EDITORS)?;
    let search: String =
        q.q.as_deref()
            .unwrap_or("")
            .trim()
            .chars()
            .take(100)
            .collect();
    let client = state.db(&user.caller).await?;
    let open: Vec<&str> = State::OPEN.iter().map(|s| s.as_str()).collect();
    let rows = client
        .query(
            "SELECT p.id, coalesce(p.display_name, 'No name recorded'), p.external_ref, \
                    coalesce(p.area, ''), \
                    array_to_string(ARRAY(SELECT d.uid FROM devices d WHERE d.person_id = p.id \
                        AND d.organisation_id = p.organisation_id AND d.disabled_at IS NULL \
                        ORDER BY d.uid), ', '), \
                    (SELECT count(*) FROM alarms a WHERE a.person_id = p.id \
                        AND a.organisation_id = p.organisation_id AND a.state = ANY($3) \
                        AND a.category = $5), \
                    count(*) OVER () \
               FROM people p \
              WHERE p.organisation_id = $1 \
                AND ($2 = '' OR strpos(lower(coalesce(p.display_name, '')), lower($2)) > 0 \
                     OR strpos(lower(p.external_ref), lower($2)) > 0) \
              ORDER BY lower(p.display_name) NULLS LAST, p.external_ref \
              LIMIT $4",
            &[
                &user.caller.organisation_id,
                &search,
                &open,
                &MAX_LISTED,
                &Category::Care.as_str(),
            ],
        )
        .await?;
    let total: i64 = rows.first().map_or(0, |r| r.get(6));
    let people: Vec<PersonRow> = rows
        .iter()
        .map(|r| PersonRow {
            id: r.get(0),
            name: r.get(1),
            reference: r.get(2),
            area: r.get(3),
            devices: r.get(4),
            open_alarms: r.get(5),
        })
        .collect();
    let count = people_count(people.len(), total, &search);
    let page = PeoplePage {
        shell: user.shell("People", Section::People),
        search,
        people,
        count,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// "3 people.", "No one matches “Ann”.", "Showing 500 of 612 people, by name."
fn people_count(shown: usize, total: i64, search: &str) -> String {
    let matching = if search.is_empty() {
        String::new()
    } else {
        format!(" matching “{search}”")
    };
    match (shown, total) {
        (0, _) if search.is_empty() => "No people recorded yet.".to_owned(),
        (0, _) => format!("No one matches “{search}”."),
        (1, 1) => format!("1 person{matching}."),
        (n, t) if n as i64 == t => format!("{n} people{matching}."),
        (n, t) => format!("Showing {n} of {t} people{matching}, by name."),
    }
}

/// One thing that happened to the person, for the timeline.
struct Event {
    at: DateTime<Utc>,
    when: String,
    kind: &'static str,
    what: String,
    details: Vec<String>,
    href: Option<String>,
}

struct OutcomeLine {
    statement: String,
    /// "A reablement", "A maintenance".
    kind: &'static str,
    target: String,
    state: String,
}

struct Plan {
    id: i64,
    period: String,
    agreed: String,
    outcomes: Vec<OutcomeLine>,
}

struct Facts {
    name: String,
    reference: String,
    date_of_birth: Option<String>,
    area: Option<String>,
    home_phone: Option<String>,
    address: Option<String>,
    access_notes: Option<String>,
    /// `None` when there is none or the role may not see it.
    key_safe_code: Option<String>,
    key_safe_hidden: bool,
}

struct DeviceLine {
    uid: String,
    kind: &'static str,
}

#[derive(Template)]
#[template(path = "person.html")]
struct PersonPage {
    shell: Shell,
    id: i32,
    person: Facts,
    devices: Vec<DeviceLine>,
    /// Each window on offer, and whether it is the one shown.
    windows: Vec<(i64, bool)>,
    events: Vec<Event>,
    events_count: String,
    plans: Vec<Plan>,
    form_token: String,
    notice: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
struct Window {
    days: Option<String>,
    done: Option<String>,
}

/// `id` as a person id, or a page that does not exist.
fn person_id(id: &str) -> Result<i32, ConsoleError> {
    id.parse::<i32>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ConsoleError::NotFound)
}

async fn show(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<Window>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(EDITORS)?;
    let id = person_id(&path)?;
    let days = q
        .days
        .as_deref()
        .and_then(|d| d.parse::<i64>().ok())
        .filter(|d| WINDOWS.contains(d))
        .unwrap_or(DEFAULT_DAYS);
    let client = state.db(&user.caller).await?;
    let org = user.caller.organisation_id;
    let person = find_person(&client, org, id)
        .await?
        .ok_or(ConsoleError::NotFound)?;
    let now = Utc::now();
    let from = now - Duration::days(days);
    let tz = &state.settings.alarms.timezone;
    let mut events = Vec::new();
    let visits = crate::evv::visits_between(
        &state,
        &user.caller,
        &client,
        (from, now + Duration::days(1)),
        Some(id),
        now,
    )
    .await?;
    let alarms = person_alarms(&client, org, id, from).await?;
    let unvisited = crate::evv::unvisited_of(&client, &user.caller, id, (from, now)).await?;
    let times: Vec<DateTime<Utc>> = visits
        .iter()
        .flat_map(|v| [v.window_start, v.window_end, v.start, v.end])
        .flatten()
        .chain(alarms.iter().map(|a| a.received_at))
        .chain(
            unvisited
                .iter()
                .flat_map(|s| [s.window_start, s.window_end]),
        )
        .collect();
    let clock = Clock::load(&client, tz, &times).await?;
    events.extend(visits.iter().map(|v| visit_event(v, &clock)));
    events.extend(unvisited.iter().map(|s| unvisited_event(s, &clock)));
    events.extend(alarms.iter().map(|a| alarm_event(a, &clock)));
    let records = crate::outcomes::person_records(&client, &user.caller, id, false).await?;
    events.extend(record_events(&records, from.date_naive()));
    // Newest first.
    events.sort_by_key(|e| std::cmp::Reverse(e.at));
    let plans = crate::outcomes::person_plans(&**client, &user.caller, id)
        .await?
        .iter()
        .map(plan)
        .collect();
    let devices = client
        .query(
            "SELECT uid, kind FROM devices WHERE person_id = $1 AND organisation_id = $2 \
                AND disabled_at IS NULL ORDER BY uid",
            &[&id, &org],
        )
        .await?
        .iter()
        .map(|r| DeviceLine {
            uid: r.get(0),
            kind: r
                .get::<_, &str>(1)
                .parse()
                .map_or("device", super::devices::device_kind_label),
        })
        .collect();
    let name = person
        .display_name
        .clone()
        .unwrap_or_else(|| format!("Reference {}", person.external_ref));
    let page = PersonPage {
        shell: user.shell(name, Section::People),
        id,
        person: facts(person, may_see_key_safe(user.caller.role)),
        devices,
        windows: WINDOWS.iter().map(|d| (*d, *d == days)).collect(),
        events_count: events_count(events.len(), days),
        events,
        plans,
        form_token: user.form_token.clone(),
        notice: (q.done.as_deref() == Some("home"))
            .then_some("The address, access notes and key-safe code were saved."),
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// The "getting in" form: each field as it should be now, empty for none. Its `csrf` field
/// was checked before this runs.
#[derive(Debug, Deserialize)]
struct HomeForm {
    address: String,
    access_notes: String,
    key_safe_code: String,
}

/// A form's text as a change: empty clears the field.
fn field(value: &str) -> Option<Option<String>> {
    let value = value.trim();
    Some((!value.is_empty()).then(|| value.to_owned()))
}

/// Applies the form through [`apply_update`], the function behind `PATCH /v1/people/{id}`
/// (the same roles, checks and audit row), then back to the person's page.
async fn change_home(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<HomeForm>,
) -> Result<HttpResponse, ConsoleError> {
    let id = person_id(&path)?;
    let update = PersonUpdate {
        address: field(&form.address),
        access_notes: field(&form.access_notes),
        key_safe_code: field(&form.key_safe_code),
        ..PersonUpdate::default()
    };
    match apply_update(&state, &user.caller, id, &update).await {
        Ok(()) => Ok(see_other(&format!("/console/people/{id}?done=home#home"))),
        Err(ApiError::Validation(errors)) => Err(ConsoleError::BadForm(
            errors
                .iter()
                .map(|e| format!("{}: {}", e.field.replace('_', " "), e.message))
                .collect::<Vec<_>>()
                .join("; "),
        )),
        Err(e) => Err(e.into()),
    }
}

fn facts(p: Person, key_safe: bool) -> Facts {
    Facts {
        name: p
            .display_name
            .unwrap_or_else(|| "No name recorded".to_owned()),
        reference: p.external_ref,
        date_of_birth: p.date_of_birth.map(long_date),
        area: p.area,
        home_phone: p.home_phone,
        address: p.address,
        access_notes: p.access_notes,
        key_safe_hidden: !key_safe && p.key_safe_code.is_some(),
        key_safe_code: p.key_safe_code.filter(|_| key_safe),
    }
}

fn events_count(n: usize, days: i64) -> String {
    match n {
        0 => format!("Nothing recorded in the last {days} days."),
        1 => format!("1 thing recorded in the last {days} days."),
        n => format!("{n} things recorded in the last {days} days, newest first."),
    }
}

/// "3 March 2026".
fn long_date(d: NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}

/// Times shown in the configured time zone (`alarms.timezone`), formatted by the database,
/// which knows the zone's rules, in one query for a page.
pub(super) struct Clock(HashMap<DateTime<Utc>, (String, String)>);

impl Clock {
    pub(super) async fn load(
        client: &crate::db::Client,
        tz: &str,
        times: &[DateTime<Utc>],
    ) -> Result<Self, ConsoleError> {
        let rows = client
            .query(
                "SELECT t, to_char(t AT TIME ZONE $2, 'FMDD Mon YYYY, HH24:MI'), \
                        to_char(t AT TIME ZONE $2, 'HH24:MI') \
                   FROM unnest($1::timestamptz[]) AS u(t)",
                &[&times, &tz],
            )
            .await?;
        Ok(Self(
            rows.iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2))))
                .collect(),
        ))
    }

    /// "3 Mar 2026, 09:05".
    pub(super) fn full(&self, t: DateTime<Utc>) -> String {
        self.0
            .get(&t)
            .map_or_else(|| t.to_rfc3339(), |v| v.0.clone())
    }

    /// "09:05".
    pub(super) fn time(&self, t: DateTime<Utc>) -> String {
        self.0
            .get(&t)
            .map_or_else(|| t.to_rfc3339(), |v| v.1.clone())
    }

    /// "09:00 to 09:30", "09:00 to (not yet)".
    pub(super) fn span(&self, start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
        let part =
            |t: Option<DateTime<Utc>>, none: &str| t.map_or(none.to_owned(), |t| self.time(t));
        format!("{} to {}", part(start, "no start"), part(end, "no end"))
    }
}

/// A check's verdict in words.
pub(super) fn verdict_words(verdict: crate::evv::geofence::Verdict) -> &'static str {
    use crate::evv::geofence::Verdict;
    match verdict {
        Verdict::Verified => "verified",
        Verdict::Warning => "accepted with a warning",
        Verdict::Rejected => "not verified (rejected)",
        Verdict::Unverified => "could not be verified",
    }
}

/// An exception of a visit in words.
pub(super) fn exception_words(kind: crate::evv::view::ExceptionKind) -> &'static str {
    use crate::evv::view::ExceptionKind as K;
    match kind {
        K::MissingCheckIn => "no check-in",
        K::MissingCheckOut => "no check-out",
        K::OutsideGeofence => "checked away from the home",
        K::Unscheduled => "not on the schedule",
    }
}

/// What a visit's checks and exceptions say, in short lines.
pub(super) fn visit_details(v: &VisitView, clock: &Clock) -> Vec<String> {
    let mut details = Vec::new();
    if v.window_start.is_some() {
        details.push(format!(
            "Planned {}",
            clock.span(v.window_start, v.window_end)
        ));
    }
    if v.start.is_some() || v.end.is_some() {
        let adjusted = if v.adjustments > 0 {
            " (as adjusted by the office)"
        } else {
            ""
        };
        details.push(format!("Actual {}{adjusted}", clock.span(v.start, v.end)));
    }
    for (label, check) in [("Check-in", &v.check_in), ("Check-out", &v.check_out)] {
        if let Some(check) = check {
            details.push(format!("{label} {}", verdict_words(check.verdict)));
        }
    }
    if v.context.late {
        details.push(format!(
            "Late by {} min",
            v.context.late_by_minutes.unwrap_or_default()
        ));
    }
    for e in &v.exceptions {
        let state = if e.resolved {
            "resolved"
        } else if e.needs == "fix" {
            "to fix"
        } else {
            "to acknowledge"
        };
        details.push(format!("Exception: {} ({state})", exception_words(e.kind)));
    }
    details
}

fn visit_event(v: &VisitView, clock: &Clock) -> Event {
    let at = v.start.or(v.window_start).or(v.end).unwrap_or_default();
    let what = match (&v.service_type, &v.scheduled_reference) {
        (Some(service), Some(reference)) => format!("{} ({reference})", service.replace('_', " ")),
        (Some(service), None) => service.replace('_', " "),
        (None, Some(reference)) => format!("Visit {reference}"),
        (None, None) => "Unscheduled visit".to_owned(),
    };
    Event {
        at,
        when: clock.full(at),
        kind: "Visit",
        what,
        details: visit_details(v, clock),
        href: Some(format!("/console/visits/{}", v.id)),
    }
}

/// A planned visit no one checked in to (or cancelled).
fn unvisited_event(s: &crate::evv::Scheduled, clock: &Clock) -> Event {
    let mut details = vec![format!(
        "Planned {}",
        clock.span(Some(s.window_start), Some(s.window_end))
    )];
    match &s.cancelled_at {
        Some(_) => details.push(format!(
            "Cancelled{}",
            s.cancel_reason
                .as_deref()
                .map_or(String::new(), |r| format!(": {r}"))
        )),
        None => details.push("No one checked in".to_owned()),
    }
    Event {
        at: s.window_start,
        when: clock.full(s.window_start),
        kind: "Planned visit",
        what: format!("{} ({})", s.service_type.replace('_', " "), s.reference),
        details,
        href: None,
    }
}

/// The person's care alarms received since `from`, newest first (at most 1,000).
async fn person_alarms(
    client: &crate::db::Client,
    org: i32,
    person: i32,
    from: DateTime<Utc>,
) -> Result<Vec<AlarmView>, ConsoleError> {
    let rows = client
        .query(
            &format!(
                "SELECT {VIEW_COLUMNS} FROM alarms a \
                  WHERE a.organisation_id = $1 AND a.person_id = $2 AND a.received_at >= $3 \
                    AND a.category = $4 \
                  ORDER BY a.received_at DESC, a.id DESC LIMIT 1000"
            ),
            &[&org, &person, &from, &Category::Care.as_str()],
        )
        .await?;
    rows.iter()
        .map(|r| AlarmView::from_row(r).map_err(|e| ConsoleError::Unexpected(e.into())))
        .collect()
}

fn alarm_event(a: &AlarmView, clock: &Clock) -> Event {
    let mut details = vec![state_label(a.state).to_owned()];
    if let Some(outcome) = a.outcome {
        details.push(format!("Outcome: {}", outcome_label(outcome)));
    }
    if a.long_lie {
        details.push("A long lie".to_owned());
    }
    Event {
        at: a.received_at,
        when: clock.full(a.received_at),
        kind: if a.is_fall { "Fall alarm" } else { "Alarm" },
        what: kind_label(a.kind).to_owned(),
        details,
        href: Some(format!("/console/alarms/{}", a.id)),
    }
}

/// A date of an outcome record, as a time for ordering (midday UTC, so that it sorts with the
/// day's timed events).
fn day(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(12, 0, 0).unwrap_or_default().and_utc()
}

fn date_of(v: &Value, field: &str) -> Option<NaiveDate> {
    v.get(field)?.as_str()?.parse().ok()
}

fn text_of<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field)?.as_str()
}

fn dated(d: NaiveDate, kind: &'static str, what: String, details: Vec<String>) -> Event {
    Event {
        at: day(d),
        when: long_date(d),
        kind,
        what,
        details,
        href: None,
    }
}

/// Falls, reablement episodes and hospital stays from the person's outcome records (as
/// `GET /v1/outcomes/people/{id}/episodes` answers), on or after `from`.
fn record_events(records: &serde_json::Map<String, Value>, from: NaiveDate) -> Vec<Event> {
    let rows = |table: &str| {
        records
            .get(table)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut events = Vec::new();
    let mut add = |d: Option<NaiveDate>, event: &dyn Fn(NaiveDate) -> Event| {
        if let Some(d) = d.filter(|d| *d >= from) {
            events.push(event(d));
        }
    };
    for r in rows("recorded_falls") {
        let source = text_of(&r, "source").unwrap_or("a record").to_owned();
        add(date_of(&r, "occurred_on"), &|d| {
            dated(
                d,
                "Fall",
                "A fall, recorded".into(),
                vec![format!("Source: {source}")],
            )
        });
    }
    for r in rows("reablement_episodes") {
        add(date_of(&r, "started_on"), &|d| {
            dated(d, "Reablement", "Reablement began".into(), vec![])
        });
        let result = text_of(&r, "result").map(words).unwrap_or_default();
        add(date_of(&r, "ended_on"), &|d| {
            dated(
                d,
                "Reablement",
                "Reablement ended".into(),
                vec![format!("Result: {result}")],
            )
        });
    }
    for r in rows("hospital_stays") {
        let emergency = r.get("emergency").and_then(Value::as_bool).unwrap_or(true);
        add(date_of(&r, "admitted_on"), &|d| {
            let how = if emergency { "an emergency" } else { "planned" };
            dated(
                d,
                "Hospital",
                "Admitted to hospital".into(),
                vec![format!("Admission: {how}")],
            )
        });
        let to = text_of(&r, "discharge_destination")
            .map(words)
            .unwrap_or_default();
        add(date_of(&r, "discharged_on"), &|d| {
            dated(
                d,
                "Hospital",
                "Left hospital".into(),
                vec![format!("To: {to}")],
            )
        });
    }
    events
}

/// A stored code in words: `home_with_reablement` → "home with reablement".
fn words(code: &str) -> String {
    code.replace('_', " ")
}

/// A plan as `GET /v1/outcome-plans/{id}` shows it, in words.
fn plan(p: &Value) -> Plan {
    let date = |field: &str| date_of(p, field).map(long_date).unwrap_or_default();
    let agreed = if p.get("agreed").and_then(Value::as_bool) == Some(true) {
        "Agreed by the person, the provider and the council".to_owned()
    } else {
        let missing: Vec<&str> = [
            ("person", "the person"),
            ("provider", "the provider"),
            ("council", "the council"),
        ]
        .into_iter()
        .filter(|(party, _)| p[format!("agreed_by_{party}_at")].is_null())
        .map(|(_, who)| who)
        .collect();
        format!("Waiting for agreement by {}", missing.join(", "))
    };
    let outcomes = p
        .get("outcomes")
        .and_then(Value::as_array)
        .map(|os| os.iter().map(outcome_line).collect())
        .unwrap_or_default();
    Plan {
        id: p.get("id").and_then(Value::as_i64).unwrap_or_default(),
        period: format!("{} to {}", date("starts_on"), date("ends_on")),
        agreed,
        outcomes,
    }
}

fn outcome_line(o: &Value) -> OutcomeLine {
    OutcomeLine {
        statement: text_of(o, "statement").unwrap_or_default().to_owned(),
        kind: match text_of(o, "kind") {
            Some("reablement") => "A reablement",
            Some("maintenance") => "A maintenance",
            _ => "An",
        },
        target: date_of(o, "target_date").map(long_date).unwrap_or_default(),
        state: outcome_state(o),
    }
}

/// Where an outcome is, in words: verified, achieved and awaiting verification, said not yet,
/// or not yet answered.
fn outcome_state(o: &Value) -> String {
    let achieved = date_of(o, "achieved_on").map(long_date);
    let verdict = o
        .get("verification")
        .and_then(|v| text_of(v, "verdict"))
        .map(str::to_owned);
    let said_not_yet = o
        .get("confirmations")
        .and_then(Value::as_array)
        .and_then(|c| c.last())
        .and_then(|c| text_of(c, "answer"))
        == Some("not_yet");
    match (achieved, verdict.as_deref()) {
        (Some(on), Some("verified")) => format!("Achieved on {on}, verified by the council"),
        (Some(on), Some("rejected")) => {
            format!("The person confirmed it on {on}; the council did not verify it")
        }
        (Some(on), _) => format!("Achieved on {on} (confirmed by the person), not yet verified"),
        (None, _) if said_not_yet => "Not yet: the person said it is not true yet".to_owned(),
        (None, _) => "Not yet achieved".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_of_people_in_words() {
        assert_eq!(people_count(0, 0, ""), "No people recorded yet.");
        assert_eq!(people_count(0, 0, "Ann"), "No one matches “Ann”.");
        assert_eq!(people_count(1, 1, ""), "1 person.");
        assert_eq!(people_count(3, 3, "an"), "3 people matching “an”.");
        assert_eq!(
            people_count(500, 612, ""),
            "Showing 500 of 612 people, by name."
        );
    }

    #[test]
    fn an_outcome_is_achieved_only_when_the_person_confirmed_it() {
        let state = |o: Value| outcome_state(&o);
        assert_eq!(state(json!({"confirmations": []})), "Not yet achieved");
        assert_eq!(
            state(json!({"confirmations": [{"answer": "not_yet"}]})),
            "Not yet: the person said it is not true yet"
        );
        assert_eq!(
            state(json!({"achieved_on": "2026-03-02", "confirmations": [{"answer": "yes"}]})),
            "Achieved on 2 March 2026 (confirmed by the person), not yet verified"
        );
        assert_eq!(
            state(json!({"achieved_on": "2026-03-02",
                         "verification": {"verdict": "verified"}})),
            "Achieved on 2 March 2026, verified by the council"
        );
    }

    #[test]
    fn records_before_the_window_are_left_out() {
        let records = json!({
            "recorded_falls": [{"occurred_on": "2026-01-10", "source": "GP record"},
                               {"occurred_on": "2025-12-31", "source": "old"}],
            "hospital_stays": [{"admitted_on": "2026-01-05", "emergency": true,
                                "discharged_on": "2026-01-12",
                                "discharge_destination": "home_with_reablement"}],
        });
        let from = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let events = record_events(records.as_object().unwrap(), from);
        let whats: Vec<(&str, &str)> = events.iter().map(|e| (e.kind, e.what.as_str())).collect();
        assert_eq!(
            whats,
            [
                ("Fall", "A fall, recorded"),
                ("Hospital", "Admitted to hospital"),
                ("Hospital", "Left hospital")
            ]
        );
        assert_eq!(events[2].details, ["To: home with reablement"]);
    }

    #[test]
    fn only_the_roles_that_respond_see_key_safe_codes() {
        assert!(may_see_key_safe(Role::ProviderAdmin));
        assert!(may_see_key_safe(Role::ProviderStaff));
        assert!(may_see_key_safe(Role::Responder));
        assert!(!may_see_key_safe(Role::Commissioner));
        assert!(!may_see_key_safe(Role::Auditor));
    }
}

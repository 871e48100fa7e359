//! The alarm board: the open alarms of the caller's provider, most urgent and longest waiting
//! first, with the person, the device, the state and how long ago, and the actions the role
//! may take; one alarm's page with its person and history; the live stream and the script that
//! keeps the board current.
//!
//! - Every action is a plain form POSTed here and applied by
//!   [`crate::alarms::routes::apply_action`], the function behind the API's actions: the same
//!   roles, state rules, audit row, live event and notice to the person's hub. Then back to the
//!   page the form was on (Post/Redirect/Get), which says what was done, or, for an action the
//!   alarm's state no longer allows (someone else acted first), what state it is in now.
//! - The pages work without JavaScript (a refresh link). With it, `board.js` listens on
//!   `GET /console/live` (the API's live stream, opened with the session instead of a token)
//!   and, on every change, fetches the board again and puts in what changed, marking new
//!   alarms and long lies and beeping.
//! - Tenancy as in the API: the organisation is the caller's own provider; another
//!   organisation's alarm is a page that does not exist (404), and so is an action on it.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::html_response;
use super::{see_other, ConsoleError, ConsoleUser, Section, Shell, CSP_WITH_SCRIPT};
use crate::alarms::model::{
    Action, AlarmKind, AlarmView, Category, Outcome, Severity, State, VIEW_COLUMNS,
};
use crate::alarms::routes::{apply_action, roles_for, ActionBody, ANYONE};
use crate::http::{ApiError, AppState};
use crate::live::StreamCredential;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/alarms", web::get().to(board))
        .route("/alarms/{id}", web::get().to(alarm_page))
        .route("/alarms/{id}/{action}", web::post().to(act))
        .route("/live", web::get().to(live))
        .route("/assets/board.js", web::get().to(script));
}

const SCRIPT: &str = include_str!("board.js");

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        // Overrides the scope's no-store: the script holds nothing private.
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(SCRIPT)
}

/// Most open care alarms the board shows (the count above the list says when there are more).
const MAX_OPEN: i64 = 500;
/// Most resolved alarms awaiting closure, and technical alarms, shown.
const MAX_OTHER: i64 = 200;

/// An alarm kind in words.
pub(super) fn kind_label(kind: AlarmKind) -> &'static str {
    match kind {
        AlarmKind::PendantAlarm => "Pendant alarm",
        AlarmKind::FallDetected => "Fall detected",
        AlarmKind::Inactivity => "No movement (inactivity)",
        AlarmKind::DoorOpenTooLong => "Door open too long at night",
        AlarmKind::Smoke => "Smoke",
        AlarmKind::Heat => "Heat",
        AlarmKind::Co => "Carbon monoxide",
        AlarmKind::Flood => "Flood",
        AlarmKind::PillMissed => "Pill missed",
        AlarmKind::HeartbeatMissing => "Device silent (no heartbeat)",
        AlarmKind::BatteryLow => "Battery low",
        AlarmKind::PowerFailure => "Mains power failed",
        AlarmKind::LinkFailure => "Connection lost",
    }
}

fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "Critical",
        Severity::High => "High",
        Severity::Medium => "Medium",
        Severity::Low => "Low",
    }
}

pub(super) fn state_label(state: State) -> &'static str {
    match state {
        State::Raised => "Raised: not answered yet",
        State::Acknowledged => "Acknowledged",
        State::Dispatched => "Responder on the way",
        State::OnSite => "Responder on site",
        State::Resolved => "Resolved",
        State::Closed => "Closed",
        State::Cleared => "Cleared",
    }
}

pub(super) fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::FalseOrAccidental => "False or accidental alarm",
        Outcome::ResolvedByTalking => "Resolved by talking",
        Outcome::FamilyOrKeyholderAttended => "Family or keyholder attended",
        Outcome::ResponderAttendedNoInjury => "Responder attended, no injury",
        Outcome::MinorInjuryTreatedAtHome => "Minor injury treated at home",
        Outcome::AmbulanceCalledNotConveyed => "Ambulance called, not taken to hospital",
        Outcome::ConveyedToHospital => "Taken to hospital",
        Outcome::AdmittedToHospital => "Admitted to hospital",
    }
}

fn action_label(action: Action) -> &'static str {
    match action {
        Action::Acknowledge => "Acknowledge",
        Action::Dispatch => "Dispatch a responder",
        Action::Arrive => "Responder on site",
        Action::Resolve => "Resolve",
        Action::Close => "Close",
    }
}

/// What an action did, for the notice after it.
fn action_done(action: Action) -> &'static str {
    match action {
        Action::Acknowledge => "acknowledged",
        Action::Dispatch => "marked as a responder on the way",
        Action::Arrive => "marked as a responder on site",
        Action::Resolve => "resolved",
        Action::Close => "closed",
    }
}

/// The outcome codes and their words, for the resolve form's list.
fn outcomes() -> Vec<(&'static str, &'static str)> {
    Outcome::ALL
        .iter()
        .map(|o| (o.as_str(), outcome_label(*o)))
        .collect()
}

/// How long ago, in words: "just now", "5 min ago", "2 h 5 min ago", "3 days ago".
fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (now - then).num_minutes();
    match minutes {
        m if m < 1 => "just now".to_owned(),
        m if m < 60 => format!("{m} min ago"),
        m if m < 48 * 60 => match m % 60 {
            0 => format!("{} h ago", m / 60),
            rest => format!("{} h {rest} min ago", m / 60),
        },
        m => format!("{} days ago", m / (24 * 60)),
    }
}

/// One action button (or the resolve form) on an alarm.
struct ActionButton {
    code: &'static str,
    label: &'static str,
}

/// One alarm as the board shows it.
struct Card {
    id: i64,
    kind: &'static str,
    severity: &'static str,
    severity_code: &'static str,
    state: &'static str,
    person: String,
    person_id: Option<i32>,
    device: String,
    received_iso: String,
    received_clock: String,
    ago: String,
    count: i32,
    is_fall: bool,
    long_lie: bool,
    outcome: Option<&'static str>,
    /// Changes whenever what the card shows (but its age) changes: the script keeps a card
    /// whose version is unchanged, with whatever is being typed or chosen in its forms.
    version: String,
    /// One line for announcements: kind and person.
    summary: String,
    actions: Vec<ActionButton>,
}

impl Card {
    fn new(
        view: &AlarmView,
        row: &tokio_postgres::Row,
        user: &ConsoleUser,
        now: DateTime<Utc>,
    ) -> Self {
        let name: Option<String> = row.get("person_name");
        let reference: Option<String> = row.get("person_ref");
        let person = match (name, reference) {
            (Some(name), Some(reference)) => format!("{name} ({reference})"),
            (None, Some(reference)) => format!("Reference {reference}"),
            (_, None) => "No person linked to this device".to_owned(),
        };
        let device_kind: Option<String> = row.get("device_kind");
        let device = match device_kind {
            Some(kind) => format!("{} ({kind})", view.device_uid),
            None => view.device_uid.clone(),
        };
        let actions = [
            Action::Acknowledge,
            Action::Dispatch,
            Action::Arrive,
            Action::Resolve,
            Action::Close,
        ]
        .into_iter()
        .filter(|a| {
            a.step(view.category)
                .is_some_and(|(_, from)| from.contains(&view.state))
                && roles_for(*a).contains(&user.caller.role)
        })
        .map(|a| ActionButton {
            code: a.as_str(),
            label: action_label(a),
        })
        .collect();
        let kind = kind_label(view.kind);
        Card {
            id: view.id,
            kind,
            severity: severity_label(view.severity),
            severity_code: view.severity.as_str(),
            state: state_label(view.state),
            summary: format!("{kind}, {person}"),
            person,
            person_id: view.person_id,
            device,
            received_iso: view.received_at.to_rfc3339(),
            received_clock: row.get("received_clock"),
            ago: ago(view.received_at, now),
            count: view.count,
            is_fall: view.is_fall,
            long_lie: view.long_lie,
            outcome: view.outcome.map(outcome_label),
            version: format!(
                "{}-{}-{}-{}-{}",
                view.state.as_str(),
                view.long_lie,
                view.is_fall,
                view.count,
                view.seq
            ),
            actions,
        }
    }
}

/// The board's ordering: most severe first; among equals, long lies first, then the longest
/// waiting (oldest received) first, as a queue is answered.
const URGENT_FIRST: &str = "CASE a.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 \
                            WHEN 'medium' THEN 2 ELSE 3 END, a.long_lie DESC, a.received_at, a.id";

/// One list of the board: which alarms, in what order, how many at most.
struct Listing<'a> {
    category: Category,
    states: &'a [State],
    order: &'a str,
    limit: i64,
}

/// The alarms of `organisation` that `listing` names, as cards; with the number there are in
/// all.
async fn cards(
    client: &crate::db::Client,
    state: &AppState,
    user: &ConsoleUser,
    organisation: i32,
    listing: Listing<'_>,
) -> Result<(Vec<Card>, i64), ConsoleError> {
    let Listing {
        category,
        states,
        order,
        limit,
    } = listing;
    let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let sql = format!(
        "SELECT {VIEW_COLUMNS}, p.display_name AS person_name, p.external_ref AS person_ref, \
                (SELECT d.kind FROM devices d WHERE d.id = a.last_device_id) AS device_kind, \
                to_char(a.received_at AT TIME ZONE $4, 'HH24:MI') AS received_clock \
           FROM alarms a \
           LEFT JOIN people p ON p.id = a.person_id AND p.organisation_id = a.organisation_id \
          WHERE a.organisation_id = $1 AND a.category = $2 AND a.state = ANY($3) \
          ORDER BY {order} LIMIT $5"
    );
    let tz = &state.settings.alarms.timezone;
    let rows = client
        .query(
            &sql,
            &[&organisation, &category.as_str(), &states, tz, &limit],
        )
        .await?;
    let total: i64 = if (rows.len() as i64) < limit {
        rows.len() as i64
    } else {
        client
            .query_one(
                "SELECT count(*) FROM alarms a \
                  WHERE a.organisation_id = $1 AND a.category = $2 AND a.state = ANY($3)",
                &[&organisation, &category.as_str(), &states],
            )
            .await?
            .get(0)
    };
    let now = Utc::now();
    let cards = rows
        .iter()
        .map(|r| {
            let view = AlarmView::from_row(r).map_err(|e| ConsoleError::Unexpected(e.into()))?;
            Ok(Card::new(&view, r, user, now))
        })
        .collect::<Result<_, ConsoleError>>()?;
    Ok((cards, total))
}

/// "3 open care alarms", "No open care alarms", "500 of 612 open care alarms (the most urgent)".
fn count_words(shown: usize, total: i64, what: &str) -> String {
    match (shown, total) {
        (0, _) => format!("No {what}."),
        (1, 1) => format!("1 {}.", what.replacen("alarms", "alarm", 1)),
        (n, t) if n as i64 == t => format!("{n} {what}."),
        (n, t) => format!("Showing {n} of {t} {what}, the most urgent first."),
    }
}

#[derive(Template)]
#[template(path = "board.html")]
struct BoardPage {
    shell: Shell,
    form_token: String,
    back: &'static str,
    notice: Option<String>,
    problem: Option<String>,
    care: Vec<Card>,
    care_count: String,
    resolved: Vec<Card>,
    resolved_count: String,
    technical: Vec<Card>,
    technical_count: String,
    outcomes: Vec<(&'static str, &'static str)>,
    long_lie_minutes: u32,
    rendered_at: String,
}

/// What the page says after an action (`?done=` or `?refused=`, with `action=` and for a
/// refusal `why=`): built here from codes, so a link cannot put words on the page.
#[derive(Debug, Default, Deserialize)]
struct AfterAction {
    done: Option<i64>,
    refused: Option<i64>,
    action: Option<String>,
    why: Option<String>,
}

/// The caller's own provider, as the API's alarm lists decide it (a commissioner has none).
async fn own_provider(client: &crate::db::Client, user: &ConsoleUser) -> Result<i32, ConsoleError> {
    user.require(ANYONE)?;
    Ok(crate::auth::visibility(&user.caller, &***client)
        .await?
        .own_provider()?)
}

/// The notice or problem to show after an action on alarm `id`.
async fn after_action(
    client: &crate::db::Client,
    organisation: i32,
    q: &AfterAction,
) -> Result<(Option<String>, Option<String>), ConsoleError> {
    let Some(action) = q.action.as_deref().and_then(Action::parse) else {
        return Ok((None, None));
    };
    if let Some(id) = q.done {
        return Ok((
            Some(format!("Alarm {id} was {}.", action_done(action))),
            None,
        ));
    }
    let Some(id) = q.refused else {
        return Ok((None, None));
    };
    let verb = action_label(action).to_lowercase();
    if q.why.as_deref() == Some("outcome") {
        return Ok((
            None,
            Some(format!(
                "Alarm {id} was not resolved: choose the outcome from the list, then press \
                 Resolve."
            )),
        ));
    }
    let now: Option<String> = client
        .query_opt(
            "SELECT state FROM alarms WHERE id = $1 AND organisation_id = $2",
            &[&id, &organisation],
        )
        .await?
        .map(|r| r.get(0));
    let now = now
        .as_deref()
        .and_then(State::parse)
        .map_or("changed", state_label);
    Ok((
        None,
        Some(format!(
            "Alarm {id} could not be given “{verb}”: it is now “{now}”. Someone may have acted \
             on it first; the board shows where it is now. Nothing was changed."
        )),
    ))
}

async fn board(
    user: ConsoleUser,
    state: web::Data<AppState>,
    q: web::Query<AfterAction>,
) -> Result<HttpResponse, ConsoleError> {
    let client = state.db(&user.caller).await?;
    let organisation = own_provider(&client, &user).await?;
    let (notice, problem) = after_action(&client, organisation, &q).await?;
    let list = |listing| cards(&client, &state, &user, organisation, listing);
    let (care, care_total) = list(Listing {
        category: Category::Care,
        states: State::OPEN,
        order: URGENT_FIRST,
        limit: MAX_OPEN,
    })
    .await?;
    let (resolved, resolved_total) = list(Listing {
        category: Category::Care,
        states: &[State::Resolved],
        order: "a.resolved_at DESC, a.id DESC",
        limit: MAX_OTHER,
    })
    .await?;
    let (technical, technical_total) = list(Listing {
        category: Category::Technical,
        states: State::OPEN,
        order: URGENT_FIRST,
        limit: MAX_OTHER,
    })
    .await?;
    let rendered_at: String = client
        .query_one(
            "SELECT to_char(now() AT TIME ZONE $1, 'HH24:MI:SS')",
            &[&state.settings.alarms.timezone],
        )
        .await?
        .get(0);
    let page = BoardPage {
        shell: user.shell("Alarm board", Section::Board),
        form_token: user.form_token.clone(),
        back: "board",
        notice,
        problem,
        care_count: count_words(care.len(), care_total, "open care alarms"),
        care,
        resolved_count: count_words(
            resolved.len(),
            resolved_total,
            "resolved alarms waiting to be closed",
        ),
        resolved,
        technical_count: count_words(technical.len(), technical_total, "open technical alarms"),
        technical,
        outcomes: outcomes(),
        long_lie_minutes: state.settings.alarms.long_lie_minutes,
        rendered_at,
    };
    let mut response = html_response(StatusCode::OK, page.render()?);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP_WITH_SCRIPT),
    );
    Ok(response)
}

/// One step of an alarm's history, in words.
struct Step {
    at: String,
    what: &'static str,
    by: String,
    note: Option<String>,
}

/// The person an alarm is about, as far as Homeward knows them.
struct Person {
    name: String,
    reference: String,
    date_of_birth: Option<String>,
    area: Option<String>,
    home_phone: Option<String>,
    location: Option<String>,
    devices: Vec<String>,
    address: Option<String>,
    access_notes: Option<String>,
    /// `None` when there is none or the role may not see it.
    key_safe_code: Option<String>,
    /// The person's own page, for the roles that may open it.
    page: Option<String>,
}

#[derive(Template)]
#[template(path = "alarm.html")]
struct AlarmPage {
    shell: Shell,
    form_token: String,
    back: &'static str,
    notice: Option<String>,
    problem: Option<String>,
    card: Card,
    open: bool,
    person: Option<Person>,
    history: Vec<Step>,
    outcomes: Vec<(&'static str, &'static str)>,
    long_lie_minutes: u32,
}

fn transition_label(transition: &str) -> &'static str {
    use crate::alarms::model::Transition as T;
    match T::parse(transition) {
        Some(T::Raised) => "Raised",
        Some(T::Repeated) => "Raised again by the device",
        Some(T::Acknowledged) => "Acknowledged",
        Some(T::Dispatched) => "Responder dispatched",
        Some(T::OnSite) => "Responder on site",
        Some(T::Resolved) => "Resolved",
        Some(T::Closed) => "Closed",
        Some(T::Cleared) => "Cleared by the device",
        Some(T::LongLie) => "Became a long lie",
        None => "Changed",
    }
}

/// `id` as an alarm id, or a page that does not exist.
fn alarm_id(id: &str) -> Result<i64, ConsoleError> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or(ConsoleError::NotFound)
}

async fn alarm_page(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<AfterAction>,
) -> Result<HttpResponse, ConsoleError> {
    let id = alarm_id(&path)?;
    let client = state.db(&user.caller).await?;
    let organisation = own_provider(&client, &user).await?;
    let sql = format!(
        "SELECT {VIEW_COLUMNS}, p.display_name AS person_name, p.external_ref AS person_ref, \
                (SELECT d.kind FROM devices d WHERE d.id = a.last_device_id) AS device_kind, \
                to_char(a.received_at AT TIME ZONE $3, 'HH24:MI') AS received_clock \
           FROM alarms a \
           LEFT JOIN people p ON p.id = a.person_id AND p.organisation_id = a.organisation_id \
          WHERE a.id = $1 AND a.organisation_id = $2"
    );
    let tz = &state.settings.alarms.timezone;
    let row = client
        .query_opt(&sql, &[&id, &organisation, tz])
        .await?
        .ok_or(ConsoleError::NotFound)?;
    let view = AlarmView::from_row(&row).map_err(|e| ConsoleError::Unexpected(e.into()))?;
    let card = Card::new(&view, &row, &user, Utc::now());
    let person = match view.person_id {
        None => None,
        Some(person_id) => client
            .query_opt(
                "SELECT p.display_name, p.external_ref, to_char(p.date_of_birth, 'FMDD Month YYYY'), \
                        p.area, p.home_phone, \
                        CASE WHEN p.home_lat IS NULL THEN NULL \
                             ELSE round(p.home_lat::numeric, 5) || ', ' || round(p.home_lon::numeric, 5) END, \
                        ARRAY(SELECT d.uid || ' (' || d.kind || ')' FROM devices d \
                               WHERE d.person_id = p.id AND d.organisation_id = p.organisation_id \
                                 AND d.disabled_at IS NULL ORDER BY d.uid), \
                        p.address, p.access_notes, p.key_safe_code \
                   FROM people p WHERE p.id = $1 AND p.organisation_id = $2",
                &[&person_id, &organisation],
            )
            .await?
            .map(|r| Person {
                name: r
                    .get::<_, Option<String>>(0)
                    .unwrap_or_else(|| "No name recorded".to_owned()),
                reference: r.get(1),
                date_of_birth: r.get(2),
                area: r.get(3),
                home_phone: r.get(4),
                location: r.get(5),
                devices: r.get(6),
                address: r.get(7),
                access_notes: r.get(8),
                key_safe_code: r
                    .get::<_, Option<String>>(9)
                    .filter(|_| super::people::may_see_key_safe(user.caller.role)),
                page: crate::people::EDITORS
                    .contains(&user.caller.role)
                    .then(|| format!("/console/people/{person_id}")),
            }),
    };
    let history = client
        .query(
            "SELECT to_char(e.at AT TIME ZONE $3, 'DD Mon HH24:MI:SS'), e.transition, d.uid, \
                    u.name, x.note \
               FROM alarm_events e \
               LEFT JOIN devices d ON d.id = e.device_id \
               LEFT JOIN alarm_actions x ON x.id = e.action_id \
               LEFT JOIN users u ON u.id = x.user_id \
              WHERE e.alarm_id = $1 AND e.organisation_id = $2 ORDER BY e.id",
            &[&id, &organisation, tz],
        )
        .await?
        .iter()
        .map(|r| {
            let device: Option<String> = r.get(2);
            let user: Option<String> = r.get(3);
            Step {
                at: r.get(0),
                what: transition_label(r.get(1)),
                by: match (user, device) {
                    (Some(user), _) => user,
                    (None, Some(device)) => format!("device {device}"),
                    (None, None) => "Homeward".to_owned(),
                },
                note: r.get(4),
            }
        })
        .collect();
    let (notice, problem) = after_action(&client, organisation, &q).await?;
    let page = AlarmPage {
        shell: user.shell(format!("Alarm {id}: {}", card.kind), Section::Board),
        form_token: user.form_token.clone(),
        back: "alarm",
        notice,
        problem,
        open: view.state.is_open(),
        card,
        person,
        history,
        outcomes: outcomes(),
        long_lie_minutes: state.settings.alarms.long_lie_minutes,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// A board form: the outcome and "it was a fall" (resolving only), and which page to go back
/// to. Its `csrf` field was checked before this runs.
#[derive(Debug, Deserialize)]
struct ActionForm {
    outcome: Option<String>,
    fall: Option<String>,
    back: Option<String>,
}

async fn act(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, ConsoleError> {
    let (id, action) = path.into_inner();
    let id = alarm_id(&id)?;
    let action = Action::parse(&action).ok_or(ConsoleError::NotFound)?;
    let form = form.into_inner();
    let back = match form.back.as_deref() {
        Some("alarm") => format!("/console/alarms/{id}"),
        _ => "/console/alarms".to_owned(),
    };
    let resolving = action == Action::Resolve;
    let body = ActionBody {
        outcome: form
            .outcome
            .filter(|o| resolving && !o.is_empty())
            .map(|o| o.chars().take(100).collect()),
        // An unticked box says nothing: a fall stays a fall.
        fall: (resolving && form.fall.is_some()).then_some(true),
        note: None,
    };
    let action_code = action.as_str();
    match apply_action(&state, &user.caller, id, action, body).await {
        Ok(_) => Ok(see_other(&format!("{back}?done={id}&action={action_code}"))),
        Err(ApiError::Conflict(_)) => Ok(see_other(&format!(
            "{back}?refused={id}&action={action_code}&why=state"
        ))),
        Err(ApiError::Validation(_)) if resolving => Ok(see_other(&format!(
            "{back}?refused={id}&action={action_code}&why=outcome"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The live stream of the caller's organisation, opened with the session (the board's
/// script), under the same roles and rules as `GET /v1/live`.
async fn live(user: ConsoleUser, state: web::Data<AppState>) -> Result<HttpResponse, ConsoleError> {
    Ok(crate::live::stream(
        &state,
        &user.caller,
        StreamCredential::Session(user.session_id),
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_in_words() {
        let now = Utc::now();
        let before = |m: i64| now - chrono::Duration::minutes(m);
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(before(5), now), "5 min ago");
        assert_eq!(ago(before(60), now), "1 h ago");
        assert_eq!(ago(before(125), now), "2 h 5 min ago");
        assert_eq!(ago(before(3 * 24 * 60 + 5), now), "3 days ago");
    }

    #[test]
    fn counts_in_words() {
        assert_eq!(
            count_words(0, 0, "open care alarms"),
            "No open care alarms."
        );
        assert_eq!(count_words(1, 1, "open care alarms"), "1 open care alarm.");
        assert_eq!(count_words(3, 3, "open care alarms"), "3 open care alarms.");
        assert_eq!(
            count_words(500, 612, "open care alarms"),
            "Showing 500 of 612 open care alarms, the most urgent first."
        );
    }

    #[test]
    fn every_outcome_has_words_for_the_resolve_list() {
        let listed = outcomes();
        assert_eq!(listed.len(), Outcome::ALL.len());
        assert!(listed.iter().all(|(code, words)| !code.is_empty()
            && !words.is_empty()
            && Outcome::parse(code).is_some()));
    }
}

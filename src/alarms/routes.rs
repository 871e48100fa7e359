//! The alarm API for provider staff and responders: lists, one alarm with its history, the
//! lifecycle actions, response figures and device health. Every query filters by the caller's
//! organisation; another tenant's alarm is "not found".

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use homeward_proto::{Notice, NoticeKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::derive::{self, ActionRow, Rules};
use super::figures::ResponseFigures;
use super::model::{Action, AlarmView, Category, Outcome, Severity, State, VIEW_COLUMNS};
use crate::auth::{Caller, Role};
use crate::devices::DeviceKind;
use crate::http::openapi as doc;
use crate::http::paging::{self, Page};
use crate::http::{ApiError, AppState};

const STAFF: &[Role] = &[Role::ProviderAdmin, Role::ProviderStaff];
/// Who attends alarms: may list them, see one, mark arrival and resolve.
pub const ANYONE: &[Role] = &[Role::ProviderAdmin, Role::ProviderStaff, Role::Responder];

/// Who may take `action`: coordinators acknowledge, dispatch and close; responders too mark
/// arrival and resolve.
pub fn roles_for(action: Action) -> &'static [Role] {
    match action {
        Action::Acknowledge | Action::Dispatch | Action::Close => STAFF,
        Action::Arrive | Action::Resolve => ANYONE,
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    api(&mut ServiceConfig::new(cfg));
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub fn api(cfg: &mut ServiceConfig<'_>) {
    cfg.service(response_times)
        .service(list_alarms)
        .service(list_technical)
        .service(device_health)
        .service(get_alarm)
        .service(acknowledge)
        .service(dispatch)
        .service(arrive)
        .service(resolve)
        .service(close);
}

/// Which alarms a list shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ListStatus {
    /// Raised, acknowledged, dispatched or on site.
    #[default]
    Open,
    /// Every alarm.
    All,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Which alarms (default `open`).
    #[param(inline)]
    status: Option<ListStatus>,
    /// The last id of the previous page: the page goes on after that alarm in the list's
    /// order (most severe, then newest first).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many (1 to 1000, default 200).
    #[param(minimum = 1, maximum = 1000, default = 200)]
    limit: Option<i64>,
}

const LIST_LIMITS: paging::Limits = paging::Limits {
    default: 200,
    max: 1000,
};

/// The list's order: most severe first, then newest, then highest id.
fn severity_rank(alias: &str) -> String {
    format!(
        "CASE {alias}.severity WHEN '{critical}' THEN 0 WHEN '{high}' THEN 1 \
           WHEN '{medium}' THEN 2 ELSE 3 END",
        critical = Severity::Critical,
        high = Severity::High,
        medium = Severity::Medium,
    )
}

async fn list(
    state: &AppState,
    caller: &Caller,
    category: Category,
    q: &ListQuery,
) -> Result<Page<AlarmView, i64>, ApiError> {
    let open_only = q.status.unwrap_or_default() == ListStatus::Open;
    let limit = LIST_LIMITS.check(q.limit)?;
    let client = state.db(caller).await?;
    let organisation = crate::auth::visibility(caller, &**client)
        .await?
        .own_provider()?;
    // The position of the alarm named by `after` in the list's order.
    let cursor = match q.after {
        None => None,
        Some(after) => {
            let row = client
                .query_opt(
                    &format!(
                        "SELECT {rank}, a.received_at FROM alarms a \
                          WHERE a.id = $1 AND a.organisation_id = $2 AND a.category = $3",
                        rank = severity_rank("a")
                    ),
                    &[&after, &organisation, &category.as_str()],
                )
                .await?
                .ok_or_else(paging::unknown_after)?;
            Some((row.get::<_, i32>(0), row.get::<_, DateTime<Utc>>(1), after))
        }
    };
    let open: Vec<&str> = State::OPEN.iter().map(|s| s.as_str()).collect();
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM alarms a \
          WHERE a.organisation_id = $1 AND a.category = $2 AND (NOT $3 OR a.state = ANY($4)) \
            AND ($6::int IS NULL OR {rank} > $6 \
                 OR ({rank} = $6 AND (a.received_at, a.id) < ($7, $8))) \
          ORDER BY {rank}, a.received_at DESC, a.id DESC \
          LIMIT $5",
        rank = severity_rank("a"),
    );
    let rows = client
        .query(
            &sql,
            &[
                &organisation,
                &category.as_str(),
                &open_only,
                &open,
                &(limit + 1),
                &cursor.map(|c| c.0),
                &cursor.map(|c| c.1),
                &cursor.map(|c| c.2),
            ],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| AlarmView::from_row(r).map_err(|e| ApiError::Unexpected(e.into())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, limit, |a: &AlarmView| a.id))
}

#[derive(Serialize, ToSchema)]
struct AlarmList {
    /// Most severe first, then newest first.
    items: Vec<AlarmView>,
    /// `after` for the next page; null on the last one.
    next_after: Option<i64>,
}

impl From<Page<AlarmView, i64>> for AlarmList {
    fn from(page: Page<AlarmView, i64>) -> Self {
        Self {
            items: page.items,
            next_after: page.next_after,
        }
    }
}

/// Care alarms, open ones by default, most severe and newest first, a page at a time.
#[utoipa::path(
    operation_id = "list_alarms",
    tag = "alarms",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of the alarms.", body = AlarmList,
            links(
                ("alarm" = (operation_id = "get_alarm",
                    parameters(("id" = "$response.body#/items/0/id")))),
                ("acknowledge" = (operation_id = "acknowledge_alarm",
                    parameters(("id" = "$response.body#/items/0/id")))),
            )),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/alarms")]
async fn list_alarms(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ANYONE)?;
    let page = list(&state, &caller, Category::Care, &q).await?;
    Ok(HttpResponse::Ok().json(AlarmList::from(page)))
}

/// Technical alarms (device health), kept apart from care alarms.
#[utoipa::path(
    operation_id = "list_technical_alarms",
    tag = "alarms",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of the technical alarms.", body = AlarmList,
            links(("alarm" = (operation_id = "get_alarm",
                parameters(("id" = "$response.body#/items/0/id")))))),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/technical-alarms")]
async fn list_technical(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ANYONE)?;
    let page = list(&state, &caller, Category::Technical, &q).await?;
    Ok(HttpResponse::Ok().json(AlarmList::from(page)))
}

/// One step of an alarm's history.
#[derive(Serialize, ToSchema)]
struct AlarmHistoryEntry {
    at: DateTime<Utc>,
    #[schema(value_type = super::model::Transition)]
    transition: String,
    #[schema(value_type = Option<State>)]
    from_state: Option<String>,
    #[schema(value_type = State)]
    to_state: String,
    /// The device whose event made the step, and that event's seq.
    device_uid: Option<String>,
    seq: Option<i64>,
    /// The user whose action made the step.
    user: Option<String>,
    #[schema(value_type = Option<Action>)]
    action: Option<String>,
    note: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct AlarmDetail {
    alarm: AlarmView,
    /// Oldest first.
    history: Vec<AlarmHistoryEntry>,
}

/// One alarm with its history.
#[utoipa::path(
    operation_id = "get_alarm",
    tag = "alarms",
    params(("id" = i64, Path, minimum = 0, description = "The alarm's id.")),
    responses(
        (status = 200, description = "The alarm and its history.", body = AlarmDetail),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[get("/v1/alarms/{id:\\d+}")]
async fn get_alarm(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(ANYONE)?;
    let id = path.into_inner();
    let client = state.db(&caller).await?;
    let sql =
        format!("SELECT {VIEW_COLUMNS} FROM alarms a WHERE a.id = $1 AND a.organisation_id = $2");
    let row = client
        .query_opt(&sql, &[&id, &caller.organisation_id])
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("alarm {id}")))?;
    let alarm = AlarmView::from_row(&row).map_err(|e| ApiError::Unexpected(e.into()))?;
    let history: Vec<AlarmHistoryEntry> = client
        .query(
            "SELECT e.at, e.transition, e.from_state, e.to_state, d.uid, e.seq, \
                    u.name, x.action, x.note \
               FROM alarm_events e \
               LEFT JOIN devices d ON d.id = e.device_id \
               LEFT JOIN alarm_actions x ON x.id = e.action_id \
               LEFT JOIN users u ON u.id = x.user_id \
              WHERE e.alarm_id = $1 AND e.organisation_id = $2 ORDER BY e.id",
            &[&id, &caller.organisation_id],
        )
        .await?
        .iter()
        .map(|r| AlarmHistoryEntry {
            at: r.get(0),
            transition: r.get(1),
            from_state: r.get(2),
            to_state: r.get(3),
            device_uid: r.get(4),
            seq: r.get(5),
            user: r.get(6),
            action: r.get(7),
            note: r.get(8),
        })
        .collect();
    Ok(HttpResponse::Ok().json(AlarmDetail { alarm, history }))
}

/// Body of every action; `outcome` is required to resolve, `fall` marks a pendant alarm (or
/// any other) as a fall when it turns out to be one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    pub outcome: Option<String>,
    pub fall: Option<bool>,
    pub note: Option<String>,
}

/// The body of acknowledge, dispatch, arrive and close (optional).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes what `ActionBody` accepts for these actions.
struct ActionNote {
    /// Kept with the action in the alarm's history.
    #[schema(max_length = 2000)]
    note: Option<String>,
}

/// The body of resolve.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes what `ActionBody` accepts for resolving.
struct Resolution {
    outcome: Outcome,
    /// It turned out to be a fall (or not).
    fall: Option<bool>,
    #[schema(max_length = 2000)]
    note: Option<String>,
}

fn parse_body(body: &web::Bytes) -> Result<ActionBody, ApiError> {
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(ActionBody::default());
    }
    let invalid = |e: serde_json::Error| ApiError::BadRequest(format!("invalid JSON body: {e}"));
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(invalid)?;
    // The rules every JSON body is held to (no NUL in text, whole numbers as integers).
    crate::http::json::apply_rules(&mut value)?;
    serde_json::from_value(value).map_err(invalid)
}

/// Acknowledges a raised alarm (provider staff): someone is dealing with it; the person's hub hears so.
#[utoipa::path(
    operation_id = "acknowledge_alarm",
    tag = "alarms",
    params(("id" = i64, Path, minimum = 0, description = "The alarm's id.")),
    request_body(content = Option<ActionNote>, description = "Optional."),
    responses(
        (status = 200, description = "The alarm after the action.", body = AlarmView),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/alarms/{id:\\d+}/acknowledge")]
async fn acknowledge(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    act(
        &state,
        &caller,
        path.into_inner(),
        Action::Acknowledge,
        &body,
    )
    .await
}

/// Records that a responder is on the way (provider staff).
#[utoipa::path(
    operation_id = "dispatch_alarm",
    tag = "alarms",
    params(("id" = i64, Path, minimum = 0, description = "The alarm's id.")),
    request_body(content = Option<ActionNote>, description = "Optional."),
    responses(
        (status = 200, description = "The alarm after the action.", body = AlarmView),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/alarms/{id:\\d+}/dispatch")]
async fn dispatch(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    act(&state, &caller, path.into_inner(), Action::Dispatch, &body).await
}

/// Records that a responder is on site.
#[utoipa::path(
    operation_id = "arrive_at_alarm",
    tag = "alarms",
    params(("id" = i64, Path, minimum = 0, description = "The alarm's id.")),
    request_body(content = Option<ActionNote>, description = "Optional."),
    responses(
        (status = 200, description = "The alarm after the action.", body = AlarmView),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/alarms/{id:\\d+}/arrive")]
async fn arrive(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(ANYONE)?;
    act(&state, &caller, path.into_inner(), Action::Arrive, &body).await
}

/// Resolves a care alarm with its outcome.
#[utoipa::path(
    operation_id = "resolve_alarm",
    tag = "alarms",
    params(("id" = i64, Path, minimum = 0, description = "The alarm's id.")),
    request_body = Resolution,
    responses(
        (status = 200, description = "The alarm after the action.", body = AlarmView),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/alarms/{id:\\d+}/resolve")]
async fn resolve(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(ANYONE)?;
    act(&state, &caller, path.into_inner(), Action::Resolve, &body).await
}

/// Closes a resolved alarm (provider staff), or a technical alarm once acknowledged.
#[utoipa::path(
    operation_id = "close_alarm",
    tag = "alarms",
    params(("id" = i64, Path, minimum = 0, description = "The alarm's id.")),
    request_body(content = Option<ActionNote>, description = "Optional."),
    responses(
        (status = 200, description = "The alarm after the action.", body = AlarmView),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/alarms/{id:\\d+}/close")]
async fn close(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(STAFF)?;
    act(&state, &caller, path.into_inner(), Action::Close, &body).await
}

/// The API's side of every action: the JSON body, then [`apply_action`].
async fn act(
    state: &AppState,
    caller: &Caller,
    id: i64,
    action: Action,
    body: &web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body = parse_body(body)?;
    let view = apply_action(state, caller, id, action, body).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Records the action (who, when) and applies it, under a lock on the alarm row, with its
/// audit row in the same transaction; then publishes the change and tells the person's hub.
/// Refuses a role that may not take it (403), another organisation's alarm (404), and an
/// action that does not fit the alarm's state (409, naming the state). The one way an action
/// is taken: the API and the console's alarm board both come here.
pub async fn apply_action(
    state: &AppState,
    caller: &Caller,
    id: i64,
    action: Action,
    body: ActionBody,
) -> Result<AlarmView, ApiError> {
    caller.require(roles_for(action))?;
    let outcome = match (action, body.outcome.as_deref()) {
        (Action::Resolve, None) => {
            let codes: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
            return Err(ApiError::invalid(
                "outcome",
                format!("required to resolve; one of {}", codes.join(", ")),
            ));
        }
        (Action::Resolve, Some(text)) => Some(Outcome::parse(text).ok_or_else(|| {
            let codes: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
            ApiError::invalid(
                "outcome",
                format!("unknown outcome {text:?}; one of {}", codes.join(", ")),
            )
        })?),
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "outcome",
                "only resolving takes an outcome",
            ));
        }
        (_, None) => None,
    };
    if body.fall.is_some() && action != Action::Resolve {
        return Err(ApiError::invalid("fall", "only resolving takes `fall`"));
    }
    if body.note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(ApiError::invalid("note", "at most 2000 characters"));
    }
    let rules = Rules::from(&state.settings.alarms);
    let mut client = state.db(caller).await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT category, state FROM alarms WHERE id = $1 AND organisation_id = $2 FOR UPDATE",
            &[&id, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("alarm {id}")))?;
    let category_text: String = row.get(0);
    let state_text: String = row.get(1);
    let category = Category::parse(&category_text).ok_or_else(|| {
        ApiError::Unexpected(anyhow::anyhow!("alarm {id} has category {category_text:?}"))
    })?;
    let Some((_, from)) = action.step(category) else {
        return Err(ApiError::Conflict(format!(
            "a {category} alarm cannot be {action}d; technical alarms are acknowledged and clear themselves"
        )));
    };
    if !State::parse(&state_text).is_some_and(|s| from.contains(&s)) {
        let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::Conflict(format!(
            "alarm {id} is {state_text}; {action} needs it to be {}",
            allowed.join(" or ")
        )));
    }
    let recorded = tx
        .query_one(
            "INSERT INTO alarm_actions (organisation_id, alarm_id, action, user_id, at, outcome, fall, note) \
             VALUES ($1, $2, $3, $4, clock_timestamp(), $5, $6, $7) RETURNING id, at",
            &[
                &caller.organisation_id,
                &id,
                &action.as_str(),
                &caller.user_id,
                &outcome.map(|o| o.as_str()),
                &body.fall,
                &body.note,
            ],
        )
        .await?;
    let action_row = ActionRow {
        id: recorded.get(0),
        organisation_id: caller.organisation_id,
        alarm_id: id,
        action,
        user_id: caller.user_id,
        at: recorded.get(1),
        outcome,
        fall: body.fall,
    };
    let changes = derive::apply_action(&tx, &rules, &action_row).await?;
    let Some(change) = changes.first().cloned() else {
        return Err(ApiError::Conflict(format!(
            "alarm {id} changed meanwhile; reload it"
        )));
    };
    crate::audit::by(
        &*tx,
        caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            format!("alarm.{}", action.as_str()),
            "alarm",
            id,
            serde_json::json!({
                "before": {"state": state_text},
                "after": {"state": change.view.state.as_str()},
                "action_id": action_row.id,
                "outcome": outcome.map(|o| o.as_str()),
                "fall": body.fall,
                "note": body.note,
            }),
        ),
    )
    .await?;
    // The person's hub hears that help is coming (care alarms only).
    let notice_to: Option<String> = if category == Category::Care {
        tx.query_one(
            "SELECT COALESCE( \
                 (SELECT h.uid FROM devices h WHERE a.person_id IS NOT NULL AND h.person_id = a.person_id \
                     AND h.kind = $2 AND h.disabled_at IS NULL ORDER BY h.id LIMIT 1), \
                 (SELECT d.uid FROM devices d WHERE d.id = a.last_device_id)) \
               FROM alarms a WHERE a.id = $1",
            &[&id, &DeviceKind::Hub.as_str()],
        )
        .await?
        .get(0)
    } else {
        None
    };
    tx.commit().await?;
    super::publish(&state.live, &changes);
    let notice = match action {
        Action::Acknowledge => Some(NoticeKind::AlarmAcknowledged),
        Action::Dispatch => Some(NoticeKind::HelpOnTheWay),
        Action::Arrive => Some(NoticeKind::ResponderOnSite),
        Action::Resolve => Some(NoticeKind::AlarmResolved),
        Action::Close => None,
    };
    if let (Some(kind), Some(uid)) = (notice, notice_to) {
        state.downlinks.notice(
            &uid,
            Notice {
                kind,
                alarm: u64::try_from(id).ok(),
            },
        );
    }
    Ok(change.view)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FiguresQuery {
    /// Start of the period (alarms received from then on); default 30 days before `to`. Before
    /// `to`; in the years 1900 to 2199.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    from: Option<DateTime<Utc>>,
    /// End of the period (exclusive); default now. In the years 1900 to 2199.
    #[param(pattern = "^(19|2[01])[0-9]{2}-")]
    to: Option<DateTime<Utc>>,
    /// Commissioners: the contracted provider (required). Providers: their own (may be omitted;
    /// another answers 404).
    provider_id: Option<i32>,
}

/// Response times against the targets, per provider and period (received time).
#[utoipa::path(
    operation_id = "get_response_times",
    tag = "alarms",
    params(FiguresQuery),
    responses(
        (status = 200, description = "The figures.", body = ResponseFigures),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[get("/v1/alarms/response-times")]
async fn response_times(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<FiguresQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin, Role::ProviderStaff, Role::Commissioner])?;
    crate::http::dates::check_time("from", q.from)?;
    crate::http::dates::check_time("to", q.to)?;
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - chrono::Duration::days(30));
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    let client = state.db(&caller).await?;
    let visibility = crate::auth::visibility(&caller, &**client).await?;
    let provider = visibility.one_provider(q.provider_id)?;
    let figures = super::figures::response_times(
        &**client,
        &state.settings.alarms,
        provider,
        visibility.funded_by(),
        from,
        to,
    )
    .await?;
    Ok(HttpResponse::Ok().json(figures))
}

/// One telecare device's health.
#[derive(Serialize, ToSchema)]
pub struct DeviceHealth {
    pub device_uid: String,
    #[schema(value_type = crate::devices::DeviceKind)]
    pub kind: String,
    pub person_id: Option<i32>,
    /// Connected to the broker; null when never seen.
    pub online: Option<bool>,
    pub presence_changed_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// The heartbeat interval the device promised, seconds.
    pub interval_s: Option<i32>,
    /// Percent.
    pub battery: Option<i16>,
    /// dBm.
    pub signal: Option<i16>,
    /// Its heartbeat is overdue.
    pub overdue: bool,
    /// Kinds of its open technical alarms.
    #[schema(value_type = Vec<super::model::AlarmKind>)]
    pub open_alarms: Vec<String>,
}

#[derive(Serialize, ToSchema)]
struct DeviceHealthList {
    /// By uid.
    items: Vec<DeviceHealth>,
    /// `after` for the next page (the last uid of this one); null on the last page.
    next_after: Option<String>,
}

/// A page of devices, by uid.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HealthQuery {
    /// The last uid of the previous page.
    #[param(max_length = 64)]
    after: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// Every telecare device of the organisation: presence, last heartbeat, battery, whether it is
/// overdue, and its open technical alarms.
#[utoipa::path(
    operation_id = "get_device_health",
    tag = "alarms",
    params(HealthQuery),
    responses(
        (status = 200, description = "A page of the devices (not phones, not disabled ones).",
            body = DeviceHealthList),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/device-health")]
async fn device_health(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<HealthQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = paging::STANDARD.check(q.limit)?;
    let client = state.db(&caller).await?;
    let page = device_health_of(
        &client,
        &caller,
        &state.settings.alarms,
        q.after.as_deref(),
        limit,
    )
    .await?;
    Ok(HttpResponse::Ok().json(DeviceHealthList {
        items: page.items,
        next_after: page.next_after,
    }))
}

/// A page of the health of the caller's telecare devices (not phones, not disabled ones), by
/// uid after `after`, as `GET /v1/device-health` answers: for the roles that attend alarms.
pub async fn device_health_of(
    client: &crate::db::Client,
    caller: &Caller,
    settings: &super::AlarmSettings,
    after: Option<&str>,
    limit: i64,
) -> Result<Page<DeviceHealth, String>, ApiError> {
    caller.require(ANYONE)?;
    crate::devices::routes::check_uid_cursor(after)?;
    let rows = client
        .query(
            "SELECT d.uid, d.kind, d.person_id, p.online, p.changed_at, h.last_heartbeat_at, \
                    h.interval_s, h.battery, h.signal, \
                    (h.last_heartbeat_at + make_interval(secs => h.interval_s * $2::float8) < now()) AS overdue, \
                    ARRAY(SELECT a.kind FROM alarms a WHERE a.last_device_id = d.id \
                            AND a.category = $3 \
                            AND a.state = ANY($4) ORDER BY a.kind) AS open_alarms \
               FROM devices d \
               LEFT JOIN device_presence p ON p.device_id = d.id \
               LEFT JOIN device_health h ON h.device_id = d.id \
              WHERE d.organisation_id = $1 AND d.kind <> $5 AND d.disabled_at IS NULL \
                AND ($6::text IS NULL OR d.uid COLLATE \"C\" > $6 COLLATE \"C\") \
              ORDER BY d.uid COLLATE \"C\" LIMIT $7",
            &[
                &caller.organisation_id,
                &settings.heartbeat_missing_factor,
                &Category::Technical.as_str(),
                &[State::Raised.as_str(), State::Acknowledged.as_str()].as_slice(),
                &DeviceKind::Phone.as_str(),
                &after,
                &(limit + 1),
            ],
        )
        .await?;
    let devices = rows
        .iter()
        .map(|r| DeviceHealth {
            device_uid: r.get(0),
            kind: r.get(1),
            person_id: r.get(2),
            online: r.get(3),
            presence_changed_at: r.get(4),
            last_heartbeat_at: r.get(5),
            interval_s: r.get(6),
            battery: r.get(7),
            signal: r.get(8),
            overdue: r.get::<_, Option<bool>>(9).unwrap_or(false),
            open_alarms: r.get(10),
        })
        .collect();
    Ok(Page::from_rows(devices, limit, |d: &DeviceHealth| {
        d.device_uid.clone()
    }))
}

//! `GET /v1/me`: who the token belongs to; users and their API tokens: list, issue, revoke,
//! disable and enable; one-time links for people to set their console password.
//!
//! Who may do what: a provider admin manages the users and tokens of its own organisation;
//! every user may list, issue (expiring ones only) and revoke their own tokens. Users of
//! another organisation are indistinguishable from missing ones (404).

use actix_web::{delete, get, patch, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{Caller, OrgKind, Role, Scope, TokenInfo};
use crate::http::openapi as doc;
use crate::http::paging::{self, Page};
use crate::http::{ApiError, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    api(&mut ServiceConfig::new(cfg));
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub fn api(cfg: &mut ServiceConfig<'_>) {
    cfg.service(me)
        .service(list_users)
        .service(list_tokens)
        .service(create_token)
        .service(revoke_token)
        .service(disable_user)
        .service(enable_user)
        .service(password_link)
        .service(create_user)
        .service(update_user);
}

/// The caller may manage `user_id`'s tokens: their own, or any of their organisation's as its
/// admin. Returns the scope to look the user up in.
fn token_manager(caller: &Caller, user_id: i32) -> Result<Scope, ApiError> {
    super::manage::token_scope(caller, user_id)
}

#[derive(Serialize, ToSchema)]
struct MeUser {
    id: i32,
    name: String,
    role: Role,
}

#[derive(Serialize, ToSchema)]
struct MeOrganisation {
    id: i32,
    name: String,
    kind: OrgKind,
}

/// Who the caller is.
#[derive(Serialize, ToSchema)]
struct Me {
    user: MeUser,
    organisation: MeOrganisation,
}

/// The caller's user and organisation.
#[utoipa::path(
    operation_id = "get_me",
    tag = "users",
    responses((status = 200, description = "The caller.", body = Me,
        links(("user_tokens" = (operation_id = "list_tokens",
            parameters(("id" = "$response.body#/user/id"))))))),
)]
#[get("/v1/me")]
async fn me(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let client = state.db(&caller).await?;
    let org = client
        .query_one(
            "SELECT name FROM organisations WHERE id = $1",
            &[&caller.organisation_id],
        )
        .await?;
    Ok(HttpResponse::Ok().json(Me {
        user: MeUser {
            id: caller.user_id,
            name: caller.user_name,
            role: caller.role,
        },
        organisation: MeOrganisation {
            id: caller.organisation_id,
            name: org.get(0),
            kind: caller.organisation_kind,
        },
    }))
}

/// One of the organisation's users.
#[derive(Serialize, ToSchema)]
struct User {
    id: i32,
    name: String,
    /// As stored; one of the roles.
    #[schema(value_type = Role)]
    role: String,
    created_at: DateTime<Utc>,
    disabled: bool,
}

#[derive(Serialize, ToSchema)]
struct UserList {
    /// By id.
    items: Vec<User>,
    /// `after` for the next page; null on the last one.
    next_after: Option<i32>,
}

/// A page of a list keyed by a user's or a token's id.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// The last id of the previous page.
    after: Option<i32>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// The organisation's users (provider admins only).
#[utoipa::path(
    operation_id = "list_users",
    tag = "users",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of the organisation's users, by id.", body = UserList,
            links(("tokens" = (operation_id = "list_tokens",
                parameters(("id" = "$response.body#/items/0/id")))))),
        doc::Forbidden,
        doc::Invalid,
    ),
)]
#[get("/v1/users")]
async fn list_users(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let limit = paging::STANDARD.check(q.limit)?;
    let client = state.db(&caller).await?;
    let rows = client
        .query(
            "SELECT id, name, role, created_at, disabled_at IS NOT NULL
               FROM users WHERE organisation_id = $1 AND ($2::int IS NULL OR id > $2)
              ORDER BY id LIMIT $3",
            &[&caller.organisation_id, &q.after, &(limit + 1)],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| User {
            id: r.get(0),
            name: r.get(1),
            role: r.get(2),
            created_at: r.get(3),
            disabled: r.get(4),
        })
        .collect();
    let page = Page::from_rows(items, limit, |u: &User| u.id);
    Ok(HttpResponse::Ok().json(UserList {
        items: page.items,
        next_after: page.next_after,
    }))
}

#[derive(Serialize, ToSchema)]
struct TokenList {
    /// Newest (highest id) first.
    items: Vec<TokenInfo>,
    /// `after` for the next page (older tokens); null on the last one.
    next_after: Option<i32>,
}

/// A user's tokens: prefix, label, lifetime and last use, never the token. The user's own, or
/// any of the organisation's users' for a provider admin.
#[utoipa::path(
    operation_id = "list_tokens",
    tag = "users",
    params(("id" = i32, Path, description = "The user's id."), PageQuery),
    responses(
        (status = 200, description = "A page of the user's tokens, newest first (`after`: \
            the page goes on with lower ids).", body = TokenList),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[get("/v1/users/{id}/tokens")]
async fn list_tokens(
    caller: Caller,
    state: web::Data<AppState>,
    user_id: web::Path<i32>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let scope = token_manager(&caller, *user_id)?;
    let limit = paging::STANDARD.check(q.limit)?;
    let client = state.db(&caller).await?;
    let rows = super::list_tokens(&**client, scope, *user_id, q.after, Some(limit + 1)).await?;
    let page = Page::from_rows(rows, limit, |t: &TokenInfo| t.id);
    Ok(HttpResponse::Ok().json(TokenList {
        items: page.items,
        next_after: page.next_after,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
struct NewToken {
    /// A note to recognise the token by.
    #[schema(max_length = 200)]
    label: Option<String>,
    /// A service token, which never expires: provider admins only.
    service: bool,
}

/// A new token, shown once.
#[derive(Serialize, ToSchema)]
struct IssuedToken {
    user_id: i32,
    /// `hw_` and 64 hex digits: send it as `Authorization: Bearer <token>`.
    token: String,
    service: bool,
    note: &'static str,
}

/// Issues a token (shown once). It expires after `auth.token_ttl_days` unless it is a service
/// token. A user holds at most 20 active tokens (409 beyond).
#[utoipa::path(
    operation_id = "create_token",
    tag = "users",
    params(("id" = i32, Path, description = "The user's id.")),
    request_body = NewToken,
    responses(
        (status = 201, description = "The token, shown only now.", body = IssuedToken),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::PayloadTooLarge,
    ),
)]
#[post("/v1/users/{id}/tokens")]
async fn create_token(
    caller: Caller,
    state: web::Data<AppState>,
    user_id: web::Path<i32>,
    body: crate::http::Json<NewToken>,
) -> Result<HttpResponse, ApiError> {
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let token = super::manage::issue_token(
        &*tx,
        &caller,
        *user_id,
        body.label.as_deref(),
        body.service,
        state.settings.auth.token_ttl_days,
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(IssuedToken {
        user_id: *user_id,
        token,
        service: body.service,
        note: "the token is shown only now",
    }))
}

/// Revokes a token: requests with it are refused at once and its open event streams end within
/// a second; so are the tokens issued with it. The caller's own, or any of the organisation's
/// for a provider admin.
#[utoipa::path(
    operation_id = "revoke_token",
    tag = "users",
    params(("id" = i32, Path, description = "The token's id.")),
    responses(
        (status = 204, description = "Revoked."),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[delete("/v1/tokens/{id}")]
async fn revoke_token(
    caller: Caller,
    state: web::Data<AppState>,
    token_id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    super::manage::revoke_token(&*tx, &caller, *token_id).await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A user disabled or enabled.
#[derive(Serialize, ToSchema)]
struct UserDisabled {
    id: i32,
    disabled: bool,
    /// False when the user already was in that state.
    changed: bool,
}

/// Disables a user: every token of theirs stops working and their event streams end within a
/// second. An admin cannot disable themselves (someone must be left to undo it).
#[utoipa::path(
    operation_id = "disable_user",
    tag = "users",
    params(("id" = i32, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "Disabled.", body = UserDisabled),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
    ),
)]
#[post("/v1/users/{id}/disable")]
async fn disable_user(
    caller: Caller,
    state: web::Data<AppState>,
    user_id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    set_user_disabled(caller, state, *user_id, true).await
}

/// Enables a disabled user again: tokens neither expired nor revoked work again.
#[utoipa::path(
    operation_id = "enable_user",
    tag = "users",
    params(("id" = i32, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "Enabled.", body = UserDisabled),
        doc::Forbidden,
        doc::NotFound,
    ),
)]
#[post("/v1/users/{id}/enable")]
async fn enable_user(
    caller: Caller,
    state: web::Data<AppState>,
    user_id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    set_user_disabled(caller, state, *user_id, false).await
}

async fn set_user_disabled(
    caller: Caller,
    state: web::Data<AppState>,
    user_id: i32,
    disabled: bool,
) -> Result<HttpResponse, ApiError> {
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let changed = super::manage::set_disabled(&*tx, &caller, user_id, disabled).await?;
    tx.commit().await?;
    if !disabled {
        state.auth_failures.forget_all();
    }
    Ok(HttpResponse::Ok().json(UserDisabled {
        id: user_id,
        disabled,
        changed,
    }))
}

/// A one-time link to set a password, shown once.
#[derive(Serialize, ToSchema)]
struct IssuedPasswordLink {
    user_id: i32,
    /// Opens the console's set-password page; works once, until `expires_at`.
    url: String,
    expires_at: DateTime<Utc>,
    note: &'static str,
}

/// Issues a one-time link with which the user sets their console password (a new user's first,
/// or a reset). The link works once, for `console.password_link_hours`; an earlier unused link
/// of the user stops working. Shown only now: pass it to the person by a channel you trust.
/// Provider admins, for users of their own organisation; the user must be active and have an
/// email address (409 otherwise).
#[utoipa::path(
    operation_id = "create_password_link",
    tag = "users",
    params(("id" = i32, Path, description = "The user's id.")),
    responses(
        (status = 201, description = "The link, shown only now.", body = IssuedPasswordLink),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
    ),
)]
#[post("/v1/users/{id}/password-link")]
async fn password_link(
    caller: Caller,
    state: web::Data<AppState>,
    user_id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let link = super::password::issue_password_link(
        &*tx,
        Scope::Organisation(caller.organisation_id),
        *user_id,
        state.settings.console.password_link_hours,
        Some(caller.user_id),
    )
    .await
    .map_err(|e| match e {
        super::AdminError::Invalid(why) => ApiError::Conflict(why),
        other => other.into(),
    })?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "user.password_link",
            "user",
            link.user_id,
            serde_json::json!({"expires_at": link.expires_at}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(IssuedPasswordLink {
        user_id: link.user_id,
        url: link.url(&state.settings.console_url()),
        expires_at: link.expires_at,
        note: "the link is shown only now and works once",
    }))
}

/// A person who will use the console.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    /// 1 to 200 characters, unique in the organisation.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// The address they sign in with (then make them a set-password link).
    email: Option<String>,
    role: Role,
}

/// A user as created or changed.
#[derive(Serialize, ToSchema)]
struct UserChanged {
    id: i32,
    role: Role,
    /// False when nothing changed.
    changed: bool,
}

/// Adds a user to the caller's organisation (provider admins): a person who signs in to the
/// console with their email address once they have set a password through a one-time link
/// (`POST /v1/users/{id}/password-link`). No API token is made; issue one with
/// `POST /v1/users/{id}/tokens` for a machine.
#[utoipa::path(
    operation_id = "create_user",
    tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, description = "The user.", body = UserChanged,
            links(("password_link" = (operation_id = "create_password_link",
                parameters(("id" = "$response.body#/id")))))),
        doc::Forbidden,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/users")]
async fn create_user(
    caller: Caller,
    state: web::Data<AppState>,
    body: crate::http::Json<NewUser>,
) -> Result<HttpResponse, ApiError> {
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let id =
        super::manage::create_user(&*tx, &caller, &body.name, body.email.as_deref(), body.role)
            .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(UserChanged {
        id,
        role: body.role,
        changed: true,
    }))
}

/// What may change about a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UserUpdate {
    /// A role that fits the organisation; not the caller's own.
    role: Role,
}

/// Changes a user's role (provider admins, for users of their organisation other than
/// themselves). It applies from the user's next request.
#[utoipa::path(
    operation_id = "update_user",
    tag = "users",
    params(("id" = i32, Path, description = "The user's id.")),
    request_body = UserUpdate,
    responses(
        (status = 200, description = "The user's role now.", body = UserChanged),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[patch("/v1/users/{id}")]
async fn update_user(
    caller: Caller,
    state: web::Data<AppState>,
    user_id: web::Path<i32>,
    body: crate::http::Json<UserUpdate>,
) -> Result<HttpResponse, ApiError> {
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    let changed = super::manage::set_role(&*tx, &caller, *user_id, body.role).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(UserChanged {
        id: *user_id,
        role: body.role,
        changed,
    }))
}

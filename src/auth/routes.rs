//! `GET /v1/me`: who the token belongs to; users and their API tokens: list, issue, revoke,
//! disable and enable; one-time links for people to set their console password.
//!
//! Who may do what: a provider admin manages the users and tokens of its own organisation;
//! every user may list, issue (expiring ones only) and revoke their own tokens. Users of
//! another organisation are indistinguishable from missing ones (404).

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{Caller, OrgKind, Role, Scope, TokenInfo, TokenLifetime};
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
        .service(password_link);
}

/// The caller may manage `user_id`'s tokens: their own, or any of their organisation's as its
/// admin. Returns the scope to look the user up in.
fn token_manager(caller: &Caller, user_id: i32) -> Result<Scope, ApiError> {
    if caller.user_id != user_id {
        caller.require(&[Role::ProviderAdmin])?;
    }
    Ok(Scope::Organisation(caller.organisation_id))
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
    let scope = token_manager(&caller, *user_id)?;
    let lifetime = if body.service {
        caller.require(&[Role::ProviderAdmin])?;
        TokenLifetime::Service
    } else {
        TokenLifetime::Days(state.settings.auth.token_ttl_days)
    };
    let mut client = state.db(&caller).await?;
    let tx = client.transaction().await?;
    // The user must be in the caller's organisation (and active, which create_token checks).
    super::user_in_scope(&*tx, scope, *user_id).await?;
    let token = super::create_token(
        &*tx,
        *user_id,
        body.label.as_deref(),
        lifetime,
        caller.token_id,
    )
    .await?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "token.create",
            "user",
            *user_id,
            serde_json::json!({"prefix": token.get(..11), "label": body.label,
                               "service": body.service}),
        ),
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
    let scope = Scope::Organisation(caller.organisation_id);
    // An admin may revoke any of the organisation's (revoke_token answers 404 for others').
    if caller.role != Role::ProviderAdmin {
        // Anyone else may revoke only their own: another's token is refused whether or not it
        // exists, which tells nothing about it.
        let own = super::token_owner(&*tx, scope, *token_id)
            .await
            .is_ok_and(|owner| owner == caller.user_id);
        if !own {
            return Err(ApiError::Forbidden(
                "you may revoke only your own tokens; a provider admin may revoke any of the \
                 organisation's"
                    .into(),
            ));
        }
    }
    let revoked = super::revoke_token(&*tx, scope, *token_id, Some(caller.user_id)).await?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            "token.revoke",
            "token",
            *token_id,
            serde_json::json!({"changed": revoked}),
        ),
    )
    .await?;
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
    caller.require(&[Role::ProviderAdmin])?;
    if *user_id == caller.user_id {
        return Err(ApiError::Conflict(
            "you cannot disable yourself; ask another admin".into(),
        ));
    }
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
    caller.require(&[Role::ProviderAdmin])?;
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
    let scope = Scope::Organisation(caller.organisation_id);
    let changed = super::set_user_disabled(&*tx, scope, user_id, disabled).await?;
    crate::audit::by(
        &*tx,
        &caller,
        crate::audit::Entry::new(
            caller.organisation_id,
            if disabled {
                "user.disable"
            } else {
                "user.enable"
            },
            "user",
            user_id,
            serde_json::json!({"after": {"disabled": disabled}, "changed": changed}),
        ),
    )
    .await?;
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

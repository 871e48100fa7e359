//! `GET /v1/me`: who the token belongs to; users and their API tokens: list, issue, revoke,
//! disable and enable.
//!
//! Who may do what: a provider admin manages the users and tokens of its own organisation;
//! every user may list, issue (expiring ones only) and revoke their own tokens. Users of
//! another organisation are indistinguishable from missing ones (404).

use actix_web::{delete, get, post, web, HttpResponse};
use serde::Deserialize;

use super::{Caller, Role, Scope, TokenLifetime};
use crate::http::{ApiError, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(me)
        .service(list_users)
        .service(list_tokens)
        .service(create_token)
        .service(revoke_token)
        .service(disable_user)
        .service(enable_user);
}

/// The caller may manage `user_id`'s tokens: their own, or any of their organisation's as its
/// admin. Returns the scope to look the user up in.
fn token_manager(caller: &Caller, user_id: i32) -> Result<Scope, ApiError> {
    if caller.user_id != user_id {
        caller.require(&[Role::ProviderAdmin])?;
    }
    Ok(Scope::Organisation(caller.organisation_id))
}

#[get("/v1/me")]
async fn me(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let org = client
        .query_one(
            "SELECT name FROM organisations WHERE id = $1",
            &[&caller.organisation_id],
        )
        .await?;
    let name: String = org.get(0);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "user": { "id": caller.user_id, "name": caller.user_name, "role": caller.role },
        "organisation": { "id": caller.organisation_id, "name": name, "kind": caller.organisation_kind },
    })))
}

/// The organisation's users.
#[get("/v1/users")]
async fn list_users(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT id, name, role, created_at, disabled_at IS NOT NULL
               FROM users WHERE organisation_id = $1 ORDER BY name LIMIT 10000",
            &[&caller.organisation_id],
        )
        .await?;
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.get::<_, i32>(0),
                "name": r.get::<_, String>(1),
                "role": r.get::<_, String>(2),
                "created_at": r.get::<_, chrono::DateTime<chrono::Utc>>(3),
                "disabled": r.get::<_, bool>(4),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

/// A user's tokens: prefix, label, lifetime and last use, never the token.
#[get("/v1/users/{id}/tokens")]
async fn list_tokens(
    caller: Caller,
    state: web::Data<AppState>,
    user_id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let scope = token_manager(&caller, *user_id)?;
    let client = state.pool.get().await?;
    let items = super::list_tokens(&**client, scope, *user_id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct NewToken {
    label: Option<String>,
    /// A service token, which never expires: provider admins only.
    service: bool,
}

/// Issues a token (shown once). It expires after `auth.token_ttl_days` unless it is a service
/// token.
#[post("/v1/users/{id}/tokens")]
async fn create_token(
    caller: Caller,
    state: web::Data<AppState>,
    user_id: web::Path<i32>,
    body: web::Json<NewToken>,
) -> Result<HttpResponse, ApiError> {
    let scope = token_manager(&caller, *user_id)?;
    let lifetime = if body.service {
        caller.require(&[Role::ProviderAdmin])?;
        TokenLifetime::Service
    } else {
        TokenLifetime::Days(state.settings.auth.token_ttl_days)
    };
    let client = state.pool.get().await?;
    // The user must be in the caller's organisation (and active, which create_token checks).
    super::user_in_scope(&**client, scope, *user_id).await?;
    let token = super::create_token(
        &**client,
        *user_id,
        body.label.as_deref(),
        lifetime,
        Some(caller.token_id),
    )
    .await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "user_id": *user_id,
        "token": token,
        "service": body.service,
        "note": "the token is shown only now",
    })))
}

/// Revokes a token: requests with it are refused at once and its open event streams end within
/// a second.
#[delete("/v1/tokens/{id}")]
async fn revoke_token(
    caller: Caller,
    state: web::Data<AppState>,
    token_id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let scope = Scope::Organisation(caller.organisation_id);
    // An admin may revoke any of the organisation's (revoke_token answers 404 for others').
    if caller.role != Role::ProviderAdmin {
        // Anyone else may revoke only their own: another's token is refused whether or not it
        // exists, which tells nothing about it.
        let own = super::token_owner(&**client, scope, *token_id)
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
    super::revoke_token(&**client, scope, *token_id, Some(caller.user_id)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Disables a user: every token of theirs stops working and their event streams end within a
/// second. An admin cannot disable themselves (someone must be left to undo it).
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
    let client = state.pool.get().await?;
    let scope = Scope::Organisation(caller.organisation_id);
    let changed = super::set_user_disabled(&**client, scope, user_id, disabled).await?;
    if !disabled {
        state.auth_failures.forget_all();
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": user_id,
        "disabled": disabled,
        "changed": changed,
    })))
}

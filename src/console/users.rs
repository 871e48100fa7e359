//! The organisation's users: a list with a form to add one, and a page per user from which an
//! administrator makes a one-time set-password link, changes the role, disables or enables
//! them, and issues and revokes their API tokens (listed by prefix and last use). Every change
//! goes through `auth::manage` (or `password::issue_password_link`), as the API's does: the
//! same checks and audit rows. Administrators only, as `GET /v1/users` is; a user of another
//! organisation is a page that does not exist (404), as in the API. After a form, back to the
//! user's page (Post/Redirect/Get) saying what was done or what was wrong; a new token and a
//! new link are shown once, on their own page.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use serde::Deserialize;

use super::error::{back, encode, html_response, Said};
use super::{in_tx, role_label, see_other, ConsoleError, ConsoleUser, Section, Shell};
use crate::auth::password::issue_password_link;
use crate::auth::{Role, Scope};
use crate::http::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(list))
        .route("/users", web::post().to(create))
        .route("/users/{id}", web::get().to(show))
        .route("/users/{id}/password-link", web::post().to(password_link))
        .route("/users/{id}/role", web::post().to(set_role))
        .route("/users/{id}/disable", web::post().to(disable))
        .route("/users/{id}/enable", web::post().to(enable))
        .route("/users/{id}/tokens", web::post().to(issue_token))
        .route("/tokens/{id}/revoke", web::post().to(revoke_token));
}

struct UserRow {
    id: i32,
    name: String,
    email: String,
    role: &'static str,
    status: &'static str,
    password: &'static str,
    can_have_link: bool,
}

fn role_words(stored: &str) -> &'static str {
    Role::parse(stored).map_or("unknown", role_label)
}

const COLUMNS: &str = "id, name, coalesce(email, ''), role, disabled_at IS NOT NULL, \
                       password_hash IS NOT NULL";

fn row(r: &tokio_postgres::Row) -> UserRow {
    let email: String = r.get(2);
    let disabled: bool = r.get(4);
    UserRow {
        id: r.get(0),
        name: r.get(1),
        can_have_link: !email.is_empty() && !disabled,
        email: if email.is_empty() {
            "none (cannot sign in)".to_owned()
        } else {
            email
        },
        role: role_words(r.get(3)),
        status: if disabled { "Disabled" } else { "Active" },
        password: if r.get(5) { "Set" } else { "Not set" },
    }
}

/// A role the organisation's users may have, for a choice.
struct RoleChoice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn role_choices(user: &ConsoleUser, current: Option<&str>) -> Vec<RoleChoice> {
    Role::ALL
        .iter()
        .filter(|r| r.fits(user.caller.organisation_kind))
        .map(|r| RoleChoice {
            value: r.as_str(),
            label: role_label(*r),
            selected: current == Some(r.as_str()),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    shell: Shell,
    organisation: String,
    users: Vec<UserRow>,
    roles: Vec<RoleChoice>,
    form_token: String,
    problem: Option<String>,
}

async fn list(
    user: ConsoleUser,
    state: web::Data<AppState>,
    query: web::Query<Said>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(&[Role::ProviderAdmin])?;
    let client = state.db(&user.caller).await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM users WHERE organisation_id = $1 ORDER BY name LIMIT 10000"
            ),
            &[&user.caller.organisation_id],
        )
        .await?;
    let page = UsersPage {
        shell: user.shell("Users", Section::Users),
        organisation: user.organisation_name.clone(),
        users: rows.iter().map(row).collect(),
        roles: role_choices(&user, Some(Role::ProviderStaff.as_str())),
        form_token: user.form_token.clone(),
        problem: query.into_inner().problem,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// A token as the user's page lists it.
struct TokenRow {
    id: i32,
    prefix: String,
    label: String,
    created: String,
    expires: String,
    last_used: String,
    status: &'static str,
    active: bool,
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>, none: &str) -> String {
    t.map_or_else(
        || none.to_owned(),
        |t| t.format("%-d %b %Y %H:%M UTC").to_string(),
    )
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    shell: Shell,
    user: UserRow,
    form_token: String,
    link_hours: u32,
    roles: Vec<RoleChoice>,
    is_self: bool,
    disabled: bool,
    tokens: Vec<TokenRow>,
    token_days: u32,
    done: Option<String>,
    problem: Option<String>,
}

/// The user `id` of the caller's organisation, or `NotFound` (another organisation's, a
/// missing one and a malformed id alike).
async fn find(
    client: &deadpool_postgres::Client,
    user: &ConsoleUser,
    id: &str,
) -> Result<UserRow, ConsoleError> {
    let id: i32 = id.parse().map_err(|_| ConsoleError::NotFound)?;
    let r = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND organisation_id = $2"),
            &[&id, &user.caller.organisation_id],
        )
        .await?
        .ok_or(ConsoleError::NotFound)?;
    Ok(row(&r))
}

async fn show(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<Said>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(&[Role::ProviderAdmin])?;
    let client = state.db(&user.caller).await?;
    let shown = find(&client, &user, &id).await?;
    let stored_role: String = client
        .query_one("SELECT role FROM users WHERE id = $1", &[&shown.id])
        .await?
        .get(0);
    let tokens = crate::auth::list_tokens(
        &**client,
        Scope::Organisation(user.caller.organisation_id),
        shown.id,
        None,
        None,
    )
    .await?
    .into_iter()
    .map(|t| TokenRow {
        id: t.id,
        prefix: t
            .prefix
            .unwrap_or_else(|| "(made before prefixes were kept)".into()),
        label: t.label.unwrap_or_default(),
        created: when(Some(t.created_at), ""),
        expires: if t.service {
            "never (service token)".into()
        } else {
            when(t.expires_at, "never")
        },
        last_used: when(t.last_used_at, "never"),
        status: if t.revoked_at.is_some() {
            "Revoked"
        } else if t.active {
            "Active"
        } else {
            "Expired"
        },
        active: t.active,
    })
    .collect();
    let said = query.into_inner();
    let page = UserPage {
        shell: user.shell(shown.name.clone(), Section::Users),
        roles: role_choices(&user, Some(&stored_role)),
        is_self: shown.id == user.caller.user_id,
        disabled: shown.status == "Disabled",
        user: shown,
        form_token: user.form_token.clone(),
        link_hours: state.settings.console.password_link_hours,
        tokens,
        token_days: state.settings.auth.token_ttl_days,
        done: said.done,
        problem: said.problem,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

#[derive(Template)]
#[template(path = "link_issued.html")]
struct LinkIssued {
    shell: Shell,
    user_id: i32,
    user_name: String,
    url: String,
    expires: String,
}

async fn password_link(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(&[Role::ProviderAdmin])?;
    let mut client = state.db(&user.caller).await?;
    let shown = find(&client, &user, &id).await?;
    let tx = client.transaction().await?;
    let link = issue_password_link(
        &*tx,
        Scope::Organisation(user.caller.organisation_id),
        shown.id,
        state.settings.console.password_link_hours,
        Some(user.caller.user_id),
    )
    .await?;
    crate::audit::by(
        &*tx,
        &user.caller,
        crate::audit::Entry::new(
            user.caller.organisation_id,
            "user.password_link",
            "user",
            shown.id,
            serde_json::json!({"expires_at": link.expires_at}),
        ),
    )
    .await?;
    tx.commit().await?;
    let page = LinkIssued {
        shell: user.shell("Set-password link", Section::Users),
        user_id: shown.id,
        user_name: shown.name,
        url: link.url(&state.settings.console_url()),
        expires: link.expires_at.format("%-d %B %Y at %H:%M UTC").to_string(),
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

fn user_id(id: &str) -> Result<i32, ConsoleError> {
    id.parse().map_err(|_| ConsoleError::NotFound)
}

#[derive(Deserialize)]
struct NewUserForm {
    name: String,
    #[serde(default)]
    email: String,
    role: String,
}

async fn create(
    user: ConsoleUser,
    state: web::Data<AppState>,
    form: web::Form<NewUserForm>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(&[Role::ProviderAdmin])?;
    let role = Role::parse(&form.role)
        .ok_or_else(|| ConsoleError::BadForm("Choose one of the roles listed.".into()))?;
    let email = Some(form.email.trim()).filter(|e| !e.is_empty());
    let result = in_tx(&state, &user, async |tx| {
        crate::auth::manage::create_user(tx, &user.caller, &form.name, email, role).await
    })
    .await?;
    match result {
        Ok(id) => Ok(see_other(&format!(
            "/console/users/{id}?done={}",
            encode(&format!(
                "{} was added. {}",
                form.name.trim(),
                if email.is_some() {
                    "Make them a set-password link below."
                } else {
                    "Without an email address they cannot sign in; they can hold API tokens."
                }
            ))
        ))),
        Err(e) => back("/console/users", Err(e)),
    }
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

async fn set_role(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(&[Role::ProviderAdmin])?;
    let id = user_id(&id)?;
    let role = Role::parse(&form.role)
        .ok_or_else(|| ConsoleError::BadForm("Choose one of the roles listed.".into()))?;
    let result = in_tx(&state, &user, async |tx| {
        crate::auth::manage::set_role(tx, &user.caller, id, role).await
    })
    .await?;
    back(
        &format!("/console/users/{id}"),
        result.map(|changed| {
            if changed {
                format!("The role is now {}.", role_label(role))
            } else {
                format!("The role already was {}.", role_label(role))
            }
        }),
    )
}

async fn set_disabled(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    disabled: bool,
) -> Result<HttpResponse, ConsoleError> {
    user.require(&[Role::ProviderAdmin])?;
    let id = user_id(&id)?;
    let result = in_tx(&state, &user, async |tx| {
        crate::auth::manage::set_disabled(tx, &user.caller, id, disabled).await
    })
    .await?;
    if result.is_ok() && !disabled {
        state.auth_failures.forget_all();
    }
    back(
        &format!("/console/users/{id}"),
        result.map(|_| {
            if disabled {
                "Disabled: their sessions, tokens and live streams stop working.".to_owned()
            } else {
                "Enabled: their tokens that have not expired work again.".to_owned()
            }
        }),
    )
}

async fn disable(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    set_disabled(user, state, id, true).await
}

async fn enable(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    set_disabled(user, state, id, false).await
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    label: String,
    /// "yes" for a service token.
    #[serde(default)]
    service: String,
}

#[derive(Template)]
#[template(path = "token_issued.html")]
struct TokenIssued {
    shell: Shell,
    user_id: i32,
    user_name: String,
    token: String,
    lifetime: String,
}

async fn issue_token(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(&[Role::ProviderAdmin])?;
    let client = state.db(&user.caller).await?;
    let shown = find(&client, &user, &id).await?;
    drop(client);
    let label = Some(form.label.trim()).filter(|l| !l.is_empty());
    let service = form.service == "yes";
    let days = state.settings.auth.token_ttl_days;
    let result = in_tx(&state, &user, async |tx| {
        crate::auth::manage::issue_token(tx, &user.caller, shown.id, label, service, days).await
    })
    .await?;
    let token = match result {
        Ok(token) => token,
        Err(e) => return back(&format!("/console/users/{}", shown.id), Err(e)),
    };
    let page = TokenIssued {
        shell: user.shell("API token", Section::Users),
        user_id: shown.id,
        user_name: shown.name,
        token,
        lifetime: if service {
            "It is a service token: it never expires. Revoke it when it is no longer needed.".into()
        } else {
            format!("It expires in {days} days.")
        },
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

#[derive(Deserialize)]
struct RevokeForm {
    /// The user whose page the form is on.
    user: i32,
}

async fn revoke_token(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<RevokeForm>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(&[Role::ProviderAdmin])?;
    let token: i32 = id.parse().map_err(|_| ConsoleError::NotFound)?;
    let result = in_tx(&state, &user, async |tx| {
        crate::auth::manage::revoke_token(tx, &user.caller, token).await
    })
    .await?;
    back(
        &format!("/console/users/{}", form.user),
        result.map(|changed| {
            if changed {
                "The token is revoked: requests with it are refused from now on.".to_owned()
            } else {
                "The token was already revoked or expired.".to_owned()
            }
        }),
    )
}

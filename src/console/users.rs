//! The organisation's users: a list and a page per user, from which an administrator makes a
//! one-time set-password link. Administrators only, as `GET /v1/users` is; a user of another
//! organisation is a page that does not exist (404), as in the API.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::html_response;
use super::{role_label, ConsoleError, ConsoleUser, Section, Shell};
use crate::auth::password::issue_password_link;
use crate::auth::{Role, Scope};
use crate::http::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(list))
        .route("/users/{id}", web::get().to(show))
        .route("/users/{id}/password-link", web::post().to(password_link));
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

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    shell: Shell,
    organisation: String,
    users: Vec<UserRow>,
}

async fn list(user: ConsoleUser, state: web::Data<AppState>) -> Result<HttpResponse, ConsoleError> {
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
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    shell: Shell,
    user: UserRow,
    form_token: String,
    link_hours: u32,
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
) -> Result<HttpResponse, ConsoleError> {
    user.require(&[Role::ProviderAdmin])?;
    let client = state.db(&user.caller).await?;
    let shown = find(&client, &user, &id).await?;
    let page = UserPage {
        shell: user.shell(shown.name.clone(), Section::Users),
        user: shown,
        form_token: user.form_token.clone(),
        link_hours: state.settings.console.password_link_hours,
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

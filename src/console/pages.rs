//! Signing in and out, setting a password through a one-time link, the home page and the
//! stylesheet.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::{encode, html_response, Message};
use super::forms::{public_form_token, with_cookie};
use super::{
    kind_label, role_label, see_other, set_cookie, ConsoleError, ConsoleUser, Section, Shell,
    SESSION_COOKIE,
};
use crate::auth::password::{self, LinkState, SignIn, MIN_PASSWORD_CHARS};
use crate::auth::sessions;
use crate::http::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/assets/console.css", web::get().to(stylesheet))
        .route("/sign-in", web::get().to(sign_in_page))
        .route("/sign-in", web::post().to(sign_in))
        .route("/sign-out", web::post().to(sign_out))
        .route("/set-password", web::get().to(set_password_page))
        .route("/set-password", web::post().to(set_password));
}

const CSS: &str = include_str!("console.css");

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        // Overrides the scope's no-store: the stylesheet holds nothing private.
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(CSS)
}

/// Whether `next` is a console page to return to after sign-in: a path on this site, never
/// another site (`//host`, `/\host`) nor the sign-in page itself.
pub fn safe_next(next: &str) -> bool {
    next.starts_with("/console/")
        && !next.starts_with("/console/sign-in")
        && !next.contains("//")
        && !next.contains('\\')
        && next.len() <= 500
        && next.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    shell: Shell,
    organisation: String,
    name: String,
    role: &'static str,
    kind: &'static str,
    sections: Vec<HomeSection>,
}

struct HomeSection {
    href: &'static str,
    label: &'static str,
    description: &'static str,
}

async fn home(user: ConsoleUser) -> Result<HttpResponse, ConsoleError> {
    let sections = Section::ALL
        .iter()
        .filter(|s| **s != Section::Home)
        .filter_map(|s| {
            Some(HomeSection {
                href: s.href(&user.caller)?,
                label: s.label(),
                description: s.description(),
            })
        })
        .collect();
    let page = Home {
        shell: user.shell("Home", Section::Home),
        organisation: user.organisation_name.clone(),
        name: user.caller.user_name.clone(),
        role: role_label(user.caller.role),
        kind: kind_label(user.caller.organisation_kind),
        sections,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    shell: Shell,
    form_token: String,
    next: String,
    email: String,
    notice: Option<&'static str>,
    problem: Option<String>,
}

#[derive(Deserialize)]
struct SignInQuery {
    next: Option<String>,
    notice: Option<String>,
}

async fn sign_in_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<SignInQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let next = query
        .next
        .clone()
        .filter(|n| safe_next(n))
        .unwrap_or_default();
    let notice = match query.notice.as_deref() {
        Some("password-set") => Some("Your password is set. Sign in with it now."),
        Some("signed-out") => Some("You have signed out."),
        _ => None,
    };
    let (form_token, cookie) = public_form_token(&req, &state);
    let page = SignInPage {
        shell: Shell::public("Sign in"),
        form_token,
        next,
        email: String::new(),
        notice,
        problem: None,
    };
    Ok(with_cookie(
        html_response(StatusCode::OK, page.render()?),
        cookie,
    ))
}

#[derive(Deserialize)]
struct SignInForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

// Forms' `csrf` fields are checked before any handler runs (`forms`), so no form struct
// names them.

/// The one answer for a wrong address, a wrong password, no password yet and a disabled user.
pub const WRONG: &str = "The email address or password is wrong. Check them and try again.";

async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignInForm>,
) -> Result<HttpResponse, ConsoleError> {
    let form = form.into_inner();
    let from = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let outcome =
        password::check_sign_in(state.auth_pool(), &form.email, &form.password, &from).await?;
    let (status, problem) = match outcome {
        SignIn::Accepted { user_id } => {
            let client = state.auth_db().await?;
            let c = &state.settings.console;
            let session =
                sessions::open_session(&**client, user_id, c.session_hours, c.session_idle_minutes)
                    .await?;
            let next = Some(form.next)
                .filter(|n| safe_next(n))
                .unwrap_or_else(|| "/console/".to_owned());
            let set = set_cookie(&state, SESSION_COOKIE, Some(&session.token));
            return Ok(with_cookie(see_other(&next), Some(set)));
        }
        SignIn::Refused => (StatusCode::UNAUTHORIZED, WRONG.to_owned()),
        SignIn::Wait { secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "There have been too many attempts to sign in that failed. Wait {} and try \
                 again.",
                in_words(secs)
            ),
        ),
    };
    let (form_token, cookie) = public_form_token(&req, &state);
    let page = SignInPage {
        shell: Shell::public("Sign in"),
        form_token,
        next: Some(form.next).filter(|n| safe_next(n)).unwrap_or_default(),
        email: form.email.chars().take(254).collect(),
        notice: None,
        problem: Some(problem),
    };
    Ok(with_cookie(html_response(status, page.render()?), cookie))
}

/// A wait in words: "30 seconds", "2 minutes".
pub(crate) fn in_words(secs: i64) -> String {
    if secs < 90 {
        let secs = secs.max(1);
        format!("{secs} second{}", if secs == 1 { "" } else { "s" })
    } else {
        let minutes = (secs + 59) / 60;
        format!("{minutes} minutes")
    }
}

async fn sign_out(
    user: ConsoleUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let client = state.auth_db().await?;
    sessions::end_session(&**client, &user.session_token).await?;
    let clear = set_cookie(&state, SESSION_COOKIE, None);
    Ok(with_cookie(
        see_other("/console/sign-in?notice=signed-out"),
        Some(clear),
    ))
}

#[derive(Template)]
#[template(path = "set_password.html")]
struct SetPasswordPage {
    shell: Shell,
    form_token: String,
    token: String,
    email: String,
    min_chars: usize,
    problem: Option<String>,
}

#[derive(Deserialize)]
struct LinkQuery {
    token: Option<String>,
}

fn link_unusable() -> HttpResponse {
    Message {
        shell: Shell::public("This link cannot be used"),
        heading: "This link cannot be used".into(),
        paragraphs: vec![
            "It has been used already, it has expired, or a newer link has replaced it.".into(),
            "Ask an administrator of your organisation for a new link to set your password.".into(),
        ],
        link: Some((
            "/console/sign-in".into(),
            "Sign in with a password you have set".into(),
        )),
    }
    .respond(StatusCode::GONE)
}

async fn set_password_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<LinkQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let token = query.into_inner().token.unwrap_or_default();
    let client = state.auth_db().await?;
    let LinkState::Valid { email } = password::password_link_state(&**client, &token).await? else {
        return Ok(link_unusable());
    };
    let (form_token, cookie) = public_form_token(&req, &state);
    let page = SetPasswordPage {
        shell: Shell::public("Set your password"),
        form_token,
        token,
        email,
        min_chars: MIN_PASSWORD_CHARS,
        problem: None,
    };
    Ok(with_cookie(
        html_response(StatusCode::OK, page.render()?),
        cookie,
    ))
}

#[derive(Deserialize)]
struct SetPasswordForm {
    token: String,
    password: String,
    confirmation: String,
}

async fn set_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SetPasswordForm>,
) -> Result<HttpResponse, ConsoleError> {
    let form = form.into_inner();
    if let Some(problem) = password::password_problem(&form.password, &form.confirmation) {
        let client = state.auth_db().await?;
        let LinkState::Valid { email } =
            password::password_link_state(&**client, &form.token).await?
        else {
            return Ok(link_unusable());
        };
        let (form_token, cookie) = public_form_token(&req, &state);
        let page = SetPasswordPage {
            shell: Shell::public("Set your password"),
            form_token,
            token: form.token,
            email,
            min_chars: MIN_PASSWORD_CHARS,
            problem: Some(problem),
        };
        return Ok(with_cookie(
            html_response(StatusCode::UNPROCESSABLE_ENTITY, page.render()?),
            cookie,
        ));
    }
    match password::set_password_with_link(state.auth_pool(), &form.token, &form.password).await? {
        Some(_) => Ok(see_other(&format!(
            "/console/sign-in?notice={}",
            encode("password-set")
        ))),
        None => Ok(link_unusable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_pages_are_returned_to() {
        assert!(safe_next("/console/users/3"));
        assert!(safe_next("/console/?a=b"));
        for bad in [
            "https://evil.example/",
            "//evil.example/console/",
            "/console//evil",
            "/console/\\evil",
            "/console/sign-in",
            "/v1/me",
            "/console/a b",
        ] {
            assert!(!safe_next(bad), "{bad}");
        }
    }

    #[test]
    fn waits_in_words() {
        assert_eq!(in_words(1), "1 second");
        assert_eq!(in_words(30), "30 seconds");
        assert_eq!(in_words(120), "2 minutes");
        assert_eq!(in_words(899), "15 minutes");
    }
}

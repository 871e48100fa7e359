//! The console: server-rendered pages for people, under `/console/`, served by the same server
//! as the API.
//!
//! What every page shares lives here: the [`ConsoleUser`] extractor (a session cookie yields
//! the same [`Caller`] the API's bearer tokens do, so the same role and tenant rules apply),
//! the page shell (layout, organisation name, navigation), the form-token check on every POST
//! ([`forms`]) and HTML error pages ([`error`]). Pages are askama templates in `templates/`,
//! compiled into the binary with the one stylesheet; nothing is fetched from elsewhere and no
//! page needs JavaScript (the alarm board's live updates use a few lines of it, [`board`]).
//!
//! - Unauthenticated page requests are redirected to the sign-in page; unknown pages get an
//!   HTML 404.
//! - Every POST under `/console/` must carry the form token in a `csrf` field ([`forms`]).
//! - Every page is sent with a strict Content-Security-Policy (nothing but this server's own
//!   stylesheet, no scripts, no framing), `Referrer-Policy: no-referrer` (a set-password link
//!   must not leak through a Referer) and `Cache-Control: no-store`. The alarm board alone also
//!   runs this server's own script (`/console/assets/board.js`) for its live updates, and works
//!   without it.
//!
//! Sign-in, passwords and sessions themselves are [`crate::auth`]'s (it owns `users`); this
//! module only shows them.

mod board;
mod charts;
mod dead_letters;
mod devices;
pub mod error;
pub mod forms;
mod outcomes;
mod pages;
mod people;
mod plans;
mod proposals;
mod users;
mod visits;

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};

use crate::auth::sessions::{form_token, session_user};
use crate::auth::{Caller, OrgKind, Role};
use crate::http::{ApiError, AppState};
pub use error::ConsoleError;
pub(crate) use pages::in_words;

/// The cookie that holds a session token.
pub const SESSION_COOKIE: &str = "homeward_session";

/// Every console route, and `/` (which sends a browser to the console).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(to_console)))
        .service(web::resource("/console").route(web::get().to(to_console)))
        .service(
            web::scope("/console")
                .app_data(forms::form_config())
                .wrap(actix_web::middleware::from_fn(forms::check_form_token))
                .wrap(security_headers())
                .configure(pages::routes)
                .configure(users::routes)
                .configure(board::routes)
                .configure(people::routes)
                .configure(devices::routes)
                .configure(visits::routes)
                .configure(dead_letters::routes)
                .configure(outcomes::routes)
                .configure(plans::routes)
                .configure(proposals::routes)
                .default_service(web::to(not_found)),
        );
}

async fn to_console() -> HttpResponse {
    see_other("/console/")
}

async fn not_found() -> Result<HttpResponse, ConsoleError> {
    Err(ConsoleError::NotFound)
}

/// A 303 to `location` (after a form, and for redirects to pages).
/// Runs `change` in a transaction of the caller's, committed only when it succeeds: how a
/// form applies one of the API's changes.
pub(crate) async fn in_tx<T>(
    state: &AppState,
    user: &ConsoleUser,
    change: impl AsyncFnOnce(&tokio_postgres::Transaction<'_>) -> Result<T, ApiError>,
) -> Result<Result<T, ApiError>, ConsoleError> {
    let mut client = state.db(&user.caller).await?;
    let tx = client.transaction().await?;
    let result = change(&*tx).await;
    if result.is_ok() {
        tx.commit().await?;
    }
    Ok(result)
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// The Content-Security-Policy of every page: nothing but this server's stylesheet.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The alarm board's: [`CSP`], and this server's own scripts, which may fetch from it (the
/// board and its event stream). Still no inline script.
pub const CSP_WITH_SCRIPT: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                                   script-src 'self'; connect-src 'self'; form-action 'self'; \
                                   frame-ancestors 'none'; base-uri 'none'";

/// Headers every console response gets unless it sets its own (as the board sets its CSP).
fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CSP))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::CACHE_CONTROL, "no-store"))
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value for a console cookie: HttpOnly, SameSite=Strict, for `/console` only,
/// Secure when the console is served over HTTPS; it lasts as long as the browser runs (the
/// server decides when a session ends). `None` clears it.
pub fn set_cookie(state: &AppState, name: &str, value: Option<&str>) -> String {
    let secure = if state.settings.console_cookies_secure() {
        "; Secure"
    } else {
        ""
    };
    match value {
        Some(v) => format!("{name}={v}; Path=/console; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{name}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{secure}"),
    }
}

/// A signed-in person, from their session cookie.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    /// Who they are, exactly as the API would see them (no token: `token_id` is `None`).
    pub caller: Caller,
    pub organisation_name: String,
    /// The token this person's forms carry.
    pub form_token: String,
    session_token: String,
    /// `console_sessions.id`: what holds the alarm board's live stream open.
    session_id: i64,
}

impl ConsoleUser {
    /// The page shell for this user, with `current` marked in the navigation.
    pub fn shell(&self, title: impl Into<String>, current: Section) -> Shell {
        Shell {
            title: title.into(),
            user: Some(ShellUser {
                name: self.caller.user_name.clone(),
                organisation: self.organisation_name.clone(),
                form_token: self.form_token.clone(),
                nav: Section::ALL
                    .iter()
                    .filter_map(|s| {
                        Some(NavItem {
                            href: s.href(&self.caller)?,
                            label: s.label(),
                            current: *s == current,
                        })
                    })
                    .collect(),
            }),
        }
    }

    /// Refuses unless the user has one of `roles` (as [`Caller::require`] does for the API).
    pub fn require(&self, roles: &[Role]) -> Result<(), ConsoleError> {
        self.caller.require(roles).map_err(ConsoleError::from)
    }
}

impl FromRequest for ConsoleUser {
    type Error = ConsoleError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let token = cookie(req, SESSION_COOKIE);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        // Back to this page after signing in, for a page (not a form) request.
        let next =
            (req.method() == actix_web::http::Method::GET).then(|| match req.query_string() {
                "" => req.path().to_owned(),
                q => format!("{}?{q}", req.path()),
            });
        let request_id = crate::http::request_id::of(req);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ConsoleError::Unexpected(anyhow::anyhow!("no app state")))?;
            let token = token.ok_or(ConsoleError::SignIn { next: next.clone() })?;
            let client = state.auth_db().await?;
            let user = session_user(
                &**client,
                &token,
                state.settings.console.session_idle_minutes,
            )
            .await?
            .ok_or(ConsoleError::SignIn { next })?;
            let mut caller = user.caller;
            caller.request_id = request_id;
            Ok(ConsoleUser {
                caller,
                organisation_name: user.organisation_name,
                form_token: form_token(&token),
                session_token: token,
                session_id: user.session_id,
            })
        })
    }
}

/// What every page's layout shows (`templates/base.html`).
pub struct Shell {
    pub title: String,
    /// `None` on pages for people not signed in.
    pub user: Option<ShellUser>,
}

impl Shell {
    /// The shell of a page for someone not signed in.
    pub fn public(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            user: None,
        }
    }
}

pub struct ShellUser {
    pub name: String,
    pub organisation: String,
    pub form_token: String,
    pub nav: Vec<NavItem>,
}

pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The console's sections, in navigation order. A section is linked only once its pages exist
/// and only for the roles that may open them, so the navigation never leads to a dead end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Home,
    /// The live alarm board (providers).
    Board,
    /// Today's visits and exceptions (providers).
    Visits,
    /// People receiving care and their timelines (providers).
    People,
    /// Device health and links (providers).
    Devices,
    /// Outcome indicators, funnel plots and statements (commissioners; providers their own).
    Outcomes,
    /// Users of the organisation.
    Users,
    /// Tokens, devices and contracts.
    Administration,
}

impl Section {
    const ALL: &'static [Section] = &[
        Self::Home,
        Self::Board,
        Self::Visits,
        Self::People,
        Self::Devices,
        Self::Outcomes,
        Self::Users,
        Self::Administration,
    ];

    /// Where the section is, if it exists and `caller` may open it.
    fn href(self, caller: &Caller) -> Option<&'static str> {
        match self {
            Self::Home => Some("/console/"),
            Self::Board => crate::alarms::routes::ANYONE
                .contains(&caller.role)
                .then_some("/console/alarms"),
            Self::Visits => crate::people::EDITORS
                .contains(&caller.role)
                .then_some("/console/visits"),
            Self::People => crate::people::EDITORS
                .contains(&caller.role)
                .then_some("/console/people"),
            Self::Devices => crate::alarms::routes::ANYONE
                .contains(&caller.role)
                .then_some("/console/devices"),
            Self::Users => (caller.role == Role::ProviderAdmin).then_some("/console/users"),
            Self::Outcomes => outcomes::READERS
                .contains(&caller.role)
                .then_some("/console/outcomes"),
            // Not built yet.
            Self::Administration => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Home => "Home",
            Self::Board => "Alarm board",
            Self::Visits => "Visits",
            Self::People => "People",
            Self::Devices => "Devices",
            Self::Outcomes => "Outcomes",
            Self::Users => "Users",
            Self::Administration => "Administration",
        }
    }

    /// What the section is for, in a sentence (the home page lists the sections).
    fn description(self) -> &'static str {
        match self {
            Self::Home => "this page",
            Self::Board => "open alarms, most urgent and longest waiting first, live",
            Self::Visits => "today's visits and the exceptions to resolve",
            Self::People => "the people you care for and what happened to them",
            Self::Devices => "whether each device is working",
            Self::Outcomes => "outcomes, payments and how providers compare",
            Self::Users => "who can use Homeward for your organisation, and their passwords",
            Self::Administration => "tokens, devices and contracts",
        }
    }
}

/// A role in words.
pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::ProviderAdmin => "administrator",
        Role::ProviderStaff => "staff",
        Role::Responder => "responder",
        Role::Commissioner => "commissioner",
        Role::Auditor => "auditor",
    }
}

/// An organisation's kind in words.
pub fn kind_label(kind: OrgKind) -> &'static str {
    match kind {
        OrgKind::Provider => "a care provider",
        OrgKind::Commissioner => "a commissioner",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            token_id: None,
            user_id: 1,
            user_name: "Ann".into(),
            organisation_id: 1,
            organisation_kind: OrgKind::Provider,
            role,
            request_id: None,
        }
    }

    #[test]
    fn the_navigation_links_only_pages_that_exist_for_the_role() {
        let user = |role| ConsoleUser {
            caller: caller(role),
            organisation_name: "Org".into(),
            form_token: "t".into(),
            session_token: "s".into(),
            session_id: 1,
        };
        let links = |role| -> Vec<&str> {
            let shell = user(role).shell("x", Section::Home);
            shell.user.unwrap().nav.iter().map(|n| n.href).collect()
        };
        assert_eq!(
            links(Role::ProviderAdmin),
            [
                "/console/",
                "/console/alarms",
                "/console/visits",
                "/console/people",
                "/console/devices",
                "/console/outcomes",
                "/console/users"
            ]
        );
        assert_eq!(
            links(Role::ProviderStaff),
            [
                "/console/",
                "/console/alarms",
                "/console/visits",
                "/console/people",
                "/console/devices",
                "/console/outcomes"
            ]
        );
        assert_eq!(
            links(Role::Responder),
            ["/console/", "/console/alarms", "/console/devices"]
        );
        assert_eq!(
            links(Role::Commissioner),
            ["/console/", "/console/outcomes"]
        );
        assert_eq!(links(Role::Auditor), ["/console/", "/console/outcomes"]);
        let shell = user(Role::ProviderAdmin).shell("x", Section::Users);
        let nav = shell.user.unwrap().nav;
        assert!(nav.iter().any(|n| n.current && n.href == "/console/users"));
        assert_eq!(nav.iter().filter(|n| n.current).count(), 1);
    }
}

//! What a console page answers when it cannot show itself: an HTML page in plain words with the
//! right status, or a redirect to the sign-in page. The one place console errors become HTTP,
//! as `http::problem` is for the API.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use super::Shell;
use crate::auth::AdminError;
use crate::http::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Not signed in, or the session ended: to the sign-in page, then back to `next`.
    #[error("sign-in needed")]
    SignIn { next: Option<String> },
    /// The role may not open this page.
    #[error("{0}")]
    Forbidden(String),
    /// A form without the right form token (see `forms`).
    #[error("the form token is missing or wrong")]
    FormToken,
    /// No such page, or not in the caller's organisation.
    #[error("no such page")]
    NotFound,
    /// A form that does not parse.
    #[error("{0}")]
    BadForm(String),
    /// The database is unavailable.
    #[error("the database is unavailable")]
    Unavailable,
    #[error("internal error: {0:#}")]
    Unexpected(anyhow::Error),
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unauthorized => Self::SignIn { next: None },
            ApiError::Forbidden(why) => Self::Forbidden(why),
            ApiError::NotFound(_) => Self::NotFound,
            ApiError::BadRequest(why) | ApiError::Conflict(why) => Self::BadForm(why),
            ApiError::Validation(errors) => Self::BadForm(fields_in_words(&errors)),
            ApiError::TooManyRequests(why) | ApiError::PayloadTooLarge(why) => Self::BadForm(why),
            ApiError::MethodNotAllowed { .. } => Self::NotFound,
            ApiError::Unavailable => Self::Unavailable,
            ApiError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

impl From<AdminError> for ConsoleError {
    fn from(e: AdminError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<tokio_postgres::Error> for ConsoleError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for ConsoleError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<askama::Error> for ConsoleError {
    fn from(e: askama::Error) -> Self {
        Self::Unexpected(anyhow::anyhow!("a page template failed: {e}"))
    }
}

/// A page of a heading, paragraphs and an optional link (`templates/message.html`).
#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    pub shell: Shell,
    pub heading: String,
    pub paragraphs: Vec<String>,
    /// (href, text)
    pub link: Option<(String, String)>,
}

impl Message {
    /// The page as a response with `status`.
    pub fn respond(&self, status: StatusCode) -> HttpResponse {
        match self.render() {
            Ok(html) => html_response(status, html),
            Err(e) => {
                tracing::error!(error = %e, "the message template failed");
                HttpResponse::InternalServerError()
                    .content_type("text/plain; charset=utf-8")
                    .body("Something went wrong on our side.")
            }
        }
    }
}

/// An HTML response.
pub fn html_response(status: StatusCode, html: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(html)
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignIn { .. } => StatusCode::SEE_OTHER,
            Self::Forbidden(_) | Self::FormToken => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadForm(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let home = || Some(("/console/".to_owned(), "Go to the home page".to_owned()));
        let (heading, paragraphs, link): (&str, Vec<String>, _) = match self {
            Self::SignIn { next } => {
                let location = match next.as_deref().filter(|n| super::pages::safe_next(n)) {
                    Some(next) => format!("/console/sign-in?next={}", encode(next)),
                    None => "/console/sign-in".to_owned(),
                };
                return super::see_other(&location);
            }
            Self::Forbidden(_) => (
                "You cannot open this page",
                vec![
                    "Your role does not allow it. If you need it, ask an administrator of \
                      your organisation."
                        .into(),
                ],
                home(),
            ),
            Self::FormToken => (
                "This form could not be sent",
                vec![
                    "It did not carry the code that shows it came from this site, or you \
                     signed in again since it was opened. Nothing was changed."
                        .into(),
                    "Go back, reload the page and try again.".into(),
                ],
                home(),
            ),
            Self::NotFound => (
                "Page not found",
                vec![
                    "There is no such page, or it is not one your organisation can see. \
                      Check the address."
                        .into(),
                ],
                home(),
            ),
            Self::BadForm(why) => (
                "Something in the form was not right",
                vec![
                    why.clone(),
                    "Go back, check what you entered and try again.".into(),
                ],
                home(),
            ),
            Self::Unavailable => (
                "Homeward is busy or unavailable",
                vec!["Try again in a minute. Nothing you sent was lost or changed.".into()],
                None,
            ),
            Self::Unexpected(e) => {
                tracing::error!(error = %format!("{e:#}"), "console page failed");
                (
                    "Something went wrong on our side",
                    vec!["Try again later. If it keeps happening, tell your administrator.".into()],
                    home(),
                )
            }
        };
        let mut response = Message {
            shell: Shell::public(heading),
            heading: heading.to_owned(),
            paragraphs,
            link,
        }
        .respond(self.status_code());
        if matches!(self, Self::Unavailable) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        response
    }
}

/// Percent-encodes a query value (everything but unreserved characters and `/`).
/// What a page was sent back with by [`back`].
#[derive(Debug, Default, serde::Deserialize)]
pub struct Said {
    pub done: Option<String>,
    pub problem: Option<String>,
}

/// Back to `page` (Post/Redirect/Get) saying what was done (`done=`), or, for a refusal the
/// page can explain (a state, a wrong field), what was wrong (`problem=`); other errors are
/// error pages.
pub fn back(page: &str, result: Result<String, ApiError>) -> Result<HttpResponse, ConsoleError> {
    let (key, text) = match result {
        Ok(done) => ("done", done),
        Err(ApiError::Conflict(why) | ApiError::BadRequest(why)) => ("problem", why),
        Err(ApiError::Validation(errors)) => ("problem", fields_in_words(&errors)),
        Err(e) => return Err(e.into()),
    };
    let join = if page.contains('?') { '&' } else { '?' };
    Ok(super::see_other(&format!(
        "{page}{join}{key}={}",
        encode(&text)
    )))
}

/// Field errors as one line: `field: message; ...`.
fn fields_in_words(errors: &[crate::http::problem::FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

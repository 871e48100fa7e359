//! Cross-site request forgery: every POST under `/console/` must carry, in a `csrf` form field,
//! a token that only a page of this site could have given it. Checked here, in middleware in
//! front of every console route, so no form can forget it.
//!
//! - Signed in: the session's form token ([`crate::auth::sessions::form_token`], derived from
//!   the session cookie).
//! - Not yet signed in (sign-in, set-password): a random token that the page also sets in the
//!   HttpOnly [`FORM_COOKIE`] ("double submit"); another site can neither read the cookie nor
//!   set it, so it cannot fill the field.
//!
//! Tokens are compared in constant time. A POST without a matching token is refused with a 403
//! page before any handler runs, and changes nothing. The cookies are also SameSite=Strict, so a
//! browser does not send them with another site's request in the first place; the token holds
//! even where that is not honoured.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;

use super::{cookie, ConsoleError, SESSION_COOKIE};
use crate::auth::sessions::form_token;
use crate::http::AppState;
use crate::secret::{hashes_equal, random_token};

/// The cookie holding the form token of pages for people not yet signed in.
pub const FORM_COOKIE: &str = "homeward_form";

/// Largest console form body, in bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Forms that do not parse get an HTML page, not actix's plain text.
pub fn form_config() -> web::FormConfig {
    web::FormConfig::default()
        .limit(MAX_FORM_BYTES)
        .error_handler(|e, _| {
            ConsoleError::BadForm(format!("The form could not be read ({e}).")).into()
        })
}

#[derive(Deserialize)]
struct TokenField {
    csrf: Option<String>,
}

fn is_token(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The tokens a form from this browser may carry.
fn expected_tokens(req: &HttpRequest) -> Vec<String> {
    let mut tokens = Vec::with_capacity(2);
    if let Some(session) = cookie(req, SESSION_COOKIE).filter(|t| is_token(t)) {
        tokens.push(form_token(&session));
    }
    if let Some(form) = cookie(req, FORM_COOKIE).filter(|t| is_token(t)) {
        tokens.push(form);
    }
    tokens
}

/// The middleware: refuses a POST whose `csrf` field matches none of [`expected_tokens`].
pub async fn check_form_token(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if req.method() != Method::POST {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let body = match read_body(&mut req).await {
        Ok(body) => body,
        Err(e) => return Ok(req.error_response(e)),
    };
    let sent = std::str::from_utf8(&body)
        .ok()
        .and_then(|text| web::Query::<TokenField>::from_query(text).ok())
        .and_then(|q| q.into_inner().csrf);
    let expected = expected_tokens(req.request());
    let matches = sent.is_some_and(|sent| {
        expected.iter().fold(false, |any, t| {
            hashes_equal(t.as_bytes(), sent.as_bytes()) | any
        })
    });
    if !matches {
        metrics::counter!("homeward_console_form_token_refusals_total").increment(1);
        return Ok(req.error_response(ConsoleError::FormToken));
    }
    req.set_payload(Payload::from(body));
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

async fn read_body(req: &mut ServiceRequest) -> Result<Bytes, ConsoleError> {
    use actix_web::HttpMessage;
    use futures_util::StreamExt;
    let mut payload = req.take_payload();
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ConsoleError::BadForm(format!("The form could not be read ({e}).")))?;
        if body.len() + chunk.len() > MAX_FORM_BYTES {
            return Err(ConsoleError::BadForm("The form is too long.".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The form token for a page shown to someone not signed in: the one in their [`FORM_COOKIE`],
/// or a new one with the `Set-Cookie` value that gives it to them.
pub fn public_form_token(req: &HttpRequest, state: &AppState) -> (String, Option<String>) {
    match cookie(req, FORM_COOKIE).filter(|t| is_token(t)) {
        Some(token) => (token, None),
        None => {
            let token = random_token(32);
            let set = super::set_cookie(state, FORM_COOKIE, Some(&token));
            (token, Some(set))
        }
    }
}

/// Adds a `Set-Cookie` to a response, if there is one.
pub fn with_cookie(mut response: HttpResponse, set_cookie: Option<String>) -> HttpResponse {
    if let Some(value) = set_cookie.and_then(|v| v.parse().ok()) {
        response
            .headers_mut()
            .append(actix_web::http::header::SET_COOKIE, value);
    }
    response
}

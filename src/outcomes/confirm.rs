//! The person's own channel for confirming an outcome of their plan: a one-time link
//! (`/confirm/{token}`) or a short code typed at `/confirm`, issued by provider staff or the
//! council ([`super::plans`]). The person (or their family) sees the outcome in their own words
//! and answers "Yes, I can do this now" or "Not yet", with optional feedback. The first answer
//! uses the link; an expired or used link says so on the page. A "yes" dates the achievement:
//! the UTC date of the answer, never a date anyone types.
//!
//! The pages are plain HTML rendered here and embedded in the binary: no script (a
//! `Content-Security-Policy` forbids it), one column that fits a 360 px screen, labelled
//! controls, plain words. `/v1/confirmations/{token}` is the same as JSON, for the console.
//!
//! Only SHA-256 hashes of tokens and codes are stored. A token is 32 random bytes (64 hex
//! digits); a code is 10 characters from a 32-letter alphabet without look-alikes (0/O, 1/I),
//! 50 bits, so guessing one of the few live codes is not practical. Wrong codes are limited
//! besides, per client address, wherever a code is taken (the code page, `/confirm/{code}`,
//! `/v1/confirmations/{code}`): see [`FREE_WRONG_CODES_PER_ADDRESS`]. Tokens are not limited.

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::password::{backoff_wait, count_failure};
use crate::auth::Caller;
use crate::http::{ApiError, AppState};

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    // A form that does not parse (no form content type, a field repeated) gets a problem
    // document naming what is wrong, not the web framework's plain text.
    cfg.app_data(web::FormConfig::default().error_handler(|e, _| {
        ApiError::BadRequest(format!("the form could not be read: {e}")).into()
    }));
    cfg.service(code_page)
        .service(code_answer)
        .service(link_page)
        .service(link_answer)
        .service(get_confirmation)
        .service(post_confirmation);
}

/// Letters and digits a person can read back without confusion.
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 10;
/// Longest feedback kept (characters).
const FEEDBACK_MAX: usize = 2000;

// The limit on wrong codes, per client address (the TCP peer's, as for sign-in), with the
// sign-in back-off's rules and table (`crate::auth::password`): the first
// FREE_WRONG_CODES_PER_ADDRESS codes that match no link are answered at once; after that the
// address waits 30 seconds after its last wrong code, doubling with each further one up to 15
// minutes, and a code posted too early is answered 429 without being looked up (nor counted).
// Wrong codes are forgotten an hour after the address's last one; right codes (a link found,
// even a used or expired one) never count and never clear the count, or one real code would
// clear the way for guesses.
//
// The figures: a code is 50 bits (2^50, about 10^15 codes) and only a few are live at once, so
// even unlimited guessing would rarely succeed; the limit makes scripted guessing slow (about
// four guesses an hour from an address once the wait is at its longest) and cheap for the
// server to refuse. Ten is well above what a person mistyping a code from a letter needs (a
// few tries), and leaves room for a household or a care home whose people share one address.

/// Wrong codes a client address may type before it waits.
pub const FREE_WRONG_CODES_PER_ADDRESS: i32 = 10;

/// The back-off key of wrong codes from `address`: apart from sign-in's keys.
fn code_backoff_key(address: &str) -> [u8; 32] {
    crate::secret::hash_secret(&format!("confirm-code:{address}"))
}

/// The client's IP address, as text (the TCP peer's).
fn client_address(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// Seconds the client at `address` must wait before `key` is looked up, when it is a code;
/// 0 for a token, or when it need not wait.
async fn code_wait(c: &impl GenericClient, key: &Key, address: &str) -> Result<i64, ApiError> {
    if !matches!(key, Key::Code(_)) {
        return Ok(0);
    }
    let wait = backoff_wait(
        c,
        &[(code_backoff_key(address), FREE_WRONG_CODES_PER_ADDRESS)],
    )
    .await?;
    if wait > 0 {
        metrics::counter!("homeward_confirmation_codes_total", "outcome" => "wait").increment(1);
    }
    Ok(wait)
}

/// Counts a wrong code from `address` (a token that matches nothing is not counted).
async fn wrong_code(c: &impl GenericClient, key: &Key, address: &str) -> Result<(), ApiError> {
    if matches!(key, Key::Code(_)) {
        count_failure(c, &[code_backoff_key(address)]).await?;
        metrics::counter!("homeward_confirmation_codes_total", "outcome" => "wrong").increment(1);
    }
    Ok(())
}

/// `response` with `Retry-After: secs`.
fn retry_after(mut response: HttpResponse, secs: i64) -> HttpResponse {
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}

/// The JSON routes' answer to a code that must wait: a problem document with `Retry-After`.
fn wait_problem(secs: i64) -> HttpResponse {
    retry_after(
        ApiError::TooManyRequests(format!(
            "too many wrong codes from this address; try again in {} seconds",
            secs.max(1)
        ))
        .error_response(),
        secs,
    )
}

/// A link as issued: the only moment the token and code exist in clear.
pub(super) struct Issued {
    pub token: String,
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

fn hash(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// A code as typed: case, spaces and dashes do not matter.
fn normalise_code(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

fn new_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| char::from(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())]))
        .collect()
}

/// Issues a link for outcome `outcome` of plan `plan` (the caller's right to has been
/// checked), valid for `days` days.
pub(super) async fn issue(
    c: &impl GenericClient,
    caller: &Caller,
    plan: i64,
    outcome: i64,
    days: u32,
) -> Result<Issued, ApiError> {
    let token = {
        let mut b = [0u8; 32];
        rand::fill(&mut b);
        hex::encode(b)
    };
    // A code is short: on the rare collision with another link's, draw again.
    for _ in 0..5 {
        let code = new_code();
        let res = c
            .query_one(
                "INSERT INTO plan_confirmation_links (plan_id, outcome_id, token_hash, code_hash, issued_by,
                                                      issued_by_organisation, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(days => $7)) RETURNING expires_at",
                &[&plan, &outcome, &hash(&token), &hash(&code), &caller.user_id,
                  &caller.organisation_id, &(days as i32)],
            )
            .await;
        match res {
            Ok(r) => {
                return Ok(Issued {
                    token,
                    code: format!("{}-{}", &code[..5], &code[5..]),
                    expires_at: r.get(0),
                })
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Unexpected(anyhow::anyhow!(
        "no free confirmation code after five draws"
    )))
}

/// A token from a path, or a code from a form: which hash column to look in.
#[derive(Debug, Clone)]
enum Key {
    Token(String),
    Code(String),
}

impl Key {
    /// A path segment: 64 hex digits are a token, anything else is read as a code.
    fn from_path(s: &str) -> Self {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Key::Token(s.to_ascii_lowercase())
        } else {
            Key::Code(normalise_code(s))
        }
    }

    fn column_and_hash(&self) -> (&'static str, Vec<u8>) {
        match self {
            Key::Token(t) => ("token_hash", hash(t)),
            Key::Code(c) => ("code_hash", hash(c)),
        }
    }
}

/// What a link is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Status {
    /// Waiting for the answer.
    Open,
    /// Answered: it cannot be used again.
    Used,
    /// Not answered in time.
    Expired,
}

struct Link {
    id: i64,
    statement: String,
    expires_at: DateTime<Utc>,
    answered: Option<(String, DateTime<Utc>)>,
}

impl Link {
    fn status(&self) -> Status {
        if self.answered.is_some() {
            Status::Used
        } else if self.expires_at <= Utc::now() {
            Status::Expired
        } else {
            Status::Open
        }
    }
}

async fn find(c: &impl GenericClient, key: &Key) -> Result<Option<Link>, ApiError> {
    let (column, h) = key.column_and_hash();
    let row = c
        .query_opt(
            &format!(
                "SELECT l.id, o.statement, l.expires_at, k.answer, k.confirmed_at
                   FROM plan_confirmation_links l
                   JOIN plan_outcomes o ON o.id = l.outcome_id
                   LEFT JOIN plan_outcome_confirmations k ON k.link_id = l.id
                  WHERE l.{column} = $1"
            ),
            &[&h],
        )
        .await?;
    Ok(row.map(|r| Link {
        id: r.get(0),
        statement: r.get(1),
        expires_at: r.get(2),
        answered: r
            .get::<_, Option<String>>(3)
            .map(|a| (a, r.get::<_, DateTime<Utc>>(4))),
    }))
}

/// Why an answer was not taken.
enum Refused {
    Unknown,
    Used(DateTime<Utc>),
    Expired(DateTime<Utc>),
    Invalid(&'static str, &'static str),
}

/// Records the answer to a link: once, before it expires.
async fn answer(
    c: &impl GenericClient,
    key: &Key,
    answer: &str,
    feedback: Option<&str>,
) -> Result<Result<(Link, DateTime<Utc>), Refused>, ApiError> {
    if !["yes", "not_yet"].contains(&answer) {
        return Ok(Err(Refused::Invalid("answer", "yes or not_yet")));
    }
    let feedback = feedback.map(str::trim).filter(|f| !f.is_empty());
    if feedback.is_some_and(|f| f.chars().count() > FEEDBACK_MAX) {
        return Ok(Err(Refused::Invalid("feedback", "at most 2000 characters")));
    }
    let Some(link) = find(c, key).await? else {
        return Ok(Err(Refused::Unknown));
    };
    match link.status() {
        Status::Used => {
            return Ok(Err(Refused::Used(
                link.answered.as_ref().map_or(link.expires_at, |a| a.1),
            )))
        }
        Status::Expired => return Ok(Err(Refused::Expired(link.expires_at))),
        Status::Open => {}
    }
    // The link's uniqueness makes the first answer the only one, even when two arrive at
    // once; the expiry is checked again by the database's clock.
    let res = c
        .query_opt(
            "INSERT INTO plan_outcome_confirmations (link_id, outcome_id, answer, feedback)
             SELECT l.id, l.outcome_id, $2, $3 FROM plan_confirmation_links l
              WHERE l.id = $1 AND l.expires_at > now()
             RETURNING confirmed_at, id",
            &[&link.id, &answer, &feedback],
        )
        .await;
    match res {
        Ok(Some(r)) => {
            let of = c
                .query_one(
                    "SELECT p.organisation_id, o.id FROM plan_outcomes o JOIN outcome_plans p ON p.id = o.plan_id
                      WHERE o.id = (SELECT outcome_id FROM plan_confirmation_links WHERE id = $1)",
                    &[&link.id],
                )
                .await?;
            let (org, outcome): (i32, i64) = (of.get(0), of.get(1));
            crate::audit::record(
                c,
                &crate::audit::Actor::Person { link_id: link.id },
                crate::audit::Entry::new(
                    org,
                    "plan.confirm",
                    "plan_outcome",
                    outcome,
                    serde_json::json!({"confirmation_id": r.get::<_, i64>(1), "answer": answer,
                                       "feedback": feedback}),
                ),
            )
            .await?;
            Ok(Ok((link, r.get(0))))
        }
        Ok(None) => Ok(Err(Refused::Expired(link.expires_at))),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            Ok(Err(Refused::Used(Utc::now())))
        }
        Err(e) => Err(e.into()),
    }
}

// ----------------------------------------------------------------------------------- the pages

/// Text for HTML: the five characters that could start markup or end an attribute.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%-d %B %Y").to_string()
}

const STYLE: &str = "body{margin:0;font:1.125rem/1.5 system-ui,sans-serif;color:#1b1b1b;background:#fff}\
main{max-width:34rem;margin:0 auto;padding:1rem}\
h1{font-size:1.5rem;line-height:1.25}\
blockquote{margin:1rem 0;padding:.75rem 1rem;border-left:.3rem solid #1d5fa8;background:#eef4fb;font-size:1.25rem}\
label{display:block;font-weight:600;margin:1rem 0 .25rem}\
textarea,input[type=text]{box-sizing:border-box;width:100%;font:inherit;padding:.5rem;border:2px solid #555;border-radius:.25rem}\
fieldset{border:0;padding:0;margin:1rem 0}legend{font-weight:600}\
button{display:block;box-sizing:border-box;width:100%;min-height:3rem;margin:.75rem 0;font:inherit;font-weight:600;\
padding:.6rem;border-radius:.25rem;border:2px solid #1d5fa8;background:#1d5fa8;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#1d5fa8}\
a:focus,button:focus,input:focus,textarea:focus{outline:3px solid #0b0c0c;outline-offset:2px;box-shadow:0 0 0 2px #ffdd00}\
.hint{color:#444;font-size:1rem}.error{color:#a4000f;font-weight:600}";

fn page(status: actix_web::http::StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"robots\" content=\"noindex\">\
             <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
            escape(title)
        ))
}

/// The question, posting to `action` (with the code, when it came from the code page).
fn question(link: &Link, action: &str, code: Option<&str>, error: Option<&str>) -> HttpResponse {
    let hidden = code.map_or(String::new(), |c| {
        format!(
            "<input type=\"hidden\" name=\"code\" value=\"{}\">",
            escape(c)
        )
    });
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    page(
        actix_web::http::StatusCode::OK,
        "Can you do this now?",
        &format!(
            "<h1>Can you do this now?</h1>\
             <p>This is one of the goals in your plan, in your words:</p>\
             <blockquote>{}</blockquote>{error}\
             <form method=\"post\" action=\"{}\">{hidden}\
             <label for=\"feedback\">Anything you want to tell us (you can leave this empty)</label>\
             <textarea id=\"feedback\" name=\"feedback\" rows=\"4\" maxlength=\"{FEEDBACK_MAX}\"></textarea>\
             <fieldset><legend>Your answer</legend>\
             <button type=\"submit\" name=\"answer\" value=\"yes\">Yes, I can do this now</button>\
             <button type=\"submit\" name=\"answer\" value=\"not_yet\" class=\"secondary\">Not yet</button>\
             </fieldset></form>\
             <p class=\"hint\">You can answer once. This link works until {}.</p>",
            escape(&link.statement),
            escape(action),
            day(link.expires_at),
        ),
    )
}

fn refused_page(r: Refused) -> HttpResponse {
    use actix_web::http::StatusCode;
    match r {
        Refused::Unknown => page(
            StatusCode::NOT_FOUND,
            "Link not found",
            "<h1>We cannot find this link or code</h1>\
             <p>Please check it and try again, or ask your care provider or the council for a new one.</p>\
             <p><a href=\"/confirm\">Type a code</a></p>",
        ),
        Refused::Used(at) => page(
            StatusCode::GONE,
            "Link already used",
            &format!(
                "<h1>This link has already been used</h1>\
                 <p>An answer was given on {}. Each link can be used once.</p>\
                 <p>If you want to change your answer, ask your care provider or the council for a new link.</p>",
                day(at)
            ),
        ),
        Refused::Expired(at) => page(
            StatusCode::GONE,
            "Link expired",
            &format!(
                "<h1>This link has expired</h1>\
                 <p>It worked until {}. Nothing was recorded.</p>\
                 <p>Ask your care provider or the council for a new link.</p>",
                day(at)
            ),
        ),
        Refused::Invalid(field, _) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Please try again",
            &format!(
                "<h1>Please try again</h1><p class=\"error\" role=\"alert\">{}</p>\
                 <p>Go back to the page and choose an answer.</p>",
                if field == "feedback" {
                    "Your message is too long: please keep it under 2000 characters."
                } else {
                    "Please choose \"Yes, I can do this now\" or \"Not yet\"."
                }
            ),
        ),
    }
}

fn thanks(answer: &str) -> HttpResponse {
    let text = if answer == "yes" {
        "We have recorded that you can do this now. The council may check this with you."
    } else {
        "We have recorded that you cannot do this yet. Thank you for telling us."
    };
    page(
        actix_web::http::StatusCode::OK,
        "Thank you",
        &format!("<h1>Thank you</h1><p>{text}</p><p>You can close this page.</p>"),
    )
}

/// The pages' answer to a code that must wait: 429, plain words, `Retry-After`.
fn wait_page(secs: i64) -> HttpResponse {
    retry_after(
        page(
            StatusCode::TOO_MANY_REQUESTS,
            "Please wait",
            &format!(
                "<h1>Please wait before you try again</h1>\
                 <p>Several codes typed here did not match any we gave out, so we have paused \
                 checking codes for a short while. Please wait {} and try again.</p>\
                 <p>If you are not sure of your code, ask your care provider or the council.</p>\
                 <p><a href=\"/confirm\">Type a code</a></p>",
                crate::console::in_words(secs)
            ),
        ),
        secs,
    )
}

fn code_form(error: Option<&str>) -> HttpResponse {
    let (status, error, field) = match error {
        Some(e) => (
            actix_web::http::StatusCode::NOT_FOUND,
            format!(
                "<p class=\"error\" role=\"alert\" id=\"code-error\">{}</p>",
                escape(e)
            ),
            // The field names the problem too, for whoever reaches it by the keyboard.
            "aria-describedby=\"code-hint code-error\" aria-invalid=\"true\"",
        ),
        None => (
            actix_web::http::StatusCode::OK,
            String::new(),
            "aria-describedby=\"code-hint\"",
        ),
    };
    page(
        status,
        "Enter your code",
        &format!(
            "<h1>Enter your code</h1>\
             <p>Your care provider or the council gave you a code to tell us how you are getting on with a goal in your plan.</p>\
             {error}<form method=\"post\" action=\"/confirm\">\
             <label for=\"code\">Your code</label>\
             <p class=\"hint\" id=\"code-hint\">10 letters and numbers, for example ABCDE-23456</p>\
             <input type=\"text\" id=\"code\" name=\"code\" autocomplete=\"off\" autocapitalize=\"characters\" \
             spellcheck=\"false\" {field} required>\
             <button type=\"submit\">Continue</button></form>"
        ),
    )
}

/// What the pages post (`application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, ToSchema)]
struct AnswerForm {
    /// On the code page: the code.
    code: Option<String>,
    /// `yes` or `not_yet`; absent on the code page's first step.
    #[schema(value_type = Option<Answer>)]
    answer: Option<String>,
    /// Optional, at most 2000 characters.
    #[schema(max_length = 2000)]
    feedback: Option<String>,
}

/// The page where a person types the short code they were given.
#[utoipa::path(
    operation_id = "confirm_code_page",
    tag = "outcomes",
    security(()),
    responses((status = 200, description = "An HTML page.", content_type = "text/html", body = String)),
)]
#[get("/confirm")]
async fn code_page() -> HttpResponse {
    code_form(None)
}

/// The code page's form: with a code only, the question for that code; with an answer too,
/// records it.
#[utoipa::path(
    operation_id = "confirm_code_answer",
    tag = "outcomes",
    security(()),
    request_body(content = AnswerForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The question, or thanks.", content_type = "text/html", body = String),
        (status = 404, description = "No such code.", content_type = "text/html", body = String),
        (status = 410, description = "Used or expired.", content_type = "text/html", body = String),
        (status = 422, description = "No answer chosen, or feedback too long.", content_type = "text/html", body = String),
        (status = 415, description = "Not a form (`application/x-www-form-urlencoded`)."),
        (status = 429, description = "Too many wrong codes from this address: wait, the code was not checked.",
            content_type = "text/html", body = String,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again."))),
    ),
)]
#[post("/confirm")]
async fn code_answer(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<AnswerForm>,
) -> Result<HttpResponse, ApiError> {
    let Some(code) = form
        .code
        .as_deref()
        .map(normalise_code)
        .filter(|c| !c.is_empty())
    else {
        return Ok(code_form(Some("Please type your code.")));
    };
    let key = Key::Code(code.clone());
    let from = client_address(&req);
    let mut c = state.auth_db().await?;
    let tx = c.transaction().await?;
    let page = respond(&*tx, &key, &from, "/confirm", Some(&code), &form).await?;
    tx.commit().await?;
    Ok(page)
}

/// The person's page for one link.
#[utoipa::path(
    operation_id = "confirm_link_page",
    tag = "outcomes",
    security(()),
    params(("token" = String, Path, description = "The link's token.")),
    responses(
        (status = 200, description = "The question.", content_type = "text/html", body = String),
        (status = 404, description = "No such link.", content_type = "text/html", body = String),
        (status = 410, description = "Used or expired.", content_type = "text/html", body = String),
        (status = 429, description = "A code, after too many wrong codes from this address: wait.",
            content_type = "text/html", body = String,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again."))),
    ),
)]
#[get("/confirm/{token}")]
async fn link_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let token = path.into_inner();
    let key = Key::from_path(&token);
    let from = client_address(&req);
    let c = state.auth_db().await?;
    let wait = code_wait(&**c, &key, &from).await?;
    if wait > 0 {
        return Ok(wait_page(wait));
    }
    Ok(match find(&**c, &key).await? {
        None => {
            wrong_code(&**c, &key, &from).await?;
            refused_page(Refused::Unknown)
        }
        Some(link) => match link.status() {
            Status::Open => question(&link, &format!("/confirm/{token}"), None, None),
            Status::Used => refused_page(Refused::Used(
                link.answered.as_ref().map_or(link.expires_at, |a| a.1),
            )),
            Status::Expired => refused_page(Refused::Expired(link.expires_at)),
        },
    })
}

/// The answer to one link, from its page.
#[utoipa::path(
    operation_id = "confirm_link_answer",
    tag = "outcomes",
    security(()),
    params(("token" = String, Path, description = "The link's token.")),
    request_body(content = AnswerForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Thanks.", content_type = "text/html", body = String),
        (status = 404, description = "No such link.", content_type = "text/html", body = String),
        (status = 410, description = "Used or expired.", content_type = "text/html", body = String),
        (status = 422, description = "No answer chosen, or feedback too long.", content_type = "text/html", body = String),
        (status = 415, description = "Not a form (`application/x-www-form-urlencoded`)."),
        (status = 429, description = "A code, after too many wrong codes from this address: wait.",
            content_type = "text/html", body = String,
            headers(("Retry-After" = String, description = "Seconds to wait before trying again."))),
    ),
)]
#[post("/confirm/{token}")]
async fn link_answer(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<AnswerForm>,
) -> Result<HttpResponse, ApiError> {
    let token = path.into_inner();
    let key = Key::from_path(&token);
    let from = client_address(&req);
    let mut c = state.auth_db().await?;
    let tx = c.transaction().await?;
    let action = format!("/confirm/{token}");
    let page = respond(&*tx, &key, &from, &action, None, &form).await?;
    tx.commit().await?;
    Ok(page)
}

/// The page for a post to `action` from the client at `from`: the question, thanks, or why
/// not; a code waits first when it must, and counts when it matches no link.
async fn respond(
    c: &impl GenericClient,
    key: &Key,
    from: &str,
    action: &str,
    code: Option<&str>,
    form: &AnswerForm,
) -> Result<HttpResponse, ApiError> {
    let wait = code_wait(c, key, from).await?;
    if wait > 0 {
        return Ok(wait_page(wait));
    }
    let Some(a) = form.answer.as_deref() else {
        // The code page's first step: show the question.
        let link = find(c, key).await?;
        if link.is_none() {
            wrong_code(c, key, from).await?;
        }
        return Ok(match link {
            None if code.is_some() => code_form(Some(
                "We cannot find this code. Please check it and try again.",
            )),
            None => refused_page(Refused::Unknown),
            Some(link) => match link.status() {
                Status::Open => question(&link, action, code, None),
                Status::Used => refused_page(Refused::Used(
                    link.answered.as_ref().map_or(link.expires_at, |x| x.1),
                )),
                Status::Expired => refused_page(Refused::Expired(link.expires_at)),
            },
        });
    };
    let answered = answer(c, key, a, form.feedback.as_deref()).await?;
    if matches!(answered, Err(Refused::Unknown)) {
        wrong_code(c, key, from).await?;
    }
    Ok(match answered {
        Ok(_) => thanks(a),
        Err(Refused::Unknown) if code.is_some() => code_form(Some(
            "We cannot find this code. Please check it and try again.",
        )),
        Err(r) => refused_page(r),
    })
}

// ------------------------------------------------------------------------- the JSON equivalent

/// A link as the console shows it.
#[derive(Debug, Serialize, ToSchema)]
struct Confirmation {
    /// The outcome, in the person's words.
    statement: String,
    status: Status,
    expires_at: DateTime<Utc>,
    /// When used: `yes` or `not_yet`.
    answer: Option<String>,
    answered_at: Option<DateTime<Utc>>,
    /// When the answer is `yes`: the achievement's date (the UTC date of the answer).
    achieved_on: Option<chrono::NaiveDate>,
}

fn confirmation(link: &Link) -> Confirmation {
    let (answer, at) = match &link.answered {
        Some((a, t)) => (Some(a.clone()), Some(*t)),
        None => (None, None),
    };
    Confirmation {
        statement: link.statement.clone(),
        status: link.status(),
        expires_at: link.expires_at,
        achieved_on: at
            .filter(|_| answer.as_deref() == Some("yes"))
            .map(|t| t.date_naive()),
        answer,
        answered_at: at,
    }
}

/// The person's answer.
#[derive(ToSchema)]
#[allow(dead_code)]
enum Answer {
    #[schema(rename = "yes")]
    Yes,
    #[schema(rename = "not_yet")]
    NotYet,
}

/// An answer to a link. There is no date: the answer's own time dates an achievement.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    /// `yes` ("I can do this now") or `not_yet`.
    #[schema(value_type = Answer)]
    answer: String,
    /// At most 2000 characters.
    #[schema(max_length = 2000)]
    feedback: Option<String>,
}

/// A link (by its token, or its short code), for the console to show the person's question:
/// the link is the credential, so no other is needed.
#[utoipa::path(
    operation_id = "get_confirmation",
    tag = "outcomes",
    security(()),
    params(("token" = String, Path, description = "The link's token, or its short code.")),
    responses(
        (status = 200, description = "The link.", body = Confirmation),
        crate::http::openapi::NotFound,
        (status = 429, description = "A code, after too many wrong codes from this address: wait.",
            body = crate::http::problem::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again."))),
    ),
)]
#[get("/v1/confirmations/{token}")]
async fn get_confirmation(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = Key::from_path(&path);
    let from = client_address(&req);
    let c = state.auth_db().await?;
    let wait = code_wait(&**c, &key, &from).await?;
    if wait > 0 {
        return Ok(wait_problem(wait));
    }
    let Some(link) = find(&**c, &key).await? else {
        wrong_code(&**c, &key, &from).await?;
        return Err(ApiError::NotFound("confirmation link".into()));
    };
    Ok(HttpResponse::Ok().json(confirmation(&link)))
}

/// The person's answer to a link (by token or short code): once, before it expires.
#[utoipa::path(
    operation_id = "answer_confirmation",
    tag = "outcomes",
    security(()),
    params(("token" = String, Path, description = "The link's token, or its short code.")),
    request_body = AnswerBody,
    responses(
        (status = 201, description = "Recorded; the link is used.", body = Confirmation),
        crate::http::openapi::NotFound,
        crate::http::openapi::Conflict,
        crate::http::openapi::Invalid,
        (status = 429, description = "A code, after too many wrong codes from this address: wait.",
            body = crate::http::problem::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again."))),
    ),
)]
#[post("/v1/confirmations/{token}")]
async fn post_confirmation(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    b: crate::http::Json<AnswerBody>,
) -> Result<HttpResponse, ApiError> {
    let key = Key::from_path(&path);
    let from = client_address(&req);
    let mut c = state.auth_db().await?;
    let tx = c.transaction().await?;
    let wait = code_wait(&*tx, &key, &from).await?;
    if wait > 0 {
        return Ok(wait_problem(wait));
    }
    let answered = answer(&*tx, &key, &b.answer, b.feedback.as_deref()).await?;
    if matches!(answered, Err(Refused::Unknown)) {
        wrong_code(&*tx, &key, &from).await?;
    }
    tx.commit().await?;
    match answered {
        Ok((link, at)) => {
            let mut out = confirmation(&link);
            out.status = Status::Used;
            out.answer = Some(b.answer.clone());
            out.answered_at = Some(at);
            out.achieved_on = (b.answer == "yes").then(|| at.date_naive());
            Ok(HttpResponse::Created().json(out))
        }
        Err(Refused::Unknown) => Err(ApiError::NotFound("confirmation link".into())),
        Err(Refused::Used(at)) => Err(ApiError::Conflict(format!(
            "this link was already used (answered {}); ask for a new one",
            at.date_naive()
        ))),
        Err(Refused::Expired(at)) => Err(ApiError::Conflict(format!(
            "this link expired at {at}; ask for a new one"
        ))),
        Err(Refused::Invalid(field, msg)) => Err(ApiError::invalid(field, msg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape(r#"I can <b>"cook" & 'bake'</b>"#),
            "I can &lt;b&gt;&quot;cook&quot; &amp; &#39;bake&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn codes_are_typed_loosely_and_drawn_from_the_alphabet() {
        assert_eq!(normalise_code(" abcde-23456 "), "ABCDE23456");
        for _ in 0..100 {
            let c = new_code();
            assert_eq!(c.len(), CODE_LEN);
            assert!(c.bytes().all(|b| CODE_ALPHABET.contains(&b)), "{c}");
        }
        // No look-alikes.
        for b in b"01IO" {
            assert!(!CODE_ALPHABET.contains(b));
        }
    }

    #[test]
    fn a_path_is_a_token_only_when_it_is_64_hex_digits() {
        assert!(matches!(Key::from_path(&"a".repeat(64)), Key::Token(_)));
        assert!(matches!(Key::from_path("abcde-23456"), Key::Code(c) if c == "ABCDE23456"));
        assert!(matches!(Key::from_path(&"g".repeat(64)), Key::Code(_)));
    }
}

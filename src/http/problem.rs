//! Errors at the HTTP boundary, rendered as RFC 9457 problem documents
//! (`application/problem+json`). [`ApiError::status`] is the one place that maps an error to a
//! status code; it matches without a wildcard arm so a new variant cannot slip out as a 500.
//!
//! Problem types are relative URIs (`/problems/<slug>`) documented in `docs/api.md`; the body
//! is a [`Problem`], which is also its schema in the OpenAPI description.

use actix_web::http::{header, Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field of a request, named by its JSON path (`visits[2].start`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct FieldError {
    /// The field's JSON path, or the query or path parameter's name.
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem document: the body of every error answer
/// (`Content-Type: application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `/problems/<slug>`: what kind of problem, stable for clients to match on.
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation")]
    pub kind: String,
    /// The status code's reason phrase.
    pub title: String,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong, for a person to read.
    pub detail: String,
    /// Every invalid field (`/problems/validation` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required: send `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid request: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    /// A per-credential limit was reached (e.g. open event streams).
    #[error("{0}")]
    TooManyRequests(String),
    #[error("request body too large: {0}")]
    PayloadTooLarge(String),
    /// The path exists but not with this method; the methods it has go in `Allow`.
    #[error("{method} is not allowed here; allowed: {}", allowed_list(.allowed))]
    MethodNotAllowed {
        method: Method,
        allowed: Vec<Method>,
    },
    #[error("the database is unavailable; retry later")]
    Unavailable,
    #[error("internal error")]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::BadRequest(_) => "bad-request",
            Self::Validation(_) => "validation",
            Self::Conflict(_) => "conflict",
            Self::TooManyRequests(_) => "too-many-requests",
            Self::PayloadTooLarge(_) => "payload-too-large",
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::Unavailable => "unavailable",
            Self::Unexpected(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let Self::Unexpected(e) = self {
            // Logged once, here, where it is handled.
            tracing::error!(error = ?e, "unexpected error answering a request");
        }
        let body = Problem {
            kind: format!("/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: match self {
                Self::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        match self {
            Self::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"homeward\""));
            }
            Self::Unavailable => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            Self::MethodNotAllowed { allowed, .. } => {
                response.insert_header((header::ALLOW, allowed_list(allowed)));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&body).unwrap_or_default())
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::warn!(error = %e, "no database connection");
        Self::Unavailable
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        if crate::db::is_connection_error(&e) {
            tracing::warn!(error = %e, "database connection lost");
            Self::Unavailable
        } else {
            Self::Unexpected(e.into())
        }
    }
}

/// Turns actix's JSON body errors into problem documents that name what is wrong.
pub fn json_config() -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(1 << 20)
        .error_handler(|err, _req| {
            use actix_web::error::JsonPayloadError;
            let api = match &err {
                JsonPayloadError::OverflowKnownLength { length, limit } => {
                    ApiError::PayloadTooLarge(format!("{length} bytes, limit {limit}"))
                }
                JsonPayloadError::Overflow { limit } => {
                    ApiError::PayloadTooLarge(format!("over the {limit}-byte limit"))
                }
                JsonPayloadError::ContentType => {
                    ApiError::BadRequest("Content-Type must be application/json".into())
                }
                JsonPayloadError::Deserialize(e) => {
                    ApiError::BadRequest(format!("invalid JSON body: {e}"))
                }
                other => ApiError::BadRequest(format!("invalid JSON body: {other}")),
            };
            api.into()
        })
}

/// Problem documents for path and query parameters that do not parse.
pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default()
        .error_handler(|err, _req| ApiError::BadRequest(format!("invalid path: {err}")).into())
}

pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default()
        .error_handler(|err, _req| ApiError::BadRequest(format!("invalid query: {err}")).into())
}

fn allowed_list(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What no route answered: 405 with `Allow` when the path is one of the API's with other
/// methods (those of the OpenAPI description, see [`super::openapi::allowed_methods`]), else
/// 404. Both are problem documents.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    match super::openapi::allowed_methods(req.path()) {
        Some(allowed) if !allowed.contains(req.method()) => Err(ApiError::MethodNotAllowed {
            method: req.method().clone(),
            allowed,
        }),
        _ => Err(ApiError::NotFound("route".into())),
    }
}

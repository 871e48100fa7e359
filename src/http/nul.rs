//! The NUL character (U+0000) in a request's path or query: PostgreSQL cannot store it in text,
//! so a path id or query value holding one would reach the database and fail there as an
//! internal error. [`refuse_nul`] refuses such a request with 400 before routing, for every
//! route at once (JSON bodies get the same rule, naming the field, from [`super::json`]).
//!
//! A URI cannot carry a raw NUL byte; the only way to send one is `%00`, which is what is
//! looked for in the undecoded path and query.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use super::ApiError;

/// Middleware (`middleware::from_fn(refuse_nul)`): 400 for a path or query holding `%00`.
pub async fn refuse_nul(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let uri = req.uri();
    if holds_encoded_nul(uri.path()) || uri.query().is_some_and(holds_encoded_nul) {
        return Err(ApiError::BadRequest(
            "the path or query contains the character U+0000 (NUL, `%00`), which no field \
             accepts"
                .into(),
        )
        .into());
    }
    next.call(req).await
}

fn holds_encoded_nul(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| w == b"%00")
}

#[cfg(test)]
mod tests {
    use super::holds_encoded_nul;

    #[test]
    fn finds_only_an_encoded_nul() {
        assert!(holds_encoded_nul("/v1/devices/a%00b"));
        assert!(holds_encoded_nul("%00"));
        assert!(!holds_encoded_nul("/v1/devices/a%0Ab"));
        assert!(!holds_encoded_nul("/v1/devices/100"));
        assert!(!holds_encoded_nul("from=2026-01-00"));
    }
}

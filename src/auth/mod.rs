//! Who is calling: organisations, users with roles, and API tokens.
//!
//! - Tokens are `hw_` + 64 hex digits (256 random bits) and only their SHA-256 is stored: a
//!   token this strong needs no slow hash, and a database leak reveals no usable token.
//! - [`Caller`] is the extractor every endpoint except health and metrics takes. It yields the
//!   caller's organisation and role from the credential; no endpoint reads a tenant from the
//!   request.
//! - People sign in to the console with an email address and a password (argon2id,
//!   [`password`]) and hold a session ([`sessions`]); a session yields the same [`Caller`],
//!   so the same role and tenant rules apply to pages as to the API.
//! - The admin functions here back `homeward admin ...`.

mod admin;
mod credentials;
mod failures;
pub mod manage;
pub mod password;
pub mod revocations;
pub mod routes;
pub mod scope;
pub mod sessions;

use std::future::Future;
use std::pin::Pin;

use actix_web::{web, FromRequest, HttpRequest};
use serde::{Deserialize, Serialize};

use crate::http::{ApiError, AppState};
use crate::secret::{hash_secret, random_token};
pub use admin::*;
pub use credentials::*;
pub use failures::{FailedCredentials, REMEMBER as FAILURE_REMEMBERED_FOR};
pub use scope::{visibility, Visibility};

/// The kind of organisation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// A home-care or telecare provider.
    Provider,
    /// A council or other body that commissions providers.
    Commissioner,
}

impl OrgKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Commissioner => "commissioner",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "provider" => Some(Self::Provider),
            "commissioner" => Some(Self::Commissioner),
            _ => None,
        }
    }
}

/// What a user may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages a provider's people, workers, devices and users.
    ProviderAdmin,
    /// Coordinators: watch alarms and visits, record what happened.
    ProviderStaff,
    /// Mobile responders: see and act on the alarms they attend.
    Responder,
    /// Council officers: outcomes and statements of the providers they contract, pseudonymised.
    Commissioner,
    /// Read-only: verify the audit log and reproduce figures.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderAdmin => "provider_admin",
            Self::ProviderStaff => "provider_staff",
            Self::Responder => "responder",
            Self::Commissioner => "commissioner",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "provider_admin" => Some(Self::ProviderAdmin),
            "provider_staff" => Some(Self::ProviderStaff),
            "responder" => Some(Self::Responder),
            "commissioner" => Some(Self::Commissioner),
            "auditor" => Some(Self::Auditor),
            _ => None,
        }
    }

    /// Which kind of organisation a role belongs to. Auditors may sit in either.
    /// Every role, most powerful first.
    pub const ALL: [Role; 5] = [
        Self::ProviderAdmin,
        Self::ProviderStaff,
        Self::Responder,
        Self::Commissioner,
        Self::Auditor,
    ];

    pub fn fits(self, kind: OrgKind) -> bool {
        match self {
            Self::ProviderAdmin | Self::ProviderStaff | Self::Responder => {
                kind == OrgKind::Provider
            }
            Self::Commissioner => kind == OrgKind::Commissioner,
            Self::Auditor => true,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    /// The API token this request came with (`api_tokens.id`); `None` for a console session.
    pub token_id: Option<i32>,
    pub user_id: i32,
    pub user_name: String,
    pub organisation_id: i32,
    pub organisation_kind: OrgKind,
    pub role: Role,
    /// The request's id (`X-Request-Id`), for the audit rows it causes; `None` outside a
    /// request.
    pub request_id: Option<String>,
}

impl Caller {
    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::Forbidden(format!(
                "this needs one of the roles {}; you are {}",
                names.join(", "),
                self.role.as_str()
            )))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let request_id = crate::http::request_id::of(req);
        Box::pin(async move {
            let token = token.ok_or(ApiError::Unauthorized)?;
            let state =
                state.ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no app state")))?;
            let mut caller = caller_for_token(state.auth_pool(), &state.auth_failures, &token)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            caller.request_id = request_id;
            Ok(caller)
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Looks up the active user behind an API token.
///
/// A token that failed within the last few seconds is refused from memory (`failures`), without
/// a query.
pub async fn caller_for_token(
    pool: &deadpool_postgres::Pool,
    failures: &FailedCredentials,
    token: &str,
) -> Result<Option<Caller>, ApiError> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
        return Ok(None);
    }
    let digest = hash_secret(token);
    if failures.recently_failed(&digest) {
        metrics::counter!("homeward_auth_failures_total", "credential" => "token", "cached" => "true")
            .increment(1);
        return Ok(None);
    }
    let client = pool.get().await?;
    // One statement: find the token and note its use (at most once a minute, so a busy client
    // does not turn every request into a write).
    let row = client
        .query_opt(
            "WITH t AS (
                 SELECT t.id, u.id AS user_id, u.name, o.id AS org_id, o.kind, u.role,
                        t.last_used_at
                   FROM api_tokens t
                   JOIN users u ON u.id = t.user_id
                   JOIN organisations o ON o.id = u.organisation_id
                  WHERE t.token_hash = $1
                    AND t.revoked_at IS NULL
                    AND (t.expires_at IS NULL OR t.expires_at > now())
                    AND u.disabled_at IS NULL),
             touched AS (
                 UPDATE api_tokens SET last_used_at = now()
                  WHERE id = (SELECT id FROM t
                               WHERE last_used_at IS NULL
                                  OR last_used_at < now() - interval '1 minute'))
             SELECT id, user_id, name, org_id, kind, role FROM t",
            &[&digest.as_slice()],
        )
        .await?;
    if row.is_none() {
        failures.remember(digest);
        metrics::counter!("homeward_auth_failures_total", "credential" => "token", "cached" => "false")
            .increment(1);
    }
    Ok(row.and_then(|r| {
        Some(Caller {
            token_id: Some(r.get(0)),
            user_id: r.get(1),
            user_name: r.get(2),
            organisation_id: r.get(3),
            organisation_kind: OrgKind::parse(r.get(4))?,
            role: Role::parse(r.get(5))?,
            request_id: None,
        })
    }))
}

pub const TOKEN_PREFIX: &str = "hw_";

/// A new API token (shown once; store only its hash).
pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_token(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_fit_their_organisations() {
        assert!(Role::ProviderAdmin.fits(OrgKind::Provider));
        assert!(!Role::ProviderAdmin.fits(OrgKind::Commissioner));
        assert!(Role::Commissioner.fits(OrgKind::Commissioner));
        assert!(!Role::Responder.fits(OrgKind::Commissioner));
        assert!(Role::Auditor.fits(OrgKind::Provider) && Role::Auditor.fits(OrgKind::Commissioner));
        for role in [
            Role::ProviderAdmin,
            Role::ProviderStaff,
            Role::Responder,
            Role::Commissioner,
            Role::Auditor,
        ] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }

    #[test]
    fn tokens_are_random_and_hashes_compare() {
        use crate::secret::hashes_equal;
        let (a, b) = (new_api_token(), new_api_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 64);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert!(hashes_equal(&hash_secret(&a), &hash_secret(&a)));
        assert!(!hashes_equal(&hash_secret(&a), &hash_secret(&b)));
    }
}

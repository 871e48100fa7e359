//! The lifecycle of credentials: API tokens (issued with a lifetime, listed without ever being
//! shown again, revoked) and users (disabled and enabled). Device secrets are
//! [`crate::devices`]'s (the owner of the `devices` table), under the same rules and [`Scope`].
//!
//! Every change that takes a right away also appends a row to `credential_revocations`, in the
//! same statement, so the two cannot disagree. Every running server polls that table
//! ([`super::revocations`]) and ends the live sessions the change concerns (MQTT connections,
//! event streams) within a second, whichever process (API, CLI, another instance) made it.
//!
//! Every function takes the organisation the caller may act in (`Scope::Organisation`), or
//! `Scope::Any` for the command line, which is run by whoever holds the database.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::{new_api_token, AdminError, TOKEN_PREFIX};
use crate::secret::hash_secret;

/// How long a new API token is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLifetime {
    /// A user's token: valid this many days (`auth.token_ttl_days`).
    Days(u32),
    /// A service token, for machines: never expires (it can still be revoked).
    Service,
}

impl Default for TokenLifetime {
    /// `auth.token_ttl_days`'s default.
    fn default() -> Self {
        Self::Days(90)
    }
}

/// Which organisation's credentials a caller may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only this organisation's (the API: from the caller's credential).
    Organisation(i32),
    /// Any (the command line).
    Any,
}

impl Scope {
    /// The organisation, or `None` for any.
    pub fn org(self) -> Option<i32> {
        match self {
            Self::Organisation(id) => Some(id),
            Self::Any => None,
        }
    }
}

/// Characters of a token kept to recognise it in a list: the prefix and 8 hex digits (32 of the
/// token's 256 random bits, too few to help a guess).
const SHOWN_PREFIX_LEN: usize = TOKEN_PREFIX.len() + 8;

/// Most tokens a user may hold that are neither revoked nor expired.
pub const MAX_ACTIVE_TOKENS: i64 = 20;

/// Another API token for an active user; returns the token, shown only now. `issued_with` is
/// the token of the request that issues it over the API (revoking that one revokes this one
/// too); `None` from the command line.
pub async fn create_token(
    client: &impl GenericClient,
    user_id: i32,
    label: Option<&str>,
    lifetime: TokenLifetime,
    issued_with: Option<i32>,
) -> Result<String, AdminError> {
    if label.is_some_and(|l| l.chars().count() > 200) {
        return Err(AdminError::Invalid(
            "a token label must be at most 200 characters".into(),
        ));
    }
    let active: i64 = client
        .query_one(
            "SELECT count(*) FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL
                AND (expires_at IS NULL OR expires_at > now())",
            &[&user_id],
        )
        .await?
        .get(0);
    if active >= MAX_ACTIVE_TOKENS {
        return Err(AdminError::Limit(format!(
            "user {user_id} already holds {active} active tokens (at most {MAX_ACTIVE_TOKENS}); revoke one first"
        )));
    }
    let token = new_api_token();
    let (days, service) = match lifetime {
        TokenLifetime::Days(days) => (Some(i32::try_from(days).unwrap_or(i32::MAX)), false),
        TokenLifetime::Service => (None, true),
    };
    let inserted = client
        .execute(
            "INSERT INTO api_tokens (user_id, token_hash, label, prefix, service, expires_at,
                                     issued_with)
             SELECT id, $2, $3, $4, $5, now() + make_interval(days => $6), $7
               FROM users WHERE id = $1 AND disabled_at IS NULL",
            &[
                &user_id,
                &hash_secret(&token).as_slice(),
                &label,
                &&token[..SHOWN_PREFIX_LEN],
                &service,
                &days,
                &issued_with,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(AdminError::NotFound(format!("active user {user_id}")));
    }
    Ok(token)
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: i32,
    /// The token's first characters (`hw_` and 8 hex digits); absent for tokens made before
    /// prefixes were kept.
    pub prefix: Option<String>,
    pub label: Option<String>,
    pub service: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Neither revoked nor expired.
    pub active: bool,
}

/// A user's tokens, newest (highest id) first: those with an id below `after`, at most
/// `limit` (all with `None`). `NotFound` if the user is not in `scope`.
pub async fn list_tokens(
    client: &impl GenericClient,
    scope: Scope,
    user_id: i32,
    after: Option<i32>,
    limit: Option<i64>,
) -> Result<Vec<TokenInfo>, AdminError> {
    user_in_scope(client, scope, user_id).await?;
    let rows = client
        .query(
            "SELECT id, prefix, label, service, created_at, expires_at, last_used_at, revoked_at,
                    revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
               FROM api_tokens WHERE user_id = $1 AND ($2::int IS NULL OR id < $2)
              ORDER BY id DESC LIMIT $3",
            &[&user_id, &after, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TokenInfo {
            id: r.get(0),
            prefix: r.get(1),
            label: r.get(2),
            service: r.get(3),
            created_at: r.get(4),
            expires_at: r.get(5),
            last_used_at: r.get(6),
            revoked_at: r.get(7),
            active: r.get(8),
        })
        .collect())
}

/// The user behind a token in `scope`, or `NotFound`.
pub async fn token_owner(
    client: &impl GenericClient,
    scope: Scope,
    token_id: i32,
) -> Result<i32, AdminError> {
    client
        .query_opt(
            "SELECT t.user_id FROM api_tokens t JOIN users u ON u.id = t.user_id
              WHERE t.id = $1 AND ($2::int IS NULL OR u.organisation_id = $2)",
            &[&token_id, &scope.org()],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| AdminError::NotFound(format!("token {token_id}")))
}

/// Revokes a token and every token issued with it over the API (and with those, and so on).
/// Returns false if it was already revoked; `NotFound` outside `scope`.
pub async fn revoke_token(
    client: &impl GenericClient,
    scope: Scope,
    token_id: i32,
    revoked_by: Option<i32>,
) -> Result<bool, AdminError> {
    token_owner(client, scope, token_id).await?;
    let revoked = client
        .query(
            "WITH RECURSIVE tree (id) AS (
                 SELECT $1::int
                 UNION
                 SELECT c.id FROM api_tokens c JOIN tree ON c.issued_with = tree.id),
             t AS (
                 UPDATE api_tokens SET revoked_at = now(), revoked_by = $2
                  WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL RETURNING id)
             INSERT INTO credential_revocations (token_id, reason)
             SELECT id, 'token_revoked' FROM t RETURNING token_id",
            &[&token_id, &revoked_by],
        )
        .await?;
    Ok(revoked.iter().any(|r| r.get::<_, i32>(0) == token_id))
}

/// Disables (every token stops working, open streams end) or enables a user. Returns whether
/// anything changed; `NotFound` outside `scope`.
pub async fn set_user_disabled(
    client: &impl GenericClient,
    scope: Scope,
    user_id: i32,
    disabled: bool,
) -> Result<bool, AdminError> {
    user_in_scope(client, scope, user_id).await?;
    let changed = if disabled {
        client
            .query(
                "WITH u AS (
                     UPDATE users SET disabled_at = now()
                      WHERE id = $1 AND disabled_at IS NULL RETURNING id)
                 INSERT INTO credential_revocations (user_id, reason)
                 SELECT id, 'user_disabled' FROM u RETURNING user_id",
                &[&user_id],
            )
            .await?
            .len()
    } else {
        client
            .query(
                "UPDATE users SET disabled_at = NULL WHERE id = $1 AND disabled_at IS NOT NULL
                 RETURNING id",
                &[&user_id],
            )
            .await?
            .len()
    };
    Ok(changed > 0)
}

/// `NotFound` unless the user is in `scope`.
pub async fn user_in_scope(
    client: &impl GenericClient,
    scope: Scope,
    user_id: i32,
) -> Result<(), AdminError> {
    client
        .query_opt(
            "SELECT 1 FROM users WHERE id = $1 AND ($2::int IS NULL OR organisation_id = $2)",
            &[&user_id, &scope.org()],
        )
        .await?
        .map(|_| ())
        .ok_or_else(|| AdminError::NotFound(format!("user {user_id}")))
}

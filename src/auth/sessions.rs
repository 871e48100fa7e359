//! Console sessions: what a signed-in browser's cookie stands for.
//!
//! A session token is 256 random bits, sent only in an HttpOnly cookie; the database keeps its
//! SHA-256 (`console_sessions.token_hash`), so a database leak opens no session. A session
//! ends `hours` after sign-in whatever happens, after `idle_minutes` without a request, at
//! sign-out, when its user is disabled, and when its user sets a new password. The form token
//! that protects every signed-in form ([`form_token`]) is derived from the session token, so
//! nothing more is stored and it changes with every session.

use tokio_postgres::GenericClient;

use super::{Caller, OrgKind, Role};
use crate::secret::{hash_secret, random_token};

/// A session just opened: the token for the cookie, shown only now.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
}

/// Opens a session for `user_id`, ending `hours` from now. Also deletes sessions that have
/// ended by time (anyone's), so the table holds only live ones and recent leftovers.
pub async fn open_session(
    client: &impl GenericClient,
    user_id: i32,
    hours: u32,
    idle_minutes: u32,
) -> Result<NewSession, tokio_postgres::Error> {
    let token = random_token(32);
    client
        .execute(
            "DELETE FROM console_sessions
              WHERE expires_at < now() OR last_seen_at < now() - make_interval(mins => $1)",
            &[&i32::try_from(idle_minutes).unwrap_or(i32::MAX)],
        )
        .await?;
    client
        .execute(
            "INSERT INTO console_sessions (user_id, token_hash, expires_at)
             VALUES ($1, $2, now() + make_interval(hours => $3))",
            &[
                &user_id,
                &hash_secret(&token).as_slice(),
                &i32::try_from(hours).unwrap_or(i32::MAX),
            ],
        )
        .await?;
    Ok(NewSession { token })
}

/// A live session's user, as the API sees them, with what pages show of them.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub session_id: i64,
    pub caller: Caller,
    pub organisation_name: String,
}

/// The user behind a session token, if the session is live (not expired, not idle for
/// `idle_minutes`, user not disabled); notes the request, at most every 30 seconds, to keep
/// the session from going idle.
pub async fn session_user(
    client: &impl GenericClient,
    token: &str,
    idle_minutes: u32,
) -> Result<Option<SessionUser>, tokio_postgres::Error> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "WITH s AS (
                 SELECT s.id, u.id AS user_id, u.name, o.id AS org_id, o.kind, u.role, o.name AS org,
                        s.last_seen_at
                   FROM console_sessions s
                   JOIN users u ON u.id = s.user_id
                   JOIN organisations o ON o.id = u.organisation_id
                  WHERE s.token_hash = $1
                    AND s.expires_at > now()
                    AND s.last_seen_at > now() - make_interval(mins => $2)
                    AND u.disabled_at IS NULL),
             touched AS (
                 UPDATE console_sessions SET last_seen_at = now()
                  WHERE id = (SELECT id FROM s WHERE last_seen_at < now() - interval '30 seconds'))
             SELECT id, user_id, name, org_id, kind, role, org FROM s",
            &[
                &hash_secret(token).as_slice(),
                &i32::try_from(idle_minutes).unwrap_or(i32::MAX),
            ],
        )
        .await?;
    Ok(row.and_then(|r| {
        Some(SessionUser {
            session_id: r.get(0),
            caller: Caller {
                token_id: None,
                user_id: r.get(1),
                user_name: r.get(2),
                organisation_id: r.get(3),
                organisation_kind: OrgKind::parse(r.get(4))?,
                role: Role::parse(r.get(5))?,
                request_id: None,
            },
            organisation_name: r.get(6),
        })
    }))
}

/// Ends a session (sign-out). Ending one already gone is not an error.
pub async fn end_session(
    client: &impl GenericClient,
    token: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM console_sessions WHERE token_hash = $1",
            &[&hash_secret(token).as_slice()],
        )
        .await?;
    Ok(())
}

/// The token every signed-in form carries, derived from the session token: knowing it reveals
/// nothing of the session token, and it lasts as long as the session.
pub fn form_token(session_token: &str) -> String {
    hex::encode(hash_secret(&format!(
        "homeward form token\0{session_token}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_tokens_follow_the_session_and_differ_from_its_hash() {
        let (a, b) = (random_token(32), random_token(32));
        assert_eq!(form_token(&a), form_token(&a));
        assert_ne!(form_token(&a), form_token(&b));
        assert_ne!(form_token(&a), hex::encode(hash_secret(&a)));
        assert_eq!(form_token(&a).len(), 64);
    }
}

//! People's passwords: argon2id hashes, the rules a new password must meet, the sign-in check
//! with its back-off, and the one-time links through which a person sets a password.
//!
//! - A password is stored only as an argon2id hash ([`PARAMS`]), in `users.password_hash`.
//! - A person never chooses a password on their own say-so: an admin issues a one-time link
//!   ([`issue_password_link`], from `homeward admin create-user --email`, `homeward admin
//!   password-link` or `POST /v1/users/{id}/password-link`). The link carries 256 random bits;
//!   only their SHA-256 is stored. It works once ([`set_password_with_link`] marks it used in
//!   the same statement that checks it), until it expires, and issuing a new link for the same
//!   user supersedes the old one. Setting a password ends every console session of the user.
//! - Sign-in ([`check_sign_in`]) answers the same for an unknown address, a user without a
//!   password, a disabled user and a wrong password, and takes about as long (an unknown
//!   address is checked against a dummy hash), so it tells nobody who has an account.
//!
//! Hashing is deliberately slow (tens of milliseconds of CPU and 19 MiB): it runs on the
//! blocking pool, at most [`MAX_CONCURRENT_HASHES`] at once, so that a burst of sign-ins cannot
//! take every core or much memory.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use rand::RngCore;
use tokio::sync::Semaphore;
use tokio_postgres::GenericClient;

use super::{AdminError, Scope};
use crate::http::ApiError;
use crate::secret::{hash_secret, random_token};

/// argon2id with 19 MiB of memory, 2 passes, 1 lane: the first of the settings OWASP's
/// password storage guidance recommends for argon2id (equivalent in strength to its others),
/// and the `argon2` crate's default. Raising them later needs no migration: a hash records its
/// parameters, and old hashes still verify.
pub const PARAMS: (u32, u32, u32) = (19 * 1024, 2, 1);

/// Fewest characters of a password (NCSC and NIST favour length over composition rules; none
/// are imposed).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most characters of a password (hashing is bounded, and nobody types more).
pub const MAX_PASSWORD_CHARS: usize = 200;

/// Password hashes computed at once; more wait their turn.
pub const MAX_CONCURRENT_HASHES: usize = 4;

fn hasher() -> Argon2<'static> {
    let (m, t, p) = PARAMS;
    // The parameters are constants within argon2's bounds; `Params::DEFAULT` is the same.
    let params = Params::new(m, t, p, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(MAX_CONCURRENT_HASHES))
}

/// Runs a hash on the blocking pool, within the concurrency limit.
async fn hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    // The semaphore is never closed.
    let _permit = permits().acquire().await;
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The argon2id hash of `password`, as a PHC string.
pub fn hash_password_now(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password of bounded length")
        .to_string()
}

/// Whether `password` matches the stored `hash` (false for a malformed hash).
pub fn verify_password_now(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash that no password is checked to match on purpose: an unknown address is verified
/// against it, so that it costs what a known one does.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password_now(&random_token(16)))
}

/// Why a new password is refused, in words for the person choosing it.
pub fn password_problem(password: &str, confirmation: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        Some(format!(
            "Your password must be at least {MIN_PASSWORD_CHARS} characters long. A few \
             unrelated words make a strong password that is easy to remember."
        ))
    } else if chars > MAX_PASSWORD_CHARS {
        Some(format!(
            "Your password must be at most {MAX_PASSWORD_CHARS} characters long."
        ))
    } else if password.trim().is_empty() {
        Some("Your password cannot be only spaces.".into())
    } else if password != confirmation {
        Some("The two passwords are not the same. Type the same password twice.".into())
    } else {
        None
    }
}

/// Normalises an email address for storing and looking up: trimmed; compared without regard
/// to case by the database. `None` if it cannot be an address.
pub fn parse_email(email: &str) -> Option<String> {
    let email = email.trim();
    let (local, domain) = email.rsplit_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| email.to_owned())
}

/// Gives a user the email address they sign in with. `Exists` if another user has it.
pub async fn set_user_email(
    client: &impl GenericClient,
    scope: Scope,
    user_id: i32,
    email: &str,
) -> Result<(), AdminError> {
    let email = parse_email(email)
        .ok_or_else(|| AdminError::Invalid(format!("`{email}` is not an email address")))?;
    super::user_in_scope(client, scope, user_id).await?;
    client
        .execute(
            "UPDATE users SET email = $2 WHERE id = $1",
            &[&user_id, &email],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                AdminError::Exists(format!("a user with the email address `{email}`"))
            } else {
                AdminError::Db(e)
            }
        })?;
    Ok(())
}

/// A one-time link's secret part, shown once.
#[derive(Debug, Clone)]
pub struct PasswordLink {
    pub user_id: i32,
    /// 64 hex digits (256 random bits); only its SHA-256 is stored.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl PasswordLink {
    /// The address a person opens, under `base` (`console.public_url`, without a trailing
    /// slash).
    pub fn url(&self, base: &str) -> String {
        format!(
            "{}/console/set-password?token={}",
            base.trim_end_matches('/'),
            self.token
        )
    }
}

/// Issues a one-time link for `user_id` to set their password, valid `hours`; supersedes the
/// user's earlier unused links. The user must be in `scope`, active, and have an email address
/// (`Invalid` otherwise: without one they could not sign in). `issued_by`: the admin, over the
/// API.
pub async fn issue_password_link(
    client: &impl GenericClient,
    scope: Scope,
    user_id: i32,
    hours: u32,
    issued_by: Option<i32>,
) -> Result<PasswordLink, AdminError> {
    let user = client
        .query_opt(
            "SELECT email IS NOT NULL, disabled_at IS NOT NULL FROM users
              WHERE id = $1 AND ($2::int IS NULL OR organisation_id = $2)",
            &[&user_id, &scope.org()],
        )
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("user {user_id}")))?;
    let (has_email, disabled): (bool, bool) = (user.get(0), user.get(1));
    if !has_email {
        return Err(AdminError::Invalid(format!(
            "user {user_id} has no email address to sign in with; give them one first"
        )));
    }
    if disabled {
        return Err(AdminError::Invalid(format!(
            "user {user_id} is disabled; enable them first"
        )));
    }
    let token = random_token(32);
    let hours = i32::try_from(hours).unwrap_or(i32::MAX);
    let row = client
        .query_one(
            "WITH superseded AS (
                 UPDATE password_links SET superseded_at = now()
                  WHERE user_id = $1 AND used_at IS NULL AND superseded_at IS NULL
                    AND expires_at > now())
             INSERT INTO password_links (user_id, token_hash, expires_at, created_by)
             VALUES ($1, $2, now() + make_interval(hours => $3), $4)
             RETURNING expires_at",
            &[
                &user_id,
                &hash_secret(&token).as_slice(),
                &hours,
                &issued_by,
            ],
        )
        .await?;
    Ok(PasswordLink {
        user_id,
        token,
        expires_at: row.get(0),
    })
}

/// What a one-time link is, looked up without using it (to show the set-password form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Usable: for this user (their email address).
    Valid { email: String },
    /// Used, superseded, expired, unknown or malformed: all the same to its holder.
    Unusable,
}

/// Whether `token` is a link that can still set a password.
pub async fn password_link_state(
    client: &impl GenericClient,
    token: &str,
) -> Result<LinkState, tokio_postgres::Error> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(LinkState::Unusable);
    }
    let row = client
        .query_opt(
            "SELECT u.email FROM password_links l JOIN users u ON u.id = l.user_id
              WHERE l.token_hash = $1 AND l.used_at IS NULL AND l.superseded_at IS NULL
                AND l.expires_at > now() AND u.disabled_at IS NULL AND u.email IS NOT NULL",
            &[&hash_secret(token).as_slice()],
        )
        .await?;
    Ok(match row {
        Some(r) => LinkState::Valid { email: r.get(0) },
        None => LinkState::Unusable,
    })
}

/// Sets the password of the link's user and uses the link up, in one transaction; ends the
/// user's console sessions and clears their failed sign-ins. `Ok(None)` if the link is not
/// usable (used, superseded, expired, unknown). `password` must have passed
/// [`password_problem`].
pub async fn set_password_with_link(
    pool: &deadpool_postgres::Pool,
    token: &str,
    password: &str,
) -> Result<Option<i32>, ApiError> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    // Hashed before a connection is taken, so slow hashing never holds one.
    let password = password.to_owned();
    let hash = hashing(move || hash_password_now(&password)).await;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let used = tx
        .query_opt(
            "UPDATE password_links l SET used_at = now()
               FROM users u
              WHERE l.token_hash = $1 AND u.id = l.user_id AND l.used_at IS NULL
                AND l.superseded_at IS NULL AND l.expires_at > now()
                AND u.disabled_at IS NULL AND u.email IS NOT NULL
             RETURNING l.user_id, u.email, u.organisation_id",
            &[&hash_secret(token).as_slice()],
        )
        .await?;
    let Some(used) = used else {
        return Ok(None);
    };
    let (user_id, email): (i32, String) = (used.get(0), used.get(1));
    tx.execute(
        "UPDATE users SET password_hash = $2, password_set_at = now() WHERE id = $1",
        &[&user_id, &hash],
    )
    .await?;
    tx.execute(
        "DELETE FROM console_sessions WHERE user_id = $1",
        &[&user_id],
    )
    .await?;
    tx.execute(
        "DELETE FROM sign_in_failures WHERE key = $1",
        &[&backoff_key_user(&email).as_slice()],
    )
    .await?;
    // The person set their own password, holding the link (no token, no session yet).
    crate::audit::record(
        &*tx,
        &crate::audit::Actor::User {
            user_id,
            token_id: None,
            organisation_id: used.get(2),
            request_id: None,
        },
        crate::audit::Entry::new(
            used.get::<_, i32>(2),
            "user.set_password",
            "user",
            user_id,
            serde_json::json!({"with": "password link"}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(user_id))
}

// The back-off. A rule for each email address tried (whether or not it belongs to anyone, so
// the back-off itself reveals nothing) and one for each client address:
// - an email address may fail FREE_FAILURES_PER_USER times, a client address
//   FREE_FAILURES_PER_ADDRESS times (higher: people behind one proxy or office share it), with
//   no wait;
// - after that, each attempt must wait FIRST_WAIT after the last failure, doubling with every
//   further failure, up to MAX_WAIT; an attempt made too early is refused without looking at
//   the password, and does not count as a failure;
// - a failure is forgotten FORGET_AFTER its key's last failure; a successful sign-in (or a
//   password set through a link) clears the email address's count, not the client address's
//   (or one valid account would let its holder clear the way for guesses at others).
// The client address is the TCP peer's: headers such as X-Forwarded-For can be forged, so
// behind a proxy every client shares the proxy's address, which is what the higher allowance
// is for.

/// Failures an email address may have before it waits.
pub const FREE_FAILURES_PER_USER: i32 = 5;
/// Failures a client address may have before it waits.
pub const FREE_FAILURES_PER_ADDRESS: i32 = 20;
/// The first wait, in seconds; it doubles with each further failure.
pub const FIRST_WAIT_SECS: i64 = 30;
/// The longest wait, in seconds.
pub const MAX_WAIT_SECS: i64 = 15 * 60;
/// Seconds after its last failure that a key's failures are forgotten.
pub const FORGET_AFTER_SECS: i64 = 60 * 60;

/// Seconds to wait after the last of `failures` when `free` are allowed without waiting.
pub fn wait_secs(failures: i32, free: i32) -> i64 {
    if failures < free {
        return 0;
    }
    let doublings = u32::try_from(failures - free).unwrap_or(0).min(20);
    (FIRST_WAIT_SECS << doublings).min(MAX_WAIT_SECS)
}

fn backoff_key_user(email: &str) -> [u8; 32] {
    hash_secret(&format!("user:{}", email.trim().to_lowercase()))
}

fn backoff_key_address(address: &str) -> [u8; 32] {
    hash_secret(&format!("address:{address}"))
}

/// Seconds still to wait before an attempt under any of `keys`, each with the failures it
/// may have without waiting ([`wait_secs`]); 0 when none must wait. The same rules serve
/// other guesses than passwords (a person's confirmation code): each under keys of its own.
pub(crate) async fn backoff_wait(
    c: &impl GenericClient,
    keys: &[([u8; 32], i32)],
) -> Result<i64, tokio_postgres::Error> {
    let digests: Vec<&[u8]> = keys.iter().map(|(k, _)| k.as_slice()).collect();
    let rows = c
        .query(
            "SELECT key, failures, extract(epoch FROM now() - last_failed_at)::bigint
               FROM sign_in_failures
              WHERE key = ANY($1::bytea[])
                AND last_failed_at > now() - make_interval(secs => $2)",
            &[&digests, &(FORGET_AFTER_SECS as f64)],
        )
        .await?;
    let mut wait = 0;
    for row in &rows {
        let key: &[u8] = row.get(0);
        let free = keys
            .iter()
            .find(|(k, _)| k.as_slice() == key)
            .map_or(0, |(_, free)| *free);
        let since: i64 = row.get(2);
        wait = wait.max(wait_secs(row.get(1), free) - since);
    }
    Ok(wait)
}

/// Counts a failure under each of `keys` (a count older than [`FORGET_AFTER_SECS`] starts
/// again at 1), and forgets the failures that are that old.
pub(crate) async fn count_failure(
    c: &impl GenericClient,
    keys: &[[u8; 32]],
) -> Result<(), tokio_postgres::Error> {
    let digests: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    c.execute(
        "WITH gone AS (
             DELETE FROM sign_in_failures
              WHERE last_failed_at < now() - make_interval(secs => $2))
         INSERT INTO sign_in_failures AS f (key, failures, last_failed_at)
         SELECT k, 1, now() FROM unnest($1::bytea[]) AS k
         ON CONFLICT (key) DO UPDATE
            SET failures = CASE
                    WHEN f.last_failed_at < now() - make_interval(secs => $2) THEN 1
                    ELSE f.failures + 1 END,
                last_failed_at = now()",
        &[&digests, &(FORGET_AFTER_SECS as f64)],
    )
    .await?;
    Ok(())
}

/// The outcome of a sign-in attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    /// The password is right: this user.
    Accepted { user_id: i32 },
    /// Wrong address or password (or no password yet, or a disabled user): one answer for all.
    Refused,
    /// Too many failures: try again after this many seconds. The password was not checked.
    Wait { secs: i64 },
}

/// Checks an email address and password, applying the back-off (see above) for the address
/// and for `client_address` (the client's IP address, as text).
///
/// Connections come from `pool` (the credential pool) only around the queries: none is held
/// while the password is hashed.
pub async fn check_sign_in(
    pool: &deadpool_postgres::Pool,
    email: &str,
    password: &str,
    client_address: &str,
) -> Result<SignIn, ApiError> {
    let (user_key, address_key) = (backoff_key_user(email), backoff_key_address(client_address));
    let client = pool.get().await?;
    let wait = backoff_wait(
        &**client,
        &[
            (user_key, FREE_FAILURES_PER_USER),
            (address_key, FREE_FAILURES_PER_ADDRESS),
        ],
    )
    .await?;
    if wait > 0 {
        metrics::counter!("homeward_console_sign_ins_total", "outcome" => "wait").increment(1);
        return Ok(SignIn::Wait { secs: wait });
    }

    let row = if email.len() > 254 || password.chars().count() > MAX_PASSWORD_CHARS {
        None
    } else {
        client
            .query_opt(
                "SELECT id, password_hash FROM users
                  WHERE lower(email) = lower($1) AND email IS NOT NULL
                    AND disabled_at IS NULL AND password_hash IS NOT NULL",
                &[&email.trim()],
            )
            .await?
    };
    drop(client);
    let (user_id, hash) = match &row {
        Some(r) => (Some(r.get::<_, i32>(0)), r.get::<_, String>(1)),
        None => (None, dummy_hash().to_owned()),
    };
    let password = password
        .chars()
        .take(MAX_PASSWORD_CHARS)
        .collect::<String>();
    let matches = hashing(move || verify_password_now(&password, &hash)).await;
    let client = pool.get().await?;
    match (user_id, matches) {
        (Some(user_id), true) => {
            client
                .execute(
                    "DELETE FROM sign_in_failures WHERE key = $1",
                    &[&user_key.as_slice()],
                )
                .await?;
            metrics::counter!("homeward_console_sign_ins_total", "outcome" => "accepted")
                .increment(1);
            Ok(SignIn::Accepted { user_id })
        }
        _ => {
            count_failure(&**client, &[user_key, address_key]).await?;
            metrics::counter!("homeward_console_sign_ins_total", "outcome" => "refused")
                .increment(1);
            Ok(SignIn::Refused)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password_now("correct horse battery staple");
        let b = hash_password_now("correct horse battery staple");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_password_now("correct horse battery staple", &a));
        assert!(!verify_password_now("correct horse battery stapl", &a));
        assert!(!verify_password_now("anything", "not a hash"));
    }

    #[test]
    fn password_rules() {
        assert!(password_problem("short", "short").is_some());
        assert!(password_problem(&" ".repeat(12), &" ".repeat(12)).is_some());
        assert!(password_problem("long enough words", "long enough wordz").is_some());
        assert!(password_problem(&"x".repeat(201), &"x".repeat(201)).is_some());
        assert_eq!(
            password_problem("long enough words", "long enough words"),
            None
        );
        // Characters, not bytes.
        assert_eq!(
            password_problem("ééééééééééé", "ééééééééééé").map(|_| ()),
            Some(())
        );
    }

    #[test]
    fn emails_are_trimmed_and_checked() {
        assert_eq!(
            parse_email(" Ann@Example.org ").as_deref(),
            Some("Ann@Example.org")
        );
        for bad in ["", "ann", "@example.org", "ann@", "a nn@example.org"] {
            assert_eq!(parse_email(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_wait_doubles_after_the_free_failures_up_to_the_cap() {
        assert_eq!(wait_secs(0, 5), 0);
        assert_eq!(wait_secs(4, 5), 0);
        assert_eq!(wait_secs(5, 5), 30);
        assert_eq!(wait_secs(6, 5), 60);
        assert_eq!(wait_secs(7, 5), 120);
        assert_eq!(wait_secs(10, 5), 900);
        assert_eq!(wait_secs(1000, 5), 900);
        assert_eq!(wait_secs(19, 20), 0);
        assert_eq!(wait_secs(20, 20), 30);
    }

    #[test]
    fn back_off_keys_ignore_case_and_differ_by_kind() {
        assert_eq!(
            backoff_key_user("Ann@X.org"),
            backoff_key_user(" ann@x.org")
        );
        assert_ne!(backoff_key_user("1.2.3.4"), backoff_key_address("1.2.3.4"));
    }
}

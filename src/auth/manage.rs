//! Managing an organisation's users and their API tokens as a signed-in caller does it, over
//! the API (`routes`) or in the console: who may, the change, and its audit row, all in the
//! caller's transaction. The credential functions underneath (`credentials`, `password`) know
//! nothing of callers; the command line calls those directly as the operator.
//!
//! - A provider admin manages the users and tokens of its own organisation; every user may
//!   issue (expiring ones only) and revoke their own tokens.
//! - Another organisation's user or token is "not found", as a missing one.
//! - An admin cannot disable themselves nor change their own role (someone must be left to
//!   undo it).

use tokio_postgres::GenericClient;

use super::{Caller, Role, Scope, TokenLifetime};
use crate::audit::{self, Entry};
use crate::http::ApiError;

/// The scope in which `caller` manages `user_id`'s tokens: their own, or any of their
/// organisation's as its admin.
pub fn token_scope(caller: &Caller, user_id: i32) -> Result<Scope, ApiError> {
    if caller.user_id != user_id {
        caller.require(&[Role::ProviderAdmin])?;
    }
    Ok(Scope::Organisation(caller.organisation_id))
}

/// Issues a token for `user_id` (a service token, which never expires: admins only; others
/// last `ttl_days`); returns it, shown only now.
pub async fn issue_token(
    tx: &impl GenericClient,
    caller: &Caller,
    user_id: i32,
    label: Option<&str>,
    service: bool,
    ttl_days: u32,
) -> Result<String, ApiError> {
    let scope = token_scope(caller, user_id)?;
    let lifetime = if service {
        caller.require(&[Role::ProviderAdmin])?;
        TokenLifetime::Service
    } else {
        TokenLifetime::Days(ttl_days)
    };
    // The user must be in the caller's organisation (and active, which create_token checks).
    super::user_in_scope(tx, scope, user_id).await?;
    let token = super::create_token(tx, user_id, label, lifetime, caller.token_id).await?;
    audit::by(
        tx,
        caller,
        Entry::new(
            caller.organisation_id,
            "token.create",
            "user",
            user_id,
            serde_json::json!({"prefix": token.get(..11), "label": label, "service": service}),
        ),
    )
    .await?;
    Ok(token)
}

/// Revokes token `token_id`: an admin any of the organisation's, anyone else only their own
/// (another's is refused whether or not it exists). Returns whether it was active.
pub async fn revoke_token(
    tx: &impl GenericClient,
    caller: &Caller,
    token_id: i32,
) -> Result<bool, ApiError> {
    let scope = Scope::Organisation(caller.organisation_id);
    if caller.role != Role::ProviderAdmin {
        let own = super::token_owner(tx, scope, token_id)
            .await
            .is_ok_and(|owner| owner == caller.user_id);
        if !own {
            return Err(ApiError::Forbidden(
                "you may revoke only your own tokens; a provider admin may revoke any of the \
                 organisation's"
                    .into(),
            ));
        }
    }
    let revoked = super::revoke_token(tx, scope, token_id, Some(caller.user_id)).await?;
    audit::by(
        tx,
        caller,
        Entry::new(
            caller.organisation_id,
            "token.revoke",
            "token",
            token_id,
            serde_json::json!({"changed": revoked}),
        ),
    )
    .await?;
    Ok(revoked)
}

/// Disables or enables `user_id` (admins; not themselves). Returns whether anything changed.
pub async fn set_disabled(
    tx: &impl GenericClient,
    caller: &Caller,
    user_id: i32,
    disabled: bool,
) -> Result<bool, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    if disabled && user_id == caller.user_id {
        return Err(ApiError::Conflict(
            "you cannot disable yourself; ask another admin".into(),
        ));
    }
    let scope = Scope::Organisation(caller.organisation_id);
    let changed = super::set_user_disabled(tx, scope, user_id, disabled).await?;
    audit::by(
        tx,
        caller,
        Entry::new(
            caller.organisation_id,
            if disabled {
                "user.disable"
            } else {
                "user.enable"
            },
            "user",
            user_id,
            serde_json::json!({"after": {"disabled": disabled}, "changed": changed}),
        ),
    )
    .await?;
    Ok(changed)
}

/// A person who will use the console: a user of the caller's organisation (admins) with a role
/// that fits it and, when given, an email address to sign in with (set a password through a
/// one-time link next). No API token: machines get those separately. Returns the user's id.
pub async fn create_user(
    tx: &impl GenericClient,
    caller: &Caller,
    name: &str,
    email: Option<&str>,
    role: Role,
) -> Result<i32, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    if !role.fits(caller.organisation_kind) {
        return Err(ApiError::invalid(
            "role",
            format!(
                "{} does not belong in a {} organisation",
                role.as_str(),
                caller.organisation_kind.as_str()
            ),
        ));
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "1 to 200 characters"));
    }
    let id: i32 = tx
        .query_one(
            "INSERT INTO users (organisation_id, name, role) VALUES ($1, $2, $3) RETURNING id",
            &[&caller.organisation_id, &name, &role.as_str()],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                ApiError::Conflict(format!("a user named `{name}` already exists"))
            } else {
                e.into()
            }
        })?
        .get(0);
    if let Some(email) = email {
        super::password::set_user_email(tx, Scope::Organisation(caller.organisation_id), id, email)
            .await
            .map_err(|e| match e {
                super::AdminError::Invalid(why) => ApiError::invalid("email", why),
                super::AdminError::Exists(why) => ApiError::Conflict(why),
                other => other.into(),
            })?;
    }
    audit::by(
        tx,
        caller,
        Entry::new(
            caller.organisation_id,
            "user.create",
            "user",
            id,
            serde_json::json!({"name": name, "role": role.as_str(), "email": email}),
        ),
    )
    .await?;
    Ok(id)
}

/// Changes `user_id`'s role (admins; not their own). It applies from the user's next request;
/// an event stream they hold open keeps the view it opened with until it reconnects. Returns
/// whether it changed.
pub async fn set_role(
    tx: &impl GenericClient,
    caller: &Caller,
    user_id: i32,
    role: Role,
) -> Result<bool, ApiError> {
    caller.require(&[Role::ProviderAdmin])?;
    if user_id == caller.user_id {
        return Err(ApiError::Conflict(
            "you cannot change your own role; ask another admin".into(),
        ));
    }
    if !role.fits(caller.organisation_kind) {
        return Err(ApiError::invalid(
            "role",
            format!(
                "{} does not belong in a {} organisation",
                role.as_str(),
                caller.organisation_kind.as_str()
            ),
        ));
    }
    let before: String = tx
        .query_opt(
            "SELECT role FROM users WHERE id = $1 AND organisation_id = $2 FOR UPDATE",
            &[&user_id, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {user_id}")))?
        .get(0);
    let changed = before != role.as_str();
    if changed {
        tx.execute(
            "UPDATE users SET role = $2 WHERE id = $1",
            &[&user_id, &role.as_str()],
        )
        .await?;
    }
    audit::by(
        tx,
        caller,
        Entry::new(
            caller.organisation_id,
            "user.set_role",
            "user",
            user_id,
            serde_json::json!({"before": {"role": before}, "after": {"role": role.as_str()},
                               "changed": changed}),
        ),
    )
    .await?;
    Ok(changed)
}

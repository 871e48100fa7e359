//! Creating organisations, users and tokens. Used by the `homeward admin` subcommands and by
//! the admin API. (Contracts are created by `outcomes::contracts`, the one writer of that
//! table; devices are registered by `devices::registry`, the one that adds devices.)

use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;

use super::credentials::{create_token, TokenLifetime};
use super::{OrgKind, Role};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Exists(String),
    /// A per-user limit was reached (active tokens).
    #[error("{0}")]
    Limit(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

impl From<AdminError> for crate::http::ApiError {
    fn from(e: AdminError) -> Self {
        use crate::http::ApiError;
        match e {
            AdminError::NotFound(what) => ApiError::NotFound(what),
            AdminError::Invalid(msg) => ApiError::BadRequest(msg),
            AdminError::Exists(what) => ApiError::Conflict(format!("{what} already exists")),
            AdminError::Limit(why) => ApiError::Conflict(why),
            AdminError::Db(e) => e.into(),
        }
    }
}

fn exists_or(what: impl FnOnce() -> String) -> impl FnOnce(tokio_postgres::Error) -> AdminError {
    move |e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            AdminError::Exists(what())
        } else {
            AdminError::Db(e)
        }
    }
}

/// An organisation, found by numeric id or by exact name.
#[derive(Debug, Clone)]
pub struct Organisation {
    pub id: i32,
    pub name: String,
    pub kind: OrgKind,
}

pub async fn find_organisation(
    client: &impl GenericClient,
    id_or_name: &str,
) -> Result<Organisation, AdminError> {
    let row = match id_or_name.parse::<i32>() {
        Ok(id) => {
            client
                .query_opt(
                    "SELECT id, name, kind FROM organisations WHERE id = $1",
                    &[&id],
                )
                .await?
        }
        Err(_) => {
            client
                .query_opt(
                    "SELECT id, name, kind FROM organisations WHERE name = $1",
                    &[&id_or_name],
                )
                .await?
        }
    };
    let row = row.ok_or_else(|| AdminError::NotFound(format!("organisation `{id_or_name}`")))?;
    Ok(Organisation {
        id: row.get(0),
        name: row.get(1),
        kind: OrgKind::parse(row.get(2))
            .ok_or_else(|| AdminError::Invalid("bad organisation kind".into()))?,
    })
}

pub async fn create_organisation(
    client: &impl GenericClient,
    name: &str,
    kind: OrgKind,
) -> Result<Organisation, AdminError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AdminError::Invalid(
            "an organisation name must be 1 to 200 characters".into(),
        ));
    }
    if name.parse::<i32>().is_ok() {
        return Err(AdminError::Invalid(
            "an organisation name cannot be a number".into(),
        ));
    }
    let row = client
        .query_one(
            "INSERT INTO organisations (name, kind) VALUES ($1, $2) RETURNING id",
            &[&name, &kind.as_str()],
        )
        .await
        .map_err(exists_or(|| format!("organisation `{name}`")))?;
    Ok(Organisation {
        id: row.get(0),
        name: name.to_string(),
        kind,
    })
}

/// A new user and their first API token (returned once, stored only as a hash), valid for
/// [`TokenLifetime::default`].
pub async fn create_user(
    client: &impl GenericClient,
    organisation: &Organisation,
    name: &str,
    role: Role,
) -> Result<(i32, String), AdminError> {
    create_user_with(client, organisation, name, role, TokenLifetime::default()).await
}

/// A new user and their first API token, which lives `lifetime`.
pub async fn create_user_with(
    client: &impl GenericClient,
    organisation: &Organisation,
    name: &str,
    role: Role,
    lifetime: TokenLifetime,
) -> Result<(i32, String), AdminError> {
    if !role.fits(organisation.kind) {
        return Err(AdminError::Invalid(format!(
            "role {} does not belong in a {} organisation",
            role.as_str(),
            organisation.kind.as_str()
        )));
    }
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AdminError::Invalid(
            "a user name must be 1 to 200 characters".into(),
        ));
    }
    let row = client
        .query_one(
            "INSERT INTO users (organisation_id, name, role) VALUES ($1, $2, $3) RETURNING id",
            &[&organisation.id, &name, &role.as_str()],
        )
        .await
        .map_err(exists_or(|| {
            format!("user `{name}` in `{}`", organisation.name)
        }))?;
    let user_id: i32 = row.get(0);
    let token = create_token(
        client,
        user_id,
        Some("created with the user"),
        lifetime,
        None,
    )
    .await?;
    Ok((user_id, token))
}

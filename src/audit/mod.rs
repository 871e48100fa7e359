//! The audit log: who changed what, in the same transaction as the change, in a hash chain per
//! organisation that anyone holding the rows can check (docs/audit.md).
//!
//! Owns `audit_log` and `audit_heads` (migration 0017). Every handler and admin command that
//! changes something calls [`record`] with the transaction it changes things in, so the row
//! exists exactly when the change does. The database places the row in its chain (the trigger
//! `homeward_audit_chain` sets `seq`, `at`, `prev_hash` and `hash`) and refuses UPDATE, DELETE
//! and TRUNCATE; [`verify`] recomputes every hash here, independently of that trigger.

pub mod routes;
pub mod verify;

use serde_json::Value;
use tokio_postgres::GenericClient;

use crate::auth::Caller;

pub use verify::{verify, Broken, VerifyReport};

/// Who made a change.
#[derive(Debug, Clone)]
pub enum Actor {
    /// A person, with an API token or a console session.
    User {
        user_id: i32,
        token_id: Option<i32>,
        organisation_id: i32,
        request_id: Option<String>,
    },
    /// A device, by its uid.
    Device { uid: String, organisation_id: i32 },
    /// The person receiving care (or their family), through a one-time confirmation link.
    Person { link_id: i64 },
    /// Homeward itself or an operator at the command line: the component (`cli`, `serve`).
    System { component: String },
}

impl Actor {
    /// The person behind a request.
    pub fn caller(caller: &Caller) -> Self {
        Self::User {
            user_id: caller.user_id,
            token_id: caller.token_id,
            organisation_id: caller.organisation_id,
            request_id: caller.request_id.clone(),
        }
    }

    /// An operator running `homeward admin ...` (named by the operating-system user when known).
    pub fn cli() -> Self {
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME"));
        Self::System {
            component: match user {
                Ok(u) if !u.is_empty() && u.len() <= 100 => format!("cli:{u}"),
                _ => "cli".into(),
            },
        }
    }

    fn columns(&self) -> (&'static str, String, Option<i32>, Option<i32>, Option<&str>) {
        match self {
            Self::User {
                user_id,
                token_id,
                organisation_id,
                request_id,
            } => (
                "user",
                user_id.to_string(),
                *token_id,
                Some(*organisation_id),
                request_id.as_deref(),
            ),
            Self::Device {
                uid,
                organisation_id,
            } => ("device", uid.clone(), None, Some(*organisation_id), None),
            Self::Person { link_id } => ("person", format!("link:{link_id}"), None, None, None),
            Self::System { component } => ("system", component.clone(), None, None, None),
        }
    }
}

/// One change: `action` is `object.verb` (`alarm.acknowledge`), `change` the fields before and
/// after, or the request for a creation (never a secret).
#[derive(Debug, Clone)]
pub struct Entry {
    /// The organisation the object belongs to; `None` for platform objects (organisations).
    pub organisation: Option<i32>,
    pub action: String,
    pub object_type: &'static str,
    pub object_id: String,
    pub change: Value,
}

impl Entry {
    pub fn new(
        organisation: impl Into<Option<i32>>,
        action: impl Into<String>,
        object_type: &'static str,
        object_id: impl ToString,
        change: Value,
    ) -> Self {
        Self {
            organisation: organisation.into(),
            action: action.into(),
            object_type,
            object_id: object_id.to_string(),
            change,
        }
    }
}

/// Writes one audit row with `c`, which must be the transaction of the change it records.
pub async fn record(
    c: &impl GenericClient,
    actor: &Actor,
    entry: Entry,
) -> Result<(), tokio_postgres::Error> {
    let (kind, who, token, actor_org, request_id) = actor.columns();
    // Serialised here, once: these bytes are what the chain hashes.
    let change = entry.change.to_string();
    c.execute(
        "INSERT INTO audit_log (chain, seq, at, actor_kind, actor, token_id, actor_org,
                                organisation_id, action, object_type, object_id, change,
                                request_id, prev_hash, hash)
         VALUES (0, 0, now(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '', '')",
        &[
            &kind,
            &who,
            &token,
            &actor_org,
            &entry.organisation,
            &entry.action,
            &entry.object_type,
            &entry.object_id,
            &change,
            &request_id,
        ],
    )
    .await?;
    Ok(())
}

/// For a caller's change: [`record`] with [`Actor::caller`].
pub async fn by(
    c: &impl GenericClient,
    caller: &Caller,
    entry: Entry,
) -> Result<(), tokio_postgres::Error> {
    record(c, &Actor::caller(caller), entry).await
}

/// Notes that a commissioner read person-level data (pseudonymised), in the commissioner's own
/// chain: `what` names the view and its filters. Providers' own reads are not logged.
pub async fn read_by_commissioner(
    c: &impl GenericClient,
    caller: &Caller,
    view: &str,
    what: Value,
) -> Result<(), tokio_postgres::Error> {
    if caller.organisation_kind != crate::auth::OrgKind::Commissioner {
        return Ok(());
    }
    by(
        c,
        caller,
        Entry::new(
            caller.organisation_id,
            "person_data.read",
            "view",
            view,
            what,
        ),
    )
    .await
}

//! Who may connect and what they may do: the [`Authenticator`] a broker is built with, the
//! [`Principal`] it names, and the [`Acl`] the broker checks every PUBLISH and SUBSCRIBE against.

use futures_util::future::BoxFuture;

use super::topic;

/// Who connected, as decided by the [`Authenticator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Homeward itself (ingest, downlink publisher).
    Service,
    /// A registered device.
    Device { id: String },
}

/// Topic filters (with `+` and `#`) a principal may publish to and subscribe to.
///
/// A topic may be published if it matches one `publish` filter. A subscription filter is
/// allowed if one `subscribe` filter covers it level by level (`#` covers everything below it,
/// `+` covers one level or a `+`). For a shared subscription the inner filter is checked.
/// Filters starting with a wildcard never cover topics starting with `$`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

impl Acl {
    /// Everything (`#` both ways): for [`Principal::Service`].
    pub fn all() -> Self {
        Self {
            publish: vec!["#".to_owned()],
            subscribe: vec!["#".to_owned()],
        }
    }

    /// May a client holding this ACL publish on `topic`? False for anything that is not a
    /// valid topic name. The broker's own check of a PUBLISH, for an external broker that asks
    /// Homeward.
    pub fn allows_publish(&self, topic: &str) -> bool {
        topic::valid_topic(topic) && self.may_publish(topic)
    }

    /// May it subscribe to `filter` as a SUBSCRIBE carries it (a `$share/{group}/...` filter
    /// by its inner filter)? False for an invalid filter. The broker's own check of a
    /// SUBSCRIBE, for an external broker that asks Homeward.
    pub fn allows_subscribe(&self, filter: &str) -> bool {
        topic::FilterSpec::parse(filter).is_some_and(|spec| self.may_subscribe(spec.filter()))
    }

    pub(super) fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|f| topic::matches(topic, f))
    }

    pub(super) fn may_subscribe(&self, filter: &str) -> bool {
        self.subscribe.iter().any(|acl| topic::covers(acl, filter))
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Service => f.write_str("service"),
            Principal::Device { id } => write!(f, "device {id}"),
        }
    }
}

/// What a client presented in CONNECT. `Debug` does not print the password.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The client id (for an empty one with clean_session, the id the broker assigned).
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .finish()
    }
}

/// The backing store of an [`Authenticator`] failed (e.g. the database is down). The client is
/// told "server unavailable", not "bad credentials", so it retries rather than giving up.
#[derive(Debug, thiserror::Error)]
#[error("authentication backend failed: {0}")]
pub struct AuthError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl AuthError {
    pub fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(cause.into())
    }
}

/// Decides who may connect and what they may do.
pub trait Authenticator: Send + Sync + 'static {
    /// `Ok(None)` refuses the connection (CONNACK "bad user name or password", or "not
    /// authorized" when no user name was given); `Err` answers "server unavailable".
    fn authenticate<'a>(
        &'a self,
        creds: Credentials<'a>,
    ) -> BoxFuture<'a, Result<Option<(Principal, Acl)>, AuthError>>;
}

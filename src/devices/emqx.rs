//! `/v1/emqx/authenticate` and `/v1/emqx/authorize`: the HTTP authenticator and HTTP authoriser
//! that an EMQX 5 broker calls, so that devices on EMQX are checked exactly as on the embedded
//! broker.
//!
//! - EMQX posts a JSON body it renders from a template (`docs/operations.md` gives the one to
//!   configure): `clientid`, `username`, `password` to authenticate; `clientid`, `username`,
//!   `topic`, `action` (`publish` or `subscribe`) to authorise. Every value arrives as a
//!   string; other fields are ignored.
//! - The answer is HTTP 200 with `{"result": "allow" | "deny", "is_superuser": bool}`. Homeward
//!   decides for every client it is asked about, so it never answers `ignore`; an error status
//!   (the database unavailable, a wrong hook secret) makes EMQX treat the answer as `ignore`
//!   and go on along its chain, which denies at its end.
//! - Devices: the embedded broker's identity rule ([`super::broker_auth::device_identity`]:
//!   client id = user name = uid, not a reserved id), its credential check
//!   ([`super::verify::verify_device`]: an active device and its current secret) and its ACL
//!   ([`super::broker_auth::device_acl`] with [`crate::broker::Acl`]'s own checks).
//!   Homeward's own user (the user and password in `mqtt.url`) is a superuser, which EMQX
//!   exempts from authorisation; asked anyway, it may do anything, as on the embedded broker.
//! - The routes exist only while `mqtt.emqx_hook_secret` is set (404 otherwise, as for any
//!   unknown route), and EMQX must send that secret as `Authorization: Bearer <secret>`
//!   (401 otherwise), checked before the body is read.

use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::broker::Acl;
use crate::config::Settings;
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};
use crate::secret::{hash_secret, hashes_equal};

pub fn routes(cfg: &mut web::ServiceConfig) {
    api(&mut ServiceConfig::new(cfg));
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub fn api(cfg: &mut ServiceConfig<'_>) {
    cfg.service(authenticate).service(authorize);
}

/// What the authenticator template sends (other fields are ignored).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
struct AuthenticateRequest {
    clientid: String,
    username: String,
    password: String,
}

/// What the authoriser template sends (other fields are ignored).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default)]
struct AuthorizeRequest {
    clientid: String,
    username: String,
    topic: String,
    action: String,
}

/// EMQX's `result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = EmqxVerdict)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    fn of(allowed: bool) -> Self {
        if allowed {
            Self::Allow
        } else {
            Self::Deny
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// The hook's answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EmqxAnswer)]
struct Answer {
    result: Verdict,
    is_superuser: bool,
}

/// EMQX's HTTP authenticator: whether a client may connect. 404 while no hook secret is
/// configured.
#[utoipa::path(
    operation_id = "emqx_authenticate",
    tag = "devices",
    security(("emqx_hook" = [])),
    request_body = AuthenticateRequest,
    responses(
        (status = 200, description = "The verdict.", body = Answer),
        doc::BadRequest,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[post("/v1/emqx/authenticate")]
#[tracing::instrument(skip_all, fields(client_id))]
async fn authenticate(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    check_hook_secret(&req, &state.settings)?;
    let asked: AuthenticateRequest = parse(&body)?;
    tracing::Span::current().record("client_id", asked.clientid.as_str());
    let (result, is_superuser) = if is_service_user(&state.settings, &asked) {
        (Verdict::Allow, true)
    } else {
        let allowed = match super::broker_auth::device_identity(&asked.clientid, &asked.username) {
            None => false,
            Some(_) => super::verify::verify_device(
                state.auth_pool(),
                &state.auth_failures,
                &asked.username,
                &asked.password,
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot check a device's credential for EMQX");
                ApiError::Unavailable
            })?
            .is_some(),
        };
        (Verdict::of(allowed), false)
    };
    metrics::counter!("homeward_emqx_hook_total", "hook" => "authenticate", "result" => result.as_str())
        .increment(1);
    Ok(HttpResponse::Ok().json(Answer {
        result,
        is_superuser,
    }))
}

/// EMQX's HTTP authoriser: whether a client may publish or subscribe to a topic. 404 while no
/// hook secret is configured.
#[utoipa::path(
    operation_id = "emqx_authorize",
    tag = "devices",
    security(("emqx_hook" = [])),
    request_body = AuthorizeRequest,
    responses(
        (status = 200, description = "The verdict.", body = Answer),
        doc::BadRequest,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[post("/v1/emqx/authorize")]
#[tracing::instrument(skip_all, fields(client_id))]
async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    check_hook_secret(&req, &state.settings)?;
    let asked: AuthorizeRequest = parse(&body)?;
    tracing::Span::current().record("client_id", asked.clientid.as_str());
    let result = Verdict::of(may(&state.settings, &asked));
    if result == Verdict::Deny {
        tracing::info!(
            username = %asked.username,
            topic = %asked.topic,
            action = %asked.action,
            "EMQX asked; refused"
        );
    }
    metrics::counter!("homeward_emqx_hook_total", "hook" => "authorize", "result" => result.as_str())
        .increment(1);
    Ok(HttpResponse::Ok().json(Answer {
        result,
        is_superuser: false,
    }))
}

/// The embedded broker's decision for this client, topic and action.
fn may(settings: &Settings, asked: &AuthorizeRequest) -> bool {
    let acl = if service_user(settings).is_some_and(|(user, _)| user == asked.username) {
        Acl::all()
    } else {
        match super::broker_auth::device_identity(&asked.clientid, &asked.username) {
            Some(device) => super::broker_auth::device_acl(&device),
            None => return false,
        }
    };
    match asked.action.as_str() {
        "publish" => acl.allows_publish(&asked.topic),
        "subscribe" => acl.allows_subscribe(&asked.topic),
        _ => false,
    }
}

/// Homeward's own MQTT user and password, from `mqtt.url`.
fn service_user(settings: &Settings) -> Option<(String, String)> {
    let url = settings.broker_url()?;
    Some((url.username?, url.password?.expose().clone()))
}

fn is_service_user(settings: &Settings, asked: &AuthenticateRequest) -> bool {
    service_user(settings).is_some_and(|(user, password)| {
        user == asked.username
            && hashes_equal(&hash_secret(&password), &hash_secret(&asked.password))
    })
}

/// 404 while no hook secret is configured, 401 unless the request carries it.
fn check_hook_secret(req: &HttpRequest, settings: &Settings) -> Result<(), ApiError> {
    let Some(secret) = &settings.mqtt.emqx_hook_secret else {
        return Err(ApiError::NotFound("route".into()));
    };
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match given {
        Some(given) if hashes_equal(&hash_secret(given), &hash_secret(secret.expose())) => Ok(()),
        _ => {
            metrics::counter!("homeward_auth_failures_total", "credential" => "emqx_hook", "cached" => "false")
                .increment(1);
            Err(ApiError::Unauthorized)
        }
    }
}

/// The body as a JSON object of strings (serde would also take an array for a struct).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let bad = |why: String| {
        ApiError::BadRequest(format!("the body must be a JSON object of strings: {why}"))
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut value @ serde_json::Value::Object(_)) => {
            crate::http::json::apply_rules(&mut value)?;
            serde_json::from_value(value).map_err(|e| bad(e.to_string()))
        }
        Ok(_) => Err(bad("not an object".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn settings() -> Settings {
        let mut s = Settings::default();
        s.mqtt.url = Some(Secret::new("mqtt://homeward:svc-pw@broker:1883".into()));
        s
    }

    fn asked(client: &str, user: &str, action: &str, topic: &str) -> AuthorizeRequest {
        AuthorizeRequest {
            clientid: client.into(),
            username: user.into(),
            topic: topic.into(),
            action: action.into(),
        }
    }

    #[test]
    fn a_device_may_what_the_embedded_broker_lets_it() {
        let s = settings();
        let yes = [
            ("publish", "homeward/v1/hub-1/events"),
            ("publish", "homeward/v1/hub-1/status"),
            ("subscribe", "homeward/v1/hub-1/downlink"),
            ("subscribe", "$share/g/homeward/v1/hub-1/downlink"),
        ];
        for (action, topic) in yes {
            assert!(
                may(&s, &asked("hub-1", "hub-1", action, topic)),
                "{action} {topic}"
            );
        }
        let no = [
            ("publish", "homeward/v1/hub-2/events"),
            ("publish", "homeward/v1/hub-1/downlink"),
            ("publish", "homeward/v1/+/events"),
            ("subscribe", "homeward/v1/hub-2/downlink"),
            ("subscribe", "homeward/v1/+/downlink"),
            ("subscribe", "homeward/v1/hub-1/#"),
            ("subscribe", "homeward/v1/hub-1/events"),
            ("subscribe", "#"),
            ("subscribe", "$share/g/homeward/v1/hub-2/downlink"),
            ("all", "homeward/v1/hub-1/events"),
            ("", "homeward/v1/hub-1/events"),
        ];
        for (action, topic) in no {
            assert!(
                !may(&s, &asked("hub-1", "hub-1", action, topic)),
                "{action} {topic}"
            );
        }
    }

    #[test]
    fn client_id_and_user_name_must_agree_and_not_be_reserved() {
        let s = settings();
        let topic = "homeward/v1/hub-1/events";
        assert!(!may(&s, &asked("hub-2", "hub-1", "publish", topic)));
        assert!(!may(&s, &asked("hub-1", "hub-2", "publish", topic)));
        assert!(!may(&s, &asked("", "", "publish", topic)));
        let reserved = "homeward-ingest";
        assert!(!may(
            &s,
            &asked(
                reserved,
                reserved,
                "publish",
                "homeward/v1/homeward-ingest/events"
            )
        ));
    }

    #[test]
    fn homewards_user_may_anything() {
        let s = settings();
        assert!(may(
            &s,
            &asked(
                "homeward-ingest",
                "homeward",
                "subscribe",
                "$share/homeward/homeward/v1/+/events"
            )
        ));
        assert!(may(
            &s,
            &asked(
                "homeward-ingest-downlink",
                "homeward",
                "publish",
                "homeward/v1/hub-1/downlink"
            )
        ));
        // Without an mqtt.url naming it, that name is just a (reserved) device id.
        assert!(!may(
            &Settings::default(),
            &asked(
                "homeward",
                "homeward",
                "publish",
                "homeward/v1/hub-1/downlink"
            )
        ));
    }

    #[test]
    fn only_the_configured_password_makes_homewards_user() {
        let s = settings();
        let with = |user: &str, password: &str| AuthenticateRequest {
            clientid: "homeward-ingest".into(),
            username: user.into(),
            password: password.into(),
        };
        assert!(is_service_user(&s, &with("homeward", "svc-pw")));
        assert!(!is_service_user(&s, &with("homeward", "svc-pw2")));
        assert!(!is_service_user(&s, &with("homeward", "")));
        assert!(!is_service_user(&s, &with("other", "svc-pw")));
        assert!(!is_service_user(
            &Settings::default(),
            &with("homeward", "svc-pw")
        ));
    }
}

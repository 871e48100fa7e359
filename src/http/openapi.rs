//! The API's OpenAPI 3.1 description, generated from the handlers so that it cannot drift from
//! them: each handler carries a `#[utoipa::path]` annotation next to its `#[get]`/`#[post]`
//! route, its request and answer types derive `ToSchema` (enums as enums, bounds as bounds),
//! and each domain module registers its handlers through a `utoipa_actix_web` service config,
//! which collects the annotation of every handler it registers (a handler without one does not
//! compile there). [`PARTS`] lists those modules; [`document`] is what they register.
//!
//! Served, without authentication (it describes the API, not its data), at
//! `GET /v1/openapi.json`, and as a page for people at `GET /docs` ([`super::docs_page`]),
//! both built once from the same document and embedded in the binary: nothing is fetched.
//!
//! The document also decides the answer to a known path with a method it does not have:
//! [`allowed_methods`] gives `super::problem::not_found` what to put in `Allow` with its 405.
//!
//! What is added to every operation here rather than written on each handler, because it
//! follows from the shared plumbing: 401 (`Unauthorized`) and 503 (`Unavailable`, the
//! credential check reads the database) on every operation that needs a credential, and 400
//! (`BadRequest`, from the path, query and JSON extractors' error handlers in
//! [`super::problem`]) on every operation that takes parameters or a body.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::dev::ResourceDef;
use actix_web::http::Method;
use actix_web::{get, App, HttpResponse};
use serde_json::{json, Value};
use utoipa::openapi::{RefOr, Response};
use utoipa::{IntoResponses, OpenApi};
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::AppExt;

use super::problem::{FieldError, Problem};

/// Every documented module's routes. Each registers its handlers (and thereby their
/// annotations) on a `utoipa_actix_web` service config.
pub const PARTS: &[fn(&mut ServiceConfig<'_>)] = &[
    super::api,
    crate::auth::routes::api,
    crate::devices::routes::api,
    crate::devices::emqx::api,
    crate::ingest::http::api,
    crate::live::api,
    crate::alarms::routes::api,
    crate::audit::routes::api,
    crate::people::api,
    crate::evv::api,
    crate::outcomes::api,
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Homeward API",
        description = "Outcome-focused backend for home care and telecare. Every error is an \
            RFC 9457 problem document (`application/problem+json`, schema `Problem`). Users \
            authenticate with `Authorization: Bearer hw_...` API tokens; care workers' phones \
            with HTTP Basic (device uid and secret). The tenant always comes from the \
            credential: another organisation's data answers 404 as if it did not exist.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later"),
    ),
    security(("bearer" = [])),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "health", description = "Liveness, readiness and metrics: no credentials."),
        (name = "api", description = "This description, as JSON and as a page."),
        (name = "users", description = "Who the caller is; users and their API tokens."),
        (name = "devices", description = "The organisation's devices and their credentials."),
        (name = "ingest", description = "Phones' check-ins and the input that could not be stored."),
        (name = "live", description = "Server-sent events of alarm and visit changes."),
        (name = "alarms", description = "Telecare alarms: lists, lifecycle actions, response figures, device health."),
        (name = "people", description = "People receiving care, care workers and their phones."),
        (name = "outcomes", description = "Outcome plans, care episodes, contracts' terms, indicator reports and payment statements."),
        (name = "audit", description = "The audit log: who changed what, hash-chained per organisation."),
        (name = "visits", description = "Visit verification: scheduled visits, visits, exceptions, adjustments, the export, missed-visit alerts."),
    )
)]
struct ApiDoc;

/// A reusable error answer: `components.responses.<name>`, a [`Problem`].
struct ProblemAnswer {
    name: &'static str,
    status: u16,
    description: &'static str,
    header: Option<(&'static str, &'static str)>,
}

const ANSWERS: &[ProblemAnswer] = &[
    ProblemAnswer {
        name: "BadRequest",
        status: 400,
        description: "The body, a path or a query parameter does not parse: malformed JSON, an \
                      unknown field or parameter, a value of the wrong type or not one of the \
                      listed values.",
        header: None,
    },
    ProblemAnswer {
        name: "Unauthorized",
        status: 401,
        description: "No credential, or one that is unknown, expired or revoked, or whose user \
                      or device is disabled.",
        header: Some(("WWW-Authenticate", "`Bearer realm=\"homeward\"`")),
    },
    ProblemAnswer {
        name: "Forbidden",
        status: 403,
        description: "The caller's role may not do this.",
        header: None,
    },
    ProblemAnswer {
        name: "NotFound",
        status: 404,
        description: "No such thing in the caller's organisation.",
        header: None,
    },
    ProblemAnswer {
        name: "Conflict",
        status: 409,
        description: "It already exists, or the current state does not allow it.",
        header: None,
    },
    ProblemAnswer {
        name: "PayloadTooLarge",
        status: 413,
        description: "The body or the batch is over its limit.",
        header: None,
    },
    ProblemAnswer {
        name: "Invalid",
        status: 422,
        description: "Well-formed but invalid: `errors` names each invalid field or parameter.",
        header: None,
    },
    ProblemAnswer {
        name: "TooManyRequests",
        status: 429,
        description: "A per-credential limit was reached.",
        header: None,
    },
    ProblemAnswer {
        name: "Unavailable",
        status: 503,
        description: "The database is unavailable; retry after `Retry-After` seconds.",
        header: Some(("Retry-After", "Seconds to wait before retrying.")),
    },
];

macro_rules! problem_answers {
    ($($(#[$doc:meta])* $name:ident = $status:literal,)*) => {$(
        $(#[$doc])*
        /// For `responses(...)` in `#[utoipa::path]`: refers to the shared answer of this name.
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([(
                    $status.to_string(),
                    RefOr::Ref(utoipa::openapi::Ref::from_response_name(stringify!($name))),
                )])
            }
        }
    )*};
}

problem_answers! {
    /// 400: a parameter or the body does not parse.
    BadRequest = 400,
    /// 403: the role may not.
    Forbidden = 403,
    /// 404: not in the caller's organisation.
    NotFound = 404,
    /// 409: exists already, or not in this state.
    Conflict = 409,
    /// 413: too large.
    PayloadTooLarge = 413,
    /// 422: well-formed but invalid.
    Invalid = 422,
    /// 429: a per-credential limit.
    TooManyRequests = 429,
    /// 503: the database is down.
    Unavailable = 503,
}

/// The description, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// The description as served.
pub fn document_json() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| serde_json::to_string_pretty(document()).unwrap_or_default())
}

/// The methods the description gives a path (matched against its templates, so
/// `/v1/alarms/7` finds those of `/v1/alarms/{id}`); `None` for a path it does not have.
pub fn allowed_methods(path: &str) -> Option<Vec<Method>> {
    static TEMPLATES: OnceLock<Vec<(ResourceDef, Vec<Method>)>> = OnceLock::new();
    let templates = TEMPLATES.get_or_init(|| {
        let paths = document()["paths"].as_object().cloned().unwrap_or_default();
        paths
            .iter()
            .map(|(template, item)| {
                let methods = item
                    .as_object()
                    .into_iter()
                    .flat_map(|ops| ops.keys())
                    .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                    .collect();
                (ResourceDef::new(template.as_str()), methods)
            })
            .collect()
    });
    // A path without parameters is matched first by the router (`/v1/visits/export` is not
    // the visit `{id}`, whose route takes only digits), so it alone decides.
    if let Some((_, methods)) = templates
        .iter()
        .find(|(t, _)| !path.contains('{') && t.pattern() == Some(path))
    {
        return Some(methods.clone());
    }
    let mut allowed: Vec<Method> = Vec::new();
    for (template, methods) in templates {
        if template.is_match(path) {
            for method in methods {
                if !allowed.contains(method) {
                    allowed.push(method.clone());
                }
            }
        }
    }
    (!allowed.is_empty()).then_some(allowed)
}

fn build() -> Value {
    let mut app = App::new().into_utoipa_app().openapi(ApiDoc::openapi());
    for part in PARTS {
        app = app.configure(part);
    }
    let (_, api) = app.split_for_parts();
    let mut doc = serde_json::to_value(&api).unwrap_or_default();
    finish(&mut doc);
    doc
}

/// Adds what every operation shares (see the module docs), the shared answers and the
/// security schemes.
fn finish(doc: &mut Value) {
    let default_security = doc["security"].clone();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(ops) = item.as_object_mut() else {
                continue;
            };
            for op in ops.values_mut() {
                let security = op.get("security").unwrap_or(&default_security);
                let authenticated = security.as_array().is_some_and(|reqs| {
                    reqs.iter()
                        .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
                });
                let takes_input = op["parameters"].as_array().is_some_and(|p| !p.is_empty())
                    || op.get("requestBody").is_some();
                let responses = &mut op["responses"];
                let mut add = |status: &str, name: &str| {
                    if responses.get(status).is_none() {
                        responses[status] =
                            json!({ "$ref": format!("#/components/responses/{name}") });
                    }
                };
                if authenticated {
                    add("401", "Unauthorized");
                    add("503", "Unavailable");
                }
                if takes_input {
                    add("400", "BadRequest");
                }
            }
        }
    }
    let components = &mut doc["components"];
    for answer in ANSWERS {
        let mut response = json!({
            "description": answer.description,
            "content": {
                "application/problem+json": {
                    "schema": { "$ref": "#/components/schemas/Problem" }
                }
            }
        });
        if let Some((name, description)) = answer.header {
            response["headers"] = json!({
                name: { "description": description, "schema": { "type": "string" } }
            });
        }
        components["responses"][answer.name] = response;
        debug_assert!((400..600).contains(&answer.status));
    }
    components["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token, `hw_` and 64 hex digits."
        },
        "device": {
            "type": "http",
            "scheme": "basic",
            "description": "A device's uid and secret (care workers' phones)."
        },
        "emqx_hook": {
            "type": "http",
            "scheme": "bearer",
            "description": "The shared secret `mqtt.emqx_hook_secret` that an EMQX broker \
                            sends to its HTTP authenticator and authoriser hooks."
        }
    });
}

/// Registers the description and its page.
pub(super) fn api(cfg: &mut ServiceConfig<'_>) {
    cfg.service(openapi_json).service(docs);
}

/// This description.
#[utoipa::path(
    operation_id = "get_openapi",
    tag = "api",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 description of this API.",
        content_type = "application/json", body = Object)),
)]
#[get("/v1/openapi.json")]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}

/// This description as a page for people to read.
#[utoipa::path(
    operation_id = "get_docs",
    tag = "api",
    security(()),
    responses((status = 200, description = "An HTML page.", content_type = "text/html", body = String)),
)]
#[get("/docs")]
async fn docs() -> HttpResponse {
    static PAGE: OnceLock<String> = OnceLock::new();
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        ))
        .body(
            PAGE.get_or_init(|| super::docs_page::render(document()))
                .as_str(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut found = Vec::new();
        refs(doc, &mut found);
        assert!(found.len() > 50);
        for r in found {
            let pointer = r.strip_prefix('#').expect("a local reference");
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn operation_ids_are_unique_and_links_name_real_ones() {
        let doc = document();
        let mut ids = Vec::new();
        let mut targets = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                ids.push(
                    op["operationId"]
                        .as_str()
                        .expect("every operation has an id"),
                );
                assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()));
                for response in op["responses"].as_object().unwrap().values() {
                    for link in response["links"].as_object().into_iter().flatten() {
                        targets.push(link.1["operationId"].as_str().unwrap());
                    }
                }
            }
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            ids.len(),
            "duplicate operation ids in {ids:?}"
        );
        assert!(!targets.is_empty());
        for target in targets {
            assert!(
                ids.contains(&target),
                "a link names {target}, which is no operation"
            );
        }
    }

    #[test]
    fn a_path_gets_the_methods_of_every_template_it_matches() {
        let names = |p: &str| {
            allowed_methods(p).map(|m| m.iter().map(|m| m.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            names("/v1/devices"),
            Some(vec!["GET".into(), "POST".into()])
        );
        assert_eq!(names("/v1/alarms/7"), Some(vec!["GET".into()]));
        assert_eq!(names("/v1/alarms/7/resolve"), Some(vec!["POST".into()]));
        assert_eq!(names("/v1/visits/manual"), Some(vec!["POST".into()]));
        assert_eq!(names("/v1/no-such-thing"), None);
    }

    /// docs/openapi.json is the generated description, committed so that a change to the API
    /// shows in review. `HOMEWARD_BLESS=1` rewrites it; otherwise a difference fails.
    #[test]
    fn docs_openapi_json_is_the_generated_description() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let generated = format!("{}\n", document_json());
        if std::env::var_os("HOMEWARD_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the description the handlers generate; \
             regenerate it with `HOMEWARD_BLESS=1 cargo test -p homeward --lib openapi` \
             and review the difference"
        );
    }
}

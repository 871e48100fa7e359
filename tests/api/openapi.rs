//! The OpenAPI description the server serves: generated from the handlers, public, and the
//! source of the 405 answers for known paths with a method they do not have.

use homeward::auth::{OrgKind, Role};
use reqwest::Method;
use serde_json::Value;

use homeward_testkit::spawn_app;

/// The description answers without credentials, is OpenAPI 3.1, and every operation in it is
/// served: asked without credentials, none answers "no such route" or 405. (The EMQX hooks
/// exist only with their secret configured.)
#[tokio::test]
async fn the_served_description_is_public_and_lists_served_operations() {
    let mut settings = homeward_testkit::test_settings();
    settings.mqtt.emqx_hook_secret = Some(homeward::config::Secret::new("x".repeat(16)));
    let app = homeward_testkit::spawn_app_with(settings).await;
    let r = app.get("/v1/openapi.json", None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/openapi.json"));
    let mut operations = 0;
    for (path, item) in paths {
        if path == "/v1/live" {
            continue; // an endless stream; tests/api/alarms.rs and auth.rs read it
        }
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app
                .client
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            assert!(
                !(status == 404 && body.contains("route not found")) && status != 405,
                "{method} {path} is described but answers {status}"
            );
            let public = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .all(|r| r.as_object().is_some_and(|r| r.is_empty()))
            });
            if !public {
                assert_eq!(status, 401, "{method} {path} without credentials");
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path} lists 401"
                );
            }
        }
    }
    assert!(operations >= 30, "{operations} operations");
    app.stop().await;
}

/// A known path asked with a method it does not have answers 405, a problem document, with
/// `Allow` listing exactly the described methods; an unknown path still answers 404.
#[tokio::test]
async fn a_wrong_method_on_a_known_path_answers_405_with_allow() {
    let app = spawn_app().await;
    let (_, token) = app
        .org_with_user("Methods Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    for (method, path, allow) in [
        ("TRACE", "/v1/devices", "GET, POST"),
        ("PUT", "/v1/devices", "GET, POST"),
        ("DELETE", "/v1/alarms/7", "GET"),
        ("GET", "/v1/alarms/7/resolve", "POST"),
        ("PATCH", "/v1/tokens/3", "DELETE"),
        ("OPTIONS", "/healthz", "GET"),
        ("POST", "/v1/openapi.json", "GET"),
    ] {
        let r = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(path),
            )
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "/problems/method-not-allowed");
        assert_eq!(body["status"], 405);
    }
    let r = app
        .client
        .request(Method::TRACE, app.url("/v1/no-such-thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}

/// The page for people is built from the same description, embedded, and runs no script.
#[tokio::test]
async fn the_docs_page_shows_the_description_without_scripts() {
    let app = spawn_app().await;
    let r = app.get("/docs", None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let page = r.text().await.unwrap();
    assert!(!page.contains("<script"));
    for expected in [
        "/v1/alarms/{id}/resolve",
        "id=\"op-resolve_alarm\"",
        "id=\"schema-Problem\"",
        "<code>&quot;false_or_accidental&quot;</code>",
    ] {
        assert!(page.contains(expected), "the page shows {expected}");
    }
    app.stop().await;
}

use homeward::auth::{self, OrgKind, Role};
use homeward::config::Secret;
use homeward_testkit::{spawn_app, spawn_app_with, test_settings};
use reqwest::Method;

use crate::routes::{Access, ROLES, ROUTES};

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let app = spawn_app().await;
    for token in [None, Some("hw_0000"), Some("not-a-token")] {
        let r = app.get("/v1/me", token).await;
        assert_eq!(r.status(), 401, "token {token:?}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert!(r.headers().contains_key("www-authenticate"));
    }
    let r = app.get("/v1/devices", None).await;
    assert_eq!(r.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn a_token_yields_its_organisation_and_role() {
    let app = spawn_app().await;
    let (org, token) = app
        .org_with_user("Acme Care", OrgKind::Provider, Role::ProviderStaff)
        .await;
    let r = app.get("/v1/me", Some(&token)).await;
    assert_eq!(r.status(), 200);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["organisation"]["id"], org.id);
    assert_eq!(me["organisation"]["kind"], "provider");
    assert_eq!(me["user"]["role"], "provider_staff");
    app.stop().await;
}

#[tokio::test]
async fn another_organisations_data_is_never_visible() {
    let app = spawn_app().await;
    let (a, token_a) = app
        .org_with_user("Provider A", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (b, token_b) = app
        .org_with_user("Provider B", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    app.device(&a, "hub-a1", "hub").await;
    app.device(&b, "hub-b1", "hub").await;

    // B cannot read A's device, and cannot tell it exists.
    let r = app.get("/v1/devices/hub-a1", Some(&token_b)).await;
    assert_eq!(r.status(), 404);
    let r = app.get("/v1/devices/hub-a1", Some(&token_a)).await;
    assert_eq!(r.status(), 200);

    // Lists hold only the caller's own devices.
    let list: serde_json::Value = app
        .get("/v1/devices", Some(&token_b))
        .await
        .json()
        .await
        .unwrap();
    let uids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids, vec!["hub-b1"]);
    app.stop().await;
}

/// Every role against every route: a role the route allows gets past the role check (any
/// answer but 401 and 403), every other role gets 403, and no credentials get 401.
#[tokio::test]
async fn roles_are_enforced() {
    let spec: serde_json::Value = homeward::http::openapi::document().clone();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut tabled: Vec<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    tabled.sort();
    assert_eq!(
        tabled, documented,
        "the role table lists every documented route"
    );

    let mut settings = test_settings();
    settings.mqtt.emqx_hook_secret = Some(Secret::new("a-hook-secret-that-no-user-holds".into()));
    let app = spawn_app_with(settings).await;
    let (provider, _) = app
        .org_with_user("Provider R", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (council, _) = app
        .org_with_user("Council R", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let mut tokens = Vec::new();
    {
        let client = app.pool.get().await.unwrap();
        for &role in ROLES {
            let org = if role == Role::Commissioner {
                &council
            } else {
                &provider
            };
            let (_, token) = auth::create_user(&**client, org, role.as_str(), role)
                .await
                .unwrap();
            tokens.push((role, token));
        }
    }
    let mut wrong = Vec::new();
    for route in ROUTES {
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let path = route.concrete_path();
        let body = (route.body)();
        let send = |token: Option<&str>| {
            let (app, method, path, body) = (&app, method.clone(), &path, &body);
            let token = token.map(str::to_owned);
            async move {
                app.request(method, path, token.as_deref(), body.as_ref())
                    .await
                    .status()
                    .as_u16()
            }
        };
        let anonymous = send(None).await;
        match route.access {
            Access::Public if matches!(anonymous, 401 | 403) => wrong.push(format!(
                "{} {}: {anonymous} without credentials",
                route.method, route.path
            )),
            Access::Device | Access::Hook | Access::Roles(_) if anonymous != 401 => {
                wrong.push(format!(
                    "{} {}: {anonymous} without credentials",
                    route.method, route.path
                ))
            }
            _ => {}
        }
        for (role, token) in &tokens {
            let status = send(Some(token)).await;
            let allowed = match route.access {
                Access::Public => true,
                Access::Device | Access::Hook => false,
                Access::Roles(roles) => roles.contains(role),
            };
            let denied = match route.access {
                Access::Device | Access::Hook => 401,
                _ => 403,
            };
            let ok = if allowed {
                !matches!(status, 401 | 403)
            } else {
                status == denied
            };
            if !ok {
                wrong.push(format!(
                    "{} {} as {}: {status}, expected {}",
                    route.method,
                    route.path,
                    role.as_str(),
                    if allowed {
                        "past the role check".to_string()
                    } else {
                        denied.to_string()
                    }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    app.stop().await;
}

#[tokio::test]
async fn an_admin_registers_a_device_and_bad_input_is_named() {
    let app = spawn_app().await;
    let (_, admin) = app
        .org_with_user("Provider R", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let post = |body: serde_json::Value| {
        let (app, admin) = (&app, &admin);
        async move {
            app.request(Method::POST, "/v1/devices", Some(admin), Some(&body))
                .await
        }
    };
    let r = post(serde_json::json!({"uid": "pendant-7", "kind": "pendant"})).await;
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    assert_eq!(created["secret"].as_str().unwrap().len(), 64);

    let r = post(serde_json::json!({"uid": "pendant-7", "kind": "pendant"})).await;
    assert_eq!(r.status(), 409);
    let r = post(serde_json::json!({"uid": "bad uid!", "kind": "pendant"})).await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("device id"),
        "{body}"
    );
    let r = post(serde_json::json!({"uid": "x", "kind": "pendant", "colour": "red"})).await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    app.stop().await;
}

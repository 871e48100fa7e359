use homeward::auth::{OrgKind, Role};

use crate::helpers::spawn_app;

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

#[tokio::test]
async fn roles_are_enforced() {
    let app = spawn_app().await;
    let (_, staff) = app
        .org_with_user("Provider S", OrgKind::Provider, Role::ProviderStaff)
        .await;
    let r = app
        .client
        .post(app.url("/v1/devices"))
        .bearer_auth(&staff)
        .json(&serde_json::json!({"uid": "p-1", "kind": "pendant"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let (_, commissioner) = app
        .org_with_user("Council C", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let r = app.get("/v1/devices", Some(&commissioner)).await;
    assert_eq!(r.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn an_admin_registers_a_device_and_bad_input_is_named() {
    let app = spawn_app().await;
    let (_, admin) = app
        .org_with_user("Provider R", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let post = |body: serde_json::Value| {
        app.client
            .post(app.url("/v1/devices"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let r = post(serde_json::json!({"uid": "pendant-7", "kind": "pendant"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    assert_eq!(created["secret"].as_str().unwrap().len(), 64);

    let r = post(serde_json::json!({"uid": "pendant-7", "kind": "pendant"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = post(serde_json::json!({"uid": "bad uid!", "kind": "pendant"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("device id"),
        "{body}"
    );
    let r = post(serde_json::json!({"uid": "x", "kind": "pendant", "colour": "red"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    app.stop().await;
}

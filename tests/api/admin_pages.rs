//! Administration of users and tokens, over the API and in a real headless Chromium: an admin
//! adds a user (`POST /v1/users`, or the users page), changes their role
//! (`PATCH /v1/users/{id}`), disables and enables them, and issues and revokes their API
//! tokens from the user's page; the token then works, and stops working once revoked. Roles
//! that do not fit the organisation, the admin's own role, another organisation's user and
//! forms without their token are refused, and every change leaves its audit row.

use homeward::auth::{OrgKind, Role};
use homeward_testkit::browser::Browser;
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::console_kit::{session, sign_in, user_with_password};

async fn audit_count(app: &TestApp, action: &str) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = $1",
            &[&action],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn admins_add_users_and_change_roles_over_the_api() {
    let app = spawn_app().await;
    let (org, admin) = app
        .org_with_user("Hazel Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (_, other_admin) = app
        .org_with_user("Ivy Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let staff = app.user(&org, "Sam Staff", Role::ProviderStaff).await;

    let (s, u) = app
        .post_json(
            "/v1/users",
            &admin,
            &json!({"name": "Nell New", "email": "nell@hazel.example", "role": "responder"}),
        )
        .await;
    assert_eq!(s, 201, "{u}");
    let id = u["id"].as_i64().unwrap();
    assert_eq!(u["role"], "responder");
    assert_eq!(audit_count(&app, "user.create").await, 1);
    // No token was made; a set-password link can be.
    let (_, tokens) = app
        .get_json(&format!("/v1/users/{id}/tokens"), &admin)
        .await;
    assert_eq!(tokens["items"].as_array().unwrap().len(), 0, "{tokens}");
    let (s, l) = app
        .post_json(&format!("/v1/users/{id}/password-link"), &admin, &json!({}))
        .await;
    assert_eq!(s, 201, "{l}");

    // Refusals, each named.
    for (body, status, field) in [
        (
            json!({"name": "Cora", "role": "commissioner"}),
            422,
            Some("role"),
        ),
        (
            json!({"name": "  ", "role": "responder"}),
            422,
            Some("name"),
        ),
        (
            json!({"name": "Dot", "email": "not-an-address", "role": "responder"}),
            422,
            Some("email"),
        ),
        (json!({"name": "Nell New", "role": "responder"}), 409, None),
    ] {
        let (s, p) = app.post_json("/v1/users", &admin, &body).await;
        assert_eq!(
            (s, p["errors"][0]["field"].as_str()),
            (status, field),
            "{body}: {p}"
        );
    }
    let (s, _) = app
        .post_json(
            "/v1/users",
            &staff,
            &json!({"name": "Eve", "role": "responder"}),
        )
        .await;
    assert_eq!(s, 403);

    // Roles change, not the admin's own, not another organisation's user's.
    let patch = |token: &str, user: i64, role: &str| {
        let (app, token) = (&app, token.to_owned());
        let role = role.to_owned();
        async move {
            app.request_json(
                Method::PATCH,
                &format!("/v1/users/{user}"),
                &token,
                Some(&json!({"role": role})),
            )
            .await
        }
    };
    let (s, r) = patch(&admin, id, "provider_staff").await;
    assert_eq!((s, &r["changed"]), (200, &json!(true)), "{r}");
    let (s, r) = patch(&admin, id, "provider_staff").await;
    assert_eq!((s, &r["changed"]), (200, &json!(false)), "{r}");
    let (_, me) = app.get_json("/v1/me", &admin).await;
    let admin_id = me["user"]["id"].as_i64().unwrap();
    let (s, _) = patch(&admin, admin_id, "responder").await;
    assert_eq!(s, 409);
    let (s, _) = patch(&other_admin, id, "responder").await;
    assert_eq!(s, 404);
    // Not a role at all: the body does not parse.
    let (s, p) = patch(&admin, id, "auditor_of_everything").await;
    assert_eq!(s, 400, "{p}");
    let client = app.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT change::jsonb FROM audit_log WHERE action = 'user.set_role' ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let change: Value = row.get(0);
    assert_eq!(
        (&change["before"]["role"], &change["after"]["role"]),
        (&json!("responder"), &json!("provider_staff"))
    );
}

#[tokio::test]
async fn an_admin_manages_a_users_access_and_tokens_in_the_console() {
    let app = spawn_app().await;
    let org = app.organisation("Juniper Care", OrgKind::Provider).await;
    let browser = Browser::start_sized(390, 844).await;
    let (admin_id, _) = user_with_password(
        &app,
        Some(&browser),
        &org,
        "Ada Admin",
        "ada@juniper.example",
        Role::ProviderAdmin,
    )
    .await;
    sign_in(&browser, &app, "ada@juniper.example").await;

    // Add a user from the users page.
    browser.open(&app.url("/console/users")).await;
    browser.fill("#name", "Rob Responder").await;
    browser.fill("#email", "rob@juniper.example").await;
    browser
        .find("#role")
        .await
        .select_by_value("responder")
        .await
        .unwrap();
    browser.submit("form[action='/console/users'] button").await;
    assert!(browser
        .text(".notice")
        .await
        .contains("Rob Responder was added"));
    let url = browser.url().await;
    let id: i32 = url
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a user's page: {url}"));

    // Change the role.
    browser
        .find("#role")
        .await
        .select_by_value("provider_staff")
        .await
        .unwrap();
    browser
        .submit(&format!("form[action='/console/users/{id}/role'] button"))
        .await;
    assert!(browser
        .text(".notice")
        .await
        .contains("The role is now staff"));

    // A token: shown once; it works until revoked.
    browser.fill("#label", "rota sync").await;
    browser
        .submit(&format!("form[action='/console/users/{id}/tokens'] button"))
        .await;
    let token = browser
        .find("#token")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(token.starts_with("hw_"), "{token}");
    let (s, me) = app.get_json("/v1/me", &token).await;
    assert_eq!((s, &me["user"]["role"]), (200, &json!("provider_staff")));
    browser
        .open(&app.url(&format!("/console/users/{id}")))
        .await;
    let tokens = browser.text("main").await;
    assert!(
        tokens.contains("rota sync") && tokens.contains(&token[..11]),
        "{tokens}"
    );
    assert!(
        !tokens.contains(&token),
        "the whole token is never shown again"
    );
    browser
        .submit("form[action^='/console/tokens/'] button")
        .await;
    assert!(browser.text(".notice").await.contains("revoked"));
    let (s, _) = app.get_json("/v1/me", &token).await;
    assert_eq!(s, 401);

    // Disable, then enable.
    browser
        .submit(&format!(
            "form[action='/console/users/{id}/disable'] button"
        ))
        .await;
    assert!(browser.text(".notice").await.contains("Disabled"));
    let client = app.pool.get().await.unwrap();
    let disabled: bool = client
        .query_one(
            "SELECT disabled_at IS NOT NULL FROM users WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(disabled);
    browser
        .submit(&format!("form[action='/console/users/{id}/enable'] button"))
        .await;
    assert!(browser.text(".notice").await.contains("Enabled"));
    // The admin's own page has no role or disable forms.
    browser
        .open(&app.url(&format!("/console/users/{admin_id}")))
        .await;
    let own = browser.text("main").await;
    assert!(
        !own.contains("Change the role") && !own.contains("Disable"),
        "{own}"
    );
    browser.close().await;
    for action in [
        "user.create",
        "user.set_role",
        "token.create",
        "token.revoke",
        "user.disable",
        "user.enable",
    ] {
        assert_eq!(audit_count(&app, action).await, 1, "{action}");
    }

    // A form without its token changes nothing; another organisation's user is not found.
    let (cookie, form_token) = session(&app, admin_id).await;
    let r = app
        .client
        .post(app.url(&format!("/console/users/{id}/disable")))
        .header("Cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let other = app.organisation("Laurel Care", OrgKind::Provider).await;
    let stranger = app.user(&other, "Stan Stranger", Role::ProviderStaff).await;
    let (_, me) = app.get_json("/v1/me", &stranger).await;
    let stranger_id = me["user"]["id"].as_i64().unwrap();
    for path in [
        format!("/console/users/{stranger_id}/disable"),
        format!("/console/users/{stranger_id}/role"),
    ] {
        let r = app
            .client
            .post(app.url(&path))
            .header("Cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={form_token}&role=responder"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let (s, me) = app.get_json("/v1/me", &stranger).await;
    assert_eq!(s, 200, "{me}");
}

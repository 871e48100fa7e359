//! Contracts made by both parties: a council proposes, the provider's administrator accepts
//! (the contract is made and the council then sees the provider's people), declines, or the
//! council withdraws. Over the API with the refusals each names, then in a real headless
//! Chromium: the council proposes from the outcomes page, the provider accepts from theirs.

use homeward::auth::{OrgKind, Role};
use homeward_testkit::browser::Browser;
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::console_kit::{sign_in, user_with_password};

/// The organisations a caller from `org` may see through row-level security.
async fn visible(app: &TestApp, org: i32) -> Vec<i32> {
    let client = app.pool.get().await.unwrap();
    let row = client
        .query_one("SELECT homeward_visible_orgs($1)", &[&org])
        .await
        .unwrap();
    row.get::<_, Option<Vec<i32>>>(0).unwrap_or_default()
}

async fn post(app: &TestApp, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    app.request_json(Method::POST, path, token, body.as_ref())
        .await
}

#[tokio::test]
async fn a_contract_is_made_only_when_the_provider_accepts_the_councils_proposal() {
    let app = spawn_app().await;
    let (council, council_token) = app
        .org_with_user(
            "Oakshire Council",
            OrgKind::Commissioner,
            Role::Commissioner,
        )
        .await;
    let (provider, provider_admin) = app
        .org_with_user("Rowan Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let staff = app.user(&provider, "Sam Staff", Role::ProviderStaff).await;
    let (_, other_admin) = app
        .org_with_user("Elder Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (_, other_council) = app
        .org_with_user("Ashby Council", OrgKind::Commissioner, Role::Commissioner)
        .await;

    // Refusals, each named.
    for (body, status, field) in [
        (
            json!({"provider": "Nobody Care", "reference": "OK-1", "starts_on": "2027-04-01"}),
            422,
            "provider",
        ),
        (
            json!({"provider": "Ashby Council", "reference": "OK-1", "starts_on": "2027-04-01"}),
            422,
            "provider",
        ),
        (
            json!({"provider": "Rowan Care", "reference": " ", "starts_on": "2027-04-01"}),
            422,
            "reference",
        ),
        (
            json!({"provider": "Rowan Care", "reference": "OK-1", "starts_on": "2027-04-01",
            "ends_on": "2027-03-31"}),
            422,
            "ends_on",
        ),
    ] {
        let (s, p) = post(&app, "/v1/contract-proposals", &council_token, Some(body)).await;
        assert_eq!(s, status, "{p}");
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    let (s, _) = post(
        &app,
        "/v1/contract-proposals",
        &provider_admin,
        Some(json!({"provider": "Rowan Care", "reference": "OK-1", "starts_on": "2027-04-01"})),
    )
    .await;
    assert_eq!(s, 403, "a provider does not propose");

    // Proposed: it grants nothing yet.
    let (s, p) = post(
        &app,
        "/v1/contract-proposals",
        &council_token,
        Some(json!({"provider": "Rowan Care", "reference": "OK-1", "starts_on": "2027-04-01"})),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(
        (p["status"].as_str(), p["provider_id"].as_i64()),
        (Some("open"), Some(provider.id.into()))
    );
    let id = p["id"].as_i64().unwrap();
    let (s, _) = post(
        &app,
        "/v1/contract-proposals",
        &council_token,
        Some(json!({"provider": "Rowan Care", "reference": "OK-1", "starts_on": "2027-05-01"})),
    )
    .await;
    assert_eq!(s, 409, "one open proposal per reference");
    assert_eq!(visible(&app, council.id).await, vec![council.id]);
    let (_, contracts) = app.get_json("/v1/contracts", &council_token).await;
    assert_eq!(contracts["items"], json!([]));
    // Both parties list it; no one else does.
    for token in [&council_token, &provider_admin, &staff] {
        let (_, l) = app
            .get_json("/v1/contract-proposals?status=open", token)
            .await;
        assert_eq!(l["items"][0]["id"].as_i64(), Some(id), "{l}");
    }
    for token in [&other_admin, &other_council] {
        let (_, l) = app.get_json("/v1/contract-proposals", token).await;
        assert_eq!(l["items"], json!([]), "{l}");
    }

    // Only the provider's administrator decides.
    let accept = format!("/v1/contract-proposals/{id}/accept");
    assert_eq!(post(&app, &accept, &staff, None).await.0, 403);
    assert_eq!(post(&app, &accept, &other_admin, None).await.0, 404);
    assert_eq!(
        post(
            &app,
            &format!("/v1/contract-proposals/{id}/withdraw"),
            &other_council,
            None
        )
        .await
        .0,
        404
    );
    let (s, p) = post(&app, &accept, &provider_admin, None).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["status"], "accepted");
    let contract = p["contract_id"].as_i64().unwrap();
    assert_eq!(
        visible(&app, council.id).await,
        vec![council.id, provider.id]
    );
    let (_, contracts) = app.get_json("/v1/contracts", &council_token).await;
    assert_eq!(
        contracts["items"][0]["id"].as_i64(),
        Some(contract),
        "{contracts}"
    );
    assert_eq!(contracts["items"][0]["reference"], "OK-1");
    assert_eq!(contracts["items"][0]["starts_on"], "2027-04-01");
    // Decided once.
    let (s, p) = post(
        &app,
        &format!("/v1/contract-proposals/{id}/withdraw"),
        &council_token,
        None,
    )
    .await;
    assert_eq!(s, 409, "{p}");
    // Its reference is now a contract's.
    let (s, _) = post(&app, "/v1/contract-proposals", &council_token,
        Some(json!({"provider": provider.id.to_string(), "reference": "OK-1", "starts_on": "2028-04-01"}))).await;
    assert_eq!(s, 409);

    // Declined and withdrawn proposals make nothing.
    let mut ids = vec![];
    for reference in ["OK-2", "OK-3"] {
        let (_, p) = post(&app, "/v1/contract-proposals", &other_council,
            Some(json!({"provider": "Rowan Care", "reference": reference, "starts_on": "2027-04-01"}))).await;
        ids.push(p["id"].as_i64().unwrap());
    }
    let (s, p) = post(
        &app,
        &format!("/v1/contract-proposals/{}/decline", ids[0]),
        &provider_admin,
        None,
    )
    .await;
    assert_eq!((s, p["status"].as_str()), (200, Some("declined")), "{p}");
    let (s, p) = post(
        &app,
        &format!("/v1/contract-proposals/{}/withdraw", ids[1]),
        &other_council,
        None,
    )
    .await;
    assert_eq!((s, p["status"].as_str()), (200, Some("withdrawn")), "{p}");
    let (_, contracts) = app.get_json("/v1/contracts", &other_council).await;
    assert_eq!(contracts["items"], json!([]));

    let client = app.pool.get().await.unwrap();
    let actions: Vec<String> = client
        .query(
            "SELECT action FROM audit_log WHERE object_type = 'contract_proposal' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "contract_proposal.propose",
            "contract_proposal.accept",
            "contract_proposal.propose",
            "contract_proposal.propose",
            "contract_proposal.decline",
            "contract_proposal.withdraw",
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn the_council_proposes_and_the_provider_accepts_in_the_console() {
    let app = spawn_app().await;
    let council = app
        .organisation("Mapleshire Council", OrgKind::Commissioner)
        .await;
    let provider = app.organisation("Hazel Homecare", OrgKind::Provider).await;
    let officer = Browser::start_sized(390, 844).await;
    user_with_password(
        &app,
        Some(&officer),
        &council,
        "Cal Council",
        "cal@maple.example",
        Role::Commissioner,
    )
    .await;
    sign_in(&officer, &app, "cal@maple.example").await;
    officer.open(&app.url("/console/outcomes")).await;
    officer.fill("#provider", "Hazel Homecare").await;
    officer.fill("#reference", "MS-HC-2027").await;
    // The date field takes the day as typed in the browser's own format: set it directly.
    officer
        .client
        .execute(
            "document.getElementById('starts_on').value = '2027-04-01';",
            vec![],
        )
        .await
        .unwrap();
    officer.submit("#propose-form button").await;
    let notice = officer.text(".notice").await;
    assert!(
        notice.contains("MS-HC-2027 is proposed to Hazel Homecare"),
        "{notice}"
    );
    assert!(officer
        .text("#proposals-caption")
        .await
        .contains("not yet decided"));
    assert!(
        !officer.scrolls_sideways().await,
        "{}",
        officer.sideways_culprits().await
    );

    let admin = Browser::start_sized(390, 844).await;
    user_with_password(
        &app,
        Some(&admin),
        &provider,
        "Ada Admin",
        "ada@hazel.example",
        Role::ProviderAdmin,
    )
    .await;
    sign_in(&admin, &app, "ada@hazel.example").await;
    admin.open(&app.url("/console/outcomes")).await;
    let row = admin.text("[id^=proposal-]").await;
    assert!(
        row.contains("MS-HC-2027") && row.contains("Mapleshire Council"),
        "{row}"
    );
    admin
        .submit("[id^=proposal-] form[action$='/accept'] button")
        .await;
    let notice = admin.text(".notice").await;
    assert!(notice.contains("is in force"), "{notice}");
    assert!(admin.text("#contracts-caption").await.contains("Contracts"));

    officer.open(&app.url("/console/outcomes")).await;
    let main = officer.text("main").await;
    assert!(
        main.contains("MS-HC-2027") && main.contains("Hazel Homecare"),
        "{main}"
    );
    assert!(!main.contains("not yet decided"), "{main}");
    officer.close().await;
    admin.close().await;
    app.stop().await;
}

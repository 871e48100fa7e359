//! The queues of "I can" plans: `GET /v1/outcome-plans` lists each party's plans a page at a
//! time, with what each waits for (agreements not yet given; achievements the person confirmed
//! that the council has not judged), by pseudonym to the council; and in a real headless
//! Chromium the council agrees a plan and verifies an achievement from its queues, which the
//! JSON API then shows, while a provider's form posted without its token changes nothing.

use chrono::Utc;
use homeward::auth::password::{issue_password_link, set_password_with_link, set_user_email};
use homeward::auth::{OrgKind, Role, Scope};
use homeward_testkit::browser::Browser;
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::confirmations::{issue_link, post_form};

const PASSWORD: &str = "a queue password for tests";

struct World {
    provider: String,
    council: String,
    other_council: String,
    council_user: i32,
    /// Agreed by the person and the provider only.
    unagreed: i64,
    /// Agreed by all; its first outcome confirmed by the person.
    confirmed: i64,
    confirmed_outcome: i64,
}

async fn plan(
    app: &TestApp,
    token: &str,
    person: i64,
    contract: i32,
    statement: &str,
) -> (i64, i64) {
    let today = Utc::now().date_naive();
    let day = |days: i64| (today + chrono::Duration::days(days)).to_string();
    let p = app
        .request_ok(
            Method::POST,
            "/v1/outcome-plans",
            token,
            Some(
                &json!({"person_id": person, "contract_id": contract, "starts_on": day(-30),
                         "ends_on": day(90), "outcomes": [{"statement": statement,
                         "kind": "reablement", "payable": true, "target_date": day(30)}]}),
            ),
        )
        .await;
    (
        p["id"].as_i64().unwrap(),
        p["outcomes"][0]["id"].as_i64().unwrap(),
    )
}

async fn agree(app: &TestApp, token: &str, plan: i64, party: &str) {
    app.request_ok(
        Method::POST,
        &format!("/v1/outcome-plans/{plan}/agree"),
        token,
        Some(&json!({"party": party})),
    )
    .await;
}

async fn world(app: &TestApp) -> World {
    let (provider_org, provider) = app
        .org_with_user("Rowan Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (council_org, council) = app
        .org_with_user("Fen Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let (_, other_council) = app
        .org_with_user("Moor Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let client = app.pool.get().await.unwrap();
    let contract: i32 = client
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on)
             VALUES ($1, $2, 'FEN-1', '2025-01-01') RETURNING id",
            &[&council_org.id, &provider_org.id],
        )
        .await
        .unwrap()
        .get(0);
    let council_user: i32 = client
        .query_one(
            "SELECT id FROM users WHERE organisation_id = $1",
            &[&council_org.id],
        )
        .await
        .unwrap()
        .get(0);
    let person = app
        .request_ok(
            Method::POST,
            "/v1/people",
            &provider,
            Some(&json!({"external_ref": "R1", "display_name": "Rhian Rees", "date_of_birth": "1938-05-02"})),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    app.request_ok(
        Method::POST,
        "/v1/outcomes/service-periods",
        &provider,
        Some(&json!({"person_id": person, "contract_id": contract, "started_on": "2025-01-01"})),
    )
    .await;
    let (unagreed, _) = plan(app, &provider, person, contract, "I can walk to the shop").await;
    agree(app, &provider, unagreed, "provider").await;
    let (confirmed, confirmed_outcome) = plan(
        app,
        &provider,
        person,
        contract,
        "I can make my own breakfast",
    )
    .await;
    for party in ["person", "provider"] {
        agree(app, &provider, confirmed, party).await;
    }
    agree(app, &council, confirmed, "council").await;
    let (path, _, _) = issue_link(app, &provider, confirmed, confirmed_outcome).await;
    let (s, page) = post_form(app, &path, "answer=yes&feedback=toast+and+tea").await;
    assert_eq!(s, 200, "{page}");
    World {
        provider,
        council,
        other_council,
        council_user,
        unagreed,
        confirmed,
        confirmed_outcome,
    }
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn plans_list_by_party_with_what_each_waits_for() {
    let app = spawn_app().await;
    let w = world(&app).await;

    // The provider: both plans, with names; a page at a time.
    let (s, all) = app.get_json("/v1/outcome-plans", &w.provider).await;
    assert_eq!(s, 200, "{all}");
    assert_eq!(ids(&all), [w.unagreed, w.confirmed]);
    assert_eq!(all["items"][0]["person_name"], "Rhian Rees");
    assert_eq!(
        all["items"][0]["awaiting_agreement"],
        json!(["person", "council"])
    );
    let (_, first) = app.get_json("/v1/outcome-plans?limit=1", &w.provider).await;
    assert_eq!(ids(&first), [w.unagreed]);
    let after = first["next_after"].as_i64().unwrap();
    let (_, second) = app
        .get_json(
            &format!("/v1/outcome-plans?limit=1&after={after}"),
            &w.provider,
        )
        .await;
    assert_eq!(ids(&second), [w.confirmed]);
    let (_, last) = app
        .get_json(
            &format!("/v1/outcome-plans?limit=1&after={}", w.confirmed),
            &w.provider,
        )
        .await;
    assert_eq!((ids(&last).len(), &last["next_after"]), (0, &Value::Null));

    // The queues.
    let (_, agreement) = app
        .get_json("/v1/outcome-plans?awaiting=agreement", &w.council)
        .await;
    assert_eq!(ids(&agreement), [w.unagreed]);
    let (_, verification) = app
        .get_json("/v1/outcome-plans?awaiting=verification", &w.council)
        .await;
    assert_eq!(ids(&verification), [w.confirmed]);
    let waiting = &verification["items"][0]["awaiting_verification"];
    assert_eq!(waiting[0]["outcome_id"], w.confirmed_outcome);
    assert_eq!(
        waiting[0]["achieved_on"],
        Utc::now().date_naive().to_string()
    );
    // By pseudonym to the council, and its reading is logged.
    assert_eq!(verification["items"][0]["person_name"], Value::Null);
    assert_eq!(verification["items"][0]["person_id"], Value::Null);
    assert!(verification["items"][0]["person_pseudonym"].is_string());
    let client = app.pool.get().await.unwrap();
    let reads: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'person_data.read' AND object_id = 'outcome_plans'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reads, 2);

    // Once verified, it waits no more; another council sees none; bad input is named.
    app.request_ok(
        Method::POST,
        &format!(
            "/v1/outcome-plans/{}/outcomes/{}/verify",
            w.confirmed, w.confirmed_outcome
        ),
        &w.council,
        Some(&json!({"verdict": "verified"})),
    )
    .await;
    let (_, verification) = app
        .get_json("/v1/outcome-plans?awaiting=verification", &w.council)
        .await;
    assert!(ids(&verification).is_empty());
    let (_, other) = app.get_json("/v1/outcome-plans", &w.other_council).await;
    assert!(ids(&other).is_empty());
    for (query, field) in [("awaiting=soon", "awaiting"), ("limit=0", "limit")] {
        let (s, p) = app
            .get_json(&format!("/v1/outcome-plans?{query}"), &w.provider)
            .await;
        assert_eq!(
            (s, p["errors"][0]["field"].as_str()),
            (422, Some(field)),
            "{query}"
        );
    }
}

#[tokio::test]
async fn the_council_agrees_and_verifies_from_its_queues_in_a_browser() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let client = app.pool.get().await.unwrap();
    set_user_email(&**client, Scope::Any, w.council_user, "officer@fen.example")
        .await
        .unwrap();
    let link = issue_password_link(&**client, Scope::Any, w.council_user, 72, None)
        .await
        .unwrap();
    set_password_with_link(&app.pool, &link.token, PASSWORD)
        .await
        .unwrap()
        .unwrap();
    let browser = Browser::start_sized(390, 844).await;
    browser.open(&app.url("/console/sign-in")).await;
    browser.fill("#email", "officer@fen.example").await;
    browser.fill("#password", PASSWORD).await;
    browser.submit("form.form button[type=submit]").await;

    // Waiting for agreement: the council's button, and the plan agreed.
    browser.open(&app.url("/console/outcomes")).await;
    browser
        .submit("a[href='/console/outcomes/plans?awaiting=agreement']")
        .await;
    let item = browser.text(".queue-item").await;
    assert!(item.contains(&format!("Plan {}", w.unagreed)), "{item}");
    assert!(item.contains("the person, the council"), "{item}");
    browser.submit(".queue-item button").await;
    let notice = browser.text(".notice").await;
    assert!(notice.contains("agreed for the council"), "{notice}");
    let (_, plan) = app
        .get_json(&format!("/v1/outcome-plans/{}", w.unagreed), &w.council)
        .await;
    assert!(plan["agreed_by_council_at"].is_string(), "{plan}");

    // Waiting for verification: the person's words, and the verdict with a note.
    browser
        .submit("a[href='/console/outcomes/plans?awaiting=verification']")
        .await;
    let item = browser.text(".queue-item").await;
    assert!(item.contains("I can make my own breakfast"), "{item}");
    browser
        .fill(&format!("#note-{}", w.confirmed_outcome), "rang the person")
        .await;
    browser.submit(".verify button[value=verified]").await;
    let notice = browser.text(".notice").await;
    assert!(notice.contains("verified"), "{notice}");
    assert!(browser.text("main").await.contains("Nothing is waiting"));
    let (_, plan) = app
        .get_json(&format!("/v1/outcome-plans/{}", w.confirmed), &w.provider)
        .await;
    let verification = &plan["outcomes"][0]["verification"];
    assert_eq!(
        (&verification["verdict"], &verification["note"]),
        (&json!("verified"), &json!("rang the person"))
    );
    let fits = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, Value::Bool(true));
    browser.close().await;

    // A form without its token changes nothing.
    let r = app
        .client
        .post(app.url(&format!("/console/outcomes/plans/{}/agree", w.unagreed)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("party=person")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, plan) = app
        .get_json(&format!("/v1/outcome-plans/{}", w.unagreed), &w.provider)
        .await;
    assert_eq!(plan["agreed_by_person_at"], Value::Null);
}

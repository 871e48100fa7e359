//! The person's confirmation of an outcome, in a real headless Chromium at phone width: a
//! provider issues a link over the API; the person opens it, reads the outcome in their own
//! words, answers "Yes" with feedback and is thanked; the plan's JSON then dates the
//! achievement by that answer (today, in UTC) and carries the feedback; the link, opened again,
//! says it was used. The same through the short code typed at `/confirm`. Also
//! [`agreed_plan`], the plan these tests and the accessibility check confirm outcomes of.

use chrono::Utc;
use homeward::auth::{OrgKind, Role};
use homeward_testkit::browser::Browser;
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::confirmations::issue_link;

/// A plan agreed by the person, the provider and the council, with one outcome per statement.
pub struct AgreedPlan {
    /// The provider admin's API token (who issues links).
    pub provider: String,
    pub plan: i64,
    /// The outcomes' ids, in the order of the statements.
    pub outcomes: Vec<i64>,
}

/// A provider, its council's contract, one person served under it, and a plan for them with
/// an outcome for each of `statements`, agreed by all three, so links can be issued.
pub async fn agreed_plan(app: &TestApp, statements: &[&str]) -> AgreedPlan {
    let (provider, provider_token) = app
        .org_with_user("Willow Reablement", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (council, council_token) = app
        .org_with_user("Vale Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let client = app.pool.get().await.unwrap();
    let contract: i32 = client
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on)
             VALUES ($1, $2, 'VALE-1', '2025-01-01') RETURNING id",
            &[&council.id, &provider.id],
        )
        .await
        .unwrap()
        .get(0);
    let t = &provider_token;
    let person = app
        .request_ok(
            Method::POST,
            "/v1/people",
            t,
            Some(&json!({"external_ref": "W1", "date_of_birth": "1941-03-09"})),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    app.request_ok(
        Method::POST,
        "/v1/outcomes/service-periods",
        t,
        Some(&json!({"person_id": person, "contract_id": contract, "started_on": "2025-01-01"})),
    )
    .await;
    // A plan running now: from a month ago, for four months.
    let today = Utc::now().date_naive();
    let day = |days: i64| (today + chrono::Duration::days(days)).to_string();
    let outcomes: Vec<Value> = statements
        .iter()
        .map(|s| json!({"statement": s, "kind": "reablement", "payable": true, "target_date": day(60)}))
        .collect();
    let plan = app
        .request_ok(
            Method::POST,
            "/v1/outcome-plans",
            t,
            Some(
                &json!({"person_id": person, "contract_id": contract, "starts_on": day(-30),
                         "ends_on": day(90), "value_pence": 60000, "outcomes": outcomes}),
            ),
        )
        .await;
    let id = plan["id"].as_i64().unwrap();
    for (token, party) in [(t, "person"), (t, "provider"), (&council_token, "council")] {
        app.request_ok(
            Method::POST,
            &format!("/v1/outcome-plans/{id}/agree"),
            token,
            Some(&json!({"party": party})),
        )
        .await;
    }
    AgreedPlan {
        provider: provider_token,
        plan: id,
        outcomes: plan["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_i64().unwrap())
            .collect(),
    }
}

/// The outcome `id` of the plan as the API shows it.
async fn outcome_json(app: &TestApp, p: &AgreedPlan, id: i64) -> Value {
    let plan = app
        .get_ok(&format!("/v1/outcome-plans/{}", p.plan), &p.provider)
        .await;
    plan["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("outcome {id} in {plan}"))
}

/// Asserts that the page fits the window, `width` px wide: no sideways scrolling.
async fn fits(browser: &Browser, width: i64) {
    let inner = browser
        .client
        .execute("return window.innerWidth", vec![])
        .await
        .unwrap();
    assert_eq!(inner, width, "the window is {width} px wide");
    assert!(
        !browser.scrolls_sideways().await,
        "no sideways scrolling at {width} px on {}",
        browser.url().await
    );
}

/// Answers "Yes" with `feedback` on the question page open in `browser`, and checks the
/// thank-you page.
async fn answer_yes(browser: &Browser, feedback: &str) {
    browser.fill("#feedback", feedback).await;
    browser.submit("button[name=answer][value=yes]").await;
    assert_eq!(browser.text("h1").await, "Thank you");
    assert!(browser
        .text("main")
        .await
        .contains("We have recorded that you can do this now."));
}

/// Checks that the achievement of outcome `id` is dated today (UTC) by the person's answer,
/// with their feedback, and not yet verified.
async fn achieved_today(app: &TestApp, p: &AgreedPlan, id: i64, feedback: &str) {
    let today = Utc::now().date_naive().to_string();
    let o = outcome_json(app, p, id).await;
    assert_eq!(o["achieved_on"], json!(today), "{o}");
    assert_eq!(
        o["confirmed_at"].as_str().map(|t| t.starts_with(&today)),
        Some(true),
        "{o}"
    );
    assert_eq!(
        o["confirmations"],
        json!([{"answer": "yes", "feedback": feedback, "at": o["confirmed_at"]}]),
        "{o}"
    );
    assert_eq!(
        o["verified"],
        json!(false),
        "the council has not verified it yet"
    );
}

#[tokio::test]
async fn a_person_confirms_an_outcome_through_their_link_and_their_code_in_a_browser() {
    let app = spawn_app().await;
    let by_link = "I can make my own breakfast again";
    let by_code = "I can walk to the post box & back";
    let p = agreed_plan(&app, &[by_link, by_code]).await;
    let (path, _, _) = issue_link(&app, &p.provider, p.plan, p.outcomes[0]).await;
    let (_, _, code) = issue_link(&app, &p.provider, p.plan, p.outcomes[1]).await;
    for id in &p.outcomes {
        assert_eq!(
            outcome_json(&app, &p, *id).await["achieved_on"],
            Value::Null
        );
    }

    // The link, on a phone (390 px for the docs' picture, then 360 px to answer).
    let browser = Browser::start_sized(390, 900).await;
    browser.open(&app.url(&path)).await;
    assert_eq!(browser.text("h1").await, "Can you do this now?");
    assert_eq!(browser.text("blockquote").await, by_link);
    browser.picture("confirmation").await;
    browser.resize(360, 800).await;
    browser.open(&app.url(&path)).await;
    fits(&browser, 360).await;
    assert_eq!(browser.text("blockquote").await, by_link);
    answer_yes(&browser, "Porridge every morning now").await;
    fits(&browser, 360).await;
    achieved_today(&app, &p, p.outcomes[0], "Porridge every morning now").await;
    assert_eq!(
        outcome_json(&app, &p, p.outcomes[1]).await["achieved_on"],
        Value::Null,
        "only the outcome answered"
    );
    // Opened again: used, and nothing more is recorded.
    browser.open(&app.url(&path)).await;
    assert_eq!(browser.text("h1").await, "This link has already been used");
    let today = Utc::now().format("%-d %B %Y").to_string();
    assert!(
        browser
            .text("main")
            .await
            .contains(&format!("An answer was given on {today}.")),
        "{}",
        browser.text("main").await
    );
    let no_form = browser
        .client
        .execute("return document.querySelector('form') === null", vec![])
        .await
        .unwrap();
    assert_eq!(no_form, json!(true), "no way to answer again");

    // The short code, typed loosely (small letters, a space for the dash) at /confirm.
    browser.open(&app.url("/confirm")).await;
    assert_eq!(browser.text("h1").await, "Enter your code");
    // A mistyped code is named at the field as well as above the form.
    browser.fill("#code", "AAAAA-AAAAA").await;
    browser.submit("form button[type=submit]").await;
    assert!(browser
        .text(".error")
        .await
        .contains("cannot find this code"));
    let field = browser
        .client
        .execute(
            "const f = document.getElementById('code');
             return [f.getAttribute('aria-invalid'), f.getAttribute('aria-describedby')]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(field, json!(["true", "code-hint code-error"]));
    browser
        .fill("#code", &code.to_lowercase().replace('-', " "))
        .await;
    browser.submit("form button[type=submit]").await;
    assert_eq!(browser.text("h1").await, "Can you do this now?");
    assert_eq!(browser.text("blockquote").await, by_code);
    fits(&browser, 360).await;
    answer_yes(&browser, "With my stick, no help").await;
    achieved_today(&app, &p, p.outcomes[1], "With my stick, no help").await;
    // The code again: used.
    browser.open(&app.url("/confirm")).await;
    browser.fill("#code", &code).await;
    browser.submit("form button[type=submit]").await;
    assert_eq!(browser.text("h1").await, "This link has already been used");
    assert_eq!(
        outcome_json(&app, &p, p.outcomes[1]).await["confirmations"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    browser.close().await;
    app.stop().await;
}

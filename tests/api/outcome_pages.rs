//! The commissioner's outcome pages in a real headless Chromium, and the API behind them: a
//! commissioner sees only its own contracts, a contract's indicators over quarters as charts
//! with their tables, the funnel plot comparing its providers, and downloads an issued
//! statement as CSV; another commissioner's contract and statement do not exist for it.
//! Over HTTP: `GET /v1/contracts` lists each party's own, `GET /v1/outcomes/funnel` is the
//! commissioner's only and agrees with each provider's own report, and an issued statement
//! reads back as issued.

use chrono::{Datelike, NaiveDate};
use homeward::auth::password::{issue_password_link, set_user_email};
use homeward::auth::{self, OrgKind, Role, Scope};
use homeward_testkit::browser::Browser;
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "an outcomes password for tests";

/// The last complete quarter of the financial year (the funnel page's default): its first day
/// and the day after it.
fn last_quarter() -> (NaiveDate, NaiveDate) {
    let today = chrono::Utc::now().date_naive();
    let start =
        |d: NaiveDate| NaiveDate::from_ymd_opt(d.year(), d.month0() / 3 * 3 + 1, 1).unwrap();
    let current = start(today);
    (start(current - chrono::Duration::days(1)), current)
}

/// The report query of [`last_quarter`], judged a month after it.
fn quarter_query() -> String {
    let (from, to) = last_quarter();
    format!(
        "from={from}&to={to}&as_of={}",
        (to + chrono::Duration::days(31)).min(chrono::Utc::now().date_naive())
    )
}

/// `people` people of `provider` served under `contract` since 2025-01-01, each with
/// `falls_each` fall alarms raised in the [`last_quarter`] (and a recorded fall each).
async fn serve(
    app: &TestApp,
    provider: &auth::Organisation,
    provider_token: &str,
    contract: i32,
    tag: &str,
    people: usize,
    falls_each: usize,
) {
    app.device(provider, &format!("hub-{tag}"), "hub").await;
    let client = app.pool.get().await.unwrap();
    for i in 0..people {
        let (s, p) = app
            .post_json(
                "/v1/people",
                provider_token,
                &json!({"external_ref": format!("{tag}-{i}"), "date_of_birth": "1940-03-01"}),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        let person = p["id"].as_i64().unwrap();
        let (s, b) = app
            .post_json(
                "/v1/outcomes/service-periods",
                provider_token,
                &json!({"person_id": person, "contract_id": contract, "started_on": "2025-01-01"}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        for f in 0..falls_each {
            let at = (last_quarter().0 + chrono::Duration::days(f as i64 + 3))
                .and_hms_opt(10, 0, 0)
                .unwrap()
                .and_utc();
            client
                .execute(
                    "INSERT INTO alarms (organisation_id, category, kind, severity, state, fold_key,
                                         person_id, source_device_id, source_seq, last_device_id,
                                         last_seq, is_fall, long_lie, raised_at, received_at,
                                         last_seen_at, resolved_at, outcome)
                     SELECT $1, 'care', 'fall_detected', 'critical', 'resolved', $2, $3, d.id, $4,
                            d.id, $4, true, false, $5, $5, $5, $5::timestamptz + interval '20 minutes',
                            'resolved_by_talking'
                       FROM devices d WHERE d.uid = $6",
                    &[
                        &provider.id,
                        &format!("{tag}-{i}-{f}"),
                        &(person as i32),
                        &((i * 10 + f) as i64),
                        &at,
                        &format!("hub-{tag}"),
                    ],
                )
                .await
                .unwrap();
        }
    }
}

async fn contract(
    app: &TestApp,
    council: &auth::Organisation,
    provider: &auth::Organisation,
    reference: &str,
) -> i32 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on)
             VALUES ($1, $2, $3, '2025-01-01') RETURNING id",
            &[&council.id, &provider.id, &reference],
        )
        .await
        .unwrap()
        .get(0)
}

struct World {
    council_token: String,
    council_user: i32,
    other_council_token: String,
    provider_a_token: String,
    provider_a: i32,
    contract_a: i32,
    other_contract: i32,
    /// South Council's provider (Cedar Care).
    other_provider: i32,
}

/// North Council contracts providers A (10 people, 3 falls each in the last quarter) and B
/// (10 people, none); South Council contracts provider C.
async fn world(app: &TestApp) -> World {
    let (council, council_token) = app
        .org_with_user("North Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let (other, other_council_token) = app
        .org_with_user("South Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let (a, provider_a_token) = app
        .org_with_user("Alder Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (b, provider_b_token) = app
        .org_with_user("Birch Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (c, provider_c_token) = app
        .org_with_user("Cedar Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let contract_a = contract(app, &council, &a, "NC-ALDER").await;
    let contract_b = contract(app, &council, &b, "NC-BIRCH").await;
    let other_contract = contract(app, &other, &c, "SC-CEDAR").await;
    serve(app, &a, &provider_a_token, contract_a, "A", 10, 3).await;
    serve(app, &b, &provider_b_token, contract_b, "B", 10, 0).await;
    serve(app, &c, &provider_c_token, other_contract, "C", 3, 1).await;
    let client = app.pool.get().await.unwrap();
    let council_user: i32 = client
        .query_one(
            "SELECT id FROM users WHERE organisation_id = $1",
            &[&council.id],
        )
        .await
        .unwrap()
        .get(0);
    World {
        council_token,
        council_user,
        other_council_token,
        provider_a_token,
        provider_a: a.id,
        contract_a,
        other_contract,
        other_provider: c.id,
    }
}

/// Terms for contract A and a statement issued for the last quarter; its id.
async fn issue_statement(app: &TestApp, w: &World) -> i64 {
    let (s, v) = app
        .request_json(
            Method::PUT,
            &format!("/v1/contracts/{}/terms", w.contract_a),
            &w.council_token,
            Some(&json!({"fixed_plus_outcome": {"fixed_pence": 123_400, "outcome_pence": 0}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, issued) = app
        .request_json(
            Method::POST,
            &format!(
                "/v1/outcomes/statements?provider_id={}&{}",
                w.provider_a,
                quarter_query()
            ),
            &w.council_token,
            None,
        )
        .await;
    assert_eq!(s, 200, "{issued}");
    issued["statements"][0]["statement_id"].as_i64().unwrap()
}

#[tokio::test]
async fn each_party_lists_its_own_contracts_and_the_funnel_is_the_commissioners() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let references = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["reference"].as_str().unwrap().to_owned())
            .collect()
    };
    let (s, page) = app.get_json("/v1/contracts", &w.council_token).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(references(&page), ["NC-ALDER", "NC-BIRCH"]);
    assert_eq!(page["items"][0]["provider_name"], "Alder Care");
    assert_eq!(page["next_after"], Value::Null);
    // A page at a time.
    let (_, first) = app
        .get_json("/v1/contracts?limit=1", &w.council_token)
        .await;
    assert_eq!(references(&first), ["NC-ALDER"]);
    let after = first["next_after"].as_i64().unwrap();
    let (_, second) = app
        .get_json(
            &format!("/v1/contracts?limit=1&after={after}"),
            &w.council_token,
        )
        .await;
    assert_eq!(references(&second), ["NC-BIRCH"]);
    let (_, page) = app.get_json("/v1/contracts", &w.provider_a_token).await;
    assert_eq!(references(&page), ["NC-ALDER"]);
    let (_, page) = app.get_json("/v1/contracts", &w.other_council_token).await;
    assert_eq!(references(&page), ["SC-CEDAR"]);
    let (s, p) = app
        .get_json("/v1/contracts?limit=0", &w.council_token)
        .await;
    assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("limit")));

    // The funnel: A's 30 falls and B's none against their pooled rate.
    let q = quarter_query();
    let (from, to) = last_quarter();
    let days = (to - from).num_days() as f64;
    let (s, f) = app
        .get_json(
            &format!("/v1/outcomes/funnel?indicator=falls&{q}"),
            &w.council_token,
        )
        .await;
    assert_eq!(s, 200, "{f}");
    let providers = f["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 2, "{f}");
    let alder = providers
        .iter()
        .find(|p| p["name"] == "Alder Care")
        .unwrap();
    let birch = providers
        .iter()
        .find(|p| p["name"] == "Birch Care")
        .unwrap();
    assert_eq!(
        (alder["numerator"].as_u64(), birch["numerator"].as_u64()),
        (Some(30), Some(0))
    );
    // 10 people, every day of the quarter.
    assert_eq!(alder["denominator"].as_f64(), Some(10.0 * days));
    assert_eq!(f["target"].as_f64(), Some(30.0 / (20.0 * days)));
    assert_eq!(alder["band"], "above998");
    assert_eq!(birch["band"], "below998");
    assert!(f["curve"].as_array().unwrap().len() > 10);
    // Each provider's figures are its own report's.
    let (s, r) = app
        .get_json(
            &format!("/v1/outcomes/report?scope=provider&id={}&{q}", w.provider_a),
            &w.council_token,
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["indicators"]["falls"]["falls"], alder["numerator"]);
    assert_eq!(r["inputs"]["hash"], alder["input_hash"]);
    // Shares too few to compare say so.
    let (s, f) = app
        .get_json(
            &format!("/v1/outcomes/funnel?indicator=plan_outcomes_on_time&{q}"),
            &w.council_token,
        )
        .await;
    assert_eq!(s, 200, "{f}");
    assert!(f["providers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["band"] == "too_few"));
    assert_eq!(f["target"], Value::Null);
    // Not for providers; a wrong indicator is named.
    let (s, _) = app
        .get_json(
            &format!("/v1/outcomes/funnel?indicator=falls&{q}"),
            &w.provider_a_token,
        )
        .await;
    assert_eq!(s, 403);
    let (s, p) = app
        .get_json(
            &format!("/v1/outcomes/funnel?indicator=smiles&{q}"),
            &w.council_token,
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("indicator"))
    );

    // The person-level export: one row per person served, by pseudonym, no names.
    let export = |token: &str, query: String| {
        let (app, token) = (&app, token.to_owned());
        async move {
            let r = app
                .client
                .get(app.url(&format!("/v1/outcomes/export?{query}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, csv) = export(
        &w.council_token,
        format!("scope=contract&id={}&{q}", w.contract_a),
    )
    .await;
    assert_eq!(s, 200, "{csv}");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("pseudonym,age_band,service_from_month"),
        "{csv}"
    );
    assert_eq!(lines.len(), 11, "a header and ten people: {csv}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(",85+,2025-01,,") && l.contains(",3,0,")),
        "{csv}"
    );
    assert!(!csv.contains("A-0"), "no references: {csv}");
    let client = app.pool.get().await.unwrap();
    let logged: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'person_data.read' AND object_id = 'outcomes_export'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 1);
    // The provider exports its own; nobody exports one person, nor another's contract.
    let (s, own) = export(&w.provider_a_token, q.clone()).await;
    assert_eq!((s, own.lines().count()), (200, 11), "{own}");
    let (s, p) = export(&w.council_token, format!("scope=person&id=1&{q}")).await;
    assert!(s == 422 && p.contains("scope"), "{s} {p}");
    let (s, _) = export(
        &w.other_council_token,
        format!("scope=contract&id={}&{q}", w.contract_a),
    )
    .await;
    assert_eq!(s, 404);

    // An issued statement reads back as issued, for its commissioner only.
    let id = issue_statement(&app, &w).await;
    let (s, st) = app
        .get_json(&format!("/v1/outcomes/statements/{id}"), &w.council_token)
        .await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["statements"].as_array().unwrap().len(), 1);
    assert_eq!(st["statements"][0]["statement_id"], id);
    assert_eq!(st["issued"], true);
    let (s, _) = app
        .get_json(
            &format!("/v1/outcomes/statements/{id}"),
            &w.other_council_token,
        )
        .await;
    assert_eq!(s, 404);
}

/// Gives the commissioner's user an email and password and signs them in.
async fn sign_in_commissioner(app: &TestApp, browser: &Browser, user: i32) {
    let client = app.pool.get().await.unwrap();
    set_user_email(&**client, Scope::Any, user, "officer@north.example")
        .await
        .unwrap();
    let link = issue_password_link(&**client, Scope::Any, user, 72, None)
        .await
        .unwrap();
    browser.open(&link.url(&app.url(""))).await;
    browser.fill("#password", PASSWORD).await;
    browser.fill("#confirmation", PASSWORD).await;
    browser.submit("form.form button[type=submit]").await;
    browser.open(&app.url("/console/sign-in")).await;
    browser.fill("#email", "officer@north.example").await;
    browser.fill("#password", PASSWORD).await;
    browser.submit("form.form button[type=submit]").await;
}

/// How many elements on the page match the CSS selector.
async fn count(browser: &Browser, css: &str) -> u64 {
    browser
        .client
        .execute(
            "return document.querySelectorAll(arguments[0]).length",
            vec![json!(css)],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

/// Scrolls the element matching the CSS selector to the top of the window (for a picture).
async fn scroll_to(browser: &Browser, css: &str) {
    browser
        .client
        .execute(
            "document.querySelector(arguments[0]).scrollIntoView()",
            vec![json!(css)],
        )
        .await
        .unwrap();
}

/// Saves a picture of the page as `<name>.png` in the folder `HOMEWARD_SCREENSHOTS` names, if
/// it names one (for the docs' pictures).
async fn screenshot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("HOMEWARD_SCREENSHOTS") {
        let png = browser.client.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

#[tokio::test]
async fn a_commissioner_sees_its_contracts_charts_and_funnel_and_downloads_a_statement() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let statement = issue_statement(&app, &w).await;
    let browser = Browser::start().await;
    sign_in_commissioner(&app, &browser, w.council_user).await;

    // Outcomes is in the navigation; the list has this council's contracts only.
    browser.open(&app.url("/console/")).await;
    browser.click("nav a[href='/console/outcomes']").await;
    let list = browser.text("main").await;
    assert!(
        list.contains("NC-ALDER") && list.contains("NC-BIRCH"),
        "{list}"
    );
    assert!(!list.contains("SC-CEDAR"), "{list}");

    // A contract's page: a chart per indicator, each with the table of its figures.
    browser
        .click(&format!(
            "a[href='/console/outcomes/contracts/{}']",
            w.contract_a
        ))
        .await;
    assert_eq!(count(&browser, "svg.chart").await, 4);
    // The provider's visit exceptions (this world has no visits).
    let exceptions = browser
        .text("section[aria-labelledby='visits-heading']")
        .await;
    assert!(
        exceptions.contains("Visit exceptions, last 31 days") && exceptions.contains("None"),
        "{exceptions}"
    );
    let falls = browser.text("#falls-caption").await;
    assert!(falls.contains("Falls"), "{falls}");
    let falls = browser
        .text("section[aria-labelledby='falls-heading'] tbody")
        .await;
    let days = (last_quarter().1 - last_quarter().0).num_days();
    assert!(
        falls.contains(&format!("30 falls in {} days", 10 * days)),
        "{falls}"
    );
    assert!(
        falls.contains(&format!("{:.2}", 30_000.0 / (10 * days) as f64)),
        "{falls}"
    );
    scroll_to(&browser, "#falls-heading").await;
    screenshot(&browser, "commissioner-contract").await;

    // The provider across the council's contracts with it: here the one contract, so the
    // same figures.
    browser.open(&app.url("/console/outcomes")).await;
    browser
        .click(&format!(
            "a[href='/console/outcomes/providers/{}']",
            w.provider_a
        ))
        .await;
    assert!(browser.text("h1").await.contains("Outcomes of Alder Care"));
    assert_eq!(count(&browser, "svg.chart").await, 4);
    assert!(browser.text("main ul").await.contains("NC-ALDER"));
    let across = browser
        .text("section[aria-labelledby='falls-heading'] tbody")
        .await;
    assert_eq!(across, falls, "the provider's figures are the contract's");
    browser
        .open(&app.url(&format!("/console/outcomes/contracts/{}", w.contract_a)))
        .await;

    // The statement downloads as CSV, with the session.
    let link = browser
        .find(&format!(
            "a[href='/console/outcomes/statements/{statement}.csv']"
        ))
        .await;
    let href = link.attr("href").await.unwrap().unwrap();
    let cookie = browser
        .client
        .get_all_cookies()
        .await
        .unwrap()
        .iter()
        .find(|c| c.name() == homeward::console::SESSION_COOKIE)
        .map(|c| format!("{}={}", c.name(), c.value()))
        .unwrap();
    let response = reqwest::Client::new()
        .get(app.url(&href))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = response.text().await.unwrap();
    assert!(
        csv.starts_with("contract_id,reference,code,description,quantity,amount_pence,kind"),
        "{csv}"
    );
    assert!(csv.contains("NC-ALDER") && csv.contains("123400"), "{csv}");

    // The funnel plot: both providers as numbered points, A above the limits, B below.
    browser.open(&app.url("/console/outcomes")).await;
    browser.click("a[href='/console/outcomes/funnel']").await;
    assert_eq!(count(&browser, "svg.chart circle.point").await, 2);
    assert_eq!(count(&browser, "svg.chart polyline").await, 4);
    let table = browser.text("#providers-caption").await;
    assert!(table.contains("Falls"), "{table}");
    let rows = browser.text("table tbody").await;
    assert!(
        rows.contains("Alder Care") && rows.contains("above the 99.8% limit"),
        "{rows}"
    );
    assert!(
        rows.contains("Birch Care") && rows.contains("below the 99.8% limit"),
        "{rows}"
    );
    scroll_to(&browser, "#funnel-heading").await;
    screenshot(&browser, "funnel").await;
    // Another indicator, through the form.
    browser
        .find("#indicator")
        .await
        .select_by_value("short_term_outcome")
        .await
        .unwrap();
    browser.submit(".filters button[type=submit]").await;
    assert!(browser.url().await.contains("indicator=short_term_outcome"));
    let page = browser.text("main").await;
    assert!(page.contains("nothing to compare"), "{page}");

    // Another council's contract and statement are pages that do not exist.
    for path in [
        format!("/console/outcomes/contracts/{}", w.other_contract),
        "/console/outcomes/contracts/not-a-number".to_owned(),
        format!("/console/outcomes/providers/{}", w.other_provider),
        "/console/outcomes/providers/not-a-number".to_owned(),
    ] {
        browser.open(&app.url(&path)).await;
        let text = browser.text("main").await;
        assert!(text.contains("Page not found"), "{path}: {text}");
    }
    let other = reqwest::Client::new()
        .get(app.url(&format!(
            "/console/outcomes/statements/{}.csv",
            statement + 1000
        )))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    // At phone width the pages fit the screen.
    browser.close().await;
    let phone = Browser::start_sized(360, 800).await;
    sign_in_commissioner(&app, &phone, w.council_user).await;
    for path in [
        format!("/console/outcomes/contracts/{}", w.contract_a),
        format!("/console/outcomes/providers/{}", w.provider_a),
        "/console/outcomes/funnel".to_owned(),
    ] {
        phone.open(&app.url(&path)).await;
        let fits = phone
            .client
            .execute(
                "return document.documentElement.scrollWidth <= document.documentElement.clientWidth",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, Value::Bool(true), "{path} is wider than 360 px");
    }
    phone.close().await;
}

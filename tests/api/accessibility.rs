//! The automated accessibility check of the console's main pages: axe-core's WCAG 2.0, 2.1
//! and 2.2 A and AA rules (`homeward_testkit::axe`) run in a real headless Chromium on each
//! page, at desktop width and at 360 px, with no serious or critical finding allowed; at
//! 360 px each page must also fit without sideways scrolling.
//!
//! The pages are a list ([`pages`]): each names who opens it (someone not signed in, a
//! provider's admin, or an officer of the council contracting it), the words its heading must contain, so a check never passes on a sign-in
//! or error page reached by mistake, and how to reach it: an address (`at`), or steps (open,
//! type, submit; `page`). A page added later is one more line there.

use std::time::Duration;

use homeward::auth::password::{issue_password_link, set_password_with_link, set_user_email};
use homeward::auth::{self, OrgKind, Role, Scope};
use homeward_proto::{EventBody, Percent};
use homeward_testkit::browser::Browser;
use homeward_testkit::mqtt::TestDevice;
use homeward_testkit::{eventually, spawn_app, TestApp};
use serde_json::{json, Value};

use crate::confirmations::issue_link;
use crate::confirmations_browser::{agreed_plan, AgreedPlan};

const PASSWORD: &str = "an accessibility password for tests";
const ADMIN_EMAIL: &str = "admin@oak.example";
const COMMISSIONER_EMAIL: &str = "officer@elm.example";

/// Who opens a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Someone not signed in (the sign-in page, a set-password link, the person confirming).
    Visitor,
    /// The provider's admin, who may open every page of the provider's console.
    Admin,
    /// An officer of the council contracting the provider (the outcome pages).
    Commissioner,
}

/// One step on the way to a page.
enum Step {
    /// Opens the path.
    Open(String),
    /// Types into the field matching the CSS selector.
    Fill(&'static str, String),
    /// Clicks the button matching the CSS selector and waits for the page it leads to.
    Submit(&'static str),
}

/// A page to check: who opens it, how, and what its `h1` says.
struct Page {
    name: &'static str,
    who: Who,
    heading: String,
    steps: Vec<Step>,
}

/// A page reached by opening `path`.
fn at(name: &'static str, who: Who, heading: impl Into<String>, path: impl Into<String>) -> Page {
    page(name, who, heading, vec![Step::Open(path.into())])
}

/// A page reached by `steps`.
fn page(name: &'static str, who: Who, heading: impl Into<String>, steps: Vec<Step>) -> Page {
    Page {
        name,
        who,
        heading: heading.into(),
        steps,
    }
}

/// What the pages show: a provider with an admin, another user, people with devices and
/// alarms in every list of the board, and a plan whose outcomes the person confirms.
struct World {
    /// The user whose page the admin opens (and makes set-password links for).
    colleague: i32,
    /// A set-password link of a third user, never used.
    set_password_path: String,
    /// An open fall (a long lie), an on-site pendant alarm, a resolved fall.
    long_lie: i64,
    on_site: i64,
    plan: AgreedPlan,
    /// The council's contract with the provider.
    contract: i32,
    /// The provider's organisation.
    provider: i32,
    /// The person wearing the fall detector that became a long lie.
    person: i32,
    /// A visit to them the office entered.
    visit: i64,
}

/// The pages checked, reached afresh (each call issues new confirmation links, as answering
/// one uses it up). Add a page here.
async fn pages(app: &TestApp, w: &World) -> Vec<Page> {
    use Step::{Fill, Open, Submit};
    use Who::{Admin, Commissioner, Visitor};
    let (link, _, _) = issue_link(app, &w.plan.provider, w.plan.plan, w.plan.outcomes[0]).await;
    let (_, _, code) = issue_link(app, &w.plan.provider, w.plan.plan, w.plan.outcomes[1]).await;
    let yes = "button[name=answer][value=yes]";
    let go = "form button[type=submit]";
    let (user, alarm) = (w.colleague, |id| format!("/console/alarms/{id}"));
    let contract = format!("/console/outcomes/contracts/{}", w.contract);
    let (long_lie, on_site) = (
        format!("Alarm {}", w.long_lie),
        format!("Alarm {}", w.on_site),
    );
    let answer = vec![
        Open(link.clone()),
        Fill("#feedback", "I did".into()),
        Submit(yes),
    ];
    let wrong_code = vec![
        Open("/confirm".into()),
        Fill("#code", "AAAAA-AAAAA".into()),
        Submit(go),
    ];
    let by_code = vec![Open("/confirm".into()), Fill("#code", code), Submit(go)];
    let make_link = vec![
        Open(format!("/console/users/{user}")),
        Submit("form[action$='/password-link'] button"),
    ];
    // One page a line (rustfmt would spread each over several).
    #[rustfmt::skip]
    let pages = vec![
        at("sign-in", Visitor, "Sign in", "/console/sign-in"),
        at("set-password", Visitor, "Set your password", &w.set_password_path),
        at("confirmation question (link)", Visitor, "Can you do this now?", &link),
        page("confirmation thank-you", Visitor, "Thank you", answer),
        at("confirmation link used", Visitor, "already been used", &link),
        at("confirmation link unknown", Visitor, "cannot find", "/confirm/no-such"),
        at("confirmation code", Visitor, "Enter your code", "/confirm"),
        page("confirmation code wrong", Visitor, "Enter your code", wrong_code),
        page("confirmation question (code)", Visitor, "Can you do this now?", by_code),
        at("home", Admin, "Oak Care", "/console/"),
        at("users", Admin, "Users", "/console/users"),
        at("user", Admin, "Colin Colleague", format!("/console/users/{user}")),
        page("set-password link made", Admin, "Set-password link for", make_link),
        at("alarm board", Admin, "Alarm board", "/console/alarms"),
        at("alarm (long lie)", Admin, long_lie, alarm(w.long_lie)),
        at("alarm (on site)", Admin, on_site, alarm(w.on_site)),
        at("page not found", Admin, "Page not found", "/console/no-such-page"),
        at("people", Admin, "People", "/console/people"),
        at("person", Admin, "Mary Example", format!("/console/people/{}", w.person)),
        at("devices", Admin, "Devices", "/console/devices"),
        at("device", Admin, "Device oak-fall-1", "/console/devices/oak-fall-1"),
        at("visits today", Admin, "Visits today", "/console/visits"),
        at("visit", Admin, format!("Visit {}", w.visit), format!("/console/visits/{}", w.visit)),
        at("dead letters", Admin, "Dead letters", "/console/dead-letters"),
        at("outcomes (provider)", Admin, "Outcomes", "/console/outcomes"),
        at("contract (provider)", Admin, "Contract EC-OAK", contract.clone()),
        at("outcomes (commissioner)", Commissioner, "Outcomes", "/console/outcomes"),
        at("contract (commissioner)", Commissioner, "Contract EC-OAK", contract),
        at("provider's outcomes (commissioner)", Commissioner, "Outcomes of Oak Care", format!("/console/outcomes/providers/{}", w.provider)),
        at("providers compared", Commissioner, "Providers compared", "/console/outcomes/funnel"),
        at("plans to agree (provider)", Admin, "Plans to agree", "/console/outcomes/plans?awaiting=agreement"),
        at("plans to verify (commissioner)", Commissioner, "Plans to agree", "/console/outcomes/plans?awaiting=verification"),
    ];
    pages
}

/// A user of `role` in the organisation, with an email address; returns their id.
async fn user(app: &TestApp, org: &auth::Organisation, name: &str, email: &str, role: Role) -> i32 {
    let client = app.pool.get().await.unwrap();
    let (id, _) = auth::create_user(&**client, org, name, role).await.unwrap();
    set_user_email(&**client, Scope::Any, id, email)
        .await
        .unwrap();
    id
}

/// A person wearing device `uid` of `kind`; the device, connected.
async fn person_with(
    app: &TestApp,
    org: &auth::Organisation,
    name: &str,
    uid: &str,
    kind: &str,
) -> TestDevice {
    let secret = app.device(org, uid, kind).await;
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "WITH p AS (INSERT INTO people (organisation_id, external_ref, display_name, area, home_phone)
                        VALUES ($1, $2, $3, 'North', '+441632960001') RETURNING id)
             UPDATE devices SET person_id = (SELECT id FROM p) WHERE uid = $4",
            &[&org.id, &format!("ref-{uid}"), &name, &uid],
        )
        .await
        .unwrap();
    TestDevice::connect(app, uid, &secret).await
}

/// Waits until the list at `path` has `n` alarms; returns the newest one's id (the highest).
async fn alarm_number(app: &TestApp, token: &str, path: &str, n: usize) -> i64 {
    eventually(Duration::from_secs(10), || async {
        let list = app.get_ok(path, token).await;
        let alarms = list["items"].as_array().cloned().unwrap_or_default();
        (alarms.len() == n).then(|| {
            alarms
                .iter()
                .map(|a| a["id"].as_i64().unwrap())
                .max()
                .unwrap()
        })
    })
    .await
    .unwrap_or_else(|| panic!("{n} alarms at {path}"))
}

async fn act(app: &TestApp, token: &str, id: i64, actions: &[&str]) {
    for action in actions {
        let body = if *action == "resolve" {
            json!({"outcome": "responder_attended_no_injury"})
        } else {
            Value::Null
        };
        let (s, b) = app
            .post_json(&format!("/v1/alarms/{id}/{action}"), token, &body)
            .await;
        assert_eq!(s, 200, "{action} {id}: {b}");
    }
}

/// A fall that becomes a long lie, a pendant alarm attended on site, a fall resolved, and a
/// low battery: every list of the board, every kind of card. Returns (long lie, on site).
async fn alarms(app: &TestApp, org: &auth::Organisation) -> (i64, i64) {
    let token = app.user(org, "Oak machine", Role::ProviderStaff).await;
    let mut fall = person_with(app, org, "Mary Example", "oak-fall-1", "fall_detector").await;
    let mut pendant = person_with(app, org, "John Example", "oak-pendant-1", "pendant").await;
    let mut other = person_with(app, org, "Ann Example", "oak-fall-2", "fall_detector").await;
    fall.send(EventBody::FallDetected {
        confidence: Percent::new(92).unwrap(),
    })
    .await;
    let long_lie = alarm_number(app, &token, "/v1/alarms", 1).await;
    pendant.send(EventBody::PendantAlarm).await;
    let on_site = alarm_number(app, &token, "/v1/alarms", 2).await;
    act(app, &token, on_site, &["acknowledge", "dispatch", "arrive"]).await;
    other
        .send(EventBody::FallDetected {
            confidence: Percent::new(88).unwrap(),
        })
        .await;
    let resolved = alarm_number(app, &token, "/v1/alarms", 3).await;
    act(
        app,
        &token,
        resolved,
        &["acknowledge", "dispatch", "arrive", "resolve"],
    )
    .await;
    pendant
        .send(EventBody::BatteryLow {
            battery: Percent::new(9).unwrap(),
        })
        .await;
    alarm_number(app, &token, "/v1/technical-alarms", 1).await;
    // The periodic check, with a clock an hour after the fall.
    let raised_at: chrono::DateTime<chrono::Utc> =
        app.get_ok(&format!("/v1/alarms/{long_lie}"), &token).await["alarm"]["raised_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let rules = homeward::alarms::derive::Rules::from(&homeward::alarms::AlarmSettings::default());
    let hub = homeward::live::LiveHub::default();
    homeward::alarms::run_sweep(
        &app.pool,
        &rules,
        &hub,
        raised_at + chrono::Duration::minutes(61),
    )
    .await
    .unwrap();
    let alarm = app.get_ok(&format!("/v1/alarms/{long_lie}"), &token).await;
    assert_eq!(alarm["alarm"]["long_lie"], json!(true), "{alarm}");
    (long_lie, on_site)
}

/// The provider, its users (the admin with a password), the alarms and the plan.
async fn world(app: &TestApp) -> World {
    let org = app.organisation("Oak Care", OrgKind::Provider).await;
    let admin = user(app, &org, "Ada Admin", ADMIN_EMAIL, Role::ProviderAdmin).await;
    let colleague = user(
        app,
        &org,
        "Colin Colleague",
        "colin@oak.example",
        Role::ProviderStaff,
    )
    .await;
    let newcomer = user(
        app,
        &org,
        "Nia Newcomer",
        "nia@oak.example",
        Role::Responder,
    )
    .await;
    let client = app.pool.get().await.unwrap();
    let link = issue_password_link(&**client, Scope::Any, admin, 72, None)
        .await
        .unwrap();
    set_password_with_link(&app.pool, &link.token, PASSWORD)
        .await
        .unwrap()
        .unwrap();
    let link = issue_password_link(&**client, Scope::Any, newcomer, 72, None)
        .await
        .unwrap();
    let set_password_path = link.url("");

    let (long_lie, on_site) = alarms(app, &org).await;
    let (person, visit) = office_visit(app, &org).await;
    let council = app.organisation("Elm Council", OrgKind::Commissioner).await;
    let officer = user(
        app,
        &council,
        "Cleo Council",
        COMMISSIONER_EMAIL,
        Role::Commissioner,
    )
    .await;
    let link = issue_password_link(&**client, Scope::Any, officer, 72, None)
        .await
        .unwrap();
    set_password_with_link(&app.pool, &link.token, PASSWORD)
        .await
        .unwrap()
        .unwrap();
    let contract: i32 = client
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on)
             VALUES ($1, $2, 'EC-OAK', '2025-01-01') RETURNING id",
            &[&council.id, &org.id],
        )
        .await
        .unwrap()
        .get(0);
    let plan = agreed_plan(
        app,
        &["I can get dressed by myself", "I can cook a hot meal"],
    )
    .await;
    World {
        colleague,
        set_password_path,
        long_lie,
        on_site,
        plan,
        contract,
        provider: org.id,
        person,
        visit,
    }
}

/// A visit to the person wearing `oak-fall-1` this morning, entered by the office (scheduled,
/// then recorded by hand); returns (person, visit).
async fn office_visit(app: &TestApp, org: &auth::Organisation) -> (i32, i64) {
    let token = app.user(org, "Oak office", Role::ProviderStaff).await;
    let client = app.pool.get().await.unwrap();
    let person: i32 = client
        .query_one(
            "SELECT person_id FROM devices WHERE uid = 'oak-fall-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let start = chrono::Utc::now() - chrono::Duration::minutes(90);
    let end = start + chrono::Duration::minutes(30);
    let (s, scheduled) = app
        .post_json(
            "/v1/scheduled-visits",
            &token,
            &json!({"reference": "V-OAK-1", "person_id": person, "window_start": start,
                    "window_end": end, "service_type": "personal_care"}),
        )
        .await;
    assert_eq!(s, 201, "{scheduled}");
    let (s, manual) = app
        .post_json(
            "/v1/visits/manual",
            &token,
            &json!({"scheduled_visit_id": scheduled["id"], "start": start, "end": end,
                    "reason_code": "office_entry", "memo": "paper timesheet"}),
        )
        .await;
    assert_eq!(s, 201, "{manual}");
    (person, manual["visit_id"].as_i64().unwrap())
}

// TODO(lead): use console_kit
async fn sign_in(browser: &Browser, app: &TestApp, email: &str) {
    browser.open(&app.url("/console/sign-in")).await;
    browser.fill("#email", email).await;
    browser.fill("#password", PASSWORD).await;
    browser.submit("form.form button[type=submit]").await;
    assert_eq!(browser.url().await, app.url("/console/"), "signed in");
}

/// Follows `page`'s steps in `browser`, signed in as whoever it needs, or signed out
/// (`signed_in` says who is now).
async fn reach(browser: &Browser, app: &TestApp, page: &Page, signed_in: &mut Who) {
    if page.who != *signed_in {
        browser.client.delete_all_cookies().await.unwrap();
        match page.who {
            Who::Admin => sign_in(browser, app, ADMIN_EMAIL).await,
            Who::Commissioner => sign_in(browser, app, COMMISSIONER_EMAIL).await,
            Who::Visitor => {}
        }
        *signed_in = page.who;
    }
    for step in &page.steps {
        match step {
            Step::Open(path) => browser.open(&app.url(path)).await,
            Step::Fill(css, value) => browser.fill(css, value).await,
            Step::Submit(css) => browser.submit(css).await,
        }
    }
    let heading = browser.text("h1").await;
    assert!(
        heading.contains(&page.heading),
        "{}: the heading is {heading:?}, not {:?} ({})",
        page.name,
        page.heading,
        browser.url().await
    );
}

/// Checks every page of [`pages`] in a browser `width` px wide; fails after the last page,
/// naming every page that did not pass.
async fn check_pages(width: u32) {
    let app = spawn_app().await;
    let w = world(&app).await;
    let browser = Browser::start_sized(width, 900).await;
    let mut signed_in = Who::Visitor;
    let mut failed = Vec::new();
    for page in pages(&app, &w).await {
        reach(&browser, &app, &page, &mut signed_in).await;
        let what = format!("{} at {width} px", page.name);
        if let Some(problem) = browser.accessibility_problems(&what).await {
            failed.push(problem);
        }
        if width <= 400 && browser.scrolls_sideways().await {
            failed.push(format!(
                "{what}: scrolls sideways ({})",
                browser.sideways_culprits().await
            ));
        }
        // axe ran although the page's own policy refuses inline scripts, as served.
        assert!(
            !browser.runs_inline_script().await,
            "{what}: an inline script ran"
        );
    }
    let inner = browser
        .client
        .execute("return window.innerWidth", vec![])
        .await
        .unwrap();
    assert_eq!(inner, json!(width), "the pages were seen {width} px wide");
    browser.close().await;
    app.stop().await;
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[tokio::test]
async fn the_main_pages_have_no_serious_accessibility_findings_at_desktop_width() {
    check_pages(1280).await;
}

#[tokio::test]
async fn the_main_pages_have_no_serious_accessibility_findings_at_360_px() {
    check_pages(360).await;
}

/// The check itself finds what it must: a page without a language, with a field without a
/// label and faint text is reported, serious findings named with their elements; a page too
/// wide scrolls sideways; with no policy, an inline script runs.
#[tokio::test]
async fn the_accessibility_check_reports_a_missing_label_language_and_contrast() {
    let browser = Browser::start_sized(800, 600).await;
    browser
        .open(
            "data:text/html,<!doctype html><html><head><title>Bad</title></head><body><main>\
             <h1>A bad page</h1><p style='color:%23bbb'>Faint words</p>\
             <input type='text' id='nameless'><div style='width:2000px'>Wide</div></main></body></html>",
        )
        .await;
    let found = browser.axe().await;
    let mut ids: Vec<&str> = found.iter().map(|v| v.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["color-contrast", "html-has-lang", "label"],
        "{found:?}"
    );
    assert!(found.iter().all(|v| v.is_serious()), "{found:?}");
    let label = found.iter().find(|v| v.id == "label").unwrap();
    assert_eq!(label.nodes[0].target, "#nameless");
    let report = browser
        .accessibility_problems("the bad page")
        .await
        .expect("serious findings are a problem");
    assert!(
        report.contains("3 serious or critical") && report.contains("Faint words"),
        "{report}"
    );
    // The page checks' other two measures see what they must: a page wider than the window,
    // and an inline script where no policy forbids it.
    assert!(browser.scrolls_sideways().await);
    assert!(browser.runs_inline_script().await);
    browser.close().await;
}

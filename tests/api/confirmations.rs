//! Outcome inputs the paid provider does not control alone: a plan outcome counts only when
//! the person confirms it through their own one-time link or code (dated by that answer, never
//! by a typed date) and the council verifies it; outcome records are corrected and withdrawn
//! as new versions, seen by reports from the moment they are recorded and not before; the
//! commissioner records and verifies records of the people it funds, and no other tenant can.

use chrono::{DateTime, Utc};
use homeward::auth::{Caller, OrgKind, Role};
use homeward::outcomes::measures::Period;
use homeward::outcomes::report::{load_scope, Scope};
use homeward::outcomes::OutcomeSettings;
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// Issues a link for an outcome as `token`'s holder: (path, token, code).
pub async fn issue_link(
    app: &TestApp,
    token: &str,
    plan: i64,
    outcome: i64,
) -> (String, String, String) {
    let (s, l) = app
        .post_json(
            &format!("/v1/outcome-plans/{plan}/outcomes/{outcome}/confirmation-links"),
            token,
            &json!({}),
        )
        .await;
    assert_eq!(s, 201, "{l}");
    (
        l["path"].as_str().unwrap().to_string(),
        l["token"].as_str().unwrap().to_string(),
        l["code"].as_str().unwrap().to_string(),
    )
}

/// A form post as the person's browser sends it: (status, page).
pub async fn post_form(app: &TestApp, path: &str, form: &str) -> (u16, String) {
    let r = app
        .client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// (status, JSON) of a request without credentials: a link is its own credential.
async fn anon(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (s, text) = app.request_text(method, path, None, body).await;
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn get_page(app: &TestApp, path: &str) -> (u16, String) {
    let r = app.get(path, None).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The whole flow for one outcome: staff issue a link, the person answers "yes" on their
/// page, the council verifies.
pub async fn confirm_and_verify(
    app: &TestApp,
    provider: &str,
    council: &str,
    plan: i64,
    outcome: i64,
) {
    let (path, _, _) = issue_link(app, provider, plan, outcome).await;
    let (s, page) = post_form(app, &path, "answer=yes").await;
    assert_eq!(s, 200, "{page}");
    verify(app, council, plan, outcome, 201).await;
}

pub async fn verify(app: &TestApp, token: &str, plan: i64, outcome: i64, expect: u16) -> Value {
    let (s, p) = app
        .post_json(
            &format!("/v1/outcome-plans/{plan}/outcomes/{outcome}/verify"),
            token,
            &json!({"verdict": "verified", "note": "checked with the person by phone"}),
        )
        .await;
    assert_eq!(s, expect, "{p}");
    p
}

/// Dates the person's answer to `outcome` back to `at`, as if given then (the table refuses
/// updates; a test steps around that to place the answer inside a past period).
pub async fn date_confirmation(app: &TestApp, outcome: i64, at: &str) {
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute(&format!(
            "ALTER TABLE plan_outcome_confirmations DISABLE TRIGGER plan_outcome_confirmations_append_only;
             UPDATE plan_outcome_confirmations SET confirmed_at = '{at}' WHERE outcome_id = {outcome};
             ALTER TABLE plan_outcome_confirmations ENABLE TRIGGER plan_outcome_confirmations_append_only;"
        ))
        .await
        .unwrap();
}

pub(crate) struct World {
    pub(crate) provider: String,
    pub(crate) council: String,
    other_council: String,
    other_provider: String,
    provider_id: i32,
    provider_user: i32,
    pub(crate) contract: i32,
    pub(crate) person: i64,
}

/// A provider, its council's contract since 2025, one person served under it; another council
/// and another provider.
pub(crate) async fn world(app: &TestApp) -> World {
    let (provider, provider_token) = app
        .org_with_user("Reable Ltd", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (council, council_token) = app
        .org_with_user("Shire Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let (_, other_council) = app
        .org_with_user("Other Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let (_, other_provider) = app
        .org_with_user("Other Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let client = app.pool.get().await.unwrap();
    let contract: i32 = client
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on) VALUES ($1, $2, 'R-1', '2025-01-01') RETURNING id",
            &[&council.id, &provider.id],
        )
        .await
        .unwrap()
        .get(0);
    let provider_user: i32 = client
        .query_one(
            "SELECT id FROM users WHERE organisation_id = $1",
            &[&provider.id],
        )
        .await
        .unwrap()
        .get(0);
    let p = app
        .request_ok(
            Method::POST,
            "/v1/people",
            &provider_token,
            Some(&json!({"external_ref": "P1", "date_of_birth": "1945-06-01"})),
        )
        .await;
    let person = p["id"].as_i64().unwrap();
    app.request_ok(
        Method::POST,
        "/v1/outcomes/service-periods",
        &provider_token,
        Some(&json!({"person_id": person, "contract_id": contract, "started_on": "2025-01-01"})),
    )
    .await;
    World {
        provider: provider_token,
        council: council_token,
        other_council,
        other_provider,
        provider_id: provider.id,
        provider_user,
        contract,
        person,
    }
}

const Q: &str = "from=2026-01-01&to=2026-04-01&as_of=2026-05-01";

/// The `plan_outcomes_achieved` line of the council's statement for the provider.
async fn paid_for_outcomes(app: &TestApp, w: &World) -> i64 {
    let (s, st) = app
        .get_json(
            &format!("/v1/outcomes/statements?provider_id={}&{Q}", w.provider_id),
            &w.council,
        )
        .await;
    assert_eq!(s, 200, "{st}");
    st["statements"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["code"] == "plan_outcomes_achieved")
        .unwrap()["amount_pence"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn only_the_persons_answer_verified_by_the_council_is_achieved_and_paid() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let t = &w.provider;
    // £900, three payable outcomes due 1 March: each is a third of the £720 balance.
    let (s, plan) = app.post_json("/v1/outcome-plans", t, &json!({
        "person_id": w.person, "contract_id": w.contract, "starts_on": "2026-01-05", "ends_on": "2026-03-31", "value_pence": 90000,
        "outcomes": [
            {"statement": "I can cook a meal <for myself> & my \"friend\"", "kind": "reablement", "payable": true, "target_date": "2026-03-01"},
            {"statement": "I can use the bath without help", "kind": "reablement", "payable": true, "target_date": "2026-03-01"},
            {"statement": "I can get to the shop", "kind": "maintenance", "payable": true, "target_date": "2026-03-01"}
        ]})).await;
    assert_eq!(s, 201, "{plan}");
    let plan_id = plan["id"].as_i64().unwrap();
    let o: Vec<i64> = plan["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    // No link before the plan is agreed by all three.
    let (s, _) = app
        .post_json(
            &format!(
                "/v1/outcome-plans/{plan_id}/outcomes/{}/confirmation-links",
                o[0]
            ),
            t,
            &json!({}),
        )
        .await;
    assert_eq!(s, 409);
    for (token, party) in [(t, "person"), (t, "provider"), (&w.council, "council")] {
        app.request_ok(
            Method::POST,
            &format!("/v1/outcome-plans/{plan_id}/agree"),
            token,
            Some(&json!({"party": party})),
        )
        .await;
    }
    let client = app.pool.get().await.unwrap();
    client.execute("UPDATE outcome_plans SET agreed_by_person_at = '2026-01-10T12:00:00Z', agreed_by_provider_at = '2026-01-10T12:00:00Z', agreed_by_council_at = '2026-01-10T12:00:00Z' WHERE id = $1", &[&plan_id]).await.unwrap();
    // Who agreed is kept with when.
    let p = app
        .get_ok(&format!("/v1/outcome-plans/{plan_id}"), &w.council)
        .await;
    assert_eq!(p["agreements"]["provider"]["user_id"], w.provider_user);
    assert_eq!(
        p["agreements"]["provider"]["organisation_id"],
        w.provider_id
    );
    assert!(p["agreements"]["council"]["user_id"].is_i64());
    let terms = json!({"plan_upfront": {"upfront_bp": 2000}});
    app.request_ok(
        Method::PUT,
        &format!("/v1/contracts/{}/terms", w.contract),
        &w.council,
        Some(&terms),
    )
    .await;

    // There is no way to type an achievement or its date: the old route is gone, and an
    // answer carrying a date is refused.
    let (s, _) = app
        .post_json(
            &format!("/v1/outcome-plans/{plan_id}/outcomes/{}/achieve", o[0]),
            t,
            &json!({"achieved_on": "2026-02-01", "confirmed_by_person": true}),
        )
        .await;
    assert_eq!(s, 404);
    let (path, token, _) = issue_link(&app, t, plan_id, o[0]).await;
    assert_eq!(path, format!("/confirm/{token}"));
    let (s, _) = anon(
        &app,
        Method::POST,
        &format!("/v1/confirmations/{token}"),
        Some(&json!({"answer": "yes", "achieved_on": "2026-02-01"})),
    )
    .await;
    assert_eq!(s, 400);
    // Only the hash is stored.
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM plan_confirmation_links l
              WHERE l.token_hash = sha256(convert_to($1, 'UTF8'))
                AND strpos(to_jsonb(l)::text, $1) = 0",
            &[&token],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);

    // The person's page: their words (escaped), the two answers, labelled, no script.
    let (s, page) = get_page(&app, &path).await;
    assert_eq!(s, 200);
    assert!(
        page.contains("I can cook a meal &lt;for myself&gt; &amp; my &quot;friend&quot;"),
        "{page}"
    );
    assert!(page.contains("Yes, I can do this now") && page.contains("Not yet"));
    assert!(page.contains("<label for=\"feedback\">") && page.contains("lang=\"en\""));
    assert!(page.contains("width=device-width") && !page.contains("<script"));
    // Used once: the second answer is refused and says so.
    let (s, page) = post_form(&app, &path, "answer=yes&feedback=Made+soup+today").await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Thank you"));
    let (s, page) = post_form(&app, &path, "answer=not_yet").await;
    assert_eq!(s, 410);
    assert!(page.contains("already been used"), "{page}");
    let (s, page) = get_page(&app, &path).await;
    assert_eq!((s, page.contains("already been used")), (410, true));
    let (s, c) = anon(
        &app,
        Method::POST,
        &format!("/v1/confirmations/{token}"),
        Some(&json!({"answer": "not_yet"})),
    )
    .await;
    assert_eq!(s, 409, "{c}");
    let (s, c) = anon(
        &app,
        Method::GET,
        &format!("/v1/confirmations/{token}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(c["status"], "used");
    assert_eq!(c["answer"], "yes");
    assert_eq!(c["achieved_on"], Utc::now().date_naive().to_string());
    let answers: i64 = client
        .query_one(
            "SELECT count(*) FROM plan_outcome_confirmations WHERE outcome_id = $1",
            &[&o[0]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(answers, 1);
    // Answered "now": date it into the period, as if the person had answered on 1 February.
    date_confirmation(&app, o[0], "2026-02-01T12:00:00Z").await;

    // Confirmed by the person, not yet verified by the council: not achieved, not paid.
    let (_, r) = app
        .get_json(&format!("/v1/outcomes/report?scope=provider&{Q}"), t)
        .await;
    assert_eq!(r["indicators"]["outcome_plans"]["early"]["numerator"], 0);
    assert_eq!(
        r["indicators"]["outcome_plans"]["not_achieved"]["numerator"],
        3
    );
    assert_eq!(paid_for_outcomes(&app, &w).await, 0);
    let unverified_report = r["report_id"].as_i64().unwrap();
    // The provider cannot verify; another council cannot either.
    let (s, _) = app
        .post_json(
            &format!("/v1/outcome-plans/{plan_id}/outcomes/{}/verify", o[0]),
            t,
            &json!({"verdict": "verified"}),
        )
        .await;
    assert_eq!(s, 403);
    verify(&app, &w.other_council, plan_id, o[0], 404).await;
    // Nothing to verify where the person has not answered.
    verify(&app, &w.council, plan_id, o[2], 409).await;
    let p = verify(&app, &w.council, plan_id, o[0], 201).await;
    assert_eq!(p["outcomes"][0]["achieved_on"], "2026-02-01");
    assert_eq!(p["outcomes"][0]["verified"], true);
    assert_eq!(
        p["outcomes"][0]["confirmations"][0]["feedback"],
        "Made soup today"
    );
    let (_, r) = app
        .get_json(&format!("/v1/outcomes/report?scope=provider&{Q}"), t)
        .await;
    assert_eq!(r["indicators"]["outcome_plans"]["early"]["numerator"], 1);
    assert_eq!(paid_for_outcomes(&app, &w).await, 24_000);
    // Restating the report made before the verdict names the verdict as what changed it.
    let (s, re) = app
        .post_json(
            &format!("/v1/outcomes/reports/{unverified_report}/restatements"),
            t,
            &json!({}),
        )
        .await;
    assert_eq!(s, 201, "{re}");
    assert_eq!(re["indicators"]["outcome_plans"]["early"]["numerator"], 1);
    let since = re["restatement"]["recorded_since"].as_array().unwrap();
    assert!(
        since
            .iter()
            .any(|a| a["source"] == "plan_outcome_verifications"
                && a["change"] == "verified"
                && a["record_id"] == o[0]
                && a["reason"] == "checked with the person by phone"),
        "{since:?}"
    );
    // No second link for an outcome the person has confirmed.
    let (s, _) = app
        .post_json(
            &format!(
                "/v1/outcome-plans/{plan_id}/outcomes/{}/confirmation-links",
                o[0]
            ),
            t,
            &json!({}),
        )
        .await;
    assert_eq!(s, 409);

    // The council issues a code; the person types it (any case, spaces) and says "not yet":
    // recorded, not achieved, and the council has nothing to verify.
    let (_, _, code) = issue_link(&app, &w.council, plan_id, o[1]).await;
    assert_eq!(code.len(), 11, "{code}");
    let (s, page) = get_page(&app, "/confirm").await;
    assert_eq!(s, 200);
    assert!(page.contains("<label for=\"code\">"));
    let typed = format!("code={}", code.to_lowercase().replace('-', "+"));
    let (s, page) = post_form(&app, "/confirm", &typed).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("I can use the bath without help"), "{page}");
    let (s, page) = post_form(&app, "/confirm", &format!("{typed}&answer=not_yet")).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("cannot do this yet"));
    verify(&app, &w.council, plan_id, o[1], 409).await;
    let (s, page) = post_form(&app, "/confirm", "code=AAAAA-AAAAA").await;
    assert_eq!(s, 404);
    assert!(page.contains("cannot find this code"));

    // An expired link says so, on the page and in JSON, and records nothing.
    let (path, token, _) = issue_link(&app, t, plan_id, o[2]).await;
    client
        .batch_execute(
            "ALTER TABLE plan_confirmation_links DISABLE TRIGGER plan_confirmation_links_append_only;
             UPDATE plan_confirmation_links SET issued_at = now() - interval '15 days', expires_at = now() - interval '1 day'
              WHERE id = (SELECT max(id) FROM plan_confirmation_links);
             ALTER TABLE plan_confirmation_links ENABLE TRIGGER plan_confirmation_links_append_only;",
        )
        .await
        .unwrap();
    let (s, page) = get_page(&app, &path).await;
    assert_eq!(s, 410);
    assert!(page.contains("This link has expired"), "{page}");
    let (s, page) = post_form(&app, &path, "answer=yes").await;
    assert_eq!((s, page.contains("has expired")), (410, true));
    let (s, c) = anon(
        &app,
        Method::POST,
        &format!("/v1/confirmations/{token}"),
        Some(&json!({"answer": "yes"})),
    )
    .await;
    assert_eq!(s, 409);
    assert!(
        c["detail"].as_str().unwrap_or_default().contains("expired"),
        "{c}"
    );
    let answers: i64 = client
        .query_one(
            "SELECT count(*) FROM plan_outcome_confirmations WHERE outcome_id = $1",
            &[&o[2]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(answers, 0);
    // Another provider cannot issue links for this plan.
    let (s, _) = app
        .post_json(
            &format!(
                "/v1/outcome-plans/{plan_id}/outcomes/{}/confirmation-links",
                o[2]
            ),
            &w.other_provider,
            &json!({}),
        )
        .await;
    assert_eq!(s, 404);
    app.stop().await;
}

/// The provider's admin as a caller, for reading through the report loaders directly.
fn provider_caller(w: &World) -> Caller {
    Caller {
        token_id: None,
        user_id: w.provider_user,
        user_name: "Reable Ltd user".into(),
        organisation_id: w.provider_id,
        organisation_kind: OrgKind::Provider,
        role: Role::ProviderAdmin,
        request_id: None,
    }
}

/// The stays of the one person as the report loaders read them at `known_at`.
async fn stays_known_at(app: &TestApp, w: &World, known_at: DateTime<Utc>) -> Vec<String> {
    let client = app.pool.get().await.unwrap();
    let p = Period {
        from: "2026-01-01".parse().unwrap(),
        to: "2026-04-01".parse().unwrap(),
        as_of: "2026-05-01".parse().unwrap(),
        known_at,
    };
    let loaded = load_scope(
        &**client,
        &provider_caller(w),
        Scope::Provider(w.provider_id),
        &p,
        &OutcomeSettings::default(),
    )
    .await
    .unwrap();
    loaded
        .inputs
        .people
        .iter()
        .flat_map(|x| x.stays.iter().map(|s| s.1.to_string()))
        .collect()
}

/// A moment strictly between two recorded rows.
async fn moment() -> DateTime<Utc> {
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let t = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    t
}

#[tokio::test]
async fn corrections_are_new_versions_seen_from_when_they_are_recorded() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let t = &w.provider;
    let (s, stay) = app
        .post_json(
            "/v1/outcomes/hospital-stays",
            t,
            &json!({"person_id": w.person, "admitted_on": "2026-02-01"}),
        )
        .await;
    assert_eq!(s, 201);
    let stay = stay["id"].as_i64().unwrap();
    let first_version = stay;
    let before = moment().await;
    let url = |what: &str| format!("/v1/outcomes/hospital-stays/{stay}/{what}");

    // Checked as creation is: the same rules, named inside `record`; a reason is required.
    let (s, p) = app
        .post_json(&url("corrections"), t, &json!({"reason": "wrong day", "record": {
            "person_id": w.person, "admitted_on": "2026-02-03", "discharged_on": "2026-02-02", "discharge_destination": "home"}}))
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("record.discharged_on")),
        "{p}"
    );
    let (s, p) = app
        .post_json(
            &url("corrections"),
            t,
            &json!({"reason": " ", "record": {"person_id": w.person, "admitted_on": "2026-02-03"}}),
        )
        .await;
    assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("reason")));
    let (s, _) = app
        .post_json(
            &url("corrections"),
            t,
            &json!({"record": {"person_id": w.person, "admitted_on": "2026-02-03"}}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, p) = app
        .post_json(&url("corrections"), t, &json!({"reason": "x", "record": {"person_id": w.person + 1000, "admitted_on": "2026-02-03"}}))
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("record.person_id"))
    );
    // Another provider, or a council that does not fund the person: as if it did not exist.
    let (s, _) = app
        .post_json(
            &url("corrections"),
            &w.other_provider,
            &json!({"reason": "x", "record": {"person_id": w.person, "admitted_on": "2026-02-03"}}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post_json(&url("withdraw"), &w.other_council, &json!({"reason": "x"}))
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post_json(
            &url("verify"),
            &w.other_council,
            &json!({"verdict": "disputed"}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post_json(&url("verify"), t, &json!({"verdict": "verified"}))
        .await;
    assert_eq!(s, 403);

    // The correction: a new version; the report as known before it still reads the old.
    let (s, v) = app
        .post_json(
            &url("corrections"),
            t,
            &json!({"reason": "typed the wrong day", "version": first_version,
            "record": {"person_id": w.person, "admitted_on": "2026-02-03"}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["id"], stay);
    let second_version = v["version"].as_i64().unwrap();
    assert_ne!(second_version, first_version);
    let after_correction = moment().await;
    assert_eq!(stays_known_at(&app, &w, before).await, ["2026-02-01"]);
    assert_eq!(
        stays_known_at(&app, &w, after_correction).await,
        ["2026-02-03"]
    );
    // Correcting a version that is no longer the newest: 409.
    let (s, _) = app
        .post_json(
            &url("corrections"),
            t,
            &json!({"reason": "again", "version": first_version,
            "record": {"person_id": w.person, "admitted_on": "2026-02-04"}}),
        )
        .await;
    assert_eq!(s, 409);
    // Two corrections of the same version at once: one wins, the other 409.
    let body = |day: &str| {
        json!({"reason": "race", "version": second_version,
               "record": {"person_id": w.person, "admitted_on": day}})
    };
    let (b1, b2) = (body("2026-02-05"), body("2026-02-06"));
    let (u1, u2) = (url("corrections"), url("corrections"));
    let (r1, r2) = tokio::join!(app.post_json(&u1, t, &b1), app.post_json(&u2, t, &b2));
    let mut statuses = [r1.0, r2.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{} / {}", r1.1, r2.1);

    // The funding council verifies the newest version; the report's input summary says so.
    let (s, v) = app
        .post_json(
            &url("verify"),
            &w.council,
            &json!({"verdict": "verified", "note": "hospital discharge letter"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, r) = app
        .get_json(&format!("/v1/outcomes/report?scope=provider&{Q}"), t)
        .await;
    let stays = &r["inputs"]["provenance"]["hospital_stays"];
    assert_eq!(stays["recorded_by_provider"], 1, "{r}");
    assert_eq!(stays["verified"], 1);

    // The council records a death itself; only the council corrects it.
    let (s, _) = app
        .post_json(
            "/v1/outcomes/deaths",
            &w.other_council,
            &json!({"person_id": w.person, "died_on": "2026-03-20"}),
        )
        .await;
    assert_eq!(s, 422);
    let (s, d) = app
        .post_json(
            "/v1/outcomes/deaths",
            &w.council,
            &json!({"person_id": w.person, "died_on": "2026-03-20"}),
        )
        .await;
    assert_eq!(s, 201, "{d}");
    let (s, _) = app
        .post_json(
            &format!("/v1/outcomes/deaths/{}/corrections", w.person),
            t,
            &json!({"reason": "x", "record": {"person_id": w.person, "died_on": "2026-03-21"}}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .post_json(
            &format!("/v1/outcomes/deaths/{}/corrections", w.person),
            &w.council,
            &json!({"reason": "registrar's date", "record": {"person_id": w.person, "died_on": "2026-03-21"}}),
        )
        .await;
    assert_eq!(s, 201);
    // The council does not record service periods or falls: it verifies them.
    let (s, _) = app
        .post_json(
            "/v1/outcomes/recorded-falls",
            &w.council,
            &json!({"person_id": w.person, "occurred_on": "2026-01-01", "source": "GP"}),
        )
        .await;
    assert_eq!(s, 403);
    // A fall from records cannot be in the future.
    let tomorrow = (Utc::now().date_naive() + chrono::Duration::days(1)).to_string();
    let (s, p) = app
        .post_json(
            "/v1/outcomes/recorded-falls",
            t,
            &json!({"person_id": w.person, "occurred_on": tomorrow, "source": "GP"}),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("occurred_on"))
    );

    // Withdrawn: gone from reports as known after, kept in those as known before.
    let before_withdrawal = moment().await;
    let (s, _) = app
        .post_json(
            &url("withdraw"),
            t,
            &json!({"reason": "another person's stay"}),
        )
        .await;
    assert_eq!(s, 201);
    let after_withdrawal = moment().await;
    assert_eq!(stays_known_at(&app, &w, before_withdrawal).await.len(), 1);
    assert!(stays_known_at(&app, &w, after_withdrawal).await.is_empty());
    assert_eq!(stays_known_at(&app, &w, before).await, ["2026-02-01"]);
    let (s, _) = app
        .post_json(&url("withdraw"), t, &json!({"reason": "again"}))
        .await;
    assert_eq!(s, 409);

    // Every kind corrects and withdraws with all its fields: an episode with its end and
    // follow-up, a care-home stay with its end (recorded by the council).
    let (s, ep) = app
        .post_json(
            "/v1/outcomes/reablement-episodes",
            t,
            &json!({"person_id": w.person, "contract_id": w.contract, "started_on": "2026-01-10", "existing_client": true}),
        )
        .await;
    assert_eq!(s, 201, "{ep}");
    let ep = ep["id"].as_i64().unwrap();
    let (s, v) = app
        .post_json(
            &format!("/v1/outcomes/reablement-episodes/{ep}/corrections"),
            t,
            &json!({"reason": "end and follow-up were on paper", "record": {
                "person_id": w.person, "contract_id": w.contract, "started_on": "2026-01-10", "existing_client": true,
                "ended_on": "2026-02-10", "result": "universal_services",
                "follow_up_on": "2026-05-12", "follow_up": "at_home"}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, p) = app
        .post_json(
            &format!("/v1/outcomes/reablement-episodes/{ep}/corrections"),
            t,
            &json!({"reason": "x", "record": {"person_id": w.person, "started_on": "2026-01-10",
                "follow_up_on": "2026-01-01", "follow_up": "at_home"}}),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("record.follow_up_on"))
    );
    let (s, ch) = app
        .post_json(
            "/v1/outcomes/care-home-admissions",
            &w.council,
            &json!({"person_id": w.person, "admitted_on": "2026-03-01", "setting": "nursing", "permanent": false}),
        )
        .await;
    assert_eq!(s, 201, "{ch}");
    let ch = ch["id"].as_i64().unwrap();
    let (s, _) = app
        .post_json(
            &format!("/v1/outcomes/care-home-admissions/{ch}/discharge"),
            &w.council,
            &json!({"discharged_on": "2026-03-10", "returned_home": true}),
        )
        .await;
    assert_eq!(s, 200);
    for (kind, id, token) in [
        ("reablement-episodes", ep, t),
        ("care-home-admissions", ch, &w.council),
    ] {
        let (s, v) = app
            .post_json(
                &format!("/v1/outcomes/{kind}/{id}/withdraw"),
                token,
                &json!({"reason": "test"}),
            )
            .await;
        assert_eq!(s, 201, "{kind}: {v}");
    }
    let client = app.pool.get().await.unwrap();
    let kept: (i64, i64) = {
        let r = client
            .query_one(
                "SELECT (SELECT count(*) FROM reablement_episodes WHERE record_id = $1 AND withdrawn
                          AND existing_client AND follow_up = 'at_home' AND result = 'universal_services'),
                        (SELECT count(*) FROM care_home_admissions WHERE record_id = $2 AND withdrawn
                          AND returned_home AND discharged_on = '2026-03-10' AND recorder = 'commissioner')",
                &[&ep, &ch],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        kept,
        (1, 1),
        "a withdrawal copies every field of the version it replaces"
    );

    // The person's records: current versions, and the whole history on request.
    let e = app
        .get_ok(&format!("/v1/outcomes/people/{}/episodes", w.person), t)
        .await;
    assert!(e["hospital_stays"].as_array().unwrap().is_empty(), "{e}");
    assert_eq!(e["deaths"][0]["died_on"], "2026-03-21");
    assert_eq!(e["deaths"][0]["recorder"], "commissioner");
    let h = app
        .get_ok(
            &format!("/v1/outcomes/people/{}/episodes?history=true", w.person),
            t,
        )
        .await;
    let versions = h["hospital_stays"].as_array().unwrap();
    // First, corrected, the race's winner, withdrawn.
    assert_eq!(versions.len(), 4, "{h}");
    assert_eq!(versions[0]["corrects"], Value::Null);
    assert_eq!(versions[1]["reason"], "typed the wrong day");
    assert_eq!(versions[2]["verification"]["verdict"], "verified");
    assert_eq!(versions[3]["withdrawn"], true);
    assert!(versions.iter().all(|v| v["record_id"] == stay));
    // The rows themselves refuse change.
    assert!(client
        .execute(
            "UPDATE outcome_record_verifications SET verdict = 'disputed'",
            &[]
        )
        .await
        .is_err());
    app.stop().await;
}

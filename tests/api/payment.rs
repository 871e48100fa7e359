//! Payment over HTTP: contract terms kept as versions (history, the version valid on a
//! statement's first day, periods over a change refused), statements previewed (nothing
//! recorded) and issued into the payment ledger, so overlapping statements never pay twice.

use homeward::auth::{OrgKind, Role};
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

struct World {
    provider_token: String,
    council_token: String,
    provider_id: i32,
    contract_id: i32,
    person: i64,
}

/// A provider, a council contracting it since 2025-01-01, one person served under the contract.
async fn world(app: &TestApp) -> World {
    let (provider, provider_token) = app
        .org_with_user("Pay Care Ltd", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (council, council_token) = app
        .org_with_user("Pay Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let client = app.pool.get().await.unwrap();
    let contract_id: i32 = client
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on) VALUES ($1, $2, 'PAY-1', '2025-01-01') RETURNING id",
            &[&council.id, &provider.id],
        )
        .await
        .unwrap()
        .get(0);
    let (s, p) = app
        .post_json(
            "/v1/people",
            &provider_token,
            &json!({"external_ref": "PAY-P1", "date_of_birth": "1945-06-01"}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let person = p["id"].as_i64().unwrap();
    let (s, b) = app
        .post_json(
            "/v1/outcomes/service-periods",
            &provider_token,
            &json!({"person_id": person, "contract_id": contract_id, "started_on": "2025-01-01"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    World {
        provider_token,
        council_token,
        provider_id: provider.id,
        contract_id,
        person,
    }
}

/// A reablement episode under the contract, ended on `ended_on`; its record id.
async fn episode(app: &TestApp, w: &World, started_on: &str, ended_on: &str) -> i64 {
    let (s, ep) = app
        .post_json(
            "/v1/outcomes/reablement-episodes",
            &w.provider_token,
            &json!({"person_id": w.person, "contract_id": w.contract_id, "started_on": started_on}),
        )
        .await;
    assert_eq!(s, 201, "{ep}");
    let id = ep["id"].as_i64().unwrap();
    let (s, b) = app
        .post_json(
            &format!("/v1/outcomes/reablement-episodes/{id}/end"),
            &w.provider_token,
            &json!({"ended_on": ended_on, "result": "no_further_support"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    id
}

fn line(st: &Value, code: &str) -> i64 {
    st["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["code"] == code)
        .unwrap_or_else(|| panic!("no line {code}: {st}"))["amount_pence"]
        .as_i64()
        .unwrap()
}

fn left_out(st: &Value) -> Vec<String> {
    st["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn terms_are_versioned_and_statements_pay_once() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let terms_url = format!("/v1/contracts/{}/terms", w.contract_id);
    let put = |terms: Value, valid_from: Option<&str>| {
        let url = match valid_from {
            Some(d) => format!("{terms_url}?valid_from={d}"),
            None => terms_url.clone(),
        };
        let token = w.council_token.clone();
        let app = &app;
        async move {
            app.request_json(Method::PUT, &url, &token, Some(&terms))
                .await
        }
    };

    // Version 1: from the contract's start (the first terms default to it).
    let v1 = json!({
        "fixed_plus_outcome": {"fixed_pence": 100_000, "outcome_pence": 0},
        "reablement": {"per_episode_pence": 150_000, "no_further_support_bonus_pence": 0},
        "missed_visit_penalty_pence": 2_000
    });
    let (s, v) = put(v1.clone(), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["version"], &v["valid_from"], &v["terms"]),
        (&json!(1), &json!("2025-01-01"), &v1)
    );
    assert!(v["set_by_user_id"].is_i64());
    assert!(v["set_by_organisation_id"].is_i64());
    // Not before the newest version's start; the provider cannot set terms.
    let (s, p) = put(json!({}), Some("2024-12-31")).await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("valid_from"))
    );
    let (s, _) = app
        .request_json(Method::PUT, &terms_url, &w.provider_token, Some(&json!({})))
        .await;
    assert_eq!(s, 403);
    // Version 2 from 1 April 2026: a higher episode price.
    let v2 = json!({
        "fixed_plus_outcome": {"fixed_pence": 100_000, "outcome_pence": 0},
        "reablement": {"per_episode_pence": 200_000, "no_further_support_bonus_pence": 0}
    });
    let (s, v) = put(v2.clone(), Some("2026-04-01")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], 2);

    // The current version (valid today) for both parties; the history keeps version 1 as set.
    for token in [&w.council_token, &w.provider_token] {
        let (s, cur) = app.get_json(&terms_url, token).await;
        assert_eq!(s, 200, "{cur}");
        assert_eq!((&cur["version"], &cur["terms"]), (&json!(2), &v2));
    }
    let (s, h) = app
        .get_json(&format!("{terms_url}?history=true"), &w.provider_token)
        .await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["current"], 2);
    let versions = h["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        (&versions[0]["version"], &versions[0]["terms"]),
        (&json!(1), &v1)
    );
    assert_eq!(versions[1]["valid_from"], "2026-04-01");

    // Q1 2026: an episode ended in February and a visit of 10 February missed.
    let ep1 = episode(&app, &w, "2026-01-10", "2026-02-10").await;
    let (s, sv) = app
        .post_json(
            "/v1/scheduled-visits",
            &w.provider_token,
            &json!({"reference": "PAY-V1", "person_id": w.person, "window_start": "2026-02-10T09:00:00Z",
                    "window_end": "2026-02-10T10:00:00Z", "service_type": "personal_care"}),
        )
        .await;
    assert_eq!(s, 201, "{sv}");
    let q1 = "from=2026-01-01&to=2026-04-01&as_of=2026-05-01";
    let statements = |q: &str| format!("/v1/outcomes/statements?provider_id={}&{q}", w.provider_id);

    // The preview names the terms version, the confidence level and the reference rates,
    // and records nothing.
    let (s, pv) = app.get_json(&statements(q1), &w.council_token).await;
    assert_eq!(s, 200, "{pv}");
    assert_eq!(
        (&pv["preview"], &pv["issued"]),
        (&json!(true), &json!(false))
    );
    let st = &pv["statements"][0];
    assert_eq!(st["terms_version"]["version"], 1);
    assert_eq!(st["terms_version"]["valid_from"], "2025-01-01");
    assert_eq!(st["confidence_level"], 0.95);
    // The terms' reference rates (none here): the avoided figures' comparison without a cohort.
    assert!(st["reference_rates"].is_null(), "{st}");
    assert_eq!(line(st, "fixed"), 100_000);
    assert_eq!(line(st, "reablement_episodes"), 150_000);
    assert_eq!(line(st, "missed_visit_penalty"), -2_000);
    assert_eq!(st["total_pence"], 100_000 + 150_000 - 2_000);
    assert_eq!(count(&app, "payment_statements").await, 0);
    assert_eq!(count(&app, "payment_ledger").await, 0);

    // A period over which the terms change is refused, naming the day.
    let (s, p) = app
        .get_json(
            &statements("from=2026-03-01&to=2026-05-01&as_of=2026-06-01"),
            &w.council_token,
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("to")),
        "{p}"
    );
    assert!(p.to_string().contains("2026-04-01"), "{p}");

    // Only the commissioner issues.
    let (s, _) = app
        .request_json(Method::POST, &statements(q1), &w.provider_token, None)
        .await;
    assert_eq!(s, 403);
    let (s, first) = app
        .request_json(Method::POST, &statements(q1), &w.council_token, None)
        .await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["issued"], true);
    let st = &first["statements"][0];
    let first_id = st["statement_id"].as_i64().unwrap();
    assert_eq!(st["total_pence"], 248_000);
    assert_eq!(st["terms_version"]["version"], 1);
    assert_eq!(count(&app, "payment_statements").await, 1);

    // The same quarter again pays nothing, and says what it left out and why.
    let (s, again) = app
        .request_json(Method::POST, &statements(q1), &w.council_token, None)
        .await;
    assert_eq!(s, 200, "{again}");
    let st = &again["statements"][0];
    assert_eq!(st["total_pence"], 0, "{st}");
    let keys = left_out(st);
    assert!(keys.contains(&format!("episode/{ep1}/price")), "{keys:?}");
    assert!(keys.contains(&"period/fixed/2026-01-01/2026-04-01".to_string()));
    assert!(keys.iter().any(|k| k.ends_with("/missed_penalty")));
    assert!(st["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["statement_id"] == first_id));

    // The CSV preview lists what it leaves out, and why, apart from what it pays.
    let r = app
        .get(
            &format!("{}&format=csv", statements(q1)),
            Some(&w.council_token),
        )
        .await;
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("contract_id,reference,code,description,quantity,amount_pence,kind"));
    assert!(
        csv.lines().any(|l| l.contains(&format!(
            "episode/{ep1}/price: already in statement {first_id}"
        )) && l.ends_with(",150000,left_out")),
        "{csv}"
    );
    assert!(csv.contains(",fixed,"), "{csv}");

    // An episode ended in March, recorded since: February to March pays it alone (the fixed
    // sum of an overlapping period was paid).
    let ep2 = episode(&app, &w, "2026-02-01", "2026-03-15").await;
    let (s, later) = app
        .request_json(
            Method::POST,
            &statements("from=2026-02-01&to=2026-04-01&as_of=2026-05-01"),
            &w.council_token,
            None,
        )
        .await;
    assert_eq!(s, 200, "{later}");
    let st = &later["statements"][0];
    assert_eq!(st["total_pence"], 150_000, "{st}");
    assert_eq!(
        st["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["code"] == "reablement_episodes")
            .unwrap()["items"][0]["key"],
        format!("episode/{ep2}/price")
    );
    assert!(left_out(st).contains(&"period/fixed/2026-02-01/2026-04-01".to_string()));

    // Q2 prices with version 2; the preview after it still records nothing.
    let ep3 = episode(&app, &w, "2026-04-01", "2026-05-01").await;
    let q2 = "from=2026-04-01&to=2026-07-01&as_of=2026-08-01";
    let ledger = count(&app, "payment_ledger").await;
    let (s, pv) = app.get_json(&statements(q2), &w.provider_token).await;
    assert_eq!(s, 200, "{pv}");
    assert_eq!(count(&app, "payment_ledger").await, ledger);
    let (s, q2st) = app
        .request_json(Method::POST, &statements(q2), &w.council_token, None)
        .await;
    assert_eq!(s, 200, "{q2st}");
    let st = &q2st["statements"][0];
    assert_eq!(st["terms_version"]["version"], 2);
    assert_eq!(line(st, "reablement_episodes"), 200_000);
    assert_eq!(
        st["lines"][2]["items"][0]["key"],
        format!("episode/{ep3}/price")
    );
    assert_eq!(st["total_pence"], 100_000 + 200_000);
    // The issued figures are stored as the report.
    let (s, stored) = app
        .get_json(
            &format!("/v1/outcomes/reports/{}", q2st["report_id"]),
            &w.council_token,
        )
        .await;
    assert_eq!(s, 200, "{stored}");
    assert_eq!(
        stored["figures"]["statements"][0]["statement_id"],
        st["statement_id"]
    );

    // A new version cannot reach back into an issued period.
    let (s, p) = put(v2.clone(), Some("2026-05-01")).await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("valid_from")),
        "{p}"
    );
    assert!(p.to_string().contains("2026-07-01"), "{p}");
    let (s, v) = put(v2, Some("2026-07-01")).await;
    assert_eq!((s, &v["version"]), (200, &json!(3)));
    app.stop().await;
}

/// The missed-visit penalty counts required visits with no visit started and not cancelled
/// before they were due, of people funded under the contract on the visit's day.
#[tokio::test]
async fn missed_visits_are_those_neither_started_nor_cancelled_in_time() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let t = &w.provider_token;
    let (s, _) = app
        .request_json(
            Method::PUT,
            &format!("/v1/contracts/{}/terms", w.contract_id),
            &w.council_token,
            Some(&json!({"missed_visit_penalty_pence": 1_000})),
        )
        .await;
    assert_eq!(s, 200);
    // A second person, funded under the contract from 1 March only.
    let (s, p) = app
        .post_json(
            "/v1/people",
            t,
            &json!({"external_ref": "PAY-P2", "date_of_birth": "1950-01-01"}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let late_funded = p["id"].as_i64().unwrap();
    let (s, b) = app
        .post_json(
            "/v1/outcomes/service-periods",
            t,
            &json!({"person_id": late_funded, "contract_id": w.contract_id, "started_on": "2026-03-01"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let mut ids = Vec::new();
    for (reference, person, day) in [
        ("PAY-M1", w.person, "2026-02-10"),    // missed
        ("PAY-M2", w.person, "2026-02-11"),    // cancelled before it was due
        ("PAY-M3", w.person, "2026-02-12"),    // cancelled after it was due: still missed
        ("PAY-M4", w.person, "2026-02-13"),    // started (late, by the office): not missed
        ("PAY-M5", w.person, "2026-04-02"),    // after the period
        ("PAY-M6", late_funded, "2026-02-14"), // not yet funded under the contract
        ("PAY-M7", late_funded, "2026-03-02"), // missed
    ] {
        let (s, v) = app
            .post_json(
                "/v1/scheduled-visits",
                t,
                &json!({"reference": reference, "person_id": person,
                        "window_start": format!("{day}T09:00:00Z"), "window_end": format!("{day}T10:00:00Z"),
                        "service_type": "personal_care"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE scheduled_visits SET cancelled_at = '2026-02-01T00:00:00Z', cancel_reason = 'in hospital' WHERE id = $1",
            &[&ids[1]],
        )
        .await
        .unwrap();
    let (s, b) = app
        .post_json(
            &format!("/v1/scheduled-visits/{}/cancel", ids[2]),
            t,
            &json!({"reason": "in hospital"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app
        .post_json(
            "/v1/visits/manual",
            t,
            &json!({"scheduled_visit_id": ids[3], "start": "2026-02-13T11:00:00Z", "end": "2026-02-13T11:30:00Z",
                    "reason_code": "office_entry", "memo": "paper timesheet"}),
        )
        .await;
    assert!((200..300).contains(&s), "{b}");

    let (s, st) = app
        .get_json(
            &format!(
                "/v1/outcomes/statements?provider_id={}&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
                w.provider_id
            ),
            &w.council_token,
        )
        .await;
    assert_eq!(s, 200, "{st}");
    let st = &st["statements"][0];
    let missed = st["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["code"] == "missed_visit_penalty")
        .unwrap();
    let keys: Vec<&str> = missed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    let want: Vec<String> = [ids[0], ids[2], ids[6]]
        .iter()
        .map(|id| format!("scheduled_visit/{id}/missed_penalty"))
        .collect();
    assert_eq!(keys, want, "{missed}");
    assert_eq!(missed["amount_pence"], -3_000);
    app.stop().await;
}

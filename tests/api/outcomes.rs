//! Outcomes end to end: episodes and plans over HTTP, indicators for a provider and a
//! commissioner (pseudonymised, tenant-filtered), reproducible reports, CSV and JSON exports,
//! payment statements from contract terms; and a timed run over 10,000 people (ignored: a
//! benchmark, not a test; docs/benchmarks.md).

use homeward::auth::{OrgKind, Role};
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

struct World {
    provider_token: String,
    council_token: String,
    provider_id: i32,
    contract_id: i64,
    people: Vec<i64>,
}

/// A provider, a council contracting it, three people aged 80 served since 2025-01-01.
async fn world(app: &TestApp) -> World {
    let (provider, provider_token) = app
        .org_with_user("Reable Ltd", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (council, council_token) = app
        .org_with_user("Shire Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let client = app.pool.get().await.unwrap();
    let contract_id: i32 = client
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on) VALUES ($1, $2, 'R-1', '2025-01-01') RETURNING id",
            &[&council.id, &provider.id],
        )
        .await
        .unwrap()
        .get(0);
    let mut people = Vec::new();
    for i in 0..3 {
        let (s, p) = app
            .post_json(
                "/v1/people",
                &provider_token,
                &json!({"external_ref": format!("P{i}"), "date_of_birth": "1945-06-01"}),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        let id = p["id"].as_i64().unwrap();
        let (s, b) = app
            .post_json(
                "/v1/outcomes/service-periods",
                &provider_token,
                &json!({"person_id": id, "contract_id": contract_id, "started_on": "2025-01-01"}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        people.push(id);
    }
    World {
        provider_token,
        council_token,
        provider_id: provider.id,
        contract_id: i64::from(contract_id),
        people,
    }
}

#[tokio::test]
async fn episodes_plans_report_and_statement() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let t = &w.provider_token;
    let (a, b, c) = (w.people[0], w.people[1], w.people[2]);

    // A: admitted 2026-01-05, discharged into reablement 2026-01-15, ends with no further
    // support; at home on day 91. B: discharged into reablement 2026-01-20, permanent care home
    // 2026-03-01 (so not at home). C: a payable plan.
    let (s, stay) = app
        .post_json(
            "/v1/outcomes/hospital-stays",
            t,
            &json!({"person_id": a, "admitted_on": "2026-01-05"}),
        )
        .await;
    assert_eq!(s, 201, "{stay}");
    let stay_a = stay["id"].as_i64().unwrap();
    let (s, _) = app.post_json(&format!("/v1/outcomes/hospital-stays/{stay_a}/discharge"), t, &json!({"discharged_on": "2026-01-15", "discharge_destination": "home_with_reablement"}))
    .await;
    assert_eq!(s, 200);
    let (s, ep) = app.post_json("/v1/outcomes/reablement-episodes", t, &json!({"person_id": a, "contract_id": w.contract_id, "hospital_stay_id": stay_a, "started_on": "2026-01-15"})).await;
    assert_eq!(s, 201, "{ep}");
    let ep_a = ep["id"].as_i64().unwrap();
    let (s, _) = app
        .post_json(
            &format!("/v1/outcomes/reablement-episodes/{ep_a}/end"),
            t,
            &json!({"ended_on": "2026-02-20", "result": "no_further_support"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, stay) = app.post_json("/v1/outcomes/hospital-stays", t, &json!({"person_id": b, "admitted_on": "2026-01-10", "discharged_on": "2026-01-20", "discharge_destination": "home_with_reablement"})).await;
    assert_eq!(s, 201);
    let (s, ep) = app.post_json("/v1/outcomes/reablement-episodes", t, &json!({"person_id": b, "contract_id": w.contract_id, "hospital_stay_id": stay["id"], "started_on": "2026-01-20"})).await;
    assert_eq!(s, 201);
    let (s, _) = app
        .post_json(
            &format!("/v1/outcomes/reablement-episodes/{}/end", ep["id"]),
            t,
            &json!({"ended_on": "2026-02-25", "result": "residential_care"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app.post_json("/v1/outcomes/care-home-admissions", t, &json!({"person_id": b, "admitted_on": "2026-03-01", "setting": "residential", "permanent": true})).await;
    assert_eq!(s, 201);
    let (s, _) = app
        .post_json(
            "/v1/outcomes/recorded-falls",
            t,
            &json!({"person_id": c, "occurred_on": "2024-10-01", "source": "GP record"}),
        )
        .await;
    assert_eq!(s, 201);

    // Validation names the field.
    let (s, p) = app
        .post_json(
            "/v1/outcomes/reablement-episodes/999999/end",
            t,
            &json!({"ended_on": "2026-02-20", "result": "cured"}),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(p["errors"][0]["field"], "result");
    let (s, p) = app.post_json("/v1/outcome-plans", t, &json!({"person_id": c, "starts_on": "2026-01-01", "ends_on": "2026-09-01", "outcomes": []}))
    .await;
    assert_eq!(s, 422);
    assert_eq!(p["errors"][0]["field"], "ends_on");
    let (s, p) = app.post_json("/v1/outcome-plans", t, &json!({"person_id": c, "starts_on": "2026-01-01", "ends_on": "2026-03-31",
        "outcomes": [{"statement": "Cook a meal", "kind": "reablement", "payable": true, "target_date": "2026-03-01"}]})).await;
    assert_eq!(s, 422);
    assert_eq!(p["errors"][0]["field"], "outcomes[0].statement");

    // The plan: £1,000, three payable outcomes.
    let (s, plan) = app.post_json("/v1/outcome-plans", t, &json!({
        "person_id": c, "contract_id": w.contract_id, "starts_on": "2026-01-05", "ends_on": "2026-03-31", "value_pence": 100000,
        "outcomes": [
            {"statement": "I can cook a meal for myself", "kind": "reablement", "payable": true, "target_date": "2026-03-01"},
            {"statement": "I can use the bath without help", "kind": "reablement", "payable": true, "target_date": "2026-03-01"},
            {"statement": "I can get to the shop", "kind": "maintenance", "payable": true, "target_date": "2026-03-15"}
        ]})).await;
    assert_eq!(s, 201, "{plan}");
    let plan_id = plan["id"].as_i64().unwrap();
    let o: Vec<i64> = plan["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    // Not achievable before all three agree; the council agrees through its own credential.
    let (s, _) = app
        .post_json(
            &format!("/v1/outcome-plans/{plan_id}/outcomes/{}/achieve", o[0]),
            t,
            &json!({"achieved_on": "2026-02-01", "confirmed_by_person": true}),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = app
        .post_json(
            &format!("/v1/outcome-plans/{plan_id}/agree"),
            t,
            &json!({"party": "council"}),
        )
        .await;
    assert_eq!(s, 403);
    for (token, party) in [
        (t, "person"),
        (t, "provider"),
        (&w.council_token, "council"),
    ] {
        let (s, p) = app
            .post_json(
                &format!("/v1/outcome-plans/{plan_id}/agree"),
                token,
                &json!({"party": party}),
            )
            .await;
        assert_eq!(s, 200, "{p}");
    }
    let (s, p) = app
        .post_json(
            &format!("/v1/outcome-plans/{plan_id}/outcomes/{}/achieve", o[0]),
            t,
            &json!({"achieved_on": "2026-02-01", "confirmed_by_person": false}),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("confirmed_by_person"))
    );
    for (id, on) in [(o[0], "2026-02-01"), (o[1], "2026-03-01")] {
        let (s, p) = app
            .post_json(
                &format!("/v1/outcome-plans/{plan_id}/outcomes/{id}/achieve"),
                t,
                &json!({"achieved_on": on, "confirmed_by_person": true}),
            )
            .await;
        assert_eq!(s, 200, "{p}");
    }
    let (s, p) = app
        .get_json(&format!("/v1/outcome-plans/{plan_id}"), &w.council_token)
        .await;
    assert_eq!(s, 200);
    assert_eq!(p["agreed"], true);
    assert!(p["person_pseudonym"].as_str().unwrap().starts_with('P'));

    // A fall with a long lie, conveyed to hospital, from the alarms table.
    let client = app.pool.get().await.unwrap();
    let dev: i32 = client.query_one("INSERT INTO devices (organisation_id, uid, kind, person_id, secret_hash) VALUES ($1, 'pend-c', 'pendant', $2, $3) RETURNING id",
        &[&w.provider_id, &(c as i32), &vec![0u8; 32]]).await.unwrap().get(0);
    client.execute("INSERT INTO alarms (organisation_id, category, kind, severity, state, fold_key, person_id, source_device_id, source_seq, last_device_id, last_seq, is_fall, long_lie, raised_at, received_at, last_seen_at, resolved_at, outcome)
        VALUES ($1, 'care', 'fall_detected', 'critical', 'resolved', 'p1', $2, $3, 1, $3, 1, true, true, '2026-02-10T10:00:00Z', '2026-02-10T10:00:00Z', '2026-02-10T10:00:00Z', '2026-02-10T11:30:00Z', 'conveyed_to_hospital')",
        &[&w.provider_id, &(c as i32), &dev]).await.unwrap();

    // Population for the per-100,000 measure.
    let (s, _) = app
        .request_json(
            Method::PUT,
            "/v1/outcomes/populations/65+",
            &w.council_token,
            Some(&json!({"population": 50000})),
        )
        .await;
    assert_eq!(s, 200);

    let q = "from=2026-01-01&to=2026-04-01&as_of=2026-05-01";
    let (s, r) = app
        .get_json(&format!("/v1/outcomes/report?scope=provider&{q}"), t)
        .await;
    assert_eq!(s, 200, "{r}");
    let i = &r["indicators"];
    assert_eq!(i["falls"]["falls"], 1);
    assert_eq!(i["falls"]["long_lies"], 1);
    assert_eq!(i["falls"]["conveyed_to_hospital"], 1);
    assert_eq!(i["falls"]["admitted_to_hospital"], 0);
    assert!(i["falls_avoided"]["method"]
        .as_str()
        .unwrap()
        .contains("Poisson"));
    assert_eq!(i["short_term_outcome"]["numerator"], 1);
    assert_eq!(i["short_term_outcome"]["denominator"], 2);
    // A: day 91 is 2026-04-16, B: 2026-04-21; both before as_of: 1 of 2 at home.
    assert_eq!(i["still_at_home_91_days"]["numerator"], 1);
    assert_eq!(i["still_at_home_91_days"]["denominator"], 2);
    assert_eq!(i["outcome_plans"]["payable_due"], 3);
    assert_eq!(i["outcome_plans"]["early"]["numerator"], 1);
    assert_eq!(i["outcome_plans"]["on_time"]["numerator"], 1);
    assert_eq!(i["outcome_plans"]["not_achieved"]["numerator"], 1);
    assert_eq!(
        r["context"]["label"],
        "context, not an outcome: never a price"
    );
    // The provider has no population of its own.
    assert_eq!(i["permanent_care_home_admissions"][1]["admissions"], 1);
    assert!(i["permanent_care_home_admissions"][1]["per_100k"].is_null());

    // Same inputs, same figures and hash; the report is stored.
    let (_, again) = app
        .get_json(&format!("/v1/outcomes/report?scope=provider&{q}"), t)
        .await;
    assert_eq!(again["inputs"]["hash"], r["inputs"]["hash"]);
    assert_eq!(again["indicators"], r["indicators"]);
    assert_ne!(again["report_id"], r["report_id"]);
    let (s, stored) = app
        .get_json(&format!("/v1/outcomes/reports/{}", r["report_id"]), t)
        .await;
    assert_eq!(s, 200);
    assert_eq!(stored["input_hash"], r["inputs"]["hash"]);
    assert_eq!(stored["method_version"], "outcomes/2");
    // One input row changed: a different hash; changed back: the first hash again. (An
    // `input_hash` that returns a constant fails here.)
    let hash_with = |long_lie: bool| {
        let (app, client, t) = (&app, &client, t);
        async move {
            client
                .execute("UPDATE alarms SET long_lie = $1", &[&long_lie])
                .await
                .unwrap();
            let (_, r) = app
                .get_json(&format!("/v1/outcomes/report?scope=provider&{q}"), t)
                .await;
            r["inputs"]["hash"].as_str().unwrap().to_string()
        }
    };
    let first = r["inputs"]["hash"].as_str().unwrap();
    assert_ne!(
        hash_with(false).await,
        first,
        "the hash covers the input rows"
    );
    assert_eq!(hash_with(true).await, first);

    // The commissioner: population scope uses its population: 1 per 50,000 = 2 per 100,000.
    let (s, pr) = app
        .get_json(
            &format!("/v1/outcomes/report?scope=population&{q}"),
            &w.council_token,
        )
        .await;
    assert_eq!(s, 200, "{pr}");
    assert_eq!(
        pr["indicators"]["permanent_care_home_admissions"][1]["per_100k"],
        2.0
    );
    assert_eq!(pr["indicators"]["falls"], i["falls"]);
    // A person report by id, and a provider cannot ask for a population.
    let (s, _) = app
        .get_json(
            &format!("/v1/outcomes/report?scope=person&id={c}&{q}"),
            &w.council_token,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .get_json(&format!("/v1/outcomes/report?scope=population&{q}"), t)
        .await;
    assert_eq!(s, 403);
    // Another provider sees nothing of this one.
    let (_, other) = app
        .org_with_user("Other Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (s, _) = app
        .get_json(
            &format!("/v1/outcomes/report?scope=person&id={c}&{q}"),
            &other,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .get_json(
            &format!(
                "/v1/outcomes/report?scope=contract&id={}&{q}",
                w.contract_id
            ),
            &other,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .get_json(&format!("/v1/outcome-plans/{plan_id}"), &other)
        .await;
    assert_eq!(s, 404);

    // CSV export.
    let r = app
        .get(
            &format!(
                "/v1/outcomes/report?scope=contract&id={}&{q}&format=csv",
                w.contract_id
            ),
            Some(t),
        )
        .await;
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(csv.contains("falls.count,1.000000"), "{csv}");
    assert!(csv.contains("context.alarm_calls_resolved_without_ambulance"));

    // The plan was agreed "now"; date the agreements back into the period, as if made then.
    client.execute("UPDATE outcome_plans SET agreed_by_person_at = '2026-01-10T12:00:00Z', agreed_by_provider_at = '2026-01-10T12:00:00Z', agreed_by_council_at = '2026-01-10T12:00:00Z' WHERE id = $1", &[&plan_id]).await.unwrap();

    // Contract terms: 20/80 on plans, reablement price and bonus, penalty, early reward.
    let (s, p) = app
        .request_json(
            Method::PUT,
            &format!("/v1/contracts/{}/terms", w.contract_id),
            &w.council_token,
            Some(&json!({"plan_upfront": {"upfront_bp": 20000}})),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("terms.plan_upfront.upfront_bp"))
    );
    let (s, _) = app
        .request_json(
            Method::PUT,
            &format!("/v1/contracts/{}/terms", w.contract_id),
            t,
            Some(&json!({})),
        )
        .await;
    assert_eq!(s, 403);
    let terms = json!({
        "plan_upfront": {"upfront_bp": 2000},
        "reablement": {"per_episode_pence": 150000, "no_further_support_bonus_pence": 30000},
        "unmet_outcome_penalty_pence": 5000,
        "early_outcome_reward_pence": 2500
    });
    let (s, p) = app
        .request_json(
            Method::PUT,
            &format!("/v1/contracts/{}/terms", w.contract_id),
            &w.council_token,
            Some(&terms),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    let (s, st) = app
        .get_json(
            &format!("/v1/outcomes/statements?provider_id={}&{q}", w.provider_id),
            &w.council_token,
        )
        .await;
    assert_eq!(s, 200, "{st}");
    let lines = &st["statements"][0]["lines"];
    let amount = |code: &str| {
        lines
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["code"] == code)
            .unwrap()["amount_pence"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(amount("plan_upfront"), 20_000);
    assert_eq!(amount("plan_outcomes_achieved"), 26_666 + 26_667);
    assert_eq!(amount("reablement_episodes"), 300_000);
    assert_eq!(amount("no_further_support_bonus"), 30_000);
    assert_eq!(amount("unmet_outcome_penalty"), -5_000);
    assert_eq!(amount("early_outcome_reward"), 2_500);
    assert_eq!(
        st["statements"][0]["total_pence"],
        20_000 + 53_333 + 300_000 + 30_000 - 5_000 + 2_500
    );
    let (_, st2) = app
        .get_json(&format!("/v1/outcomes/statements?{q}"), t)
        .await;
    assert_eq!(st2["input_hash"], st["input_hash"]);
    let r = app
        .get(
            &format!(
                "/v1/outcomes/statements?provider_id={}&{q}&format=csv",
                w.provider_id
            ),
            Some(&w.council_token),
        )
        .await;
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("contract_id,reference,code,description,quantity,amount_pence"));
    assert!(!csv.to_lowercase().contains("minute"));
    let (s, _) = app
        .get_json(
            &format!("/v1/outcomes/statements?provider_id=999999&{q}"),
            &w.council_token,
        )
        .await;
    assert_eq!(s, 404);

    // Episodes of a person, for the provider only.
    let (s, e) = app
        .get_json(&format!("/v1/outcomes/people/{a}/episodes"), t)
        .await;
    assert_eq!(s, 200);
    assert_eq!(e["reablement_episodes"][0]["result"], "no_further_support");
    let (s, _) = app
        .get_json(
            &format!("/v1/outcomes/people/{a}/episodes"),
            &w.council_token,
        )
        .await;
    assert_eq!(s, 403);
    app.stop().await;
}

/// A provider's quarterly report over 10,000 people and a year of events. Run with
/// `cargo nextest run -p homeward --run-ignored only outcomes_report_benchmark --no-capture`.
#[tokio::test]
#[ignore = "benchmark"]
async fn outcomes_report_benchmark() {
    let app = spawn_app().await;
    let (provider, token) = app
        .org_with_user("Big Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let client = app.pool.get().await.unwrap();
    let user: i32 = client
        .query_one(
            "SELECT id FROM users WHERE organisation_id = $1",
            &[&provider.id],
        )
        .await
        .unwrap()
        .get(0);
    let setup = std::time::Instant::now();
    client.batch_execute(&format!("
        INSERT INTO people (organisation_id, external_ref, date_of_birth)
          SELECT {o}, 'B' || g, date '1940-01-01' + (g % 3000) FROM generate_series(1, 10000) g;
        INSERT INTO service_periods (organisation_id, person_id, started_on, history_from)
          SELECT {o}, id, date '2025-01-01' + (id % 90), CASE WHEN id % 3 = 0 THEN NULL ELSE date '2024-01-01' END
            FROM people WHERE organisation_id = {o};
        INSERT INTO devices (organisation_id, uid, kind, secret_hash) VALUES ({o}, 'bench-hub', 'hub', decode(repeat('00', 32), 'hex'));
        INSERT INTO alarms (organisation_id, category, kind, severity, state, fold_key, person_id, source_device_id, source_seq,
                            last_device_id, last_seq, is_fall, long_lie, raised_at, received_at, last_seen_at, acknowledged_at, resolved_at, outcome)
          SELECT {o}, 'care', CASE WHEN g % 3 = 0 THEN 'fall_detected' ELSE 'pendant_alarm' END, 'high', 'resolved', 'p' || g, p.id, d.id, g, d.id, g,
                 g % 3 = 0, g % 30 = 0, t, t, t, t + interval '40 seconds', t + interval '20 minutes',
                 CASE WHEN g % 10 = 0 THEN 'conveyed_to_hospital' ELSE 'resolved_by_talking' END
            FROM generate_series(1, 60000) g
            JOIN people p ON p.organisation_id = {o} AND p.external_ref = 'B' || (1 + g % 10000)
            CROSS JOIN (SELECT id FROM devices WHERE uid = 'bench-hub') d
            CROSS JOIN LATERAL (SELECT timestamptz '2025-01-01' + (g % 365) * interval '1 day' + (g % 86400) * interval '1 second' AS t) x;
        INSERT INTO hospital_stays (organisation_id, person_id, admitted_on, discharged_on, discharge_destination, recorded_by)
          SELECT {o}, id, date '2024-06-01' + (id % 600), date '2024-06-01' + (id % 600) + 5, 'home_with_reablement', {u}
            FROM people WHERE organisation_id = {o} AND id % 2 = 0;
        INSERT INTO reablement_episodes (organisation_id, person_id, hospital_stay_id, started_on, ended_on, result, recorded_by)
          SELECT {o}, person_id, id, discharged_on, discharged_on + 40,
                 (ARRAY['no_further_support','less_support','same_support','more_support'])[1 + id % 4], {u}
            FROM hospital_stays WHERE organisation_id = {o};
        INSERT INTO recorded_falls (organisation_id, person_id, occurred_on, source, recorded_by)
          SELECT {o}, id, date '2024-03-01' + (id % 200), 'GP', {u} FROM people WHERE organisation_id = {o};
        ANALYZE;", o = provider.id, u = user)).await.unwrap();
    eprintln!("setup {:?}", setup.elapsed());
    let q = "/v1/outcomes/report?scope=provider&from=2025-10-01&to=2026-01-01&as_of=2026-04-01";
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let r = app.get(q, Some(&token)).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        times.push(t.elapsed());
        assert_eq!(body["inputs"]["people"], 10000);
    }
    eprintln!("quarterly provider report over 10,000 people: {times:?}");
    app.stop().await;
}

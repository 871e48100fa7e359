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
    // No link for the person to confirm with before all three agree; the council agrees
    // through its own credential.
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
    // The provider can no longer type an achievement and its date.
    let (s, _) = app
        .post_json(
            &format!("/v1/outcome-plans/{plan_id}/outcomes/{}/achieve", o[0]),
            t,
            &json!({"achieved_on": "2026-02-01", "confirmed_by_person": true}),
        )
        .await;
    assert_eq!(s, 404);
    // Two outcomes confirmed by the person on their own page and verified by the council,
    // the answers dated back as if the person had given them on 1 February (early) and
    // 1 March (on time).
    for (id, at) in [
        (o[0], "2026-02-01T12:00:00Z"),
        (o[1], "2026-03-01T12:00:00Z"),
    ] {
        crate::confirmations::confirm_and_verify(&app, t, &w.council_token, plan_id, id).await;
        crate::confirmations::date_confirmation(&app, id, at).await;
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
    // A provider's own report has no comparison: descriptive, no avoided figure.
    assert_eq!(i["falls_avoided"]["design"], "descriptive");
    assert_eq!(i["falls_avoided"]["label"], "descriptive, not causal");
    assert!(i["falls_avoided"]["avoided"].is_null());
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
    assert_eq!(stored["method_version"], "outcomes/3");
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
    let (council, council_token) = app
        .org_with_user("Big Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let council_user: i32 = client
        .query_one(
            "SELECT id FROM users WHERE organisation_id = $1",
            &[&council.id],
        )
        .await
        .unwrap()
        .get(0);
    let setup = std::time::Instant::now();
    client.batch_execute(&format!("
        INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on) VALUES ({c}, {o}, 'BIG-1', '2024-01-01');
        INSERT INTO people (organisation_id, external_ref, date_of_birth)
          SELECT {o}, 'B' || g, date '1940-01-01' + (g % 3000) FROM generate_series(1, 10000) g;
        INSERT INTO service_periods (organisation_id, person_id, contract_id, started_on, history_from, recorded_at)
          SELECT {o}, id, (SELECT id FROM contracts WHERE reference = 'BIG-1'), date '2025-01-01' + (id % 90),
                 CASE WHEN id % 3 = 0 THEN NULL ELSE date '2024-01-01' END, timestamptz '2024-12-31'
            FROM people WHERE organisation_id = {o};
        -- The commissioner's comparison cohort: 10,000 people referred and waiting, with their
        -- falls and emergency admissions from records, so the contract's report estimates what
        -- was avoided (difference in differences, bootstrap interval).
        INSERT INTO comparison_cohorts (commissioner_id, contract_id, name, selection, recorded_by)
          SELECT {c}, id, 'Waiting list', 'Referred and waiting in 2024-25', {cu} FROM contracts WHERE reference = 'BIG-1';
        INSERT INTO comparison_members (cohort_id, reference, date_of_birth, index_date, follow_from, recorded_by)
          SELECT (SELECT id FROM comparison_cohorts WHERE name = 'Waiting list'), 'W' || g, date '1940-01-01' + (g % 3000),
                 date '2024-12-01' + (g % 90), date '2025-01-01' + (g % 90), {cu}
            FROM generate_series(1, 10000) g;
        INSERT INTO comparison_events (cohort_id, reference, kind, occurred_on, source, recorded_by)
          SELECT (SELECT id FROM comparison_cohorts WHERE name = 'Waiting list'), 'W' || (1 + g % 10000),
                 CASE WHEN g % 3 = 0 THEN 'emergency_admission' ELSE 'fall' END, date '2024-01-01' + (g % 730), 'GP', {cu}
            FROM generate_series(1, 30000) g;
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
        ANALYZE;", o = provider.id, u = user, c = council.id, cu = council_user)).await.unwrap();
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
    let contract: i32 = client
        .query_one("SELECT id FROM contracts WHERE reference = 'BIG-1'", &[])
        .await
        .unwrap()
        .get(0);
    let q = format!(
        "/v1/outcomes/report?scope=contract&id={contract}&from=2025-10-01&to=2026-01-01&as_of=2026-04-01"
    );
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let r = app.get(&q, Some(&council_token)).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        times.push(t.elapsed());
        assert_eq!(body["inputs"]["people"], 10000);
        assert_eq!(
            body["indicators"]["falls_avoided"]["design"], "comparison_cohort",
            "{}",
            body["indicators"]["falls_avoided"]
        );
    }
    eprintln!(
        "quarterly contract report over 10,000 people and a comparison cohort of 10,000: {times:?}"
    );
    app.stop().await;
}

/// A person aged 80 served by `w`'s provider from 2025-01-01 (to `ended_on` if given), under
/// the contract unless `contract` is false (self-funded).
async fn served(app: &TestApp, w: &World, r: &str, ended_on: Option<&str>, contract: bool) -> i64 {
    let t = &w.provider_token;
    let (s, p) = app
        .post_json(
            "/v1/people",
            t,
            &json!({"external_ref": r, "date_of_birth": "1945-06-01"}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_i64().unwrap();
    let contract_id = contract.then_some(w.contract_id);
    let (s, b) = app
        .post_json(
            "/v1/outcomes/service-periods",
            t,
            &json!({"person_id": id, "contract_id": contract_id, "started_on": "2025-01-01", "ended_on": ended_on}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    id
}

/// The ASCOF 2023-24 rules end to end: the new sequel codes, new versus existing clients, the
/// follow-up at 91 days, care-home stays that end (respite returned from; a transfer), Wilson
/// intervals and the small-number rule, independence regained, plans by kind and hours per
/// contract as context. Six people discharged 2026-01-15 into reablement (day 91: 2026-04-16):
/// p0 ongoing low-level support, in service: at home. p1 long-term support, a respite stay over
/// day 91 they returned home from: at home. p2 died 2026-03-01: not at home, and a life event
/// for 2A. p3 no further support, service ended, follow-up "no_contact": status unknown, not at
/// home. p4 the same but followed up "at_home". p5 an existing client, in service: at home.
/// 91-day: 4 of 6. 2A: p0, p3, p4 succeed, p1 fails: 3 of 4, suppressed.
#[tokio::test]
async fn ascof_sequels_follow_ups_and_care_home_stays() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let t = &w.provider_token;
    let mut people = Vec::new();
    for (i, ended) in [
        None,
        None,
        None,
        Some("2026-03-01"),
        Some("2026-03-01"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        people.push(served(&app, &w, &format!("A{i}"), ended, true).await);
    }
    let mut episodes = Vec::new();
    for (i, (&person, result)) in people
        .iter()
        .zip([
            "ongoing_low_level_support",
            "long_term_support",
            "died",
            "no_further_support",
            "no_further_support",
            "no_further_support",
        ])
        .enumerate()
    {
        let (s, stay) = app
            .post_json(
                "/v1/outcomes/hospital-stays",
                t,
                &json!({"person_id": person, "admitted_on": "2026-01-05",
            "discharged_on": "2026-01-15", "discharge_destination": "home_with_reablement"}),
            )
            .await;
        assert_eq!(s, 201, "{stay}");
        let (s, ep) = app
            .post_json(
                "/v1/outcomes/reablement-episodes",
                t,
                &json!({"person_id": person, "contract_id": w.contract_id,
            "hospital_stay_id": stay["id"], "started_on": "2026-01-15", "existing_client": i == 5}),
            )
            .await;
        assert_eq!(s, 201, "{ep}");
        let id = ep["id"].as_i64().unwrap();
        let (s, p) = app
            .post_json(
                &format!("/v1/outcomes/reablement-episodes/{id}/end"),
                t,
                &json!({"ended_on": "2026-02-20", "result": result}),
            )
            .await;
        assert_eq!(s, 200, "{p}");
        episodes.push(id);
    }
    // An unknown code is refused, naming the field and listing the 2023-24 sequels.
    let (s, p) = app
        .post_json(
            &format!("/v1/outcomes/reablement-episodes/{}/end", episodes[0]),
            t,
            &json!({"ended_on": "2026-02-20", "result": "better"}),
        )
        .await;
    assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("result")));
    assert!(p.to_string().contains("ongoing_low_level_support"), "{p}");
    let (s, _) = app
        .post_json(
            "/v1/outcomes/deaths",
            t,
            &json!({"person_id": people[2], "died_on": "2026-03-01"}),
        )
        .await;
    assert_eq!(s, 201);

    // Follow-ups: validated, then recorded as new versions.
    let follow = |id: i64, body: Value| {
        let (app, t) = (&app, t);
        async move {
            app.post_json(
                &format!("/v1/outcomes/reablement-episodes/{id}/follow-up"),
                t,
                &body,
            )
            .await
        }
    };
    let (s, p) = follow(
        episodes[3],
        json!({"follow_up_on": "2026-05-25", "follow_up": "fine"}),
    )
    .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("follow_up"))
    );
    let (s, p) = follow(
        episodes[3],
        json!({"follow_up_on": "2026-01-01", "follow_up": "at_home"}),
    )
    .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("follow_up_on"))
    );
    let (s, _) = follow(
        999_999,
        json!({"follow_up_on": "2026-05-25", "follow_up": "at_home"}),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = follow(
        episodes[3],
        json!({"follow_up_on": "2026-05-25", "follow_up": "no_contact"}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = follow(
        episodes[4],
        json!({"follow_up_on": "2026-05-25", "follow_up": "at_home"}),
    )
    .await;
    assert_eq!(s, 200);

    // Care-home stays: a respite stay p1 returned home from; p6 moves from residential to
    // nursing care (one admission, one transfer); p7, self-funded, is admitted.
    let (s, p) = app
        .post_json(
            "/v1/outcomes/care-home-admissions",
            t,
            &json!({"person_id": people[1], "admitted_on": "2026-04-10",
        "setting": "residential", "permanent": false, "discharged_on": "2026-04-20"}),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("returned_home"))
    );
    let (s, respite) = app
        .post_json(
            "/v1/outcomes/care-home-admissions",
            t,
            &json!({"person_id": people[1], "admitted_on": "2026-04-10",
        "setting": "residential", "permanent": false}),
        )
        .await;
    assert_eq!(s, 201);
    let respite = respite["id"].as_i64().unwrap();
    let discharge = |id: i64, on: &str| {
        let (app, t) = (&app, t);
        let body = json!({"discharged_on": on, "returned_home": true});
        async move {
            app.post_json(
                &format!("/v1/outcomes/care-home-admissions/{id}/discharge"),
                t,
                &body,
            )
            .await
        }
    };
    let (s, p) = discharge(respite, "2026-04-01").await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("discharged_on"))
    );
    let (s, _) = discharge(respite, "2026-04-20").await;
    assert_eq!(s, 200);
    let (s, _) = discharge(respite, "2026-04-21").await;
    assert_eq!(s, 409);
    let p6 = served(&app, &w, "A6", None, true).await;
    let (s, _) = app.post_json("/v1/outcomes/care-home-admissions", t, &json!({"person_id": p6, "admitted_on": "2026-02-01",
        "setting": "residential", "permanent": true, "discharged_on": "2026-03-01", "returned_home": false})).await;
    assert_eq!(s, 201);
    let (s, _) = app
        .post_json(
            "/v1/outcomes/care-home-admissions",
            t,
            &json!({"person_id": p6, "admitted_on": "2026-03-01",
        "setting": "nursing", "permanent": true}),
        )
        .await;
    assert_eq!(s, 201);
    let p7 = served(&app, &w, "A7", None, false).await;
    let (s, _) = app
        .post_json(
            "/v1/outcomes/care-home-admissions",
            t,
            &json!({"person_id": p7, "admitted_on": "2026-02-15",
        "setting": "residential", "permanent": true}),
        )
        .await;
    assert_eq!(s, 201);

    // Verified visits of 45 minutes for p0 count as hours under the contract; an unverified
    // one does not.
    let client = app.pool.get().await.unwrap();
    for (key, verdict) in [("v1", "verified"), ("v2", "rejected")] {
        client
            .execute(
                "INSERT INTO visits (organisation_id, visit_key, person_id, match_method, check_in, started_at, ended_at)
                 VALUES ($1, $2, $3, 'schedule', jsonb_build_object('verdict', $4::text),
                         '2026-02-01T09:00:00Z', '2026-02-01T09:45:00Z')",
                &[&w.provider_id, &key, &(people[0] as i32), &verdict],
            )
            .await
            .unwrap();
    }

    let q = "from=2026-01-01&to=2026-04-01&as_of=2026-06-01";
    let (s, r) = app
        .get_json(&format!("/v1/outcomes/report?scope=provider&{q}"), t)
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["method_version"], "outcomes/3");
    let i = &r["indicators"];
    let sh = &i["still_at_home_91_days"];
    assert_eq!(sh["measure"], "ASCOF 2023-24 2D (formerly 2B(1))");
    assert_eq!(
        (sh["numerator"].as_u64(), sh["denominator"].as_u64()),
        (Some(4), Some(6))
    );
    assert_eq!(sh["unknown_status"], 1);
    assert_eq!(sh["suppressed"], false);
    let iv = sh["interval"].as_array().unwrap();
    // Wilson 95% for 4 of 6: [0.3000, 0.9032].
    assert!((iv[0].as_f64().unwrap() - 0.3000).abs() < 1e-3, "{iv:?}");
    assert!((iv[1].as_f64().unwrap() - 0.9032).abs() < 1e-3, "{iv:?}");
    let st = &i["short_term_outcome"];
    assert_eq!(st["measure"], "ASCOF 2023-24 2A (formerly 2D)");
    assert_eq!(
        (st["numerator"].as_u64(), st["denominator"].as_u64()),
        (Some(3), Some(4))
    );
    assert_eq!(
        (st["suppressed"].as_bool(), st["share"].is_null()),
        (Some(true), true)
    );
    assert_eq!(
        (
            st["excluded_life_event"].as_u64(),
            st["existing_clients"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let ch = &i["permanent_care_home_admissions"];
    assert_eq!(ch[1]["measure"], "ASCOF 2023-24 2C (formerly 2A(2))");
    assert_eq!(ch[1]["admissions"], 1);
    assert_eq!(ch[1]["transfers_excluded"], 1);
    assert_eq!(ch[1]["not_council_supported"], 1);
    // Independence: five ended (the death left out), four with no or reduced support; on day
    // 91 after the end (2026-05-22) only p4 was found at home without long-term support.
    let ir = &i["independence_regained"];
    assert_eq!(
        (
            ir["at_end"]["numerator"].as_u64(),
            ir["at_end"]["denominator"].as_u64()
        ),
        (Some(4), Some(5))
    );
    assert_eq!(
        (
            ir["at_91_days"]["numerator"].as_u64(),
            ir["at_91_days"]["denominator"].as_u64()
        ),
        (Some(1), Some(5))
    );
    assert_eq!(ir["unknown_status"], 3);
    assert_eq!(i["outcome_plans"]["reablement"]["payable_due"], 0);
    let hours = &i["hours_delivered"];
    assert_eq!(hours["label"], "context, not an outcome: never a price");
    assert_eq!(hours["by_contract"][0]["contract_id"], w.contract_id);
    assert_eq!(hours["by_contract"][0]["verified_visits"], 1);
    assert_eq!(hours["by_contract"][0]["hours"], 0.75);

    // The council's population: only what it supports counts, per 100,000 of its population.
    let (s, _) = app
        .request_json(
            Method::PUT,
            "/v1/outcomes/populations/65+",
            &w.council_token,
            Some(&json!({"population": 50000})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, pr) = app
        .get_json(
            &format!("/v1/outcomes/report?scope=population&{q}"),
            &w.council_token,
        )
        .await;
    assert_eq!(s, 200, "{pr}");
    let ch = &pr["indicators"]["permanent_care_home_admissions"][1];
    assert_eq!(
        (ch["admissions"].as_u64(), ch["per_100k"].as_f64()),
        (Some(1), Some(2.0))
    );

    // CSV rows carry the measure, the interval and the suppression.
    let csv = app
        .get(
            &format!("/v1/outcomes/report?scope=provider&{q}&format=csv"),
            Some(t),
        )
        .await
        .text()
        .await
        .unwrap();
    let line = |name: &str| {
        csv.lines()
            .find(|l| l.starts_with(&format!("{name},")))
            .unwrap_or_else(|| panic!("{name} in {csv}"))
            .to_string()
    };
    assert!(line("ascof.still_at_home_91_days")
        .starts_with("ascof.still_at_home_91_days,0.666667,0.299993,0.903229,"));
    assert!(line("ascof.short_term_outcome").contains("suppressed"));
    assert!(line("independence_regained.at_end").contains("4/5"));
    assert!(line(&format!(
        "context.hours_delivered.contract.{}",
        w.contract_id
    ))
    .contains("0.750000"));

    // The person's records show the follow-up and the stay's end.
    let (s, e) = app
        .get_json(&format!("/v1/outcomes/people/{}/episodes", people[1]), t)
        .await;
    assert_eq!(s, 200);
    assert_eq!(e["care_home_admissions"][0]["returned_home"], true);
    let (_, e) = app
        .get_json(&format!("/v1/outcomes/people/{}/episodes", people[4]), t)
        .await;
    assert_eq!(e["reablement_episodes"][0]["follow_up"], "at_home");
    assert_eq!(e["reablement_episodes"][0]["result"], "no_further_support");
    app.stop().await;
}

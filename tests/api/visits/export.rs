//! What leaves Homeward: CSV exports that defuse formulas, and what commissioners may see.

use chrono::Utc;
use homeward::auth::{OrgKind, Role};
use homeward_testkit::spawn_app;
use serde_json::json;

use super::{ms, now_s, phone_sends, schedule, setup, visits_when, HOME};

/// A name typed into Homeward must not run as a formula in the spreadsheet a CSV export is
/// opened in: cells beginning with `=`, `+`, `-` or `@` are exported as text.
#[tokio::test]
async fn csv_exports_defuse_formulas_typed_into_names() {
    let app = spawn_app().await;
    let s = setup(
        &app,
        "EVV Csv",
        json!({"external_ref": "=HYPERLINK(\"http://x\",\"y\")"}),
    )
    .await;
    let start = now_s() - chrono::Duration::minutes(40);
    schedule(&app, &s, "V-1", start, 30).await;
    phone_sends(
        &app,
        &s.phone,
        &s.secret,
        json!([
            {"seq": 1, "t": ms(start + chrono::Duration::minutes(1)), "kind": "check_in", "method": "gps", "visit": "V-1", "lat": HOME.0, "lon": HOME.1, "accuracy_m": 8.0},
            {"seq": 2, "t": ms(start + chrono::Duration::minutes(30)), "kind": "check_out", "method": "gps", "visit": "V-1", "lat": HOME.0, "lon": HOME.1, "accuracy_m": 8.0},
        ]),
    )
    .await;
    visits_when(&app, &s.p.token, |v| {
        v.len() == 1 && v[0]["completed"] == true
    })
    .await;
    let csv = app
        .get("/v1/visits/export?format=csv", Some(&s.p.token))
        .await
        .text()
        .await
        .unwrap();
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let person = rows
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "person")
        .unwrap();
    let row = rows.records().next().expect("one visit").unwrap();
    assert_eq!(&row[person], "'=HYPERLINK(\"http://x\",\"y\")", "{csv}");
    for cell in row.iter() {
        assert!(
            !cell.starts_with(['=', '+', '@'])
                && (!cell.starts_with('-') || cell.parse::<f64>().is_ok()),
            "a formula-like cell: {cell}"
        );
    }
    app.stop().await;
}

/// A council sees the visits of the people it funds at a provider, on the days its contract
/// and their service period cover: not another council's people, not self-funded people at
/// the same provider, and nothing after its contract ended.
#[tokio::test]
async fn commissioners_see_only_the_people_they_fund_while_their_contract_runs() {
    let app = spawn_app().await;
    let s = setup(&app, "EVV Scope", json!({})).await;
    let mut people = vec![s.person];
    for reference in ["P-2", "P-3"] {
        let (status, body) = app
            .post_json(
                "/v1/people",
                &s.p.token,
                &json!({"external_ref": reference, "home_lat": HOME.0, "home_lon": HOME.1}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        people.push(body["id"].as_i64().unwrap());
    }
    let (funded_by_1, funded_by_2, self_funded) = (people[0], people[1], people[2]);
    let today = Utc::now().date_naive();
    let (council_1, token_1) = app
        .org_with_user("Council One", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let (council_2, token_2) = app
        .org_with_user("Council Two", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let client = app.pool.get().await.unwrap();
    // Council One's contract ended two days ago; Council Two's runs on.
    let contract_1 = homeward::outcomes::contracts::create_contract(
        &**client,
        &council_1,
        &s.p.org,
        "C-1",
        today - chrono::Duration::days(60),
        Some(today - chrono::Duration::days(2)),
    )
    .await
    .unwrap();
    let contract_2 = homeward::outcomes::contracts::create_contract(
        &**client,
        &council_2,
        &s.p.org,
        "C-2",
        today - chrono::Duration::days(60),
        None,
    )
    .await
    .unwrap();
    for (person, contract) in [
        (funded_by_1, Some(contract_1)),
        (funded_by_2, Some(contract_2)),
        (self_funded, None),
    ] {
        let (status, body) = app
            .post_json(
                "/v1/outcomes/service-periods",
                &s.p.token,
                &json!({"person_id": person, "contract_id": contract,
                   "started_on": today - chrono::Duration::days(30)}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // Four visits: the first person's five days ago (in Council One's contract) and today
    // (after it), the second's and the self-funded person's today.
    let now = now_s();
    let visits = [
        ("V-OLD", funded_by_1, now - chrono::Duration::days(5)),
        ("V-NEW", funded_by_1, now - chrono::Duration::minutes(150)),
        ("V-TWO", funded_by_2, now - chrono::Duration::minutes(100)),
        ("V-SELF", self_funded, now - chrono::Duration::minutes(50)),
    ];
    let mut seq = 0;
    for (reference, person, start) in visits {
        let (status, body) = app
            .post_json(
                "/v1/scheduled-visits",
                &s.p.token,
                &json!({"reference": reference, "person_id": person, "worker_id": s.worker,
                   "window_start": start, "window_end": start + chrono::Duration::minutes(30),
                   "service_type": "personal_care"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        seq += 2;
        phone_sends(
            &app,
            &s.phone,
            &s.secret,
            json!([
                {"seq": seq - 1, "t": ms(start + chrono::Duration::minutes(1)), "kind": "check_in", "method": "gps", "visit": reference, "lat": HOME.0, "lon": HOME.1, "accuracy_m": 8.0},
                {"seq": seq, "t": ms(start + chrono::Duration::minutes(20)), "kind": "check_out", "method": "gps", "visit": reference, "lat": HOME.0, "lon": HOME.1, "accuracy_m": 8.0},
            ]),
        )
        .await;
    }
    let all = visits_when(&app, &s.p.token, |v| {
        v.len() == 4 && v.iter().all(|v| v["completed"] == true)
    })
    .await;
    let id_of = |reference: &str| {
        all.iter()
            .find(|v| v["scheduled_reference"] == reference || v["reference"] == reference)
            .unwrap_or_else(|| panic!("{reference} in {all:?}"))["id"]
            .as_i64()
            .unwrap()
    };
    let ids: Vec<i64> = visits.iter().map(|(r, _, _)| id_of(r)).collect();

    let seen = |token: &str| {
        let token = token.to_owned();
        let app = &app;
        async move {
            let list = app.get_ok("/v1/visits", &token).await;
            let mut listed: Vec<i64> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_i64().unwrap())
                .collect();
            listed.sort();
            let export = app.get_ok("/v1/visits/export?format=json", &token).await;
            let mut exported: Vec<i64> = export["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["visit_id"].as_i64().unwrap())
                .collect();
            exported.sort();
            assert_eq!(listed, exported, "the export shows what the list shows");
            listed
        }
    };
    assert_eq!(
        seen(&token_1).await,
        vec![ids[0]],
        "Council One: its person, in its dates"
    );
    assert_eq!(
        seen(&token_2).await,
        vec![ids[2]],
        "Council Two: its person only"
    );
    for (token, visible) in [(&token_1, ids[0]), (&token_2, ids[2])] {
        for &id in &ids {
            let status = app
                .get(&format!("/v1/visits/{id}"), Some(token))
                .await
                .status();
            assert_eq!(status == 200, id == visible, "visit {id}: {status}");
        }
        let exceptions = app
            .get_ok("/v1/visits/exceptions?include_resolved=true", token)
            .await;
        for e in exceptions["items"].as_array().unwrap() {
            assert_eq!(e["visit_id"].as_i64(), Some(visible), "{e}");
        }
    }
    app.stop().await;
}

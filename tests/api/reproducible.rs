//! Reports reproduce by construction: outcome records are never changed in place, a report
//! reads them as known at its `known_at` with the settings stored beside it, so rows back-filled
//! afterwards leave a stored report computing again to the same bytes, and a restatement shows
//! what changed and why.

use homeward::auth::{OrgKind, Role};
use homeward_testkit::spawn_app;
use serde_json::json;

#[tokio::test]
async fn a_stored_report_reproduces_byte_for_byte_after_back_fills_and_a_restatement_explains() {
    let app = spawn_app().await;
    let (provider, t) = app
        .org_with_user("Reable Ltd", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (council, _) = app
        .org_with_user("Shire Council", OrgKind::Commissioner, Role::Commissioner)
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
    let mut people = Vec::new();
    for i in 0..2 {
        let (s, p) = app
            .post_json(
                "/v1/people",
                &t,
                &json!({"external_ref": format!("P{i}"), "date_of_birth": "1945-06-01"}),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        let id = p["id"].as_i64().unwrap();
        let (s, b) = app
            .post_json(
                "/v1/outcomes/service-periods",
                &t,
                &json!({"person_id": id, "contract_id": contract, "started_on": "2025-01-01"}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        people.push(id);
    }
    let (s, stay) = app
        .post_json(
            "/v1/outcomes/hospital-stays",
            &t,
            &json!({"person_id": people[0], "admitted_on": "2026-02-01"}),
        )
        .await;
    assert_eq!(s, 201, "{stay}");
    let stay = stay["id"].as_i64().unwrap();

    let q = "scope=provider&from=2026-01-01&to=2026-04-01&as_of=2026-07-01";
    let (s, first) = app.get_json(&format!("/v1/outcomes/report?{q}"), &t).await;
    assert_eq!(s, 200, "{first}");
    let id = first["report_id"].as_i64().unwrap();
    assert_eq!(first["inputs"]["hospital_stays"], 1);

    // Back-fills and corrections after the report: a fall from records, a second stay, the
    // first stay's discharge (a new version), and a stay withdrawn as entered in error.
    let (s, _) = app
        .post_json(
            "/v1/outcomes/recorded-falls",
            &t,
            &json!({"person_id": people[1], "occurred_on": "2026-02-10", "source": "GP"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, second) = app
        .post_json(
            "/v1/outcomes/hospital-stays",
            &t,
            &json!({"person_id": people[1], "admitted_on": "2026-03-01"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = app
        .post_json(
            &format!("/v1/outcomes/hospital-stays/{stay}/discharge"),
            &t,
            &json!({"discharged_on": "2026-02-05", "discharge_destination": "home"}),
        )
        .await;
    assert_eq!(s, 200);
    let second = second["id"].as_i64().unwrap();
    client
        .execute(
            "INSERT INTO hospital_stays (organisation_id, person_id, admitted_on, emergency, recorded_by, corrects, withdrawn, reason)
             SELECT organisation_id, person_id, admitted_on, emergency, recorded_by, id, true, 'entered for the wrong person'
               FROM hospital_stays WHERE id = $1",
            &[&second],
        )
        .await
        .unwrap();
    // The records themselves cannot be changed or removed, even by a direct statement.
    for sql in [
        "UPDATE hospital_stays SET admitted_on = '2026-01-01' WHERE record_id = $1",
        "DELETE FROM hospital_stays WHERE record_id = $1",
    ] {
        let e = client.execute(sql, &[&stay]).await.unwrap_err();
        let message = e.as_db_error().map(|d| d.message().to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("never changed")),
            "{message:?}"
        );
    }

    // The stored report computes again to the same bytes.
    let (s, r) = app
        .get_json(&format!("/v1/outcomes/reports/{id}/reproduction"), &t)
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["identical"], true, "{r}");
    assert_eq!(r["stored_sha256"], r["reproduced_sha256"]);
    assert_eq!(r["differences"], json!([]));

    // A restatement reads the data as known now and says what changed and why.
    let (s, re) = app
        .post_json(
            &format!("/v1/outcomes/reports/{id}/restatements"),
            &t,
            &json!({}),
        )
        .await;
    assert_eq!(s, 201, "{re}");
    assert_ne!(re["report_id"], first["report_id"]);
    let st = &re["restatement"];
    assert_eq!(st["restates"], id);
    let changed: Vec<&str> = st["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["figure"].as_str().unwrap())
        .collect();
    assert!(changed.contains(&"inputs.hash"), "{changed:?}");
    // The withdrawn stay is gone again; the fall is new.
    assert_eq!(re["inputs"]["hospital_stays"], 1);
    assert!(changed.contains(&"inputs.falls") || re["inputs"]["falls"] == 0);
    let since = st["recorded_since"].as_array().unwrap();
    let of = |source: &str, change: &str| {
        since
            .iter()
            .filter(|a| a["source"] == source && a["change"] == change)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("recorded_falls", "new").len(), 1, "{since:?}");
    assert_eq!(of("hospital_stays", "new").len(), 1);
    let discharge = of("hospital_stays", "version");
    assert_eq!(discharge.len(), 1);
    assert_eq!(discharge[0]["reason"], "discharged");
    assert_eq!(discharge[0]["record_id"], stay);
    let withdrawn = of("hospital_stays", "withdrawn");
    assert_eq!(withdrawn[0]["reason"], "entered for the wrong person");
    assert_eq!(withdrawn[0]["record_id"], second);

    // The stored report names what it restates; both still reproduce.
    let (s, stored) = app
        .get_json(&format!("/v1/outcomes/reports/{}", re["report_id"]), &t)
        .await;
    assert_eq!(s, 200);
    assert_eq!(stored["restates"], id);
    let (_, r) = app
        .get_json(
            &format!("/v1/outcomes/reports/{}/reproduction", re["report_id"]),
            &t,
        )
        .await;
    assert_eq!(r["identical"], true, "{r}");

    // Another organisation cannot reproduce or restate it.
    let (_, other) = app
        .org_with_user("Other Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (s, _) = app
        .get_json(&format!("/v1/outcomes/reports/{id}/reproduction"), &other)
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post_json(
            &format!("/v1/outcomes/reports/{id}/restatements"),
            &other,
            &json!({}),
        )
        .await;
    assert_eq!(s, 404);
}

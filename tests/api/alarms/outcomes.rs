//! Resolving alarms with every outcome code, and the response figures that count them.

use homeward::auth::{OrgKind, Role};
use homeward_proto::EventBody;
use homeward_testkit::mqtt::TestDevice;
use homeward_testkit::spawn_app;
use serde_json::Value;

use super::{alarms_until, provider};

#[tokio::test]
async fn every_outcome_code_resolves_and_is_counted_in_the_response_figures() {
    let app = spawn_app().await;
    let p = provider(&app, "Outcome Care").await;
    let codes = [
        "false_or_accidental",
        "resolved_by_talking",
        "family_or_keyholder_attended",
        "responder_attended_no_injury",
        "minor_injury_treated_at_home",
        "ambulance_called_not_conveyed",
        "conveyed_to_hospital",
        "admitted_to_hospital",
    ];
    let mut devices = Vec::new();
    for i in 0..codes.len() {
        let uid = format!("pendant-o{i}");
        let secret = app.device(&p.org, &uid, "pendant").await;
        // Each pendant is a different person's (so no alarm folds into another's), which a
        // commissioner's view below needs: it counts only people funded under its contract.
        let client = app.pool.get().await.unwrap();
        client
            .execute(
                "WITH p AS (INSERT INTO people (organisation_id, external_ref) VALUES ($1, $2)
                            RETURNING id)
                 UPDATE devices SET person_id = (SELECT id FROM p) WHERE uid = $2",
                &[&p.org.id, &uid],
            )
            .await
            .unwrap();
        devices.push(TestDevice::connect(&app, &uid, &secret).await);
    }
    for d in &mut devices {
        d.send(EventBody::PendantAlarm).await;
    }
    let alarms = alarms_until(&app, &p.staff, |a| a.len() == codes.len()).await;
    for (i, code) in codes.iter().enumerate() {
        let uid = format!("pendant-o{i}");
        let id = alarms
            .iter()
            .find(|a| a["device_uid"] == uid.as_str())
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        let (status, _) = app
            .post_json(
                &format!("/v1/alarms/{id}/acknowledge"),
                &p.staff,
                &Value::Null,
            )
            .await;
        assert_eq!(status, 200);
        if i >= 3 {
            app.post_json(&format!("/v1/alarms/{id}/dispatch"), &p.staff, &Value::Null)
                .await;
            app.post_json(
                &format!("/v1/alarms/{id}/arrive"),
                &p.responder,
                &Value::Null,
            )
            .await;
        }
        let (status, body) = app
            .post_json(
                &format!("/v1/alarms/{id}/resolve"),
                &p.staff,
                &serde_json::json!({"outcome": code}),
            )
            .await;
        assert_eq!(status, 200, "{code}: {body}");
        assert_eq!(body["outcome"], *code);
        assert_eq!(body["state"], "resolved");
    }
    // The durations the figures measure come from the stamps, not from how fast this test
    // ran: each alarm is given its own answer and arrival times.
    let answer_secs = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 61.0, 170.0];
    let on_site_minutes = [0, 0, 0, 10, 30, 44, 45, 46];
    {
        let client = app.pool.get().await.unwrap();
        for i in 0..codes.len() {
            let updated = client
                .execute(
                    "UPDATE alarms a
                        SET acknowledged_at = a.received_at + make_interval(secs => $2),
                            on_site_at = CASE WHEN a.dispatched_at IS NULL THEN NULL
                                              ELSE a.received_at + make_interval(mins => $3) END
                       FROM devices d WHERE d.id = a.source_device_id AND d.uid = $1",
                    &[
                        &format!("pendant-o{i}"),
                        &answer_secs[i],
                        &on_site_minutes[i],
                    ],
                )
                .await
                .unwrap();
            assert_eq!(updated, 1);
        }
    }
    let figures = app.get_ok("/v1/alarms/response-times", &p.staff).await;
    for code in codes {
        assert_eq!(figures["outcomes"][code], 1, "{code}: {figures}");
    }
    assert_eq!(figures["alarms"], 8);
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;
    let answer = &figures["answer"];
    assert_eq!(
        (&answer["calls"], &answer["answered"]),
        (&8.into(), &8.into())
    );
    assert!(close(&answer["median_secs"], 45.0), "{answer}");
    // percentile_cont(0.9) of 8 values: 61 + 0.3 x (170 - 61).
    assert!(close(&answer["p90_secs"], 93.7), "{answer}");
    // 6 of 8 within 60 s (60 itself counts): 0.75 < 0.975; all 8 within 180 s: met.
    assert_eq!(answer["targets"][0]["within"], 60);
    assert_eq!(answer["targets"][0]["share"], 0.75);
    assert_eq!(answer["targets"][0]["met"], false);
    assert_eq!(answer["targets"][1]["within"], 180);
    assert_eq!(answer["targets"][1]["share"], 1.0);
    assert_eq!(answer["targets"][1]["met"], true);
    let on_site = &figures["on_site"];
    assert_eq!(
        (&on_site["dispatched"], &on_site["arrived"]),
        (&5.into(), &5.into())
    );
    assert!(close(&on_site["median_minutes"], 44.0), "{on_site}");
    assert!(close(&on_site["p90_minutes"], 45.6), "{on_site}");
    // 4 of 5 within 45 minutes (45 itself counts): 0.8 < 0.9; all within 60: met.
    assert_eq!(on_site["targets"][0]["within"], 45);
    assert_eq!(on_site["targets"][0]["share"], 0.8);
    assert_eq!(on_site["targets"][0]["met"], false);
    assert_eq!(on_site["targets"][1]["within"], 60);
    assert_eq!(on_site["targets"][1]["share"], 1.0);
    assert_eq!(on_site["targets"][1]["met"], true);
    assert_eq!(figures["resolved_without_ambulance"], 5);

    // Commissioners see the figures of providers they contract, and only those.
    let (council, council_token) = app
        .org_with_user("Outcome Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let path = format!("/v1/alarms/response-times?provider_id={}", p.org.id);
    assert_eq!(app.get(&path, Some(&council_token)).await.status(), 404);
    let client = app.pool.get().await.unwrap();
    let contract = homeward::outcomes::contracts::create_contract(
        &**client,
        &council,
        &p.org,
        "C-1",
        chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        None,
    )
    .await
    .unwrap();
    // A contract alone counts nobody: only the alarms of people funded under it.
    let theirs = app.get_ok(&path, &council_token).await;
    assert_eq!(theirs["alarms"], 0);
    client
        .execute(
            "INSERT INTO service_periods (organisation_id, person_id, contract_id, started_on)
             SELECT DISTINCT organisation_id, person_id, $2::int, date '2026-01-01'
               FROM alarms WHERE organisation_id = $1 AND person_id IS NOT NULL",
            &[&p.org.id, &contract],
        )
        .await
        .unwrap();
    let theirs = app.get_ok(&path, &council_token).await;
    assert_eq!(theirs["alarms"], 8);
    // ... but not the alarms themselves.
    assert_eq!(
        app.get("/v1/alarms", Some(&council_token)).await.status(),
        403
    );
    app.stop().await;
}

//! The audit log: every change through the API and the CLI leaves exactly one row naming who
//! made it, in the change's own transaction; the chain finds an edited, deleted or reordered
//! row (through `homeward audit verify`, the operator's command); the database refuses to
//! change rows; `GET /v1/audit` shows an organisation its own rows, as JSON and CSV.

use homeward::auth::{OrgKind, Role};
use homeward_proto::EventBody;
use homeward_testkit::db::url_of;
use homeward_testkit::mqtt::TestDevice;
use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::confirmations::post_form;
use crate::helpers::homeward;

/// The newest audit row's id (0 when there is none).
async fn last_id(app: &TestApp) -> i64 {
    let c = app.pool.get().await.unwrap();
    c.query_one("SELECT coalesce(max(id), 0) FROM audit_log", &[])
        .await
        .unwrap()
        .get(0)
}

/// The rows written after `since`: (action, actor_kind, actor, request_id, object_type).
async fn rows_after(
    app: &TestApp,
    since: i64,
) -> Vec<(String, String, String, Option<String>, String)> {
    let c = app.pool.get().await.unwrap();
    c.query(
        "SELECT action, actor_kind, actor, request_id, object_type FROM audit_log WHERE id > $1 ORDER BY id",
        &[&since],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

struct Step<'a> {
    app: &'a TestApp,
    n: u32,
}

impl Step<'_> {
    /// Sends one request that must succeed and checks it left exactly one audit row: `action`,
    /// by user `user`, with the request's id. Returns the response body.
    async fn one(
        &mut self,
        token: &str,
        user: i64,
        method: Method,
        path: &str,
        body: Option<Value>,
        action: &str,
    ) -> Value {
        self.n += 1;
        let request_id = format!("audit-test-{}", self.n);
        let before = last_id(self.app).await;
        let mut req = self
            .app
            .client
            .request(method.clone(), self.app.url(path))
            .bearer_auth(token)
            .header("x-request-id", &request_id);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        assert_eq!(
            r.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some(request_id.as_str()),
            "the request id is echoed"
        );
        let text = r.text().await.unwrap();
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        let rows = rows_after(self.app, before).await;
        assert_eq!(
            rows.len(),
            1,
            "{method} {path}: one audit row, got {rows:?}"
        );
        let (got, kind, actor, rid, _) = &rows[0];
        assert_eq!(got, action, "{method} {path}");
        assert_eq!(kind, "user");
        assert_eq!(actor, &user.to_string(), "{method} {path}: the actor");
        assert_eq!(rid.as_deref(), Some(request_id.as_str()));
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

async fn me(app: &TestApp, token: &str) -> i64 {
    app.get_ok("/v1/me", token).await["user"]["id"]
        .as_i64()
        .expect("the caller's user id")
}

#[tokio::test]
async fn every_change_leaves_exactly_one_audit_row_naming_its_actor() {
    let app = spawn_app().await;
    let (provider, admin) = app
        .org_with_user("Audited Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (council, commissioner) = app
        .org_with_user("Audit Council", OrgKind::Commissioner, Role::Commissioner)
        .await;
    let staff = app
        .user(&provider, "Audited staff", Role::ProviderStaff)
        .await;
    let admin_id = me(&app, &admin).await;
    let staff_id = me(&app, &staff).await;
    let council_id = me(&app, &commissioner).await;
    let contract: i32 = app
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on)
             VALUES ($1, $2, 'AUD-1', '2025-01-01') RETURNING id",
            &[&council.id, &provider.id],
        )
        .await
        .unwrap()
        .get(0);
    let mut s = Step { app: &app, n: 0 };

    // People, workers, devices and their links.
    let person = s
        .one(
            &admin,
            admin_id,
            Method::POST,
            "/v1/people",
            Some(json!({"external_ref": "AUD-P1", "date_of_birth": "1940-02-03"})),
            "person.create",
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let worker = s
        .one(
            &admin,
            admin_id,
            Method::POST,
            "/v1/workers",
            Some(json!({"external_ref": "W-1"})),
            "worker.create",
        )
        .await["id"]
        .as_i64()
        .unwrap();
    s.one(
        &admin,
        admin_id,
        Method::POST,
        "/v1/devices",
        Some(json!({"uid": "aud-phone-1", "kind": "phone"})),
        "device.create",
    )
    .await;
    s.one(
        &admin,
        admin_id,
        Method::PUT,
        &format!("/v1/workers/{worker}/phones/aud-phone-1"),
        None,
        "worker.link_phone",
    )
    .await;
    s.one(
        &admin,
        admin_id,
        Method::POST,
        "/v1/devices/aud-phone-1/disable",
        None,
        "device.disable",
    )
    .await;
    s.one(
        &admin,
        admin_id,
        Method::POST,
        "/v1/devices/aud-phone-1/enable",
        None,
        "device.enable",
    )
    .await;
    s.one(
        &admin,
        admin_id,
        Method::POST,
        "/v1/devices/aud-phone-1/rotate-secret",
        None,
        "device.rotate_secret",
    )
    .await;
    s.one(
        &admin,
        admin_id,
        Method::PUT,
        "/v1/geofence-policies/north",
        Some(json!({"geofence_policy": "warn"})),
        "geofence_policy.set",
    )
    .await;

    // Credentials.
    s.one(
        &staff,
        staff_id,
        Method::POST,
        &format!("/v1/users/{staff_id}/tokens"),
        Some(json!({"label": "second phone"})),
        "token.create",
    )
    .await;
    let tokens = app
        .get_ok(&format!("/v1/users/{staff_id}/tokens"), &admin)
        .await;
    let newest = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_i64())
        .max()
        .unwrap();
    s.one(
        &admin,
        admin_id,
        Method::DELETE,
        &format!("/v1/tokens/{newest}"),
        None,
        "token.revoke",
    )
    .await;
    s.one(
        &admin,
        admin_id,
        Method::POST,
        &format!("/v1/users/{staff_id}/disable"),
        None,
        "user.disable",
    )
    .await;
    s.one(
        &admin,
        admin_id,
        Method::POST,
        &format!("/v1/users/{staff_id}/enable"),
        None,
        "user.enable",
    )
    .await;

    // Scheduled visits, a manual entry and its adjustment.
    let scheduled = s
        .one(&admin, admin_id, Method::POST, "/v1/scheduled-visits",
             Some(json!({"reference": "AUD-S1", "person_id": person, "worker_id": worker,
                         "window_start": "2026-03-02T09:00:00Z", "window_end": "2026-03-02T10:00:00Z",
                         "service_type": "personal care", "outcomes": []})),
             "scheduled_visit.create")
        .await["id"]
        .as_i64()
        .unwrap();
    let manual = s
        .one(
            &admin,
            admin_id,
            Method::POST,
            "/v1/visits/manual",
            Some(
                json!({"scheduled_visit_id": scheduled, "start": "2026-03-02T09:05:00Z",
                         "end": "2026-03-02T09:50:00Z", "reason_code": "device_failure",
                         "memo": "phone battery flat"}),
            ),
            "visit.manual_entry",
        )
        .await;
    let visit = manual["visit_id"].as_i64().unwrap();
    s.one(
        &admin,
        admin_id,
        Method::POST,
        &format!("/v1/visits/{visit}/adjustments"),
        Some(
            json!({"end": "2026-03-02T09:55:00Z", "reason_code": "device_failure",
                      "memo": "left at 09:55"}),
        ),
        "visit.adjust",
    )
    .await;
    let second = s
        .one(&admin, admin_id, Method::POST, "/v1/scheduled-visits",
             Some(json!({"reference": "AUD-S2", "person_id": person,
                         "window_start": "2026-03-03T09:00:00Z", "window_end": "2026-03-03T10:00:00Z",
                         "service_type": "personal care", "outcomes": []})),
             "scheduled_visit.create")
        .await["id"]
        .as_i64()
        .unwrap();
    s.one(
        &admin,
        admin_id,
        Method::POST,
        &format!("/v1/scheduled-visits/{second}/cancel"),
        Some(json!({"reason": "in hospital"})),
        "scheduled_visit.cancel",
    )
    .await;

    // Contracts, populations, outcome records, their verification.
    s.one(
        &commissioner,
        council_id,
        Method::PUT,
        &format!("/v1/contracts/{contract}/terms"),
        Some(json!({})),
        "contract.set_terms",
    )
    .await;
    s.one(
        &commissioner,
        council_id,
        Method::PUT,
        "/v1/outcomes/populations/65+",
        Some(json!({"population": 41000})),
        "population.set",
    )
    .await;
    s.one(
        &admin,
        admin_id,
        Method::POST,
        "/v1/outcomes/service-periods",
        Some(json!({"person_id": person, "contract_id": contract, "started_on": "2025-01-01"})),
        "service_period.record",
    )
    .await;
    let stay = s
        .one(
            &admin,
            admin_id,
            Method::POST,
            "/v1/outcomes/hospital-stays",
            Some(json!({"person_id": person, "admitted_on": "2025-06-01"})),
            "hospital_stay.record",
        )
        .await["id"]
        .as_i64()
        .unwrap();
    s.one(
        &admin,
        admin_id,
        Method::POST,
        &format!("/v1/outcomes/hospital-stays/{stay}/discharge"),
        Some(json!({"discharged_on": "2025-06-09", "discharge_destination": "home"})),
        "hospital_stay.correct",
    )
    .await;
    s.one(
        &commissioner,
        council_id,
        Method::POST,
        &format!("/v1/outcomes/hospital-stays/{stay}/verify"),
        Some(json!({"verdict": "verified"})),
        "hospital_stay.verify",
    )
    .await;
    s.one(
        &admin,
        admin_id,
        Method::POST,
        &format!("/v1/outcomes/hospital-stays/{stay}/withdraw"),
        Some(json!({"reason": "entered for the wrong person"})),
        "hospital_stay.withdraw",
    )
    .await;
    s.one(
        &commissioner,
        council_id,
        Method::POST,
        "/v1/outcomes/comparison-cohorts",
        Some(json!({"name": "waiting list", "selection": "referred, waiting"})),
        "comparison_cohort.create",
    )
    .await;

    // A plan: created, agreed by the three parties, a link, the person's answer, the council's
    // verification.
    let plan = s
        .one(
            &admin,
            admin_id,
            Method::POST,
            "/v1/outcome-plans",
            Some(
                json!({"person_id": person, "contract_id": contract, "starts_on": "2026-01-01",
                         "ends_on": "2026-06-01", "value_pence": 30000,
                         "outcomes": [{"statement": "I can make my own lunch", "kind": "reablement",
                                       "payable": true, "target_date": "2026-03-01"}]}),
            ),
            "plan.create",
        )
        .await;
    let plan_id = plan["id"].as_i64().unwrap();
    let outcome = plan["outcomes"][0]["id"].as_i64().unwrap();
    for party in ["person", "provider"] {
        s.one(
            &admin,
            admin_id,
            Method::POST,
            &format!("/v1/outcome-plans/{plan_id}/agree"),
            Some(json!({"party": party})),
            "plan.agree",
        )
        .await;
    }
    s.one(
        &commissioner,
        council_id,
        Method::POST,
        &format!("/v1/outcome-plans/{plan_id}/agree"),
        Some(json!({"party": "council"})),
        "plan.agree",
    )
    .await;
    let link = s
        .one(
            &admin,
            admin_id,
            Method::POST,
            &format!("/v1/outcome-plans/{plan_id}/outcomes/{outcome}/confirmation-links"),
            Some(json!({})),
            "plan.confirmation_link",
        )
        .await;
    let before = last_id(&app).await;
    let (status, page) = post_form(&app, link["path"].as_str().unwrap(), "answer=yes").await;
    assert_eq!(status, 200, "{page}");
    let rows = rows_after(&app, before).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "plan.confirm");
    assert_eq!(rows[0].1, "person", "the person answered, not a user");
    s.one(
        &commissioner,
        council_id,
        Method::POST,
        &format!("/v1/outcome-plans/{plan_id}/outcomes/{outcome}/verify"),
        Some(json!({"verdict": "verified"})),
        "plan.verify",
    )
    .await;

    // Reports and statements.
    let q = format!(
        "provider_id={}&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
        provider.id
    );
    s.one(
        &commissioner,
        council_id,
        Method::GET,
        &format!("/v1/outcomes/report?scope=provider&{q}"),
        None,
        "report.issue",
    )
    .await;
    s.one(
        &commissioner,
        council_id,
        Method::POST,
        &format!("/v1/outcomes/statements?{q}"),
        None,
        "statement.issue",
    )
    .await;

    // A commissioner's read of person-level (pseudonymised) data is logged; a provider's is not.
    s.one(
        &commissioner,
        council_id,
        Method::GET,
        "/v1/visits/export?from=2026-03-01T00:00:00Z&to=2026-03-05T00:00:00Z",
        None,
        "person_data.read",
    )
    .await;
    let before = last_id(&app).await;
    app.get_ok(
        "/v1/visits/export?from=2026-03-01T00:00:00Z&to=2026-03-05T00:00:00Z",
        &admin,
    )
    .await;
    assert!(rows_after(&app, before).await.is_empty());

    // Alarm actions, each by the staff member who took it.
    let pendant = app.device(&provider, "aud-pendant", "pendant").await;
    let mut device = TestDevice::connect(&app, "aud-pendant", &pendant).await;
    device.send(EventBody::PendantAlarm).await;
    let alarm = homeward_testkit::eventually(std::time::Duration::from_secs(10), || async {
        app.get_ok("/v1/alarms", &admin).await["items"][0]["id"].as_i64()
    })
    .await
    .expect("the pendant's alarm is raised");
    for (verb, body) in [
        ("acknowledge", None),
        ("dispatch", None),
        ("arrive", None),
        ("resolve", Some(json!({"outcome": "resolved_by_talking"}))),
        ("close", None),
    ] {
        s.one(
            &admin,
            admin_id,
            Method::POST,
            &format!("/v1/alarms/{alarm}/{verb}"),
            body,
            &format!("alarm.{verb}"),
        )
        .await;
    }

    // A refused change leaves no row.
    let before = last_id(&app).await;
    let (status, _) = app
        .post_json(
            &format!("/v1/alarms/{alarm}/acknowledge"),
            &admin,
            &Value::Null,
        )
        .await;
    assert_eq!(status, 409);
    assert!(rows_after(&app, before).await.is_empty());

    // The chain of every organisation checks.
    let c = app.pool.get().await.unwrap();
    let report = homeward::audit::verify(&**c, None, |_, _| {})
        .await
        .unwrap();
    assert!(report.broken.is_none(), "{:?}", report.broken);
    // One row per step, and the person's answer.
    assert_eq!(report.rows, u64::from(s.n) + 1);
    app.stop().await;
}

/// `homeward audit verify` against the test's database: (exit code, stdout, stderr).
fn verify_cli(app: &TestApp, chain: Option<i32>) -> (i32, String, String) {
    let mut cmd = homeward();
    cmd.env("HOMEWARD__DATABASE__URL", url_of(&app.db_config))
        .args(["audit", "verify"]);
    if let Some(c) = chain {
        cmd.args(["--chain", &c.to_string()]);
    }
    let out = cmd.output().expect("homeward runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs SQL as the database's superuser with the audit table's guard triggers off, as an
/// attacker with the database's keys would.
async fn tamper(app: &TestApp, sql: &str) {
    let c = app.pool.get().await.unwrap();
    c.batch_execute(&format!(
        "BEGIN;
         SET LOCAL session_replication_role = replica;
         {sql};
         COMMIT;"
    ))
    .await
    .unwrap();
}

async fn ids_of_chain(app: &TestApp, chain: i32) -> Vec<i64> {
    let c = app.pool.get().await.unwrap();
    c.query(
        "SELECT id FROM audit_log WHERE chain = $1 ORDER BY seq",
        &[&chain],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// An organisation with `n` people created through the API: (its id, its chain's row ids).
async fn chain_of(app: &TestApp, name: &str, n: usize) -> (i32, Vec<i64>) {
    let (org, admin) = app
        .org_with_user(name, OrgKind::Provider, Role::ProviderAdmin)
        .await;
    for i in 0..n {
        app.request_ok(
            Method::POST,
            "/v1/people",
            &admin,
            Some(&json!({"external_ref": format!("{name}-{i}")})),
        )
        .await;
    }
    (org.id, ids_of_chain(app, org.id).await)
}

/// `homeward audit verify --chain <chain>` must fail naming `needle`.
fn fails_naming(app: &TestApp, chain: i32, needles: &[&str]) {
    let (code, stdout, stderr) = verify_cli(app, Some(chain));
    assert_eq!(code, 1, "{stdout}{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "`{needle}` in: {stderr}");
    }
}

#[tokio::test]
async fn verify_names_the_first_edited_deleted_or_reordered_row() {
    let app = spawn_app().await;
    let (edited, e) = chain_of(&app, "Edited Care", 5).await;
    let (rehashed, h) = chain_of(&app, "Rehashed Care", 5).await;
    let (gap, g) = chain_of(&app, "Gap Care", 5).await;
    let (swapped, w) = chain_of(&app, "Swapped Care", 5).await;
    let (tail, t) = chain_of(&app, "Tail Care", 3).await;
    let (code, stdout, stderr) = verify_cli(&app, None);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("audit log verified: 23 rows in 5 chains"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("chain {tail}: head seq 3")),
        "{stdout}"
    );

    // Neither of the application's own roles may change or remove a row (privileges), nor
    // write a chain's head; even the owner is refused by the table's triggers.
    let refusals = [
        format!("UPDATE audit_log SET change = '{{}}' WHERE id = {}", e[1]),
        format!("DELETE FROM audit_log WHERE id = {}", e[1]),
        "TRUNCATE audit_log".to_string(),
        "UPDATE audit_heads SET seq = seq + 1".to_string(),
    ];
    for (pool, expected, tried) in [
        (&app.app_pool, "permission denied", 4),
        (&app.service_pool, "permission denied", 4),
        (&app.pool, "never changed", 3),
    ] {
        let c = pool.get().await.unwrap();
        for sql in &refusals[..tried] {
            let err = c.batch_execute(sql).await.expect_err(sql);
            let text = format!("{err:?}");
            assert!(text.contains(expected), "{sql}: {text}");
        }
    }

    // Edited: the row's hash no longer matches its content.
    tamper(
        &app,
        &format!(
            "UPDATE audit_log SET change = replace(change, 'Care-2', 'Care-X') WHERE id = {}",
            e[2]
        ),
    )
    .await;
    fails_naming(
        &app,
        edited,
        &[&format!("row {} (chain {edited}, seq 3)", e[2]), "edited"],
    );
    // Edited with its hash recomputed: the next row's link gives it away.
    tamper(
        &app,
        &format!(
            "UPDATE audit_log SET change = replace(change, 'Care-2', 'Care-Y') WHERE id = {0};
         UPDATE audit_log SET hash = sha256(homeward_audit_canonical(audit_log)) WHERE id = {0}",
            h[2]
        ),
    )
    .await;
    fails_naming(
        &app,
        rehashed,
        &[&format!("row {} (chain {rehashed}, seq 4)", h[3]), "link"],
    );
    // Deleted from the middle: the gap is named.
    tamper(&app, &format!("DELETE FROM audit_log WHERE id = {}", g[1])).await;
    fails_naming(
        &app,
        gap,
        &[
            &format!("row {} (chain {gap}, seq 3)", g[2]),
            "deleted or moved",
        ],
    );
    // Reordered: rows 2 and 3 swap places.
    tamper(
        &app,
        &format!(
            "UPDATE audit_log SET seq = -seq WHERE id IN ({0}, {1});
         UPDATE audit_log SET seq = 2 WHERE id = {1};
         UPDATE audit_log SET seq = 3 WHERE id = {0}",
            w[1], w[2]
        ),
    )
    .await;
    fails_naming(
        &app,
        swapped,
        &[&format!("row {} (chain {swapped}, seq 2)", w[2])],
    );
    // The last row deleted: the chain's head says more were written.
    tamper(&app, &format!("DELETE FROM audit_log WHERE id = {}", t[2])).await;
    fails_naming(
        &app,
        tail,
        &[&format!("chain {tail} after seq 2"), "deleted"],
    );
    // Without --chain, the first broken chain is named and the exit is non-zero.
    let (code, _, stderr) = verify_cli(&app, None);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("(chain {edited}, seq 3)")),
        "{stderr}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_organisation_reads_its_own_log_as_json_and_csv() {
    let app = spawn_app().await;
    let (org, admin) = app
        .org_with_user("Reader Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let (_, other) = app
        .org_with_user("Other Reader Care", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let staff = app.user(&org, "Reader staff", Role::ProviderStaff).await;
    for i in 0..3 {
        app.request_ok(
            Method::POST,
            "/v1/people",
            &admin,
            Some(&json!({"external_ref": format!("R-{i}")})),
        )
        .await;
    }
    app.request_ok(
        Method::POST,
        "/v1/people",
        &other,
        Some(&json!({"external_ref": "O-1"})),
    )
    .await;

    let page = app.get_ok("/v1/audit?limit=2", &admin).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["organisation_id"] == org.id));
    let next = page["next_after"].as_i64().unwrap();
    let rest = app.get_ok(&format!("/v1/audit?after={next}"), &admin).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_after"].is_null());
    // A third party checks the chain from the export alone.
    let all: Vec<Value> = items
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .cloned()
        .collect();
    let mut prev = "0".repeat(64);
    for (i, row) in all.iter().enumerate() {
        assert_eq!(row["seq"], i as i64 + 1);
        assert_eq!(row["prev_hash"], prev.as_str());
        let at = chrono::DateTime::parse_from_rfc3339(row["at"].as_str().unwrap()).unwrap();
        let field = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let fields = [
            "homeward-audit-v1".to_string(),
            field(&row["chain"]),
            field(&row["seq"]),
            at.timestamp_micros().to_string(),
            field(&row["actor_kind"]),
            field(&row["actor"]),
            field(&row["token_id"]),
            field(&row["actor_org"]),
            field(&row["organisation_id"]),
            field(&row["action"]),
            field(&row["object_type"]),
            field(&row["object_id"]),
            field(&row["change"]),
            field(&row["request_id"]),
            field(&row["prev_hash"]),
        ];
        let canonical: String = fields
            .iter()
            .map(|f| format!("{}:{f}\n", f.len()))
            .collect();
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(canonical.as_bytes()));
        assert_eq!(
            row["hash"],
            hash.as_str(),
            "row {i} recomputed from the export"
        );
        prev = hash;
    }

    let r = app.get("/v1/audit?format=csv", Some(&admin)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    assert!(
        csv.starts_with("id,chain,seq,at,actor_kind,actor,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4, "{csv}");

    // Staff may not read it; a bad filter is named.
    let (status, _) = app.get_json("/v1/audit", &staff).await;
    assert_eq!(status, 403);
    let (status, problem) = app.get_json("/v1/audit?limit=10001", &admin).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "limit", "{problem}");
    app.stop().await;
}

#[tokio::test]
async fn admin_commands_are_logged_as_the_operator() {
    let app = spawn_app().await;
    let url = url_of(&app.db_config);
    let run = |args: &[&str]| {
        let out = homeward()
            .env("HOMEWARD__DATABASE__URL", &url)
            .env("USER", "ops-ann")
            .args(args)
            .output()
            .expect("homeward runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&[
        "admin",
        "create-organisation",
        "--name",
        "CLI Care",
        "--kind",
        "provider",
    ]);
    let printed = run(&[
        "admin",
        "create-user",
        "--org",
        "CLI Care",
        "--name",
        "Bo",
        "--role",
        "provider-admin",
    ]);
    run(&[
        "admin",
        "create-device",
        "--org",
        "CLI Care",
        "--uid",
        "cli-hub",
        "--kind",
        "hub",
    ]);
    run(&["admin", "disable-device", "--uid", "cli-hub"]);
    let c = app.pool.get().await.unwrap();
    let rows: Vec<(String, String, String, String)> = c
        .query(
            "SELECT action, actor_kind, actor, change FROM audit_log ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let actions: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        actions,
        [
            "organisation.create",
            "user.create",
            "device.create",
            "device.disable"
        ]
    );
    assert!(
        rows.iter().all(|r| r.1 == "system" && r.2 == "cli:ops-ann"),
        "{rows:?}"
    );
    // The token is printed once and never logged: only its prefix is.
    let token = printed
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("the token is printed");
    assert!(!rows[1].3.contains(token), "{}", rows[1].3);
    assert!(rows[1].3.contains(&token[..11]), "{}", rows[1].3);
    app.stop().await;
}

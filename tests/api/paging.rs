//! Cursor paging on the lists of the JSON API: walking a list a small page at a time returns
//! each item exactly once, in the list's order, and `next_after` is null on the last page;
//! `limit` out of range and an `after` naming nothing are 422 naming the parameter; people and
//! workers page by id within the organisation; the renamed filter of missed visits keeps its
//! old name as an alias.

use chrono::Duration;
use homeward_testkit::{spawn_app, TestApp};
use serde_json::{json, Value};

use crate::visits::{now_s, schedule, setup};

/// Every item of `path` (a query without `after` and `limit`), walked `limit` at a time.
/// Returns the items and the number of pages.
pub(crate) async fn walk(
    app: &TestApp,
    token: &str,
    path: &str,
    limit: usize,
) -> (Vec<Value>, usize) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut after: Option<Value> = None;
    for pages in 1..=100 {
        let url = match &after {
            None => format!("{path}{sep}limit={limit}"),
            Some(Value::String(a)) => format!("{path}{sep}limit={limit}&after={a}"),
            Some(a) => format!("{path}{sep}limit={limit}&after={a}"),
        };
        let page = app.get_ok(&url, token).await;
        let got = page["items"].as_array().expect("items").clone();
        assert!(got.len() <= limit, "{url}: {page}");
        items.extend(got);
        match &page["next_after"] {
            Value::Null => return (items, pages),
            next => after = Some(next.clone()),
        }
    }
    panic!("{path} never reached its last page");
}

/// The keys of `items` under `key`, as text.
fn keys(items: &[Value], key: &str) -> Vec<String> {
    items.iter().map(|i| i[key].to_string()).collect()
}

/// Each key once, and the same order as one big page.
async fn pages_agree(app: &TestApp, token: &str, path: &str, key: &str, at_least: usize) {
    let (paged, pages) = walk(app, token, path, 2).await;
    let sep = if path.contains('?') { '&' } else { '?' };
    let whole = app.get_ok(&format!("{path}{sep}limit=1000"), token).await;
    assert!(whole["next_after"].is_null(), "{path}: {whole}");
    let whole = whole["items"].as_array().unwrap().clone();
    assert!(whole.len() >= at_least, "{path}: {} items", whole.len());
    assert_eq!(keys(&paged, key), keys(&whole, key), "{path}");
    let mut unique = keys(&paged, key);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), paged.len(), "{path}: an item twice");
    assert_eq!(pages, whole.len().div_ceil(2), "{path}: no empty last page");
}

#[tokio::test]
async fn every_list_pages_each_item_once_and_ends_with_null() {
    let app = spawn_app().await;
    let s = setup(&app, "Paging", json!({})).await;
    let token = &s.p.token;
    for i in 0..4 {
        app.device(&s.p.org, &format!("hub-{i}"), "hub").await;
        app.user(
            &s.p.org,
            &format!("user {i}"),
            homeward::auth::Role::ProviderStaff,
        )
        .await;
        let (st, b) = app
            .post_json(
                &format!("/v1/users/{}/tokens", token_owner(&app, token).await),
                token,
                &json!({}),
            )
            .await;
        assert_eq!(st, 201, "{b}");
    }
    // Scheduled visits with equal window starts, so that the id breaks ties across pages,
    // and office entries for some of them, which make visits.
    let start = now_s() - Duration::hours(6);
    let mut scheduled = Vec::new();
    for i in 0..5 {
        let at = start + Duration::hours(i / 2);
        scheduled.push(schedule(&app, &s, &format!("V-P{i}"), at, 30).await);
    }
    for (i, id) in scheduled.iter().enumerate() {
        let at = start + Duration::hours(i as i64 / 2);
        let (st, b) = app
            .post_json(
                "/v1/visits/manual",
                token,
                &json!({"scheduled_visit_id": id, "start": at, "end": at + Duration::minutes(30),
                        "reason_code": "office_entry", "memo": "paper timesheet"}),
            )
            .await;
        assert_eq!(st, 201, "{b}");
    }
    pages_agree(&app, token, "/v1/devices", "uid", 5).await;
    pages_agree(&app, token, "/v1/device-health", "device_uid", 4).await;
    pages_agree(&app, token, "/v1/users", "id", 5).await;
    let me = token_owner(&app, token).await;
    pages_agree(&app, token, &format!("/v1/users/{me}/tokens"), "id", 5).await;
    pages_agree(&app, token, "/v1/scheduled-visits", "id", 5).await;
    pages_agree(&app, token, "/v1/visits", "id", 5).await;
}

/// The id of the user behind `token`.
async fn token_owner(app: &TestApp, token: &str) -> i64 {
    app.get_ok("/v1/me", token).await["user"]["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn limits_out_of_range_and_unknown_cursors_are_refused_by_name() {
    let app = spawn_app().await;
    let s = setup(&app, "Paging limits", json!({})).await;
    let token = &s.p.token;
    let me = token_owner(&app, token).await;
    let lists = [
        "/v1/devices".to_string(),
        "/v1/device-health".into(),
        "/v1/users".into(),
        format!("/v1/users/{me}/tokens"),
        "/v1/alarms".into(),
        "/v1/technical-alarms".into(),
        "/v1/dead-letters".into(),
        "/v1/visits".into(),
        "/v1/missed-visits".into(),
        "/v1/scheduled-visits".into(),
        "/v1/audit".into(),
        "/v1/contracts".into(),
        "/v1/outcome-plans".into(),
        "/v1/people".into(),
        "/v1/workers".into(),
    ];
    for list in &lists {
        for limit in ["0", "100000"] {
            let (st, b) = app.get_json(&format!("{list}?limit={limit}"), token).await;
            assert_eq!(st, 422, "{list} limit={limit}: {b}");
            assert_eq!(b["errors"][0]["field"], "limit", "{list}: {b}");
        }
    }
    // An `after` that names nothing where the order is not the key's own.
    for list in [
        "/v1/alarms",
        "/v1/visits",
        "/v1/missed-visits",
        "/v1/scheduled-visits",
    ] {
        let (st, b) = app.get_json(&format!("{list}?after=999999"), token).await;
        assert_eq!(st, 422, "{list}: {b}");
        assert_eq!(b["errors"][0]["field"], "after", "{list}: {b}");
    }
}

/// People and workers, four of each, two at a time: two pages by id, each item once, all of
/// them, and `next_after` null on the second page; another organisation's are not listed.
#[tokio::test]
async fn people_and_workers_page_by_id() {
    let app = spawn_app().await;
    let s = setup(&app, "Paging people", json!({})).await;
    let other = setup(&app, "Paging others", json!({})).await;
    let token = &s.p.token;
    let mut people = vec![s.person];
    let mut workers = vec![s.worker];
    for i in 2..=4 {
        let (st, b) = app
            .post_json(
                "/v1/people",
                token,
                &json!({"external_ref": format!("P-{i}")}),
            )
            .await;
        assert_eq!(st, 201, "{b}");
        people.push(b["id"].as_i64().unwrap());
        let (st, b) = app
            .post_json(
                "/v1/workers",
                token,
                &json!({"external_ref": format!("W-{i}")}),
            )
            .await;
        assert_eq!(st, 201, "{b}");
        workers.push(b["id"].as_i64().unwrap());
    }
    for (list, ids, foreign) in [
        ("/v1/people", &people, other.person),
        ("/v1/workers", &workers, other.worker),
    ] {
        let first = app.get_ok(&format!("{list}?limit=2"), token).await;
        let first_ids = ids_of(&first);
        assert_eq!(first_ids, ids[..2], "{list}: {first}");
        assert_eq!(first["next_after"], json!(ids[1]), "{list}: {first}");
        let second = app
            .get_ok(&format!("{list}?limit=2&after={}", ids[1]), token)
            .await;
        assert_eq!(ids_of(&second), ids[2..], "{list}: {second}");
        assert!(second["next_after"].is_null(), "{list}: {second}");
        let (paged, pages) = walk(&app, token, list, 2).await;
        assert_eq!(pages, 2, "{list}");
        let paged: Vec<i64> = paged.iter().map(|i| i["id"].as_i64().unwrap()).collect();
        assert_eq!(&paged, ids, "{list}: each once, none missing, by id");
        assert!(!paged.contains(&foreign), "{list}: another organisation's");
        let whole = app.get_ok(list, token).await;
        assert_eq!(ids_of(&whole), **ids, "{list}: {whole}");
        assert!(whole["next_after"].is_null(), "{list}: {whole}");
        for limit in ["0", "1001"] {
            let (st, b) = app.get_json(&format!("{list}?limit={limit}"), token).await;
            assert_eq!(st, 422, "{list} limit={limit}: {b}");
            assert_eq!(b["errors"][0]["field"], "limit", "{list}: {b}");
        }
    }
}

/// The ids of a page's items.
fn ids_of(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn missed_visits_filter_by_status_and_still_take_state() {
    let app = spawn_app().await;
    let s = setup(&app, "Paging filter", json!({})).await;
    let token = &s.p.token;
    let start = now_s() + Duration::hours(3);
    for i in 0..3 {
        schedule(
            &app,
            &s,
            &format!("V-M{i}"),
            start + Duration::minutes(i),
            30,
        )
        .await;
    }
    let hub = homeward::live::LiveHub::default();
    let settings = homeward::evv::EvvSettings::default();
    let report =
        homeward::evv::check_missed_visits(&app.pool, &hub, &settings, start + Duration::hours(1))
            .await
            .unwrap();
    assert_eq!(report.raised.len(), 3);
    for query in ["status=all", "state=all", "status=open", "state=open", ""] {
        let b = app
            .get_ok(&format!("/v1/missed-visits?{query}"), token)
            .await;
        assert_eq!(b["items"].as_array().unwrap().len(), 3, "{query}: {b}");
    }
    pages_agree(
        &app,
        token,
        "/v1/missed-visits?status=all",
        "scheduled_visit_id",
        3,
    )
    .await;
    let (st, b) = app
        .get_json("/v1/missed-visits?status=all&state=all", token)
        .await;
    assert_eq!(st, 422, "{b}");
    assert_eq!(b["errors"][0]["field"], "state", "{b}");
    let (st, b) = app.get_json("/v1/missed-visits?status=some", token).await;
    assert_eq!(st, 422, "{b}");
    assert_eq!(b["errors"][0]["field"], "status", "{b}");
}

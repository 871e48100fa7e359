//! The alarm lists a page at a time: ordered by severity, then newest, then id, the cursor is
//! the last alarm's id, and walking the pages returns each alarm once.

use homeward_testkit::mqtt::publish_json;
use homeward_testkit::spawn_app_with;
use serde_json::json;

use super::{alarms_until, person_with, provider, quiet_settings};
use crate::paging::walk;
use crate::visits::{ms, now_s};

#[tokio::test]
async fn alarms_page_by_severity_and_age_each_once() {
    let app = spawn_app_with(quiet_settings()).await;
    let p = provider(&app, "Alarm pages").await;
    // Pendant alarms (high) and falls (critical), from people of their own, so none fold.
    for i in 0..6 {
        let (kind, body) = if i % 3 == 0 {
            (
                "fall_detector",
                json!({"kind": "fall_detected", "confidence": 90}),
            )
        } else {
            ("pendant", json!({"kind": "pendant_alarm"}))
        };
        let uid = format!("dev-{i}");
        let (_, secrets) = person_with(&app, &p.org, &format!("P-{i}"), &[(&uid, kind)]).await;
        let mut event = body;
        event["seq"] = json!(1);
        event["t"] = json!(ms(now_s()));
        publish_json(&app, &uid, &secrets[0], vec![event]).await;
    }
    let open = alarms_until(&app, &p.staff, |a| a.len() == 6).await;
    for status in ["open", "all"] {
        let path = format!("/v1/alarms?status={status}");
        let (paged, pages) = walk(&app, &p.staff, &path, 4).await;
        assert_eq!(pages, 2);
        let (one_by_one, _) = walk(&app, &p.staff, &path, 1).await;
        let ids = |v: &[serde_json::Value]| {
            v.iter()
                .map(|a| a["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&paged), ids(&open), "{status}");
        assert_eq!(ids(&one_by_one), ids(&open), "{status}");
    }
    let severities: Vec<&str> = open
        .iter()
        .map(|a| a["severity"].as_str().unwrap())
        .collect();
    let mut sorted = severities.clone();
    sorted.sort_by_key(|s| {
        ["critical", "high", "medium", "low"]
            .iter()
            .position(|x| x == s)
    });
    assert_eq!(severities, sorted, "most severe first");
}

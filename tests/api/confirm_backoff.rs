//! The limit on wrong confirmation codes: after the free wrong codes from one client address,
//! every code from it (a right one too) is answered 429 with `Retry-After`, without being
//! looked up, until the wait is over; right codes never count; tokens are not limited.

use homeward_testkit::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::json;

use crate::confirmations::{get_page, issue_link, post_form, world};

/// Free wrong codes per address (`homeward::outcomes::confirm`), as the test expects them.
const FREE: usize = 10;

/// An agreed plan with one outcome, and a link for it: (path, code).
async fn a_link(app: &TestApp) -> (String, String) {
    let w = world(app).await;
    let t = &w.provider;
    let (s, plan) = app
        .post_json(
            "/v1/outcome-plans",
            t,
            &json!({"person_id": w.person, "contract_id": w.contract, "starts_on": "2026-01-05",
                    "ends_on": "2026-03-31", "value_pence": 1000,
                    "outcomes": [{"statement": "I can walk to the post office", "kind": "reablement",
                                  "payable": true, "target_date": "2026-03-01"}]}),
        )
        .await;
    assert_eq!(s, 201, "{plan}");
    let plan_id = plan["id"].as_i64().unwrap();
    let outcome = plan["outcomes"][0]["id"].as_i64().unwrap();
    for (token, party) in [(t, "person"), (t, "provider"), (&w.council, "council")] {
        app.request_ok(
            Method::POST,
            &format!("/v1/outcome-plans/{plan_id}/agree"),
            token,
            Some(&json!({"party": party})),
        )
        .await;
    }
    let (path, _, code) = issue_link(app, t, plan_id, outcome).await;
    (path, code)
}

/// Moves every remembered failure `secs` seconds into the past, as if that time had passed.
async fn time_passes(app: &TestApp, secs: i32) {
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE sign_in_failures SET last_failed_at = last_failed_at - make_interval(secs => $1)",
            &[&f64::from(secs)],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_codes_from_one_address_wait_and_right_ones_wait_too() {
    let app = spawn_app().await;
    let (path, code) = a_link(&app).await;
    let right = format!("code={code}");
    // Right codes never count: three of them, then the free wrong ones, all answered.
    for _ in 0..3 {
        let (s, page) = post_form(&app, "/confirm", &right).await;
        assert_eq!(s, 200, "{page}");
    }
    for i in 0..FREE {
        let (s, page) = post_form(&app, "/confirm", &format!("code=AAAAA-AAA{:02}", i)).await;
        assert_eq!(s, 404, "wrong code {i}: {page}");
        assert!(page.contains("cannot find this code"), "{page}");
    }
    // One more: refused with a plain page and Retry-After, the code not looked up.
    let r = app
        .client
        .post(app.url("/confirm"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("code=AAAAA-BBBBB")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: i64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    let page = r.text().await.unwrap();
    assert!(page.contains("Please wait"), "{page}");
    // A right code from the same address waits too, on every route that takes a code; the
    // link's token does not.
    let (s, page) = post_form(&app, "/confirm", &right).await;
    assert_eq!(s, 429, "{page}");
    let (s, page) = post_form(&app, "/confirm", &format!("{right}&answer=yes")).await;
    assert_eq!(s, 429, "{page}");
    let (s, _) = get_page(&app, &format!("/confirm/{code}")).await;
    assert_eq!(s, 429);
    let (s, _) = app
        .request_text(
            Method::GET,
            &format!("/v1/confirmations/{code}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, 429);
    let (s, page) = get_page(&app, &path).await;
    assert_eq!(s, 200, "the token is not limited: {page}");
    // Waiting too early did not count: once the wait has passed, the right code is answered.
    time_passes(&app, 31).await;
    let (s, page) = post_form(&app, "/confirm", &right).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("I can walk to the post office"), "{page}");
    // A wrong code now doubles the wait.
    let (s, _) = post_form(&app, "/confirm", "code=AAAAA-CCCCC").await;
    assert_eq!(s, 404);
    time_passes(&app, 31).await;
    let (s, _) = post_form(&app, "/confirm", &right).await;
    assert_eq!(s, 429, "60 seconds after the eleventh wrong code");
    time_passes(&app, 30).await;
    let (s, page) = post_form(&app, "/confirm", &format!("{right}&answer=yes")).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Thank you"), "{page}");
}

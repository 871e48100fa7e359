//! The console in a real headless Chromium (Debian's `chromium` and `chromium-driver`; the
//! test fails, saying how to install them, if they are missing): a person follows the one-time
//! link an admin made, sets a password, signs in, sees their organisation, signs out; wrong
//! passwords get one answer and back off; a form without its token is refused; another
//! organisation's pages do not exist; used and expired links are refused. And the API's way of
//! issuing links, over HTTP.

use std::time::Duration;

use homeward::auth::password::{issue_password_link, set_user_email, PasswordLink};
use homeward::auth::{self, OrgKind, Role, Scope};
use homeward_testkit::browser::Browser;
use homeward_testkit::{spawn_app, TestApp};

/// A user of `role` in `org` with sign-in address `email`, and a fresh set-password link.
async fn person(
    app: &TestApp,
    org: &auth::Organisation,
    name: &str,
    email: &str,
    role: Role,
) -> (i32, PasswordLink) {
    let client = app.pool.get().await.unwrap();
    let (id, _) = auth::create_user(&**client, org, name, role).await.unwrap();
    set_user_email(&**client, Scope::Any, id, email)
        .await
        .unwrap();
    let link = issue_password_link(&**client, Scope::Any, id, 72, None)
        .await
        .unwrap();
    (id, link)
}

/// The link's address on the test server.
fn link_url(app: &TestApp, link: &PasswordLink) -> String {
    link.url(&app.url(""))
}

/// Sets a password through the set-password page the browser is on.
async fn set_password(browser: &Browser, password: &str, confirmation: &str) {
    browser.fill("#password", password).await;
    browser.fill("#confirmation", confirmation).await;
    browser.submit("form.form button[type=submit]").await;
}

async fn sign_in(browser: &Browser, app: &TestApp, email: &str, password: &str) {
    if !browser.url().await.contains("/console/sign-in") {
        browser.open(&app.url("/console/sign-in")).await;
    }
    browser.fill("#email", email).await;
    browser.fill("#password", password).await;
    browser.submit("form.form button[type=submit]").await;
}

/// The session cookie the browser holds, if any.
async fn session_cookie(browser: &Browser) -> Option<String> {
    let cookies = browser.client.get_all_cookies().await.unwrap();
    cookies
        .iter()
        .find(|c| c.name() == homeward::console::SESSION_COOKIE)
        .map(|c| c.value().to_owned())
}

/// The page's content is no wider than its window (usable at phone widths).
async fn fits_the_window(browser: &Browser) -> bool {
    let fits = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    fits == serde_json::Value::Bool(true)
}

#[tokio::test]
async fn a_person_sets_a_password_through_their_link_signs_in_and_signs_out() {
    let app = spawn_app().await;
    let org = app.organisation("Riverside Care", OrgKind::Provider).await;
    let (user_id, link) = person(
        &app,
        &org,
        "Ann Example",
        "ann@riverside.example",
        Role::ProviderStaff,
    )
    .await;
    let browser = Browser::start().await;

    // Not signed in: a page sends the browser to sign in, and back after.
    browser.open(&app.url("/console/")).await;
    assert!(
        browser
            .url()
            .await
            .contains("/console/sign-in?next=/console/"),
        "{}",
        browser.url().await
    );

    browser.open(&link_url(&app, &link)).await;
    assert_eq!(browser.text("h1").await, "Set your password");
    assert_eq!(
        browser.text("[data-testid=email]").await,
        "ann@riverside.example"
    );
    set_password(&browser, "correct horse battery", "correct horse batterz").await;
    assert!(
        browser.text(".problem").await.contains("not the same"),
        "mismatched passwords are refused"
    );
    set_password(&browser, "correct horse battery", "correct horse battery").await;
    assert!(browser.url().await.contains("/console/sign-in"));
    assert!(browser
        .text(".notice")
        .await
        .contains("Your password is set"));

    let client = app.pool.get().await.unwrap();
    let hash: String = client
        .query_one("SELECT password_hash FROM users WHERE id = $1", &[&user_id])
        .await
        .unwrap()
        .get(0);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));

    sign_in(
        &browser,
        &app,
        "ANN@riverside.example",
        "correct horse battery",
    )
    .await;
    assert!(
        browser.url().await.ends_with("/console/"),
        "{}",
        browser.url().await
    );
    assert_eq!(browser.text("h1").await, "Riverside Care");
    assert_eq!(
        browser.text("[data-testid=organisation]").await,
        "Riverside Care"
    );
    assert!(browser.text("main").await.contains("Ann Example"));

    // The cookie: HttpOnly, SameSite=Strict, and only its hash is stored.
    let cookies = browser.client.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == homeward::console::SESSION_COOKIE)
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    let token = session.value().to_owned();
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM console_sessions
              WHERE user_id = $1 AND token_hash = sha256(convert_to($2, 'UTF8'))",
            &[&user_id, &token],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
    let plain: i64 = client
        .query_one(
            "SELECT count(*) FROM console_sessions WHERE encode(token_hash, 'hex') = $1",
            &[&token],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, 0);

    // Signing out ends the session: the cookie no longer opens a page.
    browser.submit("form.sign-out button").await;
    assert!(browser.url().await.contains("/console/sign-in"));
    assert!(browser.text(".notice").await.contains("signed out"));
    let r = app
        .client
        .get(app.url("/console/"))
        .header(
            "cookie",
            format!("{}={token}", homeward::console::SESSION_COOKIE),
        )
        .send()
        .await
        .unwrap();
    // (The client follows the redirect.)
    assert_eq!(
        r.url().path(),
        "/console/sign-in",
        "a signed-out session opens nothing"
    );
    browser.open(&app.url("/console/")).await;
    assert!(browser.url().await.contains("/console/sign-in"));

    // The link worked once.
    browser.open(&link_url(&app, &link)).await;
    assert_eq!(browser.text("h1").await, "This link cannot be used");
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn wrong_passwords_get_one_answer_then_back_off_and_expired_links_are_refused() {
    let app = spawn_app().await;
    let org = app.organisation("Hillside Care", OrgKind::Provider).await;
    let (user_id, link) = person(
        &app,
        &org,
        "Bea Example",
        "bea@hillside.example",
        Role::ProviderAdmin,
    )
    .await;
    let browser = Browser::start().await;
    browser.open(&link_url(&app, &link)).await;
    set_password(&browser, "a long enough password", "a long enough password").await;

    const WRONG: &str = "The email address or password is wrong";
    // An unknown address and a wrong password get the same answer.
    sign_in(
        &browser,
        &app,
        "nobody@hillside.example",
        "a long enough password",
    )
    .await;
    let unknown = browser.text(".problem").await;
    assert!(unknown.contains(WRONG), "{unknown}");
    for attempt in 1..=homeward::auth::password::FREE_FAILURES_PER_USER {
        sign_in(&browser, &app, "bea@hillside.example", "not the password").await;
        let said = browser.text(".problem").await;
        assert_eq!(said, unknown, "attempt {attempt}");
        // The address typed is kept, the password is not.
        let email = browser.find("#email").await.prop("value").await.unwrap();
        assert_eq!(email.as_deref(), Some("bea@hillside.example"));
    }
    // Now even the right password waits.
    sign_in(
        &browser,
        &app,
        "bea@hillside.example",
        "a long enough password",
    )
    .await;
    let said = browser.text(".problem").await;
    // 30 seconds after the fifth failure, less the moments since.
    let wait: i64 = said
        .split("Wait ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a wait in {said}"));
    assert!(said.contains("too many attempts"), "{said}");
    assert!((20..=30).contains(&wait), "{said}");
    assert!(session_cookie(&browser).await.is_none());
    // Once the wait is over (moved into the past here), the right password works again.
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE sign_in_failures SET last_failed_at = last_failed_at - interval '31 seconds'",
            &[],
        )
        .await
        .unwrap();
    sign_in(
        &browser,
        &app,
        "bea@hillside.example",
        "a long enough password",
    )
    .await;
    assert_eq!(browser.text("h1").await, "Hillside Care");

    // An expired link is refused, and so is one that a newer link replaced.
    let fresh = issue_password_link(&**client, Scope::Any, user_id, 72, None)
        .await
        .unwrap();
    client
        .execute(
            "UPDATE password_links SET expires_at = now() - interval '1 second'
              WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
            &[&fresh.token],
        )
        .await
        .unwrap();
    browser.open(&link_url(&app, &fresh)).await;
    assert_eq!(browser.text("h1").await, "This link cannot be used");
    let older = issue_password_link(&**client, Scope::Any, user_id, 72, None)
        .await
        .unwrap();
    let newer = issue_password_link(&**client, Scope::Any, user_id, 72, None)
        .await
        .unwrap();
    browser.open(&link_url(&app, &older)).await;
    assert_eq!(browser.text("h1").await, "This link cannot be used");
    browser.open(&link_url(&app, &newer)).await;
    assert_eq!(browser.text("h1").await, "Set your password");
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn forms_without_their_token_are_refused_and_other_organisations_pages_do_not_exist() {
    let app = spawn_app().await;
    let a = app.organisation("Alder Care", OrgKind::Provider).await;
    let b = app.organisation("Birch Care", OrgKind::Provider).await;
    let (alder_user, _) = person(
        &app,
        &a,
        "Alder Person",
        "person@alder.example",
        Role::ProviderStaff,
    )
    .await;
    let (_, link) = person(
        &app,
        &b,
        "Birch Admin",
        "admin@birch.example",
        Role::ProviderAdmin,
    )
    .await;
    let (birch_staff, _) = person(
        &app,
        &b,
        "Birch Staff",
        "staff@birch.example",
        Role::ProviderStaff,
    )
    .await;
    let browser = Browser::start().await;
    browser.open(&link_url(&app, &link)).await;
    set_password(&browser, "birch admin password", "birch admin password").await;
    sign_in(
        &browser,
        &app,
        "admin@birch.example",
        "birch admin password",
    )
    .await;
    assert_eq!(browser.text("h1").await, "Birch Care");

    // A form posted without its token: refused with a 403 page, and nothing happens (still
    // signed in).
    browser
        .client
        .execute(
            "document.querySelector('form.sign-out input[name=csrf]').remove()",
            vec![],
        )
        .await
        .unwrap();
    browser.submit("form.sign-out button").await;
    assert_eq!(browser.text("h1").await, "This form could not be sent");
    browser.open(&app.url("/console/")).await;
    assert_eq!(browser.text("h1").await, "Birch Care", "still signed in");
    // And with another session's token.
    let cookie = format!(
        "{}={}",
        homeward::console::SESSION_COOKIE,
        session_cookie(&browser).await.unwrap()
    );
    for body in [
        "csrf=".to_owned(),
        format!(
            "csrf={}",
            homeward::auth::sessions::form_token(&"0".repeat(64))
        ),
    ] {
        let r = app
            .client
            .post(app.url("/console/sign-out"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{body}");
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("This form could not be sent"));
    }

    // The users list holds this organisation's users only.
    browser.open(&app.url("/console/users")).await;
    let list = browser.text("main").await;
    assert!(
        list.contains("Birch Staff") && list.contains("Birch Admin"),
        "{list}"
    );
    assert!(!list.contains("Alder"), "{list}");
    // Another organisation's user is a page that does not exist, as a missing one is.
    let get = |path: String| {
        let request = app.client.get(app.url(&path)).header("cookie", &cookie);
        async move { request.send().await.unwrap() }
    };
    for path in [
        format!("/console/users/{alder_user}"),
        "/console/users/999999".to_owned(),
        "/console/users/x".to_owned(),
        "/console/no-such-page".to_owned(),
    ] {
        let r = get(path.clone()).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let body = r.text().await.unwrap();
        assert!(
            body.contains("Page not found") && !body.contains("Alder"),
            "{path}"
        );
    }
    browser
        .open(&app.url(&format!("/console/users/{alder_user}")))
        .await;
    assert_eq!(browser.text("h1").await, "Page not found");
    assert_eq!(
        get(format!("/console/users/{birch_staff}")).await.status(),
        200
    );

    // An admin makes a set-password link from a user's page (a form with its token).
    browser
        .open(&app.url(&format!("/console/users/{birch_staff}")))
        .await;
    browser.submit("main form button").await;
    let url = browser
        .find("#link")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(
        url.starts_with(&app.url("/console/set-password?token=")),
        "{url}"
    );

    // Usable at 360 px wide, with nothing cut off sideways.
    browser.client.set_window_size(360, 800).await.unwrap();
    for path in ["/console/", "/console/users", "/console/sign-in"] {
        browser.open(&app.url(path)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(fits_the_window(&browser).await, "{path} at 360 px");
    }
    browser.close().await;
    app.stop().await;
}

/// `POST /v1/users/{id}/password-link`: a provider admin's, for their own organisation's users
/// with an email address; the link opens the set-password page, once the newer one replaced it
/// no more.
#[tokio::test]
async fn admins_issue_password_links_over_the_api() {
    let app = spawn_app().await;
    let (org, admin) = app
        .org_with_user("Links Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let staff = app.user(&org, "Links staff", Role::ProviderStaff).await;
    let (other, _) = app
        .org_with_user("Other Links Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let client = app.pool.get().await.unwrap();
    let id_of = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one("SELECT id FROM users WHERE name = $1", &[&name])
                .await
                .unwrap()
                .get::<_, i32>(0)
        }
    };
    let staff_id = id_of("Links staff").await;
    let other_id = id_of("Other Links Org user").await;
    let path = |id: i32| format!("/v1/users/{id}/password-link");
    let (status, body) = app
        .post_json(&path(staff_id), &admin, &serde_json::json!({}))
        .await;
    assert_eq!(status, 409, "no email address yet: {body}");
    set_user_email(&**client, Scope::Any, staff_id, "staff@links.example")
        .await
        .unwrap();
    let (status, first) = app
        .post_json(&path(staff_id), &admin, &serde_json::json!({}))
        .await;
    assert_eq!(status, 201, "{first}");
    let url = first["url"].as_str().unwrap();
    assert!(
        url.starts_with(&app.url("/console/set-password?token=")),
        "{url}"
    );
    let page = app.client.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // The link in the address bar never leaks through a Referer, and the page runs nothing
    // from elsewhere.
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(page.text().await.unwrap().contains("staff@links.example"));
    let (status, _) = app
        .post_json(&path(staff_id), &admin, &serde_json::json!({}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(app.client.get(url).send().await.unwrap().status(), 410);
    // Not for staff, nor for another organisation's user.
    let (status, _) = app
        .post_json(&path(staff_id), &staff, &serde_json::json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .post_json(&path(other_id), &admin, &serde_json::json!({}))
        .await;
    assert_eq!(status, 404);
    let _ = other;

    // The forms of people not signed in carry a token too: without it, or with one the
    // browser's cookie does not hold, a sign-in is refused before the password is looked at.
    let token = first["url"]
        .as_str()
        .unwrap()
        .rsplit('=')
        .next()
        .unwrap()
        .to_owned();
    for (cookie, body) in [
        (None, "email=a%40b.c&password=x".to_owned()),
        (
            Some(format!("homeward_form={}", "a".repeat(64))),
            format!("csrf={}&email=a%40b.c&password=x", "b".repeat(64)),
        ),
        (
            None,
            format!(
                "csrf={}&token={token}&password=x&confirmation=x",
                "b".repeat(64)
            ),
        ),
    ] {
        for path in ["/console/sign-in", "/console/set-password"] {
            let mut request = app
                .client
                .post(app.url(path))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone());
            if let Some(cookie) = &cookie {
                request = request.header("cookie", cookie);
            }
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 403, "{path} {body}");
        }
    }
    let failures: i64 = client
        .query_one("SELECT count(*) FROM sign_in_failures", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(failures, 0, "refused forms are not sign-in attempts");
    app.stop().await;
}

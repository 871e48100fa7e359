//! What the console's browser and HTTP tests share: users who sign in with a password, signing
//! in through the sign-in page, a session made as signing in makes one, and pictures of
//! pages for the docs.

use homeward::auth::password::{issue_password_link, set_user_email};
use homeward::auth::{self, Role, Scope};
use homeward_testkit::browser::Browser;
use homeward_testkit::TestApp;

pub(crate) const PASSWORD: &str = "a console password for tests";

/// A user of `role` in `org` who signs in with `email`; returns (user id, API token).
pub(crate) async fn user_with_password(
    app: &TestApp,
    browser: Option<&Browser>,
    org: &auth::Organisation,
    name: &str,
    email: &str,
    role: Role,
) -> (i32, String) {
    let client = app.pool.get().await.unwrap();
    let (id, token) = auth::create_user(&**client, org, name, role).await.unwrap();
    set_user_email(&**client, Scope::Any, id, email)
        .await
        .unwrap();
    if let Some(browser) = browser {
        let link = issue_password_link(&**client, Scope::Any, id, 72, None)
            .await
            .unwrap();
        browser.open(&link.url(&app.url(""))).await;
        browser.fill("#password", PASSWORD).await;
        browser.fill("#confirmation", PASSWORD).await;
        browser.submit("form.form button[type=submit]").await;
    }
    (id, token)
}

/// Signs in through the sign-in page with `email` and [`PASSWORD`].
pub(crate) async fn sign_in(browser: &Browser, app: &TestApp, email: &str) {
    browser.open(&app.url("/console/sign-in")).await;
    browser.fill("#email", email).await;
    browser.fill("#password", PASSWORD).await;
    browser.submit("form.form button[type=submit]").await;
}

/// A session for `user_id`, as signing in makes one; returns the `Cookie` header value and
/// the form token its pages carry.
pub(crate) async fn session(app: &TestApp, user_id: i32) -> (String, String) {
    let client = app.pool.get().await.unwrap();
    let session = homeward::auth::sessions::open_session(&**client, user_id, 12, 30)
        .await
        .unwrap();
    (
        format!("{}={}", homeward::console::SESSION_COOKIE, session.token),
        homeward::auth::sessions::form_token(&session.token),
    )
}

/// Saves a picture of the page as `<name>.png` in the folder `HOMEWARD_SCREENSHOTS` names, if
/// it names one (for the docs' pictures); otherwise does nothing.
pub(crate) async fn screenshot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("HOMEWARD_SCREENSHOTS") {
        let png = browser.client.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

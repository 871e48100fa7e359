//! Devices administered in the console, in a real headless Chromium at phone width, checked
//! with a real MQTT client: an admin registers a device from the devices page and the secret
//! shown once lets it connect; from the device's page a new secret replaces the old one at
//! once, and disabling refuses its connections until it is enabled. A duplicate id is
//! refused with the reason on the page; staff see the device but none of its forms; each
//! change leaves the API's own audit row.

use homeward::auth::{OrgKind, Role};
use homeward_testkit::browser::Browser;
use homeward_testkit::mqtt::{connect, device_options};
use homeward_testkit::{spawn_app, TestApp};
use rumqttc::ConnectionError;

use crate::console_kit::{sign_in, user_with_password};

async fn audit_count(app: &TestApp, action: &str, uid: &str) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = $1 AND object_id = $2",
            &[&action, &uid],
        )
        .await
        .unwrap()
        .get(0)
}

/// Whether the broker lets `uid` connect with `secret`.
async fn connects(app: &TestApp, uid: &str, secret: &str) -> bool {
    match connect(device_options(app, uid, secret)).await {
        Ok(_) => true,
        Err(ConnectionError::ConnectionRefused(_)) => false,
        Err(e) => panic!("neither connected nor refused: {e:?}"),
    }
}

async fn secret_shown(browser: &Browser) -> String {
    browser
        .find("#secret")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn an_admin_registers_rotates_disables_and_enables_a_device_in_the_console() {
    let app = spawn_app().await;
    let org = app.organisation("Larch Care", OrgKind::Provider).await;
    let browser = Browser::start_sized(390, 844).await;
    let (_, admin_token) = user_with_password(
        &app,
        Some(&browser),
        &org,
        "Ada Admin",
        "ada@larch.example",
        Role::ProviderAdmin,
    )
    .await;
    sign_in(&browser, &app, "ada@larch.example").await;

    // Registered from the list; the secret shown once connects.
    browser.open(&app.url("/console/devices")).await;
    browser.fill("#uid", "pendant-larch-1").await;
    browser
        .find("#kind")
        .await
        .select_by_value("pendant")
        .await
        .unwrap();
    browser.submit("#register-form button").await;
    assert!(browser.text(".notice").await.contains("is registered"));
    assert!(
        !browser.scrolls_sideways().await,
        "{}",
        browser.sideways_culprits().await
    );
    let first = secret_shown(&browser).await;
    assert!(connects(&app, "pendant-larch-1", &first).await);
    assert_eq!(
        audit_count(&app, "device.create", "pendant-larch-1").await,
        1
    );
    let (_, device) = app
        .get_json("/v1/devices/pendant-larch-1", &admin_token)
        .await;
    assert_eq!(device["kind"], "pendant", "{device}");

    // The same id again: refused, with the reason on the page.
    browser.open(&app.url("/console/devices")).await;
    browser.fill("#uid", "pendant-larch-1").await;
    browser.submit("#register-form button").await;
    let problem = browser.text(".problem").await;
    assert!(problem.contains("already exists"), "{problem}");

    // A new secret: the old one is refused at once, the new one connects.
    browser
        .open(&app.url("/console/devices/pendant-larch-1"))
        .await;
    browser.submit("#rotate-form button").await;
    let second = secret_shown(&browser).await;
    assert_ne!(first, second);
    assert!(!connects(&app, "pendant-larch-1", &first).await);
    assert!(connects(&app, "pendant-larch-1", &second).await);
    assert_eq!(
        audit_count(&app, "device.rotate_secret", "pendant-larch-1").await,
        1
    );

    // Disabled: refused until enabled.
    browser
        .open(&app.url("/console/devices/pendant-larch-1"))
        .await;
    browser.submit("#disable-form button").await;
    assert!(browser.text(".notice").await.contains("Disabled"));
    assert!(browser
        .text("main")
        .await
        .contains("Disabled: it cannot connect"));
    assert!(!connects(&app, "pendant-larch-1", &second).await);
    browser.submit("#enable-form button").await;
    assert!(browser.text(".notice").await.contains("Enabled"));
    assert!(connects(&app, "pendant-larch-1", &second).await);
    assert_eq!(
        audit_count(&app, "device.disable", "pendant-larch-1").await,
        1
    );
    assert_eq!(
        audit_count(&app, "device.enable", "pendant-larch-1").await,
        1
    );
    browser.close().await;

    // Staff see the device but none of its forms, and cannot post them.
    let staff = Browser::start_sized(390, 844).await;
    user_with_password(
        &app,
        Some(&staff),
        &org,
        "Sam Staff",
        "sam@larch.example",
        Role::ProviderStaff,
    )
    .await;
    sign_in(&staff, &app, "sam@larch.example").await;
    staff.open(&app.url("/console/devices")).await;
    let list = staff.text("main").await;
    assert!(list.contains("pendant-larch-1"), "{list}");
    assert!(!list.contains("Register a device"), "{list}");
    staff
        .open(&app.url("/console/devices/pendant-larch-1"))
        .await;
    let page = staff.text("main").await;
    assert!(page.contains("Pendant"), "{page}");
    for form in [
        "Give it a new secret",
        "Disable the device",
        "Save the link",
    ] {
        assert!(!page.contains(form), "{form}: {page}");
    }
    staff.close().await;
    assert!(connects(&app, "pendant-larch-1", &second).await);
    app.stop().await;
}

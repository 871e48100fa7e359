//! TLS with real clients: a self-signed pair from `homeward admin make-self-signed`, curl over
//! HTTPS, mosquitto_pub over `mqtts` to the embedded broker, Homeward's own client to Mosquitto
//! over `mqtts://`, and bad TLS settings.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use homeward::auth::{OrgKind, Role};
use homeward::config::Secret;
use homeward_testkit::cluster::TestServer;
use homeward_testkit::db::{event_counts, url_of};
use homeward_testkit::process::ServeProcess;
use homeward_testkit::{curl_ok, eventually, spawn_app_with, test_settings, Mosquitto};

use crate::helpers::homeward;

/// A self-signed pair for localhost and 127.0.0.1, made by the admin command.
fn self_signed_pair() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = homeward()
        .args(["admin", "make-self-signed", "--out"])
        .arg(dir.path())
        .args(["--host", "localhost"])
        .output()
        .expect("homeward runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "make-self-signed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("PRIVATE KEY"),
        "the key is not printed: {stdout}"
    );
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    assert!(stdout.contains(&*cert.to_string_lossy()), "{stdout}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is readable by its owner only");
    // Run again, it refuses to replace them.
    let again = homeward()
        .args(["admin", "make-self-signed", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    (dir, cert, key)
}

/// mosquitto_pub over TLS (QoS 1) with the device's credentials; true if it exited with success.
async fn mosquitto_pub_tls(
    port: u16,
    trust: &[&str],
    device: Option<(&str, &str)>,
    topic: &str,
    message: &str,
) -> bool {
    let mut cmd = tokio::process::Command::new("mosquitto_pub");
    cmd.args(trust)
        .args(["-h", "localhost", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", topic, "-m", message]);
    if let Some((uid, secret)) = device {
        cmd.args(["-i", uid, "-u", uid, "-P", secret]);
    }
    cmd.stderr(Stdio::null())
        .status()
        .await
        .expect("mosquitto_pub is installed")
        .success()
}

fn event(seq: u32) -> String {
    let now = chrono::Utc::now().timestamp_millis();
    format!("{{\"seq\":{seq},\"t\":{now},\"kind\":\"smoke\"}}")
}

#[tokio::test]
async fn https_and_mqtts_on_the_embedded_broker_with_real_clients() {
    let (_dir, cert, key) = self_signed_pair();
    let cafile = cert.to_string_lossy().into_owned();
    let mut settings = test_settings();
    settings.tls.cert_file = Some(cert.clone());
    settings.tls.key_file = Some(key);
    settings.mqtt.embedded_tls_listen = "127.0.0.1:0".parse().unwrap();
    let app = spawn_app_with(settings).await;

    // HTTPS: curl trusts the certificate it is given, and not without it.
    let url = format!("https://localhost:{}/healthz", app.http.port());
    assert!(curl_ok(&["--cacert", &cafile, &url]).await);
    let by_ip = format!("https://127.0.0.1:{}/healthz", app.http.port());
    assert!(
        curl_ok(&["--cacert", &cafile, &by_ip]).await,
        "127.0.0.1 is named too"
    );
    let untrusted = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10", &url])
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert_eq!(
        untrusted.status.code(),
        Some(60),
        "certificate verification fails: {}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    // The HTTP port speaks only TLS.
    let plain = format!("http://127.0.0.1:{}/healthz", app.http.port());
    assert!(!curl_ok(&[&plain]).await);

    // MQTT over TLS to the embedded broker: the event is stored.
    let (org, _) = app
        .org_with_user("TLS Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    let secret = app.device(&org, "hub-t1", "hub").await;
    let tls_port = app.mqtt_tls.expect("an mqtts listener").port();
    let topic = "homeward/v1/hub-t1/events";
    assert!(
        mosquitto_pub_tls(
            tls_port,
            &["--cafile", &cafile],
            Some(("hub-t1", &secret)),
            topic,
            &event(1)
        )
        .await,
        "mosquitto_pub --cafile publishes"
    );
    let stored = eventually(Duration::from_secs(10), || async {
        (event_counts(&app.pool, "hub-t1").await == (1, 1)).then_some(())
    })
    .await;
    assert!(stored.is_some(), "the event published over TLS is stored");
    // Trusting only the system's roots, the self-signed certificate is refused.
    assert!(
        !mosquitto_pub_tls(
            tls_port,
            &["--capath", "/etc/ssl/certs"],
            Some(("hub-t1", &secret)),
            topic,
            &event(2)
        )
        .await
    );
    // A wrong secret is still refused inside TLS.
    assert!(
        !mosquitto_pub_tls(
            tls_port,
            &["--cafile", &cafile],
            Some(("hub-t1", "wrong")),
            topic,
            &event(3)
        )
        .await
    );
    // The plain listener stays, on loopback, for Homeward's own client.
    assert_ne!(app.mqtt.port, tls_port);
    assert_eq!(event_counts(&app.pool, "hub-t1").await, (1, 1));
    app.stop().await;
}

#[tokio::test]
async fn homewards_client_reaches_an_external_broker_over_mqtts() {
    let (_dir, cert, key) = self_signed_pair();
    let cafile = cert.to_string_lossy().into_owned();
    let broker = Mosquitto::start_tls(&cert, &key);
    let tls_port = broker.tls_port.unwrap();
    let mut settings = test_settings();
    settings.mqtt.url = Some(Secret::new(format!("mqtts://localhost:{tls_port}")));
    settings.mqtt.ca_file = Some(cert.clone());
    settings.mqtt.client_id = format!("homeward-test-{tls_port}");
    // Ready means Homeward's subscriber is connected, here over TLS.
    let app = spawn_app_with(settings).await;
    assert!(app.mqtt.tls);
    let (org, _) = app
        .org_with_user("Mosq TLS Org", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    app.device(&org, "hub-mt1", "hub").await;
    assert!(
        mosquitto_pub_tls(
            tls_port,
            &["--cafile", &cafile],
            None,
            "homeward/v1/hub-mt1/events",
            &event(1)
        )
        .await
    );
    let stored = eventually(Duration::from_secs(10), || async {
        (event_counts(&app.pool, "hub-mt1").await == (1, 1)).then_some(())
    })
    .await;
    assert!(
        stored.is_some(),
        "the event reached Homeward through Mosquitto's TLS listener"
    );
    app.stop().await;
}

/// Without `mqtt.ca_file` the system's roots are trusted, which a self-signed broker certificate
/// does not chain to: Homeward's client does not connect, so the application never gets ready.
#[tokio::test]
async fn homewards_client_refuses_an_untrusted_broker_certificate() {
    let (_dir, cert, key) = self_signed_pair();
    let broker = Mosquitto::start_tls(&cert, &key);
    let tls_port = broker.tls_port.unwrap();
    let mut settings = test_settings();
    settings.mqtt.url = Some(Secret::new(format!("mqtts://localhost:{tls_port}")));
    settings.mqtt.client_id = format!("homeward-test-{tls_port}");
    let server = TestServer::get().await.unwrap();
    let pool = homeward::db::build_pool(server.fresh_database().await.unwrap(), 8, 5);
    let app = homeward::startup::Application::build_with_database(
        settings,
        homeward::db::Database::from_pool(pool),
    )
    .await
    .expect("starts; the broker is only unreachable");
    let readyz = format!("http://{}/readyz", app.http_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    // The same set-up with mqtt.ca_file is ready well within this (the test above).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = reqwest::get(&readyz).await.unwrap().status();
    assert_eq!(
        status, 503,
        "not ready: the broker's certificate is not trusted"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// `serve` with bad TLS settings stops with one line naming the setting, before starting
/// anything, and never shows the key.
#[test]
fn bad_tls_settings_stop_start_up_with_one_clear_line() {
    let (dir, cert, key) = self_signed_pair();
    let (_other_dir, _, other_key) = self_signed_pair();
    let missing = dir.path().join("missing.pem");
    let data = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    type Case = (Vec<(&'static str, String)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("HOMEWARD__TLS__CERT_FILE", s(&missing)),
                ("HOMEWARD__TLS__KEY_FILE", s(&key)),
            ],
            "tls.cert_file",
        ),
        (
            vec![("HOMEWARD__TLS__CERT_FILE", s(&cert))],
            "tls.cert_file and tls.key_file",
        ),
        (
            vec![
                ("HOMEWARD__TLS__CERT_FILE", s(&cert)),
                ("HOMEWARD__TLS__KEY_FILE", s(&cert)),
            ],
            "tls.key_file",
        ),
        (
            vec![
                ("HOMEWARD__TLS__CERT_FILE", s(&cert)),
                ("HOMEWARD__TLS__KEY_FILE", s(&other_key)),
            ],
            "not the private key",
        ),
        (vec![("HOMEWARD__MQTT__CA_FILE", s(&cert))], "mqtt.ca_file"),
        (
            vec![
                ("HOMEWARD__MQTT__URL", "mqtts://localhost".to_string()),
                ("HOMEWARD__MQTT__CA_FILE", s(&missing)),
            ],
            "mqtt.ca_file",
        ),
    ];
    for (env, needle) in cases {
        let out = homeward()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .arg("--data-dir")
            .arg(data.path())
            .arg("serve")
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} must fail");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line for {env:?}: {stderr}");
        assert_eq!(
            lines[0].matches(needle).count(),
            1,
            "`{needle}` once in: {}",
            lines[0]
        );
        assert!(!lines[0].contains("PRIVATE KEY"), "{}", lines[0]);
    }
    // Nothing was started: no embedded PostgreSQL cluster was created.
    assert!(!data.path().join("postgres").exists());
}

/// `serve` with a certificate prints `https://` and `mqtts://` addresses, and they answer.
#[tokio::test]
async fn serve_prints_https_and_mqtts_addresses() {
    let (_dir, cert, key) = self_signed_pair();
    let server = TestServer::get().await.unwrap();
    let url = url_of(&server.fresh_database().await.unwrap());
    let data = tempfile::tempdir().unwrap();
    let mut cmd = homeward();
    cmd.env("HOMEWARD__DATABASE__URL", &url)
        .env("HOMEWARD__TLS__CERT_FILE", &cert)
        .env("HOMEWARD__TLS__KEY_FILE", &key)
        .env("HOMEWARD__MQTT__EMBEDDED_TLS_LISTEN", "127.0.0.1:0")
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "serve",
        ])
        .stderr(Stdio::inherit());
    let serve = ServeProcess::start(cmd, Duration::from_secs(60))
        .await
        .expect("serve prints its addresses");
    let printed = serve.banner.join("\n");
    let field = |name: &str| {
        serve
            .printed(name)
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{name} in {printed}"))
    };
    let api = field("HTTP API:");
    let mqtts = field("MQTT TLS:");
    assert!(api.starts_with("https://127.0.0.1:"), "{printed}");
    assert!(mqtts.starts_with("mqtts://127.0.0.1:"), "{printed}");
    assert!(
        field("MQTT broker:").starts_with("mqtt://127.0.0.1:"),
        "{printed}"
    );
    let healthz = format!("{}healthz", api.trim_end_matches("v1/"));
    assert!(
        curl_ok(&["--cacert", &cert.to_string_lossy(), &healthz]).await,
        "{healthz}"
    );
    let status = serve
        .stop(Duration::from_secs(60))
        .await
        .expect("serve stops on SIGTERM");
    assert!(status.success(), "serve stops cleanly: {status:?}");
}

//! The `homeward` binary as an operator uses it: bad configuration, admin commands, and a full
//! `serve` on the embedded defaults that stops cleanly and reuses its data.

use std::process::{Command, Stdio};
use std::time::Duration;

use homeward_testkit::cluster::TestServer;
use homeward_testkit::db::{derived_snapshot, url_of};
use homeward_testkit::mqtt::{connect, device_options};
use homeward_testkit::process::ServeProcess;
use homeward_testkit::{eventually, spawn_app_on, test_settings};

use crate::helpers::homeward;

/// Runs to completion; returns (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_stops_start_up_with_one_clear_line() {
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("HOMEWARD__DATABASE__URL", "postgres://u@host:notaport/db")],
            vec!["serve"],
            "database.url",
        ),
        (
            vec![("HOMEWARD__MQTT__URL", "http://broker")],
            vec!["serve"],
            "mqtt.url",
        ),
        (
            vec![("HOMEWARD__HTTP__LISTNE", "127.0.0.1:1")],
            vec!["serve"],
            "listne",
        ),
        (
            vec![("HOMEWARD__HTTP__LISTEN", "not-an-address")],
            vec!["serve"],
            "listen",
        ),
        (
            vec![],
            vec!["--data-dir", "/proc/homeward-cannot-exist", "serve"],
            "data folder",
        ),
    ];
    for (env, args, needle) in cases {
        let mut cmd = homeward();
        cmd.envs(env.iter().copied()).args(&args);
        let (code, _, stderr) = run(&mut cmd);
        assert_ne!(code, 0, "{args:?} {env:?} must fail");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line for {env:?}: {stderr}");
        assert!(
            lines[0].to_lowercase().contains(needle),
            "`{needle}` in: {}",
            lines[0]
        );
    }
}

/// Every key of `Settings` as a file key (`section.key`), from the settings themselves.
fn setting_keys() -> Vec<String> {
    fn walk(prefix: &str, value: &serde_json::Value, keys: &mut Vec<String>) {
        match value.as_object() {
            Some(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, keys);
                }
            }
            None => keys.push(prefix.to_string()),
        }
    }
    let mut keys = Vec::new();
    let settings = serde_json::to_value(homeward::config::Settings::default()).unwrap();
    walk("", &settings, &mut keys);
    keys
}

/// An operator of an external database gets the roles and grants to review or apply, without
/// Homeward connecting anywhere (the database URL here cannot be reached).
#[test]
fn migrate_prints_the_roles_and_grants_without_connecting() {
    let (code, stdout, stderr) = run(homeward()
        .env("HOMEWARD__DATABASE__URL", "postgres://u:p@127.0.0.1:1/none")
        .args(["migrate", "--print-grants"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("CREATE ROLE homeward_app LOGIN NOBYPASSRLS"),
        "{stdout}"
    );
    assert!(
        stdout.contains("CREATE ROLE homeward_service LOGIN BYPASSRLS"),
        "{stdout}"
    );
    // The grants applied after every migration run, byte for byte.
    assert!(stdout.ends_with(homeward::db::roles::GRANTS), "{stdout}");
    assert!(
        stdout.contains("IN ('events', 'audit_log', 'comparison_event_withdrawals')"),
        "{stdout}"
    );
}

#[test]
fn help_documents_every_setting() {
    let keys = setting_keys();
    assert!(keys.len() > 50, "{keys:?}");
    let (code, stdout, _) = run(homeward().arg("--help"));
    assert_eq!(code, 0);
    assert!(stdout.contains("HOMEWARD__"));
    let configuration = include_str!("../../docs/configuration.md");
    for key in &keys {
        // A whole word: `alarms.answer_target_secs` does not document `..._share`.
        let documented = |text: &str| {
            text.match_indices(key.as_str()).any(|(i, _)| {
                let next = text[i + key.len()..].chars().next();
                !matches!(next, Some(c) if c.is_alphanumeric() || c == '_' || c == '.')
            })
        };
        assert!(documented(&stdout), "--help documents {key}");
        assert!(
            documented(configuration),
            "docs/configuration.md documents {key}"
        );
    }
    let (code, stdout, _) = run(homeward().args(["admin", "--help"]));
    assert_eq!(code, 0);
    for command in [
        "create-organisation",
        "create-user",
        "create-device",
        "make-self-signed",
    ] {
        assert!(stdout.contains(command), "{stdout}");
    }
}

#[tokio::test]
async fn admin_commands_create_what_they_say() {
    let server = TestServer::get().await.unwrap();
    let db = server.fresh_database().await.unwrap();
    let url = url_of(&db);
    let admin = |args: &[&str]| {
        let mut cmd = homeward();
        cmd.env("HOMEWARD__DATABASE__URL", &url)
            .arg("admin")
            .args(args);
        run(&mut cmd)
    };
    let (code, out, err) = admin(&[
        "create-organisation",
        "--name",
        "Care Co",
        "--kind",
        "provider",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = admin(&[
        "create-user",
        "--org",
        "Care Co",
        "--name",
        "Ann",
        "--role",
        "provider-admin",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let printed = |out: &str, label: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("`{label}` in {out}"))
            .trim()
            .to_string()
    };
    let token = printed(&out, "token: ");
    assert!(token.starts_with("hw_"), "{out}");
    assert!(
        !out.contains("set-password link"),
        "no link without an address: {out}"
    );
    let ann = printed(&out, "user ").split(' ').next().unwrap().to_owned();
    // With an email address: the token as before, and a one-time link at the console's address.
    let (code, out, err) = admin(&[
        "create-user",
        "--org",
        "Care Co",
        "--name",
        "Cat",
        "--role",
        "provider-staff",
        "--email",
        "cat@care.example",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(printed(&out, "token: ").starts_with("hw_"), "{out}");
    let link = printed(&out, "set-password link: ");
    let link_token = link
        .strip_prefix("http://127.0.0.1:8080/console/set-password?token=")
        .unwrap_or_else(|| panic!("{link}"));
    assert_eq!(link_token.len(), 64, "{link}");
    let (code, out, err) = admin(&[
        "password-link",
        "--user",
        &ann,
        "--email",
        "ann@care.example",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // A user made without an address gets one, and a link, later; an address is taken once,
    // whatever its case.
    assert_ne!(printed(&out, "set-password link: "), link);
    let (code, _, err) = admin(&[
        "create-user",
        "--org",
        "Care Co",
        "--name",
        "Dan",
        "--role",
        "provider-staff",
        "--email",
        "CAT@care.example",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (code, out, _) = admin(&[
        "create-device",
        "--org",
        "Care Co",
        "--uid",
        "hub-1",
        "--kind",
        "hub",
    ]);
    assert_eq!(code, 0);
    let secret = printed(&out, "secret: ");
    let (code, _, err) = admin(&[
        "create-organisation",
        "--name",
        "Care Co",
        "--kind",
        "provider",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = admin(&[
        "create-user",
        "--org",
        "Care Co",
        "--name",
        "Bob",
        "--role",
        "commissioner",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("does not belong"), "{err}");
    // A contract: between a commissioner and a provider, each reference once per commissioner.
    let (code, out, err) = admin(&[
        "create-organisation",
        "--name",
        "Shire Council",
        "--kind",
        "commissioner",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let contract = |reference: &str, commissioner: &str, provider: &str| {
        admin(&[
            "create-contract",
            "--commissioner",
            commissioner,
            "--provider",
            provider,
            "--reference",
            reference,
            "--starts-on",
            "2026-01-01",
        ])
    };
    let (code, out, err) = contract("SC-1", "Shire Council", "Care Co");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("`SC-1`: Shire Council commissions Care Co"),
        "{out}"
    );
    let contract_id: i32 = out
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a contract id in {out}"));
    let (code, _, err) = contract("SC-1", "Shire Council", "Care Co");
    assert_ne!(code, 0);
    assert!(err.contains("contract `SC-1` already exists"), "{err}");
    let (code, _, err) = contract("SC-2", "Care Co", "Shire Council");
    assert_ne!(code, 0);
    assert!(
        err.contains("a contract is between a commissioner and a provider"),
        "{err}"
    );

    // What was printed works: the token over HTTP, the secret over MQTT.
    let app = spawn_app_on(test_settings(), db).await;
    let me = app.get("/v1/me", Some(&token)).await;
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["user"]["name"], "Ann");
    assert_eq!(me["user"]["role"], "provider_admin");
    assert_eq!(me["organisation"]["name"], "Care Co");
    assert_eq!(me["organisation"]["kind"], "provider");
    // The contract is Care Co's: its provider reads its (still empty) terms.
    let terms = app
        .get(&format!("/v1/contracts/{contract_id}/terms"), Some(&token))
        .await;
    assert_eq!(terms.status(), 200);
    let terms = terms.json::<serde_json::Value>().await.unwrap();
    assert_eq!(terms["terms"], serde_json::json!({}));
    assert_eq!(terms["version"], serde_json::Value::Null);
    // The operator links the hub to a person (as the API's link does), and unlinks it; a hub
    // is never a worker's.
    let (status, person) = app
        .post_json(
            "/v1/people",
            &token,
            &serde_json::json!({"external_ref": "P-1"}),
        )
        .await;
    assert_eq!(status, 201, "{person}");
    let person = person["id"].to_string();
    let (code, out, err) = admin(&["link-device", "--uid", "hub-1", "--person", &person]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("device `hub-1` linked to person {person}")),
        "{out}"
    );
    let hub_person = || {
        let (app, token) = (&app, token.clone());
        async move { app.get_ok("/v1/devices/hub-1", &token).await["person_id"].clone() }
    };
    assert_eq!(hub_person().await.to_string(), person);
    let (code, _, err) = admin(&["link-device", "--uid", "hub-1", "--worker", "1"]);
    assert_ne!(code, 0);
    assert!(err.contains("only phones"), "{err}");
    let (code, out, err) = admin(&["link-device", "--uid", "hub-1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("not linked to anyone"), "{out}");
    assert_eq!(hub_person().await, serde_json::Value::Null);
    let connects = |secret: String| {
        let options = device_options(&app, "hub-1", &secret);
        async move { connect(options).await.is_ok() }
    };
    assert!(
        connects(secret.clone()).await,
        "the printed secret connects"
    );
    assert!(
        !connects("0".repeat(secret.len())).await,
        "another is refused"
    );
    app.stop().await;
}

async fn start_serve(data_dir: &std::path::Path) -> ServeProcess {
    let mut cmd = homeward();
    cmd.args(["--data-dir"])
        .arg(data_dir)
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "serve",
        ])
        .stderr(Stdio::inherit());
    ServeProcess::start(cmd, Duration::from_secs(120))
        .await
        .expect("serve printed its HTTP address")
}

/// SIGTERM; the exit code.
async fn stop(server: ServeProcess) -> i32 {
    let status = server.stop(Duration::from_secs(60)).await;
    let status = status.expect("serve did not stop within 60 s");
    status.code().unwrap_or(-1)
}

#[tokio::test]
async fn serve_runs_on_embedded_defaults_stops_cleanly_and_reuses_its_data() {
    let dir = tempfile::Builder::new()
        .prefix("homeward-serve-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let ready = Duration::from_secs(60);

    let server = start_serve(dir.path()).await;
    assert!(server.wait_ready(ready).await.is_ok(), "readyz answers 200");
    // An admin command reaches the running server's database.
    let (code, out, err) = run(homeward().arg("--data-dir").arg(dir.path()).args([
        "admin",
        "create-organisation",
        "--name",
        "Kept",
        "--kind",
        "provider",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(stop(server).await, 0, "clean exit on SIGTERM");
    assert!(
        !dir.path().join("postgres/postmaster.pid").exists(),
        "PostgreSQL stopped with it"
    );

    let server = start_serve(dir.path()).await;
    assert!(server.wait_ready(ready).await.is_ok());
    let (code, _, err) = run(homeward().arg("--data-dir").arg(dir.path()).args([
        "admin",
        "create-organisation",
        "--name",
        "Kept",
        "--kind",
        "provider",
    ]));
    assert_ne!(
        code, 0,
        "the organisation from the first run is still there"
    );
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(stop(server).await, 0);
    assert!(!dir.path().join("postgres/postmaster.pid").exists());
}

/// Live derivation makes a visit, an alarm with its history and a device's health; the
/// derived rows are then deleted, and `homeward rebuild` must bring back the same rows (a
/// visits or an alarms rebuild that derives nothing turns it red).
#[tokio::test]
async fn rebuild_recomputes_the_derived_tables() {
    use crate::visits::{ms, now_s, phone_sends, schedule, setup, HOME};
    use homeward_testkit::mqtt::publish_json;
    use serde_json::json;

    let server = TestServer::get().await.unwrap();
    let db = server.fresh_database().await.unwrap();
    let url = url_of(&db);
    let pool = homeward::db::build_pool(db.clone(), 2, 5);
    let app = spawn_app_on(test_settings(), db).await;
    let s = setup(&app, "CLI Rebuild", json!({})).await;
    let start = now_s() - chrono::Duration::minutes(40);
    schedule(&app, &s, "V-1", start, 30).await;
    phone_sends(
        &app,
        &s.phone,
        &s.secret,
        json!([
            {"seq": 1, "t": ms(start + chrono::Duration::minutes(5)), "kind": "check_in", "method": "gps", "visit": "V-1", "lat": HOME.0, "lon": HOME.1, "accuracy_m": 10.0, "fix_age_s": 2},
            {"seq": 2, "t": ms(start + chrono::Duration::minutes(30)), "kind": "check_out", "method": "gps", "visit": "V-1", "lat": HOME.0, "lon": HOME.1, "accuracy_m": 10.0, "fix_age_s": 2},
        ]),
    )
    .await;
    let pendant = app.device(&s.p.org, "pendant-cli", "pendant").await;
    let now = chrono::Utc::now().timestamp_millis();
    publish_json(
        &app,
        "pendant-cli",
        &pendant,
        vec![
            json!({"seq": 1, "t": now - 2000, "kind": "heartbeat", "battery": 80, "signal": -70, "interval_s": 900}),
            json!({"seq": 2, "t": now - 1000, "kind": "pendant_alarm"}),
        ],
    )
    .await;
    let derived = eventually(Duration::from_secs(20), || async {
        let d = derived_snapshot(&app.pool).await;
        let done = d.visits.len() == 1
            && d.visits[0].contains("\"check_out\": {")
            && d.alarms.len() == 1
            && d.device_health.len() == 1;
        done.then_some(d)
    })
    .await;
    let before = derived.expect("live derivation made a visit, an alarm and device health");
    assert!(!before.alarm_events.is_empty());
    app.stop().await;

    let wipe = || async {
        let client = pool.get().await.unwrap();
        client
            .batch_execute(
                "DELETE FROM visits; DELETE FROM alarm_events; DELETE FROM alarms; \
                 DELETE FROM device_health; DELETE FROM alarm_cursor; DELETE FROM evv_checkpoint;",
            )
            .await
            .unwrap();
    };
    wipe().await;
    let rebuild = |only: Option<&str>| {
        let mut cmd = homeward();
        cmd.env("HOMEWARD__DATABASE__URL", &url).arg("rebuild");
        if let Some(only) = only {
            cmd.args(["--only", only]);
        }
        run(&mut cmd)
    };
    let (code, out, err) = rebuild(None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("visits: 1 visits from 1 devices")
            && out.contains("alarms: 1 alarms from 2 events"),
        "{out}"
    );
    assert_eq!(derived_snapshot(&pool).await, before);

    // `--only alarms` leaves visits alone.
    wipe().await;
    let (code, out, err) = rebuild(Some("alarms"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("visits:"), "{out}");
    let after = derived_snapshot(&pool).await;
    assert!(after.visits.is_empty());
    assert_eq!(
        (after.alarms, after.alarm_events, after.device_health),
        (before.alarms, before.alarm_events, before.device_health)
    );
}

//! The `homeward` binary as an operator uses it: bad configuration, admin commands, and a full
//! `serve` on the embedded defaults that stops cleanly and reuses its data.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use homeward::db::test_cluster::TestServer;

use crate::helpers::url_of;

fn homeward() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homeward"));
    // Nothing from the developer's environment leaks in.
    for (key, _) in std::env::vars() {
        if key.starts_with("HOMEWARD") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

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

#[test]
fn help_documents_every_setting() {
    let (code, stdout, _) = run(homeward().arg("--help"));
    assert_eq!(code, 0);
    for key in [
        "database.url",
        "mqtt.url",
        "http.listen",
        "storage.retention_days",
        "log.format",
        "tls.cert_file",
        "tls.key_file",
        "mqtt.embedded_tls_listen",
        "mqtt.ca_file",
        "HOMEWARD__",
    ] {
        assert!(stdout.contains(key), "--help mentions {key}");
    }
    let (code, stdout, _) = run(homeward().args(["admin", "--help"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("create-device"));
    assert!(stdout.contains("make-self-signed"));
}

#[tokio::test]
async fn admin_commands_create_what_they_say() {
    let server = TestServer::get().await.unwrap();
    let url = url_of(&server.fresh_database().await.unwrap());
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
    assert!(out.lines().any(|l| l.starts_with("token: hw_")), "{out}");
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
    assert!(out.lines().any(|l| l.starts_with("secret: ")), "{out}");
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
}

struct Server {
    child: Child,
    http: String,
}

fn start_serve(data_dir: &std::path::Path) -> Server {
    let mut child = homeward()
        .args(["--data-dir"])
        .arg(data_dir)
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "serve",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut http = None;
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.trim().strip_prefix("HTTP API:") {
            http = Some(rest.trim().trim_end_matches("/v1/").to_string());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        http: http.expect("serve printed its HTTP address"),
    }
}

fn stop(mut server: Server) -> i32 {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "serve did not stop within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn serve_runs_on_embedded_defaults_stops_cleanly_and_reuses_its_data() {
    let dir = tempfile::Builder::new()
        .prefix("homeward-serve-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let client = reqwest::Client::new();
    let ready = |http: String| {
        let client = client.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(r) = client.get(format!("{http}/readyz")).send().await {
                    if r.status() == 200 {
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            false
        }
    };

    let server = start_serve(dir.path());
    assert!(ready(server.http.clone()).await, "readyz answers 200");
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
    assert_eq!(stop(server), 0, "clean exit on SIGTERM");
    assert!(
        !dir.path().join("postgres/postmaster.pid").exists(),
        "PostgreSQL stopped with it"
    );

    let server = start_serve(dir.path());
    assert!(ready(server.http.clone()).await);
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
    assert_eq!(stop(server), 0);
    assert!(!dir.path().join("postgres/postmaster.pid").exists());
}

#[tokio::test]
async fn rebuild_recomputes_the_derived_tables() {
    let server = TestServer::get().await.unwrap();
    let url = url_of(&server.fresh_database().await.unwrap());
    let mut cmd = homeward();
    cmd.env("HOMEWARD__DATABASE__URL", &url).arg("rebuild");
    let (code, out, err) = run(&mut cmd);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("visits: 0 visits") && out.contains("alarms: 0 alarms"),
        "{out}"
    );
    let mut cmd = homeward();
    cmd.env("HOMEWARD__DATABASE__URL", &url)
        .args(["rebuild", "--only", "alarms"]);
    let (code, out, _) = run(&mut cmd);
    assert_eq!(code, 0);
    assert!(!out.contains("visits:"));
}

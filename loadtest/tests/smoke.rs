//! The smoke scenario end to end: a real PostgreSQL, the real `homeward serve`, simulated
//! devices over MQTT and phones over HTTP; zero loss and a written report. No timing claims.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `homeward` binary the workspace build put next to this package's binary.
fn homeward_bin() -> PathBuf {
    let loadtest = PathBuf::from(env!("CARGO_BIN_EXE_homeward-loadtest"));
    let dir = loadtest.parent().expect("a folder");
    let bin = dir.join("homeward");
    assert!(
        bin.is_file(),
        "no `homeward` binary at {}: build the workspace first (`cargo build --workspace` or `cargo nextest run --workspace`)",
        bin.display()
    );
    bin
}

/// Runs the harness on a bundled scenario file into a fresh reports folder, bounded by 240 s;
/// returns the folder (to remove at the end) and the files the run wrote there. Fails the
/// test if the harness fails.
fn run_scenario(name: &str, file: &str) -> (PathBuf, Vec<PathBuf>) {
    let reports =
        std::env::temp_dir().join(format!("homeward-loadtest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&reports);
    std::fs::create_dir_all(&reports).unwrap();
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file);
    let mut child = Command::new(env!("CARGO_BIN_EXE_homeward-loadtest"))
        .arg(&scenario)
        .arg("--homeward-bin")
        .arg(homeward_bin())
        .arg("--reports-dir")
        .arg(&reports)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the harness starts");
    // Bounded: the run stops by itself well within this.
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {name} run did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    println!("{stdout}");
    assert!(status.success(), "the harness failed ({status}):\n{stdout}");
    let files = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    (reports, files)
}

/// The JSON report among a run's files.
fn json_report(files: &[PathBuf]) -> serde_json::Value {
    let json = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a JSON report");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn the_smoke_scenario_loses_nothing_and_writes_its_report() {
    let (reports, files) = run_scenario("smoke", "scenarios/smoke.toml");
    let report = json_report(&files);
    assert!(
        files
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "svg")),
        "an SVG chart"
    );
    let v = &report["verification"];
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["duplicated"], 0, "{v}");
    assert_eq!(v["unexpected"], 0, "{v}");
    assert_eq!(v["unacked_at_end"], 0, "{v}");
    assert_eq!(report["zero_loss"], true);
    let offered = report["offered"]["events"].as_u64().unwrap();
    assert!(offered > 0);
    assert_eq!(v["offered_pairs"].as_u64().unwrap(), offered);
    assert_eq!(v["stored_pairs"].as_u64().unwrap(), offered);
    assert!(
        report["offered"]["http_events"].as_u64().unwrap() > 0,
        "phones took part"
    );
    let before = report["baseline_copy"]["rows_per_s"].as_f64().unwrap();
    let after = report["baseline_copy_after"]["rows_per_s"]
        .as_f64()
        .unwrap();
    assert!(before > 0.0 && after > 0.0, "{before} {after}");
    // The ratio is judged against the mean of the baselines before and after the load.
    assert_eq!(
        report["baseline_rows_per_s"].as_f64().unwrap(),
        ((before + after) / 2.0).round()
    );
    assert!(
        report["baseline_copy_after"]["rows"].as_u64().unwrap() > 0,
        "the second baseline inserted rows of its own"
    );
    assert!(!report["timeline"].as_array().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&reports);
}

#[test]
fn the_drain_scenario_drains_a_mosquitto_backlog_once_and_reports_its_costs() {
    let (reports, files) = run_scenario("drain", "scenarios/drain-smoke.toml");
    let report = json_report(&files);
    let v = &report["verification"];
    assert_eq!(
        (
            &v["offered_pairs"],
            &v["stored_pairs"],
            &v["lost"],
            &v["duplicated"]
        ),
        (&5000.into(), &5000.into(), &0.into(), &0.into()),
        "{v}"
    );
    let d = &report["drain"];
    assert_eq!(d["messages"], 5000, "{d}");
    assert!(d["drain_rate_per_s"].as_f64().unwrap() > 0.0, "{d}");
    assert!(d["ratio_to_copy"].as_f64().unwrap() > 0.0, "{d}");
    assert!(d["server_cpu_s_per_100k"].as_f64().unwrap() > 0.0, "{d}");
    assert!(d["postgres_cpu_s_per_100k"].as_f64().unwrap() > 0.0, "{d}");
    assert!(d["server_rss_peak_mb"].as_f64().unwrap() > 0.0, "{d}");
    let _ = std::fs::remove_dir_all(&reports);
}

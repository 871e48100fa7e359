//! Accuracy of the shipped detector configuration on the SisFall development subset.
//!
//! These are accuracy assertions, not timing ones: the whole dataset is read and every
//! trial run through the detector (a few seconds in a debug build).

use std::path::PathBuf;

use homeward_device_core::fall::FallConfig;
use homeward_fall_eval::{evaluate, load_dataset};

fn dataset_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/sisfall")
}

#[test]
fn shipped_detector_meets_sensitivity_and_specificity_on_sisfall() {
    let dir = dataset_dir();
    let (dataset, _skipped) = load_dataset(&dir)
        .unwrap_or_else(|e| panic!("the SisFall subset must be at {}: {e}", dir.display()));
    let report = evaluate(&dataset, FallConfig::default(), |_| true).expect("valid config");

    // The dataset is what the README says it is: 7 adults with falls, 12 subjects in all.
    assert_eq!(report.subjects.len(), 12, "{:?}", report.subjects);
    assert_eq!(report.fall_trials, 525);
    assert_eq!(report.adl_trials, 837);
    assert_eq!(report.per_code.len(), 34, "F01..F15 and D01..D19");

    assert!(
        report.sensitivity >= 0.95,
        "sensitivity {:.3} < 0.95\n{report}",
        report.sensitivity
    );
    assert!(
        report.specificity >= 0.95,
        "specificity {:.3} < 0.95\n{report}",
        report.specificity
    );
    // Every code is described (from Readme.txt or the built-in table).
    assert!(report.per_code.iter().all(|c| !c.description.is_empty()));
}

#[test]
fn missing_or_empty_dataset_is_a_clear_error() {
    let missing = dataset_dir().join("no-such-folder");
    let err = load_dataset(&missing).expect_err("missing folder");
    assert!(err.to_string().contains("does not exist"), "{err}");

    let empty =
        std::env::temp_dir().join(format!("homeward-fall-eval-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("temp dir");
    let err = load_dataset(&empty).expect_err("no recordings");
    assert!(err.to_string().contains("no recordings"), "{err}");
    let _ = std::fs::remove_dir(&empty);
}

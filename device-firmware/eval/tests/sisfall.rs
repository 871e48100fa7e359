//! Accuracy of the shipped detector configurations on the SisFall development subset.
//!
//! These are accuracy assertions, not timing ones: the whole dataset is read and every
//! trial run through the detector (a few seconds in a debug build). The waist preset was
//! tuned on SA01–SA04 and SE01–SE03; SA05–SA07 and SE04–SE05 were held out and are checked
//! on their own, with floors near the figures `device-firmware/README.md` reports.

use std::path::PathBuf;

use homeward_device_core::fall::FallConfig;
use homeward_fall_eval::{evaluate, load_dataset, resample};

/// Subjects left out of the waist preset's tuning.
const HELD_OUT: [&str; 5] = ["SA05", "SA06", "SA07", "SE04", "SE05"];

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

    // Tuning subjects, reported 297/300 falls and 7/482 ADLs with a false alarm.
    let tuning = evaluate(&dataset, FallConfig::default(), |s| !HELD_OUT.contains(&s))
        .expect("valid config");
    assert_eq!((tuning.fall_trials, tuning.adl_trials), (300, 482));
    assert!(tuning.falls_detected >= 296, "{tuning}");
    assert!(tuning.adl_trials_with_false_alarm <= 8, "{tuning}");
}

#[test]
fn waist_preset_holds_on_the_held_out_subjects() {
    let dir = dataset_dir();
    let (dataset, _) = load_dataset(&dir)
        .unwrap_or_else(|e| panic!("the SisFall subset must be at {}: {e}", dir.display()));
    let held = evaluate(&dataset, FallConfig::SISFALL_WAIST, |s| {
        HELD_OUT.contains(&s)
    })
    .expect("valid config");
    assert_eq!(held.subjects, HELD_OUT);
    assert_eq!((held.fall_trials, held.adl_trials), (225, 355));
    // Reported: 223 of 225 falls (99.1%), 4 of 355 ADLs with a false alarm (98.9%).
    assert!(held.falls_detected >= 222, "{held}");
    assert!(held.adl_trials_with_false_alarm <= 5, "{held}");
}

#[test]
fn pendant_preset_at_20_hz_on_sisfall() {
    // SisFall is a waist sensor; the pendant's thresholds on it, at a pendant's rate, are
    // a check that they are not specific to UMAFall's chest.
    let dir = dataset_dir();
    let (dataset, _) = load_dataset(&dir)
        .unwrap_or_else(|e| panic!("the SisFall subset must be at {}: {e}", dir.display()));
    let slow = resample(&dataset, 20).expect("200 Hz divides by 20");
    assert_eq!(
        slow.recordings[0].samples.len(),
        dataset.recordings[0].samples.len().div_ceil(10)
    );
    let config = FallConfig {
        counts_per_g: 256,
        up_axis: FallConfig::SISFALL_WAIST.up_axis,
        ..FallConfig::CHEST_PENDANT
    };
    let report = evaluate(&slow, config, |_| true).expect("valid config");
    // Reported: 503 of 525 falls (95.8%), 3 of 837 ADLs with a false alarm (99.6%).
    assert!(report.sensitivity >= 0.95, "{report}");
    assert!(report.specificity >= 0.99, "{report}");
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

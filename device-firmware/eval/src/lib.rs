//! Evaluation of the pendant fall detector on recorded trials.
//!
//! Two dataset layouts are read:
//!
//! - **SisFall** ([`load_dataset`]): any number of subfolders holding
//!   `<CODE>_<SUBJECT>_R<TRIAL>.csv.gz` files, one trial per file, one `x,y,z` sample in raw
//!   counts per line (ADXL345 at the waist, 200 Hz, 256 counts per g). Codes `Fxx` are
//!   falls, `Dxx` activities of daily living (ADLs).
//! - **UMAFall** ([`umafall::load`]), as published: one CSV per trial holding every sensor
//!   (chest, waist, wrist, ankle, a phone in the pocket); one position is read from each.
//!
//! A trial counts as detected if the detector raises a fall at any point in it: a fall trial
//! without one is a miss, an ADL trial with one a false alarm.
//!
//! The loaders read the recordings once; [`resample`] decimates them to a lower rate (a
//! slower pendant); [`evaluate`] runs one detector configuration over them (optionally only
//! some subjects) and returns a [`Report`].

pub mod umafall;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use homeward_device_core::fall::{FallConfig, FallDetector};
use serde::Serialize;

/// One trial: who did what, and the samples.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Activity code, e.g. `F01` or `D13` (SisFall), `forwardFall` or `Walking` (UMAFall).
    pub code: String,
    /// A fall (else an ADL).
    pub fall: bool,
    /// Name used in error lists, e.g. `F01_SA01_R03`.
    pub name: String,
    /// Subject, e.g. `SA01`.
    pub subject: String,
    /// Trial number within the code, from the `R<TRIAL>` part of the name.
    pub trial: u32,
    pub path: PathBuf,
    pub samples: Vec<[i16; 3]>,
}

impl Recording {
    pub fn is_fall(&self) -> bool {
        self.fall
    }
}

/// A dataset: recordings sorted by code, subject and trial, plus activity descriptions.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    /// Samples per second of every recording.
    pub sample_rate_hz: u16,
    /// Raw counts per g of every recording.
    pub counts_per_g: u16,
    pub recordings: Vec<Recording>,
    /// Code -> description.
    pub descriptions: BTreeMap<String, String>,
    /// Where the descriptions came from (`Readme.txt` or the built-in SisFall table).
    pub descriptions_source: String,
}

/// Why a dataset could not be read.
#[derive(Debug)]
pub enum EvalError {
    NotADirectory(PathBuf),
    NoRecordings(PathBuf),
    Io(PathBuf, std::io::Error),
    BadLine {
        path: PathBuf,
        line: usize,
        text: String,
    },
    /// A resampling rate that does not divide the recordings' rate.
    BadRate {
        from: u16,
        to: u16,
    },
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::NotADirectory(p) => write!(
                f,
                "dataset folder {} does not exist or is not a folder",
                p.display()
            ),
            EvalError::NoRecordings(p) => write!(
                f,
                "no recordings named <CODE>_<SUBJECT>_R<TRIAL>.csv.gz (code F01..F99 or D01..D99) under {}",
                p.display()
            ),
            EvalError::Io(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            EvalError::BadLine { path, line, text } => write!(
                f,
                "{} line {line}: expected `x,y,z` integers, found {text:?}",
                path.display()
            ),
            EvalError::BadRate { from, to } => write!(
                f,
                "cannot resample {from} Hz to {to} Hz: the new rate must divide the old one"
            ),
        }
    }
}

impl std::error::Error for EvalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EvalError::Io(_, e) => Some(e),
            _ => None,
        }
    }
}

/// SisFall's activity table (from its `Readme.txt`), used when the dataset folder has none.
pub const SISFALL_ACTIVITIES: &[(&str, &str)] = &[
    ("D01", "Walking slowly"),
    ("D02", "Walking quickly"),
    ("D03", "Jogging slowly"),
    ("D04", "Jogging quickly"),
    ("D05", "Walking upstairs and downstairs slowly"),
    ("D06", "Walking upstairs and downstairs quickly"),
    (
        "D07",
        "Slowly sit in a half height chair, wait a moment, and up slowly",
    ),
    (
        "D08",
        "Quickly sit in a half height chair, wait a moment, and up quickly",
    ),
    (
        "D09",
        "Slowly sit in a low height chair, wait a moment, and up slowly",
    ),
    (
        "D10",
        "Quickly sit in a low height chair, wait a moment, and up quickly",
    ),
    (
        "D11",
        "Sitting a moment, trying to get up, and collapse into a chair",
    ),
    (
        "D12",
        "Sitting a moment, lying slowly, wait a moment, and sit again",
    ),
    (
        "D13",
        "Sitting a moment, lying quickly, wait a moment, and sit again",
    ),
    (
        "D14",
        "Being on one's back change to lateral position, wait a moment, and change to one's back",
    ),
    ("D15", "Standing, slowly bending at knees, and getting up"),
    (
        "D16",
        "Standing, slowly bending without bending knees, and getting up",
    ),
    (
        "D17",
        "Standing, get into a car, remain seated and get out of the car",
    ),
    ("D18", "Stumble while walking"),
    (
        "D19",
        "Gently jump without falling (trying to reach a high object)",
    ),
    ("F01", "Fall forward while walking caused by a slip"),
    ("F02", "Fall backward while walking caused by a slip"),
    ("F03", "Lateral fall while walking caused by a slip"),
    ("F04", "Fall forward while walking caused by a trip"),
    ("F05", "Fall forward while jogging caused by a trip"),
    ("F06", "Vertical fall while walking caused by fainting"),
    (
        "F07",
        "Fall while walking, with use of hands in a table to dampen fall, caused by fainting",
    ),
    ("F08", "Fall forward when trying to get up"),
    ("F09", "Lateral fall when trying to get up"),
    ("F10", "Fall forward when trying to sit down"),
    ("F11", "Fall backward when trying to sit down"),
    ("F12", "Lateral fall when trying to sit down"),
    (
        "F13",
        "Fall forward while sitting, caused by fainting or falling asleep",
    ),
    (
        "F14",
        "Fall backward while sitting, caused by fainting or falling asleep",
    ),
    (
        "F15",
        "Lateral fall while sitting, caused by fainting or falling asleep",
    ),
];

fn is_code(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 3 && (b[0] == b'F' || b[0] == b'D') && b[1..].iter().all(u8::is_ascii_digit)
}

/// Splits `F01_SA01_R03.csv.gz` into (code, subject, trial).
pub fn parse_name(file_name: &str) -> Option<(String, String, u32)> {
    let stem = file_name.strip_suffix(".csv.gz")?;
    let mut parts = stem.split('_');
    let (code, subject, trial) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_code(code) || subject.is_empty() {
        return None;
    }
    let trial = trial.strip_prefix('R')?.parse().ok()?;
    Some((code.to_string(), subject.to_string(), trial))
}

/// Activity descriptions from a SisFall `Readme.txt`: lines holding a code (`D01`, `F15`)
/// followed by its description, in a `|`- or tab-separated table.
pub fn parse_readme(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut cells = line
            .split(['|', '\t'])
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let Some(first) = cells.next() else { continue };
        if !is_code(first) || out.contains_key(first) {
            continue;
        }
        if let Some(description) = cells.next() {
            out.insert(first.to_string(), description.to_string());
        }
    }
    out
}

fn read_recording(path: &Path) -> Result<Vec<[i16; 3]>, EvalError> {
    let file = std::fs::File::open(path).map_err(|e| EvalError::Io(path.to_path_buf(), e))?;
    let mut bytes = Vec::new();
    GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| EvalError::Io(path.to_path_buf(), e))?;
    parse_samples(&bytes).map_err(|line| {
        let text = bytes
            .split(|&b| b == b'\n')
            .nth(line - 1)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .unwrap_or_default();
        EvalError::BadLine {
            path: path.to_path_buf(),
            line,
            text,
        }
    })
}

/// Parses `x,y,z` lines (integers, optional sign, spaces, a trailing `;`, further columns
/// ignored) into samples; on error returns the 1-based line number.
///
/// A byte loop rather than `lines()`/`split()`/`parse()`: the integration test reads
/// about five million lines in a debug build, where iterator adapters are slow.
pub fn parse_samples(bytes: &[u8]) -> Result<Vec<[i16; 3]>, usize> {
    let mut samples = Vec::with_capacity(bytes.len() / 12);
    let mut line = 1usize;
    let mut xyz = [0i32; 3];
    let mut axis = 0usize; // column being read
    let mut value = 0i32;
    let mut negative = false;
    let mut digits = 0u32; // digits in the current column
    let mut blank = true; // nothing but spaces so far on this line
    let mut i = 0;
    while i <= bytes.len() {
        let c = if i < bytes.len() { bytes[i] } else { b'\n' };
        i += 1;
        match c {
            b'0'..=b'9' => {
                blank = false;
                digits += 1;
                if digits > 6 {
                    return Err(line);
                }
                value = value * 10 + i32::from(c - b'0');
            }
            b'-' | b'+' if digits == 0 && !negative => {
                blank = false;
                negative = c == b'-';
            }
            b' ' | b'\t' | b'\r' | b';' => {}
            b',' | b'\n' => {
                if c == b'\n' && blank && axis == 0 {
                    line += 1;
                    continue;
                }
                if axis < 3 {
                    if digits == 0 {
                        return Err(line);
                    }
                    let v = if negative { -value } else { value };
                    if v < i32::from(i16::MIN) || v > i32::from(i16::MAX) {
                        return Err(line);
                    }
                    xyz[axis] = v;
                }
                axis += 1;
                value = 0;
                negative = false;
                digits = 0;
                if c == b'\n' {
                    if axis < 3 {
                        return Err(line);
                    }
                    samples.push([xyz[0] as i16, xyz[1] as i16, xyz[2] as i16]);
                    axis = 0;
                    blank = true;
                    line += 1;
                }
            }
            _ => return Err(line),
        }
    }
    Ok(samples)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), EvalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| EvalError::Io(dir.to_path_buf(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| EvalError::Io(dir.to_path_buf(), e))?;
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".csv.gz"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every `<CODE>_<SUBJECT>_R<TRIAL>.csv.gz` under `root` (recursively). Files with
/// other names are skipped and returned in the second element so the caller can say so.
pub fn load_dataset(root: &Path) -> Result<(Dataset, Vec<PathBuf>), EvalError> {
    if !root.is_dir() {
        return Err(EvalError::NotADirectory(root.to_path_buf()));
    }
    let mut files = Vec::new();
    collect_files(root, &mut files)?;
    let mut recordings = Vec::new();
    let mut skipped = Vec::new();
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some((code, subject, trial)) = parse_name(name) else {
            skipped.push(path);
            continue;
        };
        let samples = read_recording(&path)?;
        recordings.push(Recording {
            fall: code.starts_with('F'),
            name: format!("{code}_{subject}_R{trial:02}"),
            code,
            subject,
            trial,
            path,
            samples,
        });
    }
    if recordings.is_empty() {
        return Err(EvalError::NoRecordings(root.to_path_buf()));
    }
    recordings.sort_by(|a, b| (&a.code, &a.subject, a.trial).cmp(&(&b.code, &b.subject, b.trial)));

    let readme = root.join("Readme.txt");
    let from_readme = std::fs::read_to_string(&readme)
        .map(|t| parse_readme(&t))
        .unwrap_or_default();
    let (descriptions, descriptions_source) = if from_readme.is_empty() {
        (
            SISFALL_ACTIVITIES
                .iter()
                .map(|(c, d)| (c.to_string(), d.to_string()))
                .collect(),
            "built-in SisFall activity table (no Readme.txt in the dataset folder)".to_string(),
        )
    } else {
        (from_readme, readme.display().to_string())
    };
    Ok((
        Dataset {
            root: root.to_path_buf(),
            sample_rate_hz: 200,
            counts_per_g: 256,
            recordings,
            descriptions,
            descriptions_source,
        },
        skipped,
    ))
}

/// Decimates every recording to `to_hz` by keeping every n-th sample (n = rate / `to_hz`),
/// as a sensor read at the lower rate would deliver them: no averaging, so a short peak is
/// caught or missed as it would be on the device.
pub fn resample(dataset: &Dataset, to_hz: u16) -> Result<Dataset, EvalError> {
    let from = dataset.sample_rate_hz;
    if to_hz == 0 || to_hz > from || !from.is_multiple_of(to_hz) {
        return Err(EvalError::BadRate { from, to: to_hz });
    }
    let step = usize::from(from / to_hz);
    let mut out = dataset.clone();
    out.sample_rate_hz = to_hz;
    for rec in &mut out.recordings {
        rec.samples = rec.samples.iter().copied().step_by(step).collect();
    }
    Ok(out)
}

/// Figures for one activity code.
#[derive(Debug, Clone, Serialize)]
pub struct CodeResult {
    pub code: String,
    pub description: String,
    pub fall: bool,
    pub trials: usize,
    /// Trials in which the detector raised a fall.
    pub detected: usize,
    /// `detected / trials` for falls (sensitivity), `1 - detected / trials` for ADLs
    /// (specificity).
    pub rate: f64,
}

/// Figures for a subject group (SisFall: adults `SA..`, elderly `SE..`; otherwise each
/// subject on its own).
#[derive(Debug, Clone, Serialize)]
pub struct GroupResult {
    pub group: String,
    pub fall_trials: usize,
    pub falls_detected: usize,
    pub adl_trials: usize,
    pub adl_false_alarms: usize,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dataset: String,
    pub subjects: Vec<String>,
    pub sample_rate_hz: u16,
    pub fall_trials: usize,
    pub falls_detected: usize,
    /// Detected falls / fall trials.
    pub sensitivity: f64,
    pub adl_trials: usize,
    /// ADL trials in which at least one fall was raised.
    pub adl_trials_with_false_alarm: usize,
    /// ADL trials without a false alarm / ADL trials.
    pub specificity: f64,
    /// Every fall raised during ADL trials (a trial may raise more than one).
    pub false_alarms: usize,
    /// Total ADL recording time, from the sample counts.
    pub adl_hours: f64,
    pub false_alarms_per_hour: f64,
    /// Mean confidence of the detections in fall trials (first detection per trial).
    pub mean_confidence_falls: f64,
    /// Mean confidence of the false alarms (first per trial).
    pub mean_confidence_false_alarms: f64,
    pub per_code: Vec<CodeResult>,
    pub per_group: Vec<GroupResult>,
    /// Trials counted wrongly: missed falls and ADLs with a false alarm.
    pub errors: Vec<String>,
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        f64::NAN
    } else {
        num as f64 / den as f64
    }
}

fn group_of(subject: &str) -> String {
    match subject.get(..2) {
        Some("SA") => "adults (SA)".to_string(),
        Some("SE") => "elderly (SE)".to_string(),
        _ => subject.to_string(),
    }
}

/// Runs `config` over the recordings of `dataset` whose subject passes `include`.
///
/// `config.sample_rate_hz` should be the dataset's rate; false alarms per hour are timed
/// from the dataset's rate.
pub fn evaluate(
    dataset: &Dataset,
    config: FallConfig,
    include: impl Fn(&str) -> bool,
) -> Result<Report, homeward_device_core::fall::ConfigError> {
    // Validate once up front so a bad configuration is an error, not a panic per file.
    FallDetector::new(config)?;
    #[derive(Default)]
    struct Tally {
        trials: usize,
        detected: usize,
    }
    let mut per_code: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut per_group: BTreeMap<String, GroupResult> = BTreeMap::new();
    let mut subjects = std::collections::BTreeSet::new();
    let (mut fall_trials, mut falls_detected, mut adl_trials, mut adl_flagged) = (0, 0, 0, 0);
    let (mut false_alarms, mut adl_samples) = (0usize, 0u64);
    let (mut conf_falls, mut conf_fa) = (0u64, 0u64);
    let mut errors = Vec::new();

    for rec in dataset.recordings.iter().filter(|r| include(&r.subject)) {
        subjects.insert(rec.subject.clone());
        let mut detector = FallDetector::new(config)?;
        let mut events = 0usize;
        let mut first_confidence = None;
        for &s in &rec.samples {
            if let Some(event) = detector.push(s) {
                events += 1;
                first_confidence.get_or_insert(event.confidence);
            }
        }
        let detected = events > 0;
        let tally = per_code.entry(&rec.code).or_default();
        tally.trials += 1;
        tally.detected += usize::from(detected);
        let group = per_group
            .entry(group_of(&rec.subject))
            .or_insert_with_key(|g| GroupResult {
                group: g.clone(),
                fall_trials: 0,
                falls_detected: 0,
                adl_trials: 0,
                adl_false_alarms: 0,
            });
        let name = &rec.name;
        if rec.is_fall() {
            fall_trials += 1;
            group.fall_trials += 1;
            if detected {
                falls_detected += 1;
                group.falls_detected += 1;
                conf_falls += u64::from(first_confidence.unwrap_or(0));
            } else {
                errors.push(format!("missed fall {name}"));
            }
        } else {
            adl_trials += 1;
            group.adl_trials += 1;
            adl_samples += rec.samples.len() as u64;
            false_alarms += events;
            if detected {
                adl_flagged += 1;
                group.adl_false_alarms += 1;
                conf_fa += u64::from(first_confidence.unwrap_or(0));
                errors.push(format!("false alarm {name}"));
            }
        }
    }

    let adl_hours = adl_samples as f64 / f64::from(dataset.sample_rate_hz.max(1)) / 3600.0;
    let fall_codes: std::collections::BTreeSet<&str> = dataset
        .recordings
        .iter()
        .filter(|r| r.fall)
        .map(|r| r.code.as_str())
        .collect();
    let per_code = per_code
        .into_iter()
        .map(|(code, t)| {
            let fall = fall_codes.contains(code);
            CodeResult {
                code: code.to_string(),
                description: dataset.descriptions.get(code).cloned().unwrap_or_default(),
                fall,
                trials: t.trials,
                detected: t.detected,
                rate: if fall {
                    ratio(t.detected, t.trials)
                } else {
                    1.0 - ratio(t.detected, t.trials)
                },
            }
        })
        .collect();
    Ok(Report {
        dataset: dataset.root.display().to_string(),
        subjects: subjects.into_iter().collect(),
        sample_rate_hz: dataset.sample_rate_hz,
        fall_trials,
        falls_detected,
        sensitivity: ratio(falls_detected, fall_trials),
        adl_trials,
        adl_trials_with_false_alarm: adl_flagged,
        specificity: 1.0 - ratio(adl_flagged, adl_trials),
        false_alarms,
        adl_hours,
        false_alarms_per_hour: if adl_hours > 0.0 {
            false_alarms as f64 / adl_hours
        } else {
            f64::NAN
        },
        mean_confidence_falls: conf_falls as f64 / falls_detected.max(1) as f64,
        mean_confidence_false_alarms: conf_fa as f64 / adl_flagged.max(1) as f64,
        per_code,
        per_group: per_group.into_values().collect(),
        errors,
    })
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".to_string()
    } else {
        format!("{:.1}%", x * 100.0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "dataset {} ({} subjects: {})",
            self.dataset,
            self.subjects.len(),
            self.subjects.join(" ")
        )?;
        writeln!(f)?;
        // At least as wide as the header's "code" (SisFall's codes are three letters).
        let width = self
            .per_code
            .iter()
            .map(|c| c.code.len())
            .fold(4, usize::max);
        writeln!(
            f,
            "{:<width$}  trials  detected  result       description",
            "code"
        )?;
        for c in &self.per_code {
            let what = if c.fall { "sens" } else { "spec" };
            writeln!(
                f,
                "{:<width$}  {:>6}  {:>8}  {} {:>6}  {}",
                c.code,
                c.trials,
                c.detected,
                what,
                pct(c.rate),
                c.description
            )?;
        }
        writeln!(f)?;
        for g in &self.per_group {
            writeln!(
                f,
                "{:<13} falls {:>3}/{:<3} detected, ADLs {:>3}/{:<3} with a false alarm",
                g.group, g.falls_detected, g.fall_trials, g.adl_false_alarms, g.adl_trials
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "sensitivity  {:>6}  ({} of {} fall trials detected)",
            pct(self.sensitivity),
            self.falls_detected,
            self.fall_trials
        )?;
        writeln!(
            f,
            "specificity  {:>6}  ({} of {} ADL trials without a false alarm)",
            pct(self.specificity),
            self.adl_trials - self.adl_trials_with_false_alarm,
            self.adl_trials
        )?;
        writeln!(
            f,
            "false alarms {:.2} per hour of ADL recording ({} in {:.2} h at {} Hz)",
            self.false_alarms_per_hour, self.false_alarms, self.adl_hours, self.sample_rate_hz
        )?;
        write!(
            f,
            "confidence   mean {:.0} on detected falls, {:.0} on false alarms",
            self.mean_confidence_falls, self.mean_confidence_false_alarms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            parse_name("F01_SA01_R03.csv.gz"),
            Some(("F01".into(), "SA01".into(), 3))
        );
        assert_eq!(
            parse_name("D19_SE05_R12.csv.gz"),
            Some(("D19".into(), "SE05".into(), 12))
        );
        for bad in [
            "README.md",
            "F01_SA01_R03.csv",
            "X01_SA01_R01.csv.gz",
            "F1_SA01_R01.csv.gz",
            "F01_SA01.csv.gz",
            "F01_SA01_R01_x.csv.gz",
            "F01_SA01_T01.csv.gz",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn readme_table() {
        let text = "Activities\n\
            |Code\t|Activity\t|Trials\t|Duration|\n\
            |D01\t|Walking slowly\t|1\t|100s|\n\
            | F15 | Lateral fall while sitting | 5 | 15s |\n\
            D17\tStanding, get into a car\t5\t25s\n\
            Subjects SA01 D01\n";
        let map = parse_readme(text);
        assert_eq!(map.len(), 3, "{map:?}");
        assert_eq!(map["D01"], "Walking slowly");
        assert_eq!(map["F15"], "Lateral fall while sitting");
        assert_eq!(map["D17"], "Standing, get into a car");
    }

    #[test]
    fn samples() {
        let text = b"17,-179,-99\n 15 , -174,-90;\r\n\n+1,2,3,44,55,66;\n-4096,4095,0";
        assert_eq!(
            parse_samples(text),
            Ok(vec![
                [17, -179, -99],
                [15, -174, -90],
                [1, 2, 3],
                [-4096, 4095, 0]
            ])
        );
        assert_eq!(parse_samples(b""), Ok(vec![]));
        assert_eq!(parse_samples(b"1,2,3\n1,2\n"), Err(2));
        assert_eq!(parse_samples(b"1,2,x\n"), Err(1));
        assert_eq!(parse_samples(b"1,2,40000\n"), Err(1));
        assert_eq!(parse_samples(b"1,,3\n"), Err(1));
        assert_eq!(parse_samples(b"1,2-3,3\n"), Err(1));
    }

    #[test]
    fn every_sisfall_code_has_a_description() {
        assert_eq!(SISFALL_ACTIVITIES.len(), 34);
        assert!(SISFALL_ACTIVITIES
            .iter()
            .all(|(c, d)| is_code(c) && !d.is_empty()));
    }
}

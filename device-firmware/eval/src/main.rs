//! `homeward-fall-eval`: runs the pendant fall detector over a SisFall-style dataset and
//! prints sensitivity and specificity, overall and per activity code.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use homeward_device_core::fall::{FallConfig, UpAxis};
use homeward_fall_eval::{evaluate, load_dataset, Dataset, Report};
use serde::Serialize;

const DEFAULT_DATASET: &str = "../shared/datasets/sisfall";

/// Evaluate the Homeward fall detector on recorded falls and activities of daily living.
///
/// Reads every `<CODE>_<SUBJECT>_R<TRIAL>.csv.gz` under DATASET (one `x,y,z` sample in raw
/// counts per line; codes F.. are falls, D.. are ADLs), runs the detector over each trial
/// from its first sample, and counts a trial as detected if a fall is raised at any point.
/// Prints, overall and per activity code: trials, detections, sensitivity (falls) and
/// specificity (ADLs), and false alarms per hour of ADL recording. Activity descriptions
/// come from DATASET/Readme.txt when present, otherwise from SisFall's table.
///
/// Detector options default to the shipped configuration (waist ADXL345, 200 Hz, 256
/// counts per g); change them to try other thresholds or another sensor.
#[derive(Debug, Parser)]
#[command(version, about, long_about, max_term_width = 100)]
struct Args {
    /// Dataset folder. Default: ../shared/datasets/sisfall from the current directory,
    /// else the same folder relative to the workspace root.
    dataset: Option<PathBuf>,

    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,

    /// Only these subjects: comma-separated IDs or prefixes (e.g. `SA01,SA02,SE`).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    subjects: Vec<String>,

    /// Leave these subjects out: comma-separated IDs or prefixes.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    exclude_subjects: Vec<String>,

    /// Also list each missed fall and each ADL trial with a false alarm.
    #[arg(long)]
    errors: bool,

    /// Also rerun with each detector threshold at -10% and +10% of its value, one at a
    /// time, and print how sensitivity, specificity and false alarms move.
    #[arg(long)]
    sensitivity: bool,

    #[command(flatten, next_help_heading = "Detector")]
    detector: DetectorArgs,
}

const D: FallConfig = FallConfig::SISFALL_WAIST;

#[derive(Debug, Clone, clap::Args)]
struct DetectorArgs {
    /// Sample rate of the recordings, Hz.
    #[arg(long, default_value_t = D.sample_rate_hz)]
    sample_rate_hz: u16,
    /// Raw counts per g of the recordings.
    #[arg(long, default_value_t = D.counts_per_g)]
    counts_per_g: u16,
    /// Device axis that reads +1 g when the wearer is upright.
    #[arg(long, value_enum, default_value_t = Axis::NegY)]
    up_axis: Axis,
    /// Impact threshold, milli-g of acceleration magnitude.
    #[arg(long, default_value_t = D.impact_mg)]
    impact_mg: u16,
    /// Largest tilt from the up axis that still counts as upright before the impact, degrees.
    #[arg(long, default_value_t = D.upright_max_deg)]
    upright_deg: u8,
    /// Smallest turn from the upright posture that counts as lying after it, degrees.
    #[arg(long, default_value_t = D.turn_min_deg)]
    turn_deg: u8,
    /// Largest standard deviation of the acceleration vector that counts as still, milli-g.
    #[arg(long, default_value_t = D.still_max_mg)]
    still_mg: u16,
    /// Posture block length, ms.
    #[arg(long, default_value_t = D.block_ms)]
    block_ms: u16,
    /// How far back before an impact an upright posture is looked for, ms.
    #[arg(long, default_value_t = D.lookback_ms)]
    lookback_ms: u16,
    /// Wait after the last impact before measuring the posture, ms.
    #[arg(long, default_value_t = D.settle_ms)]
    settle_ms: u16,
    /// Length of the lying/still measurement, ms.
    #[arg(long, default_value_t = D.observe_ms)]
    observe_ms: u16,
}

#[derive(Debug, Clone, Copy, ValueEnum, Serialize)]
enum Axis {
    #[value(name = "+x")]
    #[serde(rename = "+x")]
    PosX,
    #[value(name = "-x")]
    #[serde(rename = "-x")]
    NegX,
    #[value(name = "+y")]
    #[serde(rename = "+y")]
    PosY,
    #[value(name = "-y")]
    #[serde(rename = "-y")]
    NegY,
    #[value(name = "+z")]
    #[serde(rename = "+z")]
    PosZ,
    #[value(name = "-z")]
    #[serde(rename = "-z")]
    NegZ,
}

impl Axis {
    fn name(self) -> &'static str {
        match self {
            Axis::PosX => "+x",
            Axis::NegX => "-x",
            Axis::PosY => "+y",
            Axis::NegY => "-y",
            Axis::PosZ => "+z",
            Axis::NegZ => "-z",
        }
    }
}

impl From<Axis> for UpAxis {
    fn from(a: Axis) -> Self {
        match a {
            Axis::PosX => UpAxis::PosX,
            Axis::NegX => UpAxis::NegX,
            Axis::PosY => UpAxis::PosY,
            Axis::NegY => UpAxis::NegY,
            Axis::PosZ => UpAxis::PosZ,
            Axis::NegZ => UpAxis::NegZ,
        }
    }
}

/// The detector configuration, as printed and serialised.
#[derive(Debug, Clone, Serialize)]
struct ConfigOut {
    sample_rate_hz: u16,
    counts_per_g: u16,
    up_axis: Axis,
    impact_mg: u16,
    upright_max_deg: u8,
    turn_min_deg: u8,
    still_max_mg: u16,
    block_ms: u16,
    lookback_ms: u16,
    settle_ms: u16,
    observe_ms: u16,
}

impl DetectorArgs {
    fn config(&self) -> FallConfig {
        FallConfig {
            sample_rate_hz: self.sample_rate_hz,
            counts_per_g: self.counts_per_g,
            up_axis: self.up_axis.into(),
            impact_mg: self.impact_mg,
            upright_max_deg: self.upright_deg,
            turn_min_deg: self.turn_deg,
            still_max_mg: self.still_mg,
            block_ms: self.block_ms,
            lookback_ms: self.lookback_ms,
            settle_ms: self.settle_ms,
            observe_ms: self.observe_ms,
        }
    }

    fn out(&self) -> ConfigOut {
        ConfigOut {
            sample_rate_hz: self.sample_rate_hz,
            counts_per_g: self.counts_per_g,
            up_axis: self.up_axis,
            impact_mg: self.impact_mg,
            upright_max_deg: self.upright_deg,
            turn_min_deg: self.turn_deg,
            still_max_mg: self.still_mg,
            block_ms: self.block_ms,
            lookback_ms: self.lookback_ms,
            settle_ms: self.settle_ms,
            observe_ms: self.observe_ms,
        }
    }
}

/// One row of the ±10% table.
#[derive(Debug, Clone, Serialize)]
struct SensitivityRow {
    parameter: &'static str,
    value: u32,
    change: &'static str,
    sensitivity: f64,
    specificity: f64,
    false_alarms_per_hour: f64,
}

#[derive(Debug, Serialize)]
struct Output {
    config: ConfigOut,
    descriptions_source: String,
    report: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold_sensitivity: Option<Vec<SensitivityRow>>,
}

fn dataset_path(arg: Option<PathBuf>) -> PathBuf {
    if let Some(p) = arg {
        return p;
    }
    let here = PathBuf::from(DEFAULT_DATASET);
    if here.is_dir() {
        return here;
    }
    // From the workspace root: device-firmware/eval -> ../../ is the root.
    let from_root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(DEFAULT_DATASET);
    match from_root.canonicalize() {
        Ok(p) if p.is_dir() => p,
        _ => here,
    }
}

fn subject_filter(include: &[String], exclude: &[String]) -> impl Fn(&str) -> bool {
    let include: Vec<String> = include.iter().map(|s| s.trim().to_string()).collect();
    let exclude: Vec<String> = exclude.iter().map(|s| s.trim().to_string()).collect();
    move |subject: &str| {
        let matches = |list: &[String]| {
            list.iter()
                .any(|p| !p.is_empty() && subject.starts_with(p.as_str()))
        };
        (include.is_empty() || matches(&include)) && !matches(&exclude)
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Each threshold at -10% and +10%, one at a time.
fn threshold_sensitivity(
    dataset: &Dataset,
    base: &DetectorArgs,
    include: &dyn Fn(&str) -> bool,
) -> Result<Vec<SensitivityRow>, String> {
    type Field = (
        &'static str,
        fn(&DetectorArgs) -> u32,
        fn(&mut DetectorArgs, u32),
    );
    let fields: [Field; 8] = [
        (
            "impact_mg",
            |a| a.impact_mg.into(),
            |a, v| a.impact_mg = clamp16(v),
        ),
        (
            "upright_max_deg",
            |a| a.upright_deg.into(),
            |a, v| a.upright_deg = v.min(90) as u8,
        ),
        (
            "turn_min_deg",
            |a| a.turn_deg.into(),
            |a, v| a.turn_deg = v.min(180) as u8,
        ),
        (
            "still_max_mg",
            |a| a.still_mg.into(),
            |a, v| a.still_mg = clamp16(v),
        ),
        (
            "block_ms",
            |a| a.block_ms.into(),
            |a, v| a.block_ms = clamp16(v),
        ),
        (
            "lookback_ms",
            |a| a.lookback_ms.into(),
            |a, v| a.lookback_ms = clamp16(v),
        ),
        (
            "settle_ms",
            |a| a.settle_ms.into(),
            |a, v| a.settle_ms = clamp16(v),
        ),
        (
            "observe_ms",
            |a| a.observe_ms.into(),
            |a, v| a.observe_ms = clamp16(v),
        ),
    ];
    let mut rows = Vec::new();
    for (name, get, set) in fields {
        let value = get(base);
        for (change, scaled) in [
            ("-10%", value * 9 / 10),
            ("+10%", (value * 11).div_ceil(10)),
        ] {
            let mut args = base.clone();
            set(&mut args, scaled);
            let r = evaluate(dataset, args.config(), include)
                .map_err(|e| format!("{name} = {scaled}: {e}"))?;
            rows.push(SensitivityRow {
                parameter: name,
                value: get(&args),
                change,
                sensitivity: r.sensitivity,
                specificity: r.specificity,
                false_alarms_per_hour: r.false_alarms_per_hour,
            });
        }
    }
    Ok(rows)
}

fn clamp16(v: u32) -> u16 {
    v.min(u32::from(u16::MAX)) as u16
}

fn run(args: Args) -> Result<(), String> {
    let root = dataset_path(args.dataset.clone());
    let (dataset, skipped) = load_dataset(&root).map_err(|e| e.to_string())?;
    for path in &skipped {
        eprintln!(
            "skipped {} (name is not <CODE>_<SUBJECT>_R<TRIAL>.csv.gz)",
            path.display()
        );
    }
    let include = subject_filter(&args.subjects, &args.exclude_subjects);
    let config = args.detector.config();
    let report =
        evaluate(&dataset, config, &include).map_err(|e| format!("detector configuration: {e}"))?;
    if report.fall_trials + report.adl_trials == 0 {
        return Err(format!(
            "no recordings under {} match the subject filter",
            root.display()
        ));
    }
    let table = if args.sensitivity {
        Some(threshold_sensitivity(&dataset, &args.detector, &include)?)
    } else {
        None
    };

    let mut text = String::new();
    if args.json {
        let out = Output {
            config: args.detector.out(),
            descriptions_source: dataset.descriptions_source.clone(),
            report,
            threshold_sensitivity: table,
        };
        text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
        text.push('\n');
    } else {
        write_text(&mut text, &args, &dataset, &report, table.as_deref())
            .map_err(|e| e.to_string())?;
    }
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `homeward-fall-eval | head` is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(()),
    }
}

fn write_text(
    out: &mut String,
    args: &Args,
    dataset: &Dataset,
    report: &Report,
    table: Option<&[SensitivityRow]>,
) -> std::fmt::Result {
    let c = args.detector.out();
    writeln!(
        out,
        "detector: impact >= {} mg, upright <= {} deg before, turn >= {} deg and still <= {} mg \
         after; blocks {} ms, lookback {} ms, settle {} ms, observe {} ms; {} Hz, {} counts/g, up {}",
        c.impact_mg,
        c.upright_max_deg,
        c.turn_min_deg,
        c.still_max_mg,
        c.block_ms,
        c.lookback_ms,
        c.settle_ms,
        c.observe_ms,
        c.sample_rate_hz,
        c.counts_per_g,
        c.up_axis.name()
    )?;
    writeln!(
        out,
        "activity descriptions: {}",
        dataset.descriptions_source
    )?;
    writeln!(out, "{report}")?;
    if args.errors {
        writeln!(out)?;
        for e in &report.errors {
            writeln!(out, "{e}")?;
        }
    }
    if let Some(rows) = table {
        writeln!(out)?;
        writeln!(
            out,
            "threshold sensitivity (one at a time; base: sens {}, spec {}, {:.2} false alarms/h)",
            pct(report.sensitivity),
            pct(report.specificity),
            report.false_alarms_per_hour
        )?;
        writeln!(
            out,
            "parameter         change  value  sensitivity  specificity  false alarms/h"
        )?;
        for r in rows {
            writeln!(
                out,
                "{:<16}  {:>6}  {:>5}  {:>11}  {:>11}  {:>14.2}",
                r.parameter,
                r.change,
                r.value,
                pct(r.sensitivity),
                pct(r.specificity),
                r.false_alarms_per_hour
            )?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("homeward-fall-eval: {e}");
            ExitCode::FAILURE
        }
    }
}

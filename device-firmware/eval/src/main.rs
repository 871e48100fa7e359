//! `homeward-fall-eval`: runs the pendant fall detector over a SisFall-style dataset and
//! prints sensitivity and specificity, overall and per activity code.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use homeward_device_core::fall::{FallConfig, UpAxis};
use homeward_fall_eval::umafall::{self, LoadNotes, Position};
use homeward_fall_eval::{evaluate, load_dataset, resample, Dataset, Report};
use serde::Serialize;

const DEFAULT_SISFALL: &str = "../shared/datasets/sisfall";
const DEFAULT_UMAFALL: &str = "../shared/datasets/umafall";

/// Evaluate the Homeward fall detector on recorded falls and activities of daily living.
///
/// Reads a SisFall-style folder (every `<CODE>_<SUBJECT>_R<TRIAL>.csv.gz`: one `x,y,z`
/// sample in raw counts per line, 200 Hz, 256 counts per g; codes F.. are falls, D.. ADLs)
/// or a UMAFall folder as published (`UMAFall_Subject_NN_{ADL|Fall}_<Activity>_...csv[.gz]`,
/// all sensors in each file; --position picks one, found through each file's own sensor
/// map; samples taken at 20 Hz by the sensors' counter, quarter-scale samples rescaled,
/// samples beyond ±8 g replaced). Runs the detector over each trial from its first sample
/// and counts a trial as detected if a fall is raised at any point. Prints, overall and per
/// activity: trials, detections, sensitivity (falls) and specificity (ADLs), and false
/// alarms per hour of ADL recording.
///
/// The detector starts from a preset (--preset; `waist` for SisFall, `pendant` for UMAFall),
/// takes the sample rate, scale and up axis from the dataset, and any option under
/// "Detector" overrides one value.
#[derive(Debug, Parser)]
#[command(version, about, long_about, max_term_width = 100)]
struct Args {
    /// Dataset folder. Default: ../shared/datasets/sisfall (../shared/datasets/umafall with
    /// --format umafall) from the current directory, else the same folder relative to the
    /// workspace root.
    dataset: Option<PathBuf>,

    /// Dataset layout. `auto`: UMAFall if the folder holds UMAFall file names, else SisFall.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,

    /// UMAFall only: the sensor position to read.
    #[arg(long, value_enum, default_value_t = Pos::Chest)]
    position: Pos,

    /// Detector preset. Default: `waist` for SisFall, `pendant` for UMAFall.
    #[arg(long, value_enum)]
    preset: Option<Preset>,

    /// Decimate the recordings to this rate first (keeping every n-th sample, as a sensor
    /// read at that rate would), e.g. 20 to run SisFall's 200 Hz at a pendant's rate. Must
    /// divide the dataset's rate.
    #[arg(long, value_name = "HZ")]
    resample_hz: Option<u16>,

    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,

    /// Only these subjects: comma-separated IDs or prefixes (e.g. `SA01,SA02,SE` or
    /// `UMA02,UMA04`).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Auto,
    Sisfall,
    Umafall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Pos {
    Chest,
    Waist,
    Wrist,
    Ankle,
    /// The phone in the trouser pocket (about 200 Hz, decimated to 20 Hz).
    Pocket,
}

impl From<Pos> for Position {
    fn from(p: Pos) -> Self {
        match p {
            Pos::Chest => Position::Chest,
            Pos::Waist => Position::Waist,
            Pos::Wrist => Position::Wrist,
            Pos::Ankle => Position::Ankle,
            Pos::Pocket => Position::Pocket,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Preset {
    /// `FallConfig::SISFALL_WAIST`: a waist clip at 200 Hz.
    Waist,
    /// `FallConfig::CHEST_PENDANT`: a pendant at the chest, 20-50 Hz, ±8 g.
    Pendant,
}

impl Preset {
    fn config(self) -> FallConfig {
        match self {
            Preset::Waist => FallConfig::SISFALL_WAIST,
            Preset::Pendant => FallConfig::CHEST_PENDANT,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
struct DetectorArgs {
    /// Sample rate the detector assumes, Hz. Default: the dataset's (after --resample-hz).
    #[arg(long)]
    sample_rate_hz: Option<u16>,
    /// Raw counts per g. Default: the dataset's (SisFall 256, UMAFall 4096).
    #[arg(long)]
    counts_per_g: Option<u16>,
    /// Device axis that reads +1 g when the wearer is upright. Default: the dataset's
    /// (SisFall -y; UMAFall +x, +y for the pocket).
    #[arg(long, value_enum)]
    up_axis: Option<Axis>,
    /// Impact threshold, milli-g of acceleration magnitude.
    #[arg(long)]
    impact_mg: Option<u16>,
    /// Impact by change: milli-g of change of the acceleration vector over --jerk-span-ms
    /// (0: off; the waist preset has it off).
    #[arg(long)]
    jerk_mg: Option<u16>,
    /// Span of the change test, ms.
    #[arg(long)]
    jerk_span_ms: Option<u16>,
    /// Largest tilt from the up axis that still counts as upright before the impact, degrees.
    #[arg(long)]
    upright_deg: Option<u8>,
    /// Smallest turn from the upright posture that counts as lying after it, degrees.
    #[arg(long)]
    turn_deg: Option<u8>,
    /// Largest standard deviation of the acceleration vector that counts as still, milli-g.
    #[arg(long)]
    still_mg: Option<u16>,
    /// Posture block length, ms.
    #[arg(long)]
    block_ms: Option<u16>,
    /// How far back before an impact an upright posture is looked for, ms.
    #[arg(long)]
    lookback_ms: Option<u16>,
    /// Wait after the last impact before measuring the posture, ms.
    #[arg(long)]
    settle_ms: Option<u16>,
    /// Length of the lying/still measurement, ms.
    #[arg(long)]
    observe_ms: Option<u16>,
    /// Further lying/still windows may start up to this long after the first, ms (0: one).
    #[arg(long)]
    still_within_ms: Option<u16>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Axis {
    #[value(name = "+x")]
    PosX,
    #[value(name = "-x")]
    NegX,
    #[value(name = "+y")]
    PosY,
    #[value(name = "-y")]
    NegY,
    #[value(name = "+z")]
    PosZ,
    #[value(name = "-z")]
    NegZ,
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
    up_axis: &'static str,
    impact_mg: u16,
    jerk_mg: u16,
    jerk_span_ms: u16,
    upright_max_deg: u8,
    turn_min_deg: u8,
    still_max_mg: u16,
    block_ms: u16,
    lookback_ms: u16,
    settle_ms: u16,
    observe_ms: u16,
    still_within_ms: u16,
}

fn axis_name(a: UpAxis) -> &'static str {
    match a {
        UpAxis::PosX => "+x",
        UpAxis::NegX => "-x",
        UpAxis::PosY => "+y",
        UpAxis::NegY => "-y",
        UpAxis::PosZ => "+z",
        UpAxis::NegZ => "-z",
    }
}

fn config_out(c: &FallConfig) -> ConfigOut {
    ConfigOut {
        sample_rate_hz: c.sample_rate_hz,
        counts_per_g: c.counts_per_g,
        up_axis: axis_name(c.up_axis),
        impact_mg: c.impact_mg,
        jerk_mg: c.jerk_mg,
        jerk_span_ms: c.jerk_span_ms,
        upright_max_deg: c.upright_max_deg,
        turn_min_deg: c.turn_min_deg,
        still_max_mg: c.still_max_mg,
        block_ms: c.block_ms,
        lookback_ms: c.lookback_ms,
        settle_ms: c.settle_ms,
        observe_ms: c.observe_ms,
        still_within_ms: c.still_within_ms,
    }
}

impl DetectorArgs {
    /// `base` with the dataset's sensor and every option given.
    fn config(&self, base: FallConfig, rate: u16, counts: u16, up: UpAxis) -> FallConfig {
        FallConfig {
            sample_rate_hz: self.sample_rate_hz.unwrap_or(rate),
            counts_per_g: self.counts_per_g.unwrap_or(counts),
            up_axis: self.up_axis.map_or(up, UpAxis::from),
            impact_mg: self.impact_mg.unwrap_or(base.impact_mg),
            jerk_mg: self.jerk_mg.unwrap_or(base.jerk_mg),
            jerk_span_ms: self.jerk_span_ms.unwrap_or(base.jerk_span_ms),
            upright_max_deg: self.upright_deg.unwrap_or(base.upright_max_deg),
            turn_min_deg: self.turn_deg.unwrap_or(base.turn_min_deg),
            still_max_mg: self.still_mg.unwrap_or(base.still_max_mg),
            block_ms: self.block_ms.unwrap_or(base.block_ms),
            lookback_ms: self.lookback_ms.unwrap_or(base.lookback_ms),
            settle_ms: self.settle_ms.unwrap_or(base.settle_ms),
            observe_ms: self.observe_ms.unwrap_or(base.observe_ms),
            still_within_ms: self.still_within_ms.unwrap_or(base.still_within_ms),
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

/// What loading UMAFall found and corrected.
#[derive(Debug, Serialize)]
struct NotesOut {
    position: &'static str,
    samples: usize,
    rescaled_samples: usize,
    corrupt_samples: usize,
    repeated_counter_rows: usize,
    filled_counter_gaps: usize,
    malformed_lines_skipped: usize,
    files_without_position: Vec<String>,
}

fn notes_out(position: Position, n: &LoadNotes) -> NotesOut {
    NotesOut {
        position: position.header_name(),
        samples: n.samples,
        rescaled_samples: n.cleaning.rescaled,
        corrupt_samples: n.cleaning.corrupt,
        repeated_counter_rows: n.cleaning.repeated,
        filled_counter_gaps: n.cleaning.filled,
        malformed_lines_skipped: n.malformed_lines,
        files_without_position: n
            .without_position
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    }
}

#[derive(Debug, Serialize)]
struct Output {
    format: &'static str,
    preset: Preset,
    config: ConfigOut,
    descriptions_source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    umafall: Option<NotesOut>,
    report: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold_sensitivity: Option<Vec<SensitivityRow>>,
}

/// `arg`, else `default` from the current directory, else from the workspace root.
fn dataset_path(arg: Option<PathBuf>, default: &str) -> PathBuf {
    if let Some(p) = arg {
        return p;
    }
    let here = PathBuf::from(default);
    if here.is_dir() {
        return here;
    }
    // From the workspace root: device-firmware/eval -> ../../ is the root.
    let from_root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(default);
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

/// Each threshold at -10% and +10%, one at a time (the change test and the repeated
/// stillness window only when they are on).
fn threshold_sensitivity(
    dataset: &Dataset,
    base: &FallConfig,
    include: &dyn Fn(&str) -> bool,
) -> Result<Vec<SensitivityRow>, String> {
    type Field = (
        &'static str,
        fn(&FallConfig) -> u32,
        fn(&mut FallConfig, u32),
    );
    let fields: [Field; 10] = [
        (
            "impact_mg",
            |c| c.impact_mg.into(),
            |c, v| c.impact_mg = clamp16(v),
        ),
        (
            "jerk_mg",
            |c| c.jerk_mg.into(),
            |c, v| c.jerk_mg = clamp16(v),
        ),
        (
            "upright_max_deg",
            |c| c.upright_max_deg.into(),
            |c, v| c.upright_max_deg = v.min(90) as u8,
        ),
        (
            "turn_min_deg",
            |c| c.turn_min_deg.into(),
            |c, v| c.turn_min_deg = v.min(180) as u8,
        ),
        (
            "still_max_mg",
            |c| c.still_max_mg.into(),
            |c, v| c.still_max_mg = clamp16(v),
        ),
        (
            "block_ms",
            |c| c.block_ms.into(),
            |c, v| c.block_ms = clamp16(v),
        ),
        (
            "lookback_ms",
            |c| c.lookback_ms.into(),
            |c, v| c.lookback_ms = clamp16(v),
        ),
        (
            "settle_ms",
            |c| c.settle_ms.into(),
            |c, v| c.settle_ms = clamp16(v),
        ),
        (
            "observe_ms",
            |c| c.observe_ms.into(),
            |c, v| c.observe_ms = clamp16(v),
        ),
        (
            "still_within_ms",
            |c| c.still_within_ms.into(),
            |c, v| c.still_within_ms = clamp16(v),
        ),
    ];
    let mut rows = Vec::new();
    for (name, get, set) in fields {
        let value = get(base);
        if value == 0 {
            continue;
        }
        for (change, scaled) in [
            ("-10%", value * 9 / 10),
            ("+10%", (value * 11).div_ceil(10)),
        ] {
            let mut config = *base;
            set(&mut config, scaled);
            let r = evaluate(dataset, config, include)
                .map_err(|e| format!("{name} = {scaled}: {e}"))?;
            rows.push(SensitivityRow {
                parameter: name,
                value: get(&config),
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
    let explicit = args.dataset.clone();
    let (format, root) = match args.format {
        Format::Sisfall => (Format::Sisfall, dataset_path(explicit, DEFAULT_SISFALL)),
        Format::Umafall => (Format::Umafall, dataset_path(explicit, DEFAULT_UMAFALL)),
        Format::Auto => {
            let root = dataset_path(explicit, DEFAULT_SISFALL);
            if umafall::looks_like_umafall(&root) {
                (Format::Umafall, root)
            } else {
                (Format::Sisfall, root)
            }
        }
    };
    let position = Position::from(args.position);
    let (dataset, notes, up) = if format == Format::Umafall {
        let (d, notes) = umafall::load(&root, position).map_err(|e| e.to_string())?;
        for path in &notes.skipped {
            eprintln!("skipped {} (not a UMAFall trial name)", path.display());
        }
        (d, Some(notes), position.up_axis())
    } else {
        let (d, skipped) = load_dataset(&root).map_err(|e| e.to_string())?;
        for path in &skipped {
            eprintln!(
                "skipped {} (name is not <CODE>_<SUBJECT>_R<TRIAL>.csv.gz)",
                path.display()
            );
        }
        (d, None, UpAxis::NegY)
    };
    let dataset = match args.resample_hz {
        Some(hz) => resample(&dataset, hz).map_err(|e| e.to_string())?,
        None => dataset,
    };
    let preset = args.preset.unwrap_or(if format == Format::Umafall {
        Preset::Pendant
    } else {
        Preset::Waist
    });
    let config = args.detector.config(
        preset.config(),
        dataset.sample_rate_hz,
        dataset.counts_per_g,
        up,
    );
    let include = subject_filter(&args.subjects, &args.exclude_subjects);
    let report =
        evaluate(&dataset, config, &include).map_err(|e| format!("detector configuration: {e}"))?;
    if report.fall_trials + report.adl_trials == 0 {
        return Err(format!(
            "no recordings under {} match the subject filter",
            root.display()
        ));
    }
    let table = if args.sensitivity {
        Some(threshold_sensitivity(&dataset, &config, &include)?)
    } else {
        None
    };
    let notes = notes.map(|n| notes_out(position, &n));

    let mut text = String::new();
    if args.json {
        let out = Output {
            format: if format == Format::Umafall {
                "umafall"
            } else {
                "sisfall"
            },
            preset,
            config: config_out(&config),
            descriptions_source: dataset.descriptions_source.clone(),
            umafall: notes,
            report,
            threshold_sensitivity: table,
        };
        text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
        text.push('\n');
    } else {
        let view = View {
            args: &args,
            preset,
            config: &config,
            dataset: &dataset,
            notes: notes.as_ref(),
        };
        write_text(&mut text, &view, &report, table.as_deref()).map_err(|e| e.to_string())?;
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

/// What the text output shows besides the report.
struct View<'a> {
    args: &'a Args,
    preset: Preset,
    config: &'a FallConfig,
    dataset: &'a Dataset,
    notes: Option<&'a NotesOut>,
}

fn write_text(
    out: &mut String,
    view: &View<'_>,
    report: &Report,
    table: Option<&[SensitivityRow]>,
) -> std::fmt::Result {
    let c = config_out(view.config);
    let preset = match view.preset {
        Preset::Waist => "waist",
        Preset::Pendant => "pendant",
    };
    let jerk = if c.jerk_mg == 0 {
        String::new()
    } else {
        format!(" or a change >= {} mg in {} ms", c.jerk_mg, c.jerk_span_ms)
    };
    let within = if c.still_within_ms == 0 {
        String::new()
    } else {
        format!(" (windows starting within {} ms)", c.still_within_ms)
    };
    writeln!(
        out,
        "detector ({preset} preset): impact >= {} mg{jerk}, upright <= {} deg before, turn >= {} \
         deg and still <= {} mg after{within}; blocks {} ms, lookback {} ms, settle {} ms, \
         observe {} ms; {} Hz, {} counts/g, up {}",
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
        c.up_axis
    )?;
    writeln!(
        out,
        "activity descriptions: {}",
        view.dataset.descriptions_source
    )?;
    if let Some(n) = view.notes {
        writeln!(
            out,
            "UMAFall {}: {} samples at 20 Hz by the sensor counter ({} repeated rows dropped, {} \
             missing samples held); {} on the 1/16384 g grid rescaled x4 ({:.1}%), {} beyond 8 g \
             replaced; {} files without this position; {} unreadable lines skipped",
            n.position,
            n.samples,
            n.repeated_counter_rows,
            n.filled_counter_gaps,
            n.rescaled_samples,
            100.0 * n.rescaled_samples as f64 / n.samples.max(1) as f64,
            n.corrupt_samples,
            n.files_without_position.len(),
            n.malformed_lines_skipped
        )?;
    }
    writeln!(out, "{report}")?;
    let args = view.args;
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

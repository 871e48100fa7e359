//! Reads the UMAFall dataset as its authors publish it.
//!
//! UMAFall (Casilari, Santoyo-Ramón, Cano-García, Universidad de Málaga, 2017) recorded
//! simulated falls and ADLs with five sensors at once: SensorTags (MPU-9250) at the chest,
//! waist, wrist and ankle, and a phone in the right trouser pocket. One CSV per trial,
//! `UMAFall_Subject_NN_{ADL|Fall}_<Activity>_<trial>_<date>.csv[.gz]`, with a `%` header that
//! maps each sensor's MAC address to a sensor id and a body position (`%MAC; id; POSITION;
//! model`), then `TimeStamp; Sample No; X; Y; Z; Sensor Type; Sensor ID` rows in g (sensor
//! type 0 is the accelerometer). The map is read from every file; ids are not assumed.
//!
//! What the recordings need before a detector sees them, and why:
//!
//! - **Timing from the counter.** The SensorTags sample at 20 Hz by their `Sample No`
//!   counter (50 ms a step); the timestamps are the phone's reception times, which jitter by
//!   about 20 ms and stall for up to 2.5 s while samples queue. Resampling on those
//!   timestamps blurs the short peak of an impact, so samples are taken one per counter step
//!   ([`on_counter`]: a repeated counter is dropped, a gap of up to 5 s held). The phone samples at about 200 Hz (5 ms a step by its counter) and is
//!   decimated to 20 Hz like the tags, by keeping every tenth sample.
//! - **Samples four times too small.** Some runs of samples, mostly at the start of a chest
//!   recording, lie on a 1/16384 g grid: they read 0.25 g at rest and clip at ±2.0, i.e. the
//!   16-bit reading of the ±8 g range (4096 counts per g) was divided by 16384. A sample is
//!   on that grid when a component is not a multiple of 1/4096 g; such samples are multiplied
//!   by 4. One in 64 such samples falls on the coarse grid by chance, so a gap of at most
//!   two ordinary samples between scaled ones is scaled too. The values ±32511/16384 g are
//!   excluded from the test: some chest tags clip at ±2 g in their correct scale, and that
//!   is where they clip.
//! - **Corrupt samples.** A SensorTag component beyond ±8 g (the range in use) cannot be a
//!   reading; such a sample is replaced by the one before it.
//!
//! Samples are stored in counts of 1/4096 g (the SensorTag's ±8 g resolution), clamped to
//! the `i16` range.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::{Dataset, EvalError, Recording};

/// Counts per g of the loaded samples.
pub const COUNTS_PER_G: u16 = 4096;
/// Rate of the loaded samples (the SensorTags' rate; the phone is decimated to it).
pub const RATE_HZ: u16 = 20;
/// The phone's rate by its counter.
const PHONE_RATE_HZ: u16 = 200;
/// The clip value of chest tags that saturate at 2 g (32511 / 16384).
const CLIP_G: f64 = 32511.0 / 16384.0;

/// A body position, as UMAFall's header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Position {
    Chest,
    Waist,
    Wrist,
    Ankle,
    /// The phone in the right trouser pocket.
    Pocket,
}

impl Position {
    /// The name in UMAFall's sensor map.
    pub fn header_name(self) -> &'static str {
        match self {
            Position::Chest => "CHEST",
            Position::Waist => "WAIST",
            Position::Wrist => "WRIST",
            Position::Ankle => "ANKLE",
            Position::Pocket => "RIGHTPOCKET",
        }
    }

    fn from_header(name: &str) -> Option<Position> {
        [
            Position::Chest,
            Position::Waist,
            Position::Wrist,
            Position::Ankle,
            Position::Pocket,
        ]
        .into_iter()
        .find(|p| p.header_name().eq_ignore_ascii_case(name))
    }

    /// The device axis that reads +1 g when the wearer stands, as worn in UMAFall: +X along
    /// the body for the chest, waist and ankle tags, +Y for the phone in the pocket (most
    /// trials; in some the phone is upside down). The wrist has none.
    pub fn up_axis(self) -> homeward_device_core::fall::UpAxis {
        use homeward_device_core::fall::UpAxis;
        match self {
            Position::Pocket => UpAxis::PosY,
            _ => UpAxis::PosX,
        }
    }
}

/// UMAFall's activities: (name in the file name, fall?, description).
pub const ACTIVITIES: &[(&str, bool, &str)] = &[
    ("Aplausing", false, "Clapping hands"),
    (
        "Bending",
        false,
        "Bending down (to pick something up) and up again",
    ),
    ("GoDownstairs", false, "Going down stairs"),
    ("GoUpstairs", false, "Going up stairs"),
    ("HandsUp", false, "Raising both hands above the head"),
    ("Hopping", false, "Hopping on the spot"),
    ("Jogging", false, "Jogging"),
    (
        "LyingDown_OnABed",
        false,
        "Lying down on a bed and getting up again",
    ),
    ("MakingACall", false, "Making a phone call"),
    ("OpeningDoor", false, "Opening a door"),
    (
        "Sitting_GettingUpOnAChair",
        false,
        "Sitting down on a chair and getting up",
    ),
    ("Walking", false, "Walking"),
    ("backwardFall", true, "Backward fall onto a mattress"),
    ("forwardFall", true, "Forward fall onto a mattress"),
    ("lateralFall", true, "Lateral fall onto a mattress"),
];

/// What a file name says: subject number, fall or ADL, activity, trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub subject: u32,
    pub fall: bool,
    pub activity: String,
    pub trial: u32,
    /// The name without `.csv` / `.csv.gz`.
    pub stem: String,
}

/// Parses `UMAFall_Subject_02_Fall_forwardFall_3_2016-06-13_20-50-17.csv.gz`.
pub fn parse_file_name(name: &str) -> Option<FileName> {
    let stem = name
        .strip_suffix(".csv.gz")
        .or_else(|| name.strip_suffix(".csv"))?;
    let rest = stem.strip_prefix("UMAFall_Subject_")?;
    let (subject, rest) = rest.split_once('_')?;
    let subject = subject.parse().ok()?;
    let (kind, rest) = rest.split_once('_')?;
    let fall = match kind {
        "Fall" => true,
        "ADL" => false,
        _ => return None,
    };
    // <activity>_<trial>_<date>_<time>: the activity may itself hold underscores.
    let parts: Vec<&str> = rest.rsplitn(4, '_').collect();
    let [_time, _date, trial, activity] = parts.as_slice() else {
        return None;
    };
    if activity.is_empty() {
        return None;
    }
    Some(FileName {
        subject,
        fall,
        activity: activity.to_string(),
        trial: trial.parse().ok()?,
        stem: stem.to_string(),
    })
}

/// One sensor's stream from a file, as read (values in g), in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// (`Sample No`, [x, y, z] in g).
    pub rows: Vec<(u64, [f64; 3])>,
    /// 1-based numbers of data lines that could not be read (any sensor's), skipped.
    pub malformed: Vec<usize>,
}

/// One entry of a file's sensor map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sensor {
    pub position: Position,
    /// A SensorTag (16-bit readings in g, where the quarter-scale fault occurs), as opposed
    /// to the phone.
    pub sensor_tag: bool,
}

/// The sensor map of a file's header: sensor id → sensor.
pub fn parse_sensor_map(text: &str) -> BTreeMap<u32, Sensor> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let Some(line) = line.trim().strip_prefix('%') else {
            continue;
        };
        let cells: Vec<&str> = line.split(';').map(str::trim).collect();
        if cells.len() < 3 || !is_mac(cells[0]) {
            continue;
        }
        if let (Ok(id), Some(position)) = (cells[1].parse(), Position::from_header(cells[2])) {
            let sensor_tag = cells
                .get(3)
                .is_some_and(|m| m.eq_ignore_ascii_case("SensorTag"));
            map.insert(
                id,
                Sensor {
                    position,
                    sensor_tag,
                },
            );
        }
    }
    map
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The accelerometer rows of sensor `id` (sensor type 0), in file order (which is counter
/// order: a sensor's rows are written as they arrive, in sequence). A data line that cannot be
/// read is skipped and its number kept in [`Stream::malformed`]: one bad line must not hide a
/// whole recording.
pub fn parse_stream(text: &str, id: u32) -> Stream {
    let mut rows = Vec::new();
    let mut malformed = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim().trim_end_matches(';');
        if line.is_empty() || line.starts_with('%') {
            continue;
        }
        match parse_row(line, id) {
            Ok(Some(row)) => rows.push(row),
            Ok(None) => {}
            Err(()) => malformed.push(i + 1),
        }
    }
    Stream { rows, malformed }
}

/// One data line: `Some` if it is an accelerometer row of sensor `id`.
fn parse_row(line: &str, id: u32) -> Result<Option<(u64, [f64; 3])>, ()> {
    // The last two cells first, without allocating: most rows belong to other sensors.
    let mut tail = line.rsplitn(3, ';');
    let (Some(sensor), Some(kind), Some(head)) = (tail.next(), tail.next(), tail.next()) else {
        return Err(());
    };
    let (Ok(kind), Ok(sensor)) = (kind.trim().parse::<u32>(), sensor.trim().parse::<u32>()) else {
        return Err(());
    };
    if kind != 0 || sensor != id {
        return Ok(None);
    }
    let mut cells = head.split(';').map(str::trim);
    // TimeStamp (unused: reception time), Sample No, X, Y, Z.
    let (Some(_), Some(counter), Some(x), Some(y), Some(z), None) = (
        cells.next(),
        cells.next(),
        cells.next(),
        cells.next(),
        cells.next(),
        cells.next(),
    ) else {
        return Err(());
    };
    let counter: u64 = counter.parse().map_err(|_| ())?;
    let mut v = [0.0; 3];
    for (k, c) in v.iter_mut().zip([x, y, z]) {
        let value: f64 = c.parse().map_err(|_| ())?;
        if !value.is_finite() {
            return Err(());
        }
        *k = value;
    }
    Ok(Some((counter, v)))
}

/// Longest counter gap that is filled (5 s at 20 Hz); a longer jump or a step back is taken
/// as the sensor restarting its count, and the samples are joined as they are.
const MAX_GAP_STEPS: u64 = 100;

/// The samples one per counter step: a repeated counter is dropped, a gap of up to
/// [`MAX_GAP_STEPS`] is filled by holding the sample before it (the detector's timing is
/// the sample count). Returns the samples and how many were dropped and filled.
pub fn on_counter(rows: &[(u64, [f64; 3])]) -> (Vec<[f64; 3]>, usize, usize) {
    let mut out: Vec<[f64; 3]> = Vec::with_capacity(rows.len());
    let (mut dropped, mut filled) = (0, 0);
    let mut last: Option<u64> = None;
    for &(n, v) in rows {
        match last {
            Some(prev) if n == prev => {
                dropped += 1;
                continue;
            }
            Some(prev) if n > prev + 1 && n - prev <= MAX_GAP_STEPS => {
                let hold = out.last().copied().unwrap_or(v);
                for _ in prev + 1..n {
                    out.push(hold);
                    filled += 1;
                }
            }
            _ => {}
        }
        out.push(v);
        last = Some(n);
    }
    (out, dropped, filled)
}

/// Is `v` (g) off the 1/4096 g grid, i.e. a reading divided by 16384 instead of 4096?
fn off_coarse_grid(v: f64) -> bool {
    let counts = v * 4096.0;
    (counts - counts.round()).abs() > 1e-6 && (v.abs() - CLIP_G).abs() > 1e-9
}

/// What cleaning did to one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaning {
    /// Samples found on the 1/16384 g grid and multiplied by 4.
    pub rescaled: usize,
    /// Samples beyond ±8 g, replaced by the sample before.
    pub corrupt: usize,
    /// Rows whose `Sample No` repeats the one before, dropped.
    pub repeated: usize,
    /// Samples missing from the counter (a gap of up to 5 s), filled by holding the one before.
    pub filled: usize,
}

/// Corrects the samples of one stream (see the module docs) and converts them to counts of
/// 1/4096 g. `sensor_tag`: look for quarter-scale samples (the phone has a finer resolution
/// of its own, so the grid test does not apply to it).
pub fn clean(values: &[[f64; 3]], sensor_tag: bool) -> (Vec<[i16; 3]>, Cleaning) {
    let mut scaled: Vec<bool> = values
        .iter()
        .map(|v| sensor_tag && v.iter().any(|&c| off_coarse_grid(c)))
        .collect();
    // Fill gaps of one or two samples between scaled samples.
    let marked: Vec<usize> = (0..scaled.len()).filter(|&i| scaled[i]).collect();
    for pair in marked.windows(2) {
        if pair[1] - pair[0] <= 3 {
            for s in &mut scaled[pair[0] + 1..pair[1]] {
                *s = true;
            }
        }
    }
    let mut stats = Cleaning::default();
    let mut out: Vec<[i16; 3]> = Vec::with_capacity(values.len());
    for (v, &is_scaled) in values.iter().zip(&scaled) {
        let k = if is_scaled { 4.0 } else { 1.0 };
        stats.rescaled += usize::from(is_scaled);
        let g = v.map(|c| c * k);
        // The tags ran at ±8 g; the phone's range is ±16 g (its samples are clamped to the
        // ±8 g that 16-bit counts of 1/4096 g hold).
        if sensor_tag && g.iter().any(|c| c.abs() > 8.0 + 1e-9) {
            stats.corrupt += 1;
            let previous = out.last().copied().unwrap_or([0, 0, COUNTS_PER_G as i16]);
            out.push(previous);
            continue;
        }
        out.push(g.map(|c| {
            (c * f64::from(COUNTS_PER_G))
                .round()
                .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
        }));
    }
    (out, stats)
}

/// What loading a folder found, beyond the recordings.
#[derive(Debug, Clone, Default)]
pub struct LoadNotes {
    /// Files whose name is not a UMAFall trial name.
    pub skipped: Vec<PathBuf>,
    /// Trial files without the chosen position in their sensor map (or without a sensor
    /// map), or without its rows.
    pub without_position: Vec<PathBuf>,
    /// Samples rescaled (×4) and replaced (beyond ±8 g), over the files loaded.
    pub cleaning: Cleaning,
    /// Samples loaded (after decimation), for the rescaled share.
    pub samples: usize,
    /// Data lines that could not be read, skipped (over all files, any sensor).
    pub malformed_lines: usize,
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), EvalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| EvalError::Io(dir.to_path_buf(), e))?;
    for entry in entries {
        let path = entry
            .map_err(|e| EvalError::Io(dir.to_path_buf(), e))?
            .path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".csv.gz") || n.ends_with(".csv"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Does `root` hold UMAFall trial files (by name)?
pub fn looks_like_umafall(root: &Path) -> bool {
    let mut files = Vec::new();
    collect(root, &mut files).is_ok()
        && files.iter().any(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_file_name)
                .is_some()
        })
}

fn read_text(path: &Path) -> Result<String, EvalError> {
    let file = std::fs::File::open(path).map_err(|e| EvalError::Io(path.to_path_buf(), e))?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(file).read_to_end(&mut bytes)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut bytes)
    }
    .map_err(|e| EvalError::Io(path.to_path_buf(), e))?;
    // The header holds a few Latin-1 characters (the university's name).
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Subject id as used in reports and filters: `UMA01` for `Subject_01`.
pub fn subject_id(number: u32) -> String {
    format!("UMA{number:02}")
}

/// Reads every UMAFall trial under `root` (recursively), the samples of `position` only,
/// at 20 Hz in counts of 1/4096 g.
pub fn load(root: &Path, position: Position) -> Result<(Dataset, LoadNotes), EvalError> {
    if !root.is_dir() {
        return Err(EvalError::NotADirectory(root.to_path_buf()));
    }
    let mut files = Vec::new();
    collect(root, &mut files)?;
    files.sort();
    let mut notes = LoadNotes::default();
    let mut recordings = Vec::new();
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(parsed) = parse_file_name(name) else {
            notes.skipped.push(path);
            continue;
        };
        let text = read_text(&path)?;
        let map = parse_sensor_map(&text);
        let Some((&id, sensor)) = map.iter().find(|(_, s)| s.position == position) else {
            notes.without_position.push(path);
            continue;
        };
        let stream = parse_stream(&text, id);
        notes.malformed_lines += stream.malformed.len();
        if stream.rows.is_empty() {
            notes.without_position.push(path);
            continue;
        }
        let step = if position == Position::Pocket {
            usize::from(PHONE_RATE_HZ / RATE_HZ)
        } else {
            1
        };
        let (timed, repeated, filled) = on_counter(&stream.rows);
        let values: Vec<[f64; 3]> = timed.into_iter().step_by(step).collect();
        let (samples, cleaning) = clean(&values, sensor.sensor_tag);
        notes.cleaning.rescaled += cleaning.rescaled;
        notes.cleaning.corrupt += cleaning.corrupt;
        notes.cleaning.repeated += repeated;
        notes.cleaning.filled += filled;
        notes.samples += samples.len();
        recordings.push(Recording {
            code: parsed.activity.clone(),
            fall: parsed.fall,
            name: parsed.stem.trim_start_matches("UMAFall_").to_string(),
            subject: subject_id(parsed.subject),
            trial: parsed.trial,
            path,
            samples,
        });
    }
    if recordings.is_empty() {
        return Err(EvalError::NoRecordings(root.to_path_buf()));
    }
    recordings.sort_by(|a, b| (&a.code, &a.subject, a.trial).cmp(&(&b.code, &b.subject, b.trial)));
    let descriptions = ACTIVITIES
        .iter()
        .map(|(code, _, d)| (code.to_string(), d.to_string()))
        .collect();
    Ok((
        Dataset {
            root: root.to_path_buf(),
            sample_rate_hz: RATE_HZ,
            counts_per_g: COUNTS_PER_G,
            recordings,
            descriptions,
            descriptions_source: "built-in UMAFall activity table".to_string(),
        },
        notes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let f =
            parse_file_name("UMAFall_Subject_02_ADL_LyingDown_OnABed_3_2016-06-13_20-43-52.csv.gz")
                .expect("parses");
        assert_eq!(f.subject, 2);
        assert!(!f.fall);
        assert_eq!(f.activity, "LyingDown_OnABed");
        assert_eq!(f.trial, 3);
        let f = parse_file_name("UMAFall_Subject_11_Fall_forwardFall_1_2017-01-01_10-00-00.csv")
            .expect("parses");
        assert_eq!(
            (f.subject, f.fall, f.activity.as_str()),
            (11, true, "forwardFall")
        );
        for bad in [
            "README.md",
            "F01_SA01_R01.csv.gz",
            "UMAFall_Subject_xx_ADL_Walking_1_2017-01-01_10-00-00.csv",
            "UMAFall_Subject_01_Other_Walking_1_2017-01-01_10-00-00.csv",
            "UMAFall_Subject_01_ADL_Walking_2017-01-01_10-00-00.csv",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    const SAMPLE: &str = "% Universidad de Malaga\n\
        % MAC Address; Sensor_ID; Position; Device Model\n\
        %f8:95:c7:f3:ba:82; 0; RIGHTPOCKET; lge-LG-H815-5.1\n\
        %C4:BE:84:71:A5:02; 7; CHEST; SensorTag\n\
        %B0:B4:48:B8:77:03; 4; ANKLE; SensorTag\n\
        % TimeStamp; Sample No; X-Axis; Y-Axis; Z-Axis; Sensor Type; Sensor ID;\n\
        102;1;-0.13;0.88;0.33;0;0\n\
        123;1;0.5;0.25;0.125;0;7\n\
        130;2;1.0;0.0;0.0;0;7\n\
        131;2;9.0;0.0;0.0;1;7\n";

    #[test]
    fn sensor_map_and_stream() {
        let map = parse_sensor_map(SAMPLE);
        assert_eq!(map.len(), 3);
        assert_eq!(
            map[&7],
            Sensor {
                position: Position::Chest,
                sensor_tag: true
            }
        );
        assert_eq!(
            map[&0],
            Sensor {
                position: Position::Pocket,
                sensor_tag: false
            }
        );
        // Chest rows only (id 7, type 0), in file order.
        let s = parse_stream(SAMPLE, 7);
        assert_eq!(s.rows, vec![(1, [0.5, 0.25, 0.125]), (2, [1.0, 0.0, 0.0])]);
        assert!(s.malformed.is_empty());
        // A chest row with columns missing, a value that is not a number, a line of text:
        // skipped and counted, the good row kept.
        let s = parse_stream("1;2;0;7\n5;3;0.1;x;0.3;0;7\nhello\n9;4;1;0;0;0;7;\n", 7);
        assert_eq!(s.rows, vec![(4, [1.0, 0.0, 0.0])]);
        assert_eq!(s.malformed, vec![1, 2, 3]);
    }

    #[test]
    fn samples_are_timed_by_the_counter() {
        let a = [1.0, 0.0, 0.0];
        let b = [0.0, 1.0, 0.0];
        let c = [0.0, 0.0, 1.0];
        // 10, 10 (repeated), 13 (two missing: held), then a restart at 0.
        let rows = [(10, a), (10, b), (13, b), (14, c), (0, a), (1, b)];
        let (out, dropped, filled) = on_counter(&rows);
        assert_eq!((dropped, filled), (1, 2));
        assert_eq!(out, vec![a, a, a, b, c, a, b]);
        // A jump beyond 5 s is a restart, not a gap.
        let (out, _, filled) = on_counter(&[(1, a), (500, b)]);
        assert_eq!((out.len(), filled), (2, 0));
    }

    #[test]
    fn quarter_scale_samples_are_rescaled_and_corrupt_ones_replaced() {
        let q = 1.0 / 16384.0;
        let values = [
            // 0.25 g at rest, on the fine grid: ×4.
            [4097.0 * q, 3.0 * q, -5.0 * q],
            // On the coarse grid by chance, between two scaled samples: ×4 as well.
            [4096.0 * q, 4.0 * q, -8.0 * q],
            [4095.0 * q, 1.0 * q, 0.0],
            // Ordinary samples, one clipped at -32511/16384 g: unchanged.
            [1.0, 0.0, 0.0],
            [-32511.0 * q, 0.5, 2.0],
            // Beyond 8 g: replaced by the sample before.
            [9.5, 0.0, 0.0],
        ];
        let (out, stats) = clean(&values, true);
        assert_eq!(
            stats,
            Cleaning {
                rescaled: 3,
                corrupt: 1,
                ..Cleaning::default()
            }
        );
        assert_eq!(out[0], [4097, 3, -5]);
        assert_eq!(out[1], [4096, 4, -8]);
        assert_eq!(out[3], [4096, 0, 0]);
        assert_eq!(out[4], [-8128, 2048, 8192]);
        assert_eq!(out[5], out[4]);
        // The phone's own fine resolution is not a fault.
        let (_, phone) = clean(&values[..1], false);
        assert_eq!(phone.rescaled, 0);
    }
}

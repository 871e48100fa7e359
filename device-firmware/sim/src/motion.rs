//! Accelerometer data for the pendants: synthetic trials, or SisFall recordings (200 Hz,
//! ADXL345 at 256 counts/g, −Y up: what `FallConfig::SISFALL_WAIST` expects).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The detector's sample rate for every trial here.
pub const RATE_HZ: u16 = 200;

/// Where the samples come from.
#[derive(Debug, Clone)]
pub enum MotionSource {
    /// Generated: standing, a stumble into a fall, lying still.
    Synthetic,
    /// SisFall recordings from this folder (`<SUBJECT>/<CODE>_<SUBJECT>_R<NN>.csv.gz`).
    SisFall(PathBuf),
}

/// Fall trials the default SisFall run cycles through, one per pendant (all detected in
/// the evaluation).
pub const DEFAULT_TRIALS: [&str; 4] = [
    "F01_SA01_R01",
    "F05_SA02_R01",
    "F09_SA03_R01",
    "F12_SA04_R01",
];

/// A deterministic synthetic fall trial, 15 s like SisFall's: 4 s standing with a little
/// sway, 0.3 s of free fall, an impact of about 3.5 g, then lying on the back, still.
pub fn synthetic_fall(seed: u32) -> Vec<[i16; 3]> {
    let mut s = Vec::with_capacity(3000);
    let mut rng = seed.wrapping_mul(2_654_435_761).max(1);
    let mut noise = move |amp: i16| {
        // xorshift32: reproducible noise without a dependency.
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        (rng % (2 * amp as u32 + 1)) as i16 - amp
    };
    for _ in 0..800 {
        s.push([noise(12), -256 + noise(12), noise(12)]);
    }
    for _ in 0..60 {
        s.push([10 + noise(8), -40 + noise(8), 20 + noise(8)]);
    }
    for _ in 0..6 {
        s.push([400 + noise(30), -600 + noise(30), 500 + noise(30)]);
    }
    while s.len() < 3000 {
        s.push([noise(4), noise(4), 256 + noise(4)]);
    }
    s
}

/// A SisFall recording by name (`F01_SA01_R01`), from `root`.
pub fn sisfall_trial(root: &Path, name: &str) -> anyhow::Result<Vec<[i16; 3]>> {
    let subject = name
        .split('_')
        .nth(1)
        .with_context(|| format!("trial `{name}` is not CODE_SUBJECT_RNN"))?;
    let path = root.join(subject).join(format!("{name}.csv.gz"));
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    homeward_fall_eval::parse_samples(&bytes)
        .map_err(|line| anyhow::anyhow!("{}: bad line {line}", path.display()))
}

/// The default SisFall folder: `../shared/datasets/sisfall` from the current directory or
/// from the workspace root.
pub fn default_sisfall_dir() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("../shared/datasets/sisfall"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/sisfall"),
    ];
    candidates.into_iter().find(|p| p.is_dir())
}

impl MotionSource {
    /// The fall trial for the `i`-th pendant.
    pub fn fall(&self, i: usize) -> anyhow::Result<Vec<[i16; 3]>> {
        match self {
            MotionSource::Synthetic => Ok(synthetic_fall(i as u32 + 1)),
            MotionSource::SisFall(root) => {
                sisfall_trial(root, DEFAULT_TRIALS[i % DEFAULT_TRIALS.len()])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use homeward_device_core::fall::{FallConfig, FallDetector};

    use super::*;

    fn detects(samples: &[[i16; 3]]) -> bool {
        let mut d = FallDetector::new(FallConfig::SISFALL_WAIST).unwrap();
        samples.iter().any(|&s| d.push(s).is_some())
    }

    #[test]
    fn synthetic_falls_are_detected() {
        for seed in 1..20 {
            assert!(detects(&synthetic_fall(seed)), "seed {seed}");
        }
    }

    #[test]
    fn default_sisfall_trials_are_detected() {
        // The SisFall subset is present on every developer machine and in CI: a missing
        // folder fails, as it does in the evaluation's tests, rather than passing unchecked.
        let root = default_sisfall_dir().unwrap_or_else(|| {
            panic!(
                "the SisFall subset must be at ../shared/datasets/sisfall from the current \
                 directory or from the workspace root ({})",
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../../shared/datasets/sisfall")
                    .display()
            )
        });
        for name in DEFAULT_TRIALS {
            let samples = sisfall_trial(&root, name).unwrap();
            assert!(detects(&samples), "{name}");
        }
    }
}

//! Streaming fall detector over raw 3-axis accelerometer samples.
//!
//! A fall is reported when three things are seen in order (the classic structure):
//!
//! 1. **Upright before.** Within [`FallConfig::lookback_ms`] before the impact, the wearer was
//!    upright (standing or sitting): the gravity direction of at least one
//!    [`FallConfig::block_ms`] block lay within [`FallConfig::upright_max_deg`] of the device's
//!    "up" axis. The most upright such block is the *reference posture*.
//! 2. **Impact.** The acceleration magnitude reached [`FallConfig::impact_mg`], or (when
//!    [`FallConfig::jerk_mg`] is set) the acceleration vector changed by that much within
//!    [`FallConfig::jerk_span_ms`]: at a pendant's 20 Hz the highest sample of a hit is
//!    usually missed, but the abrupt change is seen whatever the sampling phase.
//! 3. **Lying still after.** Once [`FallConfig::settle_ms`] have passed since the last impact,
//!    over the next [`FallConfig::observe_ms`] the mean gravity direction is turned by at least
//!    [`FallConfig::turn_min_deg`] from the reference posture, and the acceleration vector moves
//!    little (its standard deviation is at most [`FallConfig::still_max_mg`]). With
//!    [`FallConfig::still_within_ms`] set, a window that fails is followed by further ones
//!    (the wearer rolling or the pendant rocking for a moment after the fall).
//!
//! A free-fall phase (magnitude well below 1 g before the impact) is *not* required: slumping
//! falls from a chair often show none (in 61 of SisFall's 525 fall trials the magnitude never
//! drops below 0.6 g before the peak, in some F13 and F07 trials not below 0.8 to 1.0 g).
//! When present it raises the confidence.
//!
//! Maths: squared magnitudes on the per-sample path (three multiplications, no square root);
//! integer square roots and a fixed-point cosine table only once per posture block or per
//! candidate event. Memory: one fixed ring of [`MAX_BLOCKS`] posture blocks.
//!
//! Why each threshold has the value it has is written next to it in the presets,
//! [`FallConfig::SISFALL_WAIST`] (a waist clip) and [`FallConfig::CHEST_PENDANT`] (a
//! pendant), chosen by product with [`FallConfig::for_wearable`];
//! `device-firmware/README.md` has the measured effect of moving each one by ±10%.

/// Capacity of the posture-block ring: bounds `lookback_ms / block_ms`.
pub const MAX_BLOCKS: usize = 32;

/// Capacity of the ring of recent raw samples used for the change-of-acceleration impact
/// test: bounds `jerk_span_ms` in samples (50 ms at up to 300 Hz).
pub const MAX_JERK_LAG: usize = 16;

/// The kind of worn device, which decides where the accelerometer sits and so which
/// detector preset it runs ([`FallConfig::for_wearable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wearable {
    /// A pendant on a lanyard, hanging at the chest: [`FallConfig::CHEST_PENDANT`].
    ChestPendant,
    /// A clip worn on the belt: [`FallConfig::SISFALL_WAIST`].
    WaistClip,
}

/// Which device axis points up (reads about +1 g) when the wearer stands upright.
///
/// An accelerometer at rest measures the reaction to gravity, so the axis that points up
/// reads +1 g. In SisFall (waist, ADXL345) that is the negative Y axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpAxis {
    PosX,
    NegX,
    PosY,
    NegY,
    PosZ,
    NegZ,
}

impl UpAxis {
    fn component(self, v: [i32; 3]) -> i32 {
        match self {
            UpAxis::PosX => v[0],
            UpAxis::NegX => -v[0],
            UpAxis::PosY => v[1],
            UpAxis::NegY => -v[1],
            UpAxis::PosZ => v[2],
            UpAxis::NegZ => -v[2],
        }
    }
}

/// Detector configuration: the sensor (rate, scale, mounting) and the thresholds.
///
/// Accelerations are in milli-g, angles in degrees, durations in milliseconds; they are
/// converted once to sensor counts and sample counts by [`FallDetector::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallConfig {
    /// Samples per second delivered to [`FallDetector::push`].
    pub sample_rate_hz: u16,
    /// Raw counts per 1 g (ADXL345 at 13 bits, ±16 g: 256).
    pub counts_per_g: u16,
    /// The device axis that reads +1 g when the wearer is upright.
    pub up_axis: UpAxis,
    /// Impact: acceleration magnitude at or above this starts a candidate fall.
    pub impact_mg: u16,
    /// Upright: the reference posture is at most this far from the up axis.
    pub upright_max_deg: u8,
    /// Lying: after the impact, the posture is turned at least this far from the reference.
    pub turn_min_deg: u8,
    /// Still: standard deviation of the acceleration vector after the impact at most this.
    pub still_max_mg: u16,
    /// Posture is averaged over blocks of this length.
    pub block_ms: u16,
    /// How far back before the impact an upright posture is looked for.
    pub lookback_ms: u16,
    /// Time after the last impact before the lying posture is measured.
    pub settle_ms: u16,
    /// Length of the window in which the lying posture and stillness are measured.
    pub observe_ms: u16,
    /// Impact by change: the acceleration vector changes by at least this much (the length
    /// of the difference vector) between two samples `jerk_span_ms` apart. Either this or
    /// [`FallConfig::impact_mg`] starts a candidate fall. 0 turns the test off.
    pub jerk_mg: u16,
    /// Span of the change-of-acceleration test, ms (rounded to whole samples, at least one).
    pub jerk_span_ms: u16,
    /// If the first observation window is not lying and still, further windows of
    /// `observe_ms` follow, one after another, as long as they start within this time of
    /// the first. 0 gives a single window.
    pub still_within_ms: u16,
}

impl FallConfig {
    /// Waist-worn ADXL345 at 200 Hz, ±16 g, 13 bits, as in the SisFall dataset.
    pub const SISFALL_WAIST: FallConfig = FallConfig {
        sample_rate_hz: 200,
        counts_per_g: 256,
        up_axis: UpAxis::NegY,
        // 2 g: all but 2 of SisFall's 525 fall trials peak at 2 g or more (soft falls out of a
        // chair, F13, reach 1.8 to 2.5 g), while lying down on purpose (D12, D13) mostly peaks
        // at 1.1 to 1.8 g. Brisk walking and dropping onto a chair also pass 2 g; they are
        // told apart by the posture checks, not by this threshold.
        impact_mg: 2000,
        // 45°: standing, walking and sitting upright keep the trunk mostly within 30° of
        // vertical; 45° allows leaning forward to rise from a chair, while a trunk already
        // lying (70° or more) never counts as "upright before", so rolling over in bed is not
        // a fall.
        upright_max_deg: 45,
        // 60°: lying on the floor turns the trunk mostly 75° to 110° from the reference;
        // sitting down, even dropping into a low chair, 10° to 50° (a few reclining elderly
        // sitters reach 60° to 70°). 60° lies between the two groups.
        turn_min_deg: 60,
        // 0.2 g: lying after a fall moves the waist mostly by less than 0.15 g (breathing,
        // shifting a limb); walking or getting straight up again by about 0.3 g or more.
        still_max_mg: 200,
        // 0.25 s: short enough to catch an upright moment during a stumble, long enough to
        // average out most of a gait cycle's bounce.
        block_ms: 250,
        // 4 s: a fall from standing takes under 1.5 s; fainting and slumping falls up to 3 s.
        lookback_ms: 4000,
        // 1.5 s after the last impact: bounces and rolling on the floor are over.
        settle_ms: 1500,
        // 1.5 s of lying: long enough to see a steady posture, short enough to decide 3 s
        // after the impact (and inside SisFall's 15 s trials).
        observe_ms: 1500,
        // At 200 Hz the peak of a hit is always sampled: the magnitude test suffices.
        jerk_mg: 0,
        jerk_span_ms: 50,
        still_within_ms: 0,
    };

    /// A pendant on a lanyard at the chest, sampled at 20 Hz (the slowest rate it supports;
    /// at up to 50 Hz set `sample_rate_hz`, every duration is in milliseconds), a 16-bit
    /// accelerometer at ±8 g (4096 counts per g), +X pointing up along the lanyard.
    ///
    /// The figures quoted are from UMAFall's chest SensorTag at 20 Hz (subjects 01–09; falls
    /// onto a mattress, lying down on a bed among the ADLs), see `device-firmware/README.md`.
    pub const CHEST_PENDANT: FallConfig = FallConfig {
        sample_rate_hz: 20,
        counts_per_g: 4096,
        up_axis: UpAxis::PosX,
        // 3 g: at 20 Hz the single highest sample of a hit is usually missed (UMAFall's chest
        // fall peaks: median 2.9 g, 2.1 g the lowest) and some chest sensors clip at 2 g, so
        // the magnitude alone cannot find soft falls; the change test below does. A
        // magnitude of 3 g still counts on its own: lying down on a bed peaks at 1.3 to
        // 2.2 g, sitting down at 1.2 to 2.0 g.
        impact_mg: 3000,
        // 45°: a pendant hangs along the trunk; before every UMAFall fall the chest's most
        // upright 0.25 s is within 25° of vertical, while lying (70° or more) never counts.
        upright_max_deg: 45,
        // 60°: after a fall the chest lies 64° to 130° from its upright posture (UMAFall,
        // but for one subject who sat straight up); walking keeps it within 50°. Bending and
        // sitting down lean the chest further for moments (up to 84° to 113°), so at the
        // chest this confirms lying; the change test does most of the separating.
        turn_min_deg: 60,
        // 0.5 g: lying after a fall onto a mattress the chest moves by 0.01 to 0.18 g in
        // most trials, up to 0.38 g (UMAFall 01-09; the wearer shifting, the pendant
        // rocking on the lanyard; UMAFall's other subjects reach 0.2 to 0.48 g), breathing
        // by a few hundredths of a g; jogging or hopping moves it by about 1 g. At the chest
        // the turn test, not this one, tells lying from walking (which moves it by 0.13 to
        // 0.35 g), so the threshold can sit above every lying value seen.
        still_max_mg: 500,
        block_ms: 250,
        lookback_ms: 4000,
        settle_ms: 1500,
        observe_ms: 1500,
        // 1.5 g in 50 ms: a fall's impact changes the chest's acceleration by 1.8 to 20 g
        // between two samples 50 ms apart (UMAFall, falls onto a mattress); lying down on a
        // bed by 0.3 to 1.1 g (one trial 1.8 g), sitting down by 0.2 to 1.1 g. 1.5 g lies
        // between, and a hit is seen whether or not its highest sample is caught.
        jerk_mg: 1500,
        jerk_span_ms: 50,
        // 5 s: the wearer may roll or shift, or the pendant swing, for a few seconds after
        // falling; lying still in a window starting within 5 s of the first is still a fall
        // (decided at most 8 s after the impact, well inside the 30 s cancel window).
        still_within_ms: 5000,
    };

    /// The preset for a kind of worn device.
    pub const fn for_wearable(wearable: Wearable) -> FallConfig {
        match wearable {
            Wearable::ChestPendant => FallConfig::CHEST_PENDANT,
            Wearable::WaistClip => FallConfig::SISFALL_WAIST,
        }
    }

    fn ms_to_samples(&self, ms: u16) -> u32 {
        (u32::from(ms) * u32::from(self.sample_rate_hz)).div_ceil(1000)
    }

    fn mg_to_counts(&self, mg: u16) -> u32 {
        (u32::from(mg) * u32::from(self.counts_per_g)).div_ceil(1000)
    }
}

impl Default for FallConfig {
    fn default() -> Self {
        FallConfig::SISFALL_WAIST
    }
}

/// A configuration the detector cannot run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// `sample_rate_hz` or `counts_per_g` is zero.
    ZeroRateOrScale,
    /// A block is shorter than one sample.
    BlockTooShort,
    /// `lookback_ms / block_ms` is zero or exceeds [`MAX_BLOCKS`].
    LookbackOutOfRange,
    /// The observation window holds no sample, or more than 65,535.
    ObserveOutOfRange,
    /// An angle is above 90° (`upright_max_deg`) or 180° (`turn_min_deg`).
    AngleOutOfRange,
    /// `impact_mg` or `still_max_mg` is zero.
    ZeroThreshold,
    /// `jerk_span_ms` is more than [`MAX_JERK_LAG`] samples.
    JerkSpanTooLong,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::ZeroRateOrScale => "sample_rate_hz and counts_per_g must be positive",
            ConfigError::BlockTooShort => "block_ms must hold at least one sample",
            ConfigError::LookbackOutOfRange => "lookback_ms / block_ms must be 1..=32",
            ConfigError::ObserveOutOfRange => "observe_ms must hold 1..=65535 samples",
            ConfigError::AngleOutOfRange => "upright_max_deg must be <= 90, turn_min_deg <= 180",
            ConfigError::ZeroThreshold => "impact_mg and still_max_mg must be positive",
            ConfigError::JerkSpanTooLong => "jerk_span_ms must be at most 16 samples",
        })
    }
}

/// A detected fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallEvent {
    /// Index (from 0, counting every pushed sample) of the last sample at or above the
    /// impact threshold; the posture was measured from `settle_ms` after it.
    pub impact_sample: u64,
    /// Index of the sample whose arrival completed the detection.
    pub detected_sample: u64,
    /// `detected_sample` in milliseconds since the detector's first sample.
    pub detected_ms: u64,
    /// How clearly each phase was seen, 0..=100 (a heuristic score, not a probability).
    pub confidence: u8,
    /// Largest acceleration magnitude of the impact(s), milli-g.
    pub peak_mg: u32,
    /// Largest change of the acceleration vector over `jerk_span_ms` during the impact(s),
    /// milli-g (0 when the change test is off).
    pub jerk_mg: u32,
    /// Smallest acceleration magnitude in the second before the impact, milli-g.
    pub free_fall_min_mg: u32,
    /// Angle between the reference (upright) posture and the lying posture, whole degrees.
    pub turn_deg: u8,
}

/// Posture block: mean acceleration vector and minimum squared magnitude. Kept small
/// (12 bytes) because the ring holds [`MAX_BLOCKS`] of them: a mean of `i16` samples is an
/// `i16`, and a squared magnitude of three `i16` is below 3·2³⁰, which fits a `u32`.
#[derive(Debug, Clone, Copy, Default)]
struct Block {
    mean: [i16; 3],
    min_mag2: u32,
}

impl Block {
    fn mean(&self) -> [i32; 3] {
        self.mean.map(i32::from)
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle,
    /// An impact was seen after an upright posture; waiting for it to settle, then
    /// measuring the posture.
    Watching {
        impact: u64,
        reference: [i32; 3],
        peak_mag2: u64,
        peak_jerk2: u64,
        free_fall_min_mag2: u64,
        observe_from: u64,
        /// No new observation window starts after this sample.
        last_window_start: u64,
    },
}

/// Thresholds converted to counts and samples.
#[derive(Debug, Clone, Copy)]
struct Derived {
    impact_mag2: u64,
    still_var_counts2: i64,
    upright_cos_q14: i32,
    turn_cos_q14: i32,
    block_len: u32,
    lookback_blocks: usize,
    free_fall_blocks: usize,
    settle_len: u64,
    observe_len: u32,
    /// `jerk_mg` squared in counts; `u64::MAX` when the test is off.
    jerk2: u64,
    jerk_lag: usize,
    still_within_len: u64,
}

/// Streaming fall detector. Feed it every sample with [`FallDetector::push`].
#[derive(Debug, Clone)]
pub struct FallDetector {
    config: FallConfig,
    d: Derived,
    /// Samples pushed so far; the next sample's index.
    samples: u64,
    // Block being filled.
    block_sum: [i64; 3],
    block_min: u64,
    block_fill: u32,
    // Ring of completed blocks, `ring_len` valid, newest at `ring_head - 1`.
    ring: [Block; MAX_BLOCKS],
    ring_head: usize,
    ring_len: usize,
    phase: Phase,
    // Observation window accumulators.
    obs_n: u32,
    obs_sum: [i64; 3],
    obs_sq: [i64; 3],
    // The last `MAX_JERK_LAG` raw samples, for the change-of-acceleration test.
    lag: [[i16; 3]; MAX_JERK_LAG],
}

/// cos(d°) in Q14 (16384 = 1.0) for d in 0..=90.
const COS_Q14: [i16; 91] = [
    16384, 16382, 16374, 16362, 16344, 16322, 16294, 16262, 16225, 16182, 16135, 16083, 16026,
    15964, 15897, 15826, 15749, 15668, 15582, 15491, 15396, 15296, 15191, 15082, 14968, 14849,
    14726, 14598, 14466, 14330, 14189, 14044, 13894, 13741, 13583, 13421, 13255, 13085, 12911,
    12733, 12551, 12365, 12176, 11982, 11786, 11585, 11381, 11174, 10963, 10749, 10531, 10311,
    10087, 9860, 9630, 9397, 9162, 8923, 8682, 8438, 8192, 7943, 7692, 7438, 7182, 6924, 6664,
    6402, 6138, 5872, 5604, 5334, 5063, 4790, 4516, 4240, 3964, 3686, 3406, 3126, 2845, 2563, 2280,
    1997, 1713, 1428, 1143, 857, 572, 286, 0,
];

/// cos(deg°) in Q14 for deg in 0..=180.
fn cos_q14(deg: u8) -> i32 {
    if deg <= 90 {
        i32::from(COS_Q14[usize::from(deg)])
    } else {
        -i32::from(COS_Q14[180 - usize::from(deg.min(180))])
    }
}

/// Whole degrees whose cosine (Q14) is closest to `c`, for reporting only.
fn acos_deg(c: i32) -> u8 {
    let c = c.clamp(-16384, 16384);
    let mut best = 0u8;
    let mut best_err = i32::MAX;
    for deg in 0..=180u8 {
        let err = (cos_q14(deg) - c).abs();
        if err < best_err {
            best = deg;
            best_err = err;
        }
    }
    best
}

fn norm(v: [i32; 3]) -> i64 {
    let n2 = v.iter().map(|&c| i64::from(c) * i64::from(c)).sum::<i64>();
    // `n2` is a sum of squares, never negative.
    n2.unsigned_abs().isqrt() as i64
}

fn dot(a: [i32; 3], b: [i32; 3]) -> i64 {
    (0..3).map(|k| i64::from(a[k]) * i64::from(b[k])).sum()
}

/// `points` scaled linearly: 0 at `zero`, `points` at `full` (either order), clamped.
fn ramp(value: i64, zero: i64, full: i64, points: i64) -> i64 {
    if zero == full {
        return if value == full { points } else { 0 };
    }
    let p = (value - zero) * points / (full - zero);
    p.clamp(0, points)
}

impl FallDetector {
    /// A detector for `config`, or why the configuration cannot work.
    pub fn new(config: FallConfig) -> Result<Self, ConfigError> {
        if config.sample_rate_hz == 0 || config.counts_per_g == 0 {
            return Err(ConfigError::ZeroRateOrScale);
        }
        if config.impact_mg == 0 || config.still_max_mg == 0 {
            return Err(ConfigError::ZeroThreshold);
        }
        if config.upright_max_deg > 90 || config.turn_min_deg > 180 {
            return Err(ConfigError::AngleOutOfRange);
        }
        let block_len = u32::from(config.block_ms) * u32::from(config.sample_rate_hz) / 1000;
        if block_len == 0 {
            return Err(ConfigError::BlockTooShort);
        }
        let lookback_blocks = usize::from(config.lookback_ms / config.block_ms.max(1));
        if lookback_blocks == 0 || lookback_blocks > MAX_BLOCKS {
            return Err(ConfigError::LookbackOutOfRange);
        }
        let observe_len = config.ms_to_samples(config.observe_ms);
        // The bound keeps the variance sums of `decide` far from overflowing an i64.
        if observe_len == 0 || observe_len > u32::from(u16::MAX) {
            return Err(ConfigError::ObserveOutOfRange);
        }
        let jerk_lag = (config.ms_to_samples(config.jerk_span_ms) as usize).max(1);
        if config.jerk_mg > 0 && jerk_lag > MAX_JERK_LAG {
            return Err(ConfigError::JerkSpanTooLong);
        }
        let impact = u64::from(config.mg_to_counts(config.impact_mg));
        let still = i64::from(config.mg_to_counts(config.still_max_mg));
        let jerk = u64::from(config.mg_to_counts(config.jerk_mg));
        let d = Derived {
            impact_mag2: impact * impact,
            still_var_counts2: still * still,
            upright_cos_q14: cos_q14(config.upright_max_deg),
            turn_cos_q14: cos_q14(config.turn_min_deg),
            block_len,
            lookback_blocks,
            // The second before the impact, in whole blocks (at least one).
            free_fall_blocks: usize::from(1000u16.div_ceil(config.block_ms.max(1)))
                .clamp(1, MAX_BLOCKS),
            settle_len: u64::from(config.ms_to_samples(config.settle_ms)),
            observe_len,
            jerk2: if config.jerk_mg == 0 {
                u64::MAX
            } else {
                jerk * jerk
            },
            jerk_lag: jerk_lag.min(MAX_JERK_LAG),
            still_within_len: u64::from(config.ms_to_samples(config.still_within_ms)),
        };
        Ok(FallDetector {
            config,
            d,
            samples: 0,
            block_sum: [0; 3],
            block_min: u64::MAX,
            block_fill: 0,
            ring: [Block::default(); MAX_BLOCKS],
            ring_head: 0,
            ring_len: 0,
            phase: Phase::Idle,
            obs_n: 0,
            obs_sum: [0; 3],
            obs_sq: [0; 3],
            lag: [[0; 3]; MAX_JERK_LAG],
        })
    }

    /// The configuration this detector runs with.
    pub fn config(&self) -> &FallConfig {
        &self.config
    }

    /// Number of samples pushed so far (the index the next sample will get).
    pub fn samples_seen(&self) -> u64 {
        self.samples
    }

    /// Forget all history, as if just created.
    pub fn reset(&mut self) {
        if let Ok(fresh) = FallDetector::new(self.config) {
            *self = fresh;
        }
    }

    /// Feed one sample `[x, y, z]` in raw counts. Returns a fall when this sample completes
    /// its detection; at most one event per impact sequence.
    pub fn push(&mut self, sample: [i16; 3]) -> Option<FallEvent> {
        let index = self.samples;
        self.samples += 1;
        let v = [
            i32::from(sample[0]),
            i32::from(sample[1]),
            i32::from(sample[2]),
        ];
        let mag2 = v
            .iter()
            .map(|&c| (i64::from(c) * i64::from(c)).unsigned_abs())
            .sum::<u64>();
        // Change of the acceleration vector since `jerk_lag` samples ago (none before the
        // first `jerk_lag` samples), squared.
        let jerk2 = if self.d.jerk2 == u64::MAX || index < self.d.jerk_lag as u64 {
            0
        } else {
            let slot = (index as usize + MAX_JERK_LAG - self.d.jerk_lag) % MAX_JERK_LAG;
            let old = self.lag[slot];
            (0..3)
                .map(|k| {
                    let d = i64::from(sample[k]) - i64::from(old[k]);
                    (d * d).unsigned_abs()
                })
                .sum::<u64>()
        };
        self.lag[index as usize % MAX_JERK_LAG] = sample;
        let impact = mag2 >= self.d.impact_mag2 || jerk2 >= self.d.jerk2;

        let mut event = None;
        match &mut self.phase {
            Phase::Idle => {
                if impact {
                    if let Some(reference) = self.upright_reference() {
                        let observe_from = index + 1 + self.d.settle_len;
                        self.phase = Phase::Watching {
                            impact: index,
                            reference,
                            peak_mag2: mag2,
                            peak_jerk2: jerk2,
                            free_fall_min_mag2: self.recent_min_mag2(),
                            observe_from,
                            last_window_start: observe_from + self.d.still_within_len,
                        };
                        self.clear_observation();
                    }
                }
            }
            Phase::Watching {
                impact: impact_at,
                peak_mag2,
                peak_jerk2,
                observe_from,
                last_window_start,
                ..
            } => {
                if impact {
                    // Another impact (a bounce, a second blow): settle again from here, keep
                    // the posture from before the first one.
                    *impact_at = index;
                    *peak_mag2 = (*peak_mag2).max(mag2);
                    *peak_jerk2 = (*peak_jerk2).max(jerk2);
                    *observe_from = index + 1 + self.d.settle_len;
                    *last_window_start = *observe_from + self.d.still_within_len;
                    self.clear_observation();
                } else if index >= *observe_from {
                    let last_window_start = *last_window_start;
                    self.observe(v);
                    if self.obs_n >= self.d.observe_len {
                        event = self.decide(index);
                        if event.is_none() && index < last_window_start {
                            // Not yet lying still: look again over the next window.
                            self.clear_observation();
                        } else {
                            self.phase = Phase::Idle;
                        }
                    }
                }
            }
        }

        self.add_to_block(v, mag2);
        event
    }

    fn clear_observation(&mut self) {
        self.obs_n = 0;
        self.obs_sum = [0; 3];
        self.obs_sq = [0; 3];
    }

    fn observe(&mut self, v: [i32; 3]) {
        self.obs_n += 1;
        for ((sum, sq), c) in self.obs_sum.iter_mut().zip(&mut self.obs_sq).zip(v) {
            *sum += i64::from(c);
            *sq += i64::from(c) * i64::from(c);
        }
    }

    fn add_to_block(&mut self, v: [i32; 3], mag2: u64) {
        for (sum, c) in self.block_sum.iter_mut().zip(v) {
            *sum += i64::from(c);
        }
        self.block_min = self.block_min.min(mag2);
        self.block_fill += 1;
        if self.block_fill >= self.d.block_len {
            let n = i64::from(self.block_fill);
            self.ring[self.ring_head] = Block {
                // The mean of i16 values is an i16; the clamp only documents that.
                mean: self
                    .block_sum
                    .map(|s| (s / n).clamp(i16::MIN.into(), i16::MAX.into()) as i16),
                min_mag2: self.block_min.min(u64::from(u32::MAX)) as u32,
            };
            self.ring_head = (self.ring_head + 1) % MAX_BLOCKS;
            self.ring_len = (self.ring_len + 1).min(MAX_BLOCKS);
            self.block_sum = [0; 3];
            self.block_min = u64::MAX;
            self.block_fill = 0;
        }
    }

    /// The `n` newest completed blocks, newest first.
    fn recent_blocks(&self, n: usize) -> impl Iterator<Item = &Block> {
        let n = n.min(self.ring_len);
        (1..=n).map(move |back| &self.ring[(self.ring_head + MAX_BLOCKS - back) % MAX_BLOCKS])
    }

    /// The most upright recent block's mean vector, if it is upright enough.
    fn upright_reference(&self) -> Option<[i32; 3]> {
        let mut best: Option<([i32; 3], i64)> = None;
        for block in self.recent_blocks(self.d.lookback_blocks) {
            let mean = block.mean();
            let n = norm(mean);
            if n == 0 {
                continue;
            }
            // cos(tilt) in Q14: up component over magnitude.
            let cos = i64::from(self.config.up_axis.component(mean)) * 16384 / n;
            if best.is_none_or(|(_, c)| cos > c) {
                best = Some((mean, cos));
            }
        }
        match best {
            Some((mean, cos)) if cos >= i64::from(self.d.upright_cos_q14) => Some(mean),
            _ => None,
        }
    }

    /// Smallest squared magnitude over roughly the last second (free-fall depth).
    fn recent_min_mag2(&self) -> u64 {
        self.recent_blocks(self.d.free_fall_blocks)
            .map(|b| u64::from(b.min_mag2))
            .fold(self.block_min, u64::min)
    }

    /// End of the observation window: lying and still?
    fn decide(&self, index: u64) -> Option<FallEvent> {
        let Phase::Watching {
            impact,
            reference,
            peak_mag2,
            peak_jerk2,
            free_fall_min_mag2,
            ..
        } = self.phase
        else {
            return None;
        };
        let n = i64::from(self.obs_n);
        // Sum over axes of n²·variance = n·Σx² − (Σx)².
        let spread = (0..3)
            .map(|k| n * self.obs_sq[k] - self.obs_sum[k] * self.obs_sum[k])
            .sum::<i64>();
        if i128::from(spread) > i128::from(self.d.still_var_counts2) * i128::from(n * n) {
            return None;
        }
        let lying = self.obs_sum.map(|s| (s / n) as i32);
        let (n_ref, n_lying) = (norm(reference), norm(lying));
        if n_ref == 0 || n_lying == 0 {
            return None;
        }
        let cos_turn = dot(reference, lying) * 16384 / (n_ref * n_lying);
        if cos_turn > i64::from(self.d.turn_cos_q14) {
            return None;
        }

        let g = i64::from(self.config.counts_per_g);
        let to_mg = |mag2: u64| mag2.isqrt() as i64 * 1000 / g;
        let peak_mg = to_mg(peak_mag2);
        let jerk_mg = to_mg(peak_jerk2);
        let free_fall_min_mg = if free_fall_min_mag2 == u64::MAX {
            1000
        } else {
            to_mg(free_fall_min_mag2)
        };
        let still_mg = (spread.unsigned_abs().isqrt() as i64) * 1000 / (n * g);
        // Confidence: 10 for meeting every condition, plus how far beyond each threshold.
        let confidence = 10
            // Impact: from the threshold up to 6 g, a hard fall on the floor (or, by change,
            // from the threshold up to 3 times it), whichever is clearer.
            + ramp(peak_mg, i64::from(self.config.impact_mg), 6000, 30).max(
                if self.config.jerk_mg == 0 {
                    0
                } else {
                    let j = i64::from(self.config.jerk_mg);
                    ramp(jerk_mg, j, 3 * j, 30)
                },
            )
            // Free fall: none at 0.8 g, full at 0.3 g (falling freely for a moment).
            + ramp(free_fall_min_mg, 800, 300, 20)
            // Turn: from the threshold to 90°, lying flat after standing or sitting.
            + ramp(cos_turn, i64::from(self.d.turn_cos_q14), 0, 25)
            // Stillness: from the threshold down to 0.05 g, lying motionless.
            + ramp(still_mg, i64::from(self.config.still_max_mg), 50, 15);
        Some(FallEvent {
            impact_sample: impact,
            detected_sample: index,
            detected_ms: index * 1000 / u64::from(self.config.sample_rate_hz),
            confidence: confidence.clamp(0, 100) as u8,
            peak_mg: peak_mg.clamp(0, i64::from(u32::MAX)) as u32,
            jerk_mg: jerk_mg.clamp(0, i64::from(u32::MAX)) as u32,
            free_fall_min_mg: free_fall_min_mg.clamp(0, i64::from(u32::MAX)) as u32,
            turn_deg: acos_deg(cos_turn.clamp(-16384, 16384) as i32),
        })
    }
}

#[cfg(test)]
mod tests;

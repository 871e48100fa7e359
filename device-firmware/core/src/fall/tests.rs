//! Unit tests of the fall detector on synthetic motion.

use super::*;

/// Feeds synthetic motion to a detector and records what it reports.
struct Feed {
    det: FallDetector,
    rate: u32,
    g: i32,
    noise: u32,
    events: u32,
    first: Option<FallEvent>,
}

impl Feed {
    fn new(config: FallConfig) -> Self {
        Feed {
            det: FallDetector::new(config).expect("valid config"),
            rate: u32::from(config.sample_rate_hz),
            g: i32::from(config.counts_per_g),
            noise: 12345,
            events: 0,
            first: None,
        }
    }

    fn sisfall() -> Self {
        Feed::new(FallConfig::SISFALL_WAIST)
    }

    /// Sensor noise of about ±1% of 1 g, deterministic.
    fn jitter(&mut self) -> i32 {
        self.noise = self.noise.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let span = (self.g / 50).max(1);
        ((self.noise >> 16) as i32 % (2 * span + 1)) - span
    }

    /// One sample of `v` milli-g (device axes).
    fn push_mg(&mut self, v: [i32; 3]) {
        let mut s = [0i16; 3];
        for k in 0..3 {
            let counts = v[k] * self.g / 1000 + self.jitter();
            s[k] = counts.clamp(i16::MIN.into(), i16::MAX.into()) as i16;
        }
        if let Some(e) = self.det.push(s) {
            self.events += 1;
            self.first.get_or_insert(e);
        }
    }

    /// Hold the acceleration `v` (milli-g, device axes) for `ms`.
    fn hold(&mut self, v: [i32; 3], ms: u32) -> &mut Self {
        for _ in 0..ms * self.rate / 1000 {
            self.push_mg(v);
        }
        self
    }

    /// Move linearly from `a` to `b` over `ms` (a slow tilt or a fall's rotation).
    fn sweep(&mut self, a: [i32; 3], b: [i32; 3], ms: u32) -> &mut Self {
        let n = (ms * self.rate / 1000) as i32;
        for i in 0..n {
            self.push_mg([
                a[0] + (b[0] - a[0]) * i / n,
                a[1] + (b[1] - a[1]) * i / n,
                a[2] + (b[2] - a[2]) * i / n,
            ]);
        }
        self
    }

    /// Walking: ±0.3 g vertical bounce at 2 steps a second.
    fn walk(&mut self, ms: u32) -> &mut Self {
        let n = ms * self.rate / 1000;
        for i in 0..n {
            let phase = (i * 2 * 1000 / self.rate) % 1000; // 0..1000 per step
            let tri = if phase < 500 { phase } else { 1000 - phase } as i32; // 0..=500
            self.push_mg([50, -(700 + 6 * tri / 5), 100]);
        }
        self
    }

    fn samples(&self) -> u64 {
        self.det.samples_seen()
    }
}

// Device axes for SisFall's waist sensor: -Y points up when standing.
const UPRIGHT: [i32; 3] = [0, -1000, 0];
const SITTING: [i32; 3] = [0, -870, -500]; // trunk 30° back
const ON_BACK: [i32; 3] = [0, 0, -1000];
const ON_SIDE: [i32; 3] = [1000, 0, 0];
const FREE_FALL: [i32; 3] = [0, -150, 50];
const HARD_HIT: [i32; 3] = [1000, -3000, -2500]; // about 4 g
const LANDING: [i32; 3] = [200, -3200, 300]; // about 3.2 g, vertical

#[test]
fn still_upright_is_not_a_fall() {
    let mut f = Feed::sisfall();
    f.hold(UPRIGHT, 120_000);
    assert_eq!(f.events, 0);
    assert_eq!(f.samples(), 24_000);
}

#[test]
fn walking_and_sitting_are_not_falls() {
    let mut f = Feed::sisfall();
    f.walk(30_000)
        .sweep(UPRIGHT, SITTING, 800)
        .hold([0, -2200, -800], 30) // dropping onto the seat, 2.3 g
        .hold(SITTING, 10_000)
        .sweep(SITTING, UPRIGHT, 800)
        .walk(10_000);
    assert_eq!(f.events, 0);
}

#[test]
fn free_fall_impact_and_lying_is_a_fall() {
    let mut f = Feed::sisfall();
    f.walk(5_000).hold(UPRIGHT, 1_000);
    f.sweep(UPRIGHT, FREE_FALL, 100).hold(FREE_FALL, 350);
    let impact_at = f.samples();
    f.hold(HARD_HIT, 40)
        .hold([300, 600, -1400], 60)
        .hold(ON_BACK, 20_000);
    assert_eq!(f.events, 1, "one fall, reported once");
    let e = f.first.expect("fall");
    assert_eq!(
        e.impact_sample,
        impact_at + 7,
        "last sample at or above 2 g"
    );
    // Settle 1.5 s after the last impact sample, then 1.5 s of observation.
    assert_eq!(e.detected_sample, e.impact_sample + 300 + 300);
    assert_eq!(e.detected_ms, e.detected_sample * 5);
    assert!(e.confidence >= 80, "{e:?}");
    assert!((3900..=4200).contains(&e.peak_mg), "{e:?}");
    assert!(e.free_fall_min_mg < 300, "{e:?}");
    // Lying on the back, from walking upright (trunk a few degrees off vertical).
    assert!((88..=100).contains(&e.turn_deg), "{e:?}");
}

#[test]
fn slumping_fall_without_free_fall_is_a_fall_with_less_confidence() {
    // Fainting from a chair: slow tilt, a 2.3 g hit, lying on the side.
    let mut f = Feed::sisfall();
    f.hold(SITTING, 5_000)
        .sweep(SITTING, [700, -700, 0], 1_200)
        .hold([1600, -1400, 500], 30)
        .hold(ON_SIDE, 10_000);
    let e = f.first.expect("fall");
    assert_eq!(f.events, 1);
    assert!(e.confidence < 70, "{e:?}");
    assert!(e.free_fall_min_mg > 800, "{e:?}");
}

#[test]
fn jump_and_stand_is_not_a_fall() {
    let mut f = Feed::sisfall();
    f.hold(UPRIGHT, 5_000)
        .hold([0, -2000, 100], 150) // push off
        .hold(FREE_FALL, 300) // flight
        .hold(LANDING, 40)
        .hold([0, -1500, 0], 100)
        .hold(UPRIGHT, 10_000);
    assert_eq!(f.events, 0);
}

#[test]
fn stumble_and_recover_is_not_a_fall() {
    let mut f = Feed::sisfall();
    f.walk(4_000)
        .sweep(UPRIGHT, [0, -700, 700], 300) // pitch forward 45°
        .hold([500, -2500, 1000], 40) // stamp a foot
        .sweep([0, -700, 700], UPRIGHT, 400)
        .walk(6_000);
    assert_eq!(f.events, 0);
}

#[test]
fn impact_then_lying_but_moving_is_not_a_fall() {
    // Down on the floor and straight back up: the posture never holds still.
    let mut f = Feed::sisfall();
    f.hold(UPRIGHT, 3_000)
        .hold(FREE_FALL, 300)
        .hold(HARD_HIT, 40);
    for _ in 0..20 {
        f.sweep(ON_BACK, ON_SIDE, 150).sweep(ON_SIDE, ON_BACK, 150);
    }
    f.sweep(ON_BACK, UPRIGHT, 1_000).walk(5_000);
    assert_eq!(f.events, 0);
}

#[test]
fn bump_while_lying_in_bed_is_not_a_fall() {
    // Rolling from back to side with a knock: no upright posture beforehand.
    let mut f = Feed::sisfall();
    f.hold(ON_BACK, 10_000)
        .sweep(ON_BACK, ON_SIDE, 800)
        .hold([2500, 500, 500], 30)
        .hold(ON_SIDE, 10_000);
    assert_eq!(f.events, 0);
}

#[test]
fn bounces_after_the_impact_give_one_event() {
    let mut f = Feed::sisfall();
    f.hold(UPRIGHT, 3_000)
        .hold(FREE_FALL, 400)
        .hold(HARD_HIT, 40);
    for _ in 0..3 {
        f.hold(ON_BACK, 400).hold([500, 500, -2600], 20);
    }
    f.hold(ON_BACK, 30_000);
    assert_eq!(f.events, 1);
    let e = f.first.expect("fall");
    // Detected 3 s after the last bounce, not after the first hit.
    assert!(
        e.detected_sample >= 3_000 / 5 + 80 + 8 + 3 * 84 + 600 - 10,
        "{e:?}"
    );
}

#[test]
fn other_sensor_rate_and_scale() {
    // A 12-bit ±8 g part (256 counts/g would be 1024/4) at 100 Hz, up along +Z.
    let config = FallConfig {
        sample_rate_hz: 100,
        counts_per_g: 1024,
        up_axis: UpAxis::PosZ,
        ..FallConfig::SISFALL_WAIST
    };
    let up = [0, 0, 1000];
    let mut f = Feed::new(config);
    f.hold(up, 5_000).hold(up, 1_000);
    assert_eq!(f.events, 0);
    f.hold([50, 0, 100], 400)
        .hold([3000, 1000, 2500], 40)
        .hold([0, -1000, 0], 10_000);
    let e = f.first.expect("fall");
    assert_eq!(f.events, 1);
    assert_eq!(e.detected_ms, e.detected_sample * 10);
    assert_eq!(e.detected_sample, e.impact_sample + 150 + 150);
    assert!((3800..=4200).contains(&e.peak_mg), "{e:?}");
}

#[test]
fn rejects_unusable_configurations() {
    let base = FallConfig::default();
    let bad = |c: FallConfig| FallDetector::new(c).err();
    assert_eq!(
        bad(FallConfig {
            sample_rate_hz: 0,
            ..base
        }),
        Some(ConfigError::ZeroRateOrScale)
    );
    assert_eq!(
        bad(FallConfig {
            counts_per_g: 0,
            ..base
        }),
        Some(ConfigError::ZeroRateOrScale)
    );
    assert_eq!(
        bad(FallConfig {
            block_ms: 2,
            ..base
        }),
        Some(ConfigError::BlockTooShort)
    );
    assert_eq!(
        bad(FallConfig {
            lookback_ms: 9_000,
            ..base
        }),
        Some(ConfigError::LookbackOutOfRange)
    );
    assert_eq!(
        bad(FallConfig {
            observe_ms: 0,
            ..base
        }),
        Some(ConfigError::ObserveOutOfRange)
    );
    assert_eq!(
        bad(FallConfig {
            upright_max_deg: 91,
            ..base
        }),
        Some(ConfigError::AngleOutOfRange)
    );
    assert_eq!(
        bad(FallConfig {
            impact_mg: 0,
            ..base
        }),
        Some(ConfigError::ZeroThreshold)
    );
    assert!(FallDetector::new(base).is_ok());
}

#[test]
fn reset_forgets_history() {
    let mut f = Feed::sisfall();
    f.hold(UPRIGHT, 3_000);
    f.det.reset();
    assert_eq!(f.samples(), 0);
    // No upright history any more: an immediate impact and lying is not a fall.
    f.hold(HARD_HIT, 40).hold(ON_BACK, 10_000);
    assert_eq!(f.events, 0);
}

// Device axes for the chest pendant: +X points up along the lanyard.
const P_UPRIGHT: [i32; 3] = [1000, 0, 0];
const P_ON_BACK: [i32; 3] = [0, 0, 1000];

#[test]
fn presets_by_product() {
    assert_eq!(
        FallConfig::for_wearable(Wearable::ChestPendant),
        FallConfig::CHEST_PENDANT
    );
    assert_eq!(
        FallConfig::for_wearable(Wearable::WaistClip),
        FallConfig::SISFALL_WAIST
    );
    // The pendant preset runs at 20 Hz and at 50 Hz (durations are in milliseconds).
    for rate in [20, 25, 50] {
        let c = FallConfig {
            sample_rate_hz: rate,
            ..FallConfig::CHEST_PENDANT
        };
        assert!(FallDetector::new(c).is_ok(), "{rate} Hz");
    }
    assert_eq!(
        FallDetector::new(FallConfig {
            jerk_span_ms: 100,
            sample_rate_hz: 200,
            ..FallConfig::CHEST_PENDANT
        })
        .err(),
        Some(ConfigError::JerkSpanTooLong)
    );
}

#[test]
fn pendant_finds_a_soft_fall_whose_samples_stay_under_2_g() {
    // At 20 Hz the highest moment of the hit falls between samples: the samples read
    // 0.3 g (falling) then 1.8 g. The change of 1.8 g in 50 ms is the impact.
    let fall = |config: FallConfig| {
        let mut f = Feed::new(config);
        f.hold(P_UPRIGHT, 5_000)
            .sweep(P_UPRIGHT, [300, 0, 100], 300)
            .hold([0, 0, 1800], 50)
            .hold(P_ON_BACK, 10_000);
        (f.events, f.first)
    };
    let (events, first) = fall(FallConfig::CHEST_PENDANT);
    assert_eq!(events, 1);
    let e = first.expect("fall");
    assert!(e.peak_mg < 2000, "{e:?}");
    assert!((1700..=1900).contains(&e.jerk_mg), "{e:?}");
    assert!((85..=95).contains(&e.turn_deg), "{e:?}");
    // Settle 1.5 s (30 samples), observe 1.5 s (30 samples).
    assert_eq!(e.detected_sample, e.impact_sample + 30 + 30);
    // The magnitude test alone (the waist preset's, at 2 g) misses it.
    let magnitude_only = FallConfig {
        jerk_mg: 0,
        impact_mg: 2000,
        ..FallConfig::CHEST_PENDANT
    };
    assert_eq!(fall(magnitude_only).0, 0);
}

#[test]
fn pendant_lying_down_on_a_bed_is_not_a_fall() {
    // Lowering oneself onto a bed: a turn to lying and a soft landing (0.8 g of change
    // in 50 ms, 1.5 g at most), then still.
    let mut f = Feed::new(FallConfig::CHEST_PENDANT);
    f.hold(P_UPRIGHT, 5_000)
        .sweep(P_UPRIGHT, [500, 0, 866], 1_000)
        .hold([0, 0, 1500], 50)
        .hold(P_ON_BACK, 20_000);
    assert_eq!(f.events, 0);
}

#[test]
fn pendant_swinging_after_the_fall_then_still_is_a_fall_decided_later() {
    let run = |config: FallConfig| {
        let mut f = Feed::new(config);
        f.hold(P_UPRIGHT, 5_000)
            .hold([200, 0, 0], 300)
            .hold([2000, 1500, 2500], 50);
        // Lying, but moving by about 0.65 g for 4 s (the pendant swinging, the wearer
        // shifting; 1.3 g between samples, under the impact's 1.5 g), then still.
        for _ in 0..40 {
            f.hold([0, 650, 1000], 50).hold([0, -650, 1000], 50);
        }
        f.hold(P_ON_BACK, 10_000);
        (f.events, f.first)
    };
    let (events, first) = run(FallConfig::CHEST_PENDANT);
    assert_eq!(events, 1);
    let e = first.expect("fall");
    // Not in the first window (from 1.5 s to 3 s after the impact), but once still.
    assert!(e.detected_sample >= e.impact_sample + 80 + 30, "{e:?}");
    // With a single window the movement hides the fall.
    let one_window = FallConfig {
        still_within_ms: 0,
        ..FallConfig::CHEST_PENDANT
    };
    assert_eq!(run(one_window).0, 0);
}

#[test]
fn the_whole_detector_stays_small() {
    // 768 bytes on a 64-bit host (the block ring is 384, the raw-sample ring 96); less
    // on a 32-bit microcontroller. No allocation: it is all here.
    assert!(core::mem::size_of::<FallDetector>() <= 800);
    assert_eq!(core::mem::size_of::<[Block; MAX_BLOCKS]>(), 384);
}

#[test]
fn cosine_table_and_inverse() {
    assert_eq!(cos_q14(0), 16384);
    assert_eq!(cos_q14(60), 8192);
    assert_eq!(cos_q14(90), 0);
    assert_eq!(cos_q14(120), -8192);
    assert_eq!(cos_q14(180), -16384);
    for deg in [0u8, 1, 30, 45, 59, 60, 89, 90, 91, 135, 179, 180] {
        assert_eq!(acos_deg(cos_q14(deg)), deg);
    }
}

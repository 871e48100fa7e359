//! The geofence maths: is a GPS fix close enough to the person's home?
//!
//! A fix counts as at home when its great-circle distance (haversine, `geo`) from the home is at
//! most the radius plus an allowance for the fix's reported accuracy, the allowance being
//! capped so a wildly inaccurate fix cannot stretch the fence to the next town. A fix older
//! than the limit is flagged as stale; it can still place the worker at home, but only with a
//! warning. Figures (radii of 75 m to 500 m in practice, stale fixes and wrong map pins as the
//! main causes of false rejections) are those EVV systems in use report.
//! Pure functions only: the derivation feeds them what the database holds.

use geo::{Distance, Haversine, Point};
use serde::{Deserialize, Serialize};

/// Declared with the person it applies to.
pub use crate::people::GeofencePolicy;

/// The rule a fix is checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fence {
    /// Home position, degrees WGS 84.
    pub home_lat: f64,
    pub home_lon: f64,
    /// The person's radius (or the configured default), metres.
    pub radius_m: f64,
    /// Largest accuracy allowance added to the radius, metres.
    pub allowance_cap_m: f64,
    /// Older fixes are stale, seconds.
    pub max_fix_age_s: u32,
    pub policy: GeofencePolicy,
}

/// One fix as the phone reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub lat: f64,
    pub lon: f64,
    /// The phone's estimate of the error radius, metres (absent: no allowance).
    pub accuracy_m: Option<f64>,
    /// Seconds between the fix and the check (absent: taken as fresh).
    pub fix_age_s: Option<u32>,
}

/// Whether a check proves presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Presence proved.
    Verified,
    /// Accepted with a flag for the office (stale fix, or outside under a warn-only policy).
    Warning,
    /// Presence disproved (outside the fence, wrong tag or calling line).
    Rejected,
    /// Nothing to check against (no home location, unknown person, a manual record).
    Unverified,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Warning => "warning",
            Self::Rejected => "rejected",
            Self::Unverified => "unverified",
        }
    }
}

/// Why a check got its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    WithinGeofence,
    OutsideGeofence,
    StaleFix,
    NoHomeLocation,
    PersonUnknown,
    TagMatched,
    TagMismatch,
    CallerIdMatched,
    CallerIdMismatch,
    ManualEntry,
}

/// The outcome of checking one fix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FenceCheck {
    pub verdict: Verdict,
    pub reason: Reason,
    pub distance_m: f64,
    /// The accuracy allowance actually granted (accuracy, capped).
    pub allowance_m: f64,
    pub stale: bool,
}

/// Great-circle distance in metres.
pub fn distance_m(a_lat: f64, a_lon: f64, b_lat: f64, b_lon: f64) -> f64 {
    // geo's points are (x = longitude, y = latitude).
    Haversine.distance(Point::new(a_lon, a_lat), Point::new(b_lon, b_lat))
}

/// The allowance for a fix's accuracy: the accuracy itself, never negative, at most `cap`.
pub fn allowance_m(accuracy_m: Option<f64>, cap_m: f64) -> f64 {
    match accuracy_m {
        Some(a) if a.is_finite() && a > 0.0 => a.min(cap_m.max(0.0)),
        _ => 0.0,
    }
}

/// True when the fix lies within the fence (radius plus capped allowance).
pub fn inside(fence: &Fence, fix: &Fix) -> bool {
    let d = distance_m(fence.home_lat, fence.home_lon, fix.lat, fix.lon);
    d <= fence.radius_m + allowance_m(fix.accuracy_m, fence.allowance_cap_m)
}

/// Checks one fix against a fence.
pub fn check(fence: &Fence, fix: &Fix) -> FenceCheck {
    let distance = distance_m(fence.home_lat, fence.home_lon, fix.lat, fix.lon);
    let allowance = allowance_m(fix.accuracy_m, fence.allowance_cap_m);
    let stale = fix.fix_age_s.is_some_and(|age| age > fence.max_fix_age_s);
    let (verdict, reason) = if distance <= fence.radius_m + allowance {
        if stale {
            (Verdict::Warning, Reason::StaleFix)
        } else {
            (Verdict::Verified, Reason::WithinGeofence)
        }
    } else {
        match fence.policy {
            GeofencePolicy::Reject => (Verdict::Rejected, Reason::OutsideGeofence),
            GeofencePolicy::Warn => (Verdict::Warning, Reason::OutsideGeofence),
        }
    };
    FenceCheck {
        verdict,
        reason,
        distance_m: distance,
        allowance_m: allowance,
        stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Metres per degree of latitude on geo's sphere (mean radius 6371.0088 km).
    const M_PER_DEG_LAT: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;

    fn fence(radius_m: f64, cap: f64, policy: GeofencePolicy) -> Fence {
        Fence {
            home_lat: 51.5007,
            home_lon: -0.1246,
            radius_m,
            allowance_cap_m: cap,
            max_fix_age_s: 120,
            policy,
        }
    }

    fn north_of(f: &Fence, metres: f64, accuracy_m: Option<f64>) -> Fix {
        Fix {
            lat: f.home_lat + metres / M_PER_DEG_LAT,
            lon: f.home_lon,
            accuracy_m,
            fix_age_s: Some(5),
        }
    }

    #[test]
    fn a_known_distance() {
        // Big Ben to the London Eye is about 450 m.
        let d = distance_m(51.5007, -0.1246, 51.5033, -0.1196);
        assert!((d - 450.0).abs() < 50.0, "{d}");
        assert_eq!(distance_m(51.5, -0.1, 51.5, -0.1), 0.0);
    }

    #[test]
    fn stale_inside_warns_and_outside_follows_policy() {
        let f = fence(150.0, 100.0, GeofencePolicy::Reject);
        let mut fix = north_of(&f, 10.0, Some(5.0));
        fix.fix_age_s = Some(600);
        let c = check(&f, &fix);
        assert_eq!(
            (c.verdict, c.reason, c.stale),
            (Verdict::Warning, Reason::StaleFix, true)
        );
        let far = north_of(&f, 1000.0, Some(5.0));
        assert_eq!(check(&f, &far).verdict, Verdict::Rejected);
        let rural = fence(150.0, 100.0, GeofencePolicy::Warn);
        let c = check(&rural, &far);
        assert_eq!(
            (c.verdict, c.reason),
            (Verdict::Warning, Reason::OutsideGeofence)
        );
    }

    fn lat() -> impl Strategy<Value = f64> {
        -80.0..80.0f64
    }
    fn lon() -> impl Strategy<Value = f64> {
        -179.0..179.0f64
    }

    proptest! {
        #[test]
        fn distance_is_symmetric_and_non_negative(a in lat(), b in lon(), c in lat(), d in lon()) {
            let ab = distance_m(a, b, c, d);
            let ba = distance_m(c, d, a, b);
            prop_assert!(ab >= 0.0);
            prop_assert!((ab - ba).abs() <= 1e-6 * ab.max(1.0));
        }

        #[test]
        fn the_radius_is_the_boundary(radius in 20.0..2000.0f64, margin in 1.0..500.0f64) {
            // No accuracy reported: no allowance, the radius alone decides.
            let f = fence(radius, 100.0, GeofencePolicy::Reject);
            let just_in = north_of(&f, radius - margin.min(radius - 1.0), None);
            let just_out = north_of(&f, radius + margin, None);
            prop_assert!(inside(&f, &just_in));
            prop_assert_eq!(check(&f, &just_in).verdict, Verdict::Verified);
            prop_assert!(!inside(&f, &just_out));
            prop_assert_eq!(check(&f, &just_out).verdict, Verdict::Rejected);
            prop_assert_eq!(check(&f, &just_out).reason, Reason::OutsideGeofence);
        }

        #[test]
        fn accuracy_widens_the_fence_by_at_most_the_cap(
            radius in 20.0..1000.0f64,
            accuracy in 0.0..5000.0f64,
            cap in 0.0..300.0f64,
            beyond in 1.0..1000.0f64,
        ) {
            let f = fence(radius, cap, GeofencePolicy::Reject);
            let granted = allowance_m(Some(accuracy), cap);
            prop_assert!(granted <= cap && granted <= accuracy && granted >= 0.0);
            prop_assert_eq!(granted, accuracy.min(cap));
            // Inside the widened fence: accepted.
            let within = (radius + granted - 1.0).max(0.0);
            prop_assert!(inside(&f, &north_of(&f, within, Some(accuracy))));
            // Beyond radius + cap: refused however poor the fix claims to be.
            let outside = north_of(&f, radius + cap + beyond, Some(accuracy));
            prop_assert!(!inside(&f, &outside));
        }

        #[test]
        fn more_accuracy_allowance_never_rejects_what_less_accepted(
            metres in 0.0..3000.0f64, acc in 0.0..500.0f64, extra in 0.0..500.0f64,
        ) {
            let f = fence(150.0, 100.0, GeofencePolicy::Reject);
            if inside(&f, &north_of(&f, metres, Some(acc))) {
                prop_assert!(inside(&f, &north_of(&f, metres, Some(acc + extra))));
            }
        }

        #[test]
        fn warn_policy_never_rejects(metres in 0.0..100_000.0f64, acc in proptest::option::of(0.0..1000.0f64)) {
            let f = fence(150.0, 100.0, GeofencePolicy::Warn);
            prop_assert_ne!(check(&f, &north_of(&f, metres, acc)).verdict, Verdict::Rejected);
        }
    }
}

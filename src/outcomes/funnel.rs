//! Funnel plots: providers compared on one indicator against the pooled value of all of them,
//! with control limits that narrow as the denominator grows (Spiegelhalter, "Funnel plots for
//! comparing institutional performance", Statistics in Medicine 24, 2005).
//!
//! - The target is the pooled value: all providers' numerators over all their denominators.
//! - Limits are exact, not normal approximations: the p-quantile of the count a provider of
//!   that size would have if its true value were the target (Poisson for rates per
//!   person-day, binomial for shares), interpolated between whole counts as that paper does,
//!   so a limit is a smooth curve. At 95% (p = 0.025 and 0.975) and 99.8% (p = 0.001 and
//!   0.999): about 1 in 20 and 1 in 500 providers fall outside by chance alone.
//! - A provider outside the 99.8% limits is worth a question, not a verdict: the figures are
//!   not adjusted for case mix, and a rate's limits assume no clustering within people.
//!
//! Pure maths here; `GET /v1/outcomes/funnel` and the console's funnel page call [`funnel`] with
//! each provider's figures from its own report.

use serde::Serialize;
use utoipa::ToSchema;

use super::estimate::{gamma_p, ln_gamma};

/// What kind of figure is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Events per unit of exposure (person-days): Poisson.
    Rate,
    /// Numerator of denominator people or outcomes: binomial.
    Share,
}

/// The two sets of limits, as the probability of a count below the lower limit.
pub const LEVELS: [(f64, &str); 2] = [(0.025, "95%"), (0.001, "99.8%")];

/// Where a provider lies against the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// Within the 95% limits.
    Within95,
    /// Above the upper 95% limit, within the 99.8% one.
    Above95,
    /// Above the upper 99.8% limit.
    Above998,
    Below95,
    Below998,
    /// Not compared: no denominator, or a share's denominator under the small-number rule.
    TooFew,
}

impl Band {
    /// In words, for a page.
    pub fn words(self) -> &'static str {
        match self {
            Self::Within95 => "within the 95% limits",
            Self::Above95 => "above the 95% limit",
            Self::Above998 => "above the 99.8% limit",
            Self::Below95 => "below the 95% limit",
            Self::Below998 => "below the 99.8% limit",
            Self::TooFew => "too few to compare",
        }
    }
}

/// The control limits at one denominator, in the indicator's unit (a share, or events per
/// unit of exposure).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Limits {
    pub denominator: f64,
    pub lower_95: f64,
    pub upper_95: f64,
    pub lower_998: f64,
    pub upper_998: f64,
}

/// One provider's point.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Point {
    pub provider_id: i32,
    pub numerator: u64,
    /// People or outcomes (a share), or days at risk (a rate).
    pub denominator: f64,
    /// `numerator / denominator`; `None` when [`Band::TooFew`].
    pub value: Option<f64>,
    pub band: Band,
}

/// A funnel: the pooled target, each provider's point and the limits along the denominator.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Funnel {
    pub family: Family,
    /// Pooled value of the providers compared; `None` when none is.
    pub target: Option<f64>,
    pub points: Vec<Point>,
    /// The limits at denominators from the smallest compared to a little past the largest,
    /// for drawing.
    pub curve: Vec<Limits>,
}

/// Smallest denominator a share is compared at (the reports' small-number rule).
pub const MIN_SHARE_DENOMINATOR: f64 = super::measures::MIN_DENOMINATOR as f64;

/// How many points along the denominator the curve has.
const CURVE_POINTS: usize = 60;

/// Compares `(provider, numerator, denominator)`s of one family.
pub fn funnel(family: Family, providers: &[(i32, u64, f64)]) -> Funnel {
    let compared = |d: f64| match family {
        Family::Rate => d > 0.0,
        Family::Share => d >= MIN_SHARE_DENOMINATOR,
    };
    let (num, den) = providers
        .iter()
        .filter(|p| compared(p.2))
        .fold((0u64, 0.0), |(n, d), p| (n + p.1, d + p.2));
    let target = (den > 0.0).then(|| num as f64 / den);
    let points = providers
        .iter()
        .map(|&(provider_id, numerator, denominator)| {
            let (value, band) = match target.filter(|_| compared(denominator)) {
                Some(t) => {
                    let v = numerator as f64 / denominator;
                    (Some(v), band_of(v, &limits(family, t, denominator)))
                }
                None => (None, Band::TooFew),
            };
            Point {
                provider_id,
                numerator,
                denominator,
                value,
                band,
            }
        })
        .collect();
    let curve = match target {
        Some(t) => {
            let sizes: Vec<f64> = providers
                .iter()
                .map(|p| p.2)
                .filter(|d| compared(*d))
                .collect();
            let hi = sizes.iter().copied().fold(0.0, f64::max) * 1.1;
            // From the smallest size compared at (a share) or a twentieth of the largest (a
            // rate, whose limits at sizes near 0 are unbounded) to a little past the largest.
            let lo = match family {
                Family::Share => MIN_SHARE_DENOMINATOR,
                Family::Rate => hi / 20.0,
            };
            (0..CURVE_POINTS)
                .map(|i| {
                    let d = lo + (hi - lo) * i as f64 / (CURVE_POINTS - 1) as f64;
                    let d = match family {
                        Family::Share => d.round(),
                        Family::Rate => d,
                    };
                    limits(family, t, d)
                })
                .collect()
        }
        None => Vec::new(),
    };
    Funnel {
        family,
        target,
        points,
        curve,
    }
}

fn band_of(v: f64, l: &Limits) -> Band {
    if v > l.upper_998 {
        Band::Above998
    } else if v > l.upper_95 {
        Band::Above95
    } else if v < l.lower_998 {
        Band::Below998
    } else if v < l.lower_95 {
        Band::Below95
    } else {
        Band::Within95
    }
}

/// The limits around `target` at `denominator`.
pub fn limits(family: Family, target: f64, denominator: f64) -> Limits {
    let at = |p: f64| match family {
        Family::Rate => {
            let mu = target * denominator;
            interpolated_quantile(p, mu + 6.0 * mu.sqrt() + 10.0, |r| poisson_cdf(r, mu))
                / denominator
        }
        Family::Share => {
            let n = denominator.round().max(1.0);
            (interpolated_quantile(p, n, |r| binomial_cdf(r, n, target)) / n).clamp(0.0, 1.0)
        }
    };
    let [(p95, _), (p998, _)] = LEVELS;
    Limits {
        denominator,
        lower_95: at(p95),
        upper_95: at(1.0 - p95),
        lower_998: at(p998),
        upper_998: at(1.0 - p998),
    }
}

/// The p-quantile of a count with CDF `cdf` (at most `max`), interpolated between whole counts
/// (Spiegelhalter 2005, appendix): with r the smallest count with F(r) >= p, the limit is
/// r - (F(r) - p) / (F(r) - F(r - 1)), never below 0.
fn interpolated_quantile(p: f64, max: f64, cdf: impl Fn(f64) -> f64) -> f64 {
    // Bisection for the smallest whole r with F(r) >= p.
    let (mut lo, mut hi) = (-1.0_f64, max.ceil().max(0.0));
    while cdf(hi) < p {
        hi = hi * 2.0 + 1.0;
    }
    while hi - lo > 1.0 {
        let mid = ((lo + hi) / 2.0).floor();
        if cdf(mid) >= p {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let r = hi;
    let at_r = cdf(r);
    let below = if r >= 1.0 { cdf(r - 1.0) } else { 0.0 };
    let step = at_r - below;
    if step <= 0.0 {
        return r;
    }
    (r - (at_r - p) / step).max(0.0)
}

/// P(X <= r) for X ~ Poisson(mu): the upper regularised gamma Q(r + 1, mu).
fn poisson_cdf(r: f64, mu: f64) -> f64 {
    if r < 0.0 {
        return 0.0;
    }
    if mu <= 0.0 {
        return 1.0;
    }
    1.0 - gamma_p(r + 1.0, mu)
}

/// P(X <= r) for X ~ Binomial(n, p): the regularised incomplete beta I_{1-p}(n - r, r + 1).
fn binomial_cdf(r: f64, n: f64, p: f64) -> f64 {
    if r < 0.0 {
        return 0.0;
    }
    if r >= n || p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    beta_i(n - r, r + 1.0, 1.0 - p)
}

/// The regularised incomplete beta I_x(a, b) (continued fraction, modified Lentz; the
/// symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges slowly).
fn beta_i(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        (ln_front.exp() * beta_fraction(a, b, x) / a).clamp(0.0, 1.0)
    } else {
        (1.0 - ln_front.exp() * beta_fraction(b, a, 1.0 - x) / b).clamp(0.0, 1.0)
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    let tiny = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn the_cumulative_distributions_match_sums_of_probabilities() {
        // Binomial(20, 0.3): P(X <= 5) = 0.416371 (sum of the probabilities).
        let direct: f64 = (0..=5u64)
            .map(|k| {
                let ln_choose =
                    ln_gamma(21.0) - ln_gamma(k as f64 + 1.0) - ln_gamma(21.0 - k as f64);
                (ln_choose + k as f64 * 0.3f64.ln() + (20 - k) as f64 * 0.7f64.ln()).exp()
            })
            .sum();
        assert!(close(binomial_cdf(5.0, 20.0, 0.3), direct, 1e-10));
        assert!(close(direct, 0.416_371, 1e-6));
        // Poisson(4): P(X <= 2) = e^-4 (1 + 4 + 8) = 0.238103.
        assert!(close(poisson_cdf(2.0, 4.0), 13.0 * (-4.0f64).exp(), 1e-10));
        assert_eq!(binomial_cdf(-1.0, 20.0, 0.3), 0.0);
        assert_eq!(binomial_cdf(20.0, 20.0, 0.3), 1.0);
    }

    #[test]
    fn limits_match_the_normal_approximation_for_large_denominators() {
        // A share of 0.2 at n = 10,000: 0.2 +/- 1.96 x 0.004 and 3.09 x 0.004.
        let l = limits(Family::Share, 0.2, 10_000.0);
        let se = (0.2f64 * 0.8 / 10_000.0).sqrt();
        assert!(close(l.lower_95, 0.2 - 1.959_96 * se, 0.0003), "{l:?}");
        assert!(close(l.upper_95, 0.2 + 1.959_96 * se, 0.0003), "{l:?}");
        assert!(close(l.upper_998, 0.2 + 3.090_23 * se, 0.0003), "{l:?}");
        // A rate of 0.01 a day over 1,000,000 days: mean 10,000 events, sd 100.
        let r = limits(Family::Rate, 0.01, 1_000_000.0);
        assert!(close(r.upper_95 * 1e6, 10_000.0 + 196.0, 2.0), "{r:?}");
        assert!(close(r.lower_998 * 1e6, 10_000.0 - 309.0, 2.0), "{r:?}");
    }

    #[test]
    fn limits_narrow_as_the_denominator_grows_and_keep_their_order() {
        let mut last = f64::INFINITY;
        for n in [5.0, 10.0, 40.0, 200.0, 1000.0] {
            let l = limits(Family::Share, 0.3, n);
            assert!(l.lower_998 <= l.lower_95 && l.lower_95 <= 0.3 && 0.3 <= l.upper_95);
            assert!(l.upper_95 <= l.upper_998 && l.upper_998 <= 1.0);
            let width = l.upper_95 - l.lower_95;
            assert!(width < last, "{n}: {width} after {last}");
            last = width;
        }
    }

    #[test]
    fn about_one_in_twenty_in_control_providers_falls_outside_the_95_percent_limits() {
        // Simulated providers whose true share is the target: the share outside the 95%
        // limits is near 5% (a little under: counts are whole), and outside 99.8% near 0.2%.
        // xorshift64*: a fixed stream, so the test is the same every run.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut uniform = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut out95, mut out998, runs) = (0, 0, 20_000);
        for i in 0..runs {
            let n = 50 + (i % 400) as u64;
            let x = (0..n).filter(|_| uniform() < 0.25).count() as u64;
            let l = limits(Family::Share, 0.25, n as f64);
            let v = x as f64 / n as f64;
            let band = band_of(v, &l);
            out95 += u32::from(band != Band::Within95);
            out998 += u32::from(matches!(band, Band::Above998 | Band::Below998));
        }
        let share95 = f64::from(out95) / f64::from(runs);
        let share998 = f64::from(out998) / f64::from(runs);
        assert!((0.035..=0.065).contains(&share95), "{share95}");
        assert!(share998 <= 0.005, "{share998}");
    }

    #[test]
    fn the_target_is_pooled_and_small_shares_are_not_compared() {
        let f = funnel(
            Family::Share,
            &[(1, 10, 100.0), (2, 30, 100.0), (3, 1, 3.0), (4, 95, 100.0)],
        );
        assert_eq!(f.target, Some(135.0 / 300.0));
        let band = |id| f.points.iter().find(|p| p.provider_id == id).unwrap().band;
        assert_eq!(band(3), Band::TooFew);
        assert_eq!(band(1), Band::Below998);
        assert_eq!(band(4), Band::Above998);
        assert_eq!(f.curve.len(), CURVE_POINTS);
        assert_eq!(f.curve[0].denominator, MIN_SHARE_DENOMINATOR);
        let none = funnel(Family::Rate, &[(1, 0, 0.0)]);
        assert_eq!(none.target, None);
        assert!(none.curve.is_empty());
        assert_eq!(none.points[0].band, Band::TooFew);
    }
}

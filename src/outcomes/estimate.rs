//! Pure maths for "what was avoided": exact Poisson intervals, the Fay–Feuer gamma interval for
//! a weighted sum of Poisson counts, and expected-minus-observed with a MOVER interval.
//! No database here; property and known-truth tests at the bottom.
//!
//! Method (docs/outcomes.md, "Falls and admissions avoided"; "Estimating what was
//! avoided"):
//! - observed O: the count in the days at risk; exact (Garwood) Poisson interval;
//! - expected E = E_own + E_ref: E_own = sum_i x_i * d_i / h_i over people with enough history
//!   (x_i events in h_i days before the service began, d_i days at risk now), with the Fay–Feuer
//!   (1997) gamma interval; E_ref = reference rate * days at risk, taken as known;
//! - avoided = E - O, interval by MOVER (Zou & Donner 2008) from the two intervals.

use serde::Serialize;

/// The method's name and version, shown beside every estimate.
pub const METHOD: &str = "expected-minus-observed/v1: expected from own pre-service rate \
(Fay-Feuer gamma interval) or reference rate (fixed); observed exact Poisson (Garwood); \
difference by MOVER";

/// ln Γ(x) for x > 0 (Lanczos, g = 7).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularised lower incomplete gamma P(a, x), a > 0, x >= 0.
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let ln_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // Series.
        let mut sum = 1.0 / a;
        let mut term = sum;
        let mut n = a;
        for _ in 0..10_000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (sum.ln() + ln_front).exp().min(1.0)
    } else {
        // Continued fraction for Q (modified Lentz).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (1.0 - (ln_front.exp() * h)).clamp(0.0, 1.0)
    }
}

/// The p-quantile of Gamma(shape, scale 1); 0 when shape is 0. (chi2_q(p, 2k) / 2 is
/// `gamma_quantile(p, k)`.) Bisection: slow but sure, and far from any hot path.
pub fn gamma_quantile(p: f64, shape: f64) -> f64 {
    if shape <= 0.0 || p <= 0.0 {
        return 0.0;
    }
    let p = p.min(1.0 - 1e-15);
    let mut hi = shape.max(1.0);
    while gamma_p(shape, hi) < p {
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if gamma_p(shape, mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-12 * hi.max(1e-300) {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Exact (Garwood) interval for the mean of a Poisson count.
pub fn poisson_interval(count: u64, level: f64) -> (f64, f64) {
    let alpha = 1.0 - level;
    let k = count as f64;
    (
        gamma_quantile(alpha / 2.0, k),
        gamma_quantile(1.0 - alpha / 2.0, k + 1.0),
    )
}

/// Fay–Feuer gamma interval for sum_i w_i * x_i, x_i independent Poisson counts.
/// `terms` are (x_i, w_i); people with no events still count through the largest weight.
pub fn weighted_poisson_interval(terms: &[(u64, f64)], level: f64) -> (f64, f64, f64) {
    let alpha = 1.0 - level;
    let y: f64 = terms.iter().map(|(x, w)| *x as f64 * w).sum();
    let v: f64 = terms.iter().map(|(x, w)| *x as f64 * w * w).sum();
    let wm = terms.iter().map(|(_, w)| *w).fold(0.0, f64::max);
    if terms.is_empty() || wm <= 0.0 {
        return (0.0, 0.0, 0.0);
    }
    let lower = if y > 0.0 && v > 0.0 {
        gamma_quantile(alpha / 2.0, y * y / v) * (v / y)
    } else {
        0.0
    };
    let (yu, vu) = (y + wm, v + wm * wm);
    let upper = gamma_quantile(1.0 - alpha / 2.0, yu * yu / vu) * (vu / yu);
    (y, lower, upper)
}

/// One person's contribution to an avoided estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exposure {
    /// Days at risk in the period.
    pub days: f64,
    /// Events observed in those days.
    pub observed: u64,
    /// The person's own history before the service, when long enough: (events, days).
    pub history: Option<(u64, f64)>,
}

/// Expected minus observed, with its interval and the method beside it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Avoided {
    pub observed: u64,
    pub observed_interval: [f64; 2],
    pub expected: f64,
    pub expected_interval: [f64; 2],
    /// Of `expected`: the part from people's own pre-service rates, and from the reference rate.
    pub expected_from_own_history: f64,
    pub expected_from_reference: f64,
    pub people_with_own_history: u64,
    pub people_on_reference_rate: u64,
    pub days_at_risk: f64,
    pub avoided: f64,
    pub interval: [f64; 2],
    pub level: f64,
    pub method: &'static str,
}

/// `reference_per_day`: the configured reference rate, events per person-day.
pub fn avoided(people: &[Exposure], reference_per_day: f64, level: f64) -> Avoided {
    let mut own = Vec::new();
    let mut e_ref = 0.0;
    let mut o: u64 = 0;
    let mut days = 0.0;
    let (mut n_own, mut n_ref) = (0, 0);
    for p in people {
        if p.days <= 0.0 {
            continue;
        }
        o += p.observed;
        days += p.days;
        match p.history {
            Some((x, h)) if h > 0.0 => {
                own.push((x, p.days / h));
                n_own += 1;
            }
            _ => {
                e_ref += reference_per_day * p.days;
                n_ref += 1;
            }
        }
    }
    let (e_own, l_own, u_own) = weighted_poisson_interval(&own, level);
    let e = e_own + e_ref;
    let (le, ue) = (l_own + e_ref, u_own + e_ref);
    let (lo, uo) = poisson_interval(o, level);
    let of = o as f64;
    let d = e - of;
    let lower = d - ((e - le).powi(2) + (uo - of).powi(2)).sqrt();
    let upper = d + ((ue - e).powi(2) + (of - lo).powi(2)).sqrt();
    Avoided {
        observed: o,
        observed_interval: [lo, uo],
        expected: e,
        expected_interval: [le, ue],
        expected_from_own_history: e_own,
        expected_from_reference: e_ref,
        people_with_own_history: n_own,
        people_on_reference_rate: n_ref,
        days_at_risk: days,
        avoided: d,
        interval: [lower, upper],
        level,
        method: METHOD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn gamma_and_poisson_match_published_tables() {
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-12));
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-12
        ));
        // chi-square 0.975 quantile with 2 df is 7.3778; Gamma(1) 0.975 quantile = 3.6889.
        assert!(close(gamma_quantile(0.975, 1.0), 3.688_879, 1e-5));
        // Garwood 95% intervals (Ulm 1990 tables): 0 -> (0, 3.689); 1 -> (0.0253, 5.572);
        // 10 -> (4.795, 18.39).
        let (l, u) = poisson_interval(0, 0.95);
        assert_eq!(l, 0.0);
        assert!(close(u, 3.689, 1e-3));
        let (l, u) = poisson_interval(1, 0.95);
        assert!(close(l, 0.0253, 1e-2) && close(u, 5.572, 1e-3));
        let (l, u) = poisson_interval(10, 0.95);
        assert!(close(l, 4.795, 1e-3) && close(u, 18.39, 1e-3));
    }

    #[test]
    fn equal_weights_give_the_scaled_exact_interval_below() {
        let terms: Vec<(u64, f64)> = vec![(3, 2.0), (7, 2.0)];
        let (y, l, _) = weighted_poisson_interval(&terms, 0.95);
        let (pl, _) = poisson_interval(10, 0.95);
        assert!(close(y, 20.0, 1e-12));
        assert!(close(l, 2.0 * pl, 1e-6));
    }

    proptest! {
        #[test]
        fn quantile_inverts_the_cdf(shape in 0.05f64..500.0, p in 0.001f64..0.999) {
            let q = gamma_quantile(p, shape);
            prop_assert!((gamma_p(shape, q) - p).abs() < 1e-7);
        }

        #[test]
        fn intervals_contain_the_estimate(counts in proptest::collection::vec((0u64..20, 0.1f64..5.0, 0u64..10, 30.0f64..400.0), 1..30)) {
            let people: Vec<Exposure> = counts.iter().map(|&(o, _, x, h)| Exposure {
                days: 90.0, observed: o, history: (h > 100.0).then_some((x, h)) }).collect();
            let a = avoided(&people, 0.002, 0.95);
            prop_assert!(a.interval[0] <= a.avoided + 1e-9 && a.avoided <= a.interval[1] + 1e-9);
            prop_assert!(a.observed_interval[0] <= a.observed as f64 && a.observed as f64 <= a.observed_interval[1]);
            prop_assert!(a.expected_interval[0] <= a.expected + 1e-9 && a.expected <= a.expected_interval[1] + 1e-9);
        }
    }

    fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
        // Knuth, in chunks so large means do not underflow.
        let mut total = 0;
        let mut left = mean;
        while left > 0.0 {
            let m = left.min(30.0);
            left -= m;
            let limit = (-m).exp();
            let mut p = 1.0;
            loop {
                p *= rng.random::<f64>();
                if p <= limit {
                    break;
                }
                total += 1;
            }
        }
        total
    }

    /// One simulated group: returns (true avoided, estimate).
    fn simulate(
        rng: &mut StdRng,
        people: usize,
        base_per_year: f64,
        effect: f64,
        reference_per_day: f64,
    ) -> (f64, Avoided) {
        let mut truth = 0.0;
        let mut exposures = Vec::with_capacity(people);
        for _ in 0..people {
            let days = rng.random_range(60.0..366.0f64).floor();
            let own_history = rng.random::<f64>() < 0.7;
            // People with history have their own (varied) rates; the rest have the reference
            // rate, which is what the method assumes for them.
            let rate = if own_history {
                base_per_year / 365.0 * rng.random_range(0.3..2.5)
            } else {
                reference_per_day
            };
            let history = if own_history {
                let h = rng.random_range(180.0..731.0f64).floor();
                Some((poisson(rng, rate * h), h))
            } else {
                None
            };
            truth += rate * days * (1.0 - effect);
            exposures.push(Exposure {
                days,
                observed: poisson(rng, rate * days * effect),
                history,
            });
        }
        (truth, avoided(&exposures, reference_per_day, 0.95))
    }

    /// Known truth: in group A the service halves falls and cuts admissions by a third; in
    /// group B it does nothing. Over a fixed list of seeds the 95% intervals cover the planted
    /// effect about 95% of the time, and in group B rarely exclude zero.
    #[test]
    fn known_truth_recovers_planted_effects_at_the_promised_rate() {
        let seeds: Vec<u64> = (1..=120).map(|i| 7919 * i + 17).collect();
        // (name, base rate per year, effect in A, reference per day)
        let cases = [
            ("falls", 1.2, 0.5, 1.2 / 365.0),
            ("admissions", 0.5, 2.0 / 3.0, 0.5 / 365.0),
        ];
        for (name, base, effect_a, reference) in cases {
            let (mut cover_a, mut cover_b, mut zero_excluded_b, mut detected_a) = (0, 0, 0, 0);
            let mut rel_err_a = 0.0;
            for &seed in &seeds {
                let mut rng = StdRng::seed_from_u64(seed);
                let (truth_a, a) = simulate(&mut rng, 800, base, effect_a, reference);
                let (truth_b, b) = simulate(&mut rng, 800, base, 1.0, reference);
                assert_eq!(truth_b, 0.0);
                if a.interval[0] <= truth_a && truth_a <= a.interval[1] {
                    cover_a += 1;
                }
                if a.interval[0] > 0.0 {
                    detected_a += 1;
                }
                rel_err_a += (a.avoided - truth_a) / truth_a;
                if b.interval[0] <= 0.0 && 0.0 <= b.interval[1] {
                    cover_b += 1;
                } else {
                    zero_excluded_b += 1;
                }
            }
            let n = seeds.len() as f64;
            let (ca, cb) = (cover_a as f64 / n, cover_b as f64 / n);
            eprintln!("{name}: coverage A {ca:.3}, B {cb:.3}, A detected {detected_a}, B false {zero_excluded_b}, mean rel err A {:.3}", rel_err_a / n);
            // 95% promised; with 120 seeds the binomial sd is 2 points.
            assert!((0.89..=0.995).contains(&ca), "{name}: coverage in A {ca}");
            assert!((0.89..=1.0).contains(&cb), "{name}: coverage in B {cb}");
            assert!(
                zero_excluded_b as f64 / n <= 0.11,
                "{name}: false effects in B"
            );
            assert!(
                detected_a as f64 / n >= 0.9,
                "{name}: the planted effect is found"
            );
            assert!((rel_err_a / n).abs() < 0.05, "{name}: estimate unbiased");
        }
    }
}

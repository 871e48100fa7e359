//! The indicators, computed from loaded input rows with no database: falls, avoided estimates,
//! the official (ASCOF) measures and outcome-plan achievement. Definitions: docs/outcomes.md.
//! Pure and deterministic, so the same inputs always give the same figures.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::ascof::{
    self, CareHomeGroup, CareHomeStay, Episode, IndependenceRegained, ShortTerm, StillAtHome,
};
use super::estimate::{self, Avoided, Exposure};
use super::OutcomeSettings;

/// Everything one report reads, sorted, so that it can be hashed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inputs {
    pub people: Vec<PersonInput>,
    pub plans: Vec<PlanInput>,
    /// Populations by age group ("18-64", "65+") when the scope has a commissioner.
    pub populations: Vec<(String, i32)>,
    /// The commissioner whose populations those are: per-100,000 measures count only people
    /// it supports.
    pub population_of: Option<i32>,
    /// Context, never priced: verified visits and their hours per contract in the period.
    pub hours: Vec<ContractHours>,
}

/// Hours delivered under one contract in the period: context, never a price.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContractHours {
    pub contract_id: i32,
    /// Visits with a verified check-in, a start and a later end.
    pub verified_visits: i64,
    /// Their durations summed, in hours.
    pub hours: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PersonInput {
    pub person_id: i32,
    pub date_of_birth: Option<NaiveDate>,
    /// (started_on, ended_on, history_from), in-scope periods only.
    pub periods: Vec<(NaiveDate, Option<NaiveDate>, Option<NaiveDate>)>,
    /// In-scope periods under a contract: (started_on, ended_on, the contract's commissioner).
    /// A period without a contract is self-funded and is not here.
    pub funding: Vec<(NaiveDate, Option<NaiveDate>, i32)>,
    pub died_on: Option<NaiveDate>,
    pub care_home: Vec<CareHomeStay>,
    /// (id, admitted_on, discharged_on)
    pub stays: Vec<(i64, NaiveDate, Option<NaiveDate>)>,
    /// Alarm falls: (date, long_lie, outcome code)
    pub falls: Vec<(NaiveDate, bool, Option<String>)>,
    pub recorded_falls: Vec<NaiveDate>,
    pub episodes: Vec<Episode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanInput {
    pub plan_id: i64,
    pub person_id: i32,
    pub contract_id: Option<i32>,
    pub value_pence: i64,
    pub agreed_on: Option<NaiveDate>,
    pub outcomes: Vec<PlanOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanOutcome {
    pub id: i64,
    pub payable: bool,
    pub kind: String,
    pub target_date: NaiveDate,
    /// Achieved, as known at `known_at`: the UTC date of the person's first "yes" through
    /// their own link or code. Never a date provider staff typed.
    pub achieved_on: Option<NaiveDate>,
    /// The council had verified the achievement by `known_at` (its newest verdict by then was
    /// `verified`).
    pub verified: bool,
}

impl PlanOutcome {
    /// The achievement's date when it counts: confirmed by the person and verified by the
    /// council. An achievement without either is not achieved for the figures or for payment.
    pub fn verified_achievement(&self) -> Option<NaiveDate> {
        self.achieved_on.filter(|_| self.verified)
    }
}

/// A half-open period of days [from, to); `as_of` is when achievement is judged; `known_at`
/// is the moment whose knowledge the report reads: rows recorded later are left out, so a
/// report can be computed again, with the same result, after more rows arrive.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub as_of: NaiveDate,
    pub known_at: DateTime<Utc>,
}

/// Whole years between two dates.
pub fn age_on(dob: NaiveDate, on: NaiveDate) -> i32 {
    let mut age = on.year() - dob.year();
    if (on.month(), on.day()) < (dob.month(), dob.day()) {
        age -= 1;
    }
    age
}

fn days(a: NaiveDate, b: NaiveDate) -> i64 {
    (b - a).num_days().max(0)
}

impl PersonInput {
    /// First day of service (in scope).
    pub fn service_start(&self) -> Option<NaiveDate> {
        self.periods.iter().map(|p| p.0).min()
    }

    fn first_permanent_care_home(&self) -> Option<NaiveDate> {
        self.care_home
            .iter()
            .filter(|c| c.permanent)
            .map(|c| c.admitted_on)
            .min()
    }

    fn in_hospital(&self, day: NaiveDate) -> bool {
        // Not at risk from the day after admission to the discharge day.
        self.stays
            .iter()
            .any(|&(_, a, d)| day > a && d.is_none_or(|d| day <= d))
    }

    /// Is `day` a day at risk in [from, to)? In service, alive, not in permanent care, not in
    /// hospital.
    pub fn at_risk(&self, day: NaiveDate, p: &Period) -> bool {
        day >= p.from
            && day < p.to
            && self
                .periods
                .iter()
                .any(|&(s, e, _)| day >= s && e.is_none_or(|e| day <= e))
            && self.died_on.is_none_or(|d| day < d)
            && self.first_permanent_care_home().is_none_or(|c| day < c)
            && !self.in_hospital(day)
    }

    pub fn days_at_risk(&self, p: &Period) -> i64 {
        // Walk only the days the periods cover (sorted, possibly overlapping).
        let mut n = 0;
        let mut day = p.from;
        while day < p.to {
            if self.at_risk(day, p) {
                n += 1;
            }
            day = day.succ_opt().unwrap_or(p.to);
        }
        n
    }

    /// The person's own history before service began, when long enough: (falls, admissions,
    /// days).
    pub fn history(&self, s: &OutcomeSettings) -> Option<(u64, u64, f64)> {
        let start = self.service_start()?;
        let known_from = self
            .periods
            .iter()
            .filter(|p| p.0 == start)
            .find_map(|p| p.2)?;
        let known = days(known_from, start);
        if known < i64::from(s.min_history_days) || known == 0 {
            return None;
        }
        let h = known.min(i64::from(s.history_days));
        let from = start - chrono::Duration::days(h);
        let in_window = |d: NaiveDate| d >= from && d < start;
        let falls = self
            .recorded_falls
            .iter()
            .filter(|d| in_window(**d))
            .count()
            + self.falls.iter().filter(|f| in_window(f.0)).count();
        let admissions = self.stays.iter().filter(|s| in_window(s.1)).count();
        Some((falls as u64, admissions as u64, h as f64))
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Falls {
    pub people: u64,
    pub person_days: i64,
    pub falls: u64,
    pub rate_per_1000_person_days: Option<f64>,
    pub rate_interval: Option<[f64; 2]>,
    pub long_lies: u64,
    pub conveyed_to_hospital: u64,
    pub admitted_to_hospital: u64,
}

/// The small-number rule: a share whose denominator is at least 1 and under this is
/// suppressed: its value and interval are not given and `suppressed` is set. The counts stay:
/// a report is read by the provider serving the people and the council funding them, not
/// published, and a share of 1 of 3 says more by its counts than by "33%".
pub const MIN_DENOMINATOR: u64 = 5;

/// A share with its Wilson score interval at the report's confidence level.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Share {
    pub numerator: u64,
    pub denominator: u64,
    /// `numerator / denominator`; `None` when the denominator is 0 or the share is suppressed.
    pub share: Option<f64>,
    /// Wilson score interval; `None` when `share` is.
    pub interval: Option<[f64; 2]>,
    /// The denominator is under [`MIN_DENOMINATOR`] (and not 0).
    pub suppressed: bool,
}

impl Share {
    /// `numerator` of `denominator`, its Wilson interval at `level` (e.g. 0.95), suppressed
    /// under [`MIN_DENOMINATOR`].
    pub fn new(numerator: u64, denominator: u64, level: f64) -> Self {
        let suppressed = denominator > 0 && denominator < MIN_DENOMINATOR;
        let shown = denominator > 0 && !suppressed;
        Self {
            numerator,
            denominator,
            share: shown.then(|| numerator as f64 / denominator as f64),
            interval: shown.then(|| wilson(numerator, denominator, level)),
            suppressed,
        }
    }
}

/// The two-sided standard normal quantile z with P(|Z| <= z) = `level`: Z² is chi-square with
/// one degree of freedom, i.e. 2 x Gamma(1/2), so z = sqrt(2 x gamma_quantile(level, 1/2)).
pub fn z_two_sided(level: f64) -> f64 {
    (2.0 * estimate::gamma_quantile(level, 0.5)).sqrt()
}

/// The Wilson (1927) score interval for x successes of n > 0 at `level`:
/// (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), within [0, 1].
pub fn wilson(x: u64, n: u64, level: f64) -> [f64; 2] {
    let (x, n) = (x as f64, n as f64);
    let z = z_two_sided(level);
    let z2 = z * z;
    let p = x / n;
    let centre = p + z2 / (2.0 * n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let d = 1.0 + z2 / n;
    [
        ((centre - half) / d).clamp(0.0, 1.0),
        ((centre + half) / d).clamp(0.0, 1.0),
    ]
}

/// Achievement of payable outcomes due in the period, of one kind or all.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanShares {
    pub payable_due: u64,
    pub early: Share,
    pub on_time: Share,
    pub late: Share,
    pub not_achieved: Share,
    /// The plans' value (`value_pence`) split evenly over each plan's payable outcomes (to the
    /// penny, the remainder to the last), summed over the outcomes due.
    pub value_due_pence: i64,
    /// The same over the outcomes achieved by `as_of` (early, on time or late).
    pub value_achieved_pence: i64,
    /// `value_achieved_pence / value_due_pence`: a weighted share, so no binomial interval; it
    /// is suppressed with the counts' rule.
    pub value_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanAchievement {
    pub payable_due: u64,
    pub early: Share,
    pub on_time: Share,
    pub late: Share,
    pub not_achieved: Share,
    pub value_due_pence: i64,
    pub value_achieved_pence: i64,
    pub value_share: Option<f64>,
    /// Outcomes of kind `reablement` (gain or regain an ability).
    pub reablement: PlanShares,
    /// Outcomes of kind `maintenance` (keep an ability).
    pub maintenance: PlanShares,
}

/// Hours delivered per contract, labelled: context, not an outcome, never a price.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HoursContext {
    pub label: &'static str,
    pub by_contract: Vec<ContractHours>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Indicators {
    pub falls: Falls,
    pub falls_avoided: Avoided,
    pub admissions_avoided: Avoided,
    pub observed_admissions: u64,
    pub still_at_home_91_days: StillAtHome,
    pub short_term_outcome: ShortTerm,
    pub permanent_care_home_admissions: Vec<CareHomeGroup>,
    pub independence_regained: IndependenceRegained,
    pub outcome_plans: PlanAchievement,
    pub hours_delivered: HoursContext,
}

pub fn falls_and_avoided(
    inputs: &Inputs,
    p: &Period,
    s: &OutcomeSettings,
) -> (Falls, Avoided, Avoided, u64) {
    let mut f = Falls {
        people: 0,
        person_days: 0,
        falls: 0,
        rate_per_1000_person_days: None,
        rate_interval: None,
        long_lies: 0,
        conveyed_to_hospital: 0,
        admitted_to_hospital: 0,
    };
    let mut fall_exp = Vec::new();
    let mut adm_exp = Vec::new();
    let mut admissions = 0;
    for person in &inputs.people {
        let d = person.days_at_risk(p);
        if d == 0 {
            continue;
        }
        f.people += 1;
        f.person_days += d;
        let mut observed_falls = 0;
        for (day, long_lie, outcome) in &person.falls {
            if !person.at_risk(*day, p) {
                continue;
            }
            observed_falls += 1;
            f.long_lies += u64::from(*long_lie);
            let o = outcome.as_deref();
            f.conveyed_to_hospital += u64::from(matches!(
                o,
                Some("conveyed_to_hospital" | "admitted_to_hospital")
            ));
            f.admitted_to_hospital += u64::from(o == Some("admitted_to_hospital"));
        }
        f.falls += observed_falls;
        let observed_adm = person
            .stays
            .iter()
            .filter(|st| person.at_risk(st.1, p))
            .count() as u64;
        admissions += observed_adm;
        let history = person.history(s);
        fall_exp.push(Exposure {
            days: d as f64,
            observed: observed_falls,
            history: history.map(|h| (h.0, h.2)),
        });
        adm_exp.push(Exposure {
            days: d as f64,
            observed: observed_adm,
            history: history.map(|h| (h.1, h.2)),
        });
    }
    if f.person_days > 0 {
        let pd = f.person_days as f64 / 1000.0;
        f.rate_per_1000_person_days = Some(f.falls as f64 / pd);
        let (lo, hi) = estimate::poisson_interval(f.falls, s.confidence_level);
        f.rate_interval = Some([lo / pd, hi / pd]);
    }
    let level = s.confidence_level;
    let falls_avoided =
        estimate::avoided(&fall_exp, s.reference_falls_per_person_year / 365.25, level);
    let adm_avoided = estimate::avoided(
        &adm_exp,
        s.reference_admissions_per_person_year / 365.25,
        level,
    );
    (f, falls_avoided, adm_avoided, admissions)
}

/// How a payable outcome ended, judged on `as_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    Early,
    OnTime,
    Late,
    NotAchieved,
}

pub fn timing(o: &PlanOutcome, as_of: NaiveDate, early_margin_days: u32) -> Timing {
    match o.verified_achievement() {
        Some(a) if a <= as_of => {
            if a <= o.target_date - chrono::Duration::days(i64::from(early_margin_days)) {
                Timing::Early
            } else if a <= o.target_date {
                Timing::OnTime
            } else {
                Timing::Late
            }
        }
        _ => Timing::NotAchieved,
    }
}

/// Payable outcomes of agreed plans whose target date falls in the period.
pub fn due_payable<'a>(
    plans: &'a [PlanInput],
    p: &'a Period,
) -> impl Iterator<Item = (&'a PlanInput, &'a PlanOutcome)> + 'a {
    plans
        .iter()
        .filter(|pl| pl.agreed_on.is_some())
        .flat_map(move |pl| {
            pl.outcomes
                .iter()
                .filter(move |o| o.payable && o.target_date >= p.from && o.target_date < p.to)
                .map(move |o| (pl, o))
        })
}

/// The value of each payable outcome of a plan: `value_pence` split evenly over the plan's
/// payable outcomes, to the penny, the remainder one penny each to the last ones.
pub fn outcome_value_pence(plan: &PlanInput, outcome_id: i64) -> i64 {
    let payable: Vec<i64> = plan
        .outcomes
        .iter()
        .filter(|o| o.payable)
        .map(|o| o.id)
        .collect();
    let n = payable.len() as i64;
    let Some(i) = payable.iter().position(|id| *id == outcome_id) else {
        return 0;
    };
    let (base, extra) = (plan.value_pence / n, plan.value_pence % n);
    base + i64::from(i as i64 >= n - extra)
}

/// Counts by timing (early, on time, late, not achieved) and values (due, achieved).
#[derive(Default)]
struct Tally {
    counts: [u64; 4],
    value_due: i64,
    value_achieved: i64,
}

impl Tally {
    fn add(&mut self, t: Timing, value: i64) {
        let i = match t {
            Timing::Early => 0,
            Timing::OnTime => 1,
            Timing::Late => 2,
            Timing::NotAchieved => 3,
        };
        self.counts[i] += 1;
        self.value_due += value;
        if t != Timing::NotAchieved {
            self.value_achieved += value;
        }
    }

    fn shares(&self, level: f64) -> PlanShares {
        let due: u64 = self.counts.iter().sum();
        let c = self.counts;
        let shown = due >= MIN_DENOMINATOR && self.value_due > 0;
        PlanShares {
            payable_due: due,
            early: Share::new(c[0], due, level),
            on_time: Share::new(c[1], due, level),
            late: Share::new(c[2], due, level),
            not_achieved: Share::new(c[3], due, level),
            value_due_pence: self.value_due,
            value_achieved_pence: self.value_achieved,
            value_share: shown.then(|| self.value_achieved as f64 / self.value_due as f64),
        }
    }
}

/// Payable outcomes of agreed plans due in the period, by timing on `as_of`, all together and
/// split by kind (reablement, maintenance), counted and weighted by value.
pub fn plan_achievement(inputs: &Inputs, p: &Period, s: &OutcomeSettings) -> PlanAchievement {
    let (mut all, mut reablement, mut maintenance) =
        (Tally::default(), Tally::default(), Tally::default());
    for (plan, o) in due_payable(&inputs.plans, p) {
        let t = timing(o, p.as_of, s.early_margin_days);
        let value = outcome_value_pence(plan, o.id);
        all.add(t, value);
        match o.kind.as_str() {
            "reablement" => reablement.add(t, value),
            "maintenance" => maintenance.add(t, value),
            _ => {}
        }
    }
    let a = all.shares(s.confidence_level);
    PlanAchievement {
        payable_due: a.payable_due,
        early: a.early,
        on_time: a.on_time,
        late: a.late,
        not_achieved: a.not_achieved,
        value_due_pence: a.value_due_pence,
        value_achieved_pence: a.value_achieved_pence,
        value_share: a.value_share,
        reablement: reablement.shares(s.confidence_level),
        maintenance: maintenance.shares(s.confidence_level),
    }
}

pub fn indicators(inputs: &Inputs, p: &Period, s: &OutcomeSettings) -> Indicators {
    let (falls, falls_avoided, admissions_avoided, observed_admissions) =
        falls_and_avoided(inputs, p, s);
    Indicators {
        falls,
        falls_avoided,
        admissions_avoided,
        observed_admissions,
        still_at_home_91_days: ascof::still_at_home(inputs, p, s),
        short_term_outcome: ascof::short_term(inputs, p, s),
        permanent_care_home_admissions: ascof::care_home(inputs, p),
        independence_regained: ascof::independence(inputs, p, s),
        outcome_plans: plan_achievement(inputs, p, s),
        hours_delivered: HoursContext {
            label: "context, not an outcome: never a price",
            by_contract: inputs.hours.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn period(from: &str, to: &str, as_of: &str) -> Period {
        Period {
            from: d(from),
            to: d(to),
            as_of: d(as_of),
            known_at: chrono::Utc::now(),
        }
    }

    fn person(id: i32, dob: &str) -> PersonInput {
        PersonInput {
            person_id: id,
            date_of_birth: Some(d(dob)),
            periods: vec![(d("2025-01-01"), None, None)],
            ..Default::default()
        }
    }

    /// Days at risk: 31 days of January, less 2 in hospital (admitted 10th: at risk; 11th and
    /// 12th discharged on 12th: not), ending with death on the 30th (30th and 31st not).
    #[test]
    fn days_at_risk_and_falls_by_hand() {
        let s = OutcomeSettings::default();
        let p = period("2026-01-01", "2026-02-01", "2026-02-01");
        let mut x = person(1, "1940-01-01");
        x.stays.push((1, d("2026-01-10"), Some(d("2026-01-12"))));
        x.died_on = Some(d("2026-01-30"));
        x.falls
            .push((d("2026-01-03"), true, Some("admitted_to_hospital".into())));
        x.falls
            .push((d("2026-01-05"), false, Some("conveyed_to_hospital".into())));
        x.falls.push((d("2026-01-11"), false, None)); // in hospital: not counted
        assert_eq!(x.days_at_risk(&p), 31 - 2 - 2);
        let (f, fa, aa, adm) = falls_and_avoided(
            &Inputs {
                people: vec![x],
                ..Default::default()
            },
            &p,
            &s,
        );
        assert_eq!(
            (
                f.falls,
                f.long_lies,
                f.conveyed_to_hospital,
                f.admitted_to_hospital
            ),
            (2, 1, 2, 1)
        );
        assert_eq!(f.person_days, 27);
        assert!((f.rate_per_1000_person_days.unwrap() - 2000.0 / 27.0).abs() < 1e-9);
        assert_eq!(adm, 1);
        // No history: reference rates.
        assert_eq!(fa.people_on_reference_rate, 1);
        assert!((fa.expected - s.reference_falls_per_person_year / 365.25 * 27.0).abs() < 1e-9);
        assert_eq!(aa.observed, 1);
    }

    #[test]
    fn own_history_needs_enough_days() {
        let s = OutcomeSettings::default();
        let mut x = person(1, "1940-01-01");
        x.periods = vec![(d("2025-01-01"), None, Some(d("2024-01-01")))];
        x.recorded_falls = vec![d("2024-06-01"), d("2024-07-01"), d("2023-01-01")];
        x.stays.push((1, d("2024-03-01"), Some(d("2024-03-05"))));
        let (falls, adm, h) = x.history(&s).unwrap();
        assert_eq!((falls, adm, h), (2, 1, 365.0)); // 366 known, capped at history_days
        x.periods = vec![(d("2025-01-01"), None, Some(d("2024-12-01")))];
        assert!(x.history(&s).is_none());
    }

    /// Pinned to Newcombe (1998), Table I, method 3 (Wilson score, 95%): 81/263, 15/148,
    /// 0/20, 1/29; and z at 95% and 90%.
    #[test]
    fn wilson_interval_matches_published_values() {
        assert!((z_two_sided(0.95) - 1.959964).abs() < 1e-5);
        assert!((z_two_sided(0.90) - 1.644854).abs() < 1e-5);
        for (x, n, lo, hi) in [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ] {
            let [l, h] = wilson(x, n, 0.95);
            assert!(
                (l - lo).abs() < 5e-5 && (h - hi).abs() < 5e-5,
                "{x}/{n}: {l} {h}"
            );
        }
        // A narrower interval at a lower level.
        let [l90, h90] = wilson(81, 263, 0.90);
        assert!(l90 > 0.2553 && h90 < 0.3662);
    }

    /// Denominators 1 to 4 are suppressed (counts kept, share and interval hidden); 0 is
    /// empty, not suppressed; 5 is shown.
    #[test]
    fn small_denominators_are_suppressed() {
        let s = Share::new(1, 4, 0.95);
        assert!(s.suppressed);
        assert_eq!(
            (s.numerator, s.denominator, s.share, s.interval),
            (1, 4, None, None)
        );
        let s = Share::new(0, 0, 0.95);
        assert!(!s.suppressed && s.share.is_none() && s.interval.is_none());
        let s = Share::new(2, 5, 0.95);
        assert!(!s.suppressed);
        assert_eq!(s.share, Some(0.4));
        let [l, h] = s.interval.unwrap();
        assert!(l < 0.4 && 0.4 < h);
    }

    /// Two plans, seven payable outcomes due in Q1 (as_of 2026-04-01), checked by hand.
    /// Plan 1, £1,000.00 over 3 payable outcomes (33,333 / 33,333 / 33,334 pence): reablement
    /// early, reablement not achieved, maintenance on time; a non-payable outcome is not
    /// counted. Plan 2, £100.00 over 4 (2,500 each): reablement late, maintenance x3 (one
    /// achieved on time, two not). All: 7 due; early 1, on time 2, late 1, not achieved 3;
    /// value due 100,000 + 10,000 = 110,000, achieved 33,333 + 33,334 + 2,500 + 2,500 = 71,667.
    /// Reablement: 3 due (suppressed), value 33,333 + 33,333 + 2,500 = 69,166, achieved 35,833.
    /// Maintenance: 4 due, 2 achieved.
    #[test]
    fn plan_achievement_by_kind_and_value_by_hand() {
        let s = OutcomeSettings::default();
        let p = period("2026-01-01", "2026-04-01", "2026-04-01");
        let o = |id: i64, kind: &str, payable: bool, achieved: Option<&str>| PlanOutcome {
            id,
            payable,
            kind: kind.into(),
            target_date: d("2026-03-01"),
            achieved_on: achieved.map(d),
            verified: true,
        };
        let plan = |id: i64, value_pence: i64, outcomes: Vec<PlanOutcome>| PlanInput {
            plan_id: id,
            person_id: 1,
            contract_id: None,
            value_pence,
            agreed_on: Some(d("2026-01-01")),
            outcomes,
        };
        let plans = vec![
            plan(
                1,
                100_000,
                vec![
                    o(1, "reablement", true, Some("2026-02-01")),
                    o(2, "reablement", true, None),
                    o(3, "maintenance", true, Some("2026-02-25")),
                    o(4, "maintenance", false, Some("2026-02-25")),
                ],
            ),
            plan(
                2,
                10_000,
                vec![
                    o(5, "reablement", true, Some("2026-03-10")),
                    o(6, "maintenance", true, Some("2026-03-01")),
                    o(7, "maintenance", true, None),
                    o(8, "maintenance", true, None),
                ],
            ),
        ];
        assert_eq!(
            (1..=3)
                .map(|i| outcome_value_pence(&plans[0], i))
                .collect::<Vec<_>>(),
            vec![33_333, 33_333, 33_334]
        );
        assert_eq!(outcome_value_pence(&plans[0], 4), 0);
        let inputs = Inputs {
            plans,
            ..Default::default()
        };
        let r = plan_achievement(&inputs, &p, &s);
        assert_eq!(r.payable_due, 7);
        assert_eq!(
            (
                r.early.numerator,
                r.on_time.numerator,
                r.late.numerator,
                r.not_achieved.numerator
            ),
            (1, 2, 1, 3)
        );
        assert_eq!(
            (r.value_due_pence, r.value_achieved_pence),
            (110_000, 71_667)
        );
        assert!((r.value_share.unwrap() - 71_667.0 / 110_000.0).abs() < 1e-12);
        assert!(r.early.interval.is_some());
        assert_eq!(r.reablement.payable_due, 3);
        assert_eq!(
            (
                r.reablement.value_due_pence,
                r.reablement.value_achieved_pence
            ),
            (69_166, 35_833)
        );
        assert!(r.reablement.early.suppressed && r.reablement.value_share.is_none());
        assert_eq!(r.maintenance.payable_due, 4);
        assert_eq!(r.maintenance.not_achieved.numerator, 2);
    }

    #[test]
    fn plan_timing() {
        let o = |a: Option<&str>| PlanOutcome {
            id: 1,
            payable: true,
            kind: "reablement".into(),
            target_date: d("2026-03-01"),
            achieved_on: a.map(d),
            verified: true,
        };
        let as_of = d("2026-04-01");
        assert_eq!(timing(&o(Some("2026-02-01")), as_of, 14), Timing::Early);
        assert_eq!(timing(&o(Some("2026-02-20")), as_of, 14), Timing::OnTime);
        assert_eq!(timing(&o(Some("2026-03-01")), as_of, 14), Timing::OnTime);
        assert_eq!(timing(&o(Some("2026-03-02")), as_of, 14), Timing::Late);
        assert_eq!(
            timing(&o(Some("2026-04-02")), as_of, 14),
            Timing::NotAchieved
        );
        assert_eq!(timing(&o(None), as_of, 14), Timing::NotAchieved);
    }

    #[test]
    fn an_achievement_the_council_has_not_verified_is_not_achieved() {
        let mut o = PlanOutcome {
            id: 1,
            payable: true,
            kind: "reablement".into(),
            target_date: d("2026-03-01"),
            achieved_on: Some(d("2026-02-01")),
            verified: false,
        };
        let as_of = d("2026-04-01");
        assert_eq!(timing(&o, as_of, 14), Timing::NotAchieved);
        assert_eq!(o.verified_achievement(), None);
        o.verified = true;
        assert_eq!(timing(&o, as_of, 14), Timing::Early);
        // Verified without the person's confirmation: nothing to date it, not achieved.
        o.achieved_on = None;
        assert_eq!(timing(&o, as_of, 14), Timing::NotAchieved);
    }
}

//! The indicators, computed from loaded input rows with no database: falls, avoided estimates,
//! the official (ASCOF) measures and outcome-plan achievement. Definitions: docs/outcomes.md.
//! Pure and deterministic, so the same inputs always give the same figures.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::estimate::{self, Avoided, Exposure};
use super::{OutcomeSettings, ReablementResult};

/// Everything one report reads, sorted, so that it can be hashed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inputs {
    pub people: Vec<PersonInput>,
    pub plans: Vec<PlanInput>,
    /// Populations by age group ("18-64", "65+") when the scope has a commissioner.
    pub populations: Vec<(String, i32)>,
}

/// A reablement episode: (started_on, ended_on, result, discharged_from_stay_on, aim_home).
pub type Episode = (
    NaiveDate,
    Option<NaiveDate>,
    Option<String>,
    Option<NaiveDate>,
    bool,
);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PersonInput {
    pub person_id: i32,
    pub date_of_birth: Option<NaiveDate>,
    /// (started_on, ended_on, history_from), in-scope periods only.
    pub periods: Vec<(NaiveDate, Option<NaiveDate>, Option<NaiveDate>)>,
    pub died_on: Option<NaiveDate>,
    /// (admitted_on, permanent, setting)
    pub care_home: Vec<(NaiveDate, bool, String)>,
    /// (id, admitted_on, discharged_on)
    pub stays: Vec<(i64, NaiveDate, Option<NaiveDate>)>,
    /// Alarm falls: (date, long_lie, outcome code)
    pub falls: Vec<(NaiveDate, bool, Option<String>)>,
    pub recorded_falls: Vec<NaiveDate>,
    /// (started_on, ended_on, result, discharged_from_stay_on, aim_home)
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
    pub achieved_on: Option<NaiveDate>,
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
        self.care_home.iter().filter(|c| c.1).map(|c| c.0).min()
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

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Share {
    pub numerator: u64,
    pub denominator: u64,
    pub share: Option<f64>,
}

impl Share {
    pub fn new(numerator: u64, denominator: u64) -> Self {
        Self {
            numerator,
            denominator,
            share: (denominator > 0).then(|| numerator as f64 / denominator as f64),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StillAtHome {
    #[serde(flatten)]
    pub share: Share,
    /// Discharged in the period but 91 days have not passed by `as_of`.
    pub pending: u64,
    /// Left out because the date of birth is not known.
    pub unknown_age: u64,
    pub min_age: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShortTerm {
    #[serde(flatten)]
    pub share: Share,
    pub by_result: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CareHomeGroup {
    pub age_group: String,
    pub admissions: u64,
    pub population: Option<i32>,
    pub per_100k: Option<f64>,
    pub per_100k_per_year: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanAchievement {
    pub payable_due: u64,
    pub early: Share,
    pub on_time: Share,
    pub late: Share,
    pub not_achieved: Share,
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
    pub outcome_plans: PlanAchievement,
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

/// ASCOF 2B(1): of people aged `min_age`+ discharged from hospital into reablement in the
/// period with the aim of going home, the share at home 91 days after discharge.
pub fn still_at_home(inputs: &Inputs, p: &Period, s: &OutcomeSettings) -> StillAtHome {
    let (mut num, mut den, mut pending, mut unknown) = (0, 0, 0, 0);
    for person in &inputs.people {
        for (_, _, _, discharged, aim_home) in &person.episodes {
            let Some(discharged) = *discharged else {
                continue;
            };
            if !aim_home || discharged < p.from || discharged >= p.to {
                continue;
            }
            let Some(dob) = person.date_of_birth else {
                unknown += 1;
                continue;
            };
            if age_on(dob, discharged) < s.still_at_home_min_age as i32 {
                continue;
            }
            let day = discharged + chrono::Duration::days(91);
            if day > p.as_of {
                pending += 1;
                continue;
            }
            den += 1;
            let at_home = person.died_on.is_none_or(|d| d > day)
                && person.first_permanent_care_home().is_none_or(|c| c > day)
                && !person.in_hospital(day)
                && !person.stays.iter().any(|st| st.1 == day);
            num += u64::from(at_home);
        }
    }
    StillAtHome {
        share: Share::new(num, den),
        pending,
        unknown_age: unknown,
        min_age: s.still_at_home_min_age,
    }
}

/// ASCOF 2D: of reablement episodes ended in the period, the share followed by no further
/// support or support of a lower level.
pub fn short_term(inputs: &Inputs, p: &Period) -> ShortTerm {
    let mut by_result = std::collections::BTreeMap::new();
    let (mut num, mut den) = (0, 0);
    for person in &inputs.people {
        for (_, ended, result, _, _) in &person.episodes {
            let (Some(ended), Some(result)) = (ended, result) else {
                continue;
            };
            if *ended < p.from || *ended >= p.to {
                continue;
            }
            den += 1;
            num += u64::from(matches!(
                ReablementResult::parse(result),
                Some(ReablementResult::NoFurtherSupport | ReablementResult::LessSupport)
            ));
            *by_result.entry(result.clone()).or_insert(0) += 1;
        }
    }
    ShortTerm {
        share: Share::new(num, den),
        by_result,
    }
}

/// ASCOF 2A: permanent admissions to residential and nursing care in the period, per 100,000 of
/// the age group's population (and annualised).
pub fn care_home(inputs: &Inputs, p: &Period) -> Vec<CareHomeGroup> {
    let period_days = days(p.from, p.to).max(1) as f64;
    ["18-64", "65+"]
        .into_iter()
        .map(|group| {
            let mut n = 0;
            for person in &inputs.people {
                let Some(dob) = person.date_of_birth else {
                    continue;
                };
                for (on, permanent, _) in &person.care_home {
                    if !permanent || *on < p.from || *on >= p.to {
                        continue;
                    }
                    let age = age_on(dob, *on);
                    let fits = if group == "65+" {
                        age >= 65
                    } else {
                        (18..65).contains(&age)
                    };
                    n += u64::from(fits);
                }
            }
            let population = inputs
                .populations
                .iter()
                .find(|(g, _)| g == group)
                .map(|(_, n)| *n);
            let per_100k = population.map(|pop| n as f64 / f64::from(pop) * 100_000.0);
            CareHomeGroup {
                age_group: group.to_string(),
                admissions: n,
                population,
                per_100k,
                per_100k_per_year: per_100k.map(|r| r * 365.0 / period_days),
            }
        })
        .collect()
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
    match o.achieved_on {
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

pub fn plan_achievement(inputs: &Inputs, p: &Period, s: &OutcomeSettings) -> PlanAchievement {
    let mut counts = [0u64; 4];
    for (_, o) in due_payable(&inputs.plans, p) {
        let i = match timing(o, p.as_of, s.early_margin_days) {
            Timing::Early => 0,
            Timing::OnTime => 1,
            Timing::Late => 2,
            Timing::NotAchieved => 3,
        };
        counts[i] += 1;
    }
    let due: u64 = counts.iter().sum();
    PlanAchievement {
        payable_due: due,
        early: Share::new(counts[0], due),
        on_time: Share::new(counts[1], due),
        late: Share::new(counts[2], due),
        not_achieved: Share::new(counts[3], due),
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
        still_at_home_91_days: still_at_home(inputs, p, s),
        short_term_outcome: short_term(inputs, p),
        permanent_care_home_admissions: care_home(inputs, p),
        outcome_plans: plan_achievement(inputs, p, s),
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

    /// Five people aged 65+ discharged into reablement in Q1 2026, checked by hand:
    /// 1 at home (counts), 2 died on day 60 (not), 3 permanent care home on day 91 (not),
    /// 4 back in hospital on day 91 (not), 5 aged 60 (left out); 6 discharged in March, day 91
    /// after as_of (pending); 7 no date of birth (unknown). 1 of 4 = 25%.
    #[test]
    fn still_at_home_91_days_by_hand() {
        let s = OutcomeSettings::default();
        let p = period("2026-01-01", "2026-04-01", "2026-06-01");
        let ep = |dis: &str| (d(dis), None, None, Some(d(dis)), true);
        let mut people = Vec::new();
        let mut p1 = person(1, "1940-01-01");
        p1.episodes.push(ep("2026-01-10"));
        people.push(p1);
        let mut p2 = person(2, "1940-01-01");
        p2.episodes.push(ep("2026-01-10"));
        p2.died_on = Some(d("2026-03-11"));
        people.push(p2);
        let mut p3 = person(3, "1940-01-01");
        p3.episodes.push(ep("2026-01-10"));
        p3.care_home
            .push((d("2026-04-11"), true, "residential".into()));
        people.push(p3);
        let mut p4 = person(4, "1940-01-01");
        p4.episodes.push(ep("2026-01-10"));
        p4.stays.push((9, d("2026-04-05"), Some(d("2026-04-20"))));
        people.push(p4);
        let mut p5 = person(5, "1966-01-01");
        p5.episodes.push(ep("2026-01-10"));
        people.push(p5);
        let mut p6 = person(6, "1940-01-01");
        p6.episodes.push(ep("2026-03-20"));
        people.push(p6);
        let mut p7 = person(7, "1940-01-01");
        p7.date_of_birth = None;
        p7.episodes.push(ep("2026-01-10"));
        people.push(p7);
        let r = still_at_home(
            &Inputs {
                people,
                ..Default::default()
            },
            &p,
            &s,
        );
        assert_eq!((r.share.numerator, r.share.denominator), (1, 4));
        assert_eq!((r.pending, r.unknown_age), (1, 1));
        assert_eq!(r.share.share, Some(0.25));
    }

    /// Six episodes ended in the period: no further support x2, less, same, more, nursing;
    /// one ended before the period. (2 + 1) / 6 = 50%.
    #[test]
    fn short_term_outcome_by_hand() {
        let p = period("2026-01-01", "2026-04-01", "2026-04-01");
        let mut x = person(1, "1940-01-01");
        for (end, r) in [
            ("2026-01-05", "no_further_support"),
            ("2026-02-05", "no_further_support"),
            ("2026-02-06", "less_support"),
            ("2026-02-07", "same_support"),
            ("2026-03-07", "more_support"),
            ("2026-03-31", "nursing_care"),
            ("2025-12-31", "no_further_support"),
        ] {
            x.episodes
                .push((d("2025-12-01"), Some(d(end)), Some(r.into()), None, true));
        }
        let r = short_term(
            &Inputs {
                people: vec![x],
                ..Default::default()
            },
            &p,
        );
        assert_eq!((r.share.numerator, r.share.denominator), (3, 6));
        assert_eq!(r.by_result["no_further_support"], 2);
    }

    /// 65+: two permanent admissions (one temporary left out); 18-64: one; a person aged 17
    /// left out. Population 65+ 40,000 -> 5.0 per 100,000; over a 91-day quarter, 20.05/year.
    #[test]
    fn care_home_admissions_per_100k_by_hand() {
        let p = period("2026-01-01", "2026-04-02", "2026-04-02");
        let mut a = person(1, "1940-01-01");
        a.care_home.push((d("2026-02-01"), true, "nursing".into()));
        let mut b = person(2, "1950-01-01");
        b.care_home
            .push((d("2026-02-01"), true, "residential".into()));
        b.care_home
            .push((d("2026-01-05"), false, "residential".into()));
        let mut c = person(3, "1980-01-01");
        c.care_home
            .push((d("2026-03-01"), true, "residential".into()));
        let mut e = person(4, "2009-06-01");
        e.care_home
            .push((d("2026-03-01"), true, "residential".into()));
        let inputs = Inputs {
            people: vec![a, b, c, e],
            plans: vec![],
            populations: vec![("65+".into(), 40_000), ("18-64".into(), 200_000)],
        };
        let r = care_home(&inputs, &p);
        assert_eq!(r[1].admissions, 2);
        assert_eq!(r[1].per_100k, Some(5.0));
        assert!((r[1].per_100k_per_year.unwrap() - 5.0 * 365.0 / 91.0).abs() < 1e-9);
        assert_eq!(r[0].admissions, 1);
        assert_eq!(r[0].per_100k, Some(0.5));
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

    #[test]
    fn plan_timing() {
        let o = |a: Option<&str>| PlanOutcome {
            id: 1,
            payable: true,
            kind: "reablement".into(),
            target_date: d("2026-03-01"),
            achieved_on: a.map(d),
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
}

//! The indicators, computed from loaded input rows with no database: falls, avoided estimates,
//! the official (ASCOF) measures and outcome-plan achievement. Definitions: docs/outcomes.md.
//! Pure and deterministic, so the same inputs always give the same figures.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::ascof::{
    self, CareHomeGroup, CareHomeStay, Episode, IndependenceRegained, ShortTerm, StillAtHome,
};
use super::estimate::{self, Against, Baseline, ReferenceRate, ReferenceRates, Unit};
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
    /// The commissioner's comparison cohort for the scope (people not served), as known at
    /// `known_at`: see [`super::comparison`].
    pub comparison: Vec<ComparisonMember>,
    /// The contract's reference rates (`terms.reference_rates`), for a contract's scope.
    pub reference_rates: Option<ReferenceRates>,
}

/// What a comparison event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComparisonKind {
    /// A fall known from records.
    Fall,
    /// An emergency hospital admission.
    EmergencyAdmission,
    /// A permanent admission to residential or nursing care.
    CareHomeAdmission,
}

/// A member of a comparison cohort: followed from `follow_from` to `ended_on` (inclusive).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComparisonMember {
    pub index_date: NaiveDate,
    pub follow_from: NaiveDate,
    pub ended_on: Option<NaiveDate>,
    /// (kind, date), sorted.
    pub events: Vec<(ComparisonKind, NaiveDate)>,
}

/// A hospital stay as the avoided estimates read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Admission {
    pub admitted_on: NaiveDate,
    /// `hospital_stays.emergency`: only emergency admissions count as avoidable.
    pub emergency: bool,
    /// The stay a reablement episode followed (the person was discharged from it into the
    /// service): the event that led to the referral, never part of the baseline.
    pub index: bool,
    /// When the stay's record was first recorded (its first version).
    pub first_recorded_at: DateTime<Utc>,
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
    /// Falls known from records: (occurred_on, when the record was first recorded).
    pub recorded_falls: Vec<(NaiveDate, DateTime<Utc>)>,
    /// Hospital stays for the avoided estimates (emergency, index, first recorded).
    pub admissions: Vec<Admission>,
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

    /// The baseline window before the service: [start - `history_days`, start -
    /// `washout_days`), cut to what is known (`history_from`), when at least
    /// `min_history_days` of history are known. `None` otherwise.
    pub fn baseline_window(&self, s: &OutcomeSettings) -> Option<(NaiveDate, NaiveDate)> {
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
        let from = known_from.max(start - chrono::Duration::days(i64::from(s.history_days)));
        let to = start - chrono::Duration::days(i64::from(s.washout_days));
        (from < to).then_some((from, to))
    }

    /// The person's baseline: (falls, emergency admissions, days, rows back-filled after
    /// enrolment as (falls, admissions)). A row counts only when its record was first recorded
    /// by the end of the service's first day (UTC): the baseline is locked at enrolment, so
    /// rows added later cannot raise it. The index stay never counts.
    pub fn baseline(&self, s: &OutcomeSettings) -> Option<(u64, u64, f64, (u64, u64))> {
        let (from, to) = self.baseline_window(s)?;
        let lock = enrolment_lock(self.service_start()?);
        let in_window = |d: NaiveDate| d >= from && d < to;
        let (mut falls, mut late_falls) = (0, 0);
        for (on, first) in &self.recorded_falls {
            if in_window(*on) {
                if *first <= lock {
                    falls += 1;
                } else {
                    late_falls += 1;
                }
            }
        }
        let (mut adm, mut late_adm) = (0, 0);
        for a in &self.admissions {
            if a.emergency && !a.index && in_window(a.admitted_on) {
                if a.first_recorded_at <= lock {
                    adm += 1;
                } else {
                    late_adm += 1;
                }
            }
        }
        Some((falls, adm, days(from, to) as f64, (late_falls, late_adm)))
    }

    /// Is `day` in one of the person's in-scope service periods?
    fn in_service(&self, day: NaiveDate) -> bool {
        self.periods
            .iter()
            .any(|&(s, e, _)| day >= s && e.is_none_or(|e| day <= e))
    }
}

/// The end of the service's first day (UTC): rows recorded after it are not in the baseline.
pub fn enrolment_lock(start: NaiveDate) -> DateTime<Utc> {
    (start + chrono::Duration::days(1))
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
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
    /// Emergency admissions only.
    pub admissions_avoided: Avoided,
    /// Permanent admissions to residential or nursing care.
    pub care_home_admissions_avoided: Avoided,
    /// Hospital stays (emergency or not) admitted on days at risk: descriptive.
    pub observed_admissions: u64,
    pub still_at_home_91_days: StillAtHome,
    pub short_term_outcome: ShortTerm,
    pub permanent_care_home_admissions: Vec<CareHomeGroup>,
    pub independence_regained: IndependenceRegained,
    pub outcome_plans: PlanAchievement,
    pub hours_delivered: HoursContext,
}

/// How an avoided figure was estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Design {
    /// Difference-in-differences against the commissioner's comparison cohort.
    ComparisonCohort,
    /// Against a reference rate that is a contract term, with its interval.
    ReferenceRate,
    /// No comparison: observed figures only, no avoided figure.
    Descriptive,
}

/// An avoided figure: what the service's people would have had without it, less what they had.
/// Only a causal design (a concurrent comparison) gives `avoided` and `interval`; without one
/// the figure is descriptive and both are absent.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Avoided {
    pub design: Design,
    pub causal: bool,
    /// "causal estimate ..." or "descriptive, not causal".
    pub label: &'static str,
    pub avoided: Option<f64>,
    pub interval: Option<[f64; 2]>,
    pub level: f64,
    /// Events expected without the service over the people in the estimate.
    pub expected: Option<f64>,
    /// Observed over expected (below 1: fewer events than expected).
    pub rate_ratio: Option<f64>,
    /// Events on days at risk in the period, and those days, of the people in the estimate
    /// (for the descriptive design: everyone at risk).
    pub observed: u64,
    pub days_at_risk: f64,
    pub people: u64,
    /// At risk in the period but left out of a comparison-cohort estimate for want of a known
    /// baseline (`outcomes.min_history_days`).
    pub people_without_baseline: u64,
    /// Baseline events and days of the people in the estimate.
    pub baseline_events: u64,
    pub baseline_days: f64,
    /// Baseline-window rows first recorded after the service began: not in the baseline.
    pub backfilled_after_enrolment: u64,
    pub comparison_people: u64,
    pub comparison_observed: u64,
    pub reference_rate: Option<ReferenceRate>,
    /// What is counted, in both windows.
    pub sources: &'static str,
    pub method: &'static str,
    /// Why the design is what it is, when that is not obvious.
    pub note: Option<String>,
}

impl Avoided {
    /// Observed figures only, no avoided figure.
    pub fn descriptive(level: f64, sources: &'static str) -> Self {
        Self {
            design: Design::Descriptive,
            causal: false,
            label: DESCRIPTIVE,
            avoided: None,
            interval: None,
            level,
            expected: None,
            rate_ratio: None,
            observed: 0,
            days_at_risk: 0.0,
            people: 0,
            people_without_baseline: 0,
            baseline_events: 0,
            baseline_days: 0.0,
            backfilled_after_enrolment: 0,
            comparison_people: 0,
            comparison_observed: 0,
            reference_rate: None,
            sources,
            method: estimate::METHOD,
            note: None,
        }
    }
}

const DESCRIPTIVE: &str = "descriptive, not causal";

/// What each avoided figure counts, in the baseline and in the follow-up alike.
pub const FALLS_SOURCES: &str = "falls known from records (recorded_falls) in both windows; \
alarm-detected falls are in the falls figures, never here (detectors miss some falls)";
pub const ADMISSIONS_SOURCES: &str = "emergency hospital stays (hospital_stays.emergency) in \
both windows, the index stay excluded";
pub const CARE_HOME_SOURCES: &str = "first permanent admission to residential or nursing care \
in the follow-up (no baseline: everyone starts at home)";

/// The figures the falls and avoided indicators share.
#[derive(Debug, Clone)]
pub struct FallsAndAvoided {
    pub falls: Falls,
    pub falls_avoided: Avoided,
    pub admissions_avoided: Avoided,
    pub care_home_admissions_avoided: Avoided,
    pub observed_admissions: u64,
}

/// One indicator's units and counts, gathered over the service's people.
#[derive(Default)]
struct Gathered {
    /// Everyone at risk: (people, observed, days).
    all: (u64, u64, f64),
    /// People with a baseline.
    with_baseline: Vec<Unit>,
    without_baseline: u64,
    backfilled: u64,
}

impl Gathered {
    fn add(&mut self, events: u64, days: f64, baseline: Option<(u64, f64)>, backfilled: u64) {
        self.all.0 += 1;
        self.all.1 += events;
        self.all.2 += days;
        self.backfilled += backfilled;
        match baseline {
            Some((b, h)) => self.with_baseline.push(Unit {
                baseline_events: b,
                baseline_days: h,
                events,
                days,
            }),
            None => self.without_baseline += 1,
        }
    }
}

/// The comparison cohort's units for one indicator: baseline window [follow_from -
/// `history_days`, follow_from - `washout_days`), events on the index date left out (the
/// event that led to the referral); follow-up: days in the period from `follow_from` to
/// `ended_on`, before a permanent care-home admission.
fn comparison_units(
    inputs: &Inputs,
    kind: ComparisonKind,
    p: &Period,
    s: &OutcomeSettings,
) -> Vec<Unit> {
    let mut units = Vec::new();
    for m in &inputs.comparison {
        let care_home = m
            .events
            .iter()
            .filter(|e| e.0 == ComparisonKind::CareHomeAdmission)
            .map(|e| e.1)
            .min();
        let at_risk = |day: NaiveDate| {
            day >= p.from
                && day < p.to
                && day >= m.follow_from
                && m.ended_on.is_none_or(|e| day <= e)
                && care_home.is_none_or(|c| day < c)
        };
        let mut d = 0i64;
        let mut day = p.from.max(m.follow_from);
        while day < p.to && m.ended_on.is_none_or(|e| day <= e) {
            d += i64::from(at_risk(day));
            day = day.succ_opt().unwrap_or(p.to);
        }
        if d == 0 {
            continue;
        }
        let from = m.follow_from - chrono::Duration::days(i64::from(s.history_days));
        let to = m.follow_from - chrono::Duration::days(i64::from(s.washout_days));
        let mine = || m.events.iter().filter(|e| e.0 == kind).map(|e| e.1);
        let baseline = mine()
            .filter(|on| *on >= from && *on < to && *on != m.index_date)
            .count() as u64;
        let events = if kind == ComparisonKind::CareHomeAdmission {
            care_home
                .filter(|c| {
                    *c >= p.from
                        && *c < p.to
                        && *c >= m.follow_from
                        && m.ended_on.is_none_or(|e| *c <= e)
                })
                .map_or(0, |_| 1)
        } else {
            mine().filter(|on| at_risk(*on)).count() as u64
        };
        units.push(Unit {
            baseline_events: baseline,
            baseline_days: days(from, to) as f64,
            events,
            days: d as f64,
        });
    }
    units
}

/// Chooses the design and estimates one avoided figure.
fn estimate_avoided(
    g: &Gathered,
    everyone: &[Unit],
    cohort: &[Unit],
    reference: Option<&ReferenceRate>,
    baseline: Baseline,
    sources: &'static str,
    level: f64,
) -> Avoided {
    let mut a = Avoided::descriptive(level, sources);
    a.people = g.all.0;
    a.observed = g.all.1;
    a.days_at_risk = g.all.2;
    a.backfilled_after_enrolment = g.backfilled;
    let (service, against, design) = if !cohort.is_empty() {
        let service = match baseline {
            Baseline::Own => &g.with_baseline[..],
            Baseline::None => everyone,
        };
        (service, Against::Cohort(cohort), Design::ComparisonCohort)
    } else if let Some(r) = reference {
        (everyone, Against::Reference(r), Design::ReferenceRate)
    } else {
        a.note = Some("no comparison cohort and no reference rate in the contract's terms".into());
        return a;
    };
    let Some(e) = estimate::avoided(service, against, baseline, level) else {
        a.note = Some(match design {
            Design::ComparisonCohort => {
                "the comparison cohort has no one at risk or no expected events, or no one \
                 in the service has a known baseline"
                    .into()
            }
            _ => "no one at risk in the period".into(),
        });
        return a;
    };
    a.design = design;
    a.causal = true;
    a.label = match design {
        Design::ComparisonCohort => {
            "causal estimate: difference-in-differences against a concurrent comparison cohort"
        }
        _ => "causal estimate: against the contract's reference rate, its interval carried",
    };
    a.avoided = Some(e.avoided);
    a.interval = Some(e.interval);
    a.expected = Some(e.expected);
    a.rate_ratio = e.rate_ratio;
    a.people = service.len() as u64;
    a.observed = e.observed;
    a.days_at_risk = service.iter().map(|u| u.days).sum();
    if design == Design::ComparisonCohort && baseline == Baseline::Own {
        a.people_without_baseline = g.without_baseline;
        a.baseline_events = service.iter().map(|u| u.baseline_events).sum();
        a.baseline_days = service.iter().map(|u| u.baseline_days).sum();
    }
    if let Against::Cohort(c) = against {
        a.comparison_people = c.iter().filter(|u| u.days > 0.0).count() as u64;
        a.comparison_observed = c.iter().map(|u| u.events).sum();
    } else {
        a.reference_rate = reference.cloned();
    }
    a
}

pub fn falls_and_avoided(inputs: &Inputs, p: &Period, s: &OutcomeSettings) -> FallsAndAvoided {
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
    let (mut falls, mut adm, mut everyone, mut care) = (
        Gathered::default(),
        Gathered::default(),
        Vec::new(),
        Vec::new(),
    );
    let mut admissions = 0;
    for person in &inputs.people {
        let d = person.days_at_risk(p);
        if d == 0 {
            continue;
        }
        f.people += 1;
        f.person_days += d;
        for (day, long_lie, outcome) in &person.falls {
            if !person.at_risk(*day, p) {
                continue;
            }
            f.falls += 1;
            f.long_lies += u64::from(*long_lie);
            let o = outcome.as_deref();
            f.conveyed_to_hospital += u64::from(matches!(
                o,
                Some("conveyed_to_hospital" | "admitted_to_hospital")
            ));
            f.admitted_to_hospital += u64::from(o == Some("admitted_to_hospital"));
        }
        admissions += person
            .stays
            .iter()
            .filter(|st| person.at_risk(st.1, p))
            .count() as u64;
        let recorded = person
            .recorded_falls
            .iter()
            .filter(|r| person.at_risk(r.0, p))
            .count() as u64;
        let emergency = person
            .admissions
            .iter()
            .filter(|a| a.emergency && person.at_risk(a.admitted_on, p))
            .count() as u64;
        let base = person.baseline(s);
        let late = base.map_or((0, 0), |b| b.3);
        falls.add(recorded, d as f64, base.map(|b| (b.0, b.2)), late.0);
        adm.add(emergency, d as f64, base.map(|b| (b.1, b.2)), late.1);
        let no_base = |events| Unit {
            baseline_events: 0,
            baseline_days: 0.0,
            events,
            days: d as f64,
        };
        everyone.push((no_base(recorded), no_base(emergency)));
        // The first permanent admission, on a day in the period the person was in service
        // (the admission day itself is not a day at risk: it ends them).
        let moved = person.first_permanent_care_home().is_some_and(|c| {
            c >= p.from && c < p.to && person.in_service(c) && person.died_on.is_none_or(|x| c < x)
        });
        care.push(no_base(u64::from(moved)));
    }
    if f.person_days > 0 {
        let pd = f.person_days as f64 / 1000.0;
        f.rate_per_1000_person_days = Some(f.falls as f64 / pd);
        let (lo, hi) = estimate::poisson_interval(f.falls, s.confidence_level);
        f.rate_interval = Some([lo / pd, hi / pd]);
    }
    let level = s.confidence_level;
    let refs = inputs.reference_rates.as_ref();
    let cohort = |k| comparison_units(inputs, k, p, s);
    let falls_everyone: Vec<Unit> = everyone.iter().map(|e| e.0).collect();
    let adm_everyone: Vec<Unit> = everyone.iter().map(|e| e.1).collect();
    let mut care_g = Gathered::default();
    for u in &care {
        care_g.add(u.events, u.days, None, 0);
    }
    FallsAndAvoided {
        falls_avoided: estimate_avoided(
            &falls,
            &falls_everyone,
            &cohort(ComparisonKind::Fall),
            refs.and_then(|r| r.falls.as_ref()),
            Baseline::Own,
            FALLS_SOURCES,
            level,
        ),
        admissions_avoided: estimate_avoided(
            &adm,
            &adm_everyone,
            &cohort(ComparisonKind::EmergencyAdmission),
            refs.and_then(|r| r.emergency_admissions.as_ref()),
            Baseline::Own,
            ADMISSIONS_SOURCES,
            level,
        ),
        care_home_admissions_avoided: estimate_avoided(
            &care_g,
            &care,
            &cohort(ComparisonKind::CareHomeAdmission),
            refs.and_then(|r| r.care_home_admissions.as_ref()),
            Baseline::None,
            CARE_HOME_SOURCES,
            level,
        ),
        falls: f,
        observed_admissions: admissions,
    }
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
    let fa = falls_and_avoided(inputs, p, s);
    Indicators {
        falls: fa.falls,
        falls_avoided: fa.falls_avoided,
        admissions_avoided: fa.admissions_avoided,
        care_home_admissions_avoided: fa.care_home_admissions_avoided,
        observed_admissions: fa.observed_admissions,
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
        let r = falls_and_avoided(
            &Inputs {
                people: vec![x],
                ..Default::default()
            },
            &p,
            &s,
        );
        let f = &r.falls;
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
        assert_eq!(r.observed_admissions, 1);
        // No comparison cohort and no reference rate: descriptive, no avoided figure.
        for a in [
            &r.falls_avoided,
            &r.admissions_avoided,
            &r.care_home_admissions_avoided,
        ] {
            assert_eq!(a.design, Design::Descriptive);
            assert!(!a.causal && a.avoided.is_none() && a.interval.is_none());
            assert_eq!(a.label, "descriptive, not causal");
        }
    }

    fn at(day: &str) -> DateTime<Utc> {
        d(day).and_hms_opt(12, 0, 0).unwrap().and_utc()
    }

    fn stay(on: &str, emergency: bool, index: bool, recorded: &str) -> Admission {
        Admission {
            admitted_on: d(on),
            emergency,
            index,
            first_recorded_at: at(recorded),
        }
    }

    /// Service from 2025-01-01, history known since 2024-01-01: the window is
    /// [2024-01-02, 2024-10-03) (365 days before start, to 90 days before: 275 days).
    /// Falls: 2024-03-01 counts; 2024-11-01 is in the washout; 2023-06-01 before the window;
    /// 2024-05-01 was first recorded after enrolment (back-filled: reported, not counted).
    /// Stays: 2024-02-01 emergency counts; 2024-04-01 elective does not; 2024-06-01 is the index
    /// stay (a reablement episode followed it) and does not; 2024-07-01 back-filled.
    #[test]
    fn baseline_window_washout_index_and_lock_by_hand() {
        let s = OutcomeSettings::default();
        let mut x = person(1, "1940-01-01");
        x.periods = vec![(d("2025-01-01"), None, Some(d("2024-01-01")))];
        assert_eq!(
            x.baseline_window(&s),
            Some((d("2024-01-02"), d("2024-10-03")))
        );
        x.recorded_falls = vec![
            (d("2024-03-01"), at("2024-03-02")),
            (d("2024-11-01"), at("2024-11-01")),
            (d("2023-06-01"), at("2023-06-01")),
            (d("2024-05-01"), at("2025-01-02")),
        ];
        x.admissions = vec![
            stay("2024-02-01", true, false, "2024-02-01"),
            stay("2024-04-01", false, false, "2024-04-01"),
            stay("2024-06-01", true, true, "2024-06-01"),
            stay("2024-07-01", true, false, "2025-03-01"),
        ];
        let (falls, adm, days, late) = x.baseline(&s).unwrap();
        assert_eq!((falls, adm, days, late), (1, 1, 275.0, (1, 1)));
        // Recorded by the end of the first day (UTC) still counts.
        x.recorded_falls[3].1 = at("2025-01-01");
        assert_eq!(x.baseline(&s).unwrap().0, 2);
        // Too little known history: no baseline.
        x.periods = vec![(d("2025-01-01"), None, Some(d("2024-12-01")))];
        assert!(x.baseline(&s).is_none());
    }

    /// Two served people and two comparison members over 2026, by hand. Served: baselines of
    /// 2 and 4 recorded falls in 275 days, 365 days at risk, 1 and 2 recorded falls in 2026:
    /// own expected 2 x 365/275 + 4 x 365/275 = 7.9636. Comparison: baselines 3 and 3 (a fall
    /// on the index date left out of the second's 4), 365 days, 4 and 2 falls: own expected
    /// 7.9636, observed 6, R = 0.7534. Expected 6.0, observed 3, avoided 3.
    #[test]
    fn falls_avoided_against_a_comparison_cohort_by_hand() {
        let s = OutcomeSettings::default();
        let p = period("2026-01-01", "2027-01-01", "2027-01-01");
        let served = |id, base: &[&str], now: &[&str]| {
            let mut x = person(id, "1940-01-01");
            x.periods = vec![(d("2025-12-01"), None, Some(d("2024-01-01")))];
            x.recorded_falls = base
                .iter()
                .chain(now)
                .map(|on| (d(on), at("2025-11-30")))
                .collect();
            // An alarm fall in the period: descriptive only.
            x.falls.push((d("2026-05-05"), false, None));
            x
        };
        let a = served(1, &["2025-01-10", "2025-02-10"], &["2026-03-01"]);
        let b = served(
            2,
            &["2025-01-10", "2025-02-10", "2025-03-10", "2025-04-10"],
            &["2026-03-01", "2026-04-01"],
        );
        let member = |falls: &[&str], index: &str| ComparisonMember {
            index_date: d(index),
            follow_from: d("2025-12-01"),
            ended_on: None,
            events: falls
                .iter()
                .map(|on| (ComparisonKind::Fall, d(on)))
                .collect(),
        };
        let inputs = Inputs {
            people: vec![a, b],
            comparison: vec![
                member(
                    &[
                        "2025-01-05",
                        "2025-02-05",
                        "2025-03-05",
                        "2026-01-05",
                        "2026-02-05",
                        "2026-03-05",
                        "2026-04-05",
                    ],
                    "2025-11-01",
                ),
                member(
                    &[
                        "2025-01-07",
                        "2025-02-07",
                        "2025-03-07",
                        "2025-04-07",
                        "2026-06-01",
                        "2026-07-01",
                    ],
                    "2025-04-07",
                ),
            ],
            ..Default::default()
        };
        let r = falls_and_avoided(&inputs, &p, &s);
        let fa = &r.falls_avoided;
        assert_eq!(fa.design, Design::ComparisonCohort);
        assert!(fa.causal);
        assert_eq!(
            (fa.observed, fa.baseline_events, fa.comparison_observed),
            (3, 6, 6)
        );
        assert_eq!(fa.comparison_people, 2);
        assert!((fa.expected.unwrap() - 6.0).abs() < 1e-9, "{fa:?}");
        assert!((fa.avoided.unwrap() - 3.0).abs() < 1e-9);
        let [lo, hi] = fa.interval.unwrap();
        assert!(lo <= 3.0 && 3.0 <= hi);
        assert_eq!(r.falls.falls, 2, "alarm falls stay in the falls figures");
        // The comparison has no admissions at all: no expected admissions, so descriptive.
        assert_eq!(r.admissions_avoided.design, Design::Descriptive);
        // Care homes need no baseline: no one moved in either group, so 0 avoided.
        assert_eq!(r.care_home_admissions_avoided.avoided, Some(0.0));
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

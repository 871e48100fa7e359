//! Payment statements from contract terms held as data (versions in `contract_terms`, owned by
//! [`super::contracts`]). Every line follows an outcome or a fixed sum; no line is priced by
//! minutes. Money is integer pence; shares are basis points (1/100 of a per cent). Models and
//! worked examples: docs/outcomes.md, "Payment".
//!
//! Each line is made of items, each with a key naming what it pays for (a plan outcome, an
//! episode, a missed visit, or the statement's period for sums that belong to a period). An
//! issued statement records its items in the payment ledger; [`statement`] leaves out an item
//! the ledger already holds (the same key, or, for a period's sum, the same line over an
//! overlapping period) and says so, so overlapping statements never pay twice.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::estimate::ReferenceRates;
use super::measures::Avoided;
use super::measures::{due_payable, timing, Period, PlanInput, Timing};
use super::{OutcomeSettings, ReablementResult};

/// Contract terms. Every part is optional; a contract combines the ones it uses. A part that
/// pays may carry `cap_pence`: the most one statement pays under it (what a cap cuts off is
/// not carried forward).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    /// Wiltshire: a share of each plan's value up front when the plan is agreed, the balance
    /// split over its payable outcomes, paid as the person confirms each and the council
    /// verifies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_upfront: Option<PlanUpfront>,
    /// A fixed sum for the period plus an outcome-dependent sum paid in proportion to the
    /// payable outcomes achieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_plus_outcome: Option<FixedPlusOutcome>,
    /// Hampshire: an hourly rate of which an outcome element (£1 of £15.20) depends on
    /// outcomes. The hours are the contracted hours, never delivered minutes; the hourly part
    /// is shown as context, the outcome element is paid in proportion to payable outcomes
    /// achieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_plus_outcome: Option<HourlyPlusOutcome>,
    /// Sutton: a base sum with a share withheld, released in proportion to outcomes achieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withhold: Option<Withhold>,
    /// Essex: a price per reablement episode ended, plus a bonus when no further support was
    /// needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reablement: Option<Reablement>,
    /// Deducted for each payable outcome not achieved by its target date: not achieved at all
    /// by `as_of`, and (unless `late_outcome_penalty_pence` sets another sum) achieved late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub unmet_outcome_penalty_pence: Option<i64>,
    /// Deducted for each payable outcome achieved after its target date, instead of the unmet
    /// penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub late_outcome_penalty_pence: Option<i64>,
    /// Deducted for each required (scheduled) visit missed of a person funded under the
    /// contract: no visit started, and not cancelled before it was due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub missed_visit_penalty_pence: Option<i64>,
    /// The most one statement deducts for the penalties together (unmet, late, missed visits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub penalty_cap_pence: Option<i64>,
    /// Paid for each payable outcome achieved early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub early_outcome_reward_pence: Option<i64>,
    /// The most one statement pays in early rewards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub early_outcome_reward_cap_pence: Option<i64>,
    /// A share of the savings from falls, emergency admissions and care-home admissions
    /// avoided, priced on the lower bound of a causal estimate only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_savings: Option<SharedSavings>,
    /// Events per person-year expected without the service, each with its 95% interval and
    /// source: the comparison for the avoided figures of this contract's reports when the
    /// commissioner has recorded no comparison cohort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_rates: Option<ReferenceRates>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanUpfront {
    #[schema(maximum = 10000)]
    pub upfront_bp: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub cap_pence: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixedPlusOutcome {
    #[schema(minimum = 0)]
    pub fixed_pence: i64,
    #[schema(minimum = 0)]
    pub outcome_pence: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub cap_pence: Option<i64>,
}

/// The hourly rate with an outcome element. Hours come from this term
/// (`contracted_hours_per_week`), set by the commissioner: not from delivered minutes (which
/// would pay for time) nor from scheduled visit windows (which the paid party sets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HourlyPlusOutcome {
    /// The whole hourly rate (Hampshire: 1520).
    #[schema(minimum = 0)]
    pub hourly_rate_pence: i64,
    /// The part of it that depends on outcomes (Hampshire: 100); at most the rate.
    #[schema(minimum = 0)]
    pub outcome_element_pence: i64,
    /// Hours a week the contract buys; a period has this x its days / 7.
    #[schema(minimum = 0, maximum = 1000000)]
    pub contracted_hours_per_week: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub cap_pence: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Withhold {
    #[schema(minimum = 0)]
    pub base_pence: i64,
    #[schema(maximum = 10000)]
    pub withheld_bp: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub cap_pence: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reablement {
    #[schema(minimum = 0)]
    pub per_episode_pence: i64,
    #[schema(minimum = 0)]
    pub no_further_support_bonus_pence: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub cap_pence: Option<i64>,
}

/// Kept so that terms stored before savings were priced on the lower bound only still read;
/// `estimate` is refused for new terms and priced as `lower_bound`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SavingsBasis {
    /// The lower end of the interval: only what the data show at the confidence level.
    #[default]
    LowerBound,
    Estimate,
}

/// Each event is priced once, under its own basis: `fall_cost_pence` is the cost of a fall
/// short of an admission (ambulance, A&E, GP), because an admission a fall would have caused
/// is counted among the emergency admissions avoided; `admission_cost_pence` is the cost of
/// the hospital stay only, because a care-home placement that would have followed is counted
/// among the care-home admissions avoided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedSavings {
    #[schema(maximum = 10000)]
    pub share_bp: u32,
    /// A fall short of an admission.
    #[schema(minimum = 0)]
    pub fall_cost_pence: i64,
    /// An emergency admission (the stay only).
    #[schema(minimum = 0)]
    pub admission_cost_pence: i64,
    /// A permanent care-home admission; none: not a basis of savings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub care_home_admission_cost_pence: Option<i64>,
    #[serde(default)]
    pub basis: SavingsBasis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub cap_pence: Option<i64>,
}

impl Terms {
    /// Checks the terms, naming the first bad field (`terms.<path>`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bp = |v: u32, f: &str| {
            (v <= 10_000)
                .then_some(())
                .ok_or((format!("terms.{f}"), "basis points, 0 to 10000".to_string()))
        };
        let money = |v: i64, f: &str| {
            (v >= 0)
                .then_some(())
                .ok_or((format!("terms.{f}"), "pence, not negative".to_string()))
        };
        let opt = |v: Option<i64>, f: &str| v.map_or(Ok(()), |v| money(v, f));
        if let Some(t) = &self.plan_upfront {
            bp(t.upfront_bp, "plan_upfront.upfront_bp")?;
            opt(t.cap_pence, "plan_upfront.cap_pence")?;
        }
        if let Some(t) = &self.fixed_plus_outcome {
            money(t.fixed_pence, "fixed_plus_outcome.fixed_pence")?;
            money(t.outcome_pence, "fixed_plus_outcome.outcome_pence")?;
            opt(t.cap_pence, "fixed_plus_outcome.cap_pence")?;
        }
        if let Some(t) = &self.hourly_plus_outcome {
            money(t.hourly_rate_pence, "hourly_plus_outcome.hourly_rate_pence")?;
            money(
                t.outcome_element_pence,
                "hourly_plus_outcome.outcome_element_pence",
            )?;
            if t.outcome_element_pence > t.hourly_rate_pence {
                return Err((
                    "terms.hourly_plus_outcome.outcome_element_pence".into(),
                    "part of the hourly rate: at most hourly_rate_pence".into(),
                ));
            }
            let h = t.contracted_hours_per_week;
            if !(h.is_finite() && (0.0..=1_000_000.0).contains(&h)) {
                return Err((
                    "terms.hourly_plus_outcome.contracted_hours_per_week".into(),
                    "hours a week, 0 to 1000000".into(),
                ));
            }
            opt(t.cap_pence, "hourly_plus_outcome.cap_pence")?;
        }
        if let Some(t) = &self.withhold {
            money(t.base_pence, "withhold.base_pence")?;
            bp(t.withheld_bp, "withhold.withheld_bp")?;
            opt(t.cap_pence, "withhold.cap_pence")?;
        }
        if let Some(t) = &self.reablement {
            money(t.per_episode_pence, "reablement.per_episode_pence")?;
            money(
                t.no_further_support_bonus_pence,
                "reablement.no_further_support_bonus_pence",
            )?;
            opt(t.cap_pence, "reablement.cap_pence")?;
        }
        opt(
            self.unmet_outcome_penalty_pence,
            "unmet_outcome_penalty_pence",
        )?;
        opt(
            self.late_outcome_penalty_pence,
            "late_outcome_penalty_pence",
        )?;
        opt(
            self.missed_visit_penalty_pence,
            "missed_visit_penalty_pence",
        )?;
        opt(self.penalty_cap_pence, "penalty_cap_pence")?;
        opt(
            self.early_outcome_reward_pence,
            "early_outcome_reward_pence",
        )?;
        opt(
            self.early_outcome_reward_cap_pence,
            "early_outcome_reward_cap_pence",
        )?;
        if let Some(r) = &self.reference_rates {
            r.check()
                .map_err(|(f, e)| (format!("terms.reference_rates.{f}"), e.to_string()))?;
        }
        if let Some(t) = &self.shared_savings {
            bp(t.share_bp, "shared_savings.share_bp")?;
            money(t.fall_cost_pence, "shared_savings.fall_cost_pence")?;
            money(
                t.admission_cost_pence,
                "shared_savings.admission_cost_pence",
            )?;
            opt(
                t.care_home_admission_cost_pence,
                "shared_savings.care_home_admission_cost_pence",
            )?;
            if t.basis == SavingsBasis::Estimate {
                return Err((
                    "terms.shared_savings.basis".into(),
                    "savings are priced on the lower bound only".into(),
                ));
            }
            opt(t.cap_pence, "shared_savings.cap_pence")?;
        }
        Ok(())
    }
}

/// One thing a line pays or deducts, named by a key the ledger keeps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// `plan/{id}/upfront`, `plan_outcome/{id}/balance|penalty|early_reward`,
    /// `episode/{record id}/price|no_further_support_bonus`,
    /// `scheduled_visit/{id}/missed_penalty`; or `period/{code}/{from}/{to}` for a sum that
    /// belongs to the statement's period.
    pub key: String,
    pub amount_pence: i64,
}

impl Item {
    fn new(key: String, amount_pence: i64) -> Self {
        Self { key, amount_pence }
    }

    /// A sum belonging to a period: it overlaps any period of the same line.
    pub fn per_period(&self) -> bool {
        self.key.starts_with("period/")
    }
}

/// One line of a statement: the sum of its items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub code: &'static str,
    /// The part of the terms it comes from (what a cap applies to).
    pub term: &'static str,
    pub description: String,
    /// What the line counts (plans, outcomes, episodes, visits, events avoided, contracted
    /// hours); never minutes.
    pub quantity: f64,
    pub amount_pence: i64,
    pub items: Vec<Item>,
}

/// Shown beside a statement, never paid by it (the hourly part of an hourly rate).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextLine {
    pub code: &'static str,
    pub label: &'static str,
    pub description: String,
    pub quantity: f64,
    pub amount_pence: i64,
}

/// An item a statement does not pay because an issued statement already did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeftOut {
    pub code: &'static str,
    pub key: String,
    pub amount_pence: i64,
    pub statement_id: i64,
    pub reason: String,
}

/// What an issued statement recorded in the ledger (one row of `payment_ledger`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issued {
    pub statement_id: i64,
    pub code: String,
    pub key: String,
    pub period_from: NaiveDate,
    pub period_to: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    pub lines: Vec<Line>,
    pub context: Vec<ContextLine>,
    pub left_out: Vec<LeftOut>,
    pub total_pence: i64,
}

/// What a statement reads besides the terms.
pub struct StatementInputs<'a> {
    pub plans: &'a [PlanInput],
    /// Reablement episodes under the contract that ended in the period: (record id, result).
    pub episode_results: &'a [(i64, String)],
    /// Required visits missed, of people funded under the contract on the visit's day, in the
    /// period (scheduled visit ids; `evv::figures::missed_visits`).
    pub missed_visits: &'a [i64],
    pub falls_avoided: &'a Avoided,
    /// Emergency admissions only.
    pub admissions_avoided: &'a Avoided,
    /// None until the indicators estimate it: then it is not priced.
    pub care_home_admissions_avoided: Option<&'a Avoided>,
}

const DESCRIPTIVE: &str = "descriptive estimate, not priced";

/// The lower bound a shared saving may be priced on, or why there is none. Only a causal
/// design (a concurrent comparison cohort, or a reference rate that is a contract term with
/// its uncertainty) whose interval excludes zero is priced.
/// Without a comparison the estimate is descriptive (no interval), and nothing is priced.
pub fn payable_lower_bound(a: &Avoided) -> Result<f64, &'static str> {
    lower_bound_if_causal(a.causal, a.interval)
}

/// The rule of [`payable_lower_bound`], given what an estimate says of its design.
pub fn lower_bound_if_causal(
    causal: bool,
    interval: Option<[f64; 2]>,
) -> Result<f64, &'static str> {
    match interval {
        _ if !causal => Err(DESCRIPTIVE),
        None => Err(DESCRIPTIVE),
        Some([lo, _]) if lo > 0.0 => Ok(lo),
        Some(_) => Err("interval includes zero, not priced"),
    }
}

fn share_of(pence: i64, bp: u32) -> i64 {
    (i128::from(pence) * i128::from(bp) / 10_000) as i64
}

fn prorata(pence: i64, num: u64, den: u64) -> i64 {
    if den == 0 {
        return 0;
    }
    (i128::from(pence) * i128::from(num) / i128::from(den)) as i64
}

fn per_item(code: &'static str, term: &'static str, description: String, items: Vec<Item>) -> Line {
    Line {
        code,
        term,
        description,
        quantity: items.len() as f64,
        amount_pence: items.iter().map(|i| i.amount_pence).sum(),
        items,
    }
}

fn period_key(code: &str, p: &Period) -> String {
    format!("period/{code}/{}/{}", p.from, p.to)
}

fn per_period(
    code: &'static str,
    term: &'static str,
    description: String,
    quantity: f64,
    amount_pence: i64,
    p: &Period,
) -> Line {
    Line {
        code,
        term,
        description,
        quantity,
        amount_pence,
        items: vec![Item::new(period_key(code, p), amount_pence)],
    }
}

fn pounds(pence: i64) -> String {
    format!("£{}.{:02}", pence / 100, pence % 100)
}

/// The lines the terms give for the period, before the ledger and the caps.
fn lines(
    terms: &Terms,
    inputs: &StatementInputs<'_>,
    p: &Period,
    s: &OutcomeSettings,
) -> (Vec<Line>, Vec<ContextLine>) {
    let mut lines = Vec::new();
    let mut context = Vec::new();
    let in_period = |d: NaiveDate| d >= p.from && d < p.to && d <= p.as_of;
    let due: Vec<_> = due_payable(inputs.plans, p)
        .map(|(_, o)| (o, timing(o, p.as_of, s.early_margin_days)))
        .collect();
    let achieved = due
        .iter()
        .filter(|(_, t)| *t != Timing::NotAchieved)
        .count() as u64;
    let due_n = due.len() as u64;
    let outcome_items = |which: Timing, what: &str, pence: i64| -> Vec<Item> {
        due.iter()
            .filter(|(_, t)| *t == which)
            .map(|(o, _)| Item::new(format!("plan_outcome/{}/{what}", o.id), pence))
            .collect()
    };

    if let Some(t) = &terms.plan_upfront {
        let (mut upfront, mut balance) = (Vec::new(), Vec::new());
        for plan in inputs.plans {
            let Some(agreed) = plan.agreed_on else {
                continue;
            };
            let up = share_of(plan.value_pence, t.upfront_bp);
            if in_period(agreed) {
                upfront.push(Item::new(format!("plan/{}/upfront", plan.plan_id), up));
            }
            let rest = plan.value_pence - up;
            let payable: Vec<_> = plan.outcomes.iter().filter(|o| o.payable).collect();
            let n = payable.len() as i64;
            for (i, o) in payable.iter().enumerate() {
                if o.verified_achievement().is_some_and(in_period) {
                    // Split the balance exactly: the parts add up to it to the penny.
                    let i = i as i64;
                    let part = rest * (i + 1) / n - rest * i / n;
                    balance.push(Item::new(format!("plan_outcome/{}/balance", o.id), part));
                }
            }
        }
        lines.push(per_item(
            "plan_upfront",
            "plan_upfront",
            format!(
                "{}% of the value of plans agreed in the period",
                f64::from(t.upfront_bp) / 100.0
            ),
            upfront,
        ));
        lines.push(per_item(
            "plan_outcomes_achieved",
            "plan_upfront",
            "balance of plan value for payable outcomes the person confirmed and the council verified"
                .into(),
            balance,
        ));
    }
    if let Some(t) = &terms.fixed_plus_outcome {
        let term = "fixed_plus_outcome";
        lines.push(per_period(
            "fixed",
            term,
            "fixed sum for the period".into(),
            1.0,
            t.fixed_pence,
            p,
        ));
        lines.push(per_period(
            "outcome_part",
            term,
            format!("outcome-dependent sum x payable outcomes achieved {achieved} / due {due_n}"),
            achieved as f64,
            prorata(t.outcome_pence, achieved, due_n),
            p,
        ));
    }
    if let Some(t) = &terms.hourly_plus_outcome {
        // Contracted hours for the period: hours a week x days / 7.
        let days = (p.to - p.from).num_days() as f64;
        let hours = t.contracted_hours_per_week * days / 7.0;
        let base = t.hourly_rate_pence - t.outcome_element_pence;
        context.push(ContextLine {
            code: "hourly_part",
            label: "context, not paid by this statement",
            description: format!(
                "{} an hour (of {}) x {hours:.2} contracted hours ({} a week x {days} days / 7)",
                pounds(base),
                pounds(t.hourly_rate_pence),
                t.contracted_hours_per_week
            ),
            quantity: hours,
            amount_pence: (hours * base as f64).round() as i64,
        });
        let element = (hours * t.outcome_element_pence as f64).round() as i64;
        lines.push(per_period(
            "hourly_outcome_element",
            "hourly_plus_outcome",
            format!(
                "{} an hour x {hours:.2} contracted hours = {} x payable outcomes achieved {achieved} / due {due_n}",
                pounds(t.outcome_element_pence),
                pounds(element)
            ),
            hours,
            prorata(element, achieved, due_n),
            p,
        ));
    }
    if let Some(t) = &terms.withhold {
        let withheld = share_of(t.base_pence, t.withheld_bp);
        lines.push(per_period(
            "base_paid",
            "withhold",
            format!(
                "base less the {}% withheld against outcomes",
                f64::from(t.withheld_bp) / 100.0
            ),
            1.0,
            t.base_pence - withheld,
            p,
        ));
        lines.push(per_period(
            "withheld_released",
            "withhold",
            format!("withheld share x payable outcomes achieved {achieved} / due {due_n}"),
            achieved as f64,
            prorata(withheld, achieved, due_n),
            p,
        ));
    }
    if let Some(t) = &terms.reablement {
        let episodes = inputs.episode_results;
        lines.push(per_item(
            "reablement_episodes",
            "reablement",
            "set price per reablement episode ended in the period".into(),
            episodes
                .iter()
                .map(|(id, _)| Item::new(format!("episode/{id}/price"), t.per_episode_pence))
                .collect(),
        ));
        lines.push(per_item(
            "no_further_support_bonus",
            "reablement",
            "bonus per episode ending with no further support".into(),
            episodes
                .iter()
                .filter(|(_, r)| r.as_str() == ReablementResult::NoFurtherSupport.as_str())
                .map(|(id, _)| {
                    Item::new(
                        format!("episode/{id}/no_further_support_bonus"),
                        t.no_further_support_bonus_pence,
                    )
                })
                .collect(),
        ));
    }
    // Both penalties of an outcome share its key: it is penalised once, unmet or late.
    if let Some(pen) = terms.unmet_outcome_penalty_pence {
        lines.push(per_item(
            "unmet_outcome_penalty",
            "penalties",
            "penalty per payable outcome not achieved".into(),
            outcome_items(Timing::NotAchieved, "penalty", -pen),
        ));
    }
    if let Some(pen) = terms
        .late_outcome_penalty_pence
        .or(terms.unmet_outcome_penalty_pence)
    {
        lines.push(per_item(
            "late_outcome_penalty",
            "penalties",
            "penalty per payable outcome achieved after its target date".into(),
            outcome_items(Timing::Late, "penalty", -pen),
        ));
    }
    if let Some(pen) = terms.missed_visit_penalty_pence {
        lines.push(per_item(
            "missed_visit_penalty",
            "penalties",
            "penalty per required visit missed (no visit started; not cancelled before due)".into(),
            inputs
                .missed_visits
                .iter()
                .map(|id| Item::new(format!("scheduled_visit/{id}/missed_penalty"), -pen))
                .collect(),
        ));
    }
    if let Some(reward) = terms.early_outcome_reward_pence {
        lines.push(per_item(
            "early_outcome_reward",
            "early_outcome_reward",
            format!(
                "reward per payable outcome achieved at least {} days early",
                s.early_margin_days
            ),
            outcome_items(Timing::Early, "early_reward", reward),
        ));
    }
    if let Some(t) = &terms.shared_savings {
        let bases = [
            (
                "shared_savings_falls",
                "falls avoided (priced short of an admission)",
                Some(inputs.falls_avoided),
                Some(t.fall_cost_pence),
            ),
            (
                "shared_savings_emergency_admissions",
                "emergency admissions avoided",
                Some(inputs.admissions_avoided),
                Some(t.admission_cost_pence),
            ),
            (
                "shared_savings_care_home_admissions",
                "care-home admissions avoided",
                inputs.care_home_admissions_avoided,
                t.care_home_admission_cost_pence,
            ),
        ];
        for (code, what, estimate, cost) in bases {
            let Some(cost) = cost else { continue };
            let bound = estimate.map_or(Err("no estimate, not priced"), payable_lower_bound);
            lines.push(shared_saving(code, what, bound, cost, t.share_bp, p));
        }
    }
    (lines, context)
}

/// One basis of shared savings: share x lower bound x cost, or nothing and why.
fn shared_saving(
    code: &'static str,
    what: &str,
    bound: Result<f64, &'static str>,
    cost_pence: i64,
    share_bp: u32,
    p: &Period,
) -> Line {
    let pct = f64::from(share_bp) / 100.0;
    let (quantity, amount, description) = match bound {
        Ok(lower) => (
            lower,
            (lower * cost_pence as f64 * f64::from(share_bp) / 10_000.0).round() as i64,
            format!(
                "{pct}% x {what}, lower bound {lower:.2} x {}",
                pounds(cost_pence)
            ),
        ),
        Err(why) => (0.0, 0, format!("{pct}% x {what}: {why}")),
    };
    per_period(code, "shared_savings", description, quantity, amount, p)
}

fn cap_of(terms: &Terms, term: &str) -> Option<i64> {
    match term {
        "plan_upfront" => terms.plan_upfront.as_ref()?.cap_pence,
        "fixed_plus_outcome" => terms.fixed_plus_outcome.as_ref()?.cap_pence,
        "hourly_plus_outcome" => terms.hourly_plus_outcome.as_ref()?.cap_pence,
        "withhold" => terms.withhold.as_ref()?.cap_pence,
        "reablement" => terms.reablement.as_ref()?.cap_pence,
        "early_outcome_reward" => terms.early_outcome_reward_cap_pence,
        "shared_savings" => terms.shared_savings.as_ref()?.cap_pence,
        "penalties" => terms.penalty_cap_pence,
        _ => None,
    }
}

/// The statement for the period: the terms' lines, less what the ledger (`issued`, the items
/// of statements already issued for the contract) holds, then capped per term.
pub fn statement(
    terms: &Terms,
    inputs: &StatementInputs<'_>,
    p: &Period,
    s: &OutcomeSettings,
    issued: &[Issued],
) -> Statement {
    let (mut lines, context) = lines(terms, inputs, p, s);
    let mut left_out = Vec::new();
    for line in &mut lines {
        let code = line.code;
        line.items.retain(|item| {
            let before = issued.iter().find(|i| {
                if item.per_period() {
                    i.code == code && i.period_from < p.to && p.from < i.period_to
                } else {
                    i.key == item.key
                }
            });
            let Some(i) = before else { return true };
            left_out.push(LeftOut {
                code,
                key: item.key.clone(),
                amount_pence: item.amount_pence,
                statement_id: i.statement_id,
                reason: if item.per_period() {
                    format!(
                        "statement {} already settled this line for {} to {}, which overlaps",
                        i.statement_id, i.period_from, i.period_to
                    )
                } else {
                    format!(
                        "already in statement {} ({} to {})",
                        i.statement_id, i.period_from, i.period_to
                    )
                },
            });
            false
        });
        if !line.items.first().is_some_and(Item::per_period) {
            line.quantity = line.items.len() as f64;
        }
        line.amount_pence = line.items.iter().map(|i| i.amount_pence).sum();
    }
    // Caps, per term, on what this statement pays (deducts, for penalties).
    let mut by_term: BTreeMap<&'static str, i64> = BTreeMap::new();
    for l in &lines {
        *by_term.entry(l.term).or_default() += l.amount_pence;
    }
    for (term, sum) in by_term {
        let Some(cap) = cap_of(terms, term) else {
            continue;
        };
        let over = if term == "penalties" {
            (-sum - cap).max(0)
        } else {
            -(sum - cap).max(0)
        };
        if over == 0 {
            continue;
        }
        let code: &'static str = match term {
            "penalties" => "penalty_cap",
            "plan_upfront" => "plan_upfront_cap",
            "fixed_plus_outcome" => "fixed_plus_outcome_cap",
            "hourly_plus_outcome" => "hourly_plus_outcome_cap",
            "withhold" => "withhold_cap",
            "reablement" => "reablement_cap",
            "early_outcome_reward" => "early_outcome_reward_cap",
            _ => "shared_savings_cap",
        };
        lines.push(per_period(
            code,
            term,
            format!(
                "{term} capped at {} a statement (not carried forward)",
                pounds(cap)
            ),
            1.0,
            over,
            p,
        ));
    }
    let total_pence = lines.iter().map(|l| l.amount_pence).sum();
    Statement {
        lines,
        context,
        left_out,
        total_pence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcomes::measures::PlanOutcome;
    use chrono::NaiveDate;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// The first quarter of 2026: 90 days.
    fn period() -> Period {
        Period {
            from: d("2026-01-01"),
            to: d("2026-04-01"),
            as_of: d("2026-04-01"),
            known_at: chrono::Utc::now(),
        }
    }

    fn outcome(id: i64, payable: bool, target: &str, achieved: Option<&str>) -> PlanOutcome {
        PlanOutcome {
            id,
            payable,
            kind: "reablement".into(),
            target_date: d(target),
            achieved_on: achieved.map(d),
            verified: true,
        }
    }

    /// A plan worth £1,000.00 agreed 10 Jan, three payable outcomes and one not payable:
    /// early (1 Feb, target 1 Mar), on time (1 Mar), not achieved (target 15 Mar).
    fn plans() -> Vec<PlanInput> {
        vec![PlanInput {
            plan_id: 1,
            person_id: 1,
            contract_id: Some(1),
            value_pence: 100_000,
            agreed_on: Some(d("2026-01-10")),
            outcomes: vec![
                outcome(1, true, "2026-03-01", Some("2026-02-01")),
                outcome(2, true, "2026-03-01", Some("2026-03-01")),
                outcome(3, true, "2026-03-15", None),
                outcome(4, false, "2026-03-15", Some("2026-02-01")),
            ],
        }]
    }

    struct Run<'a> {
        plans: Vec<PlanInput>,
        results: Vec<(i64, String)>,
        missed: Vec<i64>,
        period: Period,
        issued: &'a [Issued],
    }

    impl Default for Run<'_> {
        fn default() -> Self {
            Self {
                plans: plans(),
                results: Vec::new(),
                missed: Vec::new(),
                period: period(),
                issued: &[],
            }
        }
    }

    impl Run<'_> {
        fn go(&self, terms: &Terms) -> Statement {
            let none = Avoided::descriptive(0.95, "");
            let inputs = StatementInputs {
                plans: &self.plans,
                episode_results: &self.results,
                missed_visits: &self.missed,
                falls_avoided: &none,
                admissions_avoided: &none,
                care_home_admissions_avoided: None,
            };
            statement(
                terms,
                &inputs,
                &self.period,
                &OutcomeSettings::default(),
                self.issued,
            )
        }
    }

    fn run(terms: Terms, results: &[&str]) -> Vec<Line> {
        Run {
            results: results
                .iter()
                .enumerate()
                .map(|(i, s)| (i as i64 + 1, s.to_string()))
                .collect(),
            ..Default::default()
        }
        .go(&terms)
        .lines
    }

    fn amounts(lines: &[Line]) -> Vec<(&str, i64)> {
        lines.iter().map(|l| (l.code, l.amount_pence)).collect()
    }

    /// What issuing `st` for `p` as statement `id` records in the ledger.
    fn issue(st: &Statement, p: &Period, id: i64) -> Vec<Issued> {
        st.lines
            .iter()
            .flat_map(|l| {
                l.items.iter().map(move |i| Issued {
                    statement_id: id,
                    code: l.code.to_string(),
                    key: i.key.clone(),
                    period_from: p.from,
                    period_to: p.to,
                })
            })
            .collect()
    }

    #[test]
    fn upfront_twenty_balance_eighty_on_outcomes() {
        // 20% of £1,000 = £200 up front; £800 over 3 payable outcomes: 26666 + 26667 (+ 26667
        // unpaid), two achieved.
        let lines = run(
            Terms {
                plan_upfront: Some(PlanUpfront {
                    upfront_bp: 2000,
                    cap_pence: None,
                }),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(
            amounts(&lines),
            vec![
                ("plan_upfront", 20_000),
                ("plan_outcomes_achieved", 26_666 + 26_667)
            ]
        );
        assert_eq!(
            lines[1]
                .items
                .iter()
                .map(|i| i.key.as_str())
                .collect::<Vec<_>>(),
            ["plan_outcome/1/balance", "plan_outcome/2/balance"]
        );
    }

    #[test]
    fn a_confirmed_achievement_the_council_has_not_verified_is_not_paid() {
        // As above, but outcome 2 (on time) is confirmed and not verified: only outcome 1's
        // part of the balance (26666), and no early reward beyond outcome 1.
        let mut plans = plans();
        plans[0].outcomes[1].verified = false;
        let terms = Terms {
            plan_upfront: Some(PlanUpfront {
                upfront_bp: 2000,
                cap_pence: None,
            }),
            ..Default::default()
        };
        let lines = Run {
            plans,
            ..Default::default()
        }
        .go(&terms)
        .lines;
        assert_eq!(
            amounts(&lines),
            vec![("plan_upfront", 20_000), ("plan_outcomes_achieved", 26_666)]
        );
    }

    #[test]
    fn fixed_plus_outcome_part() {
        // £14.20 fixed, £1.00 on outcomes; 2 of 3 achieved -> 66p.
        let lines = run(
            Terms {
                fixed_plus_outcome: Some(FixedPlusOutcome {
                    fixed_pence: 1420,
                    outcome_pence: 100,
                    cap_pence: None,
                }),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(amounts(&lines), vec![("fixed", 1420), ("outcome_part", 66)]);
    }

    /// Hampshire: £15.20 an hour, £1.00 of it on outcomes; 70 contracted hours a week over the
    /// 90-day quarter = 900 hours. The hourly part, 900 x £14.20 = £12,780.00, is context only;
    /// the outcome element, 900 x £1.00 = £900.00, pays 2 of 3 outcomes achieved: £600.00.
    #[test]
    fn hourly_rate_plus_outcome_element() {
        let st = Run::default().go(&Terms {
            hourly_plus_outcome: Some(HourlyPlusOutcome {
                hourly_rate_pence: 1520,
                outcome_element_pence: 100,
                contracted_hours_per_week: 70.0,
                cap_pence: None,
            }),
            ..Default::default()
        });
        assert_eq!(amounts(&st.lines), vec![("hourly_outcome_element", 60_000)]);
        assert_eq!(st.lines[0].quantity, 900.0);
        assert_eq!(st.context.len(), 1);
        assert_eq!(
            (st.context[0].code, st.context[0].amount_pence),
            ("hourly_part", 1_278_000)
        );
        assert!(st.context[0].label.contains("context"));
        // The context is not paid.
        assert_eq!(st.total_pence, 60_000);
        let bad = Terms {
            hourly_plus_outcome: Some(HourlyPlusOutcome {
                hourly_rate_pence: 100,
                outcome_element_pence: 101,
                contracted_hours_per_week: 1.0,
                cap_pence: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().0,
            "terms.hourly_plus_outcome.outcome_element_pence"
        );
    }

    #[test]
    fn seventy_five_paid_twenty_five_withheld() {
        // £10,000 base: £7,500 paid, £2,500 withheld, 2/3 released = £1,666.66.
        let lines = run(
            Terms {
                withhold: Some(Withhold {
                    base_pence: 1_000_000,
                    withheld_bp: 2500,
                    cap_pence: None,
                }),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(
            amounts(&lines),
            vec![("base_paid", 750_000), ("withheld_released", 166_666)]
        );
    }

    #[test]
    fn reablement_price_and_bonus() {
        let lines = run(
            Terms {
                reablement: Some(Reablement {
                    per_episode_pence: 150_000,
                    no_further_support_bonus_pence: 30_000,
                    cap_pence: None,
                }),
                ..Default::default()
            },
            &["no_further_support", "more_support", "no_further_support"],
        );
        assert_eq!(
            amounts(&lines),
            vec![
                ("reablement_episodes", 450_000),
                ("no_further_support_bonus", 60_000)
            ]
        );
        assert_eq!(lines[1].items[1].key, "episode/3/no_further_support_bonus");
    }

    #[test]
    fn penalty_and_early_reward() {
        let lines = run(
            Terms {
                unmet_outcome_penalty_pence: Some(5_000),
                early_outcome_reward_pence: Some(2_500),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(
            amounts(&lines),
            vec![
                ("unmet_outcome_penalty", -5_000),
                ("late_outcome_penalty", 0),
                ("early_outcome_reward", 2_500)
            ]
        );
    }

    /// The unmet penalty covers outcomes achieved after their target ("not achieved by its
    /// target date"), unless the terms set a late penalty of their own.
    #[test]
    fn late_outcomes_are_penalised_too() {
        let mut plans = plans();
        // Outcome 5: target 1 Mar, achieved 20 Mar: late.
        plans[0]
            .outcomes
            .push(outcome(5, true, "2026-03-01", Some("2026-03-20")));
        let r = Run {
            plans,
            ..Default::default()
        };
        let st = r.go(&Terms {
            unmet_outcome_penalty_pence: Some(5_000),
            ..Default::default()
        });
        assert_eq!(
            amounts(&st.lines),
            vec![
                ("unmet_outcome_penalty", -5_000),
                ("late_outcome_penalty", -5_000)
            ]
        );
        assert_eq!(st.lines[1].items[0].key, "plan_outcome/5/penalty");
        let st = r.go(&Terms {
            unmet_outcome_penalty_pence: Some(5_000),
            late_outcome_penalty_pence: Some(2_000),
            ..Default::default()
        });
        assert_eq!(
            amounts(&st.lines),
            vec![
                ("unmet_outcome_penalty", -5_000),
                ("late_outcome_penalty", -2_000)
            ]
        );
        assert_eq!(st.total_pence, -7_000);
    }

    /// Three missed visits at £20.00 and one unmet outcome at £50.00 deduct £110.00; a penalty
    /// cap of £80.00 gives back £30.00.
    #[test]
    fn missed_visit_penalty_under_the_penalty_cap() {
        let r = Run {
            missed: vec![11, 12, 13],
            ..Default::default()
        };
        let mut terms = Terms {
            unmet_outcome_penalty_pence: Some(5_000),
            missed_visit_penalty_pence: Some(2_000),
            ..Default::default()
        };
        let st = r.go(&terms);
        assert_eq!(
            amounts(&st.lines),
            vec![
                ("unmet_outcome_penalty", -5_000),
                ("late_outcome_penalty", 0),
                ("missed_visit_penalty", -6_000)
            ]
        );
        assert_eq!(st.lines[2].quantity, 3.0);
        assert_eq!(
            st.lines[2].items[0].key,
            "scheduled_visit/11/missed_penalty"
        );
        terms.penalty_cap_pence = Some(8_000);
        let st = r.go(&terms);
        assert_eq!(amounts(&st.lines)[3], ("penalty_cap", 3_000));
        assert_eq!(st.total_pence, -8_000);
        // Under the cap: no cap line.
        terms.penalty_cap_pence = Some(20_000);
        assert_eq!(r.go(&terms).lines.len(), 3);
    }

    /// Caps limit what one statement pays under a term: the upfront term gives £200.00 +
    /// £533.33; capped at £500.00, £233.33 is cut. The reward is capped on its own.
    #[test]
    fn caps_per_term() {
        let st = Run::default().go(&Terms {
            plan_upfront: Some(PlanUpfront {
                upfront_bp: 2000,
                cap_pence: Some(50_000),
            }),
            early_outcome_reward_pence: Some(2_500),
            early_outcome_reward_cap_pence: Some(1_000),
            reablement: Some(Reablement {
                per_episode_pence: 150_000,
                no_further_support_bonus_pence: 0,
                cap_pence: Some(1),
            }),
            ..Default::default()
        });
        assert_eq!(
            amounts(&st.lines),
            vec![
                ("plan_upfront", 20_000),
                ("plan_outcomes_achieved", 53_333),
                ("reablement_episodes", 0),
                ("no_further_support_bonus", 0),
                ("early_outcome_reward", 2_500),
                ("early_outcome_reward_cap", -1_500),
                ("plan_upfront_cap", -23_333),
            ]
        );
        assert_eq!(st.total_pence, 50_000 + 1_000);
    }

    /// Overlapping statements never pay twice: after Q1 was issued, a statement for February
    /// to April pays only what Q1 did not (an episode ended in April; the outcome achieved
    /// early is not rewarded again), leaves out the fixed sum of an overlapping period, and
    /// says why. An outcome penalised as unmet in Q1 and achieved late since is not penalised
    /// again.
    #[test]
    fn the_ledger_keeps_overlapping_statements_from_paying_twice() {
        let terms = Terms {
            plan_upfront: Some(PlanUpfront {
                upfront_bp: 2000,
                cap_pence: None,
            }),
            fixed_plus_outcome: Some(FixedPlusOutcome {
                fixed_pence: 1420,
                outcome_pence: 100,
                cap_pence: None,
            }),
            reablement: Some(Reablement {
                per_episode_pence: 150_000,
                no_further_support_bonus_pence: 0,
                cap_pence: None,
            }),
            unmet_outcome_penalty_pence: Some(5_000),
            early_outcome_reward_pence: Some(2_500),
            ..Default::default()
        };
        let q1 = Run {
            results: vec![(7, "more_support".into())],
            ..Default::default()
        };
        let first = q1.go(&terms);
        assert_eq!(
            first.total_pence,
            20_000 + 53_333 + 1420 + 66 + 150_000 - 5_000 + 2_500
        );
        let ledger = issue(&first, &q1.period, 1);

        // Later: outcome 3 achieved late (20 Mar), episode 8 ended in April.
        let mut plans = plans();
        plans[0].outcomes[2].achieved_on = Some(d("2026-03-20"));
        let feb_apr = Period {
            from: d("2026-02-01"),
            to: d("2026-05-01"),
            as_of: d("2026-05-01"),
            known_at: chrono::Utc::now(),
        };
        let second = Run {
            plans,
            results: vec![(7, "more_support".into()), (8, "same_support".into())],
            period: feb_apr,
            issued: &ledger,
            ..Default::default()
        }
        .go(&terms);
        assert_eq!(
            amounts(&second.lines),
            vec![
                ("plan_upfront", 0),
                // Outcome 3's share of the balance: paid now, once.
                ("plan_outcomes_achieved", 26_667),
                ("fixed", 0),
                ("outcome_part", 0),
                ("reablement_episodes", 150_000),
                ("no_further_support_bonus", 0),
                ("unmet_outcome_penalty", 0),
                ("late_outcome_penalty", 0),
                ("early_outcome_reward", 0),
            ]
        );
        let left: Vec<&str> = second.left_out.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(
            left,
            [
                "plan_outcome/1/balance",
                "plan_outcome/2/balance",
                "period/fixed/2026-02-01/2026-05-01",
                "period/outcome_part/2026-02-01/2026-05-01",
                "episode/7/price",
                "plan_outcome/3/penalty",
                "plan_outcome/1/early_reward",
            ]
        );
        assert!(second.left_out.iter().all(|l| l.statement_id == 1));
        assert!(second.left_out[2].reason.contains("overlaps"));
        assert_eq!(second.total_pence, 26_667 + 150_000);
        // A period after Q1 pays its own fixed sum.
        let q2 = Run {
            period: Period {
                from: d("2026-04-01"),
                to: d("2026-07-01"),
                as_of: d("2026-07-01"),
                known_at: chrono::Utc::now(),
            },
            issued: &ledger,
            ..Default::default()
        }
        .go(&terms);
        assert_eq!(amounts(&q2.lines)[2], ("fixed", 1420));
    }

    /// Shared savings are priced on the lower bound of a causal estimate only. Today's
    /// estimates are descriptive: nothing is paid, and each line says why.
    #[test]
    fn shared_savings_refuse_a_descriptive_estimate() {
        // An interval above zero, but a descriptive design: not priced.
        let falls = Avoided {
            avoided: Some(60.0),
            interval: Some([45.531_36, 80.0]),
            ..Avoided::descriptive(0.95, "")
        };
        let terms = Terms {
            shared_savings: Some(SharedSavings {
                share_bp: 5000,
                fall_cost_pence: 100_000,
                admission_cost_pence: 250_000,
                care_home_admission_cost_pence: Some(3_000_000),
                basis: SavingsBasis::LowerBound,
                cap_pence: None,
            }),
            ..Default::default()
        };
        let inputs = StatementInputs {
            plans: &[],
            episode_results: &[],
            missed_visits: &[],
            falls_avoided: &falls,
            admissions_avoided: &falls,
            care_home_admissions_avoided: None,
        };
        let st = statement(&terms, &inputs, &period(), &OutcomeSettings::default(), &[]);
        assert_eq!(
            amounts(&st.lines),
            vec![
                ("shared_savings_falls", 0),
                ("shared_savings_emergency_admissions", 0),
                ("shared_savings_care_home_admissions", 0)
            ]
        );
        assert!(st.lines[0]
            .description
            .ends_with("descriptive estimate, not priced"));
        assert!(st.lines[2].description.ends_with("no estimate, not priced"));
        assert_eq!(payable_lower_bound(&falls), Err(DESCRIPTIVE));

        // The rule once an estimate is causal: its lower bound, when above zero.
        assert_eq!(
            lower_bound_if_causal(false, Some([5.0, 9.0])),
            Err(DESCRIPTIVE)
        );
        assert_eq!(lower_bound_if_causal(true, None), Err(DESCRIPTIVE));
        assert!(lower_bound_if_causal(true, Some([-0.5, 9.0])).is_err());
        assert!(lower_bound_if_causal(true, Some([0.0, 9.0])).is_err());
        // Causal, lower bound 45.53136: 45.53136 x £1,000 x 50% = £22,765.68.
        let causal = Avoided {
            causal: true,
            design: crate::outcomes::measures::Design::ComparisonCohort,
            ..falls.clone()
        };
        assert_eq!(payable_lower_bound(&causal), Ok(45.531_36));
        let lower = lower_bound_if_causal(true, falls.interval).unwrap();
        let line = shared_saving(
            "shared_savings_falls",
            "falls",
            Ok(lower),
            100_000,
            5000,
            &period(),
        );
        assert!((line.amount_pence - 2_276_568).abs() <= 1, "{line:?}");

        // New terms cannot ask for the point estimate.
        let mut t = terms.clone();
        if let Some(s) = t.shared_savings.as_mut() {
            s.basis = SavingsBasis::Estimate;
        }
        assert_eq!(t.validate().unwrap_err().0, "terms.shared_savings.basis");
    }

    #[test]
    fn terms_are_validated_and_round_trip() {
        let t: Terms = serde_json::from_value(
            serde_json::json!({"withhold": {"base_pence": 10, "withheld_bp": 20000}}),
        )
        .unwrap();
        assert_eq!(t.validate().unwrap_err().0, "terms.withhold.withheld_bp");
        assert!(
            serde_json::from_value::<Terms>(serde_json::json!({"per_minute_pence": 10})).is_err()
        );
        assert_eq!(
            serde_json::from_value::<Terms>(serde_json::json!({"reablement": {"per_episode_pence": -1, "no_further_support_bonus_pence": 0}}))
                .unwrap()
                .validate()
                .unwrap_err()
                .0,
            "terms.reablement.per_episode_pence"
        );
        assert_eq!(
            serde_json::from_value::<Terms>(serde_json::json!({"penalty_cap_pence": -1}))
                .unwrap()
                .validate()
                .unwrap_err()
                .0,
            "terms.penalty_cap_pence"
        );

        // Every part, to JSON and back: the same terms, and the JSON a version stores.
        let every = serde_json::json!({
            "plan_upfront": {"upfront_bp": 2000, "cap_pence": 1_000_000},
            "fixed_plus_outcome": {"fixed_pence": 1420, "outcome_pence": 100},
            "hourly_plus_outcome": {"hourly_rate_pence": 1520, "outcome_element_pence": 100, "contracted_hours_per_week": 1000.0},
            "withhold": {"base_pence": 1_000_000, "withheld_bp": 2500},
            "reablement": {"per_episode_pence": 150_000, "no_further_support_bonus_pence": 30_000},
            "unmet_outcome_penalty_pence": 5000,
            "late_outcome_penalty_pence": 2000,
            "missed_visit_penalty_pence": 1000,
            "penalty_cap_pence": 50_000,
            "early_outcome_reward_pence": 2500,
            "early_outcome_reward_cap_pence": 25_000,
            "shared_savings": {"share_bp": 5000, "fall_cost_pence": 100_000, "admission_cost_pence": 250_000, "care_home_admission_cost_pence": 3_000_000, "basis": "lower_bound", "cap_pence": 10_000_000}
        });
        let terms: Terms = serde_json::from_value(every.clone()).unwrap();
        assert_eq!(terms.validate(), Ok(()));
        assert_eq!(
            terms.withhold,
            Some(Withhold {
                base_pence: 1_000_000,
                withheld_bp: 2500,
                cap_pence: None,
            })
        );
        assert_eq!(serde_json::to_value(&terms).unwrap(), every);
        let back: Terms = serde_json::from_str(&serde_json::to_string(&terms).unwrap()).unwrap();
        assert_eq!(back, terms);
        // Terms stored before savings were priced on the lower bound only still read.
        let old: Terms = serde_json::from_value(serde_json::json!({
            "shared_savings": {"share_bp": 1, "fall_cost_pence": 2, "admission_cost_pence": 3, "basis": "estimate"}
        }))
        .unwrap();
        assert_eq!(
            old.shared_savings.map(|s| s.basis),
            Some(SavingsBasis::Estimate)
        );
        // Parts left out stay out; the basis defaults to the lower bound and is written out.
        let few: Terms = serde_json::from_value(serde_json::json!({
            "shared_savings": {"share_bp": 1, "fall_cost_pence": 2, "admission_cost_pence": 3}
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&few).unwrap(),
            serde_json::json!({
                "shared_savings": {"share_bp": 1, "fall_cost_pence": 2, "admission_cost_pence": 3, "basis": "lower_bound"}
            })
        );
        assert_eq!(
            serde_json::to_value(Terms::default()).unwrap(),
            serde_json::json!({})
        );
    }
}

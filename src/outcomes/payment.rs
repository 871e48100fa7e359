//! Payment statements from contract terms held as data (`contracts.terms`). Every line follows
//! an outcome or a fixed sum; no line is priced by minutes. Money is integer pence;
//! shares are basis points (1/100 of a per cent). Models and worked examples: docs/outcomes.md.

use serde::{Deserialize, Serialize};

use super::estimate::Avoided;
use super::measures::{due_payable, timing, Period, PlanInput, Timing};
use super::{OutcomeSettings, ReablementResult};

/// Contract terms. Every part is optional; a contract combines the ones it uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    /// Wiltshire: a share of each plan's value up front when the plan is agreed, the balance
    /// split over its payable outcomes, paid as the person confirms each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_upfront: Option<PlanUpfront>,
    /// Hampshire: a fixed sum for the period plus an outcome-dependent sum paid in proportion
    /// to the payable outcomes achieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_plus_outcome: Option<FixedPlusOutcome>,
    /// Sutton: a base sum with a share withheld, released in proportion to outcomes achieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withhold: Option<Withhold>,
    /// Essex: a price per reablement episode ended, plus a bonus when no further support was
    /// needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reablement: Option<Reablement>,
    /// Deducted for each payable outcome not achieved by its target date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub unmet_outcome_penalty_pence: Option<i64>,
    /// Paid for each payable outcome achieved early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub early_outcome_reward_pence: Option<i64>,
    /// A share of the estimated savings from falls and admissions avoided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_savings: Option<SharedSavings>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanUpfront {
    #[schema(maximum = 10000)]
    pub upfront_bp: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixedPlusOutcome {
    #[schema(minimum = 0)]
    pub fixed_pence: i64,
    #[schema(minimum = 0)]
    pub outcome_pence: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Withhold {
    #[schema(minimum = 0)]
    pub base_pence: i64,
    #[schema(maximum = 10000)]
    pub withheld_bp: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reablement {
    #[schema(minimum = 0)]
    pub per_episode_pence: i64,
    #[schema(minimum = 0)]
    pub no_further_support_bonus_pence: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SavingsBasis {
    /// The lower end of the interval: only what the data show with 95% confidence.
    #[default]
    LowerBound,
    Estimate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedSavings {
    #[schema(maximum = 10000)]
    pub share_bp: u32,
    #[schema(minimum = 0)]
    pub fall_cost_pence: i64,
    #[schema(minimum = 0)]
    pub admission_cost_pence: i64,
    #[serde(default)]
    pub basis: SavingsBasis,
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
        if let Some(t) = &self.plan_upfront {
            bp(t.upfront_bp, "plan_upfront.upfront_bp")?;
        }
        if let Some(t) = &self.fixed_plus_outcome {
            money(t.fixed_pence, "fixed_plus_outcome.fixed_pence")?;
            money(t.outcome_pence, "fixed_plus_outcome.outcome_pence")?;
        }
        if let Some(t) = &self.withhold {
            money(t.base_pence, "withhold.base_pence")?;
            bp(t.withheld_bp, "withhold.withheld_bp")?;
        }
        if let Some(t) = &self.reablement {
            money(t.per_episode_pence, "reablement.per_episode_pence")?;
            money(
                t.no_further_support_bonus_pence,
                "reablement.no_further_support_bonus_pence",
            )?;
        }
        if let Some(v) = self.unmet_outcome_penalty_pence {
            money(v, "unmet_outcome_penalty_pence")?;
        }
        if let Some(v) = self.early_outcome_reward_pence {
            money(v, "early_outcome_reward_pence")?;
        }
        if let Some(t) = &self.shared_savings {
            bp(t.share_bp, "shared_savings.share_bp")?;
            money(t.fall_cost_pence, "shared_savings.fall_cost_pence")?;
            money(
                t.admission_cost_pence,
                "shared_savings.admission_cost_pence",
            )?;
        }
        Ok(())
    }
}

/// One line of a statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub code: &'static str,
    pub description: String,
    /// What the line counts (plans, outcomes, episodes, events avoided); never minutes.
    pub quantity: f64,
    pub amount_pence: i64,
}

/// What a statement reads besides the terms.
pub struct StatementInputs<'a> {
    pub plans: &'a [PlanInput],
    /// Results of reablement episodes under the contract that ended in the period.
    pub episode_results: &'a [String],
    pub falls_avoided: &'a Avoided,
    pub admissions_avoided: &'a Avoided,
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

pub fn statement(
    terms: &Terms,
    inputs: &StatementInputs<'_>,
    p: &Period,
    s: &OutcomeSettings,
) -> Vec<Line> {
    let mut lines = Vec::new();
    let in_period = |d: chrono::NaiveDate| d >= p.from && d < p.to && d <= p.as_of;
    let due: Vec<_> = due_payable(inputs.plans, p).collect();
    let achieved = due
        .iter()
        .filter(|(_, o)| timing(o, p.as_of, s.early_margin_days) != Timing::NotAchieved)
        .count() as u64;
    let due_n = due.len() as u64;

    if let Some(t) = &terms.plan_upfront {
        let (mut n_plans, mut upfront, mut n_outcomes, mut balance) = (0u64, 0i64, 0u64, 0i64);
        for plan in inputs.plans {
            let Some(agreed) = plan.agreed_on else {
                continue;
            };
            let up = share_of(plan.value_pence, t.upfront_bp);
            if in_period(agreed) {
                n_plans += 1;
                upfront += up;
            }
            let rest = plan.value_pence - up;
            let payable: Vec<_> = plan.outcomes.iter().filter(|o| o.payable).collect();
            let n = payable.len() as i64;
            for (i, o) in payable.iter().enumerate() {
                if o.verified_achievement().is_some_and(in_period) {
                    // Split the balance exactly: the parts add up to it to the penny.
                    let i = i as i64;
                    balance += rest * (i + 1) / n - rest * i / n;
                    n_outcomes += 1;
                }
            }
        }
        lines.push(Line {
            code: "plan_upfront",
            description: format!(
                "{}% of the value of plans agreed in the period",
                f64::from(t.upfront_bp) / 100.0
            ),
            quantity: n_plans as f64,
            amount_pence: upfront,
        });
        lines.push(Line {
            code: "plan_outcomes_achieved",
            description: "balance of plan value for payable outcomes the person confirmed and the council verified"
                .into(),
            quantity: n_outcomes as f64,
            amount_pence: balance,
        });
    }
    if let Some(t) = &terms.fixed_plus_outcome {
        lines.push(Line {
            code: "fixed",
            description: "fixed sum for the period".into(),
            quantity: 1.0,
            amount_pence: t.fixed_pence,
        });
        lines.push(Line {
            code: "outcome_part",
            description: format!(
                "outcome-dependent sum x payable outcomes achieved {achieved} / due {due_n}"
            ),
            quantity: achieved as f64,
            amount_pence: prorata(t.outcome_pence, achieved, due_n),
        });
    }
    if let Some(t) = &terms.withhold {
        let withheld = share_of(t.base_pence, t.withheld_bp);
        lines.push(Line {
            code: "base_paid",
            description: format!(
                "base less the {}% withheld against outcomes",
                f64::from(t.withheld_bp) / 100.0
            ),
            quantity: 1.0,
            amount_pence: t.base_pence - withheld,
        });
        lines.push(Line {
            code: "withheld_released",
            description: format!(
                "withheld share x payable outcomes achieved {achieved} / due {due_n}"
            ),
            quantity: achieved as f64,
            amount_pence: prorata(withheld, achieved, due_n),
        });
    }
    if let Some(t) = &terms.reablement {
        let n = inputs.episode_results.len() as i64;
        let nfs = inputs
            .episode_results
            .iter()
            .filter(|r| r.as_str() == ReablementResult::NoFurtherSupport.as_str())
            .count() as i64;
        lines.push(Line {
            code: "reablement_episodes",
            description: "set price per reablement episode ended in the period".into(),
            quantity: n as f64,
            amount_pence: n * t.per_episode_pence,
        });
        lines.push(Line {
            code: "no_further_support_bonus",
            description: "bonus per episode ending with no further support".into(),
            quantity: nfs as f64,
            amount_pence: nfs * t.no_further_support_bonus_pence,
        });
    }
    if let Some(pen) = terms.unmet_outcome_penalty_pence {
        let unmet = due
            .iter()
            .filter(|(_, o)| timing(o, p.as_of, s.early_margin_days) == Timing::NotAchieved)
            .count() as i64;
        lines.push(Line {
            code: "unmet_outcome_penalty",
            description: "penalty per payable outcome not achieved".into(),
            quantity: unmet as f64,
            amount_pence: -unmet * pen,
        });
    }
    if let Some(reward) = terms.early_outcome_reward_pence {
        let early = due
            .iter()
            .filter(|(_, o)| timing(o, p.as_of, s.early_margin_days) == Timing::Early)
            .count() as i64;
        lines.push(Line {
            code: "early_outcome_reward",
            description: format!(
                "reward per payable outcome achieved at least {} days early",
                s.early_margin_days
            ),
            quantity: early as f64,
            amount_pence: early * reward,
        });
    }
    if let Some(t) = &terms.shared_savings {
        let pick = |a: &Avoided| {
            match t.basis {
                SavingsBasis::LowerBound => a.interval[0],
                SavingsBasis::Estimate => a.avoided,
            }
            .max(0.0)
        };
        let (fa, aa) = (pick(inputs.falls_avoided), pick(inputs.admissions_avoided));
        let saved = fa * t.fall_cost_pence as f64 + aa * t.admission_cost_pence as f64;
        let amount = (saved * f64::from(t.share_bp) / 10_000.0).round() as i64;
        lines.push(Line {
            code: "shared_savings",
            description: format!(
                "{}% of estimated savings ({:?}): falls avoided {fa:.2}, admissions avoided {aa:.2}",
                f64::from(t.share_bp) / 100.0,
                t.basis
            ),
            quantity: fa + aa,
            amount_pence: amount,
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcomes::estimate::{avoided, Exposure};
    use crate::outcomes::measures::PlanOutcome;
    use chrono::NaiveDate;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

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

    fn run(terms: Terms, results: &[&str]) -> Vec<Line> {
        let none = avoided(&[], 0.0, 0.95);
        let plans = plans();
        let results: Vec<String> = results.iter().map(|s| s.to_string()).collect();
        let inputs = StatementInputs {
            plans: &plans,
            episode_results: &results,
            falls_avoided: &none,
            admissions_avoided: &none,
        };
        statement(&terms, &inputs, &period(), &OutcomeSettings::default())
    }

    fn amounts(lines: &[Line]) -> Vec<(&str, i64)> {
        lines.iter().map(|l| (l.code, l.amount_pence)).collect()
    }

    #[test]
    fn upfront_twenty_balance_eighty_on_outcomes() {
        // 20% of £1,000 = £200 up front; £800 over 3 payable outcomes: 26666 + 26667 (+ 26667
        // unpaid), two achieved.
        let lines = run(
            Terms {
                plan_upfront: Some(PlanUpfront { upfront_bp: 2000 }),
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
    }

    #[test]
    fn a_confirmed_achievement_the_council_has_not_verified_is_not_paid() {
        // As above, but outcome 2 (on time) is confirmed and not verified: only outcome 1's
        // part of the balance (26666), and no early reward beyond outcome 1.
        let mut plans = plans();
        plans[0].outcomes[1].verified = false;
        let none = avoided(&[], 0.0, 0.95);
        let inputs = StatementInputs {
            plans: &plans,
            episode_results: &[],
            falls_avoided: &none,
            admissions_avoided: &none,
        };
        let terms = Terms {
            plan_upfront: Some(PlanUpfront { upfront_bp: 2000 }),
            ..Default::default()
        };
        let lines = statement(&terms, &inputs, &period(), &OutcomeSettings::default());
        assert_eq!(
            amounts(&lines),
            vec![("plan_upfront", 20_000), ("plan_outcomes_achieved", 26_666)]
        );
    }

    #[test]
    fn fixed_plus_outcome_part() {
        // Hampshire-like: £14.20 fixed, £1.00 on outcomes; 2 of 3 achieved -> 66p.
        let lines = run(
            Terms {
                fixed_plus_outcome: Some(FixedPlusOutcome {
                    fixed_pence: 1420,
                    outcome_pence: 100,
                }),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(amounts(&lines), vec![("fixed", 1420), ("outcome_part", 66)]);
    }

    #[test]
    fn seventy_five_paid_twenty_five_withheld() {
        // £10,000 base: £7,500 paid, £2,500 withheld, 2/3 released = £1,666.66.
        let lines = run(
            Terms {
                withhold: Some(Withhold {
                    base_pence: 1_000_000,
                    withheld_bp: 2500,
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
                ("early_outcome_reward", 2_500)
            ]
        );
    }

    #[test]
    fn shared_savings_use_the_lower_bound_by_default() {
        // 100 people, 365 days each, reference 1 fall a year: expected 100; observed 40.
        let people: Vec<Exposure> = (0..100)
            .map(|i| Exposure {
                days: 365.0,
                observed: u64::from(i < 40),
                history: None,
            })
            .collect();
        let falls = avoided(&people, 1.0 / 365.0, 0.95);
        let none = avoided(&[], 0.0, 0.95);
        let terms = Terms {
            shared_savings: Some(SharedSavings {
                share_bp: 5000,
                fall_cost_pence: 100_000,
                admission_cost_pence: 0,
                basis: SavingsBasis::LowerBound,
            }),
            ..Default::default()
        };
        let inputs = StatementInputs {
            plans: &[],
            episode_results: &[],
            falls_avoided: &falls,
            admissions_avoided: &none,
        };
        let lines = statement(&terms, &inputs, &period(), &OutcomeSettings::default());
        // Expected 100 (no uncertainty from a reference rate); observed 40, whose exact 95%
        // Poisson upper limit is 54.4686 (published tables: 54.47). The lower bound of falls
        // avoided is 100 - 54.4686 = 45.5314; 45.5314 x £1,000 x 50% = £22,765.68.
        assert!(
            (lines[0].amount_pence - 2_276_568).abs() <= 1,
            "{:?}",
            lines[0]
        );
        let mut t = terms.clone();
        if let Some(s) = t.shared_savings.as_mut() {
            s.basis = SavingsBasis::Estimate;
        }
        let lines = statement(&t, &inputs, &period(), &OutcomeSettings::default());
        assert_eq!(lines[0].amount_pence, 3_000_000); // 60 avoided x £1,000 x 50%
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

        // Every part, to JSON and back: the same terms, and the JSON a contract stores.
        let every = serde_json::json!({
            "plan_upfront": {"upfront_bp": 2000},
            "fixed_plus_outcome": {"fixed_pence": 1420, "outcome_pence": 100},
            "withhold": {"base_pence": 1_000_000, "withheld_bp": 2500},
            "reablement": {"per_episode_pence": 150_000, "no_further_support_bonus_pence": 30_000},
            "unmet_outcome_penalty_pence": 5000,
            "early_outcome_reward_pence": 2500,
            "shared_savings": {"share_bp": 5000, "fall_cost_pence": 100_000, "admission_cost_pence": 250_000, "basis": "estimate"}
        });
        let terms: Terms = serde_json::from_value(every.clone()).unwrap();
        assert_eq!(terms.validate(), Ok(()));
        assert_eq!(
            terms.withhold,
            Some(Withhold {
                base_pence: 1_000_000,
                withheld_bp: 2500
            })
        );
        assert_eq!(
            terms.shared_savings.as_ref().map(|s| s.basis),
            Some(SavingsBasis::Estimate)
        );
        assert_eq!(serde_json::to_value(&terms).unwrap(), every);
        let back: Terms = serde_json::from_str(&serde_json::to_string(&terms).unwrap()).unwrap();
        assert_eq!(back, terms);
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

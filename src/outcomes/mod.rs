//! Outcome indicators and payment by results, with time only as context.
//!
//! - [`estimate`]: pure maths: exact Poisson intervals; avoided against a comparison, bootstrap.
//! - [`measures`]: the indicators from loaded rows (falls, avoided, plans, shares).
//! - [`ascof`]: the official measures (ASCOF 2023-24) and independence regained.
//! - [`payment`]: statements from versioned contract terms held as data, each item paid once
//!   (the ledger: `statements`); never priced by minutes.
//! - [`report`]: resolves a scope for the caller (tenant-filtered), hashes its rows, builds
//!   reports, CSV; `load` reads each source as known at the report's `known_at`.
//! - `restate`: stored reports computed again (reproduction) or from newer data (restatement).
//! - [`contracts`]: contracts (created only here) and their terms' versions, over HTTP;
//!   [`proposals`]: a council proposes a contract, the provider accepts (or declines) it.
//! - The API, one file each: `episodes`, `plans`, `populations`, `comparison` (the
//!   commissioner's comparison cohorts), `reports`, `statements`;
//!   `routes` gathers them. `confirm`: the person's own pages for confirming an outcome.
//!
//! A report records its period, the moment whose data it read (`known_at`), its settings, the
//! SHA-256 of its input rows and [`METHOD_VERSION`]; outcome records are versioned and never
//! updated, so a stored report computes again to the same bytes.
//! Definitions: docs/outcomes.md.
//!
//! No background work: plain indexed queries meet the dashboard target (docs/benchmarks.md,
//! "Outcomes report"), so there are no rollups to refresh.

pub mod ascof;
pub mod compare;
mod comparison;
mod confirm;
pub mod contracts;
mod episodes;
pub mod estimate;
pub mod export;
pub mod funnel;
mod load;
pub mod measures;
pub mod payment;
pub mod plan_queue;
pub mod plans;
mod populations;
pub mod proposals;
pub mod report;
pub mod reports;
mod restate;
mod routes;
pub mod statements;

use actix_web::web;
use serde::{Deserialize, Serialize};

crate::sql_enum! {
    /// Where a hospital stay ended (`hospital_stays.discharge_destination`).
    DischargeDestination {
        Home = "home",
        HomeWithReablement = "home_with_reablement",
        CareHome = "care_home",
        Died = "died",
        Other = "other",
    }
}

crate::sql_enum! {
    /// How a reablement episode ended (`reablement_episodes.result`): its sequel. The last nine
    /// are the sequels ASCOF 2023-24 measure 2A classifies (migration 0012); the first six
    /// (migration 0005) stay readable and are mapped in [`ascof::sequel`].
    ReablementResult {
        NoFurtherSupport = "no_further_support",
        /// Long-term support at a lower level than before: not an ASCOF 2A success (record
        /// `ongoing_low_level_support` when the support is low-level).
        LessSupport = "less_support",
        SameSupport = "same_support",
        MoreSupport = "more_support",
        ResidentialCare = "residential_care",
        NursingCare = "nursing_care",
        /// Ongoing low-level support (equipment, telecare, a little help): a success.
        OngoingLowLevelSupport = "ongoing_low_level_support",
        /// Other short-term support: a success.
        ShortTermSupportOther = "short_term_support_other",
        /// No services: signposted to universal services or other organisations: a success.
        UniversalServices = "universal_services",
        /// No services: no needs identified: a success.
        NoNeedsIdentified = "no_needs_identified",
        /// Long-term support in any setting (community, residential, nursing): a failure.
        LongTermSupport = "long_term_support",
        /// Ended early by the person's death: left out.
        Died = "died",
        /// Ended early by a hospital admission: left out.
        HospitalAdmission = "hospital_admission",
        /// Support declined: left out.
        Declined = "declined",
        /// The person funds their own support: left out.
        SelfFunded = "self_funded",
    }
}

crate::sql_enum! {
    /// What a follow-up of a reablement episode found (`reablement_episodes.follow_up`),
    /// about 91 days on.
    FollowUp {
        /// At home, not in long-term support.
        AtHome = "at_home",
        /// At home, in long-term support.
        AtHomeWithSupport = "at_home_with_support",
        /// Not at home (in hospital, a care home, elsewhere, or dead).
        NotAtHome = "not_at_home",
        /// Could not be contacted: counts as not at home.
        NoContact = "no_contact",
    }
}

/// Bumped whenever a definition or method changes, so old reports stay explainable.
/// `outcomes/3`: the official measures follow the ASCOF 2023-24 edition (council-supported
/// people only; sequels, life events and open episodes in 2A; non-permanent stays and unknown
/// status in 2D; transfers and the population's own council in 2B/2C); every share carries a
/// Wilson interval and the small-number rule; independence regained, plan achievement by kind
/// and value, and hours delivered per contract (context) are new; inputs are read as known at
/// a moment; a plan outcome is achieved when the person confirms it through their own link
/// (dated by that answer) and counts, and is paid, once the council has verified it.
/// Statements price shared savings on the lower bound of a causal estimate only, penalise
/// late outcomes, and pay each item once (the ledger).
/// Also in `outcomes/3`: avoided figures only against a concurrent comparison (a comparison
/// cohort, difference-in-differences, or a contract's reference rate with its interval),
/// baseline with a washout and locked at enrolment, the same sources in both windows,
/// person-level bootstrap intervals; descriptive, not causal, otherwise.
/// `outcomes/2`: the alarm context comes from its owner (answer share over calls, time to
/// on-site over dispatched alarms), the visit context likewise.
pub const METHOD_VERSION: &str = "outcomes/3";

/// Settings under `[outcomes]`. Reference rates are not settings: they are contract terms, with
/// their source and interval (`terms.reference_rates`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutcomeSettings {
    /// Confidence level of every interval [0.95].
    pub confidence_level: f64,
    /// The baseline window starts this many days before the service began [365].
    pub history_days: u32,
    /// ... and ends this many days before it [90]: people are referred after a fall or an
    /// admission, so the months just before the service are higher than usual and are left
    /// out (a washout), as is the index event itself.
    pub washout_days: u32,
    /// At least this many days of known history are needed to use a person's baseline [180].
    pub min_history_days: u32,
    /// Still at home 91 days after discharge counts people of this age or older [65].
    pub still_at_home_min_age: u32,
    /// An outcome achieved at least this many days before its target is early [14].
    pub early_margin_days: u32,
    /// A person's link (or code) to confirm an outcome works for this many days [14].
    pub confirmation_link_days: u32,
}

impl Default for OutcomeSettings {
    fn default() -> Self {
        Self {
            confidence_level: 0.95,
            history_days: 365,
            washout_days: 90,
            min_history_days: 180,
            still_at_home_min_age: 65,
            early_margin_days: 14,
            confirmation_link_days: 14,
        }
    }
}

impl OutcomeSettings {
    /// One line naming what is wrong, or `Ok`. Run when the configuration is loaded.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.confidence_level > 0.5 && self.confidence_level < 1.0) {
            return Err("outcomes.confidence_level must be between 0.5 and 1".into());
        }
        if self.washout_days >= self.history_days {
            return Err("outcomes.washout_days must be below outcomes.history_days".into());
        }
        if self.history_days == 0 || self.min_history_days > self.history_days {
            return Err(
                "outcomes.min_history_days must be at most outcomes.history_days (> 0)".into(),
            );
        }
        if !(1..=90).contains(&self.confirmation_link_days) {
            return Err("outcomes.confirmation_link_days must be between 1 and 90".into());
        }
        Ok(())
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    routes::routes(cfg);
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub use episodes::person_records;
pub use plans::person_plans;
pub use routes::api;

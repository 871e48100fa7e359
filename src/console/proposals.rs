//! Contract proposals on the outcomes page: a council proposes a contract to a provider, the
//! provider's administrator accepts or declines it, the council may withdraw it while open.
//! Each form calls the API's own [`crate::outcomes::proposals`] functions (same roles, checks
//! and audit rows) and goes back to the outcomes page saying what was done or what was wrong.

use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use serde::Deserialize;

use super::error::back;
use super::{in_tx, ConsoleError, ConsoleUser};
use crate::auth::{OrgKind, Role};
use crate::http::{ApiError, AppState};
use crate::outcomes::proposals::{self, Decision, NewProposal, Proposal, ProposalsQuery};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/outcomes/proposals", web::post().to(propose))
        .route(
            "/outcomes/proposals/{id}/{decision}",
            web::post().to(decide),
        );
}

/// An open proposal as the outcomes page lists it.
pub(super) struct ProposalRow {
    pub p: Proposal,
    /// The other party's name.
    pub party: String,
    pub ends: String,
    /// The buttons the user may press: (path segment, label).
    pub actions: Vec<(&'static str, &'static str)>,
}

/// The open proposals the user's organisation made or received, with what the user may do.
pub(super) async fn open_rows(
    c: &crate::db::Client,
    user: &ConsoleUser,
) -> Result<Vec<ProposalRow>, ConsoleError> {
    let page = proposals::list(
        &***c,
        &user.caller,
        &ProposalsQuery {
            status: Some("open".into()),
            after: None,
            limit: Some(1000),
        },
    )
    .await?;
    let commissioner = user.caller.organisation_kind == OrgKind::Commissioner;
    let actions: Vec<(&str, &str)> = match user.caller.role {
        Role::Commissioner => vec![("withdraw", "Withdraw")],
        Role::ProviderAdmin => vec![("accept", "Accept"), ("decline", "Decline")],
        _ => vec![],
    };
    Ok(page
        .items
        .into_iter()
        .map(|p| ProposalRow {
            party: if commissioner {
                p.provider_name.clone()
            } else {
                p.commissioner_name.clone()
            },
            ends: p
                .ends_on
                .map_or_else(|| "open-ended".to_owned(), |d| d.to_string()),
            actions: actions.clone(),
            p,
        })
        .collect())
}

#[derive(Debug, Deserialize)]
struct ProposeForm {
    provider: String,
    reference: String,
    starts_on: String,
    #[serde(default)]
    ends_on: String,
}

/// A day from a date field, or a message naming it.
fn day(label: &str, value: &str) -> Result<Option<NaiveDate>, String> {
    match value.trim() {
        "" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{label}: a date such as 2027-04-01")),
    }
}

async fn propose(
    user: ConsoleUser,
    state: web::Data<AppState>,
    form: web::Form<ProposeForm>,
) -> Result<HttpResponse, ConsoleError> {
    let days = day("Starts on", &form.starts_on).and_then(|s| {
        let s = s.ok_or_else(|| "Starts on: the first day of the contract".to_owned())?;
        Ok((s, day("Ends on", &form.ends_on)?))
    });
    let (starts_on, ends_on) = match days {
        Ok(d) => d,
        Err(why) => return back("/console/outcomes", Err(ApiError::BadRequest(why))),
    };
    let body = NewProposal {
        provider: form.provider.clone(),
        reference: form.reference.clone(),
        starts_on,
        ends_on,
    };
    let result = in_tx(&state, &user, async |tx| {
        proposals::propose(tx, &user.caller, &body).await
    })
    .await?;
    back(
        "/console/outcomes",
        result.map(|p| {
            format!(
                "Contract {} is proposed to {}. It starts when their administrator accepts it.",
                p.reference, p.provider_name
            )
        }),
    )
}

async fn decide(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<(i32, String)>,
) -> Result<HttpResponse, ConsoleError> {
    let (id, decision) = path.into_inner();
    let decision = match decision.as_str() {
        "accept" => Decision::Accept,
        "decline" => Decision::Decline,
        "withdraw" => Decision::Withdraw,
        _ => return Err(ConsoleError::NotFound),
    };
    let result = in_tx(&state, &user, async |tx| {
        proposals::decide(tx, &user.caller, id, decision).await
    })
    .await?;
    back(
        "/console/outcomes",
        result.map(|p| match decision {
            Decision::Accept => format!(
                "Contract {} with {} is in force: it is listed below.",
                p.reference, p.commissioner_name
            ),
            Decision::Decline => format!("Contract {} was declined.", p.reference),
            Decision::Withdraw => format!("Contract {} was withdrawn.", p.reference),
        }),
    )
}

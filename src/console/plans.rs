//! The queues of "I can" plans: plans waiting for an agreement, and achievements the person
//! confirmed that wait for the council's verdict, with the buttons that give them. The lists
//! are `outcomes::plan_queue::list` (as `GET /v1/outcome-plans?awaiting=`), the buttons
//! `outcomes::plans::agree` and `::verify` (as the API's agree and verify): the same roles,
//! checks and audit rows. After a button, back to the queue (Post/Redirect/Get) with what was
//! done, or what was wrong.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::{back, html_response};
use super::{ConsoleError, ConsoleUser, Section};
use crate::auth::{OrgKind, Role};
use crate::http::AppState;
use crate::outcomes::plan_queue::{self, PlanSummary, PlansQuery};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/outcomes/plans", web::get().to(queue))
        .route("/outcomes/plans/{id}/agree", web::post().to(agree))
        .route(
            "/outcomes/plans/{id}/outcomes/{outcome}/verify",
            web::post().to(verify),
        );
}

#[derive(Deserialize)]
struct QueueQuery {
    awaiting: Option<String>,
    done: Option<String>,
    problem: Option<String>,
}

struct Tab {
    href: &'static str,
    label: &'static str,
    current: bool,
}

/// A plan as the queue shows it, with the agreement buttons the caller may press.
struct Row {
    plan: PlanSummary,
    person: String,
    waiting_for: String,
    /// (party, button label).
    agree_as: Vec<(&'static str, &'static str)>,
}

#[derive(Template)]
#[template(path = "plans.html")]
struct QueuePage {
    shell: super::Shell,
    tabs: Vec<Tab>,
    verification: bool,
    rows: Vec<Row>,
    can_verify: bool,
    form_token: String,
    done: Option<String>,
    problem: Option<String>,
    more: bool,
}

/// Most plans a queue page lists (the API pages through the rest).
const PAGE: i64 = 200;

fn party_words(party: &str) -> &'static str {
    match party {
        "person" => "the person",
        "provider" => "the provider",
        _ => "the council",
    }
}

async fn queue(
    user: ConsoleUser,
    state: web::Data<AppState>,
    q: web::Query<QueueQuery>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(plan_queue_readers())?;
    let verification = q.awaiting.as_deref() == Some("verification");
    let awaiting = if verification {
        "verification"
    } else {
        "agreement"
    };
    let mut c = state.db(&user.caller).await?;
    let tx = c.transaction().await?;
    let page = plan_queue::list(
        &*tx,
        &user.caller,
        &PlansQuery {
            awaiting: Some(awaiting.to_owned()),
            limit: Some(PAGE),
            ..PlansQuery::default()
        },
    )
    .await?;
    tx.commit().await?;
    let role = user.caller.role;
    let rows = page
        .items
        .into_iter()
        .map(|plan| {
            let agree_as = plan
                .awaiting_agreement
                .iter()
                .filter_map(|p| match (*p, role) {
                    ("council", Role::Commissioner) => Some(("council", "Agree for the council")),
                    ("provider", Role::ProviderAdmin | Role::ProviderStaff) => {
                        Some(("provider", "Agree for the provider"))
                    }
                    ("person", Role::ProviderAdmin | Role::ProviderStaff) => {
                        Some(("person", "Record the person's agreement"))
                    }
                    _ => None,
                })
                .collect();
            Row {
                person: match &plan.person_name {
                    Some(name) => format!("{name} ({})", plan.person_pseudonym),
                    None => plan.person_pseudonym.clone(),
                },
                waiting_for: plan
                    .awaiting_agreement
                    .iter()
                    .map(|p| party_words(p))
                    .collect::<Vec<_>>()
                    .join(", "),
                agree_as,
                plan,
            }
        })
        .collect();
    let page = QueuePage {
        shell: user.shell("Plans to agree and verify", Section::Outcomes),
        tabs: vec![
            Tab {
                href: "/console/outcomes/plans?awaiting=agreement",
                label: "Waiting for agreement",
                current: !verification,
            },
            Tab {
                href: "/console/outcomes/plans?awaiting=verification",
                label: "Waiting for verification",
                current: verification,
            },
        ],
        verification,
        rows,
        can_verify: role == Role::Commissioner,
        form_token: user.form_token.clone(),
        done: q.done.clone().map(|d| d.chars().take(300).collect()),
        problem: q.problem.clone().map(|d| d.chars().take(300).collect()),
        more: page.next_after.is_some(),
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// Who may open the queues: as `GET /v1/outcome-plans`.
fn plan_queue_readers() -> &'static [Role] {
    super::outcomes::READERS
}

#[derive(Deserialize)]
struct AgreeForm {
    party: String,
}

async fn agree(
    user: ConsoleUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<AgreeForm>,
) -> Result<HttpResponse, ConsoleError> {
    let id: i64 = id.parse().map_err(|_| ConsoleError::NotFound)?;
    let mut c = state.db(&user.caller).await?;
    let tx = c.transaction().await?;
    let result = crate::outcomes::plans::agree(&*tx, &user.caller, id, &form.party).await;
    if result.is_ok() {
        tx.commit().await?;
    }
    back(
        "/console/outcomes/plans?awaiting=agreement",
        result.map(|_| format!("Plan {id}: agreed for {}.", party_words(&form.party))),
    )
}

#[derive(Deserialize)]
struct VerifyForm {
    verdict: String,
    #[serde(default)]
    note: String,
}

async fn verify(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<VerifyForm>,
) -> Result<HttpResponse, ConsoleError> {
    let (id, outcome) = path.into_inner();
    let id: i64 = id.parse().map_err(|_| ConsoleError::NotFound)?;
    let outcome: i64 = outcome.parse().map_err(|_| ConsoleError::NotFound)?;
    if user.caller.organisation_kind != OrgKind::Commissioner {
        return Err(ConsoleError::Forbidden(
            "Only the council verifies achievements.".into(),
        ));
    }
    let note = Some(form.note.trim()).filter(|n| !n.is_empty());
    let mut c = state.db(&user.caller).await?;
    let tx = c.transaction().await?;
    let result =
        crate::outcomes::plans::verify(&*tx, &user.caller, (id, outcome), &form.verdict, note)
            .await;
    if result.is_ok() {
        tx.commit().await?;
    }
    let verdict = if form.verdict == "verified" {
        "verified"
    } else {
        "rejected"
    };
    back(
        "/console/outcomes/plans?awaiting=verification",
        result.map(|_| format!("Plan {id}, outcome {outcome}: {verdict}.")),
    )
}

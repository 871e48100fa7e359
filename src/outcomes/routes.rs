//! The outcomes API: each file registers its own routes ([`super::episodes`],
//! [`super::plans`], [`super::populations`], [`super::contracts`], [`super::reports`],
//! [`super::statements`], [`super::comparison`]); this one gathers them and holds what they share: who may call, the
//! check that a person is the caller's, and the body of a 201.

use actix_web::{web, HttpResponse};
use tokio_postgres::GenericClient;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::{Caller, Role};
use crate::http::ApiError;

/// Provider staff: they record episodes and write plans.
pub(super) const STAFF: &[Role] = &[Role::ProviderAdmin, Role::ProviderStaff];
/// Everyone who may read plans, terms, reports and statements (each still tenant-filtered).
pub(super) const READERS: &[Role] = &[
    Role::ProviderAdmin,
    Role::ProviderStaff,
    Role::Commissioner,
    Role::Auditor,
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    api(&mut ServiceConfig::new(cfg));
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub fn api(cfg: &mut ServiceConfig<'_>) {
    cfg.configure(super::episodes::routes)
        .configure(super::plans::routes)
        .configure(super::plan_queue::routes)
        .configure(super::populations::routes)
        .configure(super::comparison::routes)
        .configure(super::compare::routes)
        .configure(super::export::routes)
        .configure(super::contracts::routes)
        .configure(super::proposals::routes)
        .configure(super::reports::routes)
        .configure(super::statements::routes)
        .configure(super::confirm::routes);
}

/// Passes if person `id` belongs to the caller's organisation.
pub(super) async fn own_person(
    c: &impl GenericClient,
    caller: &Caller,
    id: i32,
) -> Result<(), ApiError> {
    let ok = c
        .query_opt(
            "SELECT 1 FROM people WHERE id = $1 AND organisation_id = $2",
            &[&id, &caller.organisation_id],
        )
        .await?
        .is_some();
    ok.then_some(())
        .ok_or_else(|| ApiError::invalid("person_id", "no such person in your organisation"))
}

/// 201 with the new row's id.
/// What was recorded.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Recorded)]
pub(super) struct Created {
    pub id: i64,
}

pub(super) fn created(id: i64) -> HttpResponse {
    HttpResponse::Created().json(Created { id })
}

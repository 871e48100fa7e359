//! Stored indicator reports computed again: a *reproduction* reads the data as known at the
//! report's `known_at` with the settings stored beside it and says whether the bytes are the
//! same; a *restatement* reads the data as known now (same scope, period and settings), is
//! stored as a new report naming the one it restates, and says which figures changed and which
//! records arrived or were corrected since, with the reasons given for them.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use super::measures::Period;
use super::report::{self, Scope, StoredSettings};
use super::reports::{store_reproducible, Reproducible};
use super::routes::READERS;
use crate::auth::Caller;
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};

/// An indicator report as stored, with what it needs to be computed again.
struct Stored {
    scope: Scope,
    period: Period,
    settings: StoredSettings,
    body: String,
}

async fn stored(c: &impl GenericClient, caller: &Caller, id: i64) -> Result<Stored, ApiError> {
    let row = c
        .query_opt(
            "SELECT kind, scope, scope_id, period_from, period_to, as_of, known_at, settings, body
               FROM outcome_reports WHERE id = $1 AND organisation_id = $2",
            &[&id, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("report {id}")))?;
    if row.get::<_, String>(0) != "indicators" {
        return Err(ApiError::invalid(
            "id",
            format!("report {id} is a payment statement; only indicator reports are computed again here"),
        ));
    }
    let (Some(known_at), Some(settings), Some(body)) = (
        row.get::<_, Option<DateTime<Utc>>>(6),
        row.get::<_, Option<Value>>(7),
        row.get::<_, Option<String>>(8),
    ) else {
        return Err(ApiError::Conflict(format!(
            "report {id} was produced before reports kept the moment and settings they read, so it cannot be computed again"
        )));
    };
    let settings: StoredSettings = serde_json::from_value(settings).map_err(|e| {
        ApiError::Conflict(format!(
            "report {id} was produced with settings this version cannot read ({e})"
        ))
    })?;
    Ok(Stored {
        scope: Scope::parse(&row.get::<_, String>(1), row.get(2))?,
        period: Period {
            from: row.get::<_, NaiveDate>(3),
            to: row.get(4),
            as_of: row.get(5),
            known_at,
        },
        settings,
        body,
    })
}

/// One figure that differs between two reports: its JSON path and both values.
#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Difference {
    pub figure: String,
    #[schema(value_type = Object)]
    pub before: Value,
    #[schema(value_type = Object)]
    pub after: Value,
}

/// Every leaf that differs between `a` and `b`, depth first, in key order.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<Difference>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                differences(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a != b => out.push(Difference {
            figure: path.to_string(),
            before: a.clone(),
            after: b.clone(),
        }),
        _ => {}
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether a stored report computes again to the same bytes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reproduction {
    pub report_id: i64,
    /// The moment whose knowledge the report read.
    pub known_at: DateTime<Utc>,
    /// The bytes computed now are the bytes stored.
    pub identical: bool,
    pub stored_sha256: String,
    pub reproduced_sha256: String,
    /// Figures that differ (empty when identical). Outcome records are read as known at
    /// `known_at`; the context figures (visits, alarms) come from operational data that is
    /// corrected in place, so they alone can differ.
    pub differences: Vec<Difference>,
}

fn json(bytes: &str) -> Result<Value, ApiError> {
    serde_json::from_str(bytes).map_err(|e| ApiError::Unexpected(e.into()))
}

/// Computes a stored indicator report again, from the data as known at its `known_at` and the
/// settings stored with it, and compares the bytes.
#[utoipa::path(
    operation_id = "reproduce_report",
    tag = "outcomes",
    params(("id" = i64, Path, description = "The stored report's id.")),
    responses(
        (status = 200, description = "Whether the report computes again to the same bytes, and \
            any figure that differs.", body = Reproduction),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[get("/v1/outcomes/reports/{id}/reproduction")]
pub(super) async fn reproduction(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let id = path.into_inner();
    let c = state.db(&caller).await?;
    let s = stored(&**c, &caller, id).await?;
    let again = report::build(&**c, &caller, s.scope, s.period, s.settings.borrow()).await?;
    let bytes = serde_json::to_string(&again).map_err(|e| ApiError::Unexpected(e.into()))?;
    let mut diff = Vec::new();
    if bytes != s.body {
        differences("", &json(&s.body)?, &json(&bytes)?, &mut diff);
    }
    Ok(HttpResponse::Ok().json(Reproduction {
        report_id: id,
        known_at: s.period.known_at,
        identical: bytes == s.body,
        stored_sha256: sha256(s.body.as_bytes()),
        reproduced_sha256: sha256(bytes.as_bytes()),
        differences: diff,
    }))
}

/// A record version recorded between a report and its restatement.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Arrival {
    /// The table: `service_periods`, `hospital_stays`, `reablement_episodes`,
    /// `care_home_admissions`, `deaths`, `recorded_falls`; or, for a plan outcome (`record_id`
    /// its id), `plan_outcome_confirmations` (the person's answer) and
    /// `plan_outcome_verifications` (the council's verdict).
    pub source: String,
    pub record_id: i64,
    /// `new` (a record first known now), `version` (a later stage or a correction) or
    /// `withdrawn`; for a plan outcome `answered yes`, `answered not_yet`, `verified` or
    /// `rejected`.
    pub change: String,
    /// The reason given with a version or a withdrawal.
    pub reason: Option<String>,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: Option<i32>,
}

/// What changed between a report and its restatement, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Restatement {
    pub restates: i64,
    pub known_at_before: DateTime<Utc>,
    pub known_at_after: DateTime<Utc>,
    pub differences: Vec<Difference>,
    /// The outcome records of the people in scope recorded in between, oldest first.
    pub recorded_since: Vec<Arrival>,
}

async fn recorded_between(
    c: &impl GenericClient,
    people: &[i32],
    orgs: &[i32],
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Arrival>, ApiError> {
    let mut arrivals = Vec::new();
    for table in [
        "service_periods",
        "hospital_stays",
        "reablement_episodes",
        "care_home_admissions",
        "deaths",
        "recorded_falls",
    ] {
        let rows = c
            .query(
                &format!(
                    "SELECT record_id, corrects IS NULL, withdrawn, reason, recorded_at, recorded_by FROM {table}
                      WHERE person_id = ANY($1) AND organisation_id = ANY($2)
                        AND recorded_at > $3 AND recorded_at <= $4"
                ),
                &[&people, &orgs, &after, &until],
            )
            .await?;
        for r in rows {
            let change = if r.get::<_, bool>(2) {
                "withdrawn"
            } else if r.get::<_, bool>(1) {
                "new"
            } else {
                "version"
            };
            arrivals.push(Arrival {
                source: table.to_string(),
                record_id: r.get(0),
                change: change.to_string(),
                reason: r.get(3),
                recorded_at: r.get(4),
                recorded_by: r.get(5),
            });
        }
    }
    // What decides a plan outcome besides the plan: the person's answers and the council's
    // verdicts (record_id: the outcome's id; reason: the feedback or the note).
    for (source, sql) in [
        (
            "plan_outcome_confirmations",
            "SELECT k.outcome_id, 'answered ' || k.answer, k.feedback, k.confirmed_at, NULL::int
               FROM plan_outcome_confirmations k JOIN plan_outcomes o ON o.id = k.outcome_id
               JOIN outcome_plans pl ON pl.id = o.plan_id
              WHERE pl.person_id = ANY($1) AND pl.organisation_id = ANY($2)
                AND k.confirmed_at > $3 AND k.confirmed_at <= $4",
        ),
        (
            "plan_outcome_verifications",
            "SELECT v.outcome_id, v.verdict, v.note, v.verified_at, v.verified_by
               FROM plan_outcome_verifications v JOIN plan_outcomes o ON o.id = v.outcome_id
               JOIN outcome_plans pl ON pl.id = o.plan_id
              WHERE pl.person_id = ANY($1) AND pl.organisation_id = ANY($2)
                AND v.verified_at > $3 AND v.verified_at <= $4",
        ),
    ] {
        for r in c.query(sql, &[&people, &orgs, &after, &until]).await? {
            arrivals.push(Arrival {
                source: source.to_string(),
                record_id: r.get(0),
                change: r.get(1),
                reason: r.get(2),
                recorded_at: r.get(3),
                recorded_by: r.get(4),
            });
        }
    }
    arrivals.sort_by(|a, b| {
        (a.recorded_at, &a.source, a.record_id).cmp(&(b.recorded_at, &b.source, b.record_id))
    });
    Ok(arrivals)
}

/// Restates a stored indicator report: the same scope, period and settings, from the data as
/// known now. Stored as a new report that names the one it restates; the answer is that report
/// with `report_id` and a `restatement`: the figures that changed and the records recorded in
/// between, with their reasons.
#[utoipa::path(
    operation_id = "restate_report",
    tag = "outcomes",
    params(("id" = i64, Path, description = "The stored report's id.")),
    responses(
        (status = 201, description = "The restated report (as `GET /v1/outcomes/report` \
            answers) with `report_id` and `restatement`.", body = Object),
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/reports/{id}/restatements")]
pub(super) async fn restatement(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let id = path.into_inner();
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let s = stored(&*tx, &caller, id).await?;
    let now = Period {
        known_at: super::reports::now_to_the_microsecond().max(s.period.known_at),
        ..s.period
    };
    let built = report::build_for(&*tx, &caller, s.scope, now, s.settings.borrow()).await?;
    let body = serde_json::to_string(&built.report).map_err(|e| ApiError::Unexpected(e.into()))?;
    let figures = json(&body)?;
    let mut diff = Vec::new();
    differences("", &json(&s.body)?, &figures, &mut diff);
    // The moment itself always differs; it is reported beside, not as a change of figure.
    diff.retain(|d| d.figure != "period.known_at");
    let new_id = store_reproducible(
        &*tx,
        &caller,
        ("indicators", s.scope.name(), s.scope.id()),
        &now,
        &built.report.inputs.hash,
        &figures,
        Some(Reproducible {
            settings: &s.settings,
            body: &body,
            restates: Some(id),
        }),
    )
    .await?;
    let restatement = Restatement {
        restates: id,
        known_at_before: s.period.known_at,
        known_at_after: now.known_at,
        differences: diff,
        recorded_since: recorded_between(
            &*tx,
            &built.people,
            &built.orgs,
            s.period.known_at,
            now.known_at,
        )
        .await?,
    };
    tx.commit().await?;
    let mut answer = figures;
    answer["report_id"] = new_id.into();
    answer["restatement"] =
        serde_json::to_value(&restatement).map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(HttpResponse::Created().json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_each_changed_leaf() {
        let a = json!({"x": {"n": 1, "m": [1, 2]}, "y": "same", "z": null});
        let b = json!({"x": {"n": 2, "m": [1, 3]}, "y": "same", "w": true});
        let mut out = Vec::new();
        differences("", &a, &b, &mut out);
        let names: Vec<&str> = out.iter().map(|d| d.figure.as_str()).collect();
        assert_eq!(names, ["w", "x.m[1]", "x.n"]);
        assert_eq!(out[2].before, json!(1));
        assert_eq!(out[2].after, json!(2));
        let mut none = Vec::new();
        differences("", &a, &a, &mut none);
        assert!(none.is_empty());
    }
}

//! Payment statements over HTTP (JSON or CSV), one per contract of a provider the caller can
//! see, priced by [`super::payment`] from the contract's terms version valid on the period's
//! first day. Owns the payment ledger (`payment_statements`, `payment_ledger`):
//!
//! - `GET /v1/outcomes/statements` is a preview: it shows what issuing would pay now (less what
//!   the ledger already holds), is stored as a report, and records nothing in the ledger.
//! - `POST /v1/outcomes/statements` (the commissioner, who pays) issues: under a lock on each
//!   contract, it prices the same way and records the statement and every item it paid or
//!   deducted, so a later statement over an overlapping period leaves those out and says why.

use actix_web::{get, post, web, HttpResponse};
use chrono::{NaiveDate, NaiveTime};
use sha2::Digest;
use tokio_postgres::GenericClient;

use super::contracts::{terms_for_period, TermsVersion};
use super::measures::Period;
use super::payment::{self, Issued, Statement, StatementInputs};
use super::report::{self, Scope};
use super::reports::{
    period, safe_csv, store, store_unaudited, wants_csv, ReportFormat, ReportQuery,
};
use super::routes::READERS;
use super::METHOD_VERSION;
use crate::auth::{Caller, Role};
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};
use utoipa_actix_web::service_config::ServiceConfig;

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(preview)
        .service(issue)
        .service(issued_statement);
}

/// The last day after the periods issued for a contract (the latest `period_to`), if any: a
/// new terms version may not start before it.
pub(super) async fn issued_until(
    c: &impl GenericClient,
    contract_id: i32,
) -> Result<Option<NaiveDate>, ApiError> {
    Ok(c.query_one(
        "SELECT max(period_to) FROM payment_statements WHERE contract_id = $1",
        &[&contract_id],
    )
    .await?
    .get(0))
}

/// What the ledger holds for a contract.
async fn ledger(c: &impl GenericClient, contract_id: i32) -> Result<Vec<Issued>, ApiError> {
    Ok(c.query(
        "SELECT s.id, l.code, l.item_key, s.period_from, s.period_to
               FROM payment_ledger l JOIN payment_statements s ON s.id = l.statement_id
              WHERE l.contract_id = $1 ORDER BY l.id",
        &[&contract_id],
    )
    .await?
    .iter()
    .map(|r| Issued {
        statement_id: r.get(0),
        code: r.get(1),
        key: r.get(2),
        period_from: r.get(3),
        period_to: r.get(4),
    })
    .collect())
}

/// One contract's statement and what it was priced with.
struct Priced {
    contract_id: i32,
    reference: String,
    terms: TermsVersion,
    statement: Statement,
}

/// Midnight UTC starting `day`.
fn start_of(day: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// Prices each contract (`(id, reference)`) for the period, less what its ledger holds;
/// feeds every input into `hasher`.
async fn price(
    c: &impl GenericClient,
    caller: &Caller,
    state: &AppState,
    p: &Period,
    contracts: &[(i32, String)],
    hasher: &mut sha2::Sha256,
) -> Result<Vec<Priced>, ApiError> {
    let s = &state.settings.outcomes;
    let mut out = Vec::new();
    for (id, reference) in contracts {
        let id = *id;
        let terms = terms_for_period(c, id, reference, p.from, p.to).await?;
        let loaded = report::load_scope(c, caller, Scope::Contract(id), p, s).await?;
        let results: Vec<(i64, String)> = c
            .query(
                concat!(
                    "SELECT record_id, result FROM ",
                    super::load::known!("reablement_episodes"),
                    " e WHERE contract_id = $2 AND ended_on >= $3 AND ended_on < $4
                       AND ended_on <= $5 ORDER BY record_id"
                ),
                &[&p.known_at, &id, &p.from, &p.to, &p.as_of],
            )
            .await?
            .iter()
            .filter_map(|r| Some((r.get(0), r.get::<_, Option<String>>(1)?)))
            .collect();
        // Missed visits count for people funded under the contract on the visit's day.
        let mut missed = Vec::new();
        if terms.terms.missed_visit_penalty_pence.is_some() {
            let due_by = start_of(p.as_of + chrono::Duration::days(1));
            for org in &loaded.orgs {
                let visits = crate::evv::figures::missed_visits(
                    c,
                    &state.settings.evv,
                    *org,
                    &loaded.people,
                    (start_of(p.from), start_of(p.to)),
                    due_by,
                    p.known_at,
                )
                .await?;
                for v in visits {
                    let day = v.window_start.date_naive();
                    let funded = loaded.inputs.people.iter().any(|x| {
                        x.person_id == v.person_id
                            && x.periods
                                .iter()
                                .any(|&(s, e, _)| s <= day && e.is_none_or(|e| day <= e))
                    });
                    if funded {
                        missed.push(v.scheduled_visit_id);
                    }
                }
            }
            missed.sort_unstable();
        }
        let issued = ledger(c, id).await?;
        let avoided = super::measures::falls_and_avoided(&loaded.inputs, p, s);
        let inputs = StatementInputs {
            plans: &loaded.inputs.plans,
            episode_results: &results,
            missed_visits: &missed,
            falls_avoided: &avoided.falls_avoided,
            admissions_avoided: &avoided.admissions_avoided,
            care_home_admissions_avoided: Some(&avoided.care_home_admissions_avoided),
        };
        let statement = payment::statement(&terms.terms, &inputs, p, s, &issued);
        hasher.update(
            serde_json::to_vec(&(
                &loaded.inputs,
                &results,
                &missed,
                (&terms.version, &terms.terms),
                &issued,
            ))
            .unwrap_or_default(),
        );
        out.push(Priced {
            contract_id: id,
            reference: reference.clone(),
            terms,
            statement,
        });
    }
    hasher.update(serde_json::to_vec(&(s, (p.from, p.to, p.as_of))).unwrap_or_default());
    Ok(out)
}

/// The body of a statement response.
fn body(
    state: &AppState,
    provider: i32,
    p: &Period,
    hash: &str,
    priced: &[Priced],
    issued: Option<&[i64]>,
) -> serde_json::Value {
    let s = &state.settings.outcomes;
    let statements: Vec<serde_json::Value> = priced
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let mut v = serde_json::json!({
                "contract_id": x.contract_id,
                "reference": x.reference,
                "terms_version": {
                    "version": x.terms.version,
                    "valid_from": x.terms.valid_from,
                    "set_by_user_id": x.terms.set_by_user_id,
                    "set_by_organisation_id": x.terms.set_by_organisation_id,
                    "set_at": x.terms.set_at,
                },
                "terms": x.terms.terms,
                "confidence_level": s.confidence_level,
                // The contract's reference rates (with their intervals and sources): what an
                // avoided figure is compared with when there is no comparison cohort.
                "reference_rates": x.terms.terms.reference_rates,
                "lines": x.statement.lines,
                "context": x.statement.context,
                "left_out": x.statement.left_out,
                "total_pence": x.statement.total_pence,
            });
            if let Some(ids) = issued {
                v["statement_id"] = ids[i].into();
            }
            v
        })
        .collect();
    serde_json::json!({
        "method_version": METHOD_VERSION,
        "provider_id": provider,
        "period": p,
        "input_hash": hash,
        "currency": "GBP (pence)",
        "preview": issued.is_none(),
        "issued": issued.is_some(),
        "note": if issued.is_some() {
            "issued: recorded in the payment ledger; a later statement will not pay these items again"
        } else {
            "preview: nothing is recorded in the payment ledger; the commissioner issues a statement with POST"
        },
        "statements": statements,
    })
}

fn csv_response(body: &serde_json::Value, id: i64, hash: String) -> Result<HttpResponse, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut write = || -> Result<(), csv::Error> {
        w.write_record([
            "contract_id",
            "reference",
            "code",
            "description",
            "quantity",
            "amount_pence",
            "kind",
        ])?;
        // `paid` rows add up to the total; `context` rows are never paid; `left_out` rows are
        // items an issued statement paid (the description says which and why).
        for st in body["statements"].as_array().into_iter().flatten() {
            let rows = [
                ("lines", "paid"),
                ("context", "context"),
                ("left_out", "left_out"),
            ];
            for (field, kind) in rows {
                for l in st[field].as_array().into_iter().flatten() {
                    let text = |k: &str| l[k].as_str().unwrap_or_default().to_string();
                    let (description, quantity) = if kind == "left_out" {
                        (
                            format!("{}: {}", text("key"), text("reason")),
                            "1".to_string(),
                        )
                    } else {
                        (text("description"), l["quantity"].to_string())
                    };
                    w.write_record([
                        st["contract_id"].to_string(),
                        st["reference"].as_str().unwrap_or_default().to_string(),
                        text("code"),
                        description,
                        quantity,
                        l["amount_pence"].to_string(),
                        kind.to_string(),
                    ])?;
                }
            }
        }
        Ok(())
    };
    write().map_err(|e| ApiError::Unexpected(e.into()))?;
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("X-Report-Id", id.to_string()))
        .insert_header(("X-Input-Hash", hash))
        .body(safe_csv(&bytes)?))
}

/// A preview of the payment statements for one provider and period, one per contract the
/// caller can see; nothing is recorded in the payment ledger.
#[utoipa::path(
    operation_id = "get_payment_statements",
    tag = "outcomes",
    params(
        ("provider_id" = Option<i32>, Query, description = "The provider (for a commissioner: required); default the caller's organisation."),
        ("from" = chrono::NaiveDate, Query, description = "The first day of the period; before `to`, at most three years before it."),
        ("to" = chrono::NaiveDate, Query, description = "The day after the period."),
        ("as_of" = Option<chrono::NaiveDate>, Query, description = "The day the figures are judged on, not before `to`."),
        ("format" = inline(Option<ReportFormat>), Query, description = "`json` (default) or `csv`."),
    ),
    responses(
        (status = 200, description = "`preview: true`; a statement per contract with the \
            terms version used, the confidence level and reference rates, its lines (each \
            with the keyed items it pays), context lines (never paid), the items left out \
            because an issued statement paid them, and the total in pence; the inputs' hash \
            and `report_id`. As CSV, the id is in `X-Report-Id` and the hash in \
            `X-Input-Hash`.",
            content(
                (Object = "application/json"),
                (String = "text/csv"),
            ),
            links(("stored" = (operation_id = "get_stored_report",
                parameters(("id" = "$response.body#/report_id")))))),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[get("/v1/outcomes/statements")]
async fn preview(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let p = period(&q)?;
    let csv = wants_csv(&q.format)?;
    let mut c = state.db(&caller).await?;
    let tx = c.transaction().await?;
    let provider = crate::auth::visibility(&caller, &*tx)
        .await?
        .one_provider(q.provider_id)?;
    let contracts: Vec<(i32, String)> = tx
        .query(
            "SELECT id, reference FROM contracts
              WHERE provider_id = $1 AND (commissioner_id = $2 OR provider_id = $2)
                AND starts_on < $3 AND (ends_on IS NULL OR ends_on >= $4)
              ORDER BY id",
            &[&provider, &caller.organisation_id, &p.to, &p.from],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut hasher = sha2::Sha256::new();
    let priced = price(&*tx, &caller, &state, &p, &contracts, &mut hasher).await?;
    let hash = hex::encode(hasher.finalize());
    let mut body = body(&state, provider, &p, &hash, &priced, None);
    let id = store(
        &*tx,
        &caller,
        ("statement", "provider", Some(provider)),
        &p,
        &hash,
        &body,
    )
    .await?;
    tx.commit().await?;
    body["report_id"] = id.into();
    if csv {
        return csv_response(&body, id, hash);
    }
    Ok(HttpResponse::Ok().json(body))
}

/// Issues the payment statements for one provider and period (the commissioner, for its own
/// contracts with the provider): records each statement and every item it pays or deducts in
/// the payment ledger. An item an issued statement already paid (the same plan outcome,
/// episode or visit; a period's sum for an overlapping period) is left out, and listed with
/// the statement that paid it.
#[utoipa::path(
    operation_id = "issue_payment_statements",
    tag = "outcomes",
    params(
        ("provider_id" = i32, Query, description = "The provider."),
        ("from" = chrono::NaiveDate, Query, description = "The first day of the period; before `to`, at most three years before it."),
        ("to" = chrono::NaiveDate, Query, description = "The day after the period."),
        ("as_of" = Option<chrono::NaiveDate>, Query, description = "The day the figures are judged on, not before `to`."),
        ("format" = inline(Option<ReportFormat>), Query, description = "`json` (default) or `csv`."),
    ),
    responses(
        (status = 200, description = "`issued: true`; as the preview, each statement with \
            its `statement_id` in the ledger.",
            content(
                (Object = "application/json"),
                (String = "text/csv"),
            ),
            links(("stored" = (operation_id = "get_stored_report",
                parameters(("id" = "$response.body#/report_id")))))),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[post("/v1/outcomes/statements")]
async fn issue(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Commissioner])?;
    let p = period(&q)?;
    let csv = wants_csv(&q.format)?;
    let mut c = state.db(&caller).await?;
    let provider = crate::auth::visibility(&caller, &**c)
        .await?
        .one_provider(q.provider_id)?;
    let tx = c.transaction().await?;
    // The lock on each contract orders issuing (and new terms versions): a second issue for
    // the same contract waits and then sees the first one's ledger.
    let contracts: Vec<(i32, String)> = tx
        .query(
            "SELECT id, reference FROM contracts
              WHERE provider_id = $1 AND commissioner_id = $2
                AND starts_on < $3 AND (ends_on IS NULL OR ends_on >= $4)
              ORDER BY id FOR UPDATE",
            &[&provider, &caller.organisation_id, &p.to, &p.from],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut hasher = sha2::Sha256::new();
    let priced = price(&*tx, &caller, &state, &p, &contracts, &mut hasher).await?;
    let hash = hex::encode(hasher.finalize());
    // Statement ids first, so that the stored figures are the issued ones, with their ids.
    let ids: Vec<i64> = tx
        .query(
            "SELECT nextval(pg_get_serial_sequence('payment_statements', 'id'))
               FROM generate_series(1, $1)",
            &[&(priced.len() as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut body = body(&state, provider, &p, &hash, &priced, Some(&ids));
    let report_id = store_unaudited(
        &*tx,
        &caller,
        ("statement", "provider", Some(provider)),
        &p,
        &hash,
        &body,
    )
    .await?;
    for (x, id) in priced.iter().zip(&ids) {
        tx.execute(
            "INSERT INTO payment_statements (id, contract_id, terms_version, period_from, period_to, as_of, report_id, total_pence, issued_by)
             OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[id, &x.contract_id, &x.terms.version, &p.from, &p.to, &p.as_of, &report_id, &x.statement.total_pence, &caller.user_id],
        )
        .await?;
        for l in &x.statement.lines {
            for item in &l.items {
                tx.execute(
                    "INSERT INTO payment_ledger (statement_id, contract_id, code, item_key, amount_pence)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[id, &x.contract_id, &l.code, &item.key, &item.amount_pence],
                )
                .await?;
            }
        }
    }
    for (x, id) in priced.iter().zip(&ids) {
        crate::audit::by(
            &*tx,
            &caller,
            crate::audit::Entry::new(
                caller.organisation_id,
                "statement.issue",
                "statement",
                id,
                serde_json::json!({
                    "contract_id": x.contract_id, "terms_version": x.terms.version,
                    "from": p.from, "to": p.to, "as_of": p.as_of, "report_id": report_id,
                    "total_pence": x.statement.total_pence,
                }),
            ),
        )
        .await?;
    }
    tx.commit().await?;
    body["report_id"] = report_id.into();
    if csv {
        return csv_response(&body, report_id, hash);
    }
    Ok(HttpResponse::Ok().json(body))
}

/// An issued statement as issued: the stored statement report's body with only this
/// statement in `statements`, and the report's id and input hash. The statement must be of a
/// contract the caller's organisation is party to (commissioner or provider; migration 0021
/// lets both read its report); otherwise "not found".
pub async fn issued(
    c: &impl GenericClient,
    caller: &Caller,
    id: i64,
) -> Result<(serde_json::Value, i64, String), ApiError> {
    caller.require(READERS)?;
    let row = c
        .query_opt(
            "SELECT r.figures, r.id, r.input_hash
               FROM payment_statements s
               JOIN contracts k ON k.id = s.contract_id
               JOIN outcome_reports r ON r.id = s.report_id
              WHERE s.id = $1 AND (k.commissioner_id = $2 OR k.provider_id = $2)",
            &[&id, &caller.organisation_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("statement {id}")))?;
    let mut body: serde_json::Value = row.get(0);
    if let Some(all) = body["statements"].as_array_mut() {
        all.retain(|st| st["statement_id"].as_i64() == Some(id));
    }
    Ok((body, row.get(1), row.get(2)))
}

/// [`issued`] as CSV (the statements' CSV columns).
pub async fn issued_csv(
    c: &impl GenericClient,
    caller: &Caller,
    id: i64,
) -> Result<HttpResponse, ApiError> {
    let (body, report_id, hash) = issued(c, caller, id).await?;
    csv_response(&body, report_id, hash)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct IssuedQuery {
    /// `json` (default) or `csv`.
    #[param(inline, value_type = Option<ReportFormat>)]
    format: Option<String>,
}

/// One issued statement, as issued, for the parties of its contract: the statement report's
/// body with only this statement, as JSON or CSV.
#[utoipa::path(
    operation_id = "get_issued_statement",
    tag = "outcomes",
    params(("id" = i64, Path, description = "The statement's id (`statement_id`)."), IssuedQuery),
    responses(
        (status = 200, description = "The statement as issued; as CSV, the report's id is in \
            `X-Report-Id` and the hash in `X-Input-Hash`.",
            content(
                (Object = "application/json"),
                (String = "text/csv"),
            )),
        doc::Forbidden,
        doc::NotFound,
        doc::Invalid,
    ),
)]
#[get("/v1/outcomes/statements/{id}")]
async fn issued_statement(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    q: web::Query<IssuedQuery>,
) -> Result<HttpResponse, ApiError> {
    let csv = wants_csv(&q.format)?;
    let c = state.db(&caller).await?;
    let (mut body, report_id, hash) = issued(&**c, &caller, path.into_inner()).await?;
    if csv {
        return csv_response(&body, report_id, hash);
    }
    body["report_id"] = report_id.into();
    Ok(HttpResponse::Ok().json(body))
}

//! Payment statements over HTTP (JSON or CSV): one per contract of a provider the caller can
//! see, priced by [`super::payment`] from the contract's terms and stored as a report.

use actix_web::{get, web, HttpResponse};

use super::payment::{self, StatementInputs, Terms};
use super::report::{self, Scope};
use super::reports::{period, safe_csv, store, wants_csv, ReportFormat, ReportQuery};
use super::routes::READERS;
use super::METHOD_VERSION;
use crate::auth::Caller;
use crate::http::openapi as doc;
use crate::http::{ApiError, AppState};
use utoipa_actix_web::service_config::ServiceConfig;

pub(super) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(statements);
}

/// Payment statements for one provider and period, one per contract the caller can see.
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
        (status = 200, description = "A statement per contract with its lines and total in \
            pence, the inputs' hash and `report_id`; as CSV, the id is in `X-Report-Id` and \
            the hash in `X-Input-Hash`.",
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
async fn statements(
    caller: Caller,
    state: web::Data<AppState>,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(READERS)?;
    let p = period(&q)?;
    let csv = wants_csv(&q.format)?;
    let s = &state.settings.outcomes;
    let c = state.pool.get().await?;
    let provider = crate::auth::visibility(&caller, &**c)
        .await?
        .one_provider(q.provider_id)?;
    let contracts = c
        .query(
            "SELECT id, reference, terms FROM contracts
              WHERE provider_id = $1 AND (commissioner_id = $2 OR provider_id = $2)
                AND starts_on < $3 AND (ends_on IS NULL OR ends_on >= $4)
              ORDER BY id",
            &[&provider, &caller.organisation_id, &p.to, &p.from],
        )
        .await?;
    let mut out = Vec::new();
    let mut hasher = sha2::Sha256::new();
    use sha2::Digest;
    for row in contracts {
        let id: i32 = row.get(0);
        let reference: String = row.get(1);
        let terms: Terms = serde_json::from_value(row.get(2)).map_err(|e| {
            ApiError::Unexpected(anyhow::anyhow!(
                "contract {id} has terms this version cannot read: {e}"
            ))
        })?;
        let loaded = report::load_scope(&**c, &caller, Scope::Contract(id), &p, s).await?;
        let results: Vec<String> = c
            .query(
                concat!(
                    "SELECT result FROM ",
                    super::load::known!("reablement_episodes"),
                    " e WHERE contract_id = $2 AND ended_on >= $3 AND ended_on < $4
                       AND ended_on <= $5 ORDER BY record_id"
                ),
                &[&p.known_at, &id, &p.from, &p.to, &p.as_of],
            )
            .await?
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(0))
            .collect();
        let (_, fa, aa, _) = super::measures::falls_and_avoided(&loaded.inputs, &p, s);
        let inputs = StatementInputs {
            plans: &loaded.inputs.plans,
            episode_results: &results,
            falls_avoided: &fa,
            admissions_avoided: &aa,
        };
        let lines = payment::statement(&terms, &inputs, &p, s);
        let total: i64 = lines.iter().map(|l| l.amount_pence).sum();
        hasher.update(serde_json::to_vec(&(&loaded.inputs, &results, &terms)).unwrap_or_default());
        out.push(serde_json::json!({
            "contract_id": id, "reference": reference, "terms": terms,
            "lines": lines, "total_pence": total,
        }));
    }
    hasher.update(serde_json::to_vec(&(s, (p.from, p.to, p.as_of))).unwrap_or_default());
    let hash = hex::encode(hasher.finalize());
    let mut body = serde_json::json!({
        "method_version": METHOD_VERSION,
        "provider_id": provider,
        "period": p,
        "input_hash": hash,
        "currency": "GBP (pence)",
        "statements": out,
    });
    let id = store(
        &**c,
        &caller,
        ("statement", "provider", Some(provider)),
        &p,
        &hash,
        &body,
    )
    .await?;
    body["report_id"] = id.into();
    if csv {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut write = || -> Result<(), csv::Error> {
            w.write_record([
                "contract_id",
                "reference",
                "code",
                "description",
                "quantity",
                "amount_pence",
            ])?;
            for st in body["statements"].as_array().into_iter().flatten() {
                for l in st["lines"].as_array().into_iter().flatten() {
                    w.write_record([
                        st["contract_id"].to_string(),
                        st["reference"].as_str().unwrap_or_default().to_string(),
                        l["code"].as_str().unwrap_or_default().to_string(),
                        l["description"].as_str().unwrap_or_default().to_string(),
                        l["quantity"].to_string(),
                        l["amount_pence"].to_string(),
                    ])?;
                }
            }
            Ok(())
        };
        write().map_err(|e| ApiError::Unexpected(e.into()))?;
        let bytes = w
            .into_inner()
            .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("{e}")))?;
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header(("X-Report-Id", id.to_string()))
            .insert_header(("X-Input-Hash", hash))
            .body(safe_csv(&bytes)?));
    }
    Ok(HttpResponse::Ok().json(body))
}

//! The cross-tenant sweep: every route of the role table (`routes::ROUTES`, the same list the
//! OpenAPI test checks) called by every role of another organisation with a real id of the
//! first one in its path, its query or its body.
//!
//! Provider A is seeded with one of everything the API has ids for; commissioner C1 contracts
//! A. Provider B and commissioner C2 (contracting only B) are the other tenants. For every
//! route and every user of B and C2: a role outside the route's set gets 403; an id route
//! answers 404; a list answers without any of A's data; a create route refuses A's ids in its
//! body; nothing of A's (or C1's) rows changes; and B cannot tell A's id from a missing one
//! (same status, same answer with ids blotted out). Probes mix B's ids with A's where a route
//! takes two, and B's streams listen while A acts on its alarm. Then A's and C1's own users
//! get past the id routes (not 404), so the 404s above mean something, and A's lists (and
//! C1's, where a commissioner may read) hold A's data.
//!
//! Every route must be classified in `SWEEP`: a route added to the table (and to the OpenAPI
//! description) without a classification fails the test.
//!
//! One file: the seeding, the route table's id substitutions and the sweep are one fixture,
//! and splitting them would scatter what each route is called with from what it must answer.

use std::time::Duration;

use homeward::auth::{self, OrgKind, Role};
use homeward_testkit::mqtt::publish_json;
use homeward_testkit::{eventually, spawn_app_with, test_settings, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::routes::{Access, Route, ROUTES};
use crate::visits::{ms, now_s, phone_sends, HOME};

/// Every string of A's (and C1's) data holds this, so a body of B's that holds it leaks.
const MARK: &str = "sweepmark";

/// A period the outcome routes are asked about (A's records fall inside it).
const PERIOD: &str = "from=2026-01-01&to=2026-04-01&as_of=2026-05-01";

/// What A's admin must find in a list, proving the list can show A's data at all.
#[derive(Debug, Clone, Copy)]
enum Needle {
    /// The marker string (names, references, uids).
    Mark,
    /// `"id":<the care alarm>`.
    Alarm,
    /// `"id":<the technical alarm>`.
    TechnicalAlarm,
    /// Figures only: nothing to look for.
    Nothing,
}

/// How a route touches another organisation's data.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// No tenant data (health, metrics): the body must hold no marker.
    Public,
    /// The caller themselves (`/v1/me`).
    Me,
    /// A list or figures of the caller's organisation. `probes` are full queries ("" is the
    /// table's own) with `{provider}`, `{person}`, `{contract}` standing for A's ids. When
    /// `b_empty`, B has none of these, so each array in B's answer must be empty.
    List {
        probes: &'static [&'static str],
        needle: Needle,
        b_empty: bool,
    },
    /// The event stream: checked with events of A's while B listens.
    Stream,
    /// Makes a row of the caller's organisation; ids in the body are replaced with A's.
    Create,
    /// An upsert keyed by the caller's organisation and a name in the path (an area, an age
    /// group): B's write must not touch A's (C1's) row of the same name.
    Keyed,
    /// Device credentials (check-ins): B's phone naming A's visit and person.
    Device,
    /// An external broker's hook (EMQX): no user's token opens it, and it returns no tenant
    /// data to anyone.
    Hook,
    /// Names one of A's things in the path. `commissioner_sees`: C1 (contracting A) may see
    /// it too, so C1's users are among the owners that must not get 404.
    Id { commissioner_sees: bool },
    /// A person's one-time link or code is the credential (no token): anyone holding it may
    /// answer, so a token or code no one was given must answer with no 2xx and nothing of A's.
    Capability,
}

const NO_PROBES: &[&str] = &[""];

const fn list(probes: &'static [&'static str], needle: Needle, b_empty: bool) -> Kind {
    Kind::List {
        probes,
        needle,
        b_empty,
    }
}

const fn id() -> Kind {
    Kind::Id {
        commissioner_sees: false,
    }
}

const fn shared_id() -> Kind {
    Kind::Id {
        commissioner_sees: true,
    }
}

/// The classification of every route of `ROUTES`.
const SWEEP: &[(&str, &str, Kind)] = &[
    ("GET", "/healthz", Kind::Public),
    ("GET", "/readyz", Kind::Public),
    ("GET", "/metrics", Kind::Public),
    ("GET", "/v1/openapi.json", Kind::Public),
    ("GET", "/docs", Kind::Public),
    ("GET", "/v1/me", Kind::Me),
    ("GET", "/v1/devices", list(NO_PROBES, Needle::Mark, false)),
    ("POST", "/v1/devices", Kind::Create),
    ("GET", "/v1/devices/{uid}", id()),
    ("POST", "/v1/devices/{uid}/disable", id()),
    ("POST", "/v1/devices/{uid}/enable", id()),
    ("POST", "/v1/devices/{uid}/rotate-secret", id()),
    ("PUT", "/v1/devices/{uid}/link", id()),
    ("POST", "/v1/users", Kind::Create),
    ("PATCH", "/v1/users/{id}", id()),
    ("GET", "/v1/users", list(NO_PROBES, Needle::Mark, false)),
    ("GET", "/v1/users/{id}/tokens", id()),
    ("POST", "/v1/users/{id}/tokens", id()),
    ("POST", "/v1/users/{id}/disable", id()),
    ("POST", "/v1/users/{id}/enable", id()),
    ("POST", "/v1/users/{id}/password-link", id()),
    ("DELETE", "/v1/tokens/{id}", id()),
    ("POST", "/v1/check-ins", Kind::Device),
    ("POST", "/v1/emqx/authenticate", Kind::Hook),
    ("POST", "/v1/emqx/authorize", Kind::Hook),
    (
        "GET",
        "/v1/dead-letters",
        list(&["", "limit=500"], Needle::Mark, true),
    ),
    ("GET", "/v1/live", Kind::Stream),
    ("POST", "/v1/people", Kind::Create),
    ("GET", "/v1/people", list(NO_PROBES, Needle::Mark, false)),
    ("GET", "/v1/people/{id}", id()),
    ("PATCH", "/v1/people/{id}", id()),
    ("PUT", "/v1/geofence-policies/{area}", Kind::Keyed),
    ("POST", "/v1/workers", Kind::Create),
    ("GET", "/v1/workers", list(NO_PROBES, Needle::Mark, false)),
    ("GET", "/v1/workers/{id}", id()),
    ("PATCH", "/v1/workers/{id}", id()),
    ("PUT", "/v1/workers/{id}/phones/{uid}", id()),
    ("POST", "/v1/scheduled-visits", Kind::Create),
    (
        "GET",
        "/v1/scheduled-visits",
        list(NO_PROBES, Needle::Mark, false),
    ),
    ("PATCH", "/v1/scheduled-visits/{id}", id()),
    ("POST", "/v1/scheduled-visits/{id}/cancel", id()),
    (
        "GET",
        "/v1/visits",
        list(&["", "unmatched=true"], Needle::Mark, false),
    ),
    ("GET", "/v1/visits/{id}", shared_id()),
    ("POST", "/v1/visits/{id}/adjustments", id()),
    ("POST", "/v1/visits/manual", Kind::Create),
    (
        "GET",
        "/v1/visits/exceptions",
        list(&["", "include_resolved=true"], Needle::Nothing, false),
    ),
    (
        "GET",
        "/v1/visits/export",
        list(&["", "format=csv"], Needle::Mark, false),
    ),
    (
        "GET",
        "/v1/missed-visits",
        list(&["", "status=all", "state=all"], Needle::Mark, true),
    ),
    (
        "GET",
        "/v1/alarms",
        list(&["", "status=all"], Needle::Alarm, true),
    ),
    (
        "GET",
        "/v1/technical-alarms",
        list(&["", "status=all"], Needle::TechnicalAlarm, true),
    ),
    ("GET", "/v1/alarms/{id}", id()),
    ("POST", "/v1/alarms/{id}/acknowledge", id()),
    ("POST", "/v1/alarms/{id}/dispatch", id()),
    ("POST", "/v1/alarms/{id}/arrive", id()),
    ("POST", "/v1/alarms/{id}/resolve", id()),
    ("POST", "/v1/alarms/{id}/close", id()),
    (
        "GET",
        "/v1/alarms/response-times",
        list(&["", "provider_id={provider}"], Needle::Nothing, false),
    ),
    (
        "GET",
        "/v1/device-health",
        list(NO_PROBES, Needle::Mark, false),
    ),
    ("POST", "/v1/outcomes/service-periods", Kind::Create),
    ("POST", "/v1/outcomes/hospital-stays", Kind::Create),
    ("POST", "/v1/outcomes/hospital-stays/{id}/discharge", id()),
    ("POST", "/v1/outcomes/reablement-episodes", Kind::Create),
    ("POST", "/v1/outcomes/reablement-episodes/{id}/end", id()),
    (
        "POST",
        "/v1/outcomes/reablement-episodes/{id}/follow-up",
        id(),
    ),
    ("POST", "/v1/outcomes/care-home-admissions", Kind::Create),
    (
        "POST",
        "/v1/outcomes/care-home-admissions/{id}/discharge",
        id(),
    ),
    ("POST", "/v1/outcomes/deaths", Kind::Create),
    ("POST", "/v1/outcomes/recorded-falls", Kind::Create),
    ("POST", "/v1/outcomes/{kind}/{id}/corrections", id()),
    ("POST", "/v1/outcomes/{kind}/{id}/withdraw", id()),
    ("POST", "/v1/outcomes/{kind}/{id}/verify", id()),
    ("GET", "/v1/outcomes/people/{id}/episodes", id()),
    ("POST", "/v1/outcome-plans", Kind::Create),
    (
        "GET",
        "/v1/outcome-plans",
        list(
            &[
                "",
                "awaiting=agreement",
                "awaiting=verification",
                "contract_id={contract}",
                "person_id={person}",
            ],
            Needle::Mark,
            false,
        ),
    ),
    ("GET", "/v1/outcome-plans/{id}", shared_id()),
    ("POST", "/v1/outcome-plans/{id}/agree", id()),
    (
        "POST",
        "/v1/outcome-plans/{id}/outcomes/{outcome}/confirmation-links",
        id(),
    ),
    (
        "POST",
        "/v1/outcome-plans/{id}/outcomes/{outcome}/verify",
        id(),
    ),
    ("GET", "/confirm", Kind::Public),
    ("POST", "/confirm", Kind::Capability),
    ("GET", "/confirm/{token}", Kind::Capability),
    ("POST", "/confirm/{token}", Kind::Capability),
    ("GET", "/v1/confirmations/{token}", Kind::Capability),
    ("POST", "/v1/confirmations/{token}", Kind::Capability),
    ("PUT", "/v1/outcomes/populations/{age_group}", Kind::Keyed),
    ("POST", "/v1/outcomes/comparison-cohorts", Kind::Create),
    (
        "GET",
        "/v1/outcomes/comparison-cohorts",
        list(NO_PROBES, Needle::Mark, true),
    ),
    ("GET", "/v1/outcomes/comparison-cohorts/{id}", shared_id()),
    (
        "PUT",
        "/v1/outcomes/comparison-cohorts/{id}/members/{reference}",
        shared_id(),
    ),
    (
        "POST",
        "/v1/outcomes/comparison-cohorts/{id}/events",
        shared_id(),
    ),
    (
        "POST",
        "/v1/outcomes/comparison-cohorts/{id}/events/{event}/withdraw",
        shared_id(),
    ),
    ("GET", "/v1/audit", list(NO_PROBES, Needle::Mark, false)),
    ("GET", "/v1/contracts", list(NO_PROBES, Needle::Mark, false)),
    ("GET", "/v1/contracts/{id}/terms", shared_id()),
    ("PUT", "/v1/contracts/{id}/terms", shared_id()),
    ("POST", "/v1/contract-proposals", Kind::Create),
    (
        "GET",
        "/v1/contract-proposals",
        list(&["", "status=open"], Needle::Mark, true),
    ),
    ("POST", "/v1/contract-proposals/{id}/accept", id()),
    ("POST", "/v1/contract-proposals/{id}/decline", id()),
    ("POST", "/v1/contract-proposals/{id}/withdraw", shared_id()),
    (
        "GET",
        "/v1/outcomes/report",
        list(
            &[
                "",
                "scope=provider&id={provider}&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
                "scope=person&id={person}&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
                "scope=contract&id={contract}&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
                "scope=provider&from=2026-01-01&to=2026-04-01&as_of=2026-05-01&format=csv",
            ],
            Needle::Nothing,
            false,
        ),
    ),
    (
        "GET",
        "/v1/outcomes/statements",
        list(
            &[
                "",
                "provider_id={provider}&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
                "provider_id={provider}&from=2026-01-01&to=2026-04-01&as_of=2026-05-01&format=csv",
            ],
            Needle::Mark,
            false,
        ),
    ),
    (
        "POST",
        "/v1/outcomes/statements",
        list(
            &[
                "",
                "provider_id={provider}&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
            ],
            Needle::Mark,
            false,
        ),
    ),
    ("GET", "/v1/outcomes/statements/{id}", shared_id()),
    (
        "GET",
        "/v1/outcomes/export",
        list(
            &[
                "",
                "scope=provider&id={provider}&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
                "scope=contract&id={contract}&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
            ],
            Needle::Nothing,
            false,
        ),
    ),
    (
        "GET",
        "/v1/outcomes/funnel",
        list(
            &[
                "",
                "indicator=still_at_home_91_days&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
            ],
            Needle::Mark,
            false,
        ),
    ),
    ("GET", "/v1/outcomes/reports/{id}", id()),
    ("GET", "/v1/outcomes/reports/{id}/reproduction", id()),
    ("POST", "/v1/outcomes/reports/{id}/restatements", id()),
];

fn kind_of(route: &Route) -> Option<Kind> {
    SWEEP
        .iter()
        .find(|(m, p, _)| *m == route.method && *p == route.path)
        .map(|(_, _, k)| *k)
}

/// The sweep's table and the role table name the same routes.
#[test]
fn every_route_is_classified_for_the_sweep() {
    let unclassified: Vec<String> = ROUTES
        .iter()
        .filter(|r| kind_of(r).is_none())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        unclassified.is_empty(),
        "routes without a cross-tenant classification in tests/api/sweep.rs: {unclassified:?}"
    );
    let stale: Vec<String> = SWEEP
        .iter()
        .filter(|(m, p, _)| !ROUTES.iter().any(|r| r.method == *m && r.path == *p))
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert!(stale.is_empty(), "classified but not in ROUTES: {stale:?}");
}

/// A user of one of the four organisations.
struct User {
    org: &'static str,
    role: Role,
    token: String,
}

impl User {
    fn label(&self) -> String {
        format!("{} {}", self.org, self.role.as_str())
    }
}

/// A's ids (and C1's contract with A), and B's own for the mixed probes.
struct Seeded {
    provider_a: i32,
    person: i32,
    pseudonym: String,
    worker: i32,
    hub: String,
    phone: String,
    scheduled: i64,
    visit: i64,
    alarm: i64,
    technical_alarm: i64,
    stay: i64,
    episode: i64,
    care_home: i64,
    plan: i64,
    plan_outcome: i64,
    contract: i32,
    /// A contract C1 proposed to A, open.
    proposal: i64,
    report: i64,
    /// The statement C1 issued to A.
    statement: i64,
    cohort: i64,
    cohort_event: i64,
    spare_user: i32,
    spare_token: i32,
    area: String,
    person_b: i64,
    worker_b: i64,
    phone_b: String,
    phone_b_secret: String,
}

impl Seeded {
    /// The route's path with A's ids, named by the segment before each parameter.
    fn path(&self, route: &Route) -> String {
        self.path_for(route, false)
    }

    /// The route's path with ids no one has.
    fn missing_path(&self, route: &Route) -> String {
        self.path_for(route, true)
    }

    fn path_for(&self, route: &Route, missing: bool) -> String {
        let segments: Vec<&str> = route.path.split('/').collect();
        let mut out = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let before = if i > 0 { segments[i - 1] } else { "" };
            let value = match (*seg, before) {
                ("{uid}", "devices") => self.hub.clone(),
                ("{uid}", "phones") => self.phone.clone(),
                ("{id}", "users") => self.spare_user.to_string(),
                ("{id}", "tokens") => self.spare_token.to_string(),
                ("{id}", "people") => self.person.to_string(),
                ("{id}", "workers") => self.worker.to_string(),
                ("{id}", "scheduled-visits") => self.scheduled.to_string(),
                ("{id}", "visits") => self.visit.to_string(),
                ("{id}", "alarms") => self.alarm.to_string(),
                ("{id}", "hospital-stays") => self.stay.to_string(),
                // The generic record routes are swept with A's hospital stay.
                ("{kind}", "outcomes") => "hospital-stays".to_string(),
                ("{id}", "{kind}") => self.stay.to_string(),
                // A token no one was given.
                ("{token}", _) => "0".repeat(64),
                ("{id}", "reablement-episodes") => self.episode.to_string(),
                ("{id}", "care-home-admissions") => self.care_home.to_string(),
                ("{id}", "outcome-plans") => self.plan.to_string(),
                ("{outcome}", "outcomes") => self.plan_outcome.to_string(),
                ("{id}", "contracts") => self.contract.to_string(),
                ("{id}", "contract-proposals") => self.proposal.to_string(),
                ("{id}", "reports") => self.report.to_string(),
                ("{id}", "statements") => self.statement.to_string(),
                ("{id}", "comparison-cohorts") => self.cohort.to_string(),
                ("{reference}", "members") => "W-sweepmark-1".to_string(),
                ("{event}", "events") => self.cohort_event.to_string(),
                ("{area}", _) => self.area.clone(),
                ("{age_group}", _) => "65%2B".to_string(),
                (s, _) if s.starts_with('{') => {
                    panic!("no seeded id of A's for {s} in {}", route.path)
                }
                (s, _) => s.to_string(),
            };
            let value = match *seg {
                "{uid}" if missing => "nosuch-uid".to_string(),
                s if missing && s.starts_with('{') && value.parse::<i64>().is_ok() => {
                    "2000000000".to_string()
                }
                _ => value,
            };
            out.push(value);
        }
        out.join("/")
    }

    fn query(&self, q: &str) -> String {
        q.replace("{provider}", &self.provider_a.to_string())
            .replace("{person}", &self.person.to_string())
            .replace("{contract}", &self.contract.to_string())
    }

    /// The table's body with every id field set to A's; whether any was.
    fn body(&self, body: Option<Value>) -> (Option<Value>, bool) {
        let Some(mut body) = body else {
            return (None, false);
        };
        let mut replaced = false;
        if let Some(obj) = body.as_object_mut() {
            for (key, value) in obj.iter_mut() {
                let new = match key.as_str() {
                    "person_id" => json!(self.person),
                    "scheduled_visit_id" => json!(self.scheduled),
                    "contract_id" => json!(self.contract),
                    "worker_id" => json!(self.worker),
                    "hospital_stay_id" => json!(self.stay),
                    "phone_uid" => json!(self.phone),
                    _ => continue,
                };
                *value = new;
                replaced = true;
            }
        }
        (Some(body), replaced)
    }

    /// An answer with its ids and uids blotted out, to compare answers about A's ids with
    /// answers about missing ones.
    fn blot(&self, text: &str) -> String {
        let text = text
            .replace(&self.hub, "U")
            .replace(&self.phone, "U")
            .replace("nosuch-uid", "U");
        let mut out = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                if !out.ends_with('N') {
                    out.push('N');
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Whether a body of another tenant's holds any of A's data.
    fn leaks(&self, body: &str) -> bool {
        body.to_lowercase().contains(MARK) || body.contains(&self.pseudonym)
    }
}

/// (status, body) of a call named as the route table names its method.
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    app.request_text(method, path, token, body).await
}

fn allowed(route: &Route, role: Role) -> bool {
    match route.access {
        Access::Public => true,
        Access::Device | Access::Hook => false,
        Access::Roles(roles) => roles.contains(&role),
    }
}

/// Every array at the top of a JSON object is empty.
fn all_arrays_empty(body: &str) -> bool {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(obj)) => obj
            .values()
            .all(|v| v.as_array().is_none_or(|a| a.is_empty())),
        _ => true,
    }
}

/// A's and C1's rows, table by table, as text (without what the server notes on its own).
async fn snapshot(app: &TestApp, orgs: &[i32]) -> Vec<(&'static str, String)> {
    const BY_ORG: &[&str] = &[
        "users",
        "people",
        "workers",
        "devices",
        "dead_letters",
        "evv_area_policies",
        "scheduled_visits",
        "visit_adjustments",
        "visits",
        "missed_visit_alerts",
        "alarms",
        "alarm_actions",
        "alarm_events",
        "service_periods",
        "hospital_stays",
        "reablement_episodes",
        "care_home_admissions",
        "deaths",
        "recorded_falls",
        "outcome_plans",
        "outcome_reports",
    ];
    // Append-only tables with no organisation of their own: whole, so a row anyone adds shows.
    const WHOLE: &[&str] = &[
        "outcome_record_verifications",
        "plan_confirmation_links",
        "plan_outcome_confirmations",
        "plan_outcome_verifications",
    ];
    let mut queries: Vec<(&'static str, String)> = BY_ORG
        .iter()
        .map(|t| (*t, format!("FROM {t} t WHERE t.organisation_id = ANY($1)")))
        .collect();
    queries.extend(
        WHOLE
            .iter()
            .map(|t| (*t, format!("FROM {t} t WHERE $1::int[] IS NOT NULL"))),
    );
    queries.extend([
        ("organisations", "FROM organisations t WHERE t.id = ANY($1)".to_string()),
        (
            "api_tokens",
            "FROM api_tokens t WHERE t.user_id IN (SELECT id FROM users WHERE organisation_id = ANY($1))".to_string(),
        ),
        (
            "password_links",
            "FROM password_links t WHERE t.user_id IN (SELECT id FROM users WHERE organisation_id = ANY($1))".to_string(),
        ),
        (
            "contracts",
            "FROM contracts t WHERE t.provider_id = ANY($1) OR t.commissioner_id = ANY($1)".to_string(),
        ),
        (
            "contract_proposals",
            "FROM contract_proposals t WHERE t.provider_id = ANY($1) OR t.commissioner_id = ANY($1)".to_string(),
        ),
        (
            "contract_terms",
            "FROM contract_terms t WHERE t.contract_id IN (SELECT id FROM contracts WHERE provider_id = ANY($1) OR commissioner_id = ANY($1))".to_string(),
        ),
        (
            "payment_statements",
            "FROM payment_statements t WHERE t.contract_id IN (SELECT id FROM contracts WHERE provider_id = ANY($1) OR commissioner_id = ANY($1))".to_string(),
        ),
        (
            "payment_ledger",
            "FROM payment_ledger t WHERE t.contract_id IN (SELECT id FROM contracts WHERE provider_id = ANY($1) OR commissioner_id = ANY($1))".to_string(),
        ),
        (
            "plan_outcomes",
            "FROM plan_outcomes t WHERE t.plan_id IN (SELECT id FROM outcome_plans WHERE organisation_id = ANY($1))".to_string(),
        ),
        (
            "commissioner_populations",
            "FROM commissioner_populations t WHERE t.commissioner_id = ANY($1)".to_string(),
        ),
        (
            "comparison_cohorts",
            "FROM comparison_cohorts t WHERE t.commissioner_id = ANY($1)".to_string(),
        ),
        (
            "comparison_members",
            "FROM comparison_members t WHERE t.cohort_id IN (SELECT id FROM comparison_cohorts WHERE commissioner_id = ANY($1))".to_string(),
        ),
        (
            "comparison_events",
            "FROM comparison_events t WHERE t.cohort_id IN (SELECT id FROM comparison_cohorts WHERE commissioner_id = ANY($1))".to_string(),
        ),
        (
            "comparison_event_withdrawals",
            "FROM comparison_event_withdrawals t WHERE t.event_id IN (SELECT e.id FROM comparison_events e JOIN comparison_cohorts c ON c.id = e.cohort_id WHERE c.commissioner_id = ANY($1))".to_string(),
        ),
        (
            "credential_revocations",
            "FROM credential_revocations t
              WHERE t.user_id IN (SELECT id FROM users WHERE organisation_id = ANY($1))
                 OR t.token_id IN (SELECT k.id FROM api_tokens k JOIN users u ON u.id = k.user_id WHERE u.organisation_id = ANY($1))
                 OR t.device_id IN (SELECT id FROM devices WHERE organisation_id = ANY($1))"
                .to_string(),
        ),
        (
            "events",
            "FROM events t WHERE t.device_id IN (SELECT id FROM devices WHERE organisation_id = ANY($1))".to_string(),
        ),
    ]);
    let client = app.pool.get().await.unwrap();
    let mut out = Vec::new();
    for (table, from) in queries {
        let row = (if table == "api_tokens" {
            "to_jsonb(t) - 'last_used_at'"
        } else {
            "to_jsonb(t)"
        })
        .to_string();
        let sql = format!(
            "SELECT coalesce(string_agg(({row})::text, E'\\n' ORDER BY ({row})::text), '') {from}"
        );
        let text: String = client.query_one(&sql, &[&orgs]).await.unwrap().get(0);
        out.push((table, text));
    }
    out
}

#[tokio::test]
async fn no_route_reaches_another_organisations_data() {
    let mut settings = test_settings();
    settings.evv.missed_visit_check_secs = 1;
    let app = spawn_app_with(settings).await;

    // ------------------------------------------------------------ organisations and users
    let client = app.pool.get().await.unwrap();
    let mut orgs = Vec::new();
    for (name, kind) in [
        ("Provider A Sweepmark", OrgKind::Provider),
        ("Council C1 Sweepmark", OrgKind::Commissioner),
        ("Provider B", OrgKind::Provider),
        ("Council C2", OrgKind::Commissioner),
    ] {
        orgs.push(
            auth::create_organisation(&**client, name, kind)
                .await
                .unwrap(),
        );
    }
    let (a, c1, b, c2) = (&orgs[0], &orgs[1], &orgs[2], &orgs[3]);
    let mut users: Vec<User> = Vec::new();
    for (label, org) in [("A", a), ("C1", c1), ("B", b), ("C2", c2)] {
        let roles: &[Role] = if org.kind == OrgKind::Provider {
            &[
                Role::ProviderAdmin,
                Role::ProviderStaff,
                Role::Responder,
                Role::Auditor,
            ]
        } else {
            &[Role::Commissioner, Role::Auditor]
        };
        for &role in roles {
            let name = format!("{} {} user", org.name, role.as_str());
            let (_, token) = auth::create_user(&**client, org, &name, role)
                .await
                .unwrap();
            users.push(User {
                org: label,
                role,
                token,
            });
        }
    }
    let token = |org: &str, role: Role| -> String {
        users
            .iter()
            .find(|u| u.org == org && u.role == role)
            .unwrap()
            .token
            .clone()
    };
    let admin_a = token("A", Role::ProviderAdmin);
    let council_a = token("C1", Role::Commissioner);
    let admin_b = token("B", Role::ProviderAdmin);
    let (spare_user, _) =
        auth::create_user(&**client, a, "Spare Sweepmark user", Role::ProviderStaff)
            .await
            .unwrap();
    let spare_token: i32 = client
        .query_one(
            "SELECT id FROM api_tokens WHERE user_id = $1",
            &[&spare_user],
        )
        .await
        .unwrap()
        .get(0);
    let contract: i32 = client
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on) VALUES ($1, $2, 'CA-sweepmark', '2025-01-01') RETURNING id",
            &[&c1.id, &a.id],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on) VALUES ($1, $2, 'CB-1', '2025-01-01')",
            &[&c2.id, &b.id],
        )
        .await
        .unwrap();

    // ------------------------------------------------------------ A's data, through the API
    let hub = "hub-sweepmark".to_string();
    let phone = "phone-sweepmark".to_string();
    let area = "area-sweepmark".to_string();
    let hub_secret = app.device(a, &hub, "hub").await;
    let phone_secret = app.device(a, &phone, "phone").await;
    let person = app.request_ok(Method::POST, "/v1/people", &admin_a, Some(&json!({
        "external_ref": "PA-sweepmark", "display_name": "Ada Sweepmark", "date_of_birth": "1940-06-01",
        "home_lat": HOME.0, "home_lon": HOME.1, "area": area,
    })))
    .await;
    let person_id = person["id"].as_i64().unwrap() as i32;
    let pseudonym = person["pseudonym"].as_str().unwrap().to_string();
    app.request_ok(
        Method::PUT,
        &format!("/v1/geofence-policies/{area}"),
        &admin_a,
        Some(&json!({"geofence_policy": "warn"})),
    )
    .await;
    let worker = app
        .request_ok(
            Method::POST,
            "/v1/workers",
            &admin_a,
            Some(&json!({
                "external_ref": "WA-sweepmark", "display_name": "Bea Sweepmark", "phone_uid": phone,
            })),
        )
        .await["id"]
        .as_i64()
        .unwrap() as i32;
    client
        .execute(
            "UPDATE devices SET person_id = $1 WHERE uid = $2",
            &[&person_id, &hub],
        )
        .await
        .unwrap();
    // Due (window start + 30 minutes' grace) only after the test: no alert comes and goes.
    let start = now_s() - chrono::Duration::minutes(20);
    let schedule = |reference: &str, start: chrono::DateTime<chrono::Utc>, minutes: i64| {
        let body = json!({
            "reference": reference, "person_id": person_id, "worker_id": worker,
            "window_start": start, "window_end": start + chrono::Duration::minutes(minutes),
            "service_type": "personal_care sweepmark",
        });
        let (app, admin_a) = (&app, &admin_a);
        async move {
            app.request_ok(Method::POST, "/v1/scheduled-visits", admin_a, Some(&body))
                .await["id"]
                .as_i64()
                .unwrap()
        }
    };
    schedule("VA-sweepmark-1", start, 60).await;
    // Missed: no one came.
    schedule(
        "VA-sweepmark-2",
        now_s() - chrono::Duration::minutes(45),
        60,
    )
    .await;
    // Tomorrow: the one the routes cancel and enter manual visits for.
    let scheduled = schedule("VA-sweepmark-3", now_s() + chrono::Duration::days(1), 60).await;
    phone_sends(
        &app,
        &phone,
        &phone_secret,
        json!([
            {"seq": 1, "t": ms(start + chrono::Duration::minutes(5)), "kind": "check_in", "method": "gps", "visit": "VA-sweepmark-1", "lat": HOME.0, "lon": HOME.1, "accuracy_m": 10.0, "fix_age_s": 2},
            {"seq": 2, "t": ms(start + chrono::Duration::minutes(15)), "kind": "check_out", "method": "gps", "visit": "VA-sweepmark-1", "lat": HOME.0, "lon": HOME.1, "accuracy_m": 10.0, "fix_age_s": 2},
        ]),
    )
    .await;
    let wait = Duration::from_secs(20);
    let visit = eventually(wait, || async {
        let v = app.get_ok("/v1/visits", &admin_a).await;
        v["items"]
            .as_array()?
            .iter()
            .find(|v| v["completed"] == true)?["id"]
            .as_i64()
    })
    .await
    .expect("A's visit is derived");
    // A care alarm from the hub, and a message that is dead-lettered.
    publish_json(
        &app,
        &hub,
        &hub_secret,
        vec![
            json!({"seq": 1, "t": ms(now_s()), "kind": "pendant_alarm"}),
            json!({"seq": 2, "t": ms(now_s()), "kind": "sweepmark_unknown_kind"}),
        ],
    )
    .await;
    let alarm = eventually(wait, || async {
        app.get_ok("/v1/alarms", &admin_a).await["items"]
            .as_array()?
            .first()?["id"]
            .as_i64()
    })
    .await
    .expect("A's alarm is raised");
    eventually(wait, || async {
        let d = app.get_ok("/v1/dead-letters", &admin_a).await;
        (!d["items"].as_array()?.is_empty()).then_some(())
    })
    .await
    .expect("A's dead letter is kept");
    eventually(wait, || async {
        let m = app.get_ok("/v1/missed-visits", &admin_a).await;
        m.to_string().contains("VA-sweepmark-2").then_some(())
    })
    .await
    .expect("A's missed-visit alert is raised");
    // A technical alarm (device health), written as derivation would.
    let technical_alarm: i64 = client
        .query_one(
            "INSERT INTO alarms (organisation_id, category, kind, severity, state, fold_key, person_id,
                                 source_device_id, source_seq, last_device_id, last_seq, raised_at, received_at, last_seen_at)
             SELECT $1, 'technical', 'battery_low', 'low', 'raised', 'd' || d.id, d.person_id, d.id, 99, d.id, 99, now(), now(), now()
               FROM devices d WHERE d.uid = $2 RETURNING id",
            &[&a.id, &hub],
        )
        .await
        .unwrap()
        .get(0);
    // Outcomes: service under C1's contract, a stay, an episode, a plan, terms, population.
    app.request_ok(
        Method::POST,
        "/v1/outcomes/service-periods",
        &admin_a,
        Some(&json!({
            "person_id": person_id, "contract_id": contract, "started_on": "2025-01-01",
        })),
    )
    .await;
    let stay = app
        .request_ok(
            Method::POST,
            "/v1/outcomes/hospital-stays",
            &admin_a,
            Some(&json!({
                "person_id": person_id, "admitted_on": "2026-01-02",
            })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let episode = app
        .request_ok(
            Method::POST,
            "/v1/outcomes/reablement-episodes",
            &admin_a,
            Some(&json!({
                "person_id": person_id, "contract_id": contract, "started_on": "2026-01-10",
            })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let care_home = app
        .request_ok(
            Method::POST,
            "/v1/outcomes/care-home-admissions",
            &admin_a,
            Some(&json!({
                "person_id": person_id, "admitted_on": "2026-02-01", "setting": "residential", "permanent": false,
            })),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let plan = app.request_ok(Method::POST, "/v1/outcome-plans", &admin_a, Some(&json!({
        "person_id": person_id, "contract_id": contract, "starts_on": "2026-01-01", "ends_on": "2026-03-31",
        "outcomes": [{"statement": "I can cook a meal (sweepmark)", "kind": "reablement", "payable": true, "target_date": "2026-03-01"}],
    })))
    .await;
    let plan_outcome = plan["outcomes"][0]["id"].as_i64().unwrap();
    let plan = plan["id"].as_i64().unwrap();
    app.request_ok(
        Method::PUT,
        &format!("/v1/contracts/{contract}/terms"),
        &council_a,
        Some(&json!({"plan_upfront": {"upfront_bp": 2000}})),
    )
    .await;
    app.request_ok(
        Method::PUT,
        "/v1/outcomes/populations/65%2B",
        &council_a,
        Some(&json!({"population": 43210})),
    )
    .await;
    // C1's comparison cohort for the contract, with a member and an event.
    let cohort = app
        .request_ok(
            Method::POST,
            "/v1/outcomes/comparison-cohorts",
            &council_a,
            Some(&json!({"name": "waiting sweepmark", "selection": "referred sweepmark", "contract_id": contract})),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    app.request_ok(
        Method::PUT,
        &format!("/v1/outcomes/comparison-cohorts/{cohort}/members/W-sweepmark-1"),
        &council_a,
        Some(&json!({"index_date": "2025-12-01", "follow_from": "2026-01-01"})),
    )
    .await;
    let cohort_event = app
        .request_ok(
            Method::POST,
            &format!("/v1/outcomes/comparison-cohorts/{cohort}/events"),
            &council_a,
            Some(&json!({"reference": "W-sweepmark-1", "kind": "fall", "occurred_on": "2026-02-01", "source": "GP sweepmark"})),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let report = app
        .get_ok(
            &format!("/v1/outcomes/report?scope=provider&{PERIOD}"),
            &admin_a,
        )
        .await["report_id"]
        .as_i64()
        .unwrap();

    let statement = app
        .request_ok(
            Method::POST,
            &format!("/v1/outcomes/statements?provider_id={}&{PERIOD}", a.id),
            &council_a,
            None,
        )
        .await["statements"][0]["statement_id"]
        .as_i64()
        .unwrap();

    let proposal = app
        .request_ok(
            Method::POST,
            "/v1/contract-proposals",
            &council_a,
            Some(
                &json!({"provider": a.id.to_string(), "reference": "CP-sweepmark",
                "starts_on": "2027-04-01"}),
            ),
        )
        .await["id"]
        .as_i64()
        .unwrap();

    // B's own person, worker and phone, for the probes mixing B's ids with A's.
    let phone_b = "phone-b1".to_string();
    let phone_b_secret = app.device(b, &phone_b, "phone").await;
    let person_b = app
        .request_ok(
            Method::POST,
            "/v1/people",
            &admin_b,
            Some(&json!({"external_ref": "PB-1"})),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let worker_b = app
        .request_ok(
            Method::POST,
            "/v1/workers",
            &admin_b,
            Some(&json!({"external_ref": "WB-1"})),
        )
        .await["id"]
        .as_i64()
        .unwrap();

    let s = Seeded {
        provider_a: a.id,
        person: person_id,
        pseudonym,
        worker,
        hub,
        phone,
        scheduled,
        visit,
        alarm,
        technical_alarm,
        stay,
        episode,
        care_home,
        plan,
        plan_outcome,
        contract,
        proposal,
        report,
        statement,
        cohort,
        cohort_event,
        spare_user,
        spare_token,
        area,
        person_b,
        worker_b,
        phone_b,
        phone_b_secret,
    };
    let owners = [a.id, c1.id];
    let before = snapshot(&app, &owners).await;

    // ------------------------------------------------------------ B and C2 against A
    let others: Vec<&User> = users
        .iter()
        .filter(|u| u.org == "B" || u.org == "C2")
        .collect();
    let mut wrong: Vec<String> = Vec::new();
    // Answers that leak nothing but differ from the 404 other routes give: printed, not failed.
    let mut notes: Vec<String> = Vec::new();
    let mut calls = 0usize;
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for route in ROUTES {
        let Some(kind) = kind_of(route) else {
            wrong.push(format!("{} {}: not classified", route.method, route.path));
            continue;
        };
        let name = format!("{} {}", route.method, route.path);
        *counts
            .entry(match kind {
                Kind::Public => "public",
                Kind::Me => "me",
                Kind::List { .. } => "list",
                Kind::Stream => "stream",
                Kind::Create => "create",
                Kind::Keyed => "keyed",
                Kind::Device => "device",
                Kind::Hook => "hook",
                Kind::Id { .. } => "id",
                Kind::Capability => "capability",
            })
            .or_default() += 1;
        let path = s.path(route);
        let (body, has_a_ids) = s.body((route.body)());
        let with_query = |q: &str| {
            let q = if q.is_empty() { route.query } else { q };
            if q.is_empty() {
                path.clone()
            } else {
                format!("{path}?{}", s.query(q))
            }
        };
        match kind {
            Kind::Public => {
                calls += 1;
                let (status, text) = call(&app, route.method, &path, None, None).await;
                if status != 200 || s.leaks(&text) {
                    wrong.push(format!(
                        "{name} (public): {status}, leaks: {}",
                        s.leaks(&text)
                    ));
                }
                continue;
            }
            Kind::Capability => {
                // Without a credential, and with each user's: a made-up link is nobody's.
                for token in
                    std::iter::once(None).chain(others.iter().map(|u| Some(u.token.as_str())))
                {
                    calls += 1;
                    let (status, text) =
                        call(&app, route.method, &path, token, body.as_ref()).await;
                    if (200..300).contains(&status) || status >= 500 || s.leaks(&text) {
                        wrong.push(format!("{name} (capability): {status} {text}"));
                    }
                }
                continue;
            }
            Kind::Hook => {
                // Every user's token is refused (404 here: the sweep configures no hook
                // secret, so the route does not exist).
                for u in &others {
                    calls += 1;
                    let (status, text) = call(
                        &app,
                        route.method,
                        &path,
                        Some(u.token.as_str()),
                        body.as_ref(),
                    )
                    .await;
                    if status != 404 || s.leaks(&text) {
                        wrong.push(format!("{name} as {}: {status}, expected 404", u.label()));
                    }
                }
                continue;
            }
            Kind::Device => {
                // Every user's token is refused; B's phone names A's visit and person.
                for u in &others {
                    calls += 1;
                    let (status, _) = call(
                        &app,
                        route.method,
                        &path,
                        Some(u.token.as_str()),
                        body.as_ref(),
                    )
                    .await;
                    if status != 401 {
                        wrong.push(format!("{name} as {}: {status}, expected 401", u.label()));
                    }
                }
                calls += 1;
                phone_sends(&app, &s.phone_b, &s.phone_b_secret, json!([
                    {"seq": 1, "t": ms(now_s() - chrono::Duration::minutes(10)), "kind": "check_in", "method": "gps", "visit": "VA-sweepmark-3", "person": "PA-sweepmark", "lat": HOME.0, "lon": HOME.1},
                    {"seq": 2, "t": ms(now_s() - chrono::Duration::minutes(5)), "kind": "check_out", "method": "gps", "visit": "VA-sweepmark-3", "person": "PA-sweepmark", "lat": HOME.0, "lon": HOME.1},
                ]))
                .await;
                continue;
            }
            _ => {}
        }
        for u in &others {
            let token = Some(u.token.as_str());
            if !allowed(route, u.role) {
                calls += 1;
                let (status, _) =
                    call(&app, route.method, &with_query(""), token, body.as_ref()).await;
                if status != 403 {
                    wrong.push(format!(
                        "{name} as {}: {status}, expected 403 (role)",
                        u.label()
                    ));
                }
                continue;
            }
            match kind {
                Kind::Public | Kind::Device | Kind::Hook | Kind::Capability => unreachable!(),
                Kind::Me => {
                    calls += 1;
                    let (status, text) = call(&app, route.method, &path, token, None).await;
                    if status != 200 || s.leaks(&text) {
                        wrong.push(format!("{name} as {}: {status} {text}", u.label()));
                    }
                }
                Kind::Stream => {
                    calls += 1;
                    let r = app.get(&path, Some(&u.token)).await;
                    if r.status() != 200 {
                        wrong.push(format!("{name} as {}: {}", u.label(), r.status()));
                    }
                }
                Kind::List {
                    probes, b_empty, ..
                } => {
                    for probe in probes.iter().copied() {
                        calls += 1;
                        let url = with_query(probe);
                        let (status, text) = call(&app, route.method, &url, token, None).await;
                        let names_a = probe.contains('{');
                        let ok = match status {
                            200 => !s.leaks(&text) && (!b_empty || all_arrays_empty(&text)),
                            // A's id named in the query, or a parameter a commissioner must give.
                            404 => names_a,
                            422 => u.role == Role::Commissioner || u.org == "C2",
                            _ => false,
                        };
                        if !ok {
                            wrong.push(format!("GET {url} as {}: {status} {text}", u.label()));
                        }
                        if ok && names_a && status == 200 {
                            notes.push(format!("GET {url} as {}: 200 without A's data", u.label()));
                        }
                    }
                }
                Kind::Create => {
                    calls += 1;
                    let (status, text) =
                        call(&app, route.method, &path, token, body.as_ref()).await;
                    let ok = if has_a_ids {
                        matches!(status, 404 | 422)
                    } else {
                        !(200..300).contains(&status) || !s.leaks(&text)
                    };
                    if !ok {
                        wrong.push(format!(
                            "{name} as {} with A's ids: {status} {text}",
                            u.label()
                        ));
                    }
                }
                Kind::Keyed => {
                    calls += 1;
                    let (status, text) =
                        call(&app, route.method, &path, token, body.as_ref()).await;
                    if status != 200 {
                        wrong.push(format!("{name} as {}: {status} {text}", u.label()));
                    }
                }
                Kind::Id { .. } => {
                    calls += 1;
                    let url = with_query("");
                    let (status, text) = call(&app, route.method, &url, token, body.as_ref()).await;
                    if status != 404 {
                        wrong.push(format!(
                            "{} {url} as {}: {status} {text}",
                            route.method,
                            u.label()
                        ));
                    }
                    // Nor can B tell A's id from one that does not exist.
                    calls += 1;
                    let missing = s.missing_path(route);
                    let (status2, text2) =
                        call(&app, route.method, &missing, token, body.as_ref()).await;
                    if (status, s.blot(&text)) != (status2, s.blot(&text2)) {
                        wrong.push(format!(
                            "{} {url} as {} tells A's id from a missing one: {status} {text} / {status2} {text2}",
                            route.method,
                            u.label()
                        ));
                    }
                }
            }
        }
    }

    // Probes the table's bodies cannot express: B's ids mixed with A's, the council's side of
    // a plan, A's ids in the bodies of B's own records.
    let council_b = token("C2", Role::Commissioner);
    let (council_b, admin_b) = (council_b.as_str(), admin_b.as_str());
    let probes: Vec<(&str, String, &str, Value)> = vec![
        (
            "POST",
            format!("/v1/outcome-plans/{}/agree", s.plan),
            council_b,
            json!({"party": "council"}),
        ),
        (
            "PUT",
            format!("/v1/workers/{}/phones/{}", s.worker_b, s.phone),
            admin_b,
            Value::Null,
        ),
        (
            "PUT",
            format!("/v1/workers/{}/phones/{}", s.worker, s.phone_b),
            admin_b,
            Value::Null,
        ),
        (
            "POST",
            "/v1/workers".into(),
            admin_b,
            json!({"external_ref": "WB-2", "phone_uid": s.phone}),
        ),
        (
            "POST",
            "/v1/scheduled-visits".into(),
            admin_b,
            json!({
                "reference": "VB-1", "person_id": s.person_b, "worker_id": s.worker,
                "window_start": "2026-01-01T09:00:00Z", "window_end": "2026-01-01T10:00:00Z", "service_type": "x",
            }),
        ),
        (
            "POST",
            "/v1/outcomes/service-periods".into(),
            admin_b,
            json!({"person_id": s.person_b, "contract_id": s.contract, "started_on": "2026-01-01"}),
        ),
        (
            "POST",
            "/v1/outcomes/reablement-episodes".into(),
            admin_b,
            json!({"person_id": s.person_b, "contract_id": s.contract, "started_on": "2026-01-01"}),
        ),
        (
            "POST",
            "/v1/outcomes/reablement-episodes".into(),
            admin_b,
            json!({"person_id": s.person_b, "hospital_stay_id": s.stay, "started_on": "2026-01-01"}),
        ),
        (
            "POST",
            "/v1/outcome-plans".into(),
            admin_b,
            json!({
                "person_id": s.person_b, "contract_id": s.contract, "starts_on": "2026-01-01", "ends_on": "2026-03-31",
                "outcomes": [{"statement": "I can x", "kind": "reablement", "payable": false, "target_date": "2026-03-01"}],
            }),
        ),
        (
            "POST",
            format!("/v1/users/{}/tokens", s.spare_user),
            admin_b,
            json!({"service": true}),
        ),
        (
            "GET",
            format!(
                "/v1/outcomes/statements?provider_id={}&{PERIOD}",
                s.provider_a
            ),
            admin_b,
            Value::Null,
        ),
        (
            "GET",
            format!("/v1/alarms/response-times?provider_id={}", s.provider_a),
            admin_b,
            Value::Null,
        ),
    ];
    for (method, path, token, body) in &probes {
        calls += 1;
        let body = (!body.is_null()).then_some(body);
        let (status, text) = call(&app, method, path, Some(*token), body).await;
        if !matches!(status, 404 | 422) {
            wrong.push(format!("{method} {path} (mixed ids): {status} {text}"));
        }
    }
    // Figures: C2 asking about A gets what it gets about a provider that does not exist.
    for scope in ["provider", "contract"] {
        let mut answers = Vec::new();
        let a_id = if scope == "provider" {
            i64::from(s.provider_a)
        } else {
            i64::from(s.contract)
        };
        for id in [a_id, 2_000_000_000] {
            calls += 1;
            let url = format!("/v1/outcomes/report?scope={scope}&id={id}&{PERIOD}");
            let (status, text) = call(&app, "GET", &url, Some(council_b), None).await;
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            answers.push((status, body["indicators"].clone(), body["context"].clone()));
        }
        if answers[0] != answers[1] {
            wrong.push(format!(
                "C2's {scope} report about A differs from one about nobody: {:?} vs {:?}",
                answers[0], answers[1]
            ));
        }
    }
    // B's phone, having named A's visit and person, made a visit of B's only.
    let b_visits = eventually(wait, || async {
        let v = app.get_ok("/v1/visits", admin_b).await;
        (!v["items"].as_array()?.is_empty()).then_some(v)
    })
    .await
    .expect("B's check-ins make a visit of B's");
    if s.leaks(&b_visits.to_string()) {
        wrong.push(format!(
            "B's visit from check-ins naming A's visit: {b_visits}"
        ));
    }
    let b_visit = b_visits["items"][0]["id"].as_i64().unwrap();
    calls += 1;
    let (status, text) = call(
        &app,
        "POST",
        &format!("/v1/visits/{b_visit}/adjustments"),
        Some(admin_b),
        Some(&json!({"scheduled_visit_id": s.scheduled, "reason_code": "wrong_visit"})),
    )
    .await;
    if status != 422 {
        wrong.push(format!(
            "B's visit matched to A's scheduled visit: {status} {text}"
        ));
    }

    // Nothing of A's or C1's changed.
    let after = snapshot(&app, &owners).await;
    for ((table, was), (_, is)) in before.iter().zip(&after) {
        if was != is {
            wrong.push(format!(
                "{table} of A/C1 changed:\n  before: {was}\n  after:  {is}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {calls} cross-tenant calls went wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    eprintln!(
        "cross-tenant sweep: {} routes {counts:?}, {calls} calls as B and C2",
        ROUTES.len()
    );

    // ------------------------------------------------------------ A and C1 on their own data
    // Streams of B's listen while A acts; only A's stream hears it.
    let mut stream_a = app.live(&admin_a).await;
    let mut streams_b = Vec::new();
    for role in [Role::ProviderAdmin, Role::ProviderStaff, Role::Responder] {
        streams_b.push(app.live(&token("B", role)).await);
    }
    let owners_users: Vec<&User> = users
        .iter()
        .filter(|u| u.org == "A" || u.org == "C1")
        .collect();
    let mut calls = 0usize;
    for route in ROUTES {
        let kind = kind_of(route).unwrap();
        let name = format!("{} {}", route.method, route.path);
        let path = s.path(route);
        let (body, has_a_ids) = s.body((route.body)());
        let url = if route.query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{}", route.query)
        };
        match kind {
            Kind::Id { commissioner_sees } => {
                for u in &owners_users {
                    if !allowed(route, u.role) || (u.org == "C1" && !commissioner_sees) {
                        continue;
                    }
                    calls += 1;
                    let (status, text) = call(
                        &app,
                        route.method,
                        &url,
                        Some(u.token.as_str()),
                        body.as_ref(),
                    )
                    .await;
                    if matches!(status, 401 | 403 | 404) || status >= 500 {
                        wrong.push(format!("{name} as {} (owner): {status} {text}", u.label()));
                    }
                }
            }
            Kind::Create => {
                for u in &owners_users {
                    if !allowed(route, u.role) || u.org != "A" {
                        continue;
                    }
                    calls += 1;
                    let (status, text) = call(
                        &app,
                        route.method,
                        &url,
                        Some(u.token.as_str()),
                        body.as_ref(),
                    )
                    .await;
                    let ok = (200..300).contains(&status) || status == 409;
                    if has_a_ids && !ok {
                        wrong.push(format!(
                            "{name} as {} with A's own ids: {status} {text}",
                            u.label()
                        ));
                    }
                }
            }
            Kind::List { probes, needle, .. } => {
                let needle = match needle {
                    Needle::Mark => Some(MARK.to_string()),
                    Needle::Alarm => Some(format!("\"id\":{}", s.alarm)),
                    Needle::TechnicalAlarm => Some(format!("\"id\":{}", s.technical_alarm)),
                    Needle::Nothing => None,
                };
                for probe in probes.iter() {
                    calls += 1;
                    let q = if probe.is_empty() {
                        route.query.to_string()
                    } else {
                        s.query(probe)
                    };
                    let url = if q.is_empty() {
                        path.clone()
                    } else {
                        format!("{path}?{q}")
                    };
                    // A list only commissioners may read (comparison cohorts) is read by C1.
                    let reader = if route.method == "GET" && !allowed(route, Role::ProviderAdmin) {
                        council_a.as_str()
                    } else {
                        admin_a.as_str()
                    };
                    let (status, text) = call(&app, "GET", &url, Some(reader), None).await;
                    if status != 200 {
                        wrong.push(format!("GET {url} as A's admin: {status} {text}"));
                    } else if let Some(n) = &needle {
                        if probe.is_empty() && !text.to_lowercase().contains(n) {
                            wrong.push(format!(
                                "GET {url} as A's admin does not show A's data ({n}): {text}"
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // C1, contracting A, sees A's visits by pseudonym and A's statement: what C2 must not.
    for url in [
        "/v1/visits".to_string(),
        "/v1/visits/export".to_string(),
        format!("/v1/visits/{}", s.visit),
        format!(
            "/v1/outcomes/statements?provider_id={}&{PERIOD}",
            s.provider_a
        ),
    ] {
        calls += 1;
        let (status, text) = call(&app, "GET", &url, Some(council_a.as_str()), None).await;
        if status != 200 || !(text.contains(&s.pseudonym) || text.contains("CA-sweepmark")) {
            wrong.push(format!(
                "GET {url} as C1 does not show A's data: {status} {text}"
            ));
        }
    }
    // C1 issues A's statement (recorded in the ledger), which C2 could not.
    calls += 1;
    let url = format!(
        "/v1/outcomes/statements?provider_id={}&{PERIOD}",
        s.provider_a
    );
    let (status, text) = call(&app, "POST", &url, Some(council_a.as_str()), None).await;
    if status != 200 || !text.contains("CA-sweepmark") || !text.contains("\"issued\":true") {
        wrong.push(format!(
            "POST {url} as C1 does not issue A's statement: {status} {text}"
        ));
    }
    // The council's agreement to A's plan, by C1.
    calls += 1;
    let (status, text) = call(
        &app,
        "POST",
        &format!("/v1/outcome-plans/{}/agree", s.plan),
        Some(council_a.as_str()),
        Some(&json!({"party": "council"})),
    )
    .await;
    if status != 200 {
        wrong.push(format!("C1 agreeing to A's plan: {status} {text}"));
    }
    let heard_a = stream_a.drain(Duration::from_secs(2)).await;
    if !heard_a.contains(&format!("\"id\":{}", s.alarm)) {
        wrong.push(format!(
            "A's stream did not hear A's alarm actions: {heard_a}"
        ));
    }
    for (i, stream) in streams_b.iter_mut().enumerate() {
        let heard = stream.drain(Duration::from_millis(300)).await;
        if s.leaks(&heard) || heard.contains("event: alarm") {
            wrong.push(format!("B's stream {i} heard A's events: {heard}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {calls} calls on A's own data went wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    eprintln!("owners' side: {calls} calls as A and C1");
    if !notes.is_empty() {
        eprintln!("notes:\n{}", notes.join("\n"));
    }
    app.stop().await;
}

//! Every route of the HTTP API with who may call it: the table the role test checks route by
//! route, and that any other sweep over the API (cross-tenant checks) can reuse. It lists
//! exactly the operations of the OpenAPI description the handlers generate (a test keeps the two equal), so a new route
//! cannot be added without deciding who may call it.
//!
//! The roles are those the handlers require, written out here rather than read from the code:
//! a handler that checks the wrong roles disagrees with this table.

use homeward::auth::Role;
use serde_json::{json, Value};

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Anyone, without credentials (health, metrics, the API's description).
    Public,
    /// Devices with their own credentials (HTTP Basic); a user's token is not enough.
    Device,
    /// An external broker (EMQX) with the hook secret (`mqtt.emqx_hook_secret`, which the role
    /// test sets); a user's token is not it.
    Hook,
    /// Users holding one of these roles; any other role gets 403.
    Roles(&'static [Role]),
}

/// One operation: method, path as in the OpenAPI description, who may call it, and a query
/// and a body that parse (so that the role check, not a parser, decides). Ids in bodies and
/// paths need not exist: a caller the role check lets through then gets 404 or 422.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub query: &'static str,
    pub body: fn() -> Option<Value>,
}

impl Route {
    /// The path with each `{parameter}` filled in with a value that parses, and the query.
    pub fn concrete_path(&self) -> String {
        let path = self
            .path
            .split('/')
            .map(|seg| match seg {
                "{uid}" => "hub-1",
                "{area}" => "area-1",
                "{age_group}" => "65%2B",
                s if s.starts_with('{') => "1",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        if self.query.is_empty() {
            path
        } else {
            format!("{path}?{}", self.query)
        }
    }
}

use Role::{Auditor, Commissioner, ProviderAdmin as Admin, ProviderStaff as Staff, Responder};

const ALL: &[Role] = &[Admin, Staff, Responder, Commissioner, Auditor];
const ADMIN: &[Role] = &[Admin];
/// Provider staff who manage people, visits, alarms and outcome records.
const STAFF: &[Role] = &[Admin, Staff];
/// Everyone who attends alarms.
const ATTEND: &[Role] = &[Admin, Staff, Responder];
/// Readers of visits and outcomes: providers' office staff, commissioners, auditors.
const READERS: &[Role] = &[Admin, Staff, Commissioner, Auditor];
const DEVICE_READERS: &[Role] = &[Admin, Staff, Responder, Auditor];
const DEAD_LETTER_READERS: &[Role] = &[Admin, Staff, Auditor];
const FIGURE_READERS: &[Role] = &[Admin, Staff, Commissioner];
const COMMISSIONER: &[Role] = &[Commissioner];
/// Who reads the audit log: a provider's admins, commissioners, auditors.
const AUDIT_READERS: &[Role] = &[Admin, Commissioner, Auditor];
/// Who records hospital stays, deaths, care-home admissions and episode results: provider
/// staff, and the commissioner funding the person.
const RECORDERS: &[Role] = &[Admin, Staff, Commissioner];

fn none() -> Option<Value> {
    None
}

macro_rules! route {
    ($method:literal $path:literal, $access:expr) => {
        Route {
            method: $method,
            path: $path,
            access: $access,
            query: "",
            body: none,
        }
    };
    ($method:literal $path:literal, $access:expr, $body:tt) => {
        Route {
            method: $method,
            path: $path,
            access: $access,
            query: "",
            body: || Some(json!($body)),
        }
    };
}

/// Every operation of the API.
pub const ROUTES: &[Route] = &[
    route!("GET" "/healthz", Access::Public),
    route!("GET" "/readyz", Access::Public),
    route!("GET" "/metrics", Access::Public),
    route!("GET" "/v1/openapi.json", Access::Public),
    route!("GET" "/docs", Access::Public),
    route!("GET" "/v1/me", Access::Roles(ALL)),
    route!("GET" "/v1/devices", Access::Roles(DEVICE_READERS)),
    route!("POST" "/v1/devices", Access::Roles(ADMIN), {"uid": "pendant-9", "kind": "pendant"}),
    route!("GET" "/v1/devices/{uid}", Access::Roles(DEVICE_READERS)),
    route!("POST" "/v1/devices/{uid}/disable", Access::Roles(ADMIN)),
    route!("POST" "/v1/devices/{uid}/enable", Access::Roles(ADMIN)),
    route!("POST" "/v1/devices/{uid}/rotate-secret", Access::Roles(ADMIN)),
    route!("PUT" "/v1/devices/{uid}/link", Access::Roles(ADMIN), {}),
    // Users and tokens. `{id}` is the first user, another member of the provider admin's
    // organisation, so only an admin may act on it (a user may on their own, not tabled here).
    route!("GET" "/v1/users", Access::Roles(ADMIN)),
    route!("POST" "/v1/users", Access::Roles(ADMIN), {"name": "from the role test", "role": "responder"}),
    route!("PATCH" "/v1/users/{id}", Access::Roles(ADMIN), {"role": "provider_staff"}),
    route!("GET" "/v1/users/{id}/tokens", Access::Roles(ADMIN)),
    route!("POST" "/v1/users/{id}/tokens", Access::Roles(ADMIN), {"label": "from the role test"}),
    route!("POST" "/v1/users/{id}/disable", Access::Roles(ADMIN)),
    route!("POST" "/v1/users/{id}/enable", Access::Roles(ADMIN)),
    route!("POST" "/v1/users/{id}/password-link", Access::Roles(ADMIN)),
    route!("DELETE" "/v1/tokens/{id}", Access::Roles(ADMIN)),
    route!("POST" "/v1/check-ins", Access::Device, []),
    route!("POST" "/v1/emqx/authenticate", Access::Hook, {"clientid": "hub-1", "username": "hub-1", "password": "x"}),
    route!("POST" "/v1/emqx/authorize", Access::Hook, {
        "clientid": "hub-1", "username": "hub-1", "topic": "homeward/v1/hub-1/events", "action": "publish"
    }),
    route!("GET" "/v1/dead-letters", Access::Roles(DEAD_LETTER_READERS)),
    route!("GET" "/v1/audit", Access::Roles(AUDIT_READERS)),
    route!("GET" "/v1/live", Access::Roles(ATTEND)),
    route!("POST" "/v1/people", Access::Roles(STAFF), {"external_ref": "P-9"}),
    route!("GET" "/v1/people", Access::Roles(STAFF)),
    route!("GET" "/v1/people/{id}", Access::Roles(STAFF)),
    route!("PATCH" "/v1/people/{id}", Access::Roles(STAFF), {"address": "1 High Street"}),
    route!("PUT" "/v1/geofence-policies/{area}", Access::Roles(ADMIN), {"geofence_policy": "warn"}),
    route!("POST" "/v1/workers", Access::Roles(STAFF), {"external_ref": "W-9"}),
    route!("GET" "/v1/workers", Access::Roles(STAFF)),
    route!("GET" "/v1/workers/{id}", Access::Roles(STAFF)),
    route!("PATCH" "/v1/workers/{id}", Access::Roles(STAFF), {"display_name": "Ann"}),
    route!("PUT" "/v1/workers/{id}/phones/{uid}", Access::Roles(STAFF)),
    route!("POST" "/v1/scheduled-visits", Access::Roles(STAFF), {
        "reference": "V-9", "person_id": 1, "window_start": "2026-01-01T09:00:00Z",
        "window_end": "2026-01-01T10:00:00Z", "service_type": "personal_care"
    }),
    route!("GET" "/v1/scheduled-visits", Access::Roles(STAFF)),
    route!("PATCH" "/v1/scheduled-visits/{id}", Access::Roles(STAFF), {"service_type": "meals"}),
    route!("POST" "/v1/scheduled-visits/{id}/cancel", Access::Roles(STAFF), {"reason": "in hospital"}),
    route!("GET" "/v1/visits", Access::Roles(READERS)),
    route!("GET" "/v1/visits/{id}", Access::Roles(READERS)),
    route!("POST" "/v1/visits/{id}/adjustments", Access::Roles(STAFF), {"reason_code": "forgot_to_check_out"}),
    route!("POST" "/v1/visits/manual", Access::Roles(STAFF), {
        "scheduled_visit_id": 1, "start": "2026-01-01T09:00:00Z", "end": "2026-01-01T10:00:00Z",
        "reason_code": "office_entry", "memo": "paper timesheet"
    }),
    route!("GET" "/v1/visits/exceptions", Access::Roles(READERS)),
    route!("GET" "/v1/visits/export", Access::Roles(READERS)),
    route!("GET" "/v1/missed-visits", Access::Roles(ATTEND)),
    route!("GET" "/v1/alarms", Access::Roles(ATTEND)),
    route!("GET" "/v1/technical-alarms", Access::Roles(ATTEND)),
    route!("GET" "/v1/alarms/{id}", Access::Roles(ATTEND)),
    route!("POST" "/v1/alarms/{id}/acknowledge", Access::Roles(STAFF)),
    route!("POST" "/v1/alarms/{id}/dispatch", Access::Roles(STAFF)),
    route!("POST" "/v1/alarms/{id}/arrive", Access::Roles(ATTEND)),
    route!("POST" "/v1/alarms/{id}/resolve", Access::Roles(ATTEND), {"outcome": "resolved_by_talking"}),
    route!("POST" "/v1/alarms/{id}/close", Access::Roles(STAFF)),
    route!("GET" "/v1/alarms/response-times", Access::Roles(FIGURE_READERS)),
    route!("GET" "/v1/device-health", Access::Roles(ATTEND)),
    route!("POST" "/v1/outcomes/service-periods", Access::Roles(STAFF), {"person_id": 1, "started_on": "2026-01-01"}),
    route!("POST" "/v1/outcomes/hospital-stays", Access::Roles(RECORDERS), {"person_id": 1, "admitted_on": "2026-01-01"}),
    route!("POST" "/v1/outcomes/hospital-stays/{id}/discharge", Access::Roles(RECORDERS), {
        "discharged_on": "2026-01-05", "discharge_destination": "home"
    }),
    route!("POST" "/v1/outcomes/reablement-episodes", Access::Roles(STAFF), {"person_id": 1, "started_on": "2026-01-01"}),
    route!("POST" "/v1/outcomes/reablement-episodes/{id}/end", Access::Roles(RECORDERS), {
        "ended_on": "2026-02-01", "result": "no_further_support"
    }),
    route!("POST" "/v1/outcomes/reablement-episodes/{id}/follow-up", Access::Roles(STAFF), {
        "follow_up_on": "2026-05-01", "follow_up": "at_home"
    }),
    route!("POST" "/v1/outcomes/care-home-admissions", Access::Roles(RECORDERS), {
        "person_id": 1, "admitted_on": "2026-01-01", "setting": "residential", "permanent": true
    }),
    route!("POST" "/v1/outcomes/care-home-admissions/{id}/discharge", Access::Roles(RECORDERS), {
        "discharged_on": "2026-01-05", "returned_home": true
    }),
    route!("POST" "/v1/outcomes/deaths", Access::Roles(RECORDERS), {"person_id": 1, "died_on": "2026-01-01"}),
    route!("POST" "/v1/outcomes/recorded-falls", Access::Roles(STAFF), {
        "person_id": 1, "occurred_on": "2026-01-01", "source": "GP record"
    }),
    route!("POST" "/v1/outcomes/{kind}/{id}/corrections", Access::Roles(RECORDERS), {
        "reason": "typed the wrong day", "record": {"person_id": 1, "admitted_on": "2026-01-02"}
    }),
    route!("POST" "/v1/outcomes/{kind}/{id}/withdraw", Access::Roles(RECORDERS), {"reason": "entered in error"}),
    route!("POST" "/v1/outcomes/{kind}/{id}/verify", Access::Roles(COMMISSIONER), {"verdict": "verified"}),
    route!("GET" "/v1/outcomes/people/{id}/episodes", Access::Roles(STAFF)),
    route!("POST" "/v1/outcome-plans", Access::Roles(STAFF), {
        "person_id": 1, "starts_on": "2026-01-01", "ends_on": "2026-03-31",
        "outcomes": [{"statement": "I can cook a meal for myself", "kind": "reablement", "payable": false, "target_date": "2026-03-01"}]
    }),
    route!("GET" "/v1/outcome-plans", Access::Roles(READERS)),
    route!("GET" "/v1/outcome-plans/{id}", Access::Roles(READERS)),
    // The provider's side of the agreement; the council's is the commissioner's alone.
    route!("POST" "/v1/outcome-plans/{id}/agree", Access::Roles(STAFF), {"party": "provider"}),
    route!("POST" "/v1/outcome-plans/{id}/outcomes/{outcome}/confirmation-links", Access::Roles(RECORDERS)),
    route!("POST" "/v1/outcome-plans/{id}/outcomes/{outcome}/verify", Access::Roles(COMMISSIONER), {"verdict": "verified"}),
    // The person's own channel: the link (or code) is the credential.
    route!("GET" "/confirm", Access::Public),
    route!("POST" "/confirm", Access::Public),
    route!("GET" "/confirm/{token}", Access::Public),
    route!("POST" "/confirm/{token}", Access::Public),
    route!("GET" "/v1/confirmations/{token}", Access::Public),
    route!("POST" "/v1/confirmations/{token}", Access::Public, {"answer": "yes"}),
    route!("PUT" "/v1/outcomes/populations/{age_group}", Access::Roles(COMMISSIONER), {"population": 50000}),
    route!("POST" "/v1/outcomes/comparison-cohorts", Access::Roles(COMMISSIONER), {
        "name": "waiting list", "selection": "referred and waiting", "contract_id": 1
    }),
    route!("GET" "/v1/outcomes/comparison-cohorts", Access::Roles(COMMISSIONER)),
    route!("GET" "/v1/outcomes/comparison-cohorts/{id}", Access::Roles(COMMISSIONER)),
    route!("PUT" "/v1/outcomes/comparison-cohorts/{id}/members/{reference}", Access::Roles(COMMISSIONER), {
        "index_date": "2026-01-01", "follow_from": "2026-01-05"
    }),
    route!("POST" "/v1/outcomes/comparison-cohorts/{id}/events", Access::Roles(COMMISSIONER), {
        "reference": "W1", "kind": "fall", "occurred_on": "2025-06-01", "source": "GP record"
    }),
    route!("POST" "/v1/outcomes/comparison-cohorts/{id}/events/{event}/withdraw",
           Access::Roles(COMMISSIONER), {"reason": "recorded in error"}),
    route!("GET" "/v1/contracts", Access::Roles(READERS)),
    route!("GET" "/v1/contracts/{id}/terms", Access::Roles(READERS)),
    route!("PUT" "/v1/contracts/{id}/terms", Access::Roles(COMMISSIONER), {}),
    route!("POST" "/v1/contract-proposals", Access::Roles(COMMISSIONER), {
        "provider": "No such provider", "reference": "CP-1", "starts_on": "2026-04-01"
    }),
    route!("GET" "/v1/contract-proposals", Access::Roles(READERS)),
    route!("POST" "/v1/contract-proposals/{id}/accept", Access::Roles(ADMIN)),
    route!("POST" "/v1/contract-proposals/{id}/decline", Access::Roles(ADMIN)),
    route!("POST" "/v1/contract-proposals/{id}/withdraw", Access::Roles(COMMISSIONER)),
    Route {
        query: "scope=provider&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
        ..route!("GET" "/v1/outcomes/report", Access::Roles(READERS))
    },
    Route {
        query: "from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
        ..route!("GET" "/v1/outcomes/statements", Access::Roles(READERS))
    },
    // Issuing records payments: the commissioner's alone.
    Route {
        query: "from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
        ..route!("POST" "/v1/outcomes/statements", Access::Roles(COMMISSIONER))
    },
    route!("GET" "/v1/outcomes/statements/{id}", Access::Roles(READERS)),
    Route {
        query: "scope=provider&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
        ..route!("GET" "/v1/outcomes/export", Access::Roles(READERS))
    },
    // Commissioners compare their providers (a provider sees only its own figures).
    Route {
        query: "indicator=falls&from=2026-01-01&to=2026-04-01&as_of=2026-05-01",
        ..route!("GET" "/v1/outcomes/funnel", Access::Roles(COMMISSIONER))
    },
    route!("GET" "/v1/outcomes/reports/{id}", Access::Roles(READERS)),
    route!("GET" "/v1/outcomes/reports/{id}/reproduction", Access::Roles(READERS)),
    route!("POST" "/v1/outcomes/reports/{id}/restatements", Access::Roles(READERS), {}),
];

/// Every role, for sweeps over them.
pub const ROLES: &[Role] = ALL;

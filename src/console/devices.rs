//! The provider's devices: their health, those needing attention first, in words (connection,
//! last heartbeat, battery, mains power, link), and each device's page, from which an
//! administrator links it to a person (telecare devices) or a care worker (phones), or unlinks
//! it.
//!
//! - The list is the API's: the devices of `GET /v1/devices`
//!   ([`crate::devices::routes::devices_of`]) with the health of `GET /v1/device-health`
//!   ([`crate::alarms::routes::device_health_of`]), for the roles that attend alarms.
//! - The link form is applied by [`crate::devices::routes::link_device`], the function behind
//!   `PUT /v1/devices/{uid}/link`: provider admins, the same checks and audit row, a phone's
//!   visits derived again. Then back to the device's page (Post/Redirect/Get).
//! - Provider admins register a device from the list and rotate its secret, disable or enable
//!   it from its page, through the API's own functions
//!   ([`crate::devices::routes::register_device`], [`rotate_device_secret`],
//!   [`set_device_disabled`]). A new secret is shown once, on a page that is not cached.
//! - Another organisation's device is a page that does not exist (404), and so is its form.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::board::kind_label;
use super::error::{back, html_response, Said};
use super::people::Clock;
use super::{see_other, ConsoleError, ConsoleUser, Section, Shell};
use crate::alarms::model::AlarmKind;
use crate::alarms::routes::{device_health_of, DeviceHealth, ANYONE};
use crate::auth::Role;
use crate::devices::routes::{
    device_of, devices_of, link_device, register_device, rotate_device_secret, set_device_disabled,
    LinkBody,
};
use crate::devices::{Device, DeviceKind};
use crate::http::{ApiError, AppState};
use crate::people::store;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/devices", web::get().to(list))
        .route("/devices", web::post().to(register))
        .route("/devices/{uid}", web::get().to(show))
        .route("/devices/{uid}/link", web::post().to(link))
        .route("/devices/{uid}/rotate-secret", web::post().to(rotate))
        .route("/devices/{uid}/disable", web::post().to(disable))
        .route("/devices/{uid}/enable", web::post().to(enable));
}

/// One device as the pages show it.
struct DeviceRow {
    uid: String,
    kind: &'static str,
    linked: String,
    linked_href: Option<String>,
    /// "Needs attention", "Working", ...
    status: &'static str,
    attention: bool,
    /// What is wrong, or how it is, in short lines.
    health: Vec<String>,
}

/// A device kind in words.
pub(super) fn device_kind_label(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Hub => "Hub",
        DeviceKind::Pendant => "Pendant",
        DeviceKind::FallDetector => "Fall detector",
        DeviceKind::Sensor => "Sensor",
        DeviceKind::Phone => "Care worker's phone",
    }
}

/// Names of the organisation's people and workers, by id, for "linked to".
struct Names {
    people: HashMap<i32, String>,
    workers: HashMap<i32, String>,
}

impl Names {
    async fn load(client: &crate::db::Client, org: i32) -> Result<Self, ConsoleError> {
        let people = store::people(client, org, None, None)
            .await?
            .into_iter()
            .map(|p| {
                let name = match p.display_name {
                    Some(name) => format!("{name} ({})", p.external_ref),
                    None => format!("Reference {}", p.external_ref),
                };
                (p.id, name)
            })
            .collect();
        let workers = store::workers(client, org, None, None)
            .await?
            .into_iter()
            .map(|w| {
                let name = match w.display_name {
                    Some(name) => format!("{name} ({})", w.external_ref),
                    None => format!("Reference {}", w.external_ref),
                };
                (w.id, name)
            })
            .collect();
        Ok(Self { people, workers })
    }

    fn linked(&self, d: &Device, may_open_people: bool) -> (String, Option<String>) {
        match (d.person_id, d.worker_id) {
            (Some(p), _) => (
                format!(
                    "Person: {}",
                    self.people.get(&p).cloned().unwrap_or_default()
                ),
                may_open_people.then(|| format!("/console/people/{p}")),
            ),
            (None, Some(w)) => (
                format!(
                    "Care worker: {}",
                    self.workers.get(&w).cloned().unwrap_or_default()
                ),
                None,
            ),
            (None, None) => ("Not linked".to_owned(), None),
        }
    }
}

/// How a device is, in words: whether it needs attention, its status and its lines of health.
fn assess(
    d: &Device,
    h: Option<&DeviceHealth>,
    battery_low: u8,
    clock: &Clock,
) -> (bool, &'static str, Vec<String>) {
    if d.disabled {
        return (
            false,
            "Disabled",
            vec!["Disabled: it cannot connect".into()],
        );
    }
    if d.kind == DeviceKind::Phone {
        return (
            false,
            "Not monitored",
            vec!["A phone: its health is not monitored".into()],
        );
    }
    let Some(h) = h else {
        return (true, "Needs attention", vec!["Never seen".into()]);
    };
    let mut lines = Vec::new();
    let mut attention = false;
    let since =
        |t: Option<DateTime<Utc>>| t.map_or(String::new(), |t| format!(" since {}", clock.full(t)));
    match h.online {
        Some(true) => lines.push(format!("Connected{}", since(h.presence_changed_at))),
        Some(false) => {
            attention = true;
            lines.push(format!("Offline{}", since(h.presence_changed_at)));
        }
        None => {
            attention = true;
            lines.push("Never connected".into());
        }
    }
    match h.last_heartbeat_at {
        Some(t) if h.overdue => {
            attention = true;
            lines.push(format!("Heartbeat overdue: last at {}", clock.full(t)));
        }
        Some(t) => lines.push(format!("Last heartbeat at {}", clock.full(t))),
        None => lines.push("No heartbeat yet".into()),
    }
    match h.battery {
        Some(b) if b <= i16::from(battery_low) => {
            attention = true;
            lines.push(format!("Battery low: {b}%"));
        }
        Some(b) => lines.push(format!("Battery {b}%")),
        None => {}
    }
    let open = |kind: AlarmKind| h.open_alarms.iter().any(|k| k == kind.as_str());
    if open(AlarmKind::PowerFailure) {
        attention = true;
        lines.push("Mains power failed".into());
    } else {
        lines.push("Mains power: no failure reported".into());
    }
    if open(AlarmKind::LinkFailure) {
        attention = true;
        lines.push("Connection lost (link failure)".into());
    }
    for kind in &h.open_alarms {
        let kind = AlarmKind::parse(kind);
        if !matches!(
            kind,
            Some(AlarmKind::PowerFailure | AlarmKind::LinkFailure | AlarmKind::BatteryLow)
        ) {
            attention = true;
            lines.push(format!(
                "Open alarm: {}",
                kind.map_or("unknown", kind_label)
            ));
        }
    }
    let status = if attention {
        "Needs attention"
    } else {
        "Working"
    };
    (attention, status, lines)
}

async fn rows(
    user: &ConsoleUser,
    state: &AppState,
    client: &crate::db::Client,
    devices: Vec<Device>,
) -> Result<Vec<DeviceRow>, ConsoleError> {
    let health: HashMap<String, DeviceHealth> = device_health_of(
        client,
        &user.caller,
        &state.settings.alarms,
        None,
        MAX_DEVICES,
    )
    .await?
    .items
    .into_iter()
    .map(|h| (h.device_uid.clone(), h))
    .collect();
    let times: Vec<DateTime<Utc>> = health
        .values()
        .flat_map(|h| [h.presence_changed_at, h.last_heartbeat_at])
        .flatten()
        .collect();
    let clock = Clock::load(client, &state.settings.alarms.timezone, &times).await?;
    let names = Names::load(client, user.caller.organisation_id).await?;
    let may_open_people = crate::people::EDITORS.contains(&user.caller.role);
    let battery_low = state.settings.alarms.battery_low_percent;
    let mut rows: Vec<DeviceRow> = devices
        .iter()
        .map(|d| {
            let (attention, status, lines) = assess(d, health.get(&d.uid), battery_low, &clock);
            let (linked, linked_href) = names.linked(d, may_open_people);
            DeviceRow {
                uid: d.uid.clone(),
                kind: device_kind_label(d.kind),
                linked,
                linked_href,
                status,
                attention,
                health: lines,
            }
        })
        .collect();
    // Those needing attention first, then by uid (the order they came in).
    rows.sort_by_key(|r| !r.attention);
    Ok(rows)
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    shell: Shell,
    devices: Vec<DeviceRow>,
    count: String,
    /// Administrators: the dead letters' link and the registration form with its kinds.
    admin: bool,
    kinds: Vec<Choice>,
    form_token: String,
    problem: Option<String>,
}

/// Most devices the page lists (the API pages through the rest).
const MAX_DEVICES: i64 = 1000;

async fn list(
    user: ConsoleUser,
    state: web::Data<AppState>,
    said: web::Query<Said>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(ANYONE)?;
    let client = state.db(&user.caller).await?;
    let page = devices_of(&client, &user.caller, None, MAX_DEVICES).await?;
    let more = page.next_after.is_some();
    let devices = rows(&user, &state, &client, page.items).await?;
    let attention = devices.iter().filter(|d| d.attention).count();
    let mut count = match (devices.len(), attention) {
        (0, _) => "No devices registered yet.".to_owned(),
        (n, 0) => format!("{n} devices; none needs attention."),
        (n, 1) => format!("{n} devices; 1 needs attention and is listed first."),
        (n, a) => format!("{n} devices; {a} need attention and are listed first."),
    };
    if more {
        count.push_str(" Only the first 1,000 are listed here; the API lists them all.");
    }
    let page = DevicesPage {
        shell: user.shell("Devices", Section::Devices),
        devices,
        count,
        admin: user.caller.role == Role::ProviderAdmin,
        kinds: DeviceKind::ALL
            .iter()
            .map(|k| Choice {
                value: k.as_str().into(),
                label: device_kind_label(*k).into(),
                selected: *k == DeviceKind::Pendant,
            })
            .collect(),
        form_token: user.form_token.clone(),
        problem: said.into_inner().problem,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// A choice in the link form's list.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    shell: Shell,
    device: DeviceRow,
    form_token: String,
    /// `person_id` or `worker_id`, with the choices; `None` when the role may not link (and
    /// may not change the device either).
    field: Option<(&'static str, &'static str, Vec<Choice>)>,
    disabled: bool,
    notice: Option<String>,
    problem: Option<String>,
}

/// `uid` as a device uid that could exist, or a page that does not exist.
fn device_uid(uid: &str) -> Result<&str, ConsoleError> {
    let plain = (1..=64).contains(&uid.len())
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    plain.then_some(uid).ok_or(ConsoleError::NotFound)
}

async fn show(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    said: web::Query<Said>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(ANYONE)?;
    let uid = device_uid(&path)?;
    let client = state.db(&user.caller).await?;
    let device = device_of(&client, &user.caller, uid).await?;
    let disabled = device.disabled;
    let field = if user.caller.role == Role::ProviderAdmin {
        Some(link_choices(&client, &user, &device).await?)
    } else {
        None
    };
    let mut rows = rows(&user, &state, &client, vec![device]).await?;
    let device = rows.pop().ok_or(ConsoleError::NotFound)?;
    let Said { done, problem } = said.into_inner();
    let notice = done.map(|d| match d.as_str() {
        "link" => format!(
            "Device {} is now: {}.",
            device.uid,
            device.linked.to_lowercase()
        ),
        _ => d,
    });
    let page = DevicePage {
        shell: user.shell(format!("Device {}", device.uid), Section::Devices),
        device,
        form_token: user.form_token.clone(),
        field,
        disabled,
        notice,
        problem,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

/// The link form's field for `device`: workers for a phone, people otherwise.
async fn link_choices(
    client: &crate::db::Client,
    user: &ConsoleUser,
    device: &Device,
) -> Result<(&'static str, &'static str, Vec<Choice>), ConsoleError> {
    let names = Names::load(client, user.caller.organisation_id).await?;
    let (field, label, current, names) = if device.kind == DeviceKind::Phone {
        (
            "worker_id",
            "Care worker who carries it",
            device.worker_id,
            names.workers,
        )
    } else {
        (
            "person_id",
            "Person it is for",
            device.person_id,
            names.people,
        )
    };
    let mut listed: Vec<(i32, String)> = names.into_iter().collect();
    listed.sort_by_key(|(_, label)| label.to_lowercase());
    let mut choices = vec![Choice {
        value: String::new(),
        label: "No one (not linked)".into(),
        selected: current.is_none(),
    }];
    choices.extend(listed.into_iter().map(|(id, label)| Choice {
        value: id.to_string(),
        label,
        selected: current == Some(id),
    }));
    Ok((field, label, choices))
}

/// The link form: `person_id` or `worker_id`, empty for no one. Its `csrf` field was checked
/// before this runs.
#[derive(Debug, Deserialize)]
struct LinkForm {
    person_id: Option<String>,
    worker_id: Option<String>,
}

/// A chosen id, or none for an empty choice.
fn chosen(value: Option<String>) -> Result<Option<i32>, ConsoleError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ConsoleError::BadForm("Choose from the list.".into())),
    }
}

async fn link(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<LinkForm>,
) -> Result<HttpResponse, ConsoleError> {
    let uid = device_uid(&path)?;
    let form = form.into_inner();
    let body = LinkBody {
        person_id: chosen(form.person_id)?,
        worker_id: chosen(form.worker_id)?,
    };
    match link_device(&state, &user.caller, uid, &body).await {
        Ok(_) => Ok(see_other(&format!("/console/devices/{uid}?done=link"))),
        Err(ApiError::Validation(errors)) => Err(ConsoleError::BadForm(
            errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "device_secret.html")]
struct SecretShown {
    shell: Shell,
    uid: String,
    /// What happened, in a sentence.
    what: String,
    secret: String,
}

/// A device's secret, shown once.
fn secret_page(
    user: &ConsoleUser,
    uid: &str,
    what: String,
    secret: String,
) -> Result<HttpResponse, ConsoleError> {
    let page = SecretShown {
        shell: user.shell(format!("Secret of device {uid}"), Section::Devices),
        uid: uid.to_owned(),
        what,
        secret,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

#[derive(Debug, Deserialize)]
struct RegisterForm {
    uid: String,
    kind: String,
}

async fn register(
    user: ConsoleUser,
    state: web::Data<AppState>,
    form: web::Form<RegisterForm>,
) -> Result<HttpResponse, ConsoleError> {
    let uid = form.uid.trim();
    match register_device(&state, &user.caller, uid, &form.kind).await {
        Ok((kind, secret)) => secret_page(
            &user,
            uid,
            format!(
                "{} {uid} is registered. Link it to a person or a worker from its page.",
                device_kind_label(kind)
            ),
            secret,
        ),
        Err(e) => back("/console/devices", Err(e)),
    }
}

async fn rotate(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let uid = device_uid(&path)?;
    match rotate_device_secret(&state, &user.caller, uid).await {
        Ok(secret) => secret_page(
            &user,
            uid,
            format!(
                "Device {uid} has a new secret. The old one no longer works: the device is \
                 disconnected and connects again only with the new one."
            ),
            secret,
        ),
        Err(e) => back(&format!("/console/devices/{uid}"), Err(e)),
    }
}

async fn switch(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    disabled: bool,
) -> Result<HttpResponse, ConsoleError> {
    let uid = device_uid(&path)?;
    let result = set_device_disabled(&state, &user.caller, uid, disabled).await;
    back(
        &format!("/console/devices/{uid}"),
        result.map(|changed| match (disabled, changed) {
            (true, true) => "Disabled: it is disconnected within a second and cannot connect; \
                             what it still sends is kept as dead letters, not stored."
                .to_owned(),
            (false, true) => "Enabled: it can connect again.".to_owned(),
            (true, false) => "It already was disabled.".to_owned(),
            (false, false) => "It already was enabled.".to_owned(),
        }),
    )
}

async fn disable(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    switch(user, state, path, true).await
}

async fn enable(
    user: ConsoleUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    switch(user, state, path, false).await
}

//! Dead letters: what devices sent that could not be stored, newest first, with the reason in
//! words, for the provider's administrators. The data is `GET /v1/dead-letters`'s
//! ([`crate::ingest::http::dead_letter_page`]), a page at a time.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::html_response;
use super::people::Clock;
use super::{ConsoleError, ConsoleUser, Section, Shell};
use crate::auth::Role;
use crate::http::AppState;
use crate::ingest::http::dead_letter_page;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dead-letters", web::get().to(list));
}

/// Dead letters a page shows.
const PAGE: i64 = 100;

/// A dead letter's reason code in words (`docs/wire-format.md`, "Dead letters: reason codes").
fn reason_words(code: &str) -> &'static str {
    match code {
        "oversize" => "Too large",
        "unknown_encoding" => "Neither JSON nor CBOR",
        "invalid_json" => "Broken JSON",
        "invalid_cbor" => "Broken CBOR",
        "unknown_kind" => "An event of a kind Homeward does not know",
        "unknown_field" => "A field Homeward does not know",
        "duplicate_field" => "A field given twice",
        "missing_field" => "A required field is missing",
        "invalid_type" => "A value of the wrong type",
        "out_of_range" => "A number out of range",
        "invalid_value" => "A value that breaks its rule",
        "time_in_future" => "The device's clock is ahead",
        "unknown_topic" => "Sent to a topic that is not a device's",
        "unknown_device" => "From a device that is not registered",
        "device_disabled" => "From a disabled device",
        "storage_refused" => "The database refused it",
        "internal_error" => "Homeward failed on it (a defect)",
        _ => "Could not be stored",
    }
}

struct Row {
    id: i64,
    received: String,
    device: String,
    source: String,
    reason: &'static str,
    message: String,
    payload: String,
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
struct DeadLettersPage {
    shell: Shell,
    letters: Vec<Row>,
    older: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct Before {
    before: Option<i64>,
}

/// Most characters of a payload shown.
const PAYLOAD_CHARS: usize = 300;

async fn list(
    user: ConsoleUser,
    state: web::Data<AppState>,
    q: web::Query<Before>,
) -> Result<HttpResponse, ConsoleError> {
    user.require(&[Role::ProviderAdmin])?;
    let client = state.db(&user.caller).await?;
    let page = dead_letter_page(&client, &user.caller, q.before, PAGE).await?;
    let times: Vec<DateTime<Utc>> = page.items.iter().map(|d| d.received_at).collect();
    let clock = Clock::load(&client, &state.settings.alarms.timezone, &times).await?;
    let letters = page
        .items
        .iter()
        .map(|d| {
            let payload = d.payload_text.as_ref().map_or_else(
                || format!("(binary) {}", d.payload_base64),
                |text| text.clone(),
            );
            Row {
                id: d.id,
                received: clock.full(d.received_at),
                device: d.device_uid.clone().unwrap_or_else(|| "unknown".into()),
                source: match d.topic.as_deref() {
                    Some(topic) => format!("{} ({topic})", d.source.to_uppercase()),
                    None => d.source.to_uppercase(),
                },
                reason: reason_words(&d.reason_code),
                message: d.reason.clone(),
                payload: payload.chars().take(PAYLOAD_CHARS).collect(),
            }
        })
        .collect();
    let page = DeadLettersPage {
        shell: user.shell("Dead letters", Section::Devices),
        letters,
        older: page.next_after,
    };
    Ok(html_response(StatusCode::OK, page.render()?))
}

#[cfg(test)]
mod tests {
    use super::reason_words;

    #[test]
    fn every_documented_reason_code_has_words() {
        let doc = include_str!("../../docs/wire-format.md");
        let section = doc
            .split("## Dead letters: reason codes")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap();
        let codes: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        assert!(codes.len() >= 15, "{codes:?}");
        for code in codes {
            assert_ne!(reason_words(code), "Could not be stored", "{code}");
        }
    }
}

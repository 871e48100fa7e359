//! The live stream: server-sent events (`GET /v1/live`) of alarm and visit changes, for the
//! dashboards of provider staff and responders.
//!
//! Domains publish [`LiveEvent`]s to the [`LiveHub`]; each connected client receives those of
//! its own organisation, through that organisation's own channel. A token (or a console
//! session) may hold at most [`MAX_STREAMS_PER_TOKEN`] streams at once (429 beyond). A client
//! that falls behind gets a `lagged` event and should refetch the lists.
//!
//! Two doors open the same stream ([`stream`]): `GET /v1/live` with a bearer token, and the
//! console's `GET /console/live` with a session cookie (for the alarm board's script). Both
//! take the same roles and subscribe to the caller's own organisation only.
//!
//! Several instances on one database: with `live.share_between_instances` (the default) the
//! hub also hands every change to [`relay`], which passes it to the other instances through
//! PostgreSQL `NOTIFY` after it has been published here, and republishes theirs to this
//! instance's clients, each to its own organisation's channel. A client therefore sees every
//! instance's changes, whichever instance it is connected to. What cannot be relayed (a full
//! relay queue, an event larger than a notification may be, a lost connection) reaches the
//! affected clients as `lagged`, never as silence.

pub mod relay;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::auth::revocations::Revoked;
use crate::auth::{Caller, Role};
use crate::http::{ApiError, AppState};

/// One change, as sent to dashboards.
#[derive(Debug, Clone, Serialize)]
pub struct LiveEvent {
    #[serde(skip)]
    pub organisation_id: i32,
    /// The SSE event name: `alarm`, `technical_alarm`, `missed_visit`, ...
    pub topic: &'static str,
    pub at: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// Settings under `[live]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveSettings {
    /// Relay changes between the instances that share the database (PostgreSQL
    /// `LISTEN`/`NOTIFY`), so that a client sees every instance's changes. Has no effect with
    /// the embedded database, which serves one instance. Default true.
    pub share_between_instances: bool,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            share_between_instances: true,
        }
    }
}

/// What an organisation's channel carries to its streams.
#[derive(Debug, Clone)]
pub enum Delivery {
    Event(Arc<LiveEvent>),
    /// Changes were missed on the way (`Some(n)`: that many; `None`: an unknown number): the
    /// client should refetch. Sent as `event: lagged`.
    Lagged(Option<u64>),
}

/// Where changes are published and streams subscribe: one broadcast channel per organisation,
/// so that one tenant's burst never makes another's streams lag, and the `lagged` count a
/// client sees is its own organisation's.
#[derive(Clone)]
pub struct LiveHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    /// Events each organisation's channel holds for a slow client before it lags.
    capacity: usize,
    channels: Mutex<HashMap<i32, broadcast::Sender<Delivery>>>,
    /// Every organisation's events, for in-process observers (tests, diagnostics); never
    /// served to a client.
    all: broadcast::Sender<Arc<LiveEvent>>,
    /// Open streams per API token or console session.
    streams: Mutex<HashMap<StreamCredential, usize>>,
    /// Where this instance's changes leave for the other instances, once [`relay::start`] has
    /// run; unset, the hub is this process's alone.
    relay: std::sync::OnceLock<relay::Outbox>,
}

/// Streams one API token (or one console session) may hold open at once.
pub const MAX_STREAMS_PER_TOKEN: usize = 4;

/// What holds a stream open: an API token, or a console session. The stream ends when it
/// stops working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamCredential {
    /// `api_tokens.id`.
    Token(i32),
    /// `console_sessions.id`.
    Session(i64),
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl LiveHub {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(HubInner {
                capacity,
                channels: Mutex::new(HashMap::new()),
                all: broadcast::channel(capacity).0,
                streams: Mutex::new(HashMap::new()),
                relay: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sends to every connected client of the event's organisation (none connected is fine),
    /// here and, through the relay, on the other instances. Never waits.
    pub fn publish(&self, event: LiveEvent) {
        metrics::counter!("homeward_live_events_total", "topic" => event.topic).increment(1);
        let event = Arc::new(event);
        self.deliver(event.clone());
        if let Some(outbox) = self.inner.relay.get() {
            outbox.push(event);
        }
    }

    /// Sends to this instance's clients of the event's organisation only.
    fn deliver(&self, event: Arc<LiveEvent>) {
        self.send_to(event.organisation_id, Delivery::Event(event.clone()));
        if self.inner.all.receiver_count() > 0 {
            let _ = self.inner.all.send(event);
        }
    }

    /// Tells this instance's clients of one organisation that they missed changes.
    fn lag(&self, organisation_id: i32, missed: Option<u64>) {
        self.send_to(organisation_id, Delivery::Lagged(missed));
    }

    /// Tells every client of this instance that it may have missed changes.
    fn lag_everyone(&self) {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        channels.retain(|_, tx| tx.send(Delivery::Lagged(None)).is_ok());
    }

    fn send_to(&self, organisation_id: i32, delivery: Delivery) {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = channels.get(&organisation_id) {
            if tx.send(delivery).is_err() {
                // Nobody of that organisation listens any more.
                channels.remove(&organisation_id);
            }
        }
    }

    /// One organisation's events.
    pub fn subscribe_org(&self, organisation_id: i32) -> broadcast::Receiver<Delivery> {
        self.inner
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(organisation_id)
            .or_insert_with(|| broadcast::channel(self.inner.capacity).0)
            .subscribe()
    }

    /// Every organisation's events: for in-process observers only, never for a client.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.inner.all.subscribe()
    }

    /// Counts a stream of `credential` until the guard is dropped; `None` if it already holds
    /// [`MAX_STREAMS_PER_TOKEN`].
    fn open_stream(&self, credential: StreamCredential) -> Option<StreamSlot> {
        let mut streams = self.inner.streams.lock().unwrap_or_else(|e| e.into_inner());
        let open = streams.entry(credential).or_insert(0);
        if *open >= MAX_STREAMS_PER_TOKEN {
            return None;
        }
        *open += 1;
        Some(StreamSlot {
            hub: self.inner.clone(),
            credential,
        })
    }
}

/// One open stream of a token or session, given back when the stream ends (the client goes
/// away or the credential stops working).
struct StreamSlot {
    hub: Arc<HubInner>,
    credential: StreamCredential,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.hub.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = streams.get_mut(&self.credential) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.credential);
            }
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    api(&mut utoipa_actix_web::service_config::ServiceConfig::new(
        cfg,
    ));
}

/// [`routes`], documented (see [`crate::http::openapi`]).
pub fn api(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(live);
}

/// `text/event-stream`: `event: <topic>` and `data: <json>` per change, a comment every 15 s to
/// keep proxies from closing the connection.
#[utoipa::path(
    operation_id = "live",
    tag = "live",
    responses(
        (status = 200, description = "An endless stream of server-sent events: `event: <topic>` \
            (`alarm`, `technical_alarm`, `missed_visit`, ...) and `data: <json>` per change of the \
            caller's organisation; `event: lagged` with `data: {\"missed\": n}` when the client \
            fell behind and should refetch; a comment every 15 s. It ends when the token is \
            revoked or expires, or its user is disabled.",
            content_type = "text/event-stream", body = String),
        crate::http::openapi::Forbidden,
        crate::http::openapi::TooManyRequests,
    ),
)]
#[get("/v1/live")]
async fn live(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Only the bearer-token extractor reaches here, so there is always a token.
    let token_id = caller.token_id.ok_or(ApiError::Unauthorized)?;
    stream(&state, &caller, StreamCredential::Token(token_id)).await
}

/// Who may hold a live stream.
pub const STREAM_ROLES: &[Role] = &[Role::ProviderAdmin, Role::ProviderStaff, Role::Responder];

/// The event stream of `caller`'s organisation, held open by `credential` (checked again every
/// 15 s, and ended at once when it is revoked or its user disabled): the response of
/// `GET /v1/live` and of the console's `GET /console/live`.
pub async fn stream(
    state: &AppState,
    caller: &Caller,
    credential: StreamCredential,
) -> Result<HttpResponse, ApiError> {
    caller.require(STREAM_ROLES)?;
    let what = match credential {
        StreamCredential::Token(_) => "token",
        StreamCredential::Session(_) => "session",
    };
    let slot = state.live.open_stream(credential).ok_or_else(|| {
        ApiError::TooManyRequests(format!(
            "this {what} already has {MAX_STREAMS_PER_TOKEN} open event streams; close one first"
        ))
    })?;
    let rx = state.live.subscribe_org(caller.organisation_id);
    let revoked = state.revocations.subscribe();
    let idle_minutes = state.settings.console.session_idle_minutes;
    // A revocation broadcast between the credential check and the subscription above would be
    // missed: check once more now that the stream listens.
    if !still_valid(state.auth_pool(), credential, idle_minutes).await {
        return Err(ApiError::Unauthorized);
    }
    let org = caller.organisation_id;
    let user_id = caller.user_id;
    let pool = state.auth_pool().clone();
    let stream = futures_util::stream::unfold(
        (
            rx,
            revoked,
            tokio::time::interval(Duration::from_secs(15)),
            true,
        ),
        move |(mut rx, mut revoked, mut keepalive, first)| {
            let pool = pool.clone();
            // The slot is moved into this closure, so it lives as long as the stream and is
            // given back when the stream is dropped.
            let _slot = &slot;
            async move {
                if first {
                    // Tell the client at once that the stream is open.
                    let hello = Bytes::from_static(b": connected\n\n");
                    return Some((
                        Ok::<_, actix_web::Error>(hello),
                        (rx, revoked, keepalive, false),
                    ));
                }
                loop {
                    tokio::select! {
                        received = rx.recv() => match received {
                            Ok(Delivery::Event(event)) if event.organisation_id == org => {
                                let body = serde_json::to_string(&*event).unwrap_or_default();
                                let frame = format!("event: {}\ndata: {}\n\n", event.topic, body);
                                return Some((Ok(Bytes::from(frame)), (rx, revoked, keepalive, false)));
                            }
                            Ok(Delivery::Event(_)) => continue,
                            Ok(Delivery::Lagged(missed)) => {
                                return Some((Ok(lagged_frame(missed)), (rx, revoked, keepalive, false)));
                            }
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                return Some((Ok(lagged_frame(Some(n))), (rx, revoked, keepalive, false)));
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                        // A revoked token or a disabled user ends the stream; so does one whose
                        // revocation may have been missed and whose token no longer works.
                        gone = revoked.recv() => match gone {
                            Ok(Revoked::Token(id)) if credential == StreamCredential::Token(id) => return None,
                            Ok(Revoked::User(id)) if id == user_id => return None,
                            Ok(_) => continue,
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                if !still_valid(&pool, credential, idle_minutes).await {
                                    return None;
                                }
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                        _ = keepalive.tick() => {
                            // A token that expired, or a session that ended, since the stream opened ends
                            // it here.
                            if !still_valid(&pool, credential, idle_minutes).await {
                                return None;
                            }
                            return Some((Ok(Bytes::from_static(b": keepalive\n\n")), (rx, revoked, keepalive, false)));
                        }
                    }
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

/// `event: lagged` with the number of changes missed, `null` when it is not known.
fn lagged_frame(missed: Option<u64>) -> Bytes {
    let missed = missed.map_or_else(|| "null".to_owned(), |n| n.to_string());
    Bytes::from(format!("event: lagged\ndata: {{\"missed\":{missed}}}\n\n"))
}

/// Is this credential still usable: a token not revoked or expired, a session not ended (by
/// sign-out, time or idleness: the stream itself does not keep a session alive), its user not
/// disabled? On a database error, yes: the stream is not cut for an outage.
async fn still_valid(
    pool: &deadpool_postgres::Pool,
    credential: StreamCredential,
    idle_minutes: u32,
) -> bool {
    let Ok(client) = pool.get().await else {
        return true;
    };
    let found = match credential {
        StreamCredential::Token(token_id) => {
            client
                .query_opt(
                    "SELECT 1 FROM api_tokens t JOIN users u ON u.id = t.user_id
                      WHERE t.id = $1 AND t.revoked_at IS NULL
                        AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.disabled_at IS NULL",
                    &[&token_id],
                )
                .await
        }
        StreamCredential::Session(session_id) => {
            client
                .query_opt(
                    "SELECT 1 FROM console_sessions s JOIN users u ON u.id = s.user_id
                      WHERE s.id = $1 AND s.expires_at > now()
                        AND s.last_seen_at > now() - make_interval(mins => $2)
                        AND u.disabled_at IS NULL",
                    &[&session_id, &i32::try_from(idle_minutes).unwrap_or(i32::MAX)],
                )
                .await
        }
    };
    found.map(|row| row.is_some()).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(org: i32, n: u64) -> LiveEvent {
        LiveEvent {
            organisation_id: org,
            topic: "alarm",
            at: Utc::now(),
            data: serde_json::json!({ "n": n }),
        }
    }

    /// One tenant's burst fills only its own channel: another tenant's stream neither lags nor
    /// learns how many events the first one had.
    #[tokio::test]
    async fn a_burst_of_one_organisation_does_not_make_another_lag() {
        let hub = LiveHub::new(16);
        let mut a = hub.subscribe_org(1);
        let mut b = hub.subscribe_org(2);
        for n in 0..10_000 {
            hub.publish(event(1, n));
        }
        hub.publish(event(2, 7));
        let Delivery::Event(got) = b.recv().await.expect("B's own event, not a lag") else {
            panic!("an event, not a lag");
        };
        assert_eq!(
            (got.organisation_id, &got.data["n"]),
            (2, &serde_json::json!(7))
        );
        assert!(b.try_recv().is_err(), "nothing of A's reaches B");
        assert!(matches!(
            a.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }

    #[test]
    fn a_token_holds_a_bounded_number_of_streams() {
        let hub = LiveHub::default();
        let slots: Vec<_> = (0..MAX_STREAMS_PER_TOKEN)
            .map(|_| {
                hub.open_stream(StreamCredential::Token(7))
                    .expect("within the cap")
            })
            .collect();
        assert!(hub.open_stream(StreamCredential::Token(7)).is_none());
        assert!(
            hub.open_stream(StreamCredential::Session(7)).is_some(),
            "another token is not affected"
        );
        drop(slots);
        assert!(
            hub.open_stream(StreamCredential::Token(7)).is_some(),
            "closed streams give their slot back"
        );
    }
}

//! The live stream: server-sent events (`GET /v1/live`) of alarm and visit changes, for the
//! dashboards of provider staff and responders.
//!
//! Domains publish [`LiveEvent`]s to the [`LiveHub`]; each connected client receives those of
//! its own organisation. The hub is in-process: with several instances behind a load balancer a
//! client sees the changes made by the instance it is connected to (see docs/operations.md).
//! A client that falls behind gets a `lagged` event and should refetch the lists.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
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

#[derive(Clone)]
pub struct LiveHub {
    tx: broadcast::Sender<Arc<LiveEvent>>,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl LiveHub {
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity).0,
        }
    }

    /// Sends to every connected client of the event's organisation (none connected is fine).
    pub fn publish(&self, event: LiveEvent) {
        metrics::counter!("homeward_live_events_total", "topic" => event.topic).increment(1);
        let _ = self.tx.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(live);
}

/// `text/event-stream`: `event: <topic>` and `data: <json>` per change, a comment every 15 s to
/// keep proxies from closing the connection.
#[get("/v1/live")]
async fn live(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::ProviderAdmin, Role::ProviderStaff, Role::Responder])?;
    let rx = state.live.subscribe();
    let revoked = state.revocations.subscribe();
    let org = caller.organisation_id;
    let (token_id, user_id) = (caller.token_id, caller.user_id);
    let pool = state.pool.clone();
    let stream = futures_util::stream::unfold(
        (
            rx,
            revoked,
            tokio::time::interval(Duration::from_secs(15)),
            true,
        ),
        move |(mut rx, mut revoked, mut keepalive, first)| {
            let pool = pool.clone();
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
                            Ok(event) if event.organisation_id == org => {
                                let body = serde_json::to_string(&*event).unwrap_or_default();
                                let frame = format!("event: {}\ndata: {}\n\n", event.topic, body);
                                return Some((Ok(Bytes::from(frame)), (rx, revoked, keepalive, false)));
                            }
                            Ok(_) => continue,
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                let frame = format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n");
                                return Some((Ok(Bytes::from(frame)), (rx, revoked, keepalive, false)));
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                        // A revoked token or a disabled user ends the stream; so does one whose
                        // revocation may have been missed and whose token no longer works.
                        gone = revoked.recv() => match gone {
                            Ok(Revoked::Token(id)) if id == token_id => return None,
                            Ok(Revoked::User(id)) if id == user_id => return None,
                            Ok(_) => continue,
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                if !still_valid(&pool, token_id).await {
                                    return None;
                                }
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                        _ = keepalive.tick() => {
                            // A token that expired since the stream opened ends it here.
                            if !still_valid(&pool, token_id).await {
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

/// Is this token still usable (not revoked or expired, its user not disabled)? On a database
/// error, yes: the stream is not cut for an outage.
async fn still_valid(pool: &deadpool_postgres::Pool, token_id: i32) -> bool {
    let Ok(client) = pool.get().await else {
        return true;
    };
    client
        .query_opt(
            "SELECT 1 FROM api_tokens t JOIN users u ON u.id = t.user_id
              WHERE t.id = $1 AND t.revoked_at IS NULL
                AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.disabled_at IS NULL",
            &[&token_id],
        )
        .await
        .map(|row| row.is_some())
        .unwrap_or(true)
}

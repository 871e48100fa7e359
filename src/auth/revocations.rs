//! Revocations reach live sessions: a watcher polls `credential_revocations` (appended by
//! [`super::credentials`] in the same statement as each change) every
//! [`POLL_INTERVAL`] and broadcasts what it finds, so that open event streams of a revoked
//! token or disabled user end, and a disabled or rotated device's MQTT connection is closed,
//! within a second of the change, whichever process or instance made it.
//!
//! Polling a table rather than `LISTEN`ing: a notification sent while the listener is
//! reconnecting is gone, a row is not. Revocations are rare, so a poll is one indexed query
//! that usually returns nothing. Rows are read again for [`OVERLAP`] after they were written (a
//! row whose transaction commits after a later one's must not be skipped) and each is handled
//! once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// How often the watcher looks for new revocations.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long a revocation row is looked at again after its time.
const OVERLAP: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// Something that lost its rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// An API token (`api_tokens.id`) was revoked.
    Token(i32),
    /// A user (`users.id`) was disabled: all their tokens.
    User(i32),
    /// A device (by uid) was disabled or its secret rotated.
    Device(Arc<str>),
}

/// Where live sessions learn about revocations.
#[derive(Clone)]
pub struct Revocations {
    tx: broadcast::Sender<Revoked>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl Revocations {
    pub fn subscribe(&self) -> broadcast::Receiver<Revoked> {
        self.tx.subscribe()
    }

    /// Starts the watcher; it stops when `shutdown` turns true.
    pub fn watch(&self, pool: Pool, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut watcher = Watcher {
                pool,
                tx,
                horizon: None,
                seen: HashMap::new(),
                failing: false,
            };
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => watcher.poll().await,
                    _ = shutdown.changed() => return,
                }
            }
        })
    }
}

struct Watcher {
    pool: Pool,
    tx: broadcast::Sender<Revoked>,
    /// Rows at or before this were handled; `None` until the first poll, which only sets it
    /// (revocations made before the server started ended nothing live here).
    horizon: Option<DateTime<Utc>>,
    /// Rows after the horizon already broadcast, with their time.
    seen: HashMap<i64, DateTime<Utc>>,
    failing: bool,
}

impl Watcher {
    async fn poll(&mut self) {
        match self.try_poll().await {
            Ok(()) => {
                if self.failing {
                    tracing::info!("revocation watcher reaches the database again");
                }
                self.failing = false;
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(error = %e, "revocation watcher cannot read the database; retrying");
                }
                self.failing = true;
            }
        }
    }

    async fn try_poll(&mut self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let client = self.pool.get().await?;
        let Some(horizon) = self.horizon else {
            let now: DateTime<Utc> = client.query_one("SELECT now()", &[]).await?.get(0);
            self.horizon = Some(now);
            return Ok(());
        };
        // One query per poll: the clock always, the new rows if any (then `r.id` is not null).
        let rows = client
            .query(
                "SELECT n.now, r.id, r.at, r.token_id, r.user_id, d.uid
                   FROM (SELECT now() AS now) n
                   LEFT JOIN credential_revocations r ON r.at > $1
                   LEFT JOIN devices d ON d.id = r.device_id
                  ORDER BY r.id",
                &[&horizon],
            )
            .await?;
        let now: DateTime<Utc> = rows
            .first()
            .map(|r| r.get(0))
            .ok_or("the clock query returned no row")?;
        for row in &rows {
            let Some(id) = row.get::<_, Option<i64>>(1) else {
                continue;
            };
            if self.seen.contains_key(&id) {
                continue;
            }
            self.seen.insert(id, row.get(2));
            let revoked = match (
                row.get::<_, Option<i32>>(3),
                row.get::<_, Option<i32>>(4),
                row.get::<_, Option<String>>(5),
            ) {
                (Some(token), _, _) => Revoked::Token(token),
                (_, Some(user), _) => Revoked::User(user),
                (_, _, Some(uid)) => Revoked::Device(uid.into()),
                _ => continue,
            };
            tracing::info!(?revoked, "credential revoked; ending its live sessions");
            // No receiver is fine: nothing live to end.
            let _ = self.tx.send(revoked);
        }
        let horizon = now - OVERLAP;
        if horizon > self.horizon.unwrap_or(horizon) {
            self.horizon = Some(horizon);
        }
        self.seen.retain(|_, at| *at > horizon);
        Ok(())
    }
}

//! Relaying live-stream changes between the instances that share one database, through
//! PostgreSQL `LISTEN`/`NOTIFY` on the channel [`CHANNEL`].
//!
//! Each instance draws a random id at start. [`LiveHub::publish`] delivers to this instance's
//! clients first, then hands the event to the [`Outbox`], a bounded queue that never makes the
//! publisher wait. A sender task takes what has queued up and notifies it in one statement on a
//! pool connection; the notifications are delivered when that statement commits, which is after
//! the change itself committed (domains publish only committed changes). Notifying in a
//! statement of its own, never inside a domain's transaction, keeps the database-wide lock that
//! PostgreSQL takes to commit notifications off the write path. A listener task holds a
//! connection of its own with `LISTEN homeward_live` and republishes the events of the other
//! instances, each to its own organisation's channel only; its own come back too and are
//! skipped by their id.
//!
//! Nothing is lost in silence. What cannot be relayed as itself reaches the clients of the
//! organisation it belongs to as `lagged` (refetch): an event that finds the queue full, one
//! larger than a notification may be ([`MAX_PAYLOAD`]), a batch the database refused. When the
//! listener's connection is lost it reconnects with backoff, and once it listens again every
//! client of this instance gets `lagged`, since the other instances' changes in between are
//! gone. Counted in `/metrics`: `homeward_live_relayed_total{direction}`,
//! `homeward_live_relay_dropped_total{reason}`, `homeward_live_relay_reconnects_total`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{LiveEvent, LiveHub};

/// The notification channel every instance listens on.
pub const CHANNEL: &str = "homeward_live";

/// PostgreSQL refuses a notification payload of 8000 bytes or more (with its default 8 kB
/// pages); a payload is this instance's id, a space and the JSON message.
pub const MAX_PAYLOAD: usize = 7999;

/// Events waiting to be relayed before more are dropped (and become `lagged`): about two
/// seconds of the heaviest alarm traffic measured, at a few megabytes at most.
const OUTBOX_CAPACITY: usize = 8192;

/// Most events notified in one statement.
const MAX_BATCH: usize = 256;

/// A batch that takes longer than this to notify has failed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// At shutdown the sender keeps relaying until every publisher is gone (the derivations finish
/// what the writer committed last) or for this long at most.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long start-up waits for the listener to listen, so that an instance reported ready
/// already hears the others (it keeps trying in the background after that).
const FIRST_LISTEN_WAIT: Duration = Duration::from_secs(5);

/// Where [`LiveHub::publish`] leaves events for the other instances.
pub(super) struct Outbox {
    instance: Arc<str>,
    tx: mpsc::Sender<Arc<LiveEvent>>,
    missed: Arc<Missed>,
}

impl Outbox {
    /// Queues an event for the sender; never waits. An event that finds the queue full is
    /// counted against its organisation, which the other instances then tell to refetch.
    pub(super) fn push(&self, event: Arc<LiveEvent>) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(event)) => {
                dropped("queue_full", 1);
                self.missed.add(event.organisation_id, 1);
            }
            // Shutting down: the sender is gone and so is any way to tell the others.
            Err(TrySendError::Closed(_)) => dropped("stopped", 1),
        }
    }
}

/// Events of each organisation that were not relayed, to be sent as `lagged` with the next
/// batch; `wake` tells the sender there is something even when no event is queued.
#[derive(Default)]
struct Missed {
    counts: Mutex<HashMap<i32, u64>>,
    wake: Notify,
}

impl Missed {
    fn add(&self, organisation_id: i32, n: u64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(organisation_id)
            .or_default() += n;
        self.wake.notify_one();
    }

    fn take(&self) -> HashMap<i32, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn dropped(reason: &'static str, n: u64) {
    metrics::counter!("homeward_live_relay_dropped_total", "reason" => reason).increment(n);
}

/// Starts relaying `hub`'s changes to the other instances on the database that `connect`
/// reaches, and theirs to `hub`'s clients. Returns once the listener listens (or after
/// [`FIRST_LISTEN_WAIT`]); the tasks end at shutdown. A hub relays once: a second call starts
/// nothing.
pub async fn start(
    hub: &LiveHub,
    pool: Pool,
    connect: tokio_postgres::Config,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let instance: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
    let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
    let missed = Arc::new(Missed::default());
    let outbox = Outbox {
        instance: instance.clone(),
        tx,
        missed: missed.clone(),
    };
    if hub.inner.relay.set(outbox).is_err() {
        tracing::warn!("the live stream is already relayed; not starting a second relay");
        return Vec::new();
    }
    let (listening_tx, listening) = oneshot::channel();
    let tasks = vec![
        tokio::spawn(send(pool, instance.clone(), rx, missed, shutdown.clone())),
        tokio::spawn(listen(
            connect,
            instance.clone(),
            hub.clone(),
            listening_tx,
            shutdown,
        )),
    ];
    if tokio::time::timeout(FIRST_LISTEN_WAIT, listening)
        .await
        .is_ok_and(|r| r.is_ok())
    {
        tracing::info!(%instance, "live stream shared with the other instances on the database");
    }
    tasks
}

impl LiveHub {
    /// This instance's id in the relay (its listening connection is named
    /// `homeward-live-<id>` in `pg_stat_activity`); `None` when the hub is not relayed.
    pub fn instance_id(&self) -> Option<&str> {
        self.inner.relay.get().map(|o| &*o.instance)
    }
}

/// A message between instances, as notified (after the sender's id and a space).
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Outgoing<'a> {
    Event {
        org: i32,
        topic: &'a str,
        at: DateTime<Utc>,
        data: &'a serde_json::Value,
    },
    /// `missed` changes of the organisation could not be relayed.
    Lagged { org: i32, missed: u64 },
}

/// [`Outgoing`], as received.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Incoming {
    Event {
        org: i32,
        topic: String,
        at: DateTime<Utc>,
        data: serde_json::Value,
    },
    Lagged {
        org: i32,
        missed: u64,
    },
}

fn payload(instance: &str, message: &Outgoing<'_>) -> String {
    // Serialising a map of strings and JSON values cannot fail.
    format!(
        "{instance} {}",
        serde_json::to_string(message).unwrap_or_default()
    )
}

/// The payloads of one batch: each event that fits, then one `lagged` per organisation for
/// what did not fit and what was missed before (`missed`, added to). The `lagged` ones come
/// last, so that a client's refetch follows every change of the batch.
fn payloads(
    instance: &str,
    events: &[Arc<LiveEvent>],
    missed: &mut HashMap<i32, u64>,
) -> Vec<String> {
    let mut out = Vec::with_capacity(events.len() + missed.len());
    for event in events {
        let text = payload(
            instance,
            &Outgoing::Event {
                org: event.organisation_id,
                topic: event.topic,
                at: event.at,
                data: &event.data,
            },
        );
        if text.len() <= MAX_PAYLOAD {
            out.push(text);
        } else {
            dropped("too_large", 1);
            *missed.entry(event.organisation_id).or_default() += 1;
        }
    }
    // In organisation order, so that a batch's text does not depend on a hash seed.
    let ordered: BTreeMap<i32, u64> = missed.iter().map(|(o, n)| (*o, *n)).collect();
    for (org, n) in ordered {
        out.push(payload(instance, &Outgoing::Lagged { org, missed: n }));
    }
    out
}

/// The sender: notifies what `publish` queued, in batches, until the queue closes (every
/// publisher gone) or [`STOP_GRACE`] after shutdown.
async fn send(
    pool: Pool,
    instance: Arc<str>,
    mut rx: mpsc::Receiver<Arc<LiveEvent>>,
    missed: Arc<Missed>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut stop_by: Option<Instant> = None;
    let mut failures = 0u32;
    loop {
        let first = match stop_by {
            None => tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => Some(event),
                    None => break,
                },
                _ = missed.wake.notified() => None,
                _ = shutdown.changed() => {
                    stop_by = Some(Instant::now() + STOP_GRACE);
                    continue;
                }
            },
            Some(deadline) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(event)) => Some(event),
                Ok(None) | Err(_) => break,
            },
        };
        let mut events: Vec<Arc<LiveEvent>> = first.into_iter().collect();
        while events.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(event) => events.push(event),
                Err(_) => break,
            }
        }
        let mut lagged = missed.take();
        if events.is_empty() && lagged.is_empty() {
            continue;
        }
        let batch = payloads(&instance, &events, &mut lagged);
        match notify(&pool, &batch).await {
            Ok(()) => {
                metrics::counter!("homeward_live_relayed_total", "direction" => "out")
                    .increment(batch.len() as u64);
                failures = 0;
            }
            Err(e) => {
                // What this batch carried reaches the other instances as `lagged` with the next
                // one that gets through.
                dropped("database", events.len() as u64);
                for event in &events {
                    *lagged.entry(event.organisation_id).or_default() += 1;
                }
                for (org, n) in lagged {
                    missed.add(org, n);
                }
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "live relay: could not notify the other instances; retrying");
                }
                if stop_by.is_some() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures)) => {}
                    _ = shutdown.changed() => stop_by = Some(Instant::now() + STOP_GRACE),
                }
            }
        }
    }
    let left = missed.take().values().sum::<u64>() + rx.len() as u64;
    if left > 0 {
        dropped("stopped", left);
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the database closed the connection")]
    Closed,
}

async fn notify(pool: &Pool, payloads: &[String]) -> Result<(), RelayError> {
    let run = async {
        let client = pool.get().await?;
        crate::db::cached::execute(
            &client,
            "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
            &[&CHANNEL, &payloads],
        )
        .await?;
        Ok(())
    };
    tokio::time::timeout(NOTIFY_TIMEOUT, run)
        .await
        .map_err(|_| RelayError::Timeout(NOTIFY_TIMEOUT))?
}

/// 100 ms after the first failure, doubling up to 10 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.saturating_sub(1).min(7)))
        .min(Duration::from_secs(10))
}

/// The listener: `LISTEN` on a connection of its own, republishing the other instances'
/// events; reconnects with backoff when the connection is lost.
async fn listen(
    mut config: tokio_postgres::Config,
    instance: Arc<str>,
    hub: LiveHub,
    listening: oneshot::Sender<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Named, so an operator can tell it in `pg_stat_activity`; keep-alives, so that a
    // connection whose peer vanished without a word is found dead within half a minute (a
    // listener never sends anything that would notice).
    config
        .application_name(format!("homeward-live-{instance}"))
        .connect_timeout(Duration::from_secs(10))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3);
    let mut listening = Some(listening);
    let mut failures = 0u32;
    loop {
        let lost = tokio::select! {
            lost = listen_once(&config, &instance, &hub, &mut listening, &mut failures) => lost,
            _ = shutdown.changed() => return,
        };
        failures += 1;
        metrics::counter!("homeward_live_relay_reconnects_total").increment(1);
        tracing::warn!(
            error = %lost,
            attempt = failures,
            "live relay: not listening to the other instances; reconnecting"
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff(failures)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Connects, listens and republishes until the connection is lost.
async fn listen_once(
    config: &tokio_postgres::Config,
    instance: &str,
    hub: &LiveHub,
    listening: &mut Option<oneshot::Sender<()>>,
    failures: &mut u32,
) -> RelayError {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(c) => c,
        Err(e) => return e.into(),
    };
    // The client's requests travel only while the connection is polled: poll it for `LISTEN`'s
    // answer too.
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    {
        let listen = client.batch_execute("LISTEN homeward_live");
        tokio::pin!(listen);
        loop {
            tokio::select! {
                done = &mut listen => match done {
                    Ok(()) => break,
                    Err(e) => return e.into(),
                },
                message = messages.next() => match message {
                    Some(Ok(message)) => receive_message(hub, instance, message),
                    Some(Err(e)) => return e.into(),
                    None => return RelayError::Closed,
                },
            }
        }
    }
    // Whatever the other instances notified while this instance was not listening (since the
    // last connection was lost, or before the first) is gone: every client refetches.
    hub.lag_everyone();
    *failures = 0;
    if let Some(listening) = listening.take() {
        let _ = listening.send(());
    }
    loop {
        match messages.next().await {
            Some(Ok(message)) => receive_message(hub, instance, message),
            Some(Err(e)) => return e.into(),
            None => return RelayError::Closed,
        }
    }
}

fn receive_message(hub: &LiveHub, own: &str, message: AsyncMessage) {
    if let AsyncMessage::Notification(n) = message {
        if n.channel() == CHANNEL {
            receive(hub, own, n.payload());
        }
    }
}

/// Republishes one notification to this instance's clients of its organisation, unless this
/// instance sent it.
fn receive(hub: &LiveHub, own: &str, payload: &str) {
    let (from, body) = payload.split_once(' ').unwrap_or(("", payload));
    if from == own {
        return;
    }
    metrics::counter!("homeward_live_relayed_total", "direction" => "in").increment(1);
    match serde_json::from_str::<Incoming>(body) {
        Ok(Incoming::Event {
            org,
            topic,
            at,
            data,
        }) => match intern(&topic) {
            Some(topic) => hub.deliver(Arc::new(LiveEvent {
                organisation_id: org,
                topic,
                at,
                data,
            })),
            None => {
                dropped("bad_topic", 1);
                tracing::warn!(%topic, "live relay: an event with an unusable topic; its organisation's clients refetch");
                hub.lag(org, Some(1));
            }
        },
        Ok(Incoming::Lagged { org, missed }) => hub.lag(org, Some(missed)),
        Err(e) => {
            // Whose change it was is unknown (another version of Homeward?): everyone refetches.
            dropped("unreadable", 1);
            tracing::warn!(error = %e, "live relay: an unreadable notification; every client refetches");
            hub.lag_everyone();
        }
    }
}

/// Most distinct topic names taken from other instances.
const MAX_TOPICS: usize = 64;

/// A received topic as the `&'static str` that [`LiveEvent`] carries: the few names in use
/// are kept for the life of the process (at most [`MAX_TOPICS`]). A name that is not a plain
/// lower-case word could break an SSE frame and is refused.
fn intern(topic: &str) -> Option<&'static str> {
    static KNOWN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(name) = known.iter().find(|name| **name == topic) {
        return Some(name);
    }
    let plain = !topic.is_empty()
        && topic.len() <= 64
        && topic
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !plain || known.len() >= MAX_TOPICS {
        return None;
    }
    let name: &'static str = Box::leak(topic.to_owned().into_boxed_str());
    known.push(name);
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::super::Delivery;
    use super::*;
    use tokio::sync::broadcast;

    fn event(org: i32, topic: &'static str, data: serde_json::Value) -> LiveEvent {
        LiveEvent {
            organisation_id: org,
            topic,
            at: Utc::now(),
            data,
        }
    }

    /// What a hub relays is what another hub delivers: topic, time, data, organisation.
    #[test]
    fn an_event_survives_the_trip_and_its_sender_skips_it() {
        let sent = Arc::new(event(
            7,
            "alarm",
            serde_json::json!({"id": 3, "note": "a b\nc"}),
        ));
        let batch = payloads("aaaa", std::slice::from_ref(&sent), &mut HashMap::new());
        assert_eq!(batch.len(), 1);
        assert!(batch[0].starts_with("aaaa {"), "{}", batch[0]);

        let hub = LiveHub::new(16);
        let mut seven = hub.subscribe_org(7);
        receive(&hub, "aaaa", &batch[0]);
        assert!(
            seven.try_recv().is_err(),
            "the sender does not republish its own"
        );
        receive(&hub, "bbbb", &batch[0]);
        let Ok(Delivery::Event(got)) = seven.try_recv() else {
            panic!("the event, delivered");
        };
        assert_eq!(
            (got.organisation_id, got.topic, got.at, &got.data),
            (7, "alarm", sent.at, &sent.data)
        );
    }

    /// An event too large for a notification goes out as `lagged` for its organisation, after
    /// the events that fit; so do the ones missed before.
    #[test]
    fn what_cannot_be_relayed_becomes_lagged_for_its_organisation() {
        let big = Arc::new(event(
            5,
            "alarm",
            serde_json::json!({"x": "y".repeat(MAX_PAYLOAD)}),
        ));
        let small = Arc::new(event(6, "alarm", serde_json::json!({"x": 1})));
        let mut missed = HashMap::from([(9, 3)]);
        let batch = payloads("aaaa", &[big, small], &mut missed);
        assert_eq!(batch.len(), 3, "{batch:?}");
        assert!(batch.iter().all(|p| p.len() <= MAX_PAYLOAD));
        assert!(
            batch[0].contains(r#""kind":"event","org":6"#),
            "{}",
            batch[0]
        );
        assert!(
            batch[1].ends_with(r#"{"kind":"lagged","org":5,"missed":1}"#),
            "{}",
            batch[1]
        );
        assert!(
            batch[2].ends_with(r#"{"kind":"lagged","org":9,"missed":3}"#),
            "{}",
            batch[2]
        );

        let hub = LiveHub::new(16);
        let (mut five, mut six) = (hub.subscribe_org(5), hub.subscribe_org(6));
        for p in &batch {
            receive(&hub, "bbbb", p);
        }
        assert!(matches!(five.try_recv(), Ok(Delivery::Lagged(Some(1)))));
        assert!(five.try_recv().is_err());
        assert!(matches!(six.try_recv(), Ok(Delivery::Event(e)) if e.organisation_id == 6));
        assert!(six.try_recv().is_err(), "6 is not told of 5's or 9's loss");
    }

    /// A full outbox never blocks the publisher: the overflow is counted per organisation.
    #[test]
    fn a_full_outbox_counts_what_it_drops_by_organisation() {
        let (tx, _rx) = mpsc::channel(1);
        let outbox = Outbox {
            instance: "aaaa".into(),
            tx,
            missed: Arc::default(),
        };
        outbox.push(Arc::new(event(1, "alarm", serde_json::Value::Null)));
        for _ in 0..3 {
            outbox.push(Arc::new(event(2, "alarm", serde_json::Value::Null)));
        }
        outbox.push(Arc::new(event(1, "alarm", serde_json::Value::Null)));
        assert_eq!(outbox.missed.take(), HashMap::from([(1, 1), (2, 3)]));
    }

    /// Whatever another instance sends, a stream gets well-formed frames of its own
    /// organisation: a topic that could break a frame, or a message that cannot be read,
    /// becomes `lagged`.
    #[test]
    fn unusable_notifications_become_lagged() {
        let hub = LiveHub::new(16);
        let mut four = hub.subscribe_org(4);
        let mut other = hub.subscribe_org(8);
        receive(
            &hub,
            "aaaa",
            r#"bbbb {"kind":"event","org":4,"topic":"alarm\ndata: x","at":"2026-01-01T00:00:00Z","data":{}}"#,
        );
        assert!(matches!(four.try_recv(), Ok(Delivery::Lagged(Some(1)))));
        assert!(other.try_recv().is_err());
        receive(&hub, "aaaa", r#"bbbb {"kind":"something_new"}"#);
        assert!(matches!(four.try_recv(), Ok(Delivery::Lagged(None))));
        assert!(matches!(other.try_recv(), Ok(Delivery::Lagged(None))));
        assert_eq!(intern("missed_visit"), intern("missed_visit"));
        assert!(intern("Alarm").is_none() && intern("").is_none());
    }

    // Against a real PostgreSQL: two hubs relaying to each other on one database, as two
    // instances would.

    async fn two_relayed_hubs() -> (
        LiveHub,
        LiveHub,
        Pool,
        watch::Sender<bool>,
        Vec<JoinHandle<()>>,
    ) {
        let db = homeward_testkit::cluster::TestServer::get()
            .await
            .unwrap()
            .fresh_database()
            .await
            .unwrap();
        let pool = crate::db::build_pool(db.clone(), 4, 5);
        let (stop, shutdown) = watch::channel(false);
        let (a, b) = (LiveHub::new(64), LiveHub::new(64));
        let mut tasks = start(&a, pool.clone(), db.clone(), shutdown.clone()).await;
        tasks.extend(start(&b, pool.clone(), db, shutdown).await);
        (a, b, pool, stop, tasks)
    }

    async fn next(rx: &mut broadcast::Receiver<Delivery>) -> Delivery {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a delivery in time")
            .expect("the channel is open")
    }

    fn event_of(d: Delivery) -> Arc<LiveEvent> {
        match d {
            Delivery::Event(e) => e,
            other => panic!("an event, not {other:?}"),
        }
    }

    /// Organisation X's change made on instance A reaches X's stream on instance B, once, and
    /// never Y's stream there; A does not get its own change back.
    #[tokio::test]
    async fn a_relayed_event_reaches_only_its_own_organisations_stream() {
        let (a, b, _pool, stop, tasks) = two_relayed_hubs().await;
        let (x, y) = (101, 202);
        let mut a_x = a.subscribe_org(x);
        let mut b_x = b.subscribe_org(x);
        let mut b_y = b.subscribe_org(y);

        a.publish(event(x, "alarm", serde_json::json!({"n": 1})));
        a.publish(event(y, "alarm", serde_json::json!({"n": 2})));
        // Notifications arrive in the order they were sent: once Y's own event is Y's first
        // delivery, X's (sent before it) went elsewhere.
        let got = event_of(next(&mut b_x).await);
        assert_eq!(
            (got.organisation_id, &got.data["n"]),
            (x, &serde_json::json!(1))
        );
        let got = event_of(next(&mut b_y).await);
        assert_eq!(
            (got.organisation_id, &got.data["n"]),
            (y, &serde_json::json!(2))
        );

        // B answers for X; by the time A has it, A's listener has passed its own two.
        b.publish(event(x, "alarm", serde_json::json!({"n": 3})));
        let local = event_of(next(&mut a_x).await);
        assert_eq!(
            &local.data["n"],
            &serde_json::json!(1),
            "A's own, delivered locally"
        );
        let relayed = event_of(next(&mut a_x).await);
        assert_eq!(
            &relayed.data["n"],
            &serde_json::json!(3),
            "B's, with no echo of A's before it"
        );
        let got = event_of(next(&mut b_x).await);
        assert_eq!(&got.data["n"], &serde_json::json!(3));
        assert!(a_x.try_recv().is_err() && b_x.try_recv().is_err() && b_y.try_recv().is_err());

        // Too large to relay: X's clients on B refetch; Y's hear nothing.
        a.publish(event(
            x,
            "alarm",
            serde_json::json!({"x": "y".repeat(MAX_PAYLOAD)}),
        ));
        a.publish(event(y, "alarm", serde_json::json!({"n": 4})));
        assert!(matches!(next(&mut b_x).await, Delivery::Lagged(Some(1))));
        assert_eq!(
            &event_of(next(&mut b_y).await).data["n"],
            &serde_json::json!(4)
        );

        let _ = stop.send(true);
        drop((a, b, a_x, b_x, b_y));
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("relay tasks end at shutdown")
                .unwrap();
        }
    }

    /// The listener's connection is killed: B's clients are told to refetch once it listens
    /// again, and A's changes reach them again.
    #[tokio::test]
    async fn a_lost_listener_reconnects_and_its_clients_refetch() {
        let (a, b, pool, stop, _tasks) = two_relayed_hubs().await;
        let mut b_x = b.subscribe_org(7);
        let name = format!("homeward-live-{}", b.instance_id().unwrap());
        let killed: i64 = pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(killed, 1);
        assert!(matches!(next(&mut b_x).await, Delivery::Lagged(None)));
        a.publish(event(7, "alarm", serde_json::json!({"n": 1})));
        assert_eq!(
            &event_of(next(&mut b_x).await).data["n"],
            &serde_json::json!(1)
        );
        let _ = stop.send(true);
    }
}

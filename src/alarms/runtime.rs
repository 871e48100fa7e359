//! The alarm domain's background work: deriving every newly stored event as it arrives (care
//! events at once, technical ones gathered into passes), catching up at start-up on what was
//! stored but not derived, retrying while the database is away, and the periodic
//! missing-heartbeat check. How far derivation got is kept per instance in `alarm_cursor`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::derive::{self, IdMap, Input, Rules};
use super::pass::{is_technical, process};
use super::{publish, AlarmError, AlarmSettings};
use crate::ingest::CommittedBatch;
use crate::live::LiveHub;

/// How long derivation gathers technical events (heartbeats above all) before a pass; care
/// alarms never wait. Each pass reads and writes every device's heartbeat state once, so a
/// longer linger is less work; a technical alarm (battery, power, link) shows this much later.
const HEARTBEAT_LINGER: Duration = Duration::from_millis(200);
/// Most events derived in one pass.
const MAX_DERIVE_BATCH: usize = 20_000;

/// Starts the background work until `shutdown` fires: alarms derived from `committed` (every
/// newly stored event, after a catch-up on what was stored before), and the missing-heartbeat
/// sweep; changes go to `live`. `instance` (this instance's `mqtt.client_id`) names the record
/// of how far its derivation got.
pub fn start(
    pool: deadpool_postgres::Pool,
    live: LiveHub,
    settings: &AlarmSettings,
    instance: String,
    mut committed: mpsc::Receiver<CommittedBatch>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let rules = Rules::from(settings);
    let feed_rules = rules.clone();
    let feed_pool = pool.clone();
    let feed_live = live.clone();
    let mut feed_shutdown = shutdown.clone();
    let feed = tokio::spawn(async move {
        // Events stored but not derived before the last stop (or before this module ran).
        let mut attempt = 0u32;
        loop {
            match catch_up(&feed_pool, &feed_rules, &feed_live, &instance).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(events = n, "alarms caught up on stored events");
                    }
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "alarm catch-up failed; retrying");
                    if backoff(attempt, &mut feed_shutdown).await {
                        break;
                    }
                }
            }
        }
        // The writer closes the feed at shutdown, after its last commit: drain it all.
        //
        // Care events (alarms, falls, responders) are derived here the moment they arrive:
        // they are what the dashboards wait for. Technical ones (heartbeats above all, most of
        // the traffic) go to their own task, which gathers them for up to HEARTBEAT_LINGER and
        // derives them in one pass, so a large run of heartbeats never delays an alarm. The two
        // never interact (care alarms do not depend on heartbeats), so this gives the same rows
        // as deriving in order, which is what a rebuild does.
        let (tech_tx, tech_rx) = mpsc::unbounded_channel::<(Vec<Input>, DateTime<Utc>)>();
        let technical_task = tokio::spawn(technical_loop(
            tech_rx,
            feed_pool.clone(),
            feed_rules.clone(),
            feed_live.clone(),
            instance.clone(),
            feed_shutdown.clone(),
        ));
        while let Some(first) = committed.recv().await {
            // Everything already waiting joins this pass (it costs the first alarm nothing
            // and keeps derivation abreast of ingest under load).
            let mut batches = vec![first];
            let mut queued = batches[0].len();
            while queued < MAX_DERIVE_BATCH {
                match committed.try_recv() {
                    Ok(more) => {
                        queued += more.len();
                        batches.push(more);
                    }
                    Err(_) => break,
                }
            }
            let mut care: Vec<Input> = Vec::new();
            let mut technical: Vec<Input> = Vec::new();
            let mut newest = None;
            for input in batches
                .iter()
                .flat_map(|b| b.iter())
                .filter_map(Input::from_committed)
            {
                newest = newest.max(Some(input.received_at));
                if is_technical(input.kind) {
                    technical.push(input);
                } else {
                    care.push(input);
                }
            }
            if !care.is_empty() {
                record_alarm_path("derivation_started", &care);
                derive_with_retry(
                    &feed_pool,
                    &feed_rules,
                    &feed_live,
                    &care,
                    &mut feed_shutdown,
                )
                .await;
                record_alarm_path("published", &care);
            }
            if let Some(newest) = newest {
                // Also sent when empty, so the cursor moves past care-only batches.
                let _ = tech_tx.send((technical, newest));
            }
        }
        drop(tech_tx);
        let _ = technical_task.await;
    });
    let period = Duration::from_secs(settings.sweep_interval_secs);
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = run_sweep(&pool, &rules, &live, Utc::now()).await {
                        tracing::warn!(error = %e, "missing-heartbeat check failed");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    });
    vec![feed, sweeper]
}

/// The alarm path's `stage` for the alarms and falls among `inputs` (see
/// [`ALARM_PATH_SECONDS`](crate::telemetry::ALARM_PATH_SECONDS)).
fn record_alarm_path(stage: &'static str, inputs: &[Input]) {
    let now = Utc::now();
    for input in inputs.iter().filter(|i| i.kind.is_priority()) {
        crate::telemetry::record_alarm_path(stage, input.received_at, now);
    }
}

/// Derives technical events in gathered runs, then records how far derivation got: everything
/// handed over here was received after the care events before it were derived.
async fn technical_loop(
    mut rx: mpsc::UnboundedReceiver<(Vec<Input>, DateTime<Utc>)>,
    pool: deadpool_postgres::Pool,
    rules: Rules,
    live: LiveHub,
    instance: String,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    while let Some((mut inputs, mut newest)) = rx.recv().await {
        let until = tokio::time::Instant::now() + HEARTBEAT_LINGER;
        while inputs.len() < MAX_DERIVE_BATCH {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some((more, at))) => {
                    inputs.extend(more);
                    newest = newest.max(at);
                }
                Ok(None) | Err(_) => break,
            }
        }
        if !inputs.is_empty() {
            derive_with_retry(&pool, &rules, &live, &inputs, &mut shutdown).await;
        }
        if let Err(e) = set_cursor_in(&pool, &instance, newest).await {
            tracing::warn!(error = %e, "could not record how far alarm derivation got");
        }
    }
}

/// Derives `inputs`, retrying while the database is away. A batch that still fails is logged;
/// the start-up catch-up derives it again.
async fn derive_with_retry(
    pool: &deadpool_postgres::Pool,
    rules: &Rules,
    live: &LiveHub,
    inputs: &[Input],
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) {
    let mut attempt = 0u32;
    loop {
        match process(pool, rules, live, inputs).await {
            Ok(()) => return,
            Err(e) if e.is_transient() && attempt < 50 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "alarm derivation waiting for the database");
                if backoff(attempt, shutdown).await {
                    return;
                }
            }
            Err(e) if inputs.len() > 1 && !e.is_transient() => {
                // One pass is one transaction: keep one bad event from costing the others.
                tracing::warn!(error = %e, events = inputs.len(), "alarm derivation failed for a pass; deriving its events one by one");
                for input in inputs {
                    Box::pin(derive_with_retry(
                        pool,
                        rules,
                        live,
                        std::slice::from_ref(input),
                        shutdown,
                    ))
                    .await;
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, events = inputs.len(), "alarm derivation failed for a batch");
                return;
            }
        }
    }
}

/// Waits before retry `attempt`; true when shutdown came first.
async fn backoff(attempt: u32, shutdown: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    let wait = Duration::from_millis(100 * u64::from(attempt.min(20)));
    tokio::select! {
        _ = tokio::time::sleep(wait) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

async fn set_cursor_in(
    pool: &deadpool_postgres::Pool,
    instance: &str,
    at: DateTime<Utc>,
) -> Result<(), AlarmError> {
    let client = pool.get().await?;
    set_cursor(&**client, instance, at).await
}

pub(super) async fn set_cursor(
    c: &impl tokio_postgres::GenericClient,
    instance: &str,
    at: DateTime<Utc>,
) -> Result<(), AlarmError> {
    c.execute(
        "INSERT INTO alarm_cursor (instance, received_at) VALUES ($1, $2) \
         ON CONFLICT (instance) DO UPDATE \
         SET received_at = GREATEST(alarm_cursor.received_at, excluded.received_at)",
        &[&instance, &at],
    )
    .await?;
    Ok(())
}

/// Events stored within this margin before the cursor are looked at again at start-up: the
/// writer stamps `received_at` a little before it commits. Idempotence makes it harmless.
const CATCH_UP_MARGIN_SECS: i64 = 120;

/// Derives what stored events have not yet given, from this instance's cursor (a new instance
/// starts from the newest cursor of any; an empty table means from the beginning) to the
/// moment it starts. Returns how many events it looked at.
///
/// It stops there because everything this process's writer stores reaches derivation through
/// the feed, and the writer stamps `received_at` from the same clock: an event received after
/// that moment is this process's (or another running instance's, which derives it). Reading
/// on instead would chase the ingest: while a backlog drains, each page scans the newest events
/// again, all of them, since `received_at` has no index of its own.
pub async fn catch_up(
    pool: &deadpool_postgres::Pool,
    rules: &Rules,
    live: &LiveHub,
    instance: &str,
) -> Result<usize, AlarmError> {
    let until = Utc::now();
    let mut client = pool.get().await?;
    let since = {
        let row = client
            .query_one(
                "SELECT COALESCE((SELECT received_at FROM alarm_cursor WHERE instance = $1), \
                                 (SELECT max(received_at) FROM alarm_cursor))",
                &[&instance],
            )
            .await?;
        match row.get::<_, Option<DateTime<Utc>>>(0) {
            Some(at) => at - chrono::Duration::seconds(CATCH_UP_MARGIN_SECS),
            None => DateTime::<Utc>::UNIX_EPOCH,
        }
    };
    let tx = client.transaction().await?;
    let portal = derive::events_portal(&tx, since, Some(until)).await?;
    let mut looked = 0;
    loop {
        let (inputs, more) = derive::next_events(&tx, &portal, CATCH_UP_CHUNK).await?;
        looked += inputs.len();
        process(pool, rules, live, &inputs).await?;
        if let Some(last) = inputs.last() {
            set_cursor_in(pool, instance, last.received_at).await?;
        }
        if !more {
            break;
        }
    }
    tx.commit().await?;
    Ok(looked)
}

/// Events the start-up catch-up derives at a time.
const CATCH_UP_CHUNK: i32 = 5000;

/// Advisory lock key of the missing-heartbeat check ("alarm" in ASCII, plus one).
const SWEEP_LOCK: i64 = 0x616c_6172_6d01;

/// The periodic missing-heartbeat check, in its own transaction, published after commit.
pub async fn run_sweep(
    pool: &deadpool_postgres::Pool,
    rules: &Rules,
    live: &LiveHub,
    now: DateTime<Utc>,
) -> Result<usize, AlarmError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // One instance at a time does the check (work that must run once takes an
    // advisory lock); the others skip this round.
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SWEEP_LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(0);
    }
    let changes = derive::sweep(&tx, rules, &IdMap::new(), now).await?;
    tx.commit().await?;
    publish(live, &changes);
    Ok(changes.len())
}

//! Telecare alarms: lifecycle, live stream, response times, falls and long lies, device health.
//!
//! - [`model`]: the closed sets (kinds, severities, states, outcome codes) mapped to SQL.
//! - [`derive`]: the only code that changes `alarms`, `alarm_events` and `device_health`, from
//!   events (live feed, catch-up, rebuild) and staff actions (API, rebuild).
//! - [`routes`](mod@routes): the HTTP API for provider staff and responders; [`figures`]: response
//!   times against the TSA targets; [`rebuild`]: recomputing the derived tables.
//!
//! Sources of truth are the raw `events` and `alarm_actions` (what staff did, who and when);
//! everything else here is derived and [`rebuild`] recomputes it with the same alarm ids.
//! A change is published to the live stream (`alarm` / `technical_alarm`) right after the
//! transaction that made it has committed. See `docs/alarms.md`.

pub mod derive;
pub mod figures;
pub mod model;
pub mod rebuild;
pub mod routes;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::http::ApiError;
use crate::ingest::CommittedBatch;
use crate::live::LiveHub;
use derive::{Change, IdMap, Input, Rules};
pub use rebuild::{rebuild, rebuild_with, RebuildReport};

/// Settings under `[alarms]`. Targets and thresholds follow the TSA code of practice for telecare.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmSettings {
    /// Heartbeat interval assumed when a heartbeat carries no `interval_s`. Default 900 (15 min).
    pub heartbeat_interval_secs: u32,
    /// A device is missing after this many intervals without a heartbeat. Default 2.5.
    pub heartbeat_missing_factor: f64,
    /// How often the missing-heartbeat check runs. Default 30.
    pub sweep_interval_secs: u64,
    /// `battery_low` clears on a heartbeat with the battery above this percentage. Default 20.
    pub battery_low_percent: u8,
    /// A fall whose responder arrived this long after it or later is a long lie. Default 60.
    pub long_lie_minutes: u32,
    /// Answer targets (TSA code of practice): 97.5% within 60 s, 99% within 180 s.
    pub answer_target_secs: u32,
    pub answer_target_share: f64,
    pub answer_limit_secs: u32,
    pub answer_limit_share: f64,
    /// Mobile responders on site: 90% within 45 minutes, all within 60 minutes.
    pub on_site_target_minutes: u32,
    pub on_site_target_share: f64,
    pub on_site_limit_minutes: u32,
    pub on_site_limit_share: f64,
    /// `door_open_too_long` raises an alarm only at night, local hours `[start, end)`.
    /// Defaults 22 and 7.
    pub night_start_hour: u32,
    pub night_end_hour: u32,
    /// Time zone for the night window (IANA name known to PostgreSQL). Default `Europe/London`.
    pub timezone: String,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: 900,
            heartbeat_missing_factor: 2.5,
            sweep_interval_secs: 30,
            battery_low_percent: 20,
            long_lie_minutes: 60,
            answer_target_secs: 60,
            answer_target_share: 0.975,
            answer_limit_secs: 180,
            answer_limit_share: 0.99,
            on_site_target_minutes: 45,
            on_site_target_share: 0.90,
            on_site_limit_minutes: 60,
            on_site_limit_share: 1.0,
            night_start_hour: 22,
            night_end_hour: 7,
            timezone: "Europe/London".into(),
        }
    }
}

impl AlarmSettings {
    /// One line naming what is wrong, or `Ok`. Run when the configuration is loaded.
    pub fn validate(&self) -> Result<(), String> {
        let shares = [
            ("answer_target_share", self.answer_target_share),
            ("answer_limit_share", self.answer_limit_share),
            ("on_site_target_share", self.on_site_target_share),
            ("on_site_limit_share", self.on_site_limit_share),
        ];
        for (name, v) in shares {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("alarms.{name} must be between 0 and 1"));
            }
        }
        if self.heartbeat_missing_factor.is_nan() || self.heartbeat_missing_factor < 1.0 {
            return Err("alarms.heartbeat_missing_factor must be at least 1".into());
        }
        if self.heartbeat_interval_secs == 0 || self.sweep_interval_secs == 0 {
            return Err(
                "alarms.heartbeat_interval_secs and alarms.sweep_interval_secs must be at least 1"
                    .into(),
            );
        }
        if self.night_start_hour > 23 || self.night_end_hour > 23 {
            return Err("alarms.night_start_hour and alarms.night_end_hour must be 0 to 23".into());
        }
        if self.battery_low_percent > 100 {
            return Err("alarms.battery_low_percent must be 0 to 100".into());
        }
        Ok(())
    }
}

/// Errors of the alarm domain's storage work.
#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    #[error("database error: {}", db_detail(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Corrupt(#[from] model::UnknownValue),
}

/// tokio-postgres says only "db error"; the server's message is in the source.
fn db_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl AlarmError {
    /// Worth retrying: the database is away, not the query wrong.
    fn is_transient(&self) -> bool {
        match self {
            // Also a deadlock or serialization failure between instances: the retry succeeds.
            AlarmError::Db(e) => crate::db::is_transient(e),
            AlarmError::Pool(_) => true,
            AlarmError::Corrupt(_) => false,
        }
    }
}

impl From<AlarmError> for ApiError {
    fn from(e: AlarmError) -> Self {
        match e {
            AlarmError::Db(e) => ApiError::from(e),
            AlarmError::Pool(e) => ApiError::from(e),
            AlarmError::Corrupt(e) => ApiError::Unexpected(e.into()),
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    routes::routes(cfg);
}

/// Publishes committed changes to the live stream.
pub(crate) fn publish(live: &LiveHub, changes: &[Change]) {
    for change in changes {
        live.publish(change.view.live_event(change.transition));
        metrics::counter!("homeward_alarm_transitions_total",
            "category" => change.view.category.as_str(),
            "transition" => change.transition.as_str())
        .increment(1);
    }
}

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
                derive_with_retry(
                    &feed_pool,
                    &feed_rules,
                    &feed_live,
                    &care,
                    &mut feed_shutdown,
                )
                .await;
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

/// Heartbeats and the technical events they interact with (battery, power, link).
fn is_technical(kind: homeward_proto::EventKind) -> bool {
    use homeward_proto::EventKind as K;
    matches!(
        kind,
        K::Heartbeat
            | K::BatteryLow
            | K::PowerFailure
            | K::PowerRestored
            | K::LinkFailure
            | K::LinkRestored
    )
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

/// What one statement of a pass gave: each event's changes, by its place in the run.
type Done = Vec<(usize, Vec<derive::Change>)>;
/// A statement of a pass, sent (pipelined) and awaited in order.
type Sent<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Done, AlarmError>> + Send + 'a>>;

/// Derives alarms from newly stored events, in order (runs of heartbeats together), in one
/// transaction, and publishes the changes once it has committed. One commit per pass rather
/// than per event: under load the care events of a pass are many, and a commit each (an fsync
/// each) was what made derivation fall behind ingest.
pub async fn process(
    pool: &deadpool_postgres::Pool,
    rules: &Rules,
    live: &LiveHub,
    inputs: &[Input],
) -> Result<(), AlarmError> {
    let mut client = pool.get().await?;
    let ids = IdMap::new();
    let tx = client.transaction().await?;
    // The pass's statements are few and run thousands of times a second under load: plan each
    // once per connection (a custom plan each time cost more than running it). Every one of
    // them reaches its rows by a key or a unique index whatever the parameters.
    tx.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan")
        .await?;
    // Heartbeats keep their state in memory for the whole pass; the runs of other events
    // between them go out pipelined, in the order [`pass_order`] gives (each device's technical
    // events, and the care events, in their own order). Each device's heartbeats interact only
    // with that device's technical alarms, so this gives the same rows as the events' order.
    let mut heartbeats = derive::Heartbeats::load(&tx, inputs).await?;
    let mut known = derive::Known::load(&tx, rules, inputs).await?;
    derive::prepare_event_statements(&tx).await?;
    let inputs = pass_order(inputs);
    let mut changes = Vec::new();
    let mut i = 0;
    while i < inputs.len() {
        if inputs[i].kind == homeward_proto::EventKind::Heartbeat {
            changes.extend(heartbeats.apply(&tx, rules, &ids, inputs[i]).await?);
            i += 1;
            continue;
        }
        // A run of other events goes out at once, pipelined on the connection. Events whose
        // alarms cannot interact (different fold keys) need no order among themselves, so the
        // run is cut into rounds, the k-th event of each key in round k: a round's raises are
        // one statement, and every other event is at most one statement, sent in order.
        let end = inputs[i..]
            .iter()
            .position(|e| e.kind == homeward_proto::EventKind::Heartbeat)
            .map_or(inputs.len(), |p| i + p);
        let run: Vec<&Input> = inputs[i..end]
            .iter()
            .copied()
            .filter(|input| known.done(input) != Some(true))
            .collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        // Per round: the raises planned (with their place in the run), and the other events.
        let mut rounds: Vec<(Vec<usize>, Vec<derive::PlannedRaise>, Vec<usize>)> = Vec::new();
        for (n, input) in run.iter().enumerate() {
            // A raise's fold key is its order key: worked out once.
            let planned = derive::planned_raise(rules, &known, input);
            let key = match &planned {
                Some(p) => Some(p.1.clone()),
                None => derive::order_key(rules, &known, input),
            };
            let round = match key {
                Some(key) => {
                    let k = seen.entry(key).or_default();
                    *k += 1;
                    *k - 1
                }
                None => 0,
            };
            if rounds.len() <= round {
                rounds.resize_with(round + 1, Default::default);
            }
            match planned {
                Some(p) => {
                    rounds[round].0.push(n);
                    rounds[round].1.push(p);
                }
                None => rounds[round].2.push(n),
            }
        }
        let mut pending: Vec<Sent<'_>> = Vec::new();
        for (order, planned, others) in rounds {
            if !planned.is_empty() {
                let (tx, ids) = (&tx, &ids);
                pending.push(Box::pin(async move {
                    let changes = derive::raise_many(tx, ids, &planned).await?;
                    Ok(order
                        .into_iter()
                        .zip(changes)
                        .map(|(n, c)| (n, c.into_iter().collect()))
                        .collect())
                }));
            }
            for n in others {
                let (tx, ids, known, input) = (&tx, &ids, &known, run[n]);
                pending.push(Box::pin(async move {
                    Ok(vec![(
                        n,
                        derive::derive_event(tx, rules, ids, known, input).await?,
                    )])
                }));
            }
        }
        // Poll each once, in order: that sends its statement.
        let mut first = Vec::with_capacity(pending.len());
        for fut in &mut pending {
            first.push(
                std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await,
            );
        }
        let mut results: Vec<Vec<derive::Change>> = vec![Vec::new(); run.len()];
        for (fut, polled) in pending.into_iter().zip(first) {
            let done = match polled {
                std::task::Poll::Ready(result) => result?,
                std::task::Poll::Pending => fut.await?,
            };
            for (n, changes) in done {
                results[n] = changes;
            }
        }
        for (input, done) in run.into_iter().zip(results) {
            if !done.is_empty() {
                known.mark_done(input);
            }
            heartbeats.note(input.device_id, &done);
            changes.extend(done);
        }
        i = end;
    }
    heartbeats.store(&tx, rules).await?;
    tx.commit().await?;
    publish(live, &changes);
    Ok(())
}

/// The order a pass applies its events in: each device's technical events (heartbeats,
/// battery, power, link: they only ever touch that device's technical alarms and heartbeat
/// state) keep their order, and so do the care events among themselves (they fold per person,
/// across devices), but nothing else is ordered. So the events between one device's heartbeats
/// no longer cut the pass into runs of one: every group's first run of heartbeats comes first,
/// then every group's first run of other events together (one pipelined run, its raises in
/// rounds of one statement each), then every group's second run of heartbeats, and so on.
///
/// Each event gets a level: within its group, heartbeats take even levels and other events odd
/// ones, and the level only grows; a stable sort by level keeps each group's order. Care and
/// technical alarms never interact (different categories; care events never touch heartbeat
/// state), so this gives the same rows as the events' own order, which is what a rebuild uses.
fn pass_order(inputs: &[Input]) -> Vec<&Input> {
    use homeward_proto::EventKind as K;
    // Each group's current level: a device's technical events, or (None) the care events.
    let mut level: HashMap<Option<i32>, u32> = HashMap::new();
    let mut keyed: Vec<(u32, &Input)> = inputs
        .iter()
        .map(|input| {
            let heartbeat = input.kind == K::Heartbeat;
            let group = is_technical(input.kind).then_some(input.device_id);
            let l = level.entry(group).or_insert(0);
            // Even levels hold heartbeats, odd ones everything else.
            if heartbeat == (*l % 2 == 1) {
                *l += 1;
            }
            (*l, input)
        })
        .collect();
    keyed.sort_by_key(|(l, _)| *l);
    keyed.into_iter().map(|(_, input)| input).collect()
}

async fn set_cursor_in(
    pool: &deadpool_postgres::Pool,
    instance: &str,
    at: DateTime<Utc>,
) -> Result<(), AlarmError> {
    let client = pool.get().await?;
    set_cursor(&**client, instance, at).await
}

async fn set_cursor(
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
/// starts from the newest cursor of any; an empty table means from the beginning). Returns how
/// many events it looked at.
pub async fn catch_up(
    pool: &deadpool_postgres::Pool,
    rules: &Rules,
    live: &LiveHub,
    instance: &str,
) -> Result<usize, AlarmError> {
    let since = {
        let client = pool.get().await?;
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
    let mut looked = 0;
    let mut after = (since, 0, 0);
    loop {
        let (inputs, next) = {
            let client = pool.get().await?;
            derive::events_page(&client, after, 5000).await?
        };
        looked += inputs.len();
        process(pool, rules, live, &inputs).await?;
        if let Some(last) = inputs.last() {
            set_cursor_in(pool, instance, last.received_at).await?;
        }
        match next {
            Some(key) => after = key,
            None => break,
        }
    }
    Ok(looked)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use homeward_proto::EventKind as K;
    use std::collections::HashSet;

    fn input(device_id: i32, seq: i64, kind: K) -> Input {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        Input {
            device_id,
            organisation_id: 1,
            device_uid: format!("d{device_id}").into(),
            seq,
            occurred_at: at,
            received_at: at,
            kind,
            battery: None,
            signal: None,
            interval_s: None,
        }
    }

    fn order(inputs: &[Input]) -> Vec<(i32, i64)> {
        pass_order(inputs)
            .into_iter()
            .map(|i| (i.device_id, i.seq))
            .collect()
    }

    #[test]
    fn a_pass_keeps_each_groups_order_and_gathers_the_runs_between_heartbeats() {
        let inputs = [
            input(1, 1, K::Heartbeat),
            input(1, 2, K::BatteryLow),
            input(2, 1, K::Heartbeat),
            input(1, 3, K::Heartbeat),
            input(3, 1, K::PendantAlarm),
            input(2, 2, K::PowerFailure),
            input(4, 1, K::AlarmReset),
            input(2, 3, K::Heartbeat),
            input(2, 4, K::PowerRestored),
        ];
        assert_eq!(
            order(&inputs),
            [
                // Level 0: each device's first heartbeats.
                (1, 1),
                (2, 1),
                // Level 1: the first run of other events of every group, care ones in order.
                (1, 2),
                (3, 1),
                (2, 2),
                (4, 1),
                // Level 2: the heartbeats after them.
                (1, 3),
                (2, 3),
                // Level 3.
                (2, 4),
            ]
        );
    }

    #[test]
    fn within_each_group_the_order_is_the_events_own() {
        // Any interleaving of groups: each device's technical events, and the care events,
        // come out in the order they went in.
        let kinds = [K::Heartbeat, K::BatteryLow, K::LinkFailure, K::LinkRestored];
        let care = [K::PendantAlarm, K::AlarmReset, K::ResponderPresent];
        let mut inputs = Vec::new();
        for n in 0..300i64 {
            let device = (n * 7 % 5) as i32 + 1;
            let kind = if n % 11 == 3 {
                care[(n % 3) as usize]
            } else {
                kinds[((n * 13) % 4) as usize]
            };
            inputs.push(input(device, n + 1, kind));
        }
        let out = pass_order(&inputs);
        assert_eq!(out.len(), inputs.len());
        let group = |i: &Input| is_technical(i.kind).then_some(i.device_id);
        for g in inputs.iter().map(group).collect::<HashSet<_>>() {
            let before: Vec<i64> = inputs
                .iter()
                .filter(|i| group(i) == g)
                .map(|i| i.seq)
                .collect();
            let after: Vec<i64> = out
                .iter()
                .filter(|i| group(i) == g)
                .map(|i| i.seq)
                .collect();
            assert_eq!(before, after, "group {g:?}");
        }
        // Fewer runs of non-heartbeat events than in the events' own order.
        let runs = |v: &mut dyn Iterator<Item = K>| {
            let mut n = 0;
            let mut prev = K::Heartbeat;
            for k in v {
                if k != K::Heartbeat && prev == K::Heartbeat {
                    n += 1;
                }
                prev = k;
            }
            n
        };
        assert!(
            runs(&mut out.iter().map(|i| i.kind)) < runs(&mut inputs.iter().map(|i| i.kind)) / 4
        );
    }
}

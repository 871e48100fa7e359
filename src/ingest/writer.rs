//! The batch writer: one task, one database connection of its own, jobs committed in the order
//! they arrive, so MQTT acknowledgements go out in the order the messages came in.
//!
//! A batch closes when it holds `ingest.batch_size` items, when `ingest.linger_ms` has passed
//! since its first job, or at once when a priority event (alarm, fall) joins it. It is written
//! in one transaction: binary COPY of its events into a temporary staging table, one
//! `INSERT ... ON CONFLICT DO NOTHING RETURNING` into `events` (so a resend is stored once and
//! we know which rows are new), its dead letters and status changes, then COMMIT. Only then are
//! its jobs completed.
//!
//! Failures: a lost connection or a database that is down fails the HTTP jobs (503) and keeps
//! the MQTT jobs, retried with back-off until the database returns. Any other error (a row the
//! database refuses) is isolated by writing the batch job by job; a job that still fails has its
//! events dead-lettered with the database's reason, so one bad row never blocks the stream.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use futures_util::SinkExt;
use homeward_proto::{AckRanges, Encoding};
use tokio::sync::{mpsc, watch};

use super::copy;
use super::{CommittedBatch, CommittedEvent, DeadLetter, Item, Job, Outcome, Source, WriteError};
use crate::config::IngestSettings;
use crate::http::problem::is_connection_error;

/// Completes MQTT jobs: the broker-level ack and the end-to-end ack to the device.
pub trait Acker: Send + Sync {
    /// Acknowledge one message, if it still belongs to the current connection.
    fn ack(&self, publish: &rumqttc::Publish, epoch: u64);
    /// Tell a device which of its sequence numbers are stored.
    fn stored(&self, device_uid: &str, ranges: &AckRanges, encoding: Encoding);
}

/// Where jobs are sent. Cloned by every producer.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
}

impl WriterHandle {
    /// Queues a job, waiting while the queue is full (back-pressure).
    pub async fn submit(&self, job: Job) -> Result<(), WriteError> {
        self.tx
            .send(job)
            .await
            .map_err(|_| WriteError::ShuttingDown)
    }

    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

pub struct Writer {
    pool: Pool,
    settings: IngestSettings,
    rx: mpsc::Receiver<Job>,
    acker: Option<Arc<dyn Acker>>,
    conn: Option<Object>,
    committed: Vec<mpsc::Sender<CommittedBatch>>,
}

impl Writer {
    pub fn new(pool: Pool, settings: IngestSettings) -> (Self, WriterHandle) {
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        (
            Self {
                pool,
                settings,
                rx,
                acker: None,
                conn: None,
                committed: Vec::new(),
            },
            WriterHandle { tx },
        )
    }

    pub fn set_acker(&mut self, acker: Arc<dyn Acker>) {
        self.acker = Some(acker);
    }

    /// A derivation's feed of newly stored events. The writer waits when a feed is full, so a
    /// slow derivation slows ingest rather than missing events.
    pub fn subscribe_committed(&mut self, capacity: usize) -> mpsc::Receiver<CommittedBatch> {
        let (tx, rx) = mpsc::channel(capacity);
        self.committed.push(tx);
        rx
    }

    /// Runs until every handle is dropped and the queue is drained, or until `shutdown` fires
    /// (then it still commits what it already holds, once).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let linger = Duration::from_millis(self.settings.linger_ms);
        loop {
            let first = tokio::select! {
                job = self.rx.recv() => job,
                _ = shutdown.changed() => {
                    self.drain_on_shutdown().await;
                    return;
                }
            };
            let Some(first) = first else { return };
            let mut batch = Vec::with_capacity(64);
            let mut items = first.items.len();
            let mut urgent = is_urgent(&first);
            batch.push(first);
            let deadline = tokio::time::Instant::now() + linger;
            while items < self.settings.batch_size {
                // Take what is already queued without waiting, then wait out the linger; an
                // urgent job ends the wait (what is already queued still joins it: that costs
                // the alarm no time and keeps batches large under load).
                let next = match self.rx.try_recv() {
                    Ok(job) => Some(job),
                    Err(_) if urgent => None,
                    Err(_) => tokio::select! {
                        job = self.rx.recv() => job,
                        _ = tokio::time::sleep_until(deadline) => None,
                    },
                };
                let Some(job) = next else { break };
                items += job.items.len();
                urgent |= is_urgent(&job);
                batch.push(job);
            }
            metrics::gauge!("homeward_ingest_queue_depth", "stage" => "writer")
                .set(self.rx.len() as f64);
            self.commit_with_retry(batch, &mut shutdown).await;
        }
    }

    async fn drain_on_shutdown(&mut self) {
        let mut batch = Vec::new();
        while let Ok(job) = self.rx.try_recv() {
            batch.push(job);
        }
        if batch.is_empty() {
            return;
        }
        match self.write(&batch).await {
            Ok(outcomes) => self.finish(batch, outcomes).await,
            Err(_) => fail_all(batch, WriteError::ShuttingDown),
        }
    }

    async fn commit_with_retry(
        &mut self,
        mut batch: Vec<Job>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.write(&batch).await {
                Ok(outcomes) => {
                    self.finish(batch, outcomes).await;
                    return;
                }
                Err(BatchError::Unavailable(reason)) => {
                    self.conn = None;
                    // Phones retry on 503; devices' messages wait, unacknowledged.
                    let (http, kept): (Vec<Job>, Vec<Job>) = batch
                        .into_iter()
                        .partition(|j| matches!(j.source, Source::Http(_)));
                    fail_all(http, WriteError::Unavailable);
                    batch = kept;
                    if batch.is_empty() {
                        return;
                    }
                    tracing::warn!(%reason, retry_in_ms = backoff.as_millis() as u64, jobs = batch.len(), "database unavailable; holding the batch");
                    metrics::counter!("homeward_ingest_retries_total").increment(1);
                    let wake = tokio::time::Instant::now() + backoff;
                    loop {
                        // While waiting, answer new HTTP jobs at once (503) and keep new MQTT
                        // jobs behind the held ones, so acknowledgements stay in order.
                        tokio::select! {
                            _ = tokio::time::sleep_until(wake) => break,
                            job = self.rx.recv() => match job {
                                Some(job) if matches!(job.source, Source::Http(_)) => {
                                    fail_all(vec![job], WriteError::Unavailable)
                                }
                                Some(job) => batch.push(job),
                                None => break,
                            },
                            _ = shutdown.changed() => {
                                // Unacknowledged MQTT messages stay with the broker or device.
                                fail_all(batch, WriteError::ShuttingDown);
                                return;
                            }
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(BatchError::Rejected(reason)) => {
                    tracing::warn!(%reason, "the database refused a batch; writing it job by job");
                    self.isolate(batch, shutdown).await;
                    return;
                }
            }
        }
    }

    /// Writes each job alone; a job the database still refuses is dead-lettered.
    async fn isolate(&mut self, batch: Vec<Job>, shutdown: &mut watch::Receiver<bool>) {
        for job in batch {
            let single = vec![job];
            match self.write(&single).await {
                Ok(outcomes) => self.finish(single, outcomes).await,
                Err(BatchError::Rejected(reason)) => {
                    let mut job = single.into_iter().next().expect("one job");
                    job.items = job
                        .items
                        .into_iter()
                        .map(|item| refused(item, &reason))
                        .collect();
                    Box::pin(self.commit_with_retry(vec![job], shutdown)).await;
                }
                Err(BatchError::Unavailable(_)) => {
                    Box::pin(self.commit_with_retry(single, shutdown)).await;
                }
            }
        }
    }

    /// After commit: complete the jobs, then feed the derivations.
    async fn finish(&mut self, batch: Vec<Job>, outcomes: Vec<Vec<Outcome>>) {
        let stored: Vec<CommittedEvent> = if self.committed.is_empty() {
            Vec::new()
        } else {
            batch
                .iter()
                .zip(&outcomes)
                .flat_map(|(job, outcomes)| job.items.iter().zip(outcomes))
                .filter_map(|(item, outcome)| match (item, outcome) {
                    (Item::Event(e), Outcome::Stored) => Some(CommittedEvent {
                        device_id: e.row.device_id,
                        organisation_id: e.organisation_id,
                        device_uid: e.device_uid.clone(),
                        seq: e.row.seq,
                        occurred_at: e.row.occurred_at,
                        received_at: e.row.received_at,
                        event: e.event.clone(),
                    }),
                    _ => None,
                })
                .collect()
        };
        self.complete(batch, outcomes);
        if stored.is_empty() {
            return;
        }
        let stored: CommittedBatch = stored.into();
        self.committed.retain(|tx| !tx.is_closed());
        for tx in &self.committed {
            let _ = tx.send(stored.clone()).await;
        }
    }

    /// Completes committed jobs in order: acks, replies, end-to-end acks.
    fn complete(&self, batch: Vec<Job>, outcomes: Vec<Vec<Outcome>>) {
        let mut e2e: HashMap<Arc<str>, (AckRanges, Encoding)> = HashMap::new();
        // Counted per batch, not per event: a metrics lookup per event shows in profiles.
        let mut counts: HashMap<&'static str, u64> = HashMap::new();
        for outcome in outcomes.iter().flatten() {
            *counts.entry(outcome.label()).or_default() += 1;
        }
        for (label, n) in counts {
            metrics::counter!("homeward_ingest_events_total", "outcome" => label).increment(n);
        }
        for (job, outcomes) in batch.into_iter().zip(outcomes) {
            match job.source {
                Source::Mqtt { publish, epoch } => {
                    for item in &job.items {
                        if let Item::Event(e) = item {
                            let entry = e2e
                                .entry(e.device_uid.clone())
                                .or_insert_with(|| (AckRanges::new(), e.encoding));
                            entry.0.insert(e.row.seq as u64);
                            entry.1 = e.encoding;
                        }
                    }
                    if let Some(acker) = &self.acker {
                        acker.ack(&publish, epoch);
                    }
                }
                Source::Http(reply) => {
                    let _ = reply.send(Ok(outcomes));
                }
                Source::None => {}
            }
        }
        if let Some(acker) = &self.acker {
            for (uid, (ranges, encoding)) in e2e {
                acker.stored(&uid, &ranges, encoding);
            }
        }
    }

    async fn connection(&mut self) -> Result<&mut Object, BatchError> {
        if self.conn.is_none() {
            let conn = self
                .pool
                .get()
                .await
                .map_err(|e| BatchError::Unavailable(e.to_string()))?;
            conn.batch_execute(
                "CREATE TEMPORARY TABLE IF NOT EXISTS events_staging
                   (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
            )
            .await
            .map_err(classify)?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// One transaction for the whole batch; returns each job's item outcomes.
    async fn write(&mut self, batch: &[Job]) -> Result<Vec<Vec<Outcome>>, BatchError> {
        let started = Instant::now();
        let rows: Vec<copy::EventRow> = batch
            .iter()
            .flat_map(|j| j.items.iter())
            .filter_map(|i| match i {
                Item::Event(e) => Some(e.row.clone()),
                _ => None,
            })
            .collect();
        let conn = self.connection().await?;
        let result = write_batch(conn, batch, &rows).await;
        if let Err(BatchError::Unavailable(_)) = &result {
            // Never hand a broken connection back to the pool.
            if let Some(conn) = self.conn.take() {
                let _ = Object::take(conn);
            }
        }
        let inserted = result?;
        metrics::histogram!("homeward_ingest_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("homeward_ingest_batch_size").record(rows.len() as f64);

        let mut new_rows: HashSet<(i32, i64)> = inserted.into_iter().collect();
        Ok(batch
            .iter()
            .map(|job| {
                job.items
                    .iter()
                    .map(|item| match item {
                        // The first occurrence of a new key was stored; any other is a duplicate.
                        Item::Event(e) => {
                            if new_rows.remove(&(e.row.device_id, e.row.seq)) {
                                Outcome::Stored
                            } else {
                                Outcome::Duplicate
                            }
                        }
                        Item::Status(_) => Outcome::StatusRecorded,
                        Item::DeadLetter(_) => Outcome::DeadLettered,
                    })
                    .collect()
            })
            .collect())
    }
}

async fn write_batch(
    conn: &mut Object,
    batch: &[Job],
    rows: &[copy::EventRow],
) -> Result<Vec<(i32, i64)>, BatchError> {
    let tx = conn.transaction().await.map_err(classify)?;
    let mut inserted = Vec::new();
    if !rows.is_empty() {
        let sink = tx
            .copy_in(&format!(
                "COPY events_staging ({}) FROM STDIN (FORMAT binary)",
                copy::COLUMNS
            ))
            .await
            .map_err(classify)?;
        let mut sink = Box::pin(sink);
        sink.send(copy::encode(rows)).await.map_err(classify)?;
        // An unfinished COPY is silently aborted: finish() is what commits the data to the table.
        sink.as_mut().finish().await.map_err(classify)?;
        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO events ({c}) SELECT {c} FROM events_staging
                 ON CONFLICT DO NOTHING RETURNING device_id, seq",
                c = copy::COLUMNS
            ))
            .await
            .map_err(classify)?;
        let stored = tx.query(&insert, &[]).await.map_err(classify)?;
        inserted = stored.iter().map(|r| (r.get(0), r.get(1))).collect();
    }
    for item in batch.iter().flat_map(|j| j.items.iter()) {
        match item {
            Item::DeadLetter(d) => {
                tx.execute(
                    "INSERT INTO dead_letters
                       (organisation_id, device_id, device_uid, source, topic, payload, reason_code, reason)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &d.organisation_id,
                        &d.device_id,
                        &d.device_uid,
                        &d.source,
                        &d.topic,
                        &d.payload.as_ref(),
                        &d.reason_code,
                        &d.reason,
                    ],
                )
                .await
                .map_err(classify)?;
            }
            Item::Status(s) => {
                tx.execute(
                    "INSERT INTO device_presence (device_id, online, changed_at) VALUES ($1, $2, $3)
                     ON CONFLICT (device_id) DO UPDATE SET online = excluded.online, changed_at = excluded.changed_at
                     WHERE device_presence.changed_at <= excluded.changed_at",
                    &[&s.device_id, &s.online, &s.at],
                )
                .await
                .map_err(classify)?;
            }
            Item::Event(_) => {}
        }
    }
    tx.commit().await.map_err(classify)?;
    Ok(inserted)
}

enum BatchError {
    /// The database is not there: retry later.
    Unavailable(String),
    /// The database refused the data: isolate it.
    Rejected(String),
}

fn classify(e: tokio_postgres::Error) -> BatchError {
    if is_connection_error(&e) {
        BatchError::Unavailable(e.to_string())
    } else {
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string());
        BatchError::Rejected(message)
    }
}

fn is_urgent(job: &Job) -> bool {
    job.items
        .iter()
        .any(|i| matches!(i, Item::Event(e) if e.priority))
}

fn fail_all(jobs: Vec<Job>, error: WriteError) {
    for job in jobs {
        if let Source::Http(reply) = job.source {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

/// An item the database refused, as a dead letter carrying the database's reason.
fn refused(item: Item, reason: &str) -> Item {
    match item {
        Item::Event(e) => Item::DeadLetter(DeadLetter {
            organisation_id: None,
            device_id: Some(e.row.device_id),
            device_uid: Some(e.device_uid.to_string()),
            source: "mqtt",
            topic: None,
            payload: bytes::Bytes::from(
                serde_json::json!({
                    "seq": e.row.seq,
                    "occurred_at": e.row.occurred_at,
                    "kind": e.row.kind,
                    "data": e.row.data,
                })
                .to_string(),
            ),
            reason_code: "storage_refused".into(),
            reason: format!("the database refused the event: {reason}"),
        }),
        Item::Status(s) => Item::DeadLetter(DeadLetter {
            organisation_id: None,
            device_id: None,
            device_uid: None,
            source: "mqtt",
            topic: None,
            payload: bytes::Bytes::from(format!(
                "status device_id={} online={}",
                s.device_id, s.online
            )),
            reason_code: "storage_refused".into(),
            reason: format!("the database refused the status: {reason}"),
        }),
        // A dead letter the database refuses (should not happen): keep it minimal.
        Item::DeadLetter(d) => Item::DeadLetter(DeadLetter {
            organisation_id: None,
            device_id: None,
            reason: format!("{} (stored without its device: {reason})", d.reason),
            ..d
        }),
    }
}

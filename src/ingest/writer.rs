//! The batch writer: one task that gathers jobs into batches and completes them in the order
//! they arrived, so MQTT acknowledgements go out in the order the messages came in.
//!
//! Up to [`PIPELINE`] batches are written at once (one more while an alarm waits), each on a
//! database connection of its own: while one batch commits (waiting for its WAL flush), the
//! next is copied in. Their rows are copied in (device, seq) order, so two batches holding the
//! same event (a resend) wait for each other in one order and never deadlock. However they
//! commit, batches are completed (acks, replies, end-to-end acks, the derivations' feed)
//! strictly in order.
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadpool_postgres::{Object, Pool};
use futures_util::SinkExt;
use homeward_proto::{AckRanges, Encoding};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::copy;
use super::{
    BrokerAck, CommittedBatch, CommittedEvent, DeadLetter, Item, Job, Outcome, Source, StatusItem,
    WriteError,
};
use crate::config::IngestSettings;

/// Completes MQTT jobs: the broker-level ack and the end-to-end ack to the device.
pub trait Acker: Send + Sync {
    /// Release at the broker the messages one commit stored, in the order received; each
    /// only if its connection (epoch) is still the current one. Called once per commit.
    fn ack(&self, acks: &[BrokerAck]);
    /// Tell a device which of its sequence numbers are stored.
    fn stored(&self, device_uid: &str, ranges: &AckRanges, encoding: Encoding);
}

/// Where jobs are sent. Cloned by every producer.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    /// Urgent jobs in the queue (see [`Queue`]).
    urgent: Arc<AtomicUsize>,
}

impl WriterHandle {
    /// Queues a job, waiting while the queue is full (back-pressure).
    pub async fn submit(&self, job: Job) -> Result<(), WriteError> {
        let urgent = is_urgent(&job);
        if urgent {
            self.urgent.fetch_add(1, Ordering::Relaxed);
        }
        self.tx.send(job).await.map_err(|_| {
            if urgent {
                self.urgent.fetch_sub(1, Ordering::Relaxed);
            }
            WriteError::ShuttingDown
        })
    }

    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Most batches being written at once (one connection each), and one more while an urgent
/// job (an alarm, a fall) waits in the queue: its batch is copied in and commits beside the
/// ones ahead of it (one WAL flush can take them all) instead of waiting for one of them to end.
/// Completion stays in order.
pub const PIPELINE: usize = 2;

/// The writer's end of the queue, counting the urgent jobs still in it.
struct Queue {
    rx: mpsc::Receiver<Job>,
    urgent: Arc<AtomicUsize>,
}

impl Queue {
    async fn recv(&mut self) -> Option<Job> {
        let job = self.rx.recv().await;
        if let Some(job) = &job {
            self.took(job);
        }
        job
    }

    fn try_recv(&mut self) -> Result<Job, mpsc::error::TryRecvError> {
        let job = self.rx.try_recv()?;
        self.took(&job);
        Ok(job)
    }

    fn took(&self, job: &Job) {
        if is_urgent(job) {
            self.urgent.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn urgent_waiting(&self) -> bool {
        self.urgent.load(Ordering::Relaxed) > 0
    }

    fn len(&self) -> usize {
        self.rx.len()
    }
}

pub struct Writer {
    pool: Pool,
    settings: IngestSettings,
    rx: Queue,
    acker: Option<Arc<dyn Acker>>,
    /// Connections not writing a batch now, each with its staging table.
    idle: Vec<Object>,
    committed: Vec<mpsc::Sender<CommittedBatch>>,
    /// Jobs that arrived while an earlier batch was held (database away): they are written
    /// next, after every batch before them, so completions stay in order.
    deferred: VecDeque<Job>,
}

/// A batch's rows and other items, owned, so that it can be written on a task of its own.
struct Prepared {
    /// The binary COPY of its events, in (device, seq) order; `None` when it has none.
    copy: Option<Bytes>,
    rows: usize,
    others: Vec<Other>,
}

enum Other {
    DeadLetter(DeadLetter),
    Status(StatusItem),
}

/// A connection back (unless it broke) and the (device, seq) of the rows inserted.
type Written = (Option<Object>, Result<Vec<(i32, i64)>, BatchError>);

/// A batch being written.
struct InFlight {
    batch: Vec<Job>,
    rows: usize,
    started: Instant,
    handle: JoinHandle<Written>,
}

impl Writer {
    pub fn new(pool: Pool, settings: IngestSettings) -> (Self, WriterHandle) {
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let urgent = Arc::new(AtomicUsize::new(0));
        (
            Self {
                pool,
                settings,
                rx: Queue {
                    rx,
                    urgent: urgent.clone(),
                },
                acker: None,
                idle: Vec::new(),
                committed: Vec::new(),
                deferred: VecDeque::new(),
            },
            WriterHandle { tx, urgent },
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
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        loop {
            // A batch beyond the first starts only with a connection to spare: it must not
            // wait in the pool for those the batches in flight hold.
            let limit = PIPELINE + usize::from(self.rx.urgent_waiting());
            let room = inflight.is_empty() || (inflight.len() < limit && self.spare_connection());
            let head = async {
                match inflight.front_mut() {
                    Some(f) => (&mut f.handle).await,
                    None => std::future::pending().await,
                }
            };
            // Lives one loop turn on the stack; boxing the result would allocate per batch.
            #[allow(clippy::large_enum_variant)]
            enum Next {
                Written(Result<Written, tokio::task::JoinError>),
                Job(Option<Job>),
                Shutdown,
            }
            // Completing the oldest batch comes first: its acks are waiting.
            let next = tokio::select! {
                biased;
                written = head => Next::Written(written),
                _ = shutdown.changed() => Next::Shutdown,
                job = self.next_job(), if room => Next::Job(job),
            };
            match next {
                Next::Written(written) => {
                    let f = inflight.pop_front().expect("the head was polled");
                    self.settle(f, written, &mut inflight, &mut shutdown).await;
                }
                Next::Job(Some(first)) => {
                    let batch = self.gather(first).await;
                    metrics::gauge!("homeward_ingest_queue_depth", "stage" => "writer")
                        .set(self.rx.len() as f64);
                    match self.start(batch).await {
                        Ok(f) => inflight.push_back(f),
                        Err(batch) => {
                            // No connection: settle what is in flight first, then hold this
                            // one (retrying) behind them.
                            self.settle_all(&mut inflight, &mut shutdown).await;
                            self.commit_with_retry(batch, &mut shutdown).await;
                        }
                    }
                }
                Next::Job(None) => {
                    self.settle_all(&mut inflight, &mut shutdown).await;
                    return;
                }
                Next::Shutdown => {
                    self.settle_all(&mut inflight, &mut shutdown).await;
                    self.drain_on_shutdown().await;
                    return;
                }
            }
        }
    }

    /// Whether a connection can be had without waiting for one. With a small
    /// `database.pool_size`, or the pool busy with other work, the connections a second or third
    /// batch would wait for can be the ones the batches in flight hold, which only this task
    /// gives back: it would stall until the pool's wait timed out.
    fn spare_connection(&self) -> bool {
        let pool = self.pool.status();
        !self.idle.is_empty() || pool.available > 0 || pool.size < pool.max_size
    }

    /// The next job: one deferred behind a held batch, else the queue's next.
    async fn next_job(&mut self) -> Option<Job> {
        match self.deferred.pop_front() {
            Some(job) => Some(job),
            None => self.rx.recv().await,
        }
    }

    /// Gathers a batch from `first`: up to `ingest.batch_size` items or the linger, ended early
    /// by an urgent job (what is already queued still joins it: that costs the alarm no time
    /// and keeps batches large under load).
    async fn gather(&mut self, first: Job) -> Vec<Job> {
        let linger = Duration::from_millis(self.settings.linger_ms);
        let mut batch = Vec::with_capacity(64);
        let mut items = first.items.len();
        let mut urgent = is_urgent(&first);
        batch.push(first);
        let deadline = tokio::time::Instant::now() + linger;
        while items < self.settings.batch_size {
            let next = match self
                .deferred
                .pop_front()
                .map_or_else(|| self.rx.try_recv(), Ok)
            {
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
        batch
    }

    /// Starts writing `batch` on a connection of its own; gives the batch back when there is
    /// no connection to be had.
    async fn start(&mut self, batch: Vec<Job>) -> Result<InFlight, Vec<Job>> {
        let conn = match self.take_connection().await {
            Ok(conn) => conn,
            Err(_) => return Err(batch),
        };
        let prepared = prepare(&batch);
        let rows = prepared.rows;
        Ok(InFlight {
            batch,
            rows,
            started: Instant::now(),
            handle: tokio::spawn(write_on(conn, prepared)),
        })
    }

    /// Completes a written batch, or when its write failed, retries or isolates it after the
    /// batches behind it have been written (they are completed after it, in order).
    async fn settle(
        &mut self,
        f: InFlight,
        written: Result<Written, tokio::task::JoinError>,
        inflight: &mut VecDeque<InFlight>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let (conn, result) = written.unwrap_or_else(|e| {
            (
                None,
                Err(BatchError::Unavailable(format!("the write failed: {e}"))),
            )
        });
        if let Some(conn) = conn {
            self.idle.push(conn);
        }
        match result {
            Ok(inserted) => {
                record_commit(f.started, f.rows);
                let outcomes = outcomes_of(&f.batch, inserted);
                self.finish(f.batch, outcomes).await;
            }
            Err(error) => {
                let mut later = Vec::with_capacity(inflight.len());
                while let Some(mut g) = inflight.pop_front() {
                    let written = (&mut g.handle).await;
                    later.push((g, written));
                }
                match error {
                    BatchError::Unavailable(_) => self.commit_with_retry(f.batch, shutdown).await,
                    BatchError::Rejected(reason) => {
                        tracing::warn!(%reason, "the database refused a batch; writing it job by job");
                        self.isolate(f.batch, shutdown).await;
                    }
                }
                for (g, written) in later {
                    if *shutdown.borrow() {
                        // The batch before it was not completed: completing this one would ack
                        // out of order. Its messages stay unacknowledged; resends are stored
                        // once, and the derivations catch up on start.
                        fail_all(g.batch, WriteError::ShuttingDown);
                        continue;
                    }
                    Box::pin(self.settle(g, written, &mut VecDeque::new(), shutdown)).await;
                }
            }
        }
    }

    async fn settle_all(
        &mut self,
        inflight: &mut VecDeque<InFlight>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        while let Some(mut f) = inflight.pop_front() {
            let written = (&mut f.handle).await;
            self.settle(f, written, inflight, shutdown).await;
        }
    }

    async fn drain_on_shutdown(&mut self) {
        let mut batch: Vec<Job> = self.deferred.drain(..).collect();
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
                                // Written after this batch and any already written.
                                Some(job) => self.deferred.push_back(job),
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
        let feed = !self.committed.is_empty();
        let stored = self.complete(batch, outcomes, feed);
        if stored.is_empty() {
            return;
        }
        let stored: CommittedBatch = stored.into();
        self.committed.retain(|tx| !tx.is_closed());
        for tx in &self.committed {
            let _ = tx.send(stored.clone()).await;
        }
    }

    /// Completes committed jobs in order: acks, replies, end-to-end acks. Returns the newly
    /// stored events (moved out of the jobs) when `feed` is set.
    fn complete(
        &self,
        batch: Vec<Job>,
        outcomes: Vec<Vec<Outcome>>,
        feed: bool,
    ) -> Vec<CommittedEvent> {
        let mut e2e: HashMap<Arc<str>, (AckRanges, Encoding)> = HashMap::new();
        // Counted per batch, not per event: a metrics lookup per event shows in profiles.
        let mut counts: HashMap<&'static str, u64> = HashMap::new();
        let mut stored_count = 0;
        for outcome in outcomes.iter().flatten() {
            *counts.entry(outcome.label()).or_default() += 1;
            stored_count += usize::from(*outcome == Outcome::Stored);
        }
        for (label, n) in counts {
            metrics::counter!("homeward_ingest_events_total", "outcome" => label).increment(n);
        }
        let mut stored = Vec::with_capacity(if feed { stored_count } else { 0 });
        let now = chrono::Utc::now();
        let mut acks = Vec::with_capacity(batch.len());
        for (job, outcomes) in batch.into_iter().zip(outcomes) {
            let Job { items, source } = job;
            match source {
                Source::Mqtt { ack } => {
                    for item in &items {
                        if let Item::Event(e) = item {
                            let entry = e2e
                                .entry(e.device_uid.clone())
                                .or_insert_with(|| (AckRanges::new(), e.encoding));
                            entry.0.insert(e.row.seq as u64);
                            entry.1 = e.encoding;
                        }
                    }
                    acks.push(ack);
                }
                Source::Http(reply) => {
                    let _ = reply.send(Ok(outcomes.clone()));
                }
                Source::None => {}
            }
            if feed {
                for (item, outcome) in items.into_iter().zip(&outcomes) {
                    if let (Item::Event(e), Outcome::Stored) = (item, outcome) {
                        if e.priority {
                            crate::telemetry::record_alarm_path("stored", e.row.received_at, now);
                        }
                        stored.push(CommittedEvent {
                            device_id: e.row.device_id,
                            organisation_id: e.organisation_id,
                            device_uid: e.device_uid,
                            seq: e.row.seq,
                            occurred_at: e.row.occurred_at,
                            received_at: e.row.received_at,
                            event: e.event,
                        });
                    }
                }
            }
        }
        if let Some(acker) = &self.acker {
            if !acks.is_empty() {
                acker.ack(&acks);
            }
            for (uid, (ranges, encoding)) in e2e {
                acker.stored(&uid, &ranges, encoding);
            }
        }
        stored
    }

    /// An idle connection, or a new one from the pool with its staging table.
    async fn take_connection(&mut self) -> Result<Object, BatchError> {
        if let Some(conn) = self.idle.pop() {
            return Ok(conn);
        }
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
        Ok(conn)
    }

    /// Writes one batch and waits for it (the held and isolated batches); returns each job's
    /// item outcomes.
    async fn write(&mut self, batch: &[Job]) -> Result<Vec<Vec<Outcome>>, BatchError> {
        let started = Instant::now();
        let conn = self.take_connection().await?;
        let prepared = prepare(batch);
        let rows = prepared.rows;
        let (conn, result) = write_on(conn, prepared).await;
        if let Some(conn) = conn {
            self.idle.push(conn);
        }
        let inserted = result?;
        record_commit(started, rows);
        Ok(outcomes_of(batch, inserted))
    }
}

fn record_commit(started: Instant, rows: usize) {
    metrics::histogram!("homeward_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("homeward_ingest_batch_size").record(rows as f64);
}

/// Each job's item outcomes, from the keys the insert stored.
fn outcomes_of(batch: &[Job], inserted: Vec<(i32, i64)>) -> Vec<Vec<Outcome>> {
    let mut new_rows: HashSet<(i32, i64)> = inserted.into_iter().collect();
    batch
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
        .collect()
}

/// The batch's COPY, its rows sorted by (device, seq) (stable: of two copies of one event, the
/// first received is the one stored), and its other items.
fn prepare(batch: &[Job]) -> Prepared {
    let mut rows: Vec<&copy::EventRow> = Vec::new();
    let mut others = Vec::new();
    for item in batch.iter().flat_map(|j| j.items.iter()) {
        match item {
            Item::Event(e) => rows.push(&e.row),
            Item::DeadLetter(d) => others.push(Other::DeadLetter(d.clone())),
            Item::Status(s) => others.push(Other::Status(s.clone())),
        }
    }
    rows.sort_by_key(|r| (r.device_id, r.seq));
    Prepared {
        copy: (!rows.is_empty()).then(|| copy::encode(rows.iter().copied())),
        rows: rows.len(),
        others,
    }
}

/// Writes a prepared batch in one transaction; hands the connection back unless it broke.
async fn write_on(mut conn: Object, prepared: Prepared) -> Written {
    let result = write_batch(&mut conn, &prepared).await;
    if let Err(BatchError::Unavailable(_)) = &result {
        // Never hand a broken connection back to the pool.
        let _ = Object::take(conn);
        return (None, result);
    }
    (Some(conn), result)
}

async fn write_batch(
    conn: &mut Object,
    prepared: &Prepared,
) -> Result<Vec<(i32, i64)>, BatchError> {
    let tx = conn.transaction().await.map_err(classify)?;
    let mut inserted = Vec::new();
    if let Some(copy_data) = &prepared.copy {
        let sink = tx
            .copy_in(&format!(
                "COPY events_staging ({}) FROM STDIN (FORMAT binary)",
                copy::COLUMNS
            ))
            .await
            .map_err(classify)?;
        let mut sink = Box::pin(sink);
        sink.send(copy_data.clone()).await.map_err(classify)?;
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
    for other in &prepared.others {
        match other {
            Other::DeadLetter(d) => {
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
            Other::Status(s) => {
                tx.execute(
                    "INSERT INTO device_presence (device_id, online, changed_at) VALUES ($1, $2, $3)
                     ON CONFLICT (device_id) DO UPDATE SET online = excluded.online, changed_at = excluded.changed_at
                     WHERE device_presence.changed_at <= excluded.changed_at",
                    &[&s.device_id, &s.online, &s.at],
                )
                .await
                .map_err(classify)?;
            }
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
    // Two batches in flight wait on each other only in one order (their rows are sorted), so a
    // deadlock should not happen; if one does, the batch is simply written again.
    if crate::db::is_transient(&e) {
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
        // With its organisation, so that the organisation's staff see it listed.
        Item::Event(e) => Item::DeadLetter(DeadLetter {
            organisation_id: Some(e.organisation_id),
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

//! The in-process front end: with the embedded broker (`mqtt.embedded_ingest = "in_process"`),
//! ingest takes messages from its own persistent session in the broker without a socket, and
//! publishes downlinks the same way. After a message arrives the path is the MQTT client's:
//! [`super::mqtt::message_job`], the writer, one [`super::writer::Acker::ack`] per commit.
//!
//! One consumer task pulls a batch from the session (the broker's inflight window bounds what
//! is out of its keeping), turns each message into a job and submits it to the writer, waiting
//! while the writer's queue is full; meanwhile it pulls nothing, so the rest waits in the
//! session's bounded queue. Messages are released only by the acks after commit, for the
//! attachment (epoch) they were pulled on. A supervisor attaches, subscribes, runs the
//! consumer, and when the consumer ends (a panic, an abort, a takeover of the session) attaches
//! again with back-off: the session then resends what was not acknowledged, in order.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use homeward_proto::topic;
use rumqttc::{Publish, QoS};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use super::mqtt::{message_job, Connected, MqttAcker, Subscriber};
use super::writer::WriterHandle;
use super::BrokerAck;
use crate::broker::{LocalBroker, LocalClient};
use crate::config::{IngestSettings, MqttSettings};
use crate::devices::DeviceDirectory;

/// Most messages pulled from the session at once.
const PULL: usize = 256;
/// An attachment that lasted this long starts the back-off afresh when it ends.
const STABLE: Duration = Duration::from_secs(10);

/// The consumer task of the current attachment, for tests that kill it mid-stream.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct ConsumerHandle(Arc<Mutex<Option<AbortHandle>>>);

impl ConsumerHandle {
    /// Abort the consumer task as a crash would. Returns whether one was running.
    pub fn abort(&self) -> bool {
        let current = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        current.map(|h| h.abort()).is_some()
    }

    fn set(&self, handle: AbortHandle) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }
}

/// What the front end needs to run.
pub struct Inputs {
    pub directory: Arc<DeviceDirectory>,
    pub writer: WriterHandle,
    pub settings: IngestSettings,
}

/// Starts the supervisor on `broker`'s session `mqtt.client_id`. `shutdown` stops pulling.
pub fn start(
    broker: LocalBroker,
    mqtt: &MqttSettings,
    inputs: Inputs,
    shutdown: watch::Receiver<bool>,
) -> (Subscriber, ConsumerHandle) {
    let filters: Vec<String> = [topic::EVENTS_FILTER, topic::STATUS_FILTER]
        .iter()
        .map(|f| match &mqtt.shared_group {
            Some(group) => format!("$share/{group}/{f}"),
            None => f.to_string(),
        })
        .collect();
    let connected = Connected::default();
    let consumer = ConsumerHandle::default();
    let acker = Arc::new(MqttAcker::local(broker.clone(), mqtt.client_id.clone()));
    let task = tokio::spawn(supervise(
        Attach {
            broker,
            client_id: mqtt.client_id.clone(),
            filters,
        },
        Arc::new(inputs),
        connected.clone(),
        consumer.clone(),
        shutdown,
    ));
    let subscriber = Subscriber {
        connected,
        acker,
        tasks: vec![task],
    };
    (subscriber, consumer)
}

struct Attach {
    broker: LocalBroker,
    client_id: String,
    filters: Vec<String>,
}

impl Attach {
    fn attach(&self) -> Option<LocalClient> {
        let client = match self.broker.connect(&self.client_id) {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, client_id = self.client_id, "cannot attach ingest to the embedded broker");
                return None;
            }
        };
        for filter in client.subscribe(&self.filters) {
            tracing::error!(filter, "the embedded broker refused ingest's subscription");
        }
        tracing::info!(
            epoch = client.epoch(),
            "ingest attached to the embedded broker"
        );
        Some(client)
    }
}

/// Why a consumer stopped by itself.
enum End {
    /// Asked to stop, or the writer is gone: do not attach again.
    Stop,
    /// Detached from the session (taken over, or the broker is stopping).
    Detached,
}

async fn supervise(
    attach: Attach,
    inputs: Arc<Inputs>,
    connected: Connected,
    consumer: ConsumerHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        if let Some(client) = attach.attach() {
            connected.set(true);
            let started = Instant::now();
            let task: JoinHandle<End> =
                tokio::spawn(consume(client, inputs.clone(), shutdown.clone()));
            consumer.set(task.abort_handle());
            let ended = task.await;
            connected.set(false);
            match ended {
                Ok(End::Stop) => break,
                Ok(End::Detached) => tracing::error!(
                    "ingest lost its session in the embedded broker (taken over?); attaching again"
                ),
                Err(e) => tracing::error!(error = %e, "the ingest consumer died; attaching again"),
            }
            if started.elapsed() >= STABLE {
                backoff = Duration::from_millis(100);
            }
        }
        metrics::counter!("homeward_ingest_restarts_total").increment(1);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|&stop| stop) => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    connected.set(false);
}

/// Pull, turn into jobs, submit, in order, until detached or stopped. Dropping `client` (at
/// the end, or when the task is aborted) detaches it, leaving what is unacknowledged with the
/// session.
async fn consume(
    mut client: LocalClient,
    inputs: Arc<Inputs>,
    mut shutdown: watch::Receiver<bool>,
) -> End {
    let epoch = client.epoch();
    let mut pulled = Vec::with_capacity(PULL);
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.wait_for(|&stop| stop) => return End::Stop,
            next = client.next(PULL, &mut pulled) => next,
        };
        if next.is_err() {
            return End::Detached;
        }
        // Stopping leaves what is not yet submitted with the session, unacknowledged.
        let submitted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|&stop| stop) => false,
            submitted = submit_all(&mut pulled, epoch, &inputs) => submitted,
        };
        if !submitted {
            return End::Stop;
        }
    }
}

/// Hand the pulled messages to the writer in order, waiting while its queue is full. False if
/// the writer is gone.
async fn submit_all(pulled: &mut Vec<Publish>, epoch: u64, inputs: &Inputs) -> bool {
    for publish in pulled.drain(..) {
        let ack = match publish.qos {
            QoS::AtMostOnce => BrokerAck::None,
            _ => BrokerAck::Local {
                epoch,
                pkid: publish.pkid,
            },
        };
        let job = message_job(
            &publish.topic,
            &publish.payload,
            ack,
            &inputs.directory,
            &inputs.settings,
        )
        .await;
        if inputs.writer.submit(job).await.is_err() {
            return false;
        }
    }
    true
}

//! Ingest: telecare events over MQTT and check-ins over HTTP, stored exactly once.
//!
//! ```text
//! broker --(QoS 1, manual ack)--> mqtt::poll loop --bounded---> mqtt::processor --bounded--> writer --COPY--> events
//! embedded broker's session --(in-process, ack after commit)--> local::consumer --bounded--^
//! phone  --POST /v1/check-ins--> http handler ------------------------------------bounded--^
//! ```
//!
//! - Two front ends take MQTT messages: [`mqtt`], an MQTT client (an external broker, or the
//!   embedded one over loopback), and [`local`], which attaches to the embedded broker's
//!   session in-process (`mqtt.embedded_ingest`). Both make each message into a job with
//!   `mqtt::message_job` and say how to release it at the broker with a [`BrokerAck`]; the
//!   writer hands those to the [`writer::Acker`] once per commit.
//! - The MQTT poll loop only polls and forwards; it never awaits anything slow (rumqttc freezes
//!   otherwise). Its queue is bounded: by the broker's inflight window for QoS 1 (nothing is
//!   acknowledged before it is stored), by a fixed share for QoS 0, and past its capacity
//!   the poll loop waits, leaving the rest with the broker (see `mqtt`).
//! - The processor decodes and validates each payload and resolves the device from the topic
//!   (never from the payload). Anything it cannot accept becomes a dead letter.
//! - The [`writer`] batches jobs (size or a few milliseconds, at once for alarms and falls),
//!   copies events into a staging table with binary COPY and inserts them with
//!   `ON CONFLICT DO NOTHING`, all in one transaction with the batch's dead letters; two batches
//!   are written at once on two connections (one commits while the next is copied in). Only
//!   after the commit are MQTT messages acknowledged (in the order received, batch after
//!   batch), HTTP requests answered, and each device told which of its sequence numbers are
//!   stored (the end-to-end ack).
//! - While the database is down the writer keeps its MQTT jobs and retries; nothing is acked,
//!   so the broker keeps the messages. HTTP jobs are answered 503 at once.

pub mod copy;
pub mod http;
pub mod local;
pub mod mqtt;
pub mod writer;

use std::sync::Arc;

use bytes::Bytes;
use homeward_proto::Encoding;
use tokio::sync::oneshot;

pub use mqtt::DownlinkSender;
pub use writer::{Writer, WriterHandle};

/// Where a job came from, and how to complete it once its batch has committed.
pub enum Source {
    /// One MQTT message; acknowledged after commit if its connection (epoch) is still current.
    Mqtt { ack: BrokerAck },
    /// An HTTP request waiting for the outcome of each of its items.
    Http(oneshot::Sender<Result<Vec<Outcome>, WriteError>>),
    /// No one to tell (tests, tools).
    None,
}

/// How one MQTT message is released at the broker once the transaction storing it has
/// committed: the same for both front ends, so the writer need not know which one took it.
#[derive(Debug)]
pub enum BrokerAck {
    /// Taken by the MQTT client (`mqtt`, an external broker or the embedded one over
    /// loopback): a PUBACK, sent only on connection `epoch`.
    Client { ack: rumqttc::ManualAck, epoch: u64 },
    /// Taken in-process from the embedded broker (`local`): packet id `pkid` of attachment
    /// `epoch`, released only while that attachment lasts.
    Local { epoch: u64, pkid: u16 },
    /// QoS 0: nothing to release.
    None,
}

/// The unit the writer commits and completes.
pub struct Job {
    pub items: Vec<Item>,
    pub source: Source,
}

// Events dominate, so boxing them would cost an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Item {
    Event(EventItem),
    Status(StatusItem),
    DeadLetter(DeadLetter),
}

pub struct EventItem {
    pub row: copy::EventRow,
    pub organisation_id: i32,
    pub device_uid: Arc<str>,
    /// The decoded event, handed to the derivations once stored. Boxed: an event can carry a
    /// visit's texts inline (hundreds of bytes), and it moves several times on its way.
    pub event: Box<homeward_proto::Event>,
    pub encoding: Encoding,
    /// Alarms and falls: flush the batch at once.
    pub priority: bool,
}

/// A newly stored event, as the derivations (alarms, visits, device health) receive it after
/// its transaction has committed. Resends that were already stored are not repeated here.
#[derive(Debug, Clone)]
pub struct CommittedEvent {
    pub device_id: i32,
    pub organisation_id: i32,
    pub device_uid: Arc<str>,
    pub seq: i64,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub event: Box<homeward_proto::Event>,
}

/// What derivations receive: the stored events of one committed batch, in order.
pub type CommittedBatch = Arc<[CommittedEvent]>;

/// The device's retained online/offline status.
#[derive(Debug, Clone)]
pub struct StatusItem {
    pub device_id: i32,
    pub online: bool,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Input that could not be stored as an event, kept with the reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub organisation_id: Option<i32>,
    pub device_id: Option<i32>,
    pub device_uid: Option<String>,
    pub source: &'static str,
    pub topic: Option<String>,
    pub payload: Bytes,
    pub reason_code: String,
    pub reason: String,
}

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = IngestOutcome)]
pub enum Outcome {
    Stored,
    Duplicate,
    DeadLettered,
    StatusRecorded,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the database is unavailable")]
    Unavailable,
    #[error("the ingest pipeline is shutting down")]
    ShuttingDown,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::DeadLettered => "dead_letter",
            Self::StatusRecorded => "status",
        }
    }
}

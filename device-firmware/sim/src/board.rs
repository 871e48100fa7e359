//! A virtual board: the device core's hardware traits over the virtual clock, scripted
//! sensors, storage in memory, and a real MQTT connection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use homeward_device_core::hw::{
    Accelerometer, Battery, Button, Clock, Indication, Indicator, Link, LinkError, Record, Storage,
    RECORD_LEN,
};
use rumqttc::{
    AsyncClient, Event as MqttEvent, LastWill, MqttOptions, Packet, PublishOptions, QoS,
};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::clock::VirtualClock;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

/// Persistent storage in memory: it outlives the `Device` (a simulated reboot), not the
/// process.
#[derive(Clone)]
pub struct VecStorage {
    records: Vec<Record>,
}

impl VecStorage {
    /// `records` blank records (0xff, like erased flash).
    pub fn new(records: usize) -> Self {
        VecStorage {
            records: vec![[0xff; RECORD_LEN]; records],
        }
    }
}

/// Index out of range.
#[derive(Debug)]
pub struct NoSuchRecord(pub usize);

impl Storage for VecStorage {
    type Error = NoSuchRecord;
    fn records(&self) -> usize {
        self.records.len()
    }
    fn read(&mut self, index: usize, out: &mut Record) -> Result<(), NoSuchRecord> {
        *out = *self.records.get(index).ok_or(NoSuchRecord(index))?;
        Ok(())
    }
    fn write(&mut self, index: usize, record: &Record) -> Result<(), NoSuchRecord> {
        *self.records.get_mut(index).ok_or(NoSuchRecord(index))? = *record;
        Ok(())
    }
}

/// What a device published, for the log and the report.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at_ms: u64,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// A device's MQTT connection. The event loop is polled continuously in its own task, which
/// does nothing slow: it forwards downlinks over a channel and records the session.
pub struct MqttLink {
    broker: BrokerAddr,
    uid: String,
    secret: Option<String>,
    status_topic: String,
    downlink_topic: String,
    client: Option<AsyncClient>,
    poller: Option<JoinHandle<()>>,
    /// The current session number, 0 while not connected.
    session: Arc<AtomicU32>,
    sessions: Arc<AtomicU32>,
    downlinks: mpsc::UnboundedSender<Vec<u8>>,
    wake: Arc<Notify>,
}

impl MqttLink {
    /// A link that is not connected yet; downlink payloads will go to `downlinks`, and
    /// `wake` is notified whenever something arrives or the connection changes.
    pub fn new(
        broker: BrokerAddr,
        uid: &str,
        secret: Option<String>,
        downlinks: mpsc::UnboundedSender<Vec<u8>>,
        wake: Arc<Notify>,
    ) -> Self {
        MqttLink {
            broker,
            uid: uid.to_string(),
            secret,
            status_topic: format!("homeward/v1/{uid}/status"),
            downlink_topic: format!("homeward/v1/{uid}/downlink"),
            client: None,
            poller: None,
            session: Arc::new(AtomicU32::new(0)),
            sessions: Arc::new(AtomicU32::new(0)),
            downlinks,
            wake,
        }
    }

    /// Whether the link is meant to be up (it may still be connecting).
    pub fn wanted_up(&self) -> bool {
        self.client.is_some()
    }

    /// Connects (user name and client id = uid, password = secret), with `offline`
    /// (retained, QoS 1) as the last will and a persistent session.
    pub fn up(&mut self) {
        if self.client.is_some() {
            return;
        }
        let mut options = MqttOptions::new(
            self.uid.clone(),
            (self.broker.host.clone(), self.broker.port),
        );
        if let Some(secret) = &self.secret {
            options.set_credentials(self.uid.clone(), secret.clone());
        }
        options
            .set_keep_alive(10)
            .set_clean_session(false)
            .set_last_will(LastWill::new(
                self.status_topic.clone(),
                homeward_proto::Status::Offline.as_bytes().to_vec(),
                QoS::AtLeastOnce,
                true,
            ));
        let (client, mut eventloop) = AsyncClient::builder(options).capacity(512).build();
        let sub = client.clone();
        let downlink = self.downlink_topic.clone();
        let session = self.session.clone();
        let sessions = self.sessions.clone();
        let tx = self.downlinks.clone();
        let wake = self.wake.clone();
        self.poller = Some(tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        // try_subscribe never waits; the persistent session keeps it anyway.
                        let _ = sub.try_subscribe(downlink.clone(), QoS::AtLeastOnce);
                        let n = sessions.fetch_add(1, Ordering::Relaxed) + 1;
                        session.store(n, Ordering::Relaxed);
                        wake.notify_one();
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p.payload.to_vec());
                        wake.notify_one();
                    }
                    Ok(_) => {}
                    Err(_) => {
                        session.store(0, Ordering::Relaxed);
                        wake.notify_one();
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        }));
        self.client = Some(client);
    }

    /// Loses the connection the way a radio does: no DISCONNECT, so the broker publishes the
    /// last will (`offline`).
    pub fn down(&mut self) {
        if let Some(poller) = self.poller.take() {
            poller.abort();
        }
        self.client = None;
        self.session.store(0, Ordering::Relaxed);
    }
}

impl Drop for MqttLink {
    fn drop(&mut self) {
        self.down();
    }
}

/// A scripted battery: `start` percent, losing `per_hour` percent per virtual hour.
#[derive(Debug, Clone, Copy)]
pub struct BatteryModel {
    pub start: u8,
    pub per_hour: u8,
}

/// One virtual pendant's or hub's hardware.
pub struct SimBoard {
    clock: Arc<VirtualClock>,
    pub link: MqttLink,
    signal_dbm: i16,
    /// Accelerometer samples not yet read, each with the virtual time it is taken.
    samples: VecDeque<(u64, [i16; 3])>,
    /// Button presses: (down, up) in virtual ms.
    presses: VecDeque<(u64, u64)>,
    pub battery: BatteryModel,
    /// What the device published (events and status), newest last.
    pub sent: Vec<Sent>,
    /// What the buzzer/LED showed.
    pub shown: Vec<(u64, Indication)>,
}

impl SimBoard {
    pub fn new(clock: Arc<VirtualClock>, link: MqttLink, signal_dbm: i16) -> Self {
        SimBoard {
            clock,
            link,
            signal_dbm,
            samples: VecDeque::new(),
            presses: VecDeque::new(),
            battery: BatteryModel {
                start: 100,
                per_hour: 0,
            },
            sent: Vec::new(),
            shown: Vec::new(),
        }
    }

    /// Queues accelerometer samples taken from `at_ms` on, at `rate_hz`.
    pub fn add_motion(&mut self, at_ms: u64, rate_hz: u16, samples: &[[i16; 3]]) {
        let period_us = 1_000_000 / u64::from(rate_hz.max(1));
        for (i, s) in samples.iter().enumerate() {
            self.samples
                .push_back((at_ms + i as u64 * period_us / 1000, *s));
        }
    }

    /// Holds the button from `at_ms` for `hold_ms`.
    pub fn add_press(&mut self, at_ms: u64, hold_ms: u64) {
        self.presses.push_back((at_ms, at_ms + hold_ms));
    }

    /// When the board next has something for the device: the accelerometer's FIFO
    /// watermark (about every 100 ms of samples) or a button edge.
    pub fn next_input(&self, now: u64) -> Option<u64> {
        let accel = self.samples.front().map(|&(at, _)| at.max(now) + 100);
        let button = self
            .presses
            .iter()
            .flat_map(|&(down, up)| [down, up])
            .filter(|&t| t > now)
            .min();
        match (accel, button) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether scripted inputs remain.
    pub fn inputs_pending(&self) -> bool {
        !self.samples.is_empty() || !self.presses.is_empty()
    }
}

impl Clock for SimBoard {
    fn monotonic_ms(&self) -> u64 {
        self.clock.now_ms()
    }
    fn unix_ms(&self) -> i64 {
        self.clock.unix_ms()
    }
}

impl Accelerometer for SimBoard {
    fn read_sample(&mut self) -> Option<[i16; 3]> {
        let now = self.clock.now_ms();
        match self.samples.front() {
            Some(&(at, s)) if at <= now => {
                self.samples.pop_front();
                Some(s)
            }
            _ => None,
        }
    }
}

impl Button for SimBoard {
    fn is_pressed(&mut self) -> bool {
        let now = self.clock.now_ms();
        while self.presses.front().is_some_and(|&(_, up)| up <= now) {
            self.presses.pop_front();
        }
        self.presses.front().is_some_and(|&(down, _)| down <= now)
    }
}

impl Indicator for SimBoard {
    fn indicate(&mut self, what: Indication) {
        self.shown.push((self.clock.now_ms(), what));
    }
}

impl Battery for SimBoard {
    fn battery_percent(&mut self) -> u8 {
        let hours = self.clock.now_ms() / 3_600_000;
        let lost = hours.saturating_mul(u64::from(self.battery.per_hour));
        u64::from(self.battery.start).saturating_sub(lost) as u8
    }
}

impl Link for SimBoard {
    fn session(&self) -> Option<u32> {
        match self.link.session.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    fn signal_dbm(&mut self) -> Option<i16> {
        self.session().map(|_| self.signal_dbm)
    }

    fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) -> Result<(), LinkError> {
        if self.session().is_none() {
            return Err(LinkError::Offline);
        }
        let Some(client) = &self.link.client else {
            return Err(LinkError::Offline);
        };
        let mut options = PublishOptions::new(QoS::AtLeastOnce);
        if retain {
            options = options.retained();
        }
        // Never waits: a full request channel is "busy", the core tries again later.
        client
            .try_publish(topic.to_string(), payload.to_vec(), options)
            .map_err(|_| LinkError::Busy)?;
        self.sent.push(Sent {
            at_ms: self.clock.now_ms(),
            topic: topic.to_string(),
            payload: payload.to_vec(),
        });
        Ok(())
    }
}

//! The device: one state machine for a pendant or a hub, tying the fall detector, the cancel
//! window, heartbeats, battery and door watching to the store-and-forward queue and the link.
//!
//! The firmware's main loop (or the simulator) calls [`Device::poll`] whenever something may
//! have happened (an accelerometer FIFO interrupt, a button edge, a received downlink, a
//! timer at [`Device::next_deadline`]) and hands every downlink payload to
//! [`Device::on_downlink`]. Nothing blocks and nothing allocates.
//!
//! What it raises:
//!
//! | input | event |
//! |---|---|
//! | fall detected, cancel window expires | `fall_detected` with the detector's confidence, `t` = the impact |
//! | fall detected, short press in the window | `fall_cancelled` with the confidence, `t` = the press |
//! | long press (any time; replaces a pending fall) | `pendant_alarm` at once |
//! | every `heartbeat_interval_ms` | `heartbeat` with battery, signal and the interval |
//! | battery at or below `battery_low_percent` | `battery_low`, once until it is back at `battery_rearm_percent` |
//! | a door opens / stays open `door_open_too_long_ms` | `door_opened` / `door_open_too_long` (with `sensor`) |
//! | anything else a hub's sensors report | [`Device::raise`] |
//!
//! On every new connection it publishes `online`, retained, on its status topic and resends
//! everything unacknowledged; the link registers [`Device::last_will`] (`offline`, retained).

use homeward_proto::topic::{self, Topic, TopicKind};
use homeward_proto::{DecodeError, DeviceId, Downlink, EventBody, Percent, SignalDbm, Status};

use crate::cancel::{CancelAction, CancelConfig, CancelWindow};
use crate::fall::{ConfigError, FallConfig, FallDetector, FallEvent, Wearable};
use crate::hw::{Board, Indication, Storage};
use crate::store::{Class, OpenError, PushError, Pushed, Queue, QueueConfig, Restored};

/// What kind of device this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Worn: accelerometer (fall detection) and button.
    Pendant,
    /// The home unit: button, door and other sensors; no fall detection.
    Hub,
}

const PERCENT_100: Percent = match Percent::new(100) {
    Some(p) => p,
    None => unreachable!(),
};
const NO_SIGNAL: SignalDbm = match SignalDbm::new(SignalDbm::MIN) {
    Some(s) => s,
    None => unreachable!(),
};

/// How many doors a hub watches at once.
pub const MAX_DOORS: usize = 4;

/// Device behaviour. Times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Pendant or hub.
    pub role: Role,
    /// Heartbeat period. Default 15 minutes, the usual telecare heartbeat period.
    pub heartbeat_interval_ms: u32,
    /// How often the battery is read between heartbeats. Default 60 s.
    pub battery_check_ms: u32,
    /// `battery_low` at or below this. Default 20 %.
    pub battery_low_percent: u8,
    /// A new `battery_low` only after the battery was back at this (charged). Default 30 %.
    pub battery_rearm_percent: u8,
    /// `door_open_too_long` after a door has been open this long. Default 10 minutes.
    pub door_open_too_long_ms: u32,
    /// The fall detector (pendants). [`DeviceConfig::new`] gives the waist preset
    /// (`FallConfig::SISFALL_WAIST`, which the simulator's SisFall motion matches);
    /// [`DeviceConfig::worn`] chooses the preset by product.
    pub fall: FallConfig,
    /// The cancel window and long press.
    pub cancel: CancelConfig,
    /// The store-and-forward queue.
    pub queue: QueueConfig,
}

impl DeviceConfig {
    /// Defaults for `role`.
    pub fn new(role: Role) -> Self {
        DeviceConfig {
            role,
            heartbeat_interval_ms: 15 * 60_000,
            battery_check_ms: 60_000,
            battery_low_percent: 20,
            battery_rearm_percent: 30,
            door_open_too_long_ms: 10 * 60_000,
            fall: FallConfig::default(),
            cancel: CancelConfig::default(),
            queue: QueueConfig::default(),
        }
    }
}

impl DeviceConfig {
    /// Defaults for a worn device (a [`Role::Pendant`]) of the given kind: the fall detector
    /// runs the preset for where that product sits on the body
    /// ([`FallConfig::for_wearable`]: a chest pendant on a lanyard or a waist clip).
    pub fn worn(wearable: Wearable) -> Self {
        DeviceConfig {
            fall: FallConfig::for_wearable(wearable),
            ..DeviceConfig::new(Role::Pendant)
        }
    }
}

/// Why a device could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootError<E> {
    /// The fall detector's configuration is unusable.
    Fall(ConfigError),
    /// The queue could not be opened.
    Queue(OpenError<E>),
}

/// Counters since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceStats {
    /// Events queued.
    pub raised: u32,
    /// Events the queue refused (full of alarms, or a storage failure). An alarm refused for
    /// lack of room waits in RAM and is queued when room frees up.
    pub refused: u32,
    /// Falls the detector reported.
    pub falls_detected: u32,
    /// Falls the wearer cancelled.
    pub falls_cancelled: u32,
    /// Downlinks that could not be decoded.
    pub bad_downlinks: u32,
    /// Storage failures (queueing or erasing).
    pub storage_errors: u32,
}

#[derive(Debug, Clone, Copy)]
struct Door {
    sensor: u16,
    opened_at: u64,
    reported: bool,
}

/// A pendant or hub. `B` is the board, `S` the persistent storage, `N` the queue's capacity.
pub struct Device<B: Board, S: Storage, const N: usize> {
    id: DeviceId,
    config: DeviceConfig,
    board: B,
    queue: Queue<S, N>,
    detector: FallDetector,
    cancel: CancelWindow,
    /// The fall in the cancel window: its device time (the impact) and confidence.
    pending_fall: Option<(i64, Percent)>,
    /// The link session seen last.
    session: Option<u32>,
    /// `online` is published for the current session.
    online_published: bool,
    button_down: bool,
    next_heartbeat: u64,
    next_battery_check: u64,
    battery_low: bool,
    doors: [Option<Door>; MAX_DOORS],
    /// An alarm the queue had no room for (full of alarms): queued as soon as there is.
    waiting_alarm: Option<(i64, EventBody)>,
    stats: DeviceStats,
}

impl<B: Board, S: Storage, const N: usize> Device<B, S, N> {
    /// Boots: opens the queue over `storage` (restoring numbering and unacknowledged events)
    /// and starts the timers; the first heartbeat goes out on the first poll.
    pub fn boot(
        id: DeviceId,
        config: DeviceConfig,
        board: B,
        storage: S,
    ) -> Result<(Self, Restored), BootError<S::Error>> {
        let detector = FallDetector::new(config.fall).map_err(BootError::Fall)?;
        let (queue, restored) = Queue::open(storage, config.queue).map_err(BootError::Queue)?;
        let now = board.monotonic_ms();
        let device = Device {
            id,
            config,
            board,
            queue,
            detector,
            cancel: CancelWindow::new(config.cancel),
            pending_fall: None,
            session: None,
            online_published: false,
            button_down: false,
            next_heartbeat: now,
            next_battery_check: now,
            battery_low: false,
            doors: [None; MAX_DOORS],
            waiting_alarm: None,
            stats: DeviceStats::default(),
        };
        Ok((device, restored))
    }

    /// Does everything that is due: link state, accelerometer samples, the button, timers,
    /// and sending from the queue.
    pub fn poll(&mut self) {
        let now = self.board.monotonic_ms();
        self.check_link();
        if self.config.role == Role::Pendant {
            self.read_accelerometer(now);
        }
        let pressed = self.board.is_pressed();
        if pressed != self.button_down {
            self.button_down = pressed;
            let action = if pressed {
                self.cancel.button_pressed(now)
            } else {
                self.cancel.button_released(now)
            };
            self.on_cancel_action(action);
        }
        let action = self.cancel.tick(now);
        self.on_cancel_action(action);
        self.check_doors(now);
        if now >= self.next_battery_check {
            self.check_battery();
            self.next_battery_check = now + u64::from(self.config.battery_check_ms.max(1));
        }
        if now >= self.next_heartbeat {
            self.heartbeat();
            let interval = u64::from(self.config.heartbeat_interval_ms.max(1));
            self.next_heartbeat += interval;
            if self.next_heartbeat <= now {
                // Asleep past several periods: one heartbeat now, the next a period on.
                self.next_heartbeat = now + interval;
            }
        }
        self.send(now);
    }

    /// Handles a payload from the downlink topic: an ack erases what it covers, a notice is
    /// shown. Call [`Device::poll`] afterwards (an ack may open the send window).
    pub fn on_downlink(&mut self, payload: &[u8]) -> Result<Downlink, DecodeError> {
        let downlink = match homeward_proto::decode_downlink(payload) {
            Ok(d) => d,
            Err(e) => {
                self.stats.bad_downlinks += 1;
                return Err(e);
            }
        };
        match &downlink {
            Downlink::Ack(ranges) => {
                let acked = self.queue.ack(ranges);
                self.stats.storage_errors += acked.storage_errors as u32;
                if acked.alarms > 0 {
                    self.board.indicate(Indication::AlarmStored);
                }
                if let Some((t, body)) = self.waiting_alarm.take() {
                    let _ = self.push(t, body, None);
                }
            }
            Downlink::Notice(notice) => self.board.indicate(Indication::Notice(notice.kind)),
        }
        Ok(downlink)
    }

    /// Queues an event stamped with the device's time now (for a hub's sensors: smoke, flood,
    /// bed occupancy, ...). `sensor` is the sub-device behind a hub.
    pub fn raise(
        &mut self,
        body: EventBody,
        sensor: Option<u16>,
    ) -> Result<Pushed, PushError<S::Error>> {
        let t = self.board.unix_ms();
        self.push(t, body, sensor)
    }

    /// A door contact changed. Opening raises `door_opened` at once and starts the
    /// open-too-long timer; closing stops it.
    pub fn door_changed(&mut self, sensor: u16, open: bool) {
        let now = self.board.monotonic_ms();
        let known = self
            .doors
            .iter()
            .position(|d| d.is_some_and(|d| d.sensor == sensor));
        match (open, known) {
            (true, None) => {
                if let Some(free) = self.doors.iter_mut().find(|d| d.is_none()) {
                    *free = Some(Door {
                        sensor,
                        opened_at: now,
                        reported: false,
                    });
                }
                let _ = self.raise(EventBody::DoorOpened, Some(sensor));
            }
            (false, Some(i)) => self.doors[i] = None,
            // Repeated reports of the same state.
            _ => {}
        }
    }

    /// When [`Device::poll`] must next run (monotonic ms), apart from accelerometer, button
    /// and downlink interrupts. `Some(t)` with `t` <= now means at once.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut next = self.next_heartbeat.min(self.next_battery_check);
        if let Some(t) = self.cancel.next_deadline() {
            next = next.min(t);
        }
        let too_long = u64::from(self.config.door_open_too_long_ms);
        for door in self.doors.iter().flatten().filter(|d| !d.reported) {
            next = next.min(door.opened_at.saturating_add(too_long));
        }
        if self.board.session().is_some() {
            if self.board.session() != self.session || !self.online_published {
                next = 0;
            }
            if let Some(t) = self.queue.next_deadline() {
                next = next.min(t);
            }
        }
        Some(next)
    }

    /// The MQTT last will to register when connecting: `offline`, retained, QoS 1, on
    /// [`Device::status_topic`].
    pub fn last_will(&self) -> (Topic<'_>, &'static [u8]) {
        (self.status_topic(), Status::Offline.as_bytes())
    }

    /// `homeward/v1/{id}/status`.
    pub fn status_topic(&self) -> Topic<'_> {
        Topic {
            device: &self.id,
            kind: TopicKind::Status,
        }
    }

    /// `homeward/v1/{id}/downlink`: subscribe with QoS 1.
    pub fn downlink_topic(&self) -> Topic<'_> {
        Topic {
            device: &self.id,
            kind: TopicKind::Downlink,
        }
    }

    /// `homeward/v1/{id}/events`.
    pub fn events_topic(&self) -> Topic<'_> {
        Topic {
            device: &self.id,
            kind: TopicKind::Events,
        }
    }

    /// The device id (MQTT client id and user name).
    pub fn id(&self) -> &DeviceId {
        &self.id
    }

    /// The configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// The board.
    pub fn board(&self) -> &B {
        &self.board
    }

    /// The board, to drive it (the simulator) or reach its parts.
    pub fn board_mut(&mut self) -> &mut B {
        &mut self.board
    }

    /// The queue, for inspection.
    pub fn queue(&self) -> &Queue<S, N> {
        &self.queue
    }

    /// Whether a detected fall is waiting in its cancel window.
    pub fn fall_pending(&self) -> bool {
        self.pending_fall.is_some()
    }

    /// Counters since boot.
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    /// Powers down: gives back the board and the storage (booting again over the same
    /// storage restores the queue). RAM state, such as an open cancel window, is lost.
    pub fn power_off(self) -> (B, S) {
        (self.board, self.queue.into_storage())
    }

    fn check_link(&mut self) {
        let session = self.board.session();
        if session != self.session {
            self.session = session;
            self.online_published = false;
            if session.is_some() {
                self.queue.restart_session();
            }
        }
        if session.is_some() && !self.online_published {
            let topic = topic::to_buf(&self.id, TopicKind::Status);
            self.online_published = self
                .board
                .publish(&topic, Status::Online.as_bytes(), true)
                .is_ok();
        }
    }

    fn send(&mut self, now: u64) {
        if self.session.is_none() {
            return;
        }
        let topic = topic::to_buf(&self.id, TopicKind::Events);
        let board = &mut self.board;
        if self
            .queue
            .pump(now, |payload| board.publish(&topic, payload, false))
            .is_err()
        {
            self.stats.storage_errors += 1;
        }
    }

    /// Drains the accelerometer's FIFO into the detector. The newest sample is taken to be
    /// from `now`, the others one sample period apart before it, so a fall found in a FIFO
    /// read late is still timed by its samples, not by the read.
    fn read_accelerometer(&mut self, now: u64) {
        let mut found: Option<FallEvent> = None;
        while let Some(sample) = self.board.read_sample() {
            if let Some(fall) = self.detector.push(sample) {
                if let Some(earlier) = found.replace(fall) {
                    self.on_fall(now, earlier);
                }
            }
        }
        if let Some(fall) = found {
            self.on_fall(now, fall);
        }
    }

    /// How long before `now` sample `index` was taken, in ms.
    fn sample_age_ms(&self, index: u64) -> u64 {
        let newest = self.detector.samples_seen().saturating_sub(1);
        let rate = u64::from(self.config.fall.sample_rate_hz.max(1));
        newest.saturating_sub(index) * 1000 / rate
    }

    fn on_fall(&mut self, now: u64, fall: FallEvent) {
        self.stats.falls_detected += 1;
        let impact_age = i64::try_from(self.sample_age_ms(fall.impact_sample)).unwrap_or(i64::MAX);
        let t = self.board.unix_ms().saturating_sub(impact_age);
        let detected_at = now.saturating_sub(self.sample_age_ms(fall.detected_sample));
        let confidence = Percent::new(fall.confidence).unwrap_or(PERCENT_100);
        let expired = self.cancel.fall_detected(detected_at);
        self.on_cancel_action(expired);
        match &mut self.pending_fall {
            // One incident, one window: keep the first impact, the highest confidence.
            Some((_, c)) => *c = (*c).max(confidence),
            None => self.pending_fall = Some((t, confidence)),
        }
        self.board.indicate(Indication::FallCountdown);
    }

    fn on_cancel_action(&mut self, action: Option<CancelAction>) {
        let Some(action) = action else { return };
        match action {
            CancelAction::SendFallAlarm => {
                if let Some((t, confidence)) = self.pending_fall.take() {
                    let _ = self.push(t, EventBody::FallDetected { confidence }, None);
                }
            }
            CancelAction::FallCancelled => {
                self.stats.falls_cancelled += 1;
                let confidence = self.pending_fall.take().map(|(_, c)| c);
                self.board.indicate(Indication::FallCancelled);
                let t = self.board.unix_ms();
                let _ = self.push(t, EventBody::FallCancelled { confidence }, None);
            }
            CancelAction::PendantAlarmNow => {
                // Help is coming either way: the pendant alarm replaces a pending fall.
                self.pending_fall = None;
                let t = self.board.unix_ms();
                let _ = self.push(t, EventBody::PendantAlarm, None);
            }
        }
    }

    fn check_doors(&mut self, now: u64) {
        let too_long = u64::from(self.config.door_open_too_long_ms);
        for i in 0..MAX_DOORS {
            let Some(door) = self.doors[i] else { continue };
            let open_for = now.saturating_sub(door.opened_at);
            if door.reported || open_for < too_long {
                continue;
            }
            self.doors[i] = Some(Door {
                reported: true,
                ..door
            });
            let minutes = u16::try_from(open_for / 60_000).unwrap_or(u16::MAX);
            let t = self.board.unix_ms();
            let _ = self.push(
                t,
                EventBody::DoorOpenTooLong {
                    minutes: Some(minutes),
                },
                Some(door.sensor),
            );
        }
    }

    fn battery(&mut self) -> Percent {
        let pct = self.board.battery_percent().min(100);
        Percent::new(pct).unwrap_or(PERCENT_100)
    }

    fn check_battery(&mut self) {
        let battery = self.battery();
        if battery.get() <= self.config.battery_low_percent && !self.battery_low {
            self.battery_low = true;
            let t = self.board.unix_ms();
            let _ = self.push(t, EventBody::BatteryLow { battery }, None);
        } else if battery.get() >= self.config.battery_rearm_percent {
            self.battery_low = false;
        }
    }

    fn heartbeat(&mut self) {
        let battery = self.battery();
        // No signal reading (offline): report the weakest value the format has.
        let dbm = self
            .board
            .signal_dbm()
            .unwrap_or(SignalDbm::MIN)
            .clamp(SignalDbm::MIN, SignalDbm::MAX);
        let signal = SignalDbm::new(dbm).unwrap_or(NO_SIGNAL);
        let t = self.board.unix_ms();
        let _ = self.push(
            t,
            EventBody::Heartbeat {
                battery,
                signal,
                interval_s: Some(self.config.heartbeat_interval_ms / 1000),
            },
            None,
        );
    }

    /// Queues an event, counting and showing failures; an alarm refused for lack of room
    /// waits in RAM for the next ack.
    fn push(
        &mut self,
        t: i64,
        body: EventBody,
        sensor: Option<u16>,
    ) -> Result<Pushed, PushError<S::Error>> {
        let kind = body.kind();
        let alarm = Class::of(kind) == Class::Alarm;
        let waiting = alarm.then(|| body.clone());
        match self.queue.push(t, body, sensor) {
            Ok(pushed) => {
                self.stats.raised += 1;
                if alarm {
                    self.board.indicate(Indication::AlarmQueued);
                }
                Ok(pushed)
            }
            Err(e) => {
                self.stats.refused += 1;
                if let PushError::Storage(_) = e {
                    self.stats.storage_errors += 1;
                }
                if let (PushError::Full, Some(body)) = (&e, waiting) {
                    if self.waiting_alarm.is_none() {
                        self.waiting_alarm = Some((t, body));
                    }
                }
                self.board.indicate(Indication::QueueFault);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! Runs a fleet of virtual devices on the device core against a real broker.
//!
//! One task drives every device (the core is synchronous and cheap); each device has its own
//! MQTT connection whose event loop is polled in its own task. The loop: deliver downlinks,
//! apply the scenario steps that are due, `poll` each device; then either wait in real time
//! (while a device waits for the network) or leap the virtual clock to the next deadline.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use homeward_device_core::device::{Device, DeviceConfig, Role};
use homeward_device_core::store::{QueueStats, META_RECORDS};
use homeward_proto::{DeviceId, Encoding, EventKind};
use tokio::sync::{mpsc, Notify};

use crate::board::{BrokerAddr, MqttLink, SimBoard, VecStorage};
use crate::clock::{aligned_start, real_unix_ms, VirtualClock};
use crate::motion::MotionSource;
use crate::scenario::{Scenario, Step};

/// Queue slots per simulated device: 512 events (over five days of 15-minute heartbeats).
pub const QUEUE_SLOTS: usize = 512;

type SimDevice = Device<SimBoard, VecStorage, QUEUE_SLOTS>;

/// One device to simulate.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// Device id: MQTT client id and user name.
    pub uid: String,
    /// MQTT password; `None` for a broker that takes anonymous clients.
    pub secret: Option<String>,
    pub role: Role,
    pub scenario: Scenario,
}

/// How to run the fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub broker: BrokerAddr,
    /// Heartbeat period (virtual ms).
    pub heartbeat_ms: u32,
    /// Resend timeout (virtual ms; it passes in real time, since devices then wait).
    pub resend_ms: u32,
    /// How long `offline-backlog` stays offline (virtual ms).
    pub offline_ms: u64,
    pub motion: MotionSource,
    pub encoding: Encoding,
    /// Give up after this much real time.
    pub timeout: Duration,
    /// Print every event as it is first sent.
    pub verbose: bool,
}

impl FleetOptions {
    /// Defaults for `broker`: 15-minute heartbeats, 30 s resends, 3 hours offline,
    /// synthetic motion, CBOR, 10 minutes.
    pub fn new(broker: BrokerAddr) -> Self {
        FleetOptions {
            broker,
            heartbeat_ms: 15 * 60_000,
            resend_ms: 30_000,
            offline_ms: 3 * 3_600_000,
            motion: MotionSource::Synthetic,
            encoding: Encoding::Cbor,
            timeout: Duration::from_secs(600),
            verbose: false,
        }
    }
}

/// An event as the device first sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEvent {
    pub seq: u64,
    pub time_ms: i64,
    pub kind: EventKind,
    /// How many times it was published (1 = never resent).
    pub sends: u32,
}

/// What one device did.
#[derive(Debug, Clone)]
pub struct DeviceReport {
    pub uid: String,
    pub role: Role,
    pub scenario: Scenario,
    /// Queue counters, summed over reboots.
    pub queue: QueueStats,
    /// Events still unacknowledged at the end.
    pub unacked: usize,
    pub falls_detected: u32,
    pub falls_cancelled: u32,
    pub reboots: u32,
    /// `online` status publishes (one per connection).
    pub online_published: u32,
    /// Every event sent, by seq.
    pub events: Vec<SentEvent>,
}

/// What the fleet did.
#[derive(Debug, Clone)]
pub struct FleetReport {
    pub devices: Vec<DeviceReport>,
    /// Virtual time covered.
    pub virtual_ms: u64,
    pub real: Duration,
    /// Every scenario ran to its end and every event was acknowledged.
    pub completed: bool,
    /// The virtual wall clock at the start (ms since the Unix epoch).
    pub start_unix_ms: i64,
}

struct Sim {
    spec: DeviceSpec,
    config: DeviceConfig,
    device: Option<SimDevice>,
    script: VecDeque<(u64, Step)>,
    downlinks: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Counters of earlier boots.
    queue_before: QueueStats,
    falls_before: (u32, u32),
    reboots: u32,
    /// How much of `board.sent` has been looked at.
    seen: usize,
    events: BTreeMap<u64, SentEvent>,
    online_published: u32,
}

fn add(a: QueueStats, b: QueueStats) -> QueueStats {
    QueueStats {
        pushed: a.pushed + b.pushed,
        sent: a.sent + b.sent,
        resent: a.resent + b.resent,
        acked: a.acked + b.acked,
        evicted: a.evicted + b.evicted,
        refused: a.refused + b.refused,
    }
}

impl Sim {
    fn dev(&self) -> &SimDevice {
        // Present except inside `reboot`.
        self.device.as_ref().unwrap_or_else(|| unreachable!())
    }

    fn device(&mut self) -> &mut SimDevice {
        // Present except inside `reboot`.
        self.device.as_mut().unwrap_or_else(|| unreachable!())
    }

    fn apply(&mut self, at: u64, step: Step) -> anyhow::Result<()> {
        match step {
            Step::Motion(samples) => {
                self.device()
                    .board_mut()
                    .add_motion(at, crate::motion::RATE_HZ, &samples)
            }
            Step::Press { hold_ms } => self.device().board_mut().add_press(at, hold_ms),
            Step::Door { sensor, open } => self.device().door_changed(sensor, open),
            Step::LinkDown => self.device().board_mut().link.down(),
            Step::LinkUp => self.device().board_mut().link.up(),
            Step::Battery(model) => self.device().board_mut().battery = model,
            Step::Reboot => {
                let device = self.device.take().context("device present")?;
                self.queue_before = add(self.queue_before, device.queue().stats());
                let stats = device.stats();
                self.falls_before.0 += stats.falls_detected;
                self.falls_before.1 += stats.falls_cancelled;
                let (board, storage) = device.power_off();
                let id = DeviceId::new(&self.spec.uid).context("device id")?;
                let (device, _) = Device::boot(id, self.config, board, storage)
                    .map_err(|e| anyhow::anyhow!("reboot of {}: {e:?}", self.spec.uid))?;
                self.device = Some(device);
                self.reboots += 1;
            }
        }
        Ok(())
    }

    /// Looks at what the device published since the last call.
    fn record_sends(&mut self, clock: &VirtualClock, verbose: bool) {
        let uid = self.spec.uid.clone();
        let Some(device) = self.device.as_ref() else {
            return;
        };
        let sent = &device.board().sent[self.seen..];
        for s in sent {
            if s.topic.ends_with("/status") {
                self.online_published += 1;
                if verbose {
                    println!(
                        "{} {uid} status online",
                        crate::fmt_utc(clock.unix_at(s.at_ms))
                    );
                }
                continue;
            }
            let Ok(event) = homeward_proto::decode_event(&s.payload) else {
                continue;
            };
            let entry = self.events.entry(event.seq()).or_insert(SentEvent {
                seq: event.seq(),
                time_ms: event.time_ms(),
                kind: event.kind(),
                sends: 0,
            });
            entry.sends += 1;
            if verbose {
                let again = if entry.sends > 1 { " (resent)" } else { "" };
                println!(
                    "{} {uid} seq {} {} t={}{again}",
                    crate::fmt_utc(clock.unix_at(s.at_ms)),
                    event.seq(),
                    event.kind(),
                    crate::fmt_utc(event.time_ms()),
                );
            }
        }
        self.seen = device.board().sent.len();
    }
}

/// Runs `specs` through their scenarios; returns when every scenario has ended and every
/// event is acknowledged, or at `opts.timeout`.
pub async fn run_fleet(specs: Vec<DeviceSpec>, opts: FleetOptions) -> anyhow::Result<FleetReport> {
    let span = specs
        .iter()
        .map(|s| s.scenario.span_ms(opts.offline_ms))
        .max()
        .unwrap_or(0);
    // Start in the past (at 02:00 UTC) so that device times never run ahead of real time.
    let start_unix_ms = aligned_start(real_unix_ms() - 60_000, span);
    let clock = Arc::new(VirtualClock::starting_at(start_unix_ms));
    let wake = Arc::new(Notify::new());
    let mut sims = Vec::new();
    let mut pendants = 0usize;
    for spec in specs {
        anyhow::ensure!(
            spec.scenario.fits(spec.role),
            "scenario {} does not fit a {:?}",
            spec.scenario.name(),
            spec.role
        );
        let mut config = DeviceConfig::new(spec.role);
        config.heartbeat_interval_ms = opts.heartbeat_ms;
        config.queue.resend_after_ms = opts.resend_ms;
        config.queue.encoding = opts.encoding;
        let (tx, rx) = mpsc::unbounded_channel();
        let link = MqttLink::new(
            opts.broker.clone(),
            &spec.uid,
            spec.secret.clone(),
            tx,
            wake.clone(),
        );
        let signal = -55 - (sims.len() % 30) as i16;
        let board = SimBoard::new(clock.clone(), link, signal);
        let storage = VecStorage::new(META_RECORDS + QUEUE_SLOTS);
        let id = DeviceId::new(&spec.uid)
            .with_context(|| format!("`{}` is not a valid device id", spec.uid))?;
        let (device, _) = Device::boot(id, config, board, storage)
            .map_err(|e| anyhow::anyhow!("boot of {}: {e:?}", spec.uid))?;
        let fall = if spec.role == Role::Pendant
            && matches!(spec.scenario, Scenario::Fall | Scenario::FallCancelled)
        {
            pendants += 1;
            Some(opts.motion.fall(pendants - 1)?)
        } else {
            None
        };
        let script = spec.scenario.script(spec.role, opts.offline_ms, fall);
        sims.push(Sim {
            spec,
            config,
            device: Some(device),
            script: script.into(),
            downlinks: rx,
            queue_before: QueueStats::default(),
            falls_before: (0, 0),
            reboots: 0,
            seen: 0,
            events: BTreeMap::new(),
            online_published: 0,
        });
    }

    let started = Instant::now();
    let completed = loop {
        let now = clock.now_ms();
        for sim in &mut sims {
            while let Ok(payload) = sim.downlinks.try_recv() {
                // A bad downlink is counted by the device; nothing else to do here.
                let _ = sim.device().on_downlink(&payload);
            }
            while sim.script.front().is_some_and(|(at, _)| *at <= now) {
                if let Some((at, step)) = sim.script.pop_front() {
                    sim.apply(at, step)?;
                }
            }
            sim.device().poll();
            sim.record_sends(&clock, opts.verbose);
        }
        let settled = sims.iter().all(|s| {
            let d = s.dev();
            s.script.is_empty()
                && !d.board().inputs_pending()
                && !d.fall_pending()
                && d.queue().is_empty()
        });
        if settled && now >= span {
            break true;
        }
        if started.elapsed() >= opts.timeout {
            break false;
        }
        let mut next = if now < span { span } else { u64::MAX };
        let mut busy = false;
        for sim in &sims {
            if let Some(&(at, _)) = sim.script.front() {
                next = next.min(at);
            }
            let d = sim.dev();
            if let Some(t) = d.next_deadline() {
                next = next.min(t);
            }
            if let Some(t) = d.board().next_input(now) {
                next = next.min(t);
            }
            let link = &d.board().link;
            if link.wanted_up() {
                use homeward_device_core::hw::Link;
                busy |= d.board().session().is_none() || d.queue().in_flight() > 0;
            }
        }
        let wait = next.saturating_sub(now);
        if busy || wait == 0 {
            let nap = Duration::from_millis(wait.clamp(1, 50));
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = wake.notified() => {}
            }
        } else if clock.leap(wait) < wait {
            // The virtual clock has caught up with the real one: wait in real time.
            tokio::time::sleep(Duration::from_millis(wait.min(50))).await;
        } else {
            tokio::task::yield_now().await;
        }
    };

    let virtual_ms = clock.now_ms();
    let devices = sims
        .into_iter()
        .map(|sim| {
            let d = sim.dev();
            let stats = d.stats();
            let queue = add(sim.queue_before, d.queue().stats());
            let unacked = d.queue().len();
            DeviceReport {
                uid: sim.spec.uid.clone(),
                role: sim.spec.role,
                scenario: sim.spec.scenario,
                queue,
                unacked,
                falls_detected: sim.falls_before.0 + stats.falls_detected,
                falls_cancelled: sim.falls_before.1 + stats.falls_cancelled,
                reboots: sim.reboots,
                online_published: sim.online_published,
                events: sim.events.into_values().collect(),
            }
        })
        .collect();
    Ok(FleetReport {
        devices,
        virtual_ms,
        real: started.elapsed(),
        completed,
        start_unix_ms,
    })
}

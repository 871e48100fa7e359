//! Scenarios: what happens to a device, as steps on the virtual timeline.

use homeward_device_core::device::Role;

use crate::board::BatteryModel;

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;

/// A scenario for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Scenario {
    /// 24 hours of heartbeats. Pendants start at 60 % battery and lose 2 % an hour, so
    /// `battery_low` comes at about 20 h; hubs open the front door at 08:00 for a minute.
    QuietDay,
    /// A pendant's wearer falls at 02:05 (SisFall or synthetic samples through the real
    /// detector) and does not cancel: `fall_detected` after the 30 s cancel window.
    Fall,
    /// The same fall, cancelled with a short press 2 s after the trial ends:
    /// `fall_cancelled`, and no `fall_detected`.
    FallCancelled,
    /// A hub: the front door (sensor 1) opens at 03:00 and stays open 25 minutes:
    /// `door_opened`, then `door_open_too_long` after 10 minutes.
    NightDoor,
    /// The link drops at 02:10 for `--offline-hours`; the device reboots halfway through;
    /// back online it flushes the backlog (in order, each event once).
    OfflineBacklog,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 5] = [
        Scenario::QuietDay,
        Scenario::Fall,
        Scenario::FallCancelled,
        Scenario::NightDoor,
        Scenario::OfflineBacklog,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::QuietDay => "quiet-day",
            Scenario::Fall => "fall",
            Scenario::FallCancelled => "fall-cancelled",
            Scenario::NightDoor => "night-door",
            Scenario::OfflineBacklog => "offline-backlog",
        }
    }

    /// Whether a device of `role` can play it.
    pub fn fits(self, role: Role) -> bool {
        match self {
            Scenario::Fall | Scenario::FallCancelled => role == Role::Pendant,
            Scenario::NightDoor => role == Role::Hub,
            Scenario::QuietDay | Scenario::OfflineBacklog => true,
        }
    }

    /// How much virtual time it covers.
    pub fn span_ms(self, offline_ms: u64) -> u64 {
        match self {
            Scenario::QuietDay => 24 * HOUR,
            Scenario::Fall | Scenario::FallCancelled => 20 * MIN,
            Scenario::NightDoor => 2 * HOUR,
            Scenario::OfflineBacklog => 20 * MIN + offline_ms,
        }
    }

    /// The steps, in time order. `fall` is the trial's samples (pendant fall scenarios).
    pub fn script(
        self,
        role: Role,
        offline_ms: u64,
        fall: Option<Vec<[i16; 3]>>,
    ) -> Vec<(u64, Step)> {
        let mut steps = vec![(0, Step::LinkUp)];
        match self {
            Scenario::QuietDay => {
                if role == Role::Pendant {
                    steps.push((
                        0,
                        Step::Battery(BatteryModel {
                            start: 60,
                            per_hour: 2,
                        }),
                    ));
                } else {
                    steps.push((
                        6 * HOUR,
                        Step::Door {
                            sensor: 1,
                            open: true,
                        },
                    ));
                    steps.push((
                        6 * HOUR + MIN,
                        Step::Door {
                            sensor: 1,
                            open: false,
                        },
                    ));
                }
            }
            Scenario::Fall | Scenario::FallCancelled => {
                let samples = fall.unwrap_or_default();
                let len_ms = samples.len() as u64 * 1000 / u64::from(crate::motion::RATE_HZ);
                steps.push((5 * MIN, Step::Motion(samples)));
                if self == Scenario::FallCancelled {
                    steps.push((5 * MIN + len_ms + 2_000, Step::Press { hold_ms: 300 }));
                }
            }
            Scenario::NightDoor => {
                steps.push((
                    HOUR,
                    Step::Door {
                        sensor: 1,
                        open: true,
                    },
                ));
                steps.push((
                    HOUR + 25 * MIN,
                    Step::Door {
                        sensor: 1,
                        open: false,
                    },
                ));
            }
            Scenario::OfflineBacklog => {
                steps.push((10 * MIN, Step::LinkDown));
                steps.push((10 * MIN + offline_ms / 2, Step::Reboot));
                steps.push((10 * MIN + offline_ms, Step::LinkUp));
            }
        }
        steps
    }
}

/// One thing that happens to a device.
#[derive(Debug, Clone)]
pub enum Step {
    /// Accelerometer samples from now on, at 200 Hz.
    Motion(Vec<[i16; 3]>),
    /// The button is held for `hold_ms` (a short press cancels, 2 s raises an alarm).
    Press { hold_ms: u64 },
    /// A door contact opens or closes.
    Door { sensor: u16, open: bool },
    /// The radio loses the connection (no DISCONNECT: the broker sends the last will).
    LinkDown,
    /// The radio connects.
    LinkUp,
    /// Power cycle: RAM is lost, storage is kept.
    Reboot,
    /// The battery from now on.
    Battery(BatteryModel),
}

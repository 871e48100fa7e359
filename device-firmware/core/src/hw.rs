//! The hardware a device needs, as small traits, so the same logic runs on a pendant, on a
//! hub and in the fleet simulator.
//!
//! Each trait is one part of a board: [`Clock`], [`Accelerometer`], [`Button`],
//! [`Indicator`] (buzzer or LED), [`Battery`], [`Link`] (the network: MQTT over Wi-Fi,
//! Ethernet or cellular). [`Board`] bundles them: a board is one type that implements all six
//! (a hub implements [`Accelerometer`] and [`Button`] with nothing to report). Persistent
//! storage is separate ([`Storage`]) because the store-and-forward queue owns it.
//!
//! Every call is non-blocking: the device's `poll` runs them in its loop and never waits.

use homeward_proto::NoticeKind;

/// Time. The monotonic count drives every timer; the wall clock only stamps events (`t`).
pub trait Clock {
    /// Milliseconds since an arbitrary start; never goes backwards (not even across a wall
    /// clock adjustment). Timers (heartbeat, resend, cancel window) run on it.
    fn monotonic_ms(&self) -> u64;
    /// The wall clock: milliseconds since the Unix epoch, UTC, as well as the device knows
    /// it (an unset real-time clock gives times near 0; the server flags them).
    fn unix_ms(&self) -> i64;
}

/// A 3-axis accelerometer with a FIFO, sampled at the fall detector's configured rate.
pub trait Accelerometer {
    /// The oldest sample not yet read (raw counts, x y z), or `None` when the FIFO is empty.
    fn read_sample(&mut self) -> Option<[i16; 3]>;
}

/// The pendant's button (the hub's help button).
pub trait Button {
    /// Whether the button is held down now.
    fn is_pressed(&mut self) -> bool;
}

/// What the buzzer or LED should show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indication {
    /// A fall was detected: the cancel window is open (beep, "press to cancel").
    FallCountdown,
    /// The wearer cancelled the fall.
    FallCancelled,
    /// An alarm is queued and being sent.
    AlarmQueued,
    /// Homeward has stored the alarm (its end-to-end acknowledgement arrived).
    AlarmStored,
    /// News from the monitoring centre (help on the way, ...).
    Notice(NoticeKind),
    /// An event could not be queued (queue full of alarms, or a storage failure).
    QueueFault,
}

/// A buzzer, LED or speaker.
pub trait Indicator {
    /// Show `what`. Must not block (start a pattern and return).
    fn indicate(&mut self, what: Indication);
}

/// The battery gauge.
pub trait Battery {
    /// Charge, 0 to 100 percent (values above 100 are read as 100).
    fn battery_percent(&mut self) -> u8;
}

/// Why a publish did not go out. Either way the event stays queued and is sent again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Not connected.
    Offline,
    /// Connected, but the outgoing buffer is full: try again on a later poll.
    Busy,
}

/// The network link to the broker (MQTT 3.1.1).
///
/// The link implementation connects with the device id as client id and user name, registers
/// [`Device::last_will`](crate::device::Device::last_will) (`offline`, retained, QoS 1) as
/// its will, subscribes to the device's downlink topic with QoS 1 and hands every downlink
/// payload to [`Device::on_downlink`](crate::device::Device::on_downlink).
pub trait Link {
    /// `Some(session)` while connected, where `session` changes at every new connection (a
    /// counter): the device publishes `online` and resends what is unacknowledged once per
    /// session, even if it never saw the link down in between.
    fn session(&self) -> Option<u32>;
    /// Received signal strength, dBm, if known.
    fn signal_dbm(&mut self) -> Option<i16>;
    /// Queues one QoS 1 publish without waiting. `Ok` means handed to the MQTT stack, not
    /// delivered: delivery is known only from Homeward's acknowledgement.
    fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) -> Result<(), LinkError>;
}

/// Every part of a board but the storage.
pub trait Board: Clock + Accelerometer + Button + Indicator + Battery + Link {}

impl<T: Clock + Accelerometer + Button + Indicator + Battery + Link> Board for T {}

/// The size of one storage record, in bytes.
pub const RECORD_LEN: usize = 256;

/// One storage record.
pub type Record = [u8; RECORD_LEN];

/// Persistent storage as numbered fixed-size records (flash sectors or pages, an EEPROM, a
/// file). A record write must be all-or-nothing *or* detectable: the queue checks a CRC on
/// every record and treats a torn one as empty, so a power cut mid-write costs at most the
/// event being written (which had not been sent yet).
pub trait Storage {
    /// A storage failure.
    type Error: core::fmt::Debug;
    /// How many records there are (indexes `0..records()`).
    fn records(&self) -> usize;
    /// Reads record `index`. A never-written record may read as anything (0xff on flash).
    fn read(&mut self, index: usize, out: &mut Record) -> Result<(), Self::Error>;
    /// Writes record `index`.
    fn write(&mut self, index: usize, record: &Record) -> Result<(), Self::Error>;
}

/// Storage in RAM, for tests and the simulator: survives a simulated reboot (a new queue
/// opened over the same value), not a power cut.
#[derive(Clone)]
pub struct RamStorage<const R: usize> {
    records: [Record; R],
}

impl<const R: usize> RamStorage<R> {
    /// Blank storage (all 0xff, like erased flash).
    pub const fn new() -> Self {
        RamStorage {
            records: [[0xff; RECORD_LEN]; R],
        }
    }
}

impl<const R: usize> Default for RamStorage<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// Index out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange(pub usize);

impl<const R: usize> Storage for RamStorage<R> {
    type Error = OutOfRange;
    fn records(&self) -> usize {
        R
    }
    fn read(&mut self, index: usize, out: &mut Record) -> Result<(), OutOfRange> {
        *out = *self.records.get(index).ok_or(OutOfRange(index))?;
        Ok(())
    }
    fn write(&mut self, index: usize, record: &Record) -> Result<(), OutOfRange> {
        *self.records.get_mut(index).ok_or(OutOfRange(index))? = *record;
        Ok(())
    }
}

impl<S: Storage + ?Sized> Storage for &mut S {
    type Error = S::Error;
    fn records(&self) -> usize {
        (**self).records()
    }
    fn read(&mut self, index: usize, out: &mut Record) -> Result<(), S::Error> {
        (**self).read(index, out)
    }
    fn write(&mut self, index: usize, record: &Record) -> Result<(), S::Error> {
        (**self).write(index, record)
    }
}

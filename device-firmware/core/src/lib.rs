//! Device logic shared by the Homeward pendant firmware, the hub and the simulator.
//!
//! `#![no_std]`, no allocation, integer maths only, so the same code runs on a
//! microcontroller and in host tests. Time always comes from the caller or the board's
//! [`Clock`](hw::Clock); nothing here reads a clock of its own.
//!
//! - [`fall`]: a streaming fall detector over raw 3-axis accelerometer samples.
//! - [`cancel`]: the window in which the wearer can cancel a detected fall, and the
//!   long press that raises an alarm at once.
//! - [`hw`]: the hardware as small traits (clock, accelerometer, button, buzzer or LED,
//!   battery, network link, persistent storage).
//! - [`store`]: store and forward: persistent sequence numbers and a bounded persistent queue
//!   that keeps each event until Homeward's end-to-end acknowledgement covers it.
//! - [`device`]: the pendant and hub state machine over all of the above.
//!
//! Invariants: an event is persisted before it is sent and erased only when an
//! [`AckRanges`](homeward_proto::AckRanges) from Homeward covers it; a sequence number is
//! never used twice, across reboots too; a resend is byte-identical; a queued alarm is never
//! dropped.
#![no_std]

pub mod cancel;
pub mod device;
pub mod fall;
pub mod hw;
pub mod store;

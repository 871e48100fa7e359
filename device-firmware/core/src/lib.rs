//! Device logic shared by the Homeward pendant firmware, the hub and the simulator.
//!
//! `#![no_std]`, no allocation, integer maths only, so the same code runs on a
//! microcontroller and in host tests. Time always comes from the caller (a sample index
//! or a monotonic millisecond count); nothing in this crate reads a clock.
//!
//! - [`fall`]: a streaming fall detector over raw 3-axis accelerometer samples.
//! - [`cancel`]: the window in which the wearer can cancel a detected fall, and the
//!   long press that raises an alarm at once.
#![no_std]

pub mod cancel;
pub mod fall;

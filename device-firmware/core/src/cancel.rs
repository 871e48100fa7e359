//! The cancel window after a detected fall, and the long press that raises an alarm.
//!
//! After the detector reports a fall the pendant gives the wearer
//! [`CancelConfig::window_ms`] to say "I am fine" with a short press of the button. If the
//! window runs out, the fall alarm is sent. Independently, holding the button for
//! [`CancelConfig::long_press_ms`] at any time raises a pendant alarm at once (and replaces a
//! pending fall alarm: help is on its way either way).
//!
//! Time is a monotonic millisecond count supplied by the caller with every call; nothing
//! here reads a clock. Call [`CancelWindow::tick`] at least by [`CancelWindow::next_deadline`]
//! so that expiries and long presses are reported on time. Times that go backwards are
//! treated as "no time has passed".
//!
//! A press is judged when it ends (or when it has lasted `long_press_ms`), not when it
//! starts: a wearer who presses and holds for help must not cancel their fall alarm on the
//! way. So while the button is held the fall window does not expire; a press that began
//! inside the window still cancels if released before it becomes a long press.

/// Timing of the cancel window and the long press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelConfig {
    /// How long the wearer has to cancel a detected fall. Default 30 s.
    pub window_ms: u32,
    /// How long the button must be held to raise an alarm at once. Default 2 s.
    pub long_press_ms: u32,
}

impl Default for CancelConfig {
    fn default() -> Self {
        CancelConfig {
            window_ms: 30_000,
            long_press_ms: 2_000,
        }
    }
}

/// What the pendant must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAction {
    /// The window expired without a cancel: send the fall alarm.
    SendFallAlarm,
    /// The wearer cancelled the fall in time: send nothing (or a "cancelled" note).
    FallCancelled,
    /// The button was held for the long-press time: send a pendant alarm now.
    PendantAlarmNow,
}

/// The cancel-window state machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct CancelWindow {
    config: CancelConfig,
    /// Deadline of the open fall window.
    fall_deadline: Option<u64>,
    /// When the current press started, if the button is down.
    pressed_at: Option<u64>,
    /// The current press has already raised a long-press alarm.
    long_press_sent: bool,
    /// The current press started while a fall window was open.
    press_in_window: bool,
}

impl CancelWindow {
    /// A state machine with no fall pending and the button up.
    pub fn new(config: CancelConfig) -> Self {
        CancelWindow {
            config,
            fall_deadline: None,
            pressed_at: None,
            long_press_sent: false,
            press_in_window: false,
        }
    }

    /// Whether a fall is waiting for its window to end.
    pub fn fall_pending(&self) -> bool {
        self.fall_deadline.is_some()
    }

    /// When [`CancelWindow::tick`] must next be called, if anything is timed.
    pub fn next_deadline(&self) -> Option<u64> {
        let long_press = match (self.pressed_at, self.long_press_sent) {
            (Some(at), false) => Some(at.saturating_add(u64::from(self.config.long_press_ms))),
            _ => None,
        };
        // While the button is held the fall window waits for the press to end.
        let fall = if self.pressed_at.is_some() {
            None
        } else {
            self.fall_deadline
        };
        match (long_press, fall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The detector reported a fall at `now_ms`: open the window. A fall reported while a
    /// window is already open keeps the earlier deadline (one incident, one window).
    pub fn fall_detected(&mut self, now_ms: u64) -> Option<CancelAction> {
        let expired = self.tick(now_ms);
        if self.fall_deadline.is_none() {
            self.fall_deadline = Some(now_ms.saturating_add(u64::from(self.config.window_ms)));
            if self.pressed_at.is_some() {
                // A press already under way when the fall is detected was not meant as a
                // cancel; only a press that starts inside the window cancels.
                self.press_in_window = false;
            }
        }
        expired
    }

    /// The button went down at `now_ms`.
    pub fn button_pressed(&mut self, now_ms: u64) -> Option<CancelAction> {
        let due = self.tick(now_ms);
        if self.pressed_at.is_none() {
            self.pressed_at = Some(now_ms);
            self.long_press_sent = false;
            self.press_in_window = self.fall_deadline.is_some();
        }
        due
    }

    /// The button came up at `now_ms`.
    pub fn button_released(&mut self, now_ms: u64) -> Option<CancelAction> {
        let due = self.tick(now_ms);
        if due.is_some() {
            // A long press just completed; the release itself does nothing more.
            self.pressed_at = None;
            return due;
        }
        self.pressed_at.take()?;
        if self.long_press_sent {
            return None;
        }
        if self.press_in_window && self.fall_deadline.take().is_some() {
            return Some(CancelAction::FallCancelled);
        }
        // A short press outside a window does nothing; if the window ran out while the
        // button was held, it expires now.
        self.tick(now_ms)
    }

    /// Report what is due at `now_ms`: a completed long press or an expired window.
    pub fn tick(&mut self, now_ms: u64) -> Option<CancelAction> {
        if let (Some(at), false) = (self.pressed_at, self.long_press_sent) {
            if now_ms.saturating_sub(at) >= u64::from(self.config.long_press_ms) {
                self.long_press_sent = true;
                // The pendant alarm supersedes a pending fall alarm.
                self.fall_deadline = None;
                return Some(CancelAction::PendantAlarmNow);
            }
        }
        if self.pressed_at.is_none() {
            if let Some(deadline) = self.fall_deadline {
                if now_ms >= deadline {
                    self.fall_deadline = None;
                    return Some(CancelAction::SendFallAlarm);
                }
            }
        }
        None
    }
}

impl Default for CancelWindow {
    fn default() -> Self {
        CancelWindow::new(CancelConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000;

    #[test]
    fn expires_into_a_fall_alarm() {
        let mut w = CancelWindow::default();
        assert_eq!(w.fall_detected(T0), None);
        assert!(w.fall_pending());
        assert_eq!(w.next_deadline(), Some(T0 + 30_000));
        assert_eq!(w.tick(T0 + 29_999), None);
        assert_eq!(w.tick(T0 + 30_000), Some(CancelAction::SendFallAlarm));
        assert!(!w.fall_pending());
        assert_eq!(w.tick(T0 + 60_000), None, "reported once");
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn short_press_inside_the_window_cancels() {
        let mut w = CancelWindow::default();
        w.fall_detected(T0);
        assert_eq!(w.button_pressed(T0 + 10_000), None);
        assert_eq!(
            w.button_released(T0 + 10_300),
            Some(CancelAction::FallCancelled)
        );
        assert_eq!(w.tick(T0 + 40_000), None, "nothing is sent after a cancel");
    }

    #[test]
    fn press_after_expiry_does_not_cancel() {
        let mut w = CancelWindow::default();
        w.fall_detected(T0);
        // No tick in between: the press itself reports the expiry first.
        assert_eq!(
            w.button_pressed(T0 + 31_000),
            Some(CancelAction::SendFallAlarm)
        );
        assert_eq!(w.button_released(T0 + 31_200), None);
    }

    #[test]
    fn press_spanning_the_deadline_still_cancels() {
        let mut w = CancelWindow::default();
        w.fall_detected(T0);
        w.button_pressed(T0 + 29_500);
        assert_eq!(w.tick(T0 + 30_500), None, "window waits for the press");
        assert_eq!(
            w.button_released(T0 + 30_600),
            Some(CancelAction::FallCancelled)
        );
    }

    #[test]
    fn long_press_raises_an_alarm_at_any_time() {
        let mut w = CancelWindow::default();
        assert_eq!(w.button_pressed(T0), None);
        assert_eq!(w.next_deadline(), Some(T0 + 2_000));
        assert_eq!(w.tick(T0 + 1_999), None);
        assert_eq!(w.tick(T0 + 2_000), Some(CancelAction::PendantAlarmNow));
        assert_eq!(w.tick(T0 + 5_000), None, "one alarm per press");
        assert_eq!(w.button_released(T0 + 6_000), None);
        // Short press with nothing pending: nothing.
        w.button_pressed(T0 + 7_000);
        assert_eq!(w.button_released(T0 + 7_100), None);
    }

    #[test]
    fn long_press_in_the_window_replaces_the_fall_alarm() {
        let mut w = CancelWindow::default();
        w.fall_detected(T0);
        w.button_pressed(T0 + 5_000);
        assert_eq!(w.tick(T0 + 7_000), Some(CancelAction::PendantAlarmNow));
        assert!(!w.fall_pending());
        assert_eq!(
            w.button_released(T0 + 8_000),
            None,
            "release does not cancel"
        );
        assert_eq!(w.tick(T0 + 40_000), None, "no second alarm");
    }

    #[test]
    fn long_press_reported_on_release_if_not_ticked() {
        let mut w = CancelWindow::default();
        w.fall_detected(T0);
        w.button_pressed(T0 + 1_000);
        assert_eq!(
            w.button_released(T0 + 4_000),
            Some(CancelAction::PendantAlarmNow)
        );
        assert!(!w.fall_pending());
    }

    #[test]
    fn configurable_times_and_repeated_detection() {
        let mut w = CancelWindow::new(CancelConfig {
            window_ms: 10_000,
            long_press_ms: 500,
        });
        w.fall_detected(T0);
        w.fall_detected(T0 + 5_000);
        assert_eq!(
            w.next_deadline(),
            Some(T0 + 10_000),
            "keeps the first deadline"
        );
        assert_eq!(w.tick(T0 + 10_000), Some(CancelAction::SendFallAlarm));
        w.button_pressed(T0 + 20_000);
        assert_eq!(w.tick(T0 + 20_500), Some(CancelAction::PendantAlarmNow));
    }

    #[test]
    fn time_going_backwards_is_no_time() {
        let mut w = CancelWindow::default();
        w.fall_detected(T0);
        assert_eq!(w.tick(T0 - 5_000), None);
        w.button_pressed(T0 + 100);
        assert_eq!(w.tick(T0), None);
        assert_eq!(
            w.button_released(T0 + 200),
            Some(CancelAction::FallCancelled)
        );
    }
}

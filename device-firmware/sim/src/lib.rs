//! The Homeward fleet simulator: many virtual pendants and hubs, each running the real device
//! core (`homeward-device-core`: fall detector, cancel window, store and forward) on a
//! virtual board, each with its own MQTT connection and credentials, against a real broker
//! and a real Homeward.
//!
//! - [`clock`]: the virtual clock (real time while devices wait for the network, leaps
//!   otherwise), so hours of device time pass in seconds.
//! - [`board`]: the core's hardware traits over the virtual clock, scripted sensors, storage
//!   in memory and a real MQTT link (last will `offline`, persistent session).
//! - [`motion`]: accelerometer data: synthetic falls or SisFall recordings.
//! - [`scenario`]: the scenarios, as steps on the virtual timeline.
//! - [`fleet`]: runs the fleet and reports what each device sent.
//! - [`creds`]: credentials files and `homeward admin create-device`.

pub mod board;
pub mod clock;
pub mod creds;
pub mod fleet;
pub mod motion;
pub mod scenario;

/// `2026-11-18T03:00:00.000Z` for ms since the Unix epoch (no time-zone database needed).
pub fn fmt_utc(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc() {
        assert_eq!(super::fmt_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::fmt_utc(1_795_000_000_000),
            "2026-11-18T11:06:40.000Z"
        );
        assert_eq!(super::fmt_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}

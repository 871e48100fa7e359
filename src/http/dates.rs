//! Dates in requests are checked against a calendar Homeward can compute with: years 1900 to
//! 2199. Outside it (`9999-12-31`, `-9999-01-01`) date arithmetic in the handlers or in
//! PostgreSQL would overflow or fail, so such a date is refused at the edge with a problem
//! document naming the parameter (422), never a panic or a 500.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::ApiError;

/// First and last year a request may name.
pub const YEARS: std::ops::RangeInclusive<i32> = 1900..=2199;

fn check_year(field: &str, year: i32) -> Result<(), ApiError> {
    if YEARS.contains(&year) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("year {year} is outside {}..={}", YEARS.start(), YEARS.end()),
        ))
    }
}

/// Refuses a time outside [`YEARS`], naming `field`.
pub fn check_time(field: &str, time: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    time.map_or(Ok(()), |t| check_year(field, t.year()))
}

/// Refuses a date outside [`YEARS`], naming `field`.
pub fn check_date(field: &str, date: Option<NaiveDate>) -> Result<(), ApiError> {
    date.map_or(Ok(()), |d| check_year(field, d.year()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calendar_edges_are_refused_and_named() {
        let max = NaiveDate::MAX.and_hms_opt(0, 0, 0).unwrap().and_utc();
        let min = NaiveDate::MIN.and_hms_opt(0, 0, 0).unwrap().and_utc();
        for t in [max, min] {
            let e = check_time("to", Some(t)).unwrap_err();
            assert!(e.to_string().contains("to: year"), "{e}");
        }
        for d in ["9999-12-31", "-9999-01-01", "1899-12-31", "2200-01-01"] {
            let d: NaiveDate = d.parse().unwrap();
            assert!(check_date("from", Some(d)).is_err(), "{d}");
        }
        for d in ["1900-01-01", "2026-12-01", "2199-12-31"] {
            let d: NaiveDate = d.parse().unwrap();
            assert!(check_date("from", Some(d)).is_ok(), "{d}");
        }
        assert!(check_time("from", None).is_ok());
    }
}

//! Formats Unix time as RFC 3339 UTC without pulling in a date library.

/// `1700000000` -> `2023-11-14T22:13:20Z`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Unix milliseconds with microsecond precision, the shape Python's `isoformat()` + `Z` gives
/// (seeds 000 and 001): `1704110400000` -> `2024-01-01T12:00:00.000000Z`.
pub fn rfc3339_micros(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let micros = millis.rem_euclid(1000) * 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Hinnant's days-from-civil: the inverse of `civil_from_days`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` into Unix seconds.
pub fn parse_utc(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.strip_suffix('Z').unwrap_or(time))),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (parts.next()??, parts.next()??, parts.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || date.len() != 10 {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    if let Some(time) = time {
        let mut parts = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
        let (h, m, s) = (
            parts.next()??,
            parts.next()??,
            parts.next().unwrap_or(Some(0))?,
        );
        if h > 23 || m > 59 || s > 60 {
            return None;
        }
        secs += h * 3600 + m * 60 + s;
    }
    // Reject dates that do not exist (2026-02-31): they do not round-trip.
    (rfc3339(secs)[..10] == date[..]).then_some(secs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_dates_and_instants() {
        assert_eq!(
            super::parse_utc("2023-11-14T22:13:20Z"),
            Some(1_700_000_000)
        );
        assert_eq!(super::parse_utc("1970-01-02"), Some(86_400));
        assert_eq!(super::parse_utc("2026-02-31"), None);
        assert_eq!(super::parse_utc("yesterday"), None);
    }

    #[test]
    fn known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn known_instants_with_micros() {
        assert_eq!(
            super::rfc3339_micros(1_704_110_400_000),
            "2024-01-01T12:00:00.000000Z"
        );
        assert_eq!(
            super::rfc3339_micros(1_700_000_000_123),
            "2023-11-14T22:13:20.123000Z"
        );
        assert_eq!(super::rfc3339_micros(-1), "1969-12-31T23:59:59.999000Z");
    }
}

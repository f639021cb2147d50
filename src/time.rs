//! nginx's time syntax: `10s`, `1m30s`, `500ms`, a bare number of seconds.

use std::time::Duration;

/// Parses a time in nginx's syntax.
///
/// Units are `ms`, `s`, `m`, `h`, `d`, `w`, `M` (30 days) and `y` (365
/// days); several may follow each other from the largest down (`1h30m`),
/// and a number without a unit is seconds. Returns `None` for anything
/// else, including values that overflow.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use upstream::time::parse_nginx_time;
///
/// assert_eq!(parse_nginx_time("1m30s"), Some(Duration::from_secs(90)));
/// assert_eq!(parse_nginx_time("500ms"), Some(Duration::from_millis(500)));
/// assert_eq!(parse_nginx_time("10"), Some(Duration::from_secs(10)));
/// assert_eq!(parse_nginx_time("10x"), None);
/// ```
pub fn parse_nginx_time(text: &str) -> Option<Duration> {
    const UNITS: [(&str, u64); 8] = [
        ("y", 365 * 86_400_000),
        ("M", 30 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1_000),
    ];
    // The rank of "s" in UNITS.
    const SECONDS_RANK: usize = 7;
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // The rank of the last unit seen; each later unit must be smaller.
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        if rest.is_empty() {
            // A bare trailing number counts as seconds, alone or after a
            // larger unit ("1m30" is 90 s), as nginx reads it.
            if last_rank != usize::MAX && last_rank >= SECONDS_RANK {
                return None;
            }
            let ms = total_ms.checked_add(value.checked_mul(1_000)?)?;
            return Some(Duration::from_millis(ms));
        }
        let (rank, (unit, ms)) = UNITS
            .iter()
            .enumerate()
            .find(|(_, (u, _))| rest.starts_with(u))?;
        // "ms" is ranked below "m" and "s" by value, not by table order.
        let rank = if *unit == "ms" { UNITS.len() } else { rank };
        if last_rank != usize::MAX && rank <= last_rank {
            return None;
        }
        last_rank = rank;
        rest = &rest[unit.len()..];
        total_ms = total_ms.checked_add(value.checked_mul(*ms)?)?;
    }
    Some(Duration::from_millis(total_ms))
}

/// Formats a duration in nginx's syntax, the shortest exact form.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use upstream::time::format_nginx_time;
///
/// assert_eq!(format_nginx_time(Duration::from_secs(90)), "90s");
/// assert_eq!(format_nginx_time(Duration::from_millis(1500)), "1500ms");
/// ```
pub fn format_nginx_time(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Serde glue: durations as nginx time strings, or as whole seconds.
pub(crate) mod serde_duration {
    use std::time::Duration;

    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_nginx_time(*d))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => super::parse_nginx_time(&t).ok_or_else(|| {
                de::Error::custom(format!("'{t}' is not a time such as 10s, 1m30s or 500ms"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_misorder() {
        let cases = [
            ("1ms", 1),
            ("2s", 2_000),
            ("3m", 180_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1M", 2_592_000_000),
            ("1y", 31_536_000_000),
            ("1h30m", 5_400_000),
            ("1s500ms", 1_500),
            ("1m30", 90_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_nginx_time(text),
                Some(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in [
            "",
            "s",
            "1s1m",
            "1s1s",
            "1m 2s",
            "-1s",
            "1.5s",
            "1s2",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_nginx_time(bad), None, "{bad}");
        }
    }
}

//! nginx's number, time and size syntax, exactly as nginx 1.22 reads them.
//!
//! [`parse_nginx_time`](crate::time::parse_nginx_time) reads the common
//! forms; the config parser needs nginx's exact rules, which differ by
//! directive: `fail_timeout=` and cookie `expires=` count whole seconds
//! (`500ms` is refused), learn `timeout=` counts milliseconds (years and
//! months are refused), and a number after the last unit is seconds
//! (`1m30` is 90 seconds).

/// The largest value nginx's signed integers hold on a 64-bit build.
const NGX_MAX: i64 = i64::MAX;

/// Which clock a time is read for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeUnit {
    /// Whole seconds; `ms` is refused.
    Seconds,
    /// Milliseconds; `y` and `M` are refused.
    Millis,
}

/// The units in the order nginx requires them, largest first, with their
/// size in seconds (`None` for milliseconds).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Start,
    Year,
    Month,
    Week,
    Day,
    Hour,
    Min,
    Sec,
    Msec,
    Last,
}

/// Reads a time as nginx's `ngx_parse_time` does: seconds or milliseconds
/// by `unit`, `None` where nginx reports an error.
pub(crate) fn parse_time(text: &str, unit: TimeUnit) -> Option<u64> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut value: i64 = 0;
    let mut total: i64 = 0;
    let mut seen_digit = false;
    let mut step = if unit == TimeUnit::Seconds {
        Step::Start
    } else {
        Step::Month
    };
    while let Some(&b) = bytes.get(i) {
        i += 1;
        if b.is_ascii_digit() {
            value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
            seen_digit = true;
            continue;
        }
        // Each unit may appear once and only after every larger unit; a
        // space stands for "seconds" before the seconds unit.
        let (next, secs) = match b {
            b'y' if step == Step::Start => (Step::Year, 365 * 86_400),
            b'M' if step < Step::Month => (Step::Month, 30 * 86_400),
            b'w' if step < Step::Week => (Step::Week, 7 * 86_400),
            b'd' if step < Step::Day => (Step::Day, 86_400),
            b'h' if step < Step::Hour => (Step::Hour, 3_600),
            b'm' if bytes.get(i) == Some(&b's') => {
                if unit == TimeUnit::Seconds || step >= Step::Msec {
                    return None;
                }
                i += 1;
                (Step::Msec, 0)
            }
            b'm' if step < Step::Min => (Step::Min, 60),
            b's' if step < Step::Sec => (Step::Sec, 1),
            b' ' if step < Step::Sec => (Step::Last, 1),
            _ => return None,
        };
        step = next;
        let (scale, max) = match (next, unit) {
            (Step::Msec, _) => (1, NGX_MAX),
            (_, TimeUnit::Seconds) => (secs, NGX_MAX / secs),
            (_, TimeUnit::Millis) => (secs * 1000, NGX_MAX / secs / 1000),
        };
        if value > max {
            return None;
        }
        let add = value.checked_mul(scale)?;
        total = total.checked_add(add)?;
        value = 0;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    if !seen_digit {
        return None;
    }
    if unit == TimeUnit::Millis {
        value = value.checked_mul(1000)?;
    }
    let sum = total.checked_add(value)?;
    u64::try_from(sum).ok()
}

/// Reads a non-negative integer as nginx's `ngx_atoi` does: digits only,
/// at least one, no sign, no overflow.
pub(crate) fn parse_int(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = text.parse().ok()?;
    u64::try_from(n).ok()
}

/// Reads a size as nginx's `ngx_parse_size` does: a number with an
/// optional `k`/`K` or `m`/`M` suffix, in bytes.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let (digits, scale) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1024),
        b'm' | b'M' => (&text[..text.len() - 1], 1024 * 1024),
        _ => (text, 1),
    };
    let n = parse_int(digits)?;
    let max = u64::try_from(NGX_MAX).ok()? / scale;
    if n > max {
        return None;
    }
    n.checked_mul(scale)
}

/// Writes a size in bytes in nginx's syntax, with the largest exact unit.
pub(crate) fn format_size(bytes: u64) -> String {
    const M: u64 = 1024 * 1024;
    if bytes != 0 && bytes % M == 0 {
        format!("{}m", bytes / M)
    } else if bytes != 0 && bytes % 1024 == 0 {
        format!("{}k", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_follow_nginx() {
        let s = |t| parse_time(t, TimeUnit::Seconds);
        assert_eq!(s("10"), Some(10));
        assert_eq!(s("10s"), Some(10));
        assert_eq!(s("1m30s"), Some(90));
        assert_eq!(s("1m30"), Some(90));
        assert_eq!(s("1m 30s"), Some(90));
        assert_eq!(
            s("1y1M1w1d1h1m1s"),
            Some(31_536_000 + 2_592_000 + 604_800 + 90_061)
        );
        assert_eq!(s("s5"), Some(5));
        assert_eq!(s("0"), Some(0));
        assert_eq!(s("9223372036854775807"), Some(9_223_372_036_854_775_807));
        for bad in [
            "", "s", "500ms", "1s500ms", "1s1m", "1s1s", "-1", "1x", "1.5s",
        ] {
            assert_eq!(s(bad), None, "{bad}");
        }
        assert_eq!(s("9223372036854775808"), None);
        assert_eq!(s("292471208678y"), None);
    }

    #[test]
    fn millis_follow_nginx() {
        let ms = |t| parse_time(t, TimeUnit::Millis);
        assert_eq!(ms("500ms"), Some(500));
        assert_eq!(ms("1s500ms"), Some(1_500));
        assert_eq!(ms("10m"), Some(600_000));
        assert_eq!(ms("2"), Some(2_000));
        assert_eq!(ms("1w"), Some(604_800_000));
        assert_eq!(ms("1y"), None);
        assert_eq!(ms("1M"), None);
        assert_eq!(ms("1ms1s"), None);
    }

    #[test]
    fn ints_and_sizes() {
        assert_eq!(parse_int("01"), Some(1));
        assert_eq!(parse_int("+1"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("9223372036854775808"), None);
        assert_eq!(parse_size("1m"), Some(1_048_576));
        assert_eq!(parse_size("32K"), Some(32_768));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size("1g"), None);
        assert_eq!(format_size(1_048_576), "1m");
        assert_eq!(format_size(33_792), "33k");
        assert_eq!(format_size(1_000), "1000");
    }
}

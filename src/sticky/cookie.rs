//! The sticky cookie: reading it from a `Cookie` header and writing the
//! `Set-Cookie` value nginx writes.
//!
//! # The `Set-Cookie` value, as nginx writes it
//!
//! nginx's `ngx_http_upstream_sticky_module` (open source since 1.29.6)
//! builds the value in this fixed order, whatever the order of the
//! directive's parameters:
//!
//! ```text
//! NAME=ID[; expires=DATE; max-age=SECS][; domain=D][; httponly][; secure][; samesite=S][; path=P]
//! ```
//!
//! - `expires=T` writes both `expires=` (now + T, in nginx's cookie date
//!   format, `Thu, 31-Dec-37 23:55:55 GMT`: a two-digit year up to 2037, four
//!   digits after) and `max-age=T` in seconds.
//! - `expires=max` writes the fixed `expires=Thu, 31-Dec-37 23:55:55 GMT;
//!   max-age=315360000`.
//! - Attribute names are lowercase, `samesite` values too (`strict`, `lax`,
//!   `none`). An attribute that is not configured is not written; there is no
//!   default path.
//!
//! Source: nginx's `src/http/modules/ngx_http_upstream_sticky_module.c`
//! (the cookie insertion and its parameter parser) and `ngx_http_cookie_time`
//! in `src/core/ngx_times.c`, read as facts; no code was taken.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::{Clock, ManualClock};
use crate::sticky::seal::SealKeys;
use crate::sticky::StickyError;

/// nginx's `expires=max` moment, 2037-12-31 23:55:55 UTC, in Unix seconds.
/// An `expires` of exactly this many seconds is written as `max` too, as
/// nginx does (it stores both in one field).
const MAX_EXPIRES_SECS: u64 = 2_145_916_555;

/// What nginx writes for `expires=max`.
const MAX_EXPIRES_ATTRS: &str = "; expires=Thu, 31-Dec-37 23:55:55 GMT; max-age=315360000";

/// The last second a four-digit year can show: 9999-12-31 23:59:59 UTC.
const LAST_FORMATTABLE_SECS: u64 = 253_402_300_799;

/// How long the browser keeps the cookie (nginx's `expires=`): the same type
/// the config parser produces.
pub use crate::config::CookieExpires as Expires;

/// The `SameSite` attribute: the same type the config parser produces.
pub use crate::config::SameSite;

impl Expires {
    /// Parses nginx's value: `max`, or a time such as `1h` or `3600`.
    ///
    /// # Errors
    ///
    /// [`StickyError::InvalidExpires`] for anything else, including times
    /// with a sub-second part (`1500ms`), which nginx refuses here.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use upstream::sticky::Expires;
    ///
    /// assert_eq!(Expires::parse("max").unwrap(), Expires::Max);
    /// assert_eq!(Expires::parse("1h").unwrap(), Expires::After(Duration::from_secs(3600)));
    /// assert!(Expires::parse("1500ms").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, StickyError> {
        if text == "max" {
            return Ok(Expires::Max);
        }
        match crate::time::parse_nginx_time(text) {
            Some(d) if d.subsec_nanos() == 0 => Ok(Expires::After(d)),
            _ => Err(StickyError::InvalidExpires {
                value: text.to_string(),
            }),
        }
    }
}

impl SameSite {
    /// Lowercase, as nginx writes it.
    fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "strict",
            SameSite::Lax => "lax",
            SameSite::None => "none",
        }
    }
}

/// When a kept session gets its cookie sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Refresh {
    /// On every response, as nginx does; this also slides `expires`.
    #[default]
    Always,
    /// Only when the value changes: a new or rebound session, or a sealed
    /// cookie signed with an older key.
    OnChange,
}

/// A source of wall-clock time for the cookie's `expires` date.
///
/// The pool's [`Clock`] is monotonic from an arbitrary origin, which cannot
/// date a cookie; this one tells the calendar time.
pub trait WallClock: Send + Sync + 'static {
    /// Seconds since 1970-01-01 00:00:00 UTC.
    fn unix_secs(&self) -> u64;
}

/// The system's calendar clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn unix_secs(&self) -> u64 {
        // A clock set before 1970 reads as the epoch.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A [`ManualClock`] read as milliseconds since the Unix epoch, so tests
/// date cookies exactly.
impl WallClock for ManualClock {
    fn unix_secs(&self) -> u64 {
        self.now_ms() / 1000
    }
}

/// nginx's `sticky cookie NAME ...` parameters.
///
/// Setters do not check their input; [`Sticky::cookie`](crate::sticky::Sticky::cookie)
/// validates the whole configuration.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use upstream::sticky::{CookieConfig, Expires, SameSite};
///
/// let config = CookieConfig::new("srv_id")
///     .expires(Expires::After(Duration::from_secs(3600)))
///     .domain(".example.com")
///     .path("/")
///     .httponly(true)
///     .samesite(SameSite::Lax);
/// assert_eq!(config.name(), "srv_id");
/// ```
#[derive(Clone)]
pub struct CookieConfig {
    pub(crate) name: String,
    pub(crate) expires: Option<Expires>,
    pub(crate) domain: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) httponly: bool,
    pub(crate) secure: bool,
    pub(crate) samesite: Option<SameSite>,
    pub(crate) seal: Option<SealKeys>,
    pub(crate) refresh: Refresh,
    pub(crate) wall_clock: Arc<dyn WallClock>,
}

impl std::fmt::Debug for CookieConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieConfig")
            .field("name", &self.name)
            .field("expires", &self.expires)
            .field("domain", &self.domain)
            .field("path", &self.path)
            .field("httponly", &self.httponly)
            .field("secure", &self.secure)
            .field("samesite", &self.samesite)
            .field("sealed", &self.seal.is_some())
            .field("refresh", &self.refresh)
            .finish()
    }
}

impl CookieConfig {
    /// A session cookie named `name`, with no attributes, unsealed, sent
    /// on every response.
    pub fn new(name: impl Into<String>) -> Self {
        CookieConfig {
            name: name.into(),
            expires: None,
            domain: None,
            path: None,
            httponly: false,
            secure: false,
            samesite: None,
            seal: None,
            refresh: Refresh::Always,
            wall_clock: Arc::new(SystemWallClock),
        }
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets `expires` (and with it `max-age`).
    pub fn expires(mut self, expires: Expires) -> Self {
        self.expires = Some(expires);
        self
    }

    /// Sets the `domain` attribute.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets the `path` attribute.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Adds `httponly`.
    pub fn httponly(mut self, on: bool) -> Self {
        self.httponly = on;
        self
    }

    /// Adds `secure`.
    pub fn secure(mut self, on: bool) -> Self {
        self.secure = on;
        self
    }

    /// Sets the `samesite` attribute.
    pub fn samesite(mut self, samesite: SameSite) -> Self {
        self.samesite = Some(samesite);
        self
    }

    /// Seals the cookie with `keys` (see [`SealKeys`]): the value then names
    /// no backend a client could read or choose.
    pub fn seal(mut self, keys: SealKeys) -> Self {
        self.seal = Some(keys);
        self
    }

    /// Chooses when a kept session gets its cookie again.
    pub fn refresh(mut self, refresh: Refresh) -> Self {
        self.refresh = refresh;
        self
    }

    /// Uses `clock` to date `expires` (the system clock by default).
    pub fn wall_clock(mut self, clock: impl WallClock) -> Self {
        self.wall_clock = Arc::new(clock);
        self
    }

    /// Checks the name and the attribute values.
    pub(crate) fn validate(&self) -> Result<(), StickyError> {
        if self.name.is_empty() {
            return Err(StickyError::EmptyCookieName);
        }
        if !self.name.bytes().all(is_token_byte) {
            return Err(StickyError::InvalidCookieName {
                name: self.name.clone(),
            });
        }
        for (attribute, value) in [("domain", &self.domain), ("path", &self.path)] {
            if let Some(value) = value {
                if value.is_empty() || !value.bytes().all(is_attribute_byte) {
                    return Err(StickyError::InvalidAttribute {
                        attribute,
                        value: value.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes the `Set-Cookie` value; `value` writes the cookie's value.
    pub(crate) fn write_set_cookie(&self, out: &mut String, value: impl FnOnce(&mut String)) {
        out.push_str(&self.name);
        out.push('=');
        value(out);
        match self.expires {
            None => {}
            Some(Expires::After(d)) if d.as_secs() != MAX_EXPIRES_SECS => {
                let secs = d.as_secs();
                out.push_str("; expires=");
                write_cookie_time(self.wall_clock.unix_secs().saturating_add(secs), out);
                let _ = write!(out, "; max-age={secs}");
            }
            Some(_) => out.push_str(MAX_EXPIRES_ATTRS),
        }
        if let Some(domain) = &self.domain {
            out.push_str("; domain=");
            out.push_str(domain);
        }
        if self.httponly {
            out.push_str("; httponly");
        }
        if self.secure {
            out.push_str("; secure");
        }
        if let Some(samesite) = self.samesite {
            out.push_str("; samesite=");
            out.push_str(samesite.as_str());
        }
        if let Some(path) = &self.path {
            out.push_str("; path=");
            out.push_str(path);
        }
    }
}

/// RFC 7230 `tchar`: what a cookie name may contain.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 6265 `av-octet`: any visible character or space except `;`. Keeps a
/// configured domain or path from adding attributes of its own.
fn is_attribute_byte(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b';'
}

/// The value of cookie `name` in one `Cookie` request header, if present.
///
/// Follows RFC 6265 §4.2.1 and §5.4: pairs are separated by `;`, spaces and
/// tabs around names and values are ignored, a value wrapped in double
/// quotes is returned without them, and names compare exactly
/// (case-sensitively). Pairs without `=` are skipped. The first match
/// wins, as with nginx's `$cookie_NAME`; with several `Cookie` headers (as
/// HTTP/2 sends them), call it on each in order.
///
/// # Complexity
///
/// O(length of the header); no allocation.
///
/// # Examples
///
/// ```
/// use upstream::sticky::find_cookie;
///
/// let header = r#"theme=dark;  srv_id = "7f3797d6" ; lang=en"#;
/// assert_eq!(find_cookie(header, "srv_id"), Some("7f3797d6"));
/// assert_eq!(find_cookie(header, "SRV_ID"), None);
/// ```
pub fn find_cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split(';').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        if n.trim_matches(is_ows) != name {
            return None;
        }
        let v = v.trim_matches(is_ows);
        let unquoted = v
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'));
        Some(unquoted.unwrap_or(v))
    })
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Writes `unix_secs` in nginx's cookie date format: `Thu, 31-Dec-37
/// 23:55:55 GMT`, with a two-digit year up to 2037 and four digits after.
/// Moments past 9999-12-31 23:59:59 are written as that moment.
pub(crate) fn write_cookie_time(unix_secs: u64, out: &mut String) {
    const WEEK: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_secs.min(LAST_FORMATTABLE_SECS);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday, the first entry of WEEK.
    let weekday = WEEK[usize::try_from(days % 7).unwrap_or(0)];
    let month_name = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let _ = if year > 2037 {
        write!(
            out,
            "{weekday}, {day:02}-{month_name}-{year} {h:02}:{m:02}:{s:02} GMT"
        )
    } else {
        let yy = year % 100;
        write!(
            out,
            "{weekday}, {day:02}-{month_name}-{yy:02} {h:02}:{m:02}:{s:02} GMT"
        )
    };
}

/// The proleptic Gregorian (year, month 1-12, day 1-31) of `days` since
/// 1970-01-01, counting in 400-year eras of 146,097 days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the origin to 0000-03-01 so that leap days end each year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cookie_time(secs: u64) -> String {
        let mut s = String::new();
        write_cookie_time(secs, &mut s);
        s
    }

    #[test]
    fn cookie_dates_match_nginx() {
        assert_eq!(cookie_time(0), "Thu, 01-Jan-70 00:00:00 GMT");
        // nginx's own test vector for ngx_http_cookie_time.
        assert_eq!(cookie_time(1_408_024_973), "Thu, 14-Aug-14 14:02:53 GMT");
        assert_eq!(cookie_time(MAX_EXPIRES_SECS), "Thu, 31-Dec-37 23:55:55 GMT");
        // Leap day, and the switch to four digits after 2037.
        assert_eq!(cookie_time(951_782_400), "Tue, 29-Feb-00 00:00:00 GMT");
        assert_eq!(cookie_time(2_145_916_800), "Fri, 01-Jan-2038 00:00:00 GMT");
        assert_eq!(cookie_time(4_102_444_800), "Fri, 01-Jan-2100 00:00:00 GMT");
        assert_eq!(cookie_time(u64::MAX), "Fri, 31-Dec-9999 23:59:59 GMT");
    }

    #[test]
    fn finds_cookies_with_spaces_quotes_and_several_pairs() {
        let h = "a=1; srv=xyz;b=2";
        assert_eq!(find_cookie(h, "srv"), Some("xyz"));
        assert_eq!(find_cookie(h, "a"), Some("1"));
        assert_eq!(find_cookie(h, "b"), Some("2"));
        assert_eq!(find_cookie(h, "c"), None);
        assert_eq!(find_cookie(" \tsrv\t= \"q v\" ;x", "srv"), Some("q v"));
        assert_eq!(
            find_cookie("srv=\"", "srv"),
            Some("\""),
            "a lone quote stays"
        );
        assert_eq!(find_cookie("srv=", "srv"), Some(""));
        assert_eq!(
            find_cookie("xsrv=1; srv=2", "srv"),
            Some("2"),
            "no prefix match"
        );
        assert_eq!(find_cookie("srv=1; srv=2", "srv"), Some("1"), "first wins");
        assert_eq!(find_cookie("flag; srv=a=b", "srv"), Some("a=b"));
        assert_eq!(find_cookie("", "srv"), None);
    }

    #[test]
    fn expires_parses_nginx_values() {
        assert_eq!(Expires::parse("max"), Ok(Expires::Max));
        assert_eq!(
            Expires::parse("1h30m"),
            Ok(Expires::After(Duration::from_secs(5400)))
        );
        assert_eq!(Expires::parse("0"), Ok(Expires::After(Duration::ZERO)));
        assert_eq!(
            Expires::parse("1s500ms").unwrap_err().to_string(),
            "sticky cookie: expires='1s500ms' is not 'max' or a whole number of seconds such as 1h"
        );
        assert!(Expires::parse("MAX").is_err());
    }
}

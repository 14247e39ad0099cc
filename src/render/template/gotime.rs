//! Go's time layouts (`2006-01-02T15:04:05Z07:00`), for KOTS's `Now`/`NowFmt` and Sprig's
//! date functions. Times are UTC, as KOTS formats them.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC instant broken down the way a layout needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
    /// 0 = Sunday.
    pub weekday: u32,
    /// 1-based day of the year.
    pub yday: u32,
}

/// Seconds and nanoseconds since the Unix epoch, in UTC.
pub fn civil(secs: i64, nanos: u32) -> Civil {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400) as u32;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = CUM[(month - 1) as usize] + day + u32::from(leap && month > 2);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        nanos,
        weekday: (days + 4).rem_euclid(7) as u32,
        yday,
    }
}

/// Now, formatted with a Go layout (empty: RFC 3339, as KOTS's `NowFmt ""`).
pub fn format_now(layout: &str) -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let t = civil(d.as_secs() as i64, d.subsec_nanos());
    format(&t, if layout.is_empty() { RFC3339 } else { layout })
}

pub const RFC3339: &str = "2006-01-02T15:04:05Z07:00";

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Formats `t` (UTC) with a Go layout.
pub fn format(t: &Civil, layout: &str) -> String {
    // Longest tokens first, as Go's nextStdChunk prefers them.
    const TOKENS: &[&str] = &[
        "January",
        "Monday",
        "Z07:00:00",
        "-07:00:00",
        "Z070000",
        "-070000",
        "Z07:00",
        "-07:00",
        "Z0700",
        "-0700",
        "2006",
        "Jan",
        "Mon",
        "MST",
        "Z07",
        "-07",
        "002",
        "__2",
        "_2",
        "01",
        "02",
        "03",
        "04",
        "05",
        "06",
        "15",
        "PM",
        "pm",
        "1",
        "2",
        "3",
        "4",
        "5",
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        // Fractional seconds: ".000"/",000" (fixed) or ".999" (trailing zeros trimmed), only
        // right after a seconds field in Go; accepted anywhere here.
        for sep in ['.', ','] {
            if let Some(after) = rest.strip_prefix(sep) {
                let n0 = after.chars().take_while(|c| *c == '0').count();
                let n9 = after.chars().take_while(|c| *c == '9').count();
                let n = n0.max(n9);
                if n > 0 && !after[n..].starts_with(|c: char| c.is_ascii_digit()) {
                    let digits = format!("{:09}", t.nanos);
                    let mut frac = digits[..n.min(9)].to_string();
                    if n9 > 0 {
                        frac = frac.trim_end_matches('0').to_string();
                    }
                    if !frac.is_empty() {
                        out.push(sep);
                        out.push_str(&frac);
                    }
                    rest = &after[n..];
                    continue 'outer;
                }
            }
        }
        for tok in TOKENS {
            if let Some(after) = rest.strip_prefix(tok) {
                // Go: "Jan"/"Mon" etc. only match as words are not checked; "1"... are plain.
                out.push_str(&field(t, tok));
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn field(t: &Civil, tok: &str) -> String {
    let h12 = match t.hour % 12 {
        0 => 12,
        h => h,
    };
    match tok {
        "January" => MONTHS[(t.month - 1) as usize].into(),
        "Jan" => MONTHS[(t.month - 1) as usize][..3].into(),
        "Monday" => DAYS[t.weekday as usize].into(),
        "Mon" => DAYS[t.weekday as usize][..3].into(),
        "MST" => "UTC".into(),
        "2006" => format!("{:04}", t.year),
        "06" => format!("{:02}", t.year.rem_euclid(100)),
        "01" => format!("{:02}", t.month),
        "1" => t.month.to_string(),
        "02" => format!("{:02}", t.day),
        "_2" => format!("{:>2}", t.day),
        "2" => t.day.to_string(),
        "002" => format!("{:03}", t.yday),
        "__2" => format!("{:>3}", t.yday),
        "15" => format!("{:02}", t.hour),
        "03" => format!("{:02}", h12),
        "3" => h12.to_string(),
        "04" => format!("{:02}", t.minute),
        "4" => t.minute.to_string(),
        "05" => format!("{:02}", t.second),
        "5" => t.second.to_string(),
        "PM" => if t.hour >= 12 { "PM" } else { "AM" }.into(),
        "pm" => if t.hour >= 12 { "pm" } else { "am" }.into(),
        t if t.starts_with('Z') => "Z".into(),
        "-07:00:00" => "+00:00:00".into(),
        "-070000" => "+000000".into(),
        "-07:00" => "+00:00".into(),
        "-0700" => "+0000".into(),
        "-07" => "+00".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_format_like_go() {
        // 2009-11-10T23:04:05.123Z, a Tuesday, day 314.
        let t = civil(1_257_894_245, 123_000_000);
        assert_eq!(format(&t, RFC3339), "2009-11-10T23:04:05Z");
        assert_eq!(
            format(&t, "Mon Jan _2 15:04:05 2006"),
            "Tue Nov 10 23:04:05 2009"
        );
        assert_eq!(
            format(&t, "2006-01-02 03:04PM .000 .999"),
            "2009-11-10 11:04PM .123 .123"
        );
        assert_eq!(
            format(&t, "Monday, January 2 002"),
            "Tuesday, November 10 314"
        );
        assert_eq!(civil(0, 0).year, 1970);
        assert_eq!(civil(951_782_400, 0).month, 2); // 2000-02-29
        assert_eq!(civil(951_782_400, 0).day, 29);
    }
}

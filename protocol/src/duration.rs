//! Human durations (`500ms`, `2s`, `1m`, `1h`) as used in every Torua config file,
//! flag and env var.

use std::time::Duration;

/// Parses `<number><unit>` with unit `ms`, `s`, `m` or `h`; the number may be
/// fractional (`1.5s`). A bare `0` is accepted.
///
/// The number is read as an exact decimal (digits beyond the nanosecond are dropped),
/// not through `f64`, so whatever [`format_duration`] prints reads back unchanged.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} needs a unit: ms, s, m or h (e.g. 500ms, 2s)"))?;
    let (num, unit) = s.split_at(split);
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(format!(
                "{s:?} has unknown unit {unit:?}: use ms, s, m or h"
            ))
        }
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(format!("{s:?} is not a duration like 500ms or 2s"));
    }
    let out_of_range = || format!("{s:?} is out of range");
    // Both parts hold only ASCII digits here. 24 fractional digits are far below a
    // nanosecond for every unit and keep the arithmetic within u128.
    let digits = |d: &str| d.bytes().fold(0u128, |n, b| n * 10 + u128::from(b - b'0'));
    let frac = &frac[..frac.len().min(24)];
    let whole_nanos = if whole.len() > 30 {
        None
    } else {
        digits(whole).checked_mul(nanos_per_unit)
    }
    .ok_or_else(out_of_range)?;
    let frac_nanos = digits(frac) * nanos_per_unit / 10u128.pow(frac.len() as u32);
    let nanos = whole_nanos + frac_nanos;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| out_of_range())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `#[serde(with = "torua_protocol::duration::serde_str")]` for `Duration` fields.
pub mod serde_str {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }
}

/// Like [`serde_str`] for `Option<Duration>`.
pub mod serde_opt {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => parse_duration(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = [
            ("500ms", 500),
            ("2s", 2000),
            ("1.5s", 1500),
            ("1m", 60_000),
            ("1h", 3_600_000),
            ("0", 0),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for bad in [
            "",
            "5",
            "s",
            "1x",
            "-1s",
            "1.2.3s",
            "1e999s",
            ".s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.0000000015s"), Ok(Duration::from_nanos(1)));
        // Found by proptests: through f64 this read back as 9262699.344000001s.
        assert_eq!(
            parse_duration("9262699344ms"),
            Ok(Duration::from_millis(9_262_699_344))
        );
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
    }
}

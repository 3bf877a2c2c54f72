//! Durations written as the kubelet writes them: Go's `time.ParseDuration` syntax (`20s`,
//! `1m30s`, `1.5h`, `300ms`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration in Go's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (write it as kubelet does: 20s, 1m30s, 1.5h, 500ms)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

const UNITS: [(&str, f64); 7] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| DurationError { input: input.to_owned(), reason };
        if input == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        if input.starts_with('-') {
            return Err(fail("durations cannot be negative here"));
        }
        let mut rest = input.strip_prefix('+').unwrap_or(input);
        if rest.is_empty() {
            return Err(fail("empty"));
        }
        let mut seconds = 0.0_f64;
        while !rest.is_empty() {
            let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let (number, tail) = rest.split_at(number_len);
            if number.is_empty() || number == "." {
                return Err(fail("expected a number"));
            }
            let value: f64 = number.parse().map_err(|_| fail("bad number"))?;
            let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let scale = UNITS.iter().find(|(name, _)| *name == unit).map(|(_, s)| *s);
            let Some(scale) = scale else {
                return Err(fail(if unit.is_empty() { "missing unit" } else { "unknown unit" }));
            };
            seconds += value * scale;
            rest = tail;
        }
        Duration::try_from_secs_f64(seconds).map(GoDuration).map_err(|_| fail("out of range"))
    }
}

impl fmt::Display for GoDuration {
    /// Go's own formatting: `1m30s`, `20s`, `1h0m0s`, `500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d < Duration::from_secs(1) {
            return write!(f, "{}ms", d.as_millis());
        }
        let total = d.as_secs();
        let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
        let frac = d.subsec_millis();
        let secs = if frac == 0 { format!("{s}s") } else { format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0')) };
        match (h, m) {
            (0, 0) => f.write_str(&secs),
            (0, m) => write!(f, "{m}m{secs}"),
            (h, m) => write!(f, "{h}h{m}m{secs}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Duration {
        s.parse::<GoDuration>().unwrap().0
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("20s"), Duration::from_secs(20));
        assert_eq!(parse("1m30s"), Duration::from_secs(90));
        assert_eq!(parse("1.5h"), Duration::from_secs(5400));
        assert_eq!(parse("300ms"), Duration::from_millis(300));
        assert_eq!(parse("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(parse("0"), Duration::ZERO);
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in ["", "20", "s", "1x", "-1s", "1..5s", "1m30"] {
            assert!(bad.parse::<GoDuration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(GoDuration(Duration::from_secs(90)).to_string(), "1m30s");
        assert_eq!(GoDuration(Duration::from_secs(20)).to_string(), "20s");
        assert_eq!(GoDuration(Duration::from_secs(3600)).to_string(), "1h0m0s");
        assert_eq!(GoDuration(Duration::from_millis(500)).to_string(), "500ms");
    }
}

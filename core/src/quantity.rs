//! Sizes and durations as users write them (`64Mi`, `30s`), in flags, pod
//! specs and the station's YAML, and printed back the same way.
//!
//! This module owns only the notation; which limits exist and what they
//! bound is the business of the crates that enforce them.

use std::fmt;
use std::time::Duration;

/// The most linear memory a wasm32 guest can address (4 GiB); a larger limit
/// would mean nothing.
pub const MAX_MEMORY_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Errors in a size or duration that a user wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseLimitError {
    /// Not a number with a known size suffix, or too large for 64 bits;
    /// holds the text as written.
    #[error(
        "invalid size {0:?}: expected a number with an optional suffix Ki, Mi, Gi, K, M or G (e.g. 64Mi)"
    )]
    Size(String),
    /// Not a number with a known time unit, or too long to represent;
    /// holds the text as written.
    #[error("invalid duration {0:?}: expected a number with a unit ms, s, m or h (e.g. 30s)")]
    Duration(String),
    /// A limit that must be positive was written as zero.
    #[error("{what} must be greater than zero")]
    Zero {
        /// The limit, as the message names it (e.g. `memory limit`).
        what: &'static str,
    },
    /// A memory limit, in bytes, above what a wasm32 guest can address
    /// ([`MAX_MEMORY_BYTES`]).
    #[error("memory limit {} is more than a wasm32 guest can address ({})", Size(*.0), Size(MAX_MEMORY_BYTES))]
    MemoryTooLarge(u64),
}

/// Splits `64Mi` into `(64, "Mi")`; `None` without leading digits or when
/// the number overflows.
fn number_and_suffix(text: &str) -> Option<(u64, &str)> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    Some((digits.parse().ok()?, suffix))
}

/// Parses a byte size written as Kubernetes writes memory quantities:
/// `65536`, `64Ki`, `64Mi`, `1Gi`, `64k`/`64K`, `64M`, `1G`.
pub fn parse_size(text: &str) -> Result<u64, ParseLimitError> {
    let bad = || ParseLimitError::Size(text.to_owned());
    let (number, suffix) = number_and_suffix(text).ok_or_else(bad)?;
    let multiplier: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    number.checked_mul(multiplier).ok_or_else(bad)
}

/// Parses a memory limit: a size that is non-zero and at most 4 GiB.
pub fn parse_memory_limit(text: &str) -> Result<u64, ParseLimitError> {
    let bytes = parse_size(text)?;
    if bytes == 0 {
        return Err(ParseLimitError::Zero {
            what: "memory limit",
        });
    }
    if bytes > MAX_MEMORY_BYTES {
        return Err(ParseLimitError::MemoryTooLarge(bytes));
    }
    Ok(bytes)
}

/// Parses a duration such as `500ms`, `30s`, `5m` or `1h` (a bare number is
/// seconds). Zero is refused: a run with no time at all is a mistake.
pub fn parse_timeout(text: &str) -> Result<Duration, ParseLimitError> {
    let bad = || ParseLimitError::Duration(text.to_owned());
    let (number, unit) = number_and_suffix(text).ok_or_else(bad)?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(number.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if duration.is_zero() {
        return Err(ParseLimitError::Zero { what: "timeout" });
    }
    Ok(duration)
}

/// A byte count printed the way it was most likely written (`64Mi`).
#[derive(Debug, Clone, Copy)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("Ti", 1 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ];
        for (suffix, unit) in UNITS {
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

/// A duration printed the way users write it (`30s`, `1500ms`).
#[derive(Debug, Clone, Copy)]
pub struct DurationText(pub Duration);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_millis() == 0 && d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else {
            write!(f, "{}ms", d.as_millis())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_kubernetes_quantities() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64Ki"), Ok(64 * 1024));
        assert_eq!(parse_size("64Mi"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("2k"), Ok(2000));
        assert_eq!(parse_size("3M"), Ok(3_000_000));
        assert!(parse_size("Mi").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn memory_limit_refuses_zero_and_more_than_wasm32_addresses() {
        assert_eq!(
            parse_memory_limit("0"),
            Err(ParseLimitError::Zero {
                what: "memory limit"
            })
        );
        assert_eq!(
            parse_memory_limit("0Mi").unwrap_err().to_string(),
            "memory limit must be greater than zero"
        );
        assert!(matches!(
            parse_memory_limit("5Gi"),
            Err(ParseLimitError::MemoryTooLarge(_))
        ));
        assert_eq!(parse_memory_limit("4Gi"), Ok(MAX_MEMORY_BYTES));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("1d").is_err());
        assert!(parse_timeout("s").is_err());
    }
}

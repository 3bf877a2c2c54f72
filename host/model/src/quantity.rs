//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`), parsed exactly as apimachinery's
//! `resource.ParseQuantity` reads them.

/// Nano-units per unit: every suffix apimachinery accepts is a whole number of nano-units.
const NANO: i128 = 1_000_000_000;

/// A parsed quantity, held exactly in nano-units (10⁻⁹); ordered by value (`1Gi` equals
/// `1073741824`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ParsedQuantity {
    nanos: i128,
}

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
pub struct QuantityError;

/// Parses a quantity.
///
/// # Errors
///
/// [`QuantityError`] for anything apimachinery rejects, and for values too large to hold.
pub fn parse_quantity(text: &str) -> Result<ParsedQuantity, QuantityError> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(QuantityError);
    }
    let (multiplier, divisor) = scale(suffix)?;
    // value = (whole.fraction) * multiplier / divisor, in nano-units.
    let digits = format!("{whole}{fraction}");
    let mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| QuantityError)? };
    let fraction_scale = 10_i128.checked_pow(u32::try_from(fraction.len()).map_err(|_| QuantityError)?).ok_or(QuantityError)?;
    let numerator = mantissa.checked_mul(multiplier).and_then(|v| v.checked_mul(NANO)).ok_or(QuantityError)?;
    let denominator = fraction_scale.checked_mul(divisor).ok_or(QuantityError)?;
    // Below a nano-unit apimachinery rounds up too.
    let nanos = (numerator + denominator - 1) / denominator;
    Ok(ParsedQuantity { nanos: if negative { -nanos } else { nanos } })
}

/// The suffix as an exact ratio (multiplier, divisor).
fn scale(suffix: &str) -> Result<(i128, i128), QuantityError> {
    let binary = |power: u32| Ok((1_i128 << (10 * power), 1));
    let decimal = |exp: i32| if exp >= 0 { Ok((10_i128.pow(exp as u32), 1)) } else { Ok((1, 10_i128.pow((-exp) as u32))) };
    match suffix {
        "" => decimal(0),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E']).ok_or(QuantityError)?;
            let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError);
            }
            let exp: i32 = exp.parse().map_err(|_| QuantityError)?;
            if !(-9..=18).contains(&exp) {
                return Err(QuantityError);
            }
            decimal(exp)
        }
    }
}

impl std::ops::Add for ParsedQuantity {
    type Output = ParsedQuantity;

    /// Sums two quantities, saturating instead of overflowing.
    fn add(self, other: ParsedQuantity) -> ParsedQuantity {
        ParsedQuantity { nanos: self.nanos.saturating_add(other.nanos) }
    }
}

impl ParsedQuantity {
    /// Nothing.
    pub const ZERO: ParsedQuantity = ParsedQuantity { nanos: 0 };

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The value in thousandths, rounded up (CPU in millicores).
    pub fn as_millis_ceil(&self) -> i64 {
        let millis = self.nanos.div_euclid(1_000_000) + i128::from(self.nanos.rem_euclid(1_000_000) != 0);
        millis.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The value in whole units, rounded up (memory in bytes).
    pub fn as_units_ceil(&self) -> i64 {
        let units = self.nanos.div_euclid(NANO) + i128::from(self.nanos.rem_euclid(NANO) != 0);
        units.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> ParsedQuantity {
        parse_quantity(s).unwrap_or_else(|_| panic!("{s} should parse"))
    }

    #[test]
    fn accepts_what_apimachinery_accepts() {
        assert_eq!(q("100m").as_millis_ceil(), 100);
        assert_eq!(q("1").as_millis_ceil(), 1000);
        assert_eq!(q("0.5").as_millis_ceil(), 500);
        assert_eq!(q(".5").as_millis_ceil(), 500);
        assert_eq!(q("1.5Gi").as_units_ceil(), 1_610_612_736);
        assert_eq!(q("128Mi").as_units_ceil(), 134_217_728);
        assert_eq!(q("1e3").as_units_ceil(), 1000);
        assert_eq!(q("1E-3").as_millis_ceil(), 1);
        assert_eq!(q("+1k").as_units_ceil(), 1000);
        assert!(q("-1").is_negative());
        assert_eq!(q("1Gi"), q("1073741824"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1n").as_millis_ceil(), 1, "rounded up");
    }

    #[test]
    fn rejects_what_apimachinery_rejects() {
        for bad in ["", "Mi", "1.5.5", "1 Gi", "1KiB", "1Ki1", "abc", "1e", "1ee3", "1x", "."] {
            assert!(parse_quantity(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}

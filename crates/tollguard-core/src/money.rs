//! Currencies and exact amounts. Money is never a float.

use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// An ISO 4217 currency code (three upper-case letters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// The euro, the default.
    pub const EUR: Currency = Currency(*b"EUR");

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency::EUR
    }
}

impl FromStr for Currency {
    type Err = String;
    fn from_str(s: &str) -> Result<Currency, String> {
        let b = s.trim().as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_alphabetic) {
            Ok(Currency([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase(), b[2].to_ascii_uppercase()]))
        } else {
            Err(format!("not a currency code: {s:?} (expected three letters, e.g. EUR)"))
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a money or rate amount: plain decimal notation only (`1.45`, `0.0125`, `-3`), no
/// exponent, no thousands separator, no currency sign. A comma as the decimal separator is
/// refused rather than guessed.
pub fn parse_amount(s: &str) -> Result<Decimal, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty amount".into());
    }
    if !t.bytes().all(|c| c.is_ascii_digit() || c == b'.' || c == b'-' || c == b'+') {
        return Err(format!("not a decimal amount: {t:?}"));
    }
    Decimal::from_str_exact(t).map_err(|e| format!("not a decimal amount: {t:?} ({e})"))
}

/// `numerator / denominator` rounded to `dp` decimal places, half away from zero, computed
/// exactly in integers (no intermediate rounding). `denominator` must be positive.
pub fn div_round(numerator: Decimal, denominator: u64, dp: u32) -> Decimal {
    debug_assert!(denominator > 0);
    let m = numerator.mantissa();
    let s = numerator.scale();
    // value = m / 10^s / den; in units of 10^-dp: m * 10^dp / (den * 10^s)
    let (num, den) = if s >= dp {
        (m, denominator as i128 * 10i128.pow(s - dp))
    } else {
        (m * 10i128.pow(dp - s), denominator as i128)
    };
    let mut q = num / den;
    let r = num % den;
    if 2 * r.abs() >= den {
        q += num.signum();
    }
    Decimal::from_i128_with_scale(q, dp)
}

/// Appends `value` with exactly `dp` decimal places (rounded half away from zero if it has more)
/// to `out`, without going through `fmt` (this is on the per-call output path).
pub fn push_fixed(out: &mut String, value: Decimal, dp: u32) {
    let mut v = value;
    if v.scale() > dp {
        v = v.round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    }
    v.rescale(dp);
    let m = v.mantissa();
    if m < 0 {
        out.push('-');
    }
    let m = m.unsigned_abs();
    let scale = 10u128.pow(dp);
    push_u128(out, m / scale);
    if dp > 0 {
        out.push('.');
        let frac = m % scale;
        let mut digits = [b'0'; 38];
        let mut f = frac;
        for k in (0..dp as usize).rev() {
            digits[k] = b'0' + (f % 10) as u8;
            f /= 10;
        }
        out.push_str(std::str::from_utf8(&digits[..dp as usize]).unwrap_or(""));
    }
}

/// Appends an unsigned integer in decimal.
pub fn push_u128(out: &mut String, mut n: u128) {
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or(""));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn rounds_half_away_from_zero_exactly() {
        assert_eq!(div_round(d("174.0"), 60, 4), d("2.9000"));
        // 0.00003 * 10 / 2 = 0.00015 -> 0.0002
        assert_eq!(div_round(d("0.0003"), 2, 4), d("0.0002"));
        assert_eq!(div_round(d("-0.0003"), 2, 4), d("-0.0002"));
        assert_eq!(div_round(d("0.00029"), 2, 4), d("0.0001"));
        // 1/60 = 0.016666.. -> 0.0167
        assert_eq!(div_round(d("1"), 60, 4), d("0.0167"));
    }

    #[test]
    fn fixed_formatting_matches_display() {
        for s in ["0", "2.9", "2.9000", "-0.0225", "176895.05", "12345678901234.5678", "-3"] {
            let mut out = String::new();
            push_fixed(&mut out, d(s), 4);
            assert_eq!(out, format!("{:.4}", d(s)), "{s}");
        }
        // more places than asked: rounded half away from zero (as the cost rule says)
        let mut out = String::new();
        push_fixed(&mut out, d("0.00005"), 4);
        assert_eq!(out, "0.0001");
        let mut out = String::new();
        push_u128(&mut out, 0);
        push_u128(&mut out, 3600);
        assert_eq!(out, "03600");
    }

    #[test]
    fn amounts_are_plain_decimals() {
        assert_eq!(parse_amount(" 1.4500 ").unwrap(), d("1.45"));
        assert!(parse_amount("1,45").is_err());
        assert!(parse_amount("1e3").is_err());
        assert!(parse_amount("").is_err());
        assert!(parse_amount("€1").is_err());
    }

    #[test]
    fn currency_codes() {
        assert_eq!("eur".parse::<Currency>().unwrap(), Currency::EUR);
        assert!("EURO".parse::<Currency>().is_err());
    }
}

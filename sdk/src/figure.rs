//! [`Figure`]: numbers for reasons, formatted cheaply.

use std::fmt;

/// A number for a reason string: at most three decimals, trailing zeros
/// dropped (`0.8`, `0.057`, `3`), whole numbers from 1000 up (`536870912`).
///
/// It formats through integers, which costs a fraction of `{:.3}` on a
/// float: reasons are built on the hot path whenever a policy decides.
/// Not finite values print as `NaN`, `inf` or `-inf`.
///
/// ```
/// use autoscaler_sdk::Figure;
///
/// assert_eq!(Figure(0.8).to_string(), "0.8");
/// assert_eq!(Figure(0.0567).to_string(), "0.057");
/// assert_eq!(Figure(-2.0).to_string(), "-2");
/// assert_eq!(Figure(536870912.4).to_string(), "536870912");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure(pub f64);

impl Figure {
    /// Append the figure to `out`, as `Display` writes it, without the
    /// formatting machinery (`write!` goes through `core::fmt` for every
    /// argument, which costs a component about two thousand instructions
    /// per call): for reasons built on every decision.
    ///
    /// ```
    /// use autoscaler_sdk::Figure;
    ///
    /// let mut reason = String::from("cpu mean ");
    /// Figure(0.8125).push_to(&mut reason);
    /// assert_eq!(reason, "cpu mean 0.813");
    /// ```
    pub fn push_to(self, out: &mut String) {
        let mut buf = [0u8; 24];
        match self.digits(&mut buf) {
            Some(text) => out.push_str(text),
            None => {
                use fmt::Write as _;
                let _ = write!(out, "{}", self.0);
            }
        }
    }

    /// The figure written at the end of `buf`; `None` when the float
    /// formatter is needed (not finite, or beyond 2^53 where integers stop
    /// being exact: no reason needs such figures to the digit).
    fn digits(self, buf: &mut [u8; 24]) -> Option<&str> {
        let value = self.0;
        if !value.is_finite() || value.abs() >= 9e15 {
            return None;
        }
        // Digits are written backwards into `buf` and handed on in one
        // piece: no nested formatting machinery.
        let mut at = buf.len();
        let magnitude = value.abs();
        let (whole, fraction, mut digits) = if magnitude >= 1000.0 {
            // The check above keeps this within u64.
            (magnitude.round() as u64, 0, 0)
        } else {
            let thousandths = (magnitude * 1000.0).round() as u64;
            (thousandths / 1000, thousandths % 1000, 3)
        };
        let mut fraction = fraction;
        while digits > 0 && fraction % 10 == 0 {
            fraction /= 10;
            digits -= 1;
        }
        if digits > 0 {
            for _ in 0..digits {
                at -= 1;
                buf[at] = b'0' + (fraction % 10) as u8;
                fraction /= 10;
            }
            at -= 1;
            buf[at] = b'.';
        }
        let mut whole_left = whole;
        loop {
            at -= 1;
            buf[at] = b'0' + (whole_left % 10) as u8;
            whole_left /= 10;
            if whole_left == 0 {
                break;
            }
        }
        if value < 0.0 && (whole != 0 || digits > 0) {
            at -= 1;
            buf[at] = b'-';
        }
        // Only ASCII digits, '.' and '-' were written.
        Some(std::str::from_utf8(&buf[at..]).unwrap_or("?"))
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 24];
        match self.digits(&mut buf) {
            Some(text) => f.write_str(text),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Figure;

    #[test]
    fn figures() {
        let cases = [
            (0.0, "0"),
            (-0.0001, "0"),
            (0.8, "0.8"),
            (0.05, "0.05"),
            (0.0567, "0.057"),
            (0.9999, "1"),
            (1.25, "1.25"),
            (999.9996, "1000"),
            (1000.4, "1000"),
            (-3.5, "-3.5"),
            (268435456.0, "268435456"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "inf"),
            (1e300, &format!("{}", 1e300)),
        ];
        for (value, text) in cases {
            assert_eq!(Figure(value).to_string(), text, "{value}");
            let mut pushed = String::from("x ");
            Figure(value).push_to(&mut pushed);
            assert_eq!(pushed, format!("x {text}"), "{value}");
        }
    }
}

//! Parsing of setting values.

/// A setting whose value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The setting's key (label name without `autoscale.`).
    pub key: String,
    /// The value that did not parse.
    pub value: String,
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "setting {} has value {:?}, which is not a number", self.key, self.value)
    }
}

impl std::error::Error for SettingError {}

/// Parse `0.8`, `250`, `64k`, `1.5G`, `512Mi`: SI suffixes k M G T are powers
/// of 1000, binary suffixes Ki Mi Gi Ti powers of 1024. Returns `None` for
/// anything else, including NaN and infinities.
pub fn parse_quantity(raw: &str) -> Option<f64> {
    let raw = raw.trim();
    let split = raw.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(raw.len());
    let (number, suffix) = raw.split_at(split);
    let factor = match suffix {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let value: f64 = number.trim().parse().ok()?;
    let value = value * factor;
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("0.75"), Some(0.75));
        assert_eq!(parse_quantity(" 2k "), Some(2000.0));
        assert_eq!(parse_quantity("1.5G"), Some(1.5e9));
        assert_eq!(parse_quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("64MB"), None);
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("NaN"), None);
        assert_eq!(parse_quantity(""), None);
    }
}

//! Units written in workflow files: durations (`1h30m`), CPU (`0.5`, `500m`) and memory
//! (`256Mi`). Each parser returns what was expected on error.

use std::time::Duration;

/// A duration such as `30s`, `10m`, `1h30m` or `2h 15m` (humantime syntax); more than zero.
pub fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => {
            Err(format!("expected a duration longer than zero, found '{text}'"))
        }
        Ok(d) => Ok(d),
        Err(_) => Err(format!("expected a duration such as 30s, 10m or 1h30m, found '{text}'")),
    }
}

/// CPU in thousandths of a core: `0.5`, `2` (cores) or `500m` (millicores); more than zero.
pub fn cpu_millis(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let expected = || {
        format!("expected CPU cores such as 0.5 or 2, or millicores such as 500m, found '{text}'")
    };
    let millis = if let Some(m) = t.strip_suffix('m') {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
            return Err(expected());
        }
        m.parse::<u64>().map_err(|_| expected())?
    } else {
        let cores = plain_number(t).ok_or_else(expected)?;
        let millis = (cores * 1000.0).round();
        if millis >= u64::MAX as f64 {
            return Err(expected());
        }
        millis as u64
    };
    if millis == 0 {
        return Err(format!("expected more than zero CPU (at least 1m), found '{text}'"));
    }
    Ok(millis)
}

/// Memory in bytes: `1073741824`, or a number with `Ki Mi Gi Ti` (powers of 1024) or
/// `K M G T` (powers of 1000; `k` too); more than zero.
pub fn memory_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let expected =
        || format!("expected memory such as 256Mi, 1Gi, 500M or a number of bytes, found '{text}'");
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: f64 = match unit {
        "" => 1.0,
        "K" | "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(expected()),
    };
    let bytes = (plain_number(number).ok_or_else(expected)? * factor).round();
    if bytes >= u64::MAX as f64 {
        return Err(expected());
    }
    if bytes < 1.0 {
        return Err(format!("expected more than zero memory, found '{text}'"));
    }
    Ok(bytes as u64)
}

/// `12` or `1.5`: digits with at most one dot, nothing else (no sign, exponent or `inf`).
fn plain_number(text: &str) -> Option<f64> {
    let ok = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|b| *b == b'.').count() <= 1
        && text.bytes().any(|b| b.is_ascii_digit());
    if ok { text.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration(" 2h 15m "), Ok(Duration::from_secs(8100)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(duration("0s").is_err_and(|e| e.contains("longer than zero")));
        assert!(duration("5 minutes").is_ok());
        assert!(duration("soon").is_err_and(|e| e.contains("such as 30s")));
        assert!(duration("10").is_err());
        assert!(duration("").is_err());
    }

    #[test]
    fn cpu() {
        assert_eq!(cpu_millis("0.5"), Ok(500));
        assert_eq!(cpu_millis("2"), Ok(2000));
        assert_eq!(cpu_millis("500m"), Ok(500));
        assert_eq!(cpu_millis("0.0015"), Ok(2));
        assert!(cpu_millis("0").is_err());
        assert!(cpu_millis("0m").is_err());
        assert!(cpu_millis("-1").is_err());
        assert!(cpu_millis("1.5m").is_err());
        assert!(cpu_millis("m").is_err());
        assert!(cpu_millis("inf").is_err());
        assert!(cpu_millis("1e999").is_err());
        assert!(cpu_millis("99999999999999999999999").is_err());
    }

    #[test]
    fn memory() {
        assert_eq!(memory_bytes("256Mi"), Ok(256 * 1024 * 1024));
        assert_eq!(memory_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(memory_bytes("1.5Ki"), Ok(1536));
        assert_eq!(memory_bytes("500M"), Ok(500_000_000));
        assert_eq!(memory_bytes("2k"), Ok(2000));
        assert_eq!(memory_bytes("1048576"), Ok(1_048_576));
        assert!(memory_bytes("0").is_err());
        assert!(memory_bytes("256MB").is_err());
        assert!(memory_bytes("Mi").is_err());
        assert!(memory_bytes("-5").is_err());
        assert!(memory_bytes("99999999999Ti").is_err());
    }
}

//! Numbers for people: bytes, rates, durations and counts as every report
//! (text, tables, verdict reasons, SVG labels) prints them. A leaf module:
//! it imports nothing of leak's, so anything may use it.

/// Formats a byte count for people: `812 B`, `9.8 KiB`, `20.5 MiB`.
pub(crate) fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[0])
    } else if v.abs() >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A byte change with its sign: `+1.2 MiB`, `-300 KiB`, `+0 B`.
pub(crate) fn signed_bytes(bytes: f64) -> String {
    if bytes < 0.0 {
        human_bytes(bytes)
    } else {
        format!("+{}", human_bytes(bytes))
    }
}

/// A rate in bytes per second, shown per minute: `2.1 MiB/min`.
pub(crate) fn bytes_per_min(bytes_per_sec: f64) -> String {
    format!("{}/min", human_bytes(bytes_per_sec * 60.0))
}

/// A duration for people: `45s`, `5m03s`, `2h05m`.
pub(crate) fn human_secs(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What a judged series counts: bytes (memory) or goroutines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quantity {
    /// Bytes of memory.
    Bytes,
    /// Goroutines.
    Goroutines,
}

impl Quantity {
    /// An amount for people: `2.1 MiB`, `1,500 goroutines`.
    pub(crate) fn amount(self, v: f64) -> String {
        match self {
            Quantity::Bytes => human_bytes(v),
            Quantity::Goroutines => format!("{} goroutines", count(v)),
        }
    }

    /// A change with its sign.
    pub(crate) fn signed(self, v: f64) -> String {
        match self {
            Quantity::Bytes => signed_bytes(v),
            Quantity::Goroutines if v < 0.0 => format!("-{}", count(-v)),
            Quantity::Goroutines => format!("+{}", count(v)),
        }
    }

    /// A rate per second, shown per minute.
    pub(crate) fn per_min(self, per_sec: f64) -> String {
        match self {
            Quantity::Bytes => bytes_per_min(per_sec),
            Quantity::Goroutines => format!("{:.0}/min", per_sec * 60.0),
        }
    }
}

/// A goroutine count, rounded, with thousands separators.
fn count(v: f64) -> String {
    thousands(v.max(0.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_binary_units() {
        assert_eq!(human_bytes(812.0), "812 B");
        assert_eq!(human_bytes(10240.0), "10.0 KiB");
        assert_eq!(human_bytes(20.48e6), "19.5 MiB");
        assert_eq!(human_bytes(300.0 * 1024.0 * 1024.0), "300 MiB");
        assert_eq!(human_bytes(-2048.0), "-2.0 KiB");
    }

    #[test]
    fn signs_rates_durations_and_counts() {
        assert_eq!(signed_bytes(2048.0), "+2.0 KiB");
        assert_eq!(signed_bytes(0.0), "+0 B");
        assert_eq!(signed_bytes(-10.0), "-10 B");
        assert_eq!(bytes_per_min(1024.0), "60.0 KiB/min");
        assert_eq!(human_secs(45.2), "45s");
        assert_eq!(human_secs(303.0), "5m03s");
        assert_eq!(human_secs(7500.0), "2h05m");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}

//! How answers are printed: borderless tables sized to the terminal, key/value blocks, human sizes,
//! times and durations, and the hub's JSON as is for `--json`.

use std::io::IsTerminal;

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde_json::Value;

/// Prints rows under upper-case headers, columns two spaces apart; on a terminal the widest columns
/// wrap to fit its width.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        return;
    }
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(headers.iter().map(|h| h.to_uppercase()).collect::<Vec<_>>());
    for row in rows {
        t.add_row(row);
    }
    if let Some(width) = terminal_width() {
        t.set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(width);
    } else {
        t.set_content_arrangement(ContentArrangement::Disabled);
    }
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
        c.set_cell_alignment(CellAlignment::Left);
    }
    for line in t.to_string().lines() {
        println!("{}", line.trim_end());
    }
}

/// Prints `key  value` lines, keys aligned; rows with an empty value are left out.
pub fn fields(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        println!("{k:<width$}  {v}");
    }
}

/// Prints a JSON answer for scripts (pretty, one document).
pub fn json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn terminal_width() -> Option<u16> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_, cols)| cols.max(40))
}

/// `1.5 GiB`, `512 B`.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// `1h 02m`, `3m 05s`, `42s`.
pub fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if secs >= 86_400 {
        format!("{}d {:02}h", secs / 86_400, h % 24)
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// A Unix-ms time relative to now: `5m 03s ago`, `in 12m 00s`, `just now`; empty for none.
pub fn ago(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return String::new();
    };
    ago_from(ms, chrono::Utc::now().timestamp_millis())
}

fn ago_from(ms: i64, now: i64) -> String {
    let secs = (now - ms) / 1000;
    if secs.abs() < 2 {
        "just now".into()
    } else if secs > 0 {
        format!("{} ago", duration(secs as u64))
    } else {
        format!("in {}", duration(secs.unsigned_abs()))
    }
}

/// A Unix-ms time as local date and time with the relative time: `2025-05-01 14:03:22 (5m 03s ago)`.
pub fn when(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return String::new();
    };
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => format!(
            "{} ({})",
            t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S"),
            ago(Some(ms))
        ),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(185), "3m 05s");
        assert_eq!(duration(3720), "1h 02m");
        assert_eq!(duration(90_000), "1d 01h");
        assert_eq!(ago_from(0, 1000), "just now");
        assert_eq!(ago_from(0, 303_000), "5m 03s ago");
        assert_eq!(ago_from(60_000, 0), "in 1m 00s");
        assert_eq!(ago(None), "");
    }
}

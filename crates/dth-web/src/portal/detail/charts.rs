//! The task page's charts, drawn as SVG on the server: throughput (bytes per second) and objects
//! per second over a time range, from the progress samples the hub keeps of each run
//! ([`dth_runtime::Hub::samples`]). This module computes the geometry (paths, ticks, labels);
//! `templates/detail/charts.html` writes the SVG with the catalog's words, so the axes read in
//! the page's language. No chart crate: a polyline over fixed buckets is all it takes.

use dth_model::Actor;
use dth_runtime::Hub;
use dth_store::RunSample;
use serde::Serialize;

use crate::portal::render::{format_bytes, format_number};

/// The ranges a chart can show: the query value, its length in ms, the catalog key of its name.
pub const RANGES: [(&str, i64, &str); 4] = [
    ("1h", 3_600_000, "detail.range.1h"),
    ("12h", 12 * 3_600_000, "detail.range.12h"),
    ("1d", 24 * 3_600_000, "detail.range.1d"),
    ("1w", 7 * 24 * 3_600_000, "detail.range.1w"),
];

/// Buckets across a chart's width: rates are averaged over each.
const BUCKETS: usize = 60;
/// Runs looked at for a range (the newest first).
const MAX_RUNS: u32 = 200;

/// The drawing area in SVG units: the whole, and the plot inside the axes.
pub const WIDTH: f64 = 560.0;
/// Height of the whole drawing.
pub const HEIGHT: f64 = 220.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;

/// A range's query value, clamped to a known one (`1h` by default).
pub fn range_of(q: &str) -> (&'static str, i64) {
    RANGES
        .iter()
        .find(|(name, _, _)| *name == q)
        .map_or(("1h", RANGES[0].1), |(name, ms, _)| (*name, *ms))
}

/// A tick on an axis: where, and its label.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Tick {
    /// Position in SVG units (x for the time axis, y for the value axis).
    pub at: f64,
    /// The value's label (`1.50 MiB/s`, `12`); for time ticks, minutes before now.
    pub label: String,
    /// Time ticks: minutes before now (0 is now).
    pub minutes_ago: i64,
}

/// One chart, ready to draw.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// The line of the main series (`M x y L x y …`); empty without data.
    pub line: String,
    /// The area under it, closed to the x axis.
    pub area: String,
    /// A second series (failed items per second on the objects chart); empty when all zero.
    pub line2: String,
    /// Value ticks, bottom to top.
    pub y_ticks: Vec<Tick>,
    /// Time ticks, left (oldest) to right (now).
    pub x_ticks: Vec<Tick>,
    /// The highest value, formatted like the ticks.
    pub peak: String,
    /// Whether any sample fell in the range.
    pub has_data: bool,
}

/// Both charts of a task over one range.
#[derive(Debug, Clone, Serialize)]
pub struct Charts {
    /// The range's query value (`1h`…).
    pub range: &'static str,
    /// Bytes per second.
    pub bytes: Chart,
    /// Objects (or images) per second, with failures as the second series.
    pub items: Chart,
    /// Drawing constants for the template.
    pub width: f64,
    /// Height of the drawing.
    pub height: f64,
    /// Left edge of the plot.
    pub left: f64,
    /// Right edge of the plot.
    pub right: f64,
    /// Top edge of the plot.
    pub top: f64,
    /// Bottom edge of the plot (the time axis).
    pub bottom: f64,
}

/// Reads the samples of the task's runs that overlap the range ending at `now` and draws both
/// charts.
pub async fn task_charts(
    hub: &Hub,
    actor: &Actor,
    task_id: &str,
    range: &str,
    now: i64,
) -> Result<Charts, dth_runtime::Error> {
    let (range, span) = range_of(range);
    let since = now - span;
    let mut runs = Vec::new();
    for run in hub.runs(actor, task_id, MAX_RUNS).await? {
        if run.ended_at.is_some_and(|e| e < since) {
            continue;
        }
        runs.push(hub.samples(actor, run.id, since).await?);
    }
    Ok(draw(&runs, since, now, range))
}

/// Per-bucket rates of bytes, items and failures from each run's samples (oldest first): the
/// growth between two samples of a run is put in the bucket of the later one.
fn rates(runs: &[Vec<RunSample>], since: i64, now: i64) -> [Vec<f64>; 3] {
    let span = (now - since).max(1) as f64;
    let bucket_ms = span / BUCKETS as f64;
    let mut sums = [vec![0.0; BUCKETS], vec![0.0; BUCKETS], vec![0.0; BUCKETS]];
    for samples in runs {
        for pair in samples.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.at < since || b.at > now {
                continue;
            }
            let i = (((b.at - since) as f64 / bucket_ms) as usize).min(BUCKETS - 1);
            sums[0][i] += b.bytes_done.saturating_sub(a.bytes_done) as f64;
            sums[1][i] += b.items_done.saturating_sub(a.items_done) as f64;
            sums[2][i] += b.items_failed.saturating_sub(a.items_failed) as f64;
        }
    }
    let per_s = bucket_ms / 1000.0;
    sums.map(|v| v.into_iter().map(|x| x / per_s).collect())
}

/// Both charts from samples.
fn draw(runs: &[Vec<RunSample>], since: i64, now: i64, range: &'static str) -> Charts {
    let has_data = runs.iter().any(|s| s.iter().any(|x| x.at >= since));
    let [bytes, items, failed] = rates(runs, since, now);
    let span_min = (now - since) / 60_000;
    let bytes_label = |v: f64| format!("{}/s", format_bytes(v));
    Charts {
        range,
        // At least 1,000 B/s tall: smaller tops would round their ticks to the same byte count.
        bytes: chart(&bytes, None, 1000.0, span_min, has_data, &bytes_label),
        items: chart(&items, Some(&failed), 1.0, span_min, has_data, &items_label),
        width: WIDTH,
        height: HEIGHT,
        left: LEFT,
        right: WIDTH - RIGHT,
        top: TOP,
        bottom: HEIGHT - BOTTOM,
    }
}

/// An item rate for an axis: whole numbers from 10 up, else one or two decimals.
fn items_label(v: f64) -> String {
    if v >= 10.0 {
        format_number(v.round() as i64)
    } else if v >= 1.0 || v == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A "nice" top for an axis: 1, 2 or 5 times a power of ten (of 1024 for bytes would read no
/// better), at least `max`.
fn nice_top(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|top| *top >= max)
        .unwrap_or(10.0 * magnitude)
}

/// One chart: the series scaled into the plot (its top at least `floor`), four value ticks, five
/// time ticks.
fn chart(
    values: &[f64],
    second: Option<&[f64]>,
    floor: f64,
    span_min: i64,
    has_data: bool,
    label: &dyn Fn(f64) -> String,
) -> Chart {
    let peak = values
        .iter()
        .chain(second.unwrap_or(&[]))
        .fold(0.0f64, |m, v| m.max(*v));
    let top = nice_top(peak.max(floor));
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    let x = |i: usize| x0 + (x1 - x0) * (i as f64 + 0.5) / values.len().max(1) as f64;
    let y = |v: f64| y0 - (y0 - y1) * (v / top);
    let path = |series: &[f64]| -> String {
        series
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "{}{:.1} {:.1}",
                    if i == 0 { "M" } else { " L" },
                    x(i),
                    y(*v)
                )
            })
            .collect()
    };
    let (line, area) = if has_data {
        let line = path(values);
        let area = format!(
            "{line} L{:.1} {y0:.1} L{:.1} {y0:.1} Z",
            x(values.len().saturating_sub(1)),
            x(0)
        );
        (line, area)
    } else {
        (String::new(), String::new())
    };
    let line2 = match second {
        Some(s) if has_data && s.iter().any(|v| *v > 0.0) => path(s),
        _ => String::new(),
    };
    let y_ticks = (0..=3)
        .map(|i| {
            let v = top * i as f64 / 3.0;
            Tick {
                at: y(v),
                label: label(v),
                minutes_ago: 0,
            }
        })
        .collect();
    // A tick a day over a week, else quarters (15 min, 3 h, 6 h).
    let divisions = if span_min > 2 * 24 * 60 { 7 } else { 4 };
    let x_ticks = (0..=divisions)
        .map(|i| {
            let ago = span_min * (divisions - i) / divisions;
            Tick {
                at: x0 + (x1 - x0) * i as f64 / divisions as f64,
                label: String::new(),
                minutes_ago: ago,
            }
        })
        .collect();
    Chart {
        line,
        area,
        line2,
        y_ticks,
        x_ticks,
        peak: label(peak),
        has_data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: i64, bytes: u64, items: u64, failed: u64) -> RunSample {
        RunSample {
            at,
            bytes_done: bytes,
            items_done: items,
            items_failed: failed,
        }
    }

    #[test]
    fn rates_are_growth_per_second_in_the_later_samples_bucket() {
        let hour = 3_600_000;
        // 60 buckets of a minute; 6 MiB and 60 items over one minute, then nothing.
        let run = vec![
            sample(0, 0, 0, 0),
            sample(30_000, 3 << 20, 30, 0),
            sample(60_000, 6 << 20, 60, 6),
            sample(hour, 6 << 20, 60, 6),
        ];
        let [bytes, items, failed] = rates(&[run], 0, hour);
        assert_eq!(bytes.len(), BUCKETS);
        assert!(
            (bytes[0] - (3 << 20) as f64 / 60.0).abs() < 1e-6,
            "{bytes:?}"
        );
        assert!((bytes[1] - (3 << 20) as f64 / 60.0).abs() < 1e-6);
        assert!((items[0] + items[1] - 1.0).abs() < 1e-9);
        assert!((failed[1] - 0.1).abs() < 1e-9);
        assert_eq!(bytes[BUCKETS - 1], 0.0);
    }

    #[test]
    fn samples_outside_the_range_are_left_out() {
        let run = vec![sample(-20_000, 0, 0, 0), sample(-10_000, 100, 1, 0)];
        let [bytes, _, _] = rates(&[run], 0, 3_600_000);
        assert!(bytes.iter().all(|b| *b == 0.0));
    }

    #[test]
    fn axes_top_out_at_a_round_value() {
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!(nice_top(3.2), 5.0);
        assert_eq!(nice_top(17.0), 20.0);
        assert_eq!(nice_top(1000.0), 1000.0);
        assert_eq!(nice_top(0.04), 0.05);
    }

    #[test]
    fn an_idle_bytes_chart_has_distinct_ticks() {
        let charts = draw(&[vec![sample(0, 0, 0, 0)]], 0, 3_600_000, "1h");
        let labels: Vec<&str> = charts
            .bytes
            .y_ticks
            .iter()
            .map(|t| t.label.as_str())
            .collect();
        let mut distinct = labels.clone();
        distinct.dedup();
        assert_eq!(labels, distinct, "{labels:?}");
    }

    #[test]
    fn a_chart_has_its_line_ticks_and_peak() {
        let run = vec![sample(0, 0, 0, 0), sample(60_000, 60 << 20, 60, 0)];
        let charts = draw(&[run], 0, 3_600_000, "1h");
        let c = &charts.bytes;
        assert!(c.has_data);
        assert!(c.line.starts_with('M'));
        assert_eq!(c.line.matches(" L").count(), BUCKETS - 1);
        assert!(c.area.ends_with('Z'));
        assert_eq!(c.peak, "1.00 MiB/s");
        assert_eq!(c.y_ticks.len(), 4);
        assert_eq!(c.y_ticks[0].label, "0 B/s");
        assert_eq!(
            c.x_ticks.iter().map(|t| t.minutes_ago).collect::<Vec<_>>(),
            [60, 45, 30, 15, 0]
        );
        // No failures: no second line.
        assert!(charts.items.line2.is_empty());
        let empty = draw(&[], 0, 3_600_000, "1h");
        assert!(!empty.bytes.has_data && empty.bytes.line.is_empty());
        assert_eq!(range_of("1w"), ("1w", 7 * 24 * 3_600_000));
        assert_eq!(range_of("bogus").0, "1h");
    }
}

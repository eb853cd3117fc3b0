//! The dashboard's hourly chart, as numbers an SVG template can place: no script, no library.

use crate::clock::Timestamp;

pub struct Segment {
    pub kind: &'static str,
    pub count: i64,
    pub y: i64,
    pub height: i64,
}

pub struct Bar {
    pub x: i64,
    pub label: String,
    /// Label this bar on the axis (every sixth hour).
    pub tick: bool,
    pub segments: Vec<Segment>,
}

pub struct Chart {
    pub width: i64,
    pub height: i64,
    pub bar_width: i64,
    pub bars: Vec<Bar>,
    pub peak: i64,
}

const HOURS: i64 = 24;
const KINDS: [&str; 3] = ["sent", "deferred", "failed"];

/// Stacked bars for the 24 hours ending at `now`, from (hour start, outcome, count) rows.
pub fn hourly(now: Timestamp, rows: &[(Timestamp, String, i64)]) -> Chart {
    let (height, step, bar_width) = (120, 20, 14);
    let first = (now / 3600 - (HOURS - 1)) * 3600;
    let count = |hour: Timestamp, kind: &str| -> i64 {
        rows.iter()
            .filter(|(h, k, _)| *h == hour && k == kind)
            .map(|(_, _, n)| *n)
            .sum()
    };
    let totals: Vec<i64> = (0..HOURS)
        .map(|i| KINDS.iter().map(|k| count(first + i * 3600, k)).sum())
        .collect();
    let peak = totals.iter().copied().max().unwrap_or(0);
    let scale = |n: i64| {
        if peak == 0 {
            0
        } else {
            (n * height + peak - 1) / peak
        }
    };
    let bars = (0..HOURS)
        .map(|i| {
            let hour = first + i * 3600;
            let mut top = height;
            let segments = KINDS
                .iter()
                .map(|kind| {
                    let n = count(hour, kind);
                    let h = scale(n);
                    top -= h;
                    Segment {
                        kind,
                        count: n,
                        y: top,
                        height: h,
                    }
                })
                .filter(|s| s.count > 0)
                .collect();
            Bar {
                x: i * step + 3,
                label: format!("{:02}:00", (hour / 3600) % 24),
                tick: i % 6 == 0,
                segments,
            }
        })
        .collect();
    Chart {
        width: HOURS * step,
        height,
        bar_width,
        bars,
        peak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_from_the_bottom_and_the_peak_fills_the_height() {
        let now = 100 * 3600 + 10;
        let rows = vec![
            (100 * 3600, "sent".to_string(), 6),
            (100 * 3600, "failed".to_string(), 2),
            (99 * 3600, "deferred".to_string(), 4),
        ];
        let chart = hourly(now, &rows);
        assert_eq!(chart.bars.len(), 24);
        assert_eq!(chart.peak, 8);
        let last = chart.bars.last().unwrap();
        assert_eq!(last.label, "04:00");
        let heights: Vec<(&str, i64, i64)> = last
            .segments
            .iter()
            .map(|s| (s.kind, s.y, s.height))
            .collect();
        assert_eq!(heights, [("sent", 30, 90), ("failed", 0, 30)]);
        assert_eq!(chart.bars[22].segments[0].height, 60);
        assert!(chart.bars[0].segments.is_empty());
        assert!(chart.bars[0].tick && !chart.bars[1].tick);
    }
}

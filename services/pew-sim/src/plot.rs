//! A dependency-free SVG chart of a year simulation: state of charge, harvested solar power and
//! load power, one panel each, as daily min–max bands with the daily mean drawn over them.

use std::fmt::Write as _;

use crate::calendar::DAYS_BEFORE_MONTH;
use crate::year::{Band, DaySummary, YearReport};

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const FIRST_PANEL_TOP: f64 = 80.0;
const PANEL_HEIGHT: f64 = 180.0;
const PANEL_GAP: f64 = 45.0;
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One panel of the chart.
struct Panel {
    label: &'static str,
    color: &'static str,
    axis: Axis,
    band: fn(&DaySummary) -> Band,
}

/// A y axis from zero to `max` with a tick every `step`.
struct Axis {
    max: f64,
    step: f64,
}

impl Axis {
    /// An axis covering `0..=value` in four to ten round steps (1, 2 or 5 × 10ⁿ).
    fn covering(value: f64) -> Self {
        let step = nice_ceiling(value / 5.0);
        let steps = (value / step).ceil().max(1.0);
        Self {
            max: steps * step,
            step,
        }
    }
}

/// Renders the chart, headed by `title`.
pub fn render_svg(report: &YearReport, title: &str) -> String {
    let max_of = |band: fn(&DaySummary) -> Band| {
        report
            .days
            .iter()
            .map(|day| band(day).max)
            .fold(0.0, f64::max)
    };
    let solar = |day: &DaySummary| day.solar_w;
    let load = |day: &DaySummary| day.load_w;
    let panels = [
        Panel {
            label: "State of charge, true (%)",
            color: "#2e7d32",
            axis: Axis {
                max: 100.0,
                step: 25.0,
            },
            band: |day| day.soc_pct,
        },
        Panel {
            label: "Solar harvested (W)",
            color: "#ef8f00",
            axis: Axis::covering(max_of(solar)),
            band: solar,
        },
        Panel {
            label: "Load supplied (W)",
            color: "#1565c0",
            axis: Axis::covering(max_of(load)),
            band: load,
        },
    ];
    let height = FIRST_PANEL_TOP + panels.len() as f64 * (PANEL_HEIGHT + PANEL_GAP) + 10.0;

    let mut svg = String::with_capacity(64 * 1024);
    // Writing to a String cannot fail; results are discarded for that reason only.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    draw_legend(&mut svg, &panels);
    for (index, panel) in panels.iter().enumerate() {
        let top = FIRST_PANEL_TOP + index as f64 * (PANEL_HEIGHT + PANEL_GAP);
        draw_panel(&mut svg, panel, &report.days, top);
    }
    svg.push_str("</svg>\n");
    svg
}

fn draw_legend(svg: &mut String, panels: &[Panel]) {
    let mut x = LEFT;
    let y = 48.0;
    for panel in panels {
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{}" width="22" height="10" fill="{}" fill-opacity="0.25"/><line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="1.5"/><text x="{}" y="{}">{}</text>"#,
            y - 5.0,
            panel.color,
            x + 22.0,
            panel.color,
            x + 28.0,
            y + 4.0,
            escape(panel.label)
        );
        x += 210.0;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{x}" y="{}" fill="#555">shaded: daily min–max · line: daily mean</text>"##,
        y + 4.0
    );
}

fn draw_panel(svg: &mut String, panel: &Panel, days: &[DaySummary], top: f64) {
    let plot_width = WIDTH - LEFT - RIGHT;
    let bottom = top + PANEL_HEIGHT;
    let day_count = days.len().max(1) as f64;
    let x_of = |day: f64| LEFT + day / day_count * plot_width;
    let y_of = |value: f64| bottom - (value / panel.axis.max).clamp(0.0, 1.0) * PANEL_HEIGHT;

    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        top - 8.0,
        escape(panel.label)
    );
    // Horizontal grid and y labels at every tick.
    let ticks = (panel.axis.max / panel.axis.step).round() as u32;
    for tick in 0..=ticks {
        let value = panel.axis.step * f64::from(tick);
        let y = y_of(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_width,
            LEFT - 6.0,
            y + 4.0,
            format_tick(value)
        );
    }
    // Month boundaries and labels (only meaningful for a run starting on January 1).
    for (month, first_day) in MONTHS.iter().zip(DAYS_BEFORE_MONTH) {
        let day = first_day as f64;
        if day >= day_count {
            break;
        }
        let x = x_of(day);
        let label_x = x_of((day + 15.0).min(day_count - 0.5));
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#ccc"/><text x="{label_x:.1}" y="{}" text-anchor="middle">{month}</text>"##,
            bottom + 5.0,
            bottom + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL_HEIGHT}" fill="none" stroke="#888"/>"##
    );

    let bands: Vec<Band> = days.iter().map(panel.band).collect();
    let centre = |index: usize| x_of(index as f64 + 0.5);
    let mut band_points = String::new();
    for (index, band) in bands.iter().enumerate() {
        let _ = write!(band_points, "{:.1},{:.1} ", centre(index), y_of(band.max));
    }
    for (index, band) in bands.iter().enumerate().rev() {
        let _ = write!(band_points, "{:.1},{:.1} ", centre(index), y_of(band.min));
    }
    let mut mean_points = String::new();
    for (index, band) in bands.iter().enumerate() {
        let _ = write!(mean_points, "{:.1},{:.1} ", centre(index), y_of(band.mean));
    }
    let _ = writeln!(
        svg,
        r#"<polygon points="{}" fill="{}" fill-opacity="0.25" stroke="none"/>"#,
        band_points.trim_end(),
        panel.color
    );
    let _ = writeln!(
        svg,
        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.2"/>"#,
        mean_points.trim_end(),
        panel.color
    );
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `value` (1 for nothing to show), so axes end on
/// round numbers.
fn nice_ceiling(value: f64) -> f64 {
    if !value.is_finite() || value <= 0.0 {
        return 1.0;
    }
    let decade = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * decade)
        .find(|&candidate| candidate >= value)
        .unwrap_or(10.0 * decade)
}

/// Tick values are multiples of 1, 2 or 5 × 10ⁿ: print as many decimals as the step needs.
fn format_tick(value: f64) -> String {
    let mut decimals = 0;
    while decimals < 3 && (value * 10f64.powi(decimals)).fract().abs() > 1e-9 {
        decimals += 1;
    }
    format!("{value:.prec$}", prec = decimals as usize)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceiling_rounds_up_to_1_2_5_steps() {
        assert_eq!(nice_ceiling(43.2), 50.0);
        assert_eq!(nice_ceiling(5.0), 5.0);
        assert_eq!(nice_ceiling(5.1), 10.0);
        assert_eq!(nice_ceiling(0.13), 0.2);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn axes_end_on_a_round_tick_above_the_data() {
        let axis = Axis::covering(33.0);
        assert_eq!((axis.max, axis.step), (40.0, 10.0));
        let axis = Axis::covering(5.0);
        assert_eq!((axis.max, axis.step), (5.0, 1.0));
        let axis = Axis::covering(0.3);
        assert!((axis.max - 0.3).abs() < 1e-12 && (axis.step - 0.1).abs() < 1e-12);
    }

    #[test]
    fn tick_labels_carry_only_needed_decimals() {
        assert_eq!(format_tick(40.0), "40");
        assert_eq!(format_tick(2.5), "2.5");
        assert_eq!(format_tick(0.2), "0.2");
    }

    #[test]
    fn titles_are_escaped() {
        assert_eq!(escape("a<b & c>"), "a&lt;b &amp; c&gt;");
    }
}

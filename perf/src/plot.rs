//! `vsperf plot-timeline`: draws the `timeline` of a `vsperf run --timeline-ms N
//! --json` report as an SVG line chart (one line per port, throughput in kpps over
//! time, optional vertical event markers such as "link down").
//!
//! # Design
//! SVG is written by hand: it needs no font or image library on the machine (a bitmap
//! backend would need a TrueType font and a rasteriser for the axis labels), the file
//! is a few tens of kilobytes, and it renders in browsers and on GitHub. Everything
//! here is pure: [`series_from_report`] turns a report into rates and [`svg`] turns
//! rates into text, so both are unit-tested without DPDK.
//!
//! # Invariants
//! - A series' rate for an interval is `count / (t_ms - previous t_ms)` (kpps), so an
//!   interval shortened by the end of the run is not drawn as a dip.
//! - [`svg`] never panics: empty series, a single point, zero or non-finite values
//!   produce a valid (possibly empty) chart.

use std::fmt::Write;

/// One line of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(seconds, kpps)` points in time order.
    pub points: Vec<(f64, f64)>,
}

/// A vertical marker at a time, with a caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Seconds from the start of traffic.
    pub t_s: f64,
    /// Caption.
    pub text: String,
}

/// Rates (kpps) of one port's `timeline` (`[t_ms, rx_pkts_in_interval]` pairs).
pub fn rates(timeline: &[[u64; 2]]) -> Vec<(f64, f64)> {
    let mut prev = 0u64;
    let mut out = Vec::with_capacity(timeline.len());
    for &[t, n] in timeline {
        let dt = t.saturating_sub(prev);
        if dt > 0 {
            // packets per ms == kpps
            out.push((t as f64 / 1000.0, n as f64 / dt as f64));
        }
        prev = t;
    }
    out
}

/// The series of the ports `ports` (indices) of a vsperf JSON report, labelled with
/// `labels` (falling back to the port's devargs).
pub fn series_from_report(
    report: &serde_json::Value,
    ports: &[usize],
    labels: &[String],
) -> Result<Vec<Series>, String> {
    let all = report["ports"]
        .as_array()
        .ok_or("the report has no \"ports\" array")?;
    let mut out = Vec::new();
    for (k, &i) in ports.iter().enumerate() {
        let p = all
            .get(i)
            .ok_or_else(|| format!("the report has no port {i}"))?;
        let tl: Vec<[u64; 2]> = serde_json::from_value(p["timeline"].clone())
            .map_err(|_| format!("port {i} has no timeline (run with --timeline-ms)"))?;
        let label = labels
            .get(k)
            .cloned()
            .unwrap_or_else(|| p["devargs"].as_str().unwrap_or("?").to_string());
        out.push(Series {
            label,
            points: rates(&tl),
        });
    }
    Ok(out)
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" tick step for a range: 1, 2 or 5 times a power of ten, about `n` ticks.
fn tick_step(range: f64, n: f64) -> f64 {
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let raw = range / n;
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let k = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    k * p
}

/// Renders the chart (`width` × `height` pixels) as an SVG document.
pub fn svg(title: &str, series: &[Series], markers: &[Marker], width: u32, height: u32) -> String {
    let (w, h) = (width.max(200) as f64, height.max(150) as f64);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let finite = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
    let t_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| finite(p.0)))
        .chain(markers.iter().map(|m| finite(m.t_s)))
        .fold(0.0, f64::max)
        .max(0.001);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| finite(p.1)))
        .fold(0.0, f64::max);
    let y_step = tick_step(y_max.max(1.0) * 1.1, 5.0);
    let y_top = (y_max.max(1.0) * 1.1 / y_step).ceil() * y_step;
    let t_step = tick_step(t_max, 10.0);
    let t_top = (t_max / t_step).ceil() * t_step;
    let x = |t: f64| left + finite(t) / t_top * pw;
    let y = |v: f64| top + ph - finite(v) / y_top * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    // grid and axes
    let mut v = 0.0;
    while v <= y_top + y_step / 2.0 {
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left + pw,
            left - 6.0,
            y(v) + 4.0,
            v,
            yy = y(v)
        );
        v += y_step;
    }
    let mut t = 0.0;
    while t <= t_top + t_step / 2.0 {
        let _ = writeln!(
            s,
            "<line x1=\"{xx:.1}\" y1=\"{top}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            top + ph,
            top + ph + 16.0,
            (t * 1000.0).round() / 1000.0,
            xx = x(t)
        );
        t += t_step;
    }
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since start of traffic (s)</text>"#,
        left + pw / 2.0,
        h - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">received (kpps)</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for m in markers {
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#555" stroke-dasharray="4,3"/><text x="{:.1}" y="{:.1}" fill="#555">{}</text>"##,
            top + ph,
            x(m.t_s) + 3.0,
            top + 14.0,
            esc(&m.text),
            xx = x(m.t_s)
        );
    }
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts = String::new();
        for &(t, v) in &ser.points {
            let _ = write!(pts, "{:.1},{:.1} ", x(t), y(v));
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            pts.trim_end()
        );
        let ly = top + 14.0 + 16.0 * (i as f64 + 1.0);
        let lx = left + pw - 190.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 4.0,
            lx + 20.0,
            ly - 4.0,
            lx + 26.0,
            esc(&ser.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_divide_by_the_real_interval() {
        // 10 ms intervals of 2000 frames = 200 kpps; the last, 5 ms long, too.
        let r = rates(&[[10, 2000], [20, 2000], [25, 1000]]);
        assert_eq!(r, vec![(0.01, 200.0), (0.02, 200.0), (0.025, 200.0)]);
        // A repeated timestamp (zero-length interval) is skipped, not divided by zero.
        assert_eq!(rates(&[[10, 5], [10, 7]]), vec![(0.01, 0.5)]);
        assert!(rates(&[]).is_empty());
    }

    #[test]
    fn series_come_from_the_report_ports() {
        let r = serde_json::json!({"ports": [
            {"devargs": "a", "timeline": [[10, 100]]},
            {"devargs": "b", "timeline": [[10, 300], [20, 0]]},
            {"devargs": "c"}]});
        let s = series_from_report(&r, &[1, 0], &["B".into()]).unwrap();
        assert_eq!(s[0].label, "B");
        assert_eq!(s[0].points, vec![(0.01, 30.0), (0.02, 0.0)]);
        assert_eq!(s[1].label, "a");
        assert!(series_from_report(&r, &[2], &[]).is_err());
        assert!(series_from_report(&r, &[7], &[]).is_err());
        assert!(series_from_report(&serde_json::json!({}), &[0], &[]).is_err());
    }

    #[test]
    fn svg_scales_points_into_the_plot_area() {
        let s = vec![Series {
            label: "nic<0>".into(),
            points: vec![(0.0, 0.0), (1.0, 100.0)],
        }];
        let out = svg(
            "t",
            &s,
            &[Marker {
                t_s: 0.5,
                text: "down".into(),
            }],
            800,
            400,
        );
        assert!(out.starts_with("<svg"));
        assert!(out.trim_end().ends_with("</svg>"));
        assert!(out.contains("nic&lt;0&gt;"), "labels are escaped");
        // x: 70 + 0 .. 70 + 710 (t_top = 1); y: 100 kpps -> 110 with headroom, step 50,
        // y_top = 150: 40 + 310 - 100/150*310 = 143.3
        assert!(out.contains(r#"points="70.0,350.0 780.0,143.3""#), "{out}");
        // The marker sits half way.
        assert!(out.contains(r#"x1="425.0""#), "{out}");
    }

    #[test]
    fn svg_never_panics_on_degenerate_input() {
        for pts in [
            vec![],
            vec![(0.0, 0.0)],
            vec![(f64::NAN, f64::INFINITY), (-1.0, -5.0)],
        ] {
            let out = svg(
                "",
                &[Series {
                    label: String::new(),
                    points: pts,
                }],
                &[],
                0,
                0,
            );
            assert!(out.contains("</svg>"));
            assert!(!out.contains("NaN") && !out.contains("inf"), "{out}");
        }
        assert!(svg("", &[], &[], 640, 480).contains("</svg>"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(6.0, 10.0), 1.0);
        assert_eq!(tick_step(220.0, 5.0), 50.0);
        assert_eq!(tick_step(0.0, 5.0), 1.0);
    }
}

//! The chart: speedup over sequential Rust per workload and backend, grouped bars on a
//! logarithmic axis (so that 0.01× and 2× are both visible), as a plain SVG file.

use std::fmt::Write;

use super::{BACKENDS, Report};

const COLORS: [&str; 6] = [
    "#9e9e9e", "#1f77b4", "#d62728", "#2ca02c", "#aec7e8", "#ff9896",
];

pub fn render(r: &Report) -> String {
    let (w, h) = (960.0, 480.0);
    let (left, right, top, bottom) = (70.0, 20.0, 60.0, 90.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    // Decades covered by the data, at least 0.01× .. 10×.
    let speedups = r
        .workloads
        .iter()
        .flat_map(|e| e.results.iter().map(|x| x.speedup));
    let (mut lo, mut hi) = (-2.0f64, 1.0f64);
    for s in speedups.filter(|s| s.is_finite() && *s > 0.0) {
        lo = lo.min(s.log10().floor()).max(-3.0); // below 0.001×, bars stop at the axis
        hi = hi.max(s.log10().ceil());
    }
    let y = |s: f64| top + plot_h * (hi - s.max(10f64.powf(lo)).log10()) / (hi - lo);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="16">Speedup over sequential Rust ({} CPUs, median of {} runs{})</text>"#,
        w / 2.0,
        r.cpus,
        r.reps,
        if r.quick { ", quick" } else { "" }
    );
    // Grid: one line per decade.
    let mut d = lo;
    while d <= hi {
        let yy = y(10f64.powf(d));
        let label = 10f64.powf(d);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="{}" />"##,
            left + plot_w,
            if d == 0.0 { "#000" } else { "#ddd" }
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}×</text>"#,
            left - 6.0,
            yy + 4.0,
            if label >= 1.0 {
                format!("{label:.0}")
            } else {
                format!("{label}")
            }
        );
        d += 1.0;
    }
    let groups = r.workloads.len().max(1) as f64;
    let group_w = plot_w / groups;
    let bar_w = group_w * 0.8 / BACKENDS.len() as f64;
    for (g, e) in r.workloads.iter().enumerate() {
        let x0 = left + group_w * g as f64 + group_w * 0.1;
        for (b, backend) in BACKENDS.iter().enumerate() {
            let Some(row) = e.results.iter().find(|x| x.backend == *backend) else {
                continue;
            };
            let (y1, y0) = (y(row.speedup), y(1.0));
            let (ya, hb) = if y1 < y0 {
                (y1, y0 - y1)
            } else {
                (y0, y1 - y0)
            };
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{ya:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {:.3}×</title></rect>"#,
                x0 + bar_w * b as f64,
                bar_w * 0.9,
                hb.max(0.5),
                COLORS[b],
                backend,
                row.speedup
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + group_w * 0.4,
            top + plot_h + 18.0,
            e.title
        );
    }
    // Legend.
    for (b, backend) in BACKENDS.iter().enumerate() {
        let x = left + 150.0 * (b % 6) as f64;
        let yy = h - 30.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{backend}</text>"#,
            yy - 10.0,
            COLORS[b],
            x + 16.0,
            yy
        );
    }
    svg.push_str("</svg>\n");
    svg
}

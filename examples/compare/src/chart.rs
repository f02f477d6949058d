//! The chart: speedup over sequential Rust per workload and backend, grouped bars on a
//! logarithmic axis (so that 0.0001× and 6× are both visible), as a plain SVG file. Every
//! bar carries its value as text, and a whisker for the spread of the runs; each group says
//! how long sequential Rust took.

use std::fmt::Write;

use super::{BACKENDS, Report, fmt_ratio, fmt_s};

/// One per backend, in the order of `BACKENDS` (sequential's is unused: it is the 1× line).
const COLORS: [&str; 6] = [
    "#9e9e9e", "#1f77b4", "#d62728", "#2ca02c", "#aec7e8", "#ff9896",
];

/// Characters of a value label, at most ("0.000055×"), and the room one takes.
const LABEL_ROOM: f64 = 9.0 * 6.6 + 6.0;

pub fn render(r: &Report) -> String {
    let (w, h) = (1000.0, 600.0);
    let (left, right, top, bottom) = (64.0, 16.0, 64.0, 120.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    // The decades covered by the bars and their whiskers (1× included) fill the plot but for
    // room for a label beyond the longest bars, up and down.
    let (mut smallest, mut largest) = (1.0f64, 1.0f64);
    for e in &r.workloads {
        for x in &e.results {
            let (lo, hi) = spread(r, &e.key, x);
            for s in [lo, hi, x.speedup] {
                if s.is_finite() && s > 0.0 {
                    smallest = smallest.min(s);
                    largest = largest.max(s);
                }
            }
        }
    }
    let (log_lo, log_hi) = (smallest.log10().min(-0.5), largest.log10().max(0.5));
    let scale = (plot_h - 2.0 * LABEL_ROOM) / (log_hi - log_lo); // pixels per decade
    let (lo, hi) = (
        log_lo - LABEL_ROOM / scale, // the axis's ends, in decades
        log_hi + LABEL_ROOM / scale,
    );
    let y = |s: f64| {
        let l = if s > 0.0 { s.log10().clamp(lo, hi) } else { lo };
        top + (hi - l) * scale
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
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
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="44" text-anchor="middle" fill="#555">bars and values: median speedup (higher is faster, log scale); whiskers: fastest and slowest run</text>"##,
        w / 2.0,
    );
    // Grid: one line per decade; the black one is sequential Rust (1×).
    let mut d = lo.ceil();
    while d <= hi {
        let yy = y(10f64.powf(d));
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="{}"/>"##,
            left + plot_w,
            if d == 0.0 { "#000" } else { "#ddd" }
        );
        let label = match d as i32 {
            d @ 0..=4 => format!("{}×", 10u32.pow(d as u32)),
            d @ -3..0 => format!("{:.*}×", (-d) as usize, 10f64.powi(d)),
            d => format!("10{}×", superscript(d)),
        };
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{label}</text>"#,
            left - 6.0,
            yy + 4.0,
        );
        d += 1.0;
    }
    let one = y(1.0);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">sequential</text>"#,
        left + plot_w - 2.0,
        one - 4.0
    );
    // Sequential Rust is the 1× line: no bar of its own.
    let shown = &BACKENDS[1..];
    let groups = r.workloads.len().max(1) as f64;
    let group_w = plot_w / groups;
    let bar_w = group_w * 0.8 / shown.len() as f64;
    for (g, e) in r.workloads.iter().enumerate() {
        let x0 = left + group_w * g as f64 + group_w * 0.1;
        for (b, backend) in shown.iter().enumerate() {
            let Some(row) = e.results.iter().find(|x| x.backend == *backend) else {
                continue;
            };
            let x = x0 + bar_w * b as f64;
            let mid = x + bar_w * 0.45;
            let end = y(row.speedup);
            let (ya, hb) = if end < one {
                (end, one - end)
            } else {
                (one, end - one)
            };
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{ya:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{backend}: {}, median {}</title></rect>"#,
                bar_w * 0.9,
                hb.max(1.0),
                COLORS[b + 1],
                fmt_ratio(row.speedup),
                fmt_s(row.median_wall_s),
            );
            // The spread: from the slowest run's speedup to the fastest's.
            let (slow, fast) = spread(r, &e.key, row);
            let (y_fast, y_slow) = (y(fast), y(slow));
            let _ = writeln!(
                svg,
                r##"<line x1="{mid:.1}" x2="{mid:.1}" y1="{y_fast:.1}" y2="{y_slow:.1}" stroke="#333"/>"##
            );
            // The value, written along the bar beyond its end (and beyond the whisker).
            let label = fmt_ratio(row.speedup);
            if row.speedup >= 1.0 {
                let at = y_fast.min(end) - 4.0;
                let _ = writeln!(
                    svg,
                    r#"<text transform="translate({:.1} {at:.1}) rotate(-90)" text-anchor="start">{label}</text>"#,
                    mid + 4.0
                );
            } else {
                let at = y_slow.max(end) + 4.0;
                let _ = writeln!(
                    svg,
                    r#"<text transform="translate({:.1} {at:.1}) rotate(-90)" text-anchor="end">{label}</text>"#,
                    mid + 4.0
                );
            }
        }
        let cx = x0 + group_w * 0.4;
        let mut line_y = top + plot_h + 18.0;
        for line in wrap(&e.title, 20) {
            let _ = writeln!(
                svg,
                r#"<text x="{cx:.1}" y="{line_y:.1}" text-anchor="middle" font-weight="bold">{line}</text>"#,
            );
            line_y += 15.0;
        }
        if let Some(seq) = e.results.iter().find(|x| x.backend == "sequential") {
            let _ = writeln!(
                svg,
                r##"<text x="{cx:.1}" y="{line_y:.1}" text-anchor="middle" fill="#555">sequential: {}</text>"##,
                fmt_s(seq.median_wall_s)
            );
        }
    }
    // Legend.
    for (b, backend) in shown.iter().enumerate() {
        let x = left + 10.0 + (plot_w / shown.len() as f64) * b as f64;
        let yy = h - 20.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{}">{backend}</text>"#,
            yy - 10.0,
            COLORS[b + 1],
            x + 16.0,
            yy
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The speedups of a backend's slowest and fastest runs (sequential Rust's median over each
/// run's time).
fn spread(r: &Report, key: &str, row: &super::Row) -> (f64, f64) {
    let seq = r
        .workloads
        .iter()
        .find(|e| e.key == key)
        .and_then(|e| e.results.iter().find(|x| x.backend == "sequential"))
        .map_or(f64::NAN, |s| s.median_wall_s);
    (seq / row.max_wall_s, seq / row.min_wall_s)
}

/// `-5` as `⁻⁵`.
fn superscript(n: i32) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let mut out = String::new();
    if n < 0 {
        out.push('⁻');
    }
    for c in n.unsigned_abs().to_string().chars() {
        out.push(DIGITS[c.to_digit(10).unwrap_or(0) as usize]);
    }
    out
}

/// Words in lines of at most `width` characters (a longer word has a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

//! BENCHMARKS.svg: each contender's speed relative to tarpc (for the
//! streaming workloads, to tonic), one group of bars per workload.

use std::fmt::Write as _;

use crate::lineup::Contender;
use crate::workloads::Workload;

/// One group of bars: each contender's ratio to the workload's reference
/// (tarpc, or tonic for the streaming workloads) on one workload.
pub(super) type Bars = (Workload, Vec<(Contender, Option<f64>)>);

const WIDTH: f64 = 860.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 60.0;
const LEGEND_ROW: f64 = 18.0;

/// The chart of `groups`; `lineup` gives the legend and the bar width (the
/// widest group it allows), so that bars keep one width across groups.
pub(super) fn svg(groups: &[Bars], lineup: &[Contender], subtitle: &str) -> String {
    let legend = legend_rows(lineup);
    let height = 420.0 + LEGEND_ROW * (legend.len().max(1) - 1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - BOTTOM - LEGEND_ROW * (legend.len().max(1) - 1) as f64;
    let max_ratio = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().filter_map(|b| b.1))
        .fold(1.0f64, f64::max);
    let y_max = ((max_ratio * 1.15) * 2.0).ceil() / 2.0;
    let y = |r: f64| TOP + plot_h * (1.0 - r / y_max);
    let (plain, streams) = (
        groups.iter().any(|(w, _)| !w.streaming()),
        groups.iter().any(|(w, _)| w.streaming()),
    );
    let reference = match (plain, streams) {
        (true, true) => "tarpc 0.38 (streaming: tonic 0.14)",
        (false, true) => "tonic 0.14",
        _ => "tarpc 0.38",
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Speed relative to {reference} in the same run (higher is better)</text><text x="{}" y="40" text-anchor="middle" fill="#555">{subtitle}</text>"##,
        WIDTH / 2.0,
        WIDTH / 2.0
    );
    // Grid and axis.
    let step = if y_max > 6.0 { 1.0 } else { 0.5 };
    let mut r = 0.0;
    while r <= y_max + 1e-9 {
        let yy = y(r);
        let one = (r - 1.0).abs() < 1e-9;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="{}" stroke-width="{}"/><text x="{}" y="{:.1}" text-anchor="end">{r:.1}×</text>"##,
            WIDTH - RIGHT,
            if one { "#333" } else { "#ddd" },
            if one { 1.5 } else { 1.0 },
            LEFT - 6.0,
            yy + 4.0
        );
        r += step;
    }
    let group_w = plot_w / groups.len().max(1) as f64;
    let bar_w = group_w * 0.8 / lineup.len().max(1) as f64;
    let axis = y(0.0);
    for (gi, (w, bars)) in groups.iter().enumerate() {
        let gx = LEFT + group_w * gi as f64;
        let offset = (group_w - bar_w * bars.len() as f64) / 2.0;
        for (bi, &(c, ratio)) in bars.iter().enumerate() {
            let x = gx + offset + bar_w * bi as f64;
            bar(&mut s, x, bar_w, axis, ratio.map(|r| (r, y(r))), c, *w);
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            gx + group_w / 2.0,
            axis + 18.0,
            w.short()
        );
    }
    for (row, items) in legend.iter().enumerate() {
        let ly = height - 24.0 - LEGEND_ROW * (legend.len() - 1 - row) as f64;
        for &(lx, c) in items {
            let _ = writeln!(
                s,
                r#"<rect x="{lx:.1}" y="{ly:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                c.color(),
                lx + 16.0,
                ly + 10.0,
                c.name()
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// One bar (`ratio`: the ratio and its height on the axis), or "n/a".
fn bar(
    s: &mut String,
    x: f64,
    bar_w: f64,
    axis: f64,
    ratio: Option<(f64, f64)>,
    c: Contender,
    w: Workload,
) {
    match ratio {
        Some((r, top)) => {
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {r:.2}×</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{r:.2}</text>"#,
                bar_w - 2.0,
                axis - top,
                c.color(),
                c.name(),
                w.name(),
                x + (bar_w - 2.0) / 2.0,
                top - 3.0
            );
        }
        None => {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">n/a</text>"#,
                x + bar_w / 2.0,
                axis - 3.0
            );
        }
    }
}

/// The legend's entries with their x, in rows that fit the width.
fn legend_rows(lineup: &[Contender]) -> Vec<Vec<(f64, Contender)>> {
    let mut rows: Vec<Vec<(f64, Contender)>> = vec![Vec::new()];
    let mut lx = LEFT;
    for &c in lineup {
        let item_w = 40.0 + 8.0 * c.name().len() as f64;
        if lx + item_w > WIDTH - RIGHT && lx > LEFT {
            rows.push(Vec::new());
            lx = LEFT;
        }
        rows.last_mut().expect("a row").push((lx, c));
        lx += item_w;
    }
    rows
}

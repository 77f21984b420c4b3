//! A small, dependency-free SVG line chart (perplexity vs sparsity, metric vs fraction pruned,
//! dose–response): self-contained files that render in a browser, a README or the page.

use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// `(x, y)` in drawing order; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// `(x, low, high)`: a shaded band around the line (e.g. ± one standard deviation over
    /// seeds); empty for none.
    pub spread: Vec<(f64, f64, f64)>,
}

/// A line chart with labelled axes and a legend.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Logarithmic y axis (perplexities span orders of magnitude once pruning breaks a model).
    pub log_y: bool,
    pub series: Vec<Series>,
    /// A dashed horizontal line with a label (e.g. the dense model's perplexity).
    pub reference: Option<(String, f64)>,
}

/// Colour-blind-safe palette (Okabe–Ito).
const COLOURS: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
];
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 56.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// About five round tick values covering `[lo, hi]`.
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(f64::EPSILON);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * magnitude);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// 1, 2 and 5 times the powers of ten whose log10 lies in `[lo, hi]` (thinned to 1 and 10 when
/// the range spans many decades).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mantissas: &[f64] = if hi - lo > 4.0 {
        &[1.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    let mut out = Vec::new();
    for decade in lo.floor() as i32..=hi.ceil() as i32 {
        for m in mantissas {
            let v = m * 10f64.powi(decade);
            if (lo..=hi).contains(&v.log10()) {
                out.push(v);
            }
        }
    }
    out
}

fn format_tick(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-2) {
        format!("{v:.0e}")
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl LineChart {
    /// The chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let finite =
            |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0);
        let points: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| {
                let band = s.spread.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]);
                s.points.iter().copied().chain(band).filter(finite)
            })
            .chain(self.reference.iter().map(|(_, y)| (f64::NAN, *y)))
            .collect();
        let fy = |y: f64| if self.log_y { y.log10() } else { y };
        let xs = points.iter().map(|p| p.0).filter(|x| x.is_finite());
        let (mut x0, mut x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let ys = points.iter().map(|p| fy(p.1)).filter(|y| y.is_finite());
        let (mut y0, mut y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
        if x0 > x1 {
            (x0, x1) = (0.0, 1.0);
        }
        if y0 > y1 {
            (y0, y1) = (0.0, 1.0);
        }
        if x1 - x0 < 1e-12 {
            x1 = x0 + 1.0;
        }
        let pad = ((y1 - y0) * 0.05).max(if self.log_y { 0.05 } else { 1e-9 });
        (y0, y1) = (y0 - pad, y1 + pad);
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP + ph - (fy(y) - y0) / (y1 - y0) * ph;

        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(
            svg,
            r##"<rect width="100%" height="100%" fill="#fff"/><text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"##,
            LEFT + pw / 2.0,
            escape(&self.title)
        );
        // Grid and ticks.
        for t in linear_ticks(x0, x1) {
            let x = sx(t);
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 16.0,
                format_tick(t)
            );
        }
        let y_ticks: Vec<f64> = if self.log_y {
            log_ticks(y0, y1)
        } else {
            linear_ticks(y0, y1)
        };
        for t in y_ticks {
            let y = sy(t);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                format_tick(t)
            );
        }
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}{}</text>"##,
            LEFT + pw / 2.0,
            HEIGHT - 14.0,
            escape(&self.x_label),
            TOP + ph / 2.0,
            escape(&self.y_label),
            if self.log_y { " (log scale)" } else { "" }
        );
        if let Some((label, value)) = &self.reference {
            let y = sy(*value);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#555" stroke-dasharray="5 4"/><text x="{:.1}" y="{:.1}" fill="#555">{}</text>"##,
                LEFT + pw,
                LEFT + 6.0,
                y - 5.0,
                escape(label)
            );
        }
        // Lines, markers and the legend.
        for (i, s) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let band: Vec<(f64, f64, f64)> = s
                .spread
                .iter()
                .copied()
                .filter(|&(x, lo, hi)| finite(&(x, lo)) && finite(&(x, hi)))
                .collect();
            if band.len() > 1 {
                let outline: Vec<String> = band
                    .iter()
                    .map(|&(x, lo, _)| (x, lo))
                    .chain(band.iter().rev().map(|&(x, _, hi)| (x, hi)))
                    .map(|(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                    .collect();
                let _ = write!(
                    svg,
                    r#"<polygon points="{}" fill="{colour}" fill-opacity="0.15" stroke="none"/>"#,
                    outline.join(" ")
                );
            }
            let pts: Vec<String> = s
                .points
                .iter()
                .copied()
                .filter(finite)
                .map(|(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                pts.join(" ")
            );
            for p in &pts {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(svg, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
            }
            let ly = TOP + 10.0 + i as f64 * 20.0;
            let lx = LEFT + pw + 14.0;
            let _ = write!(
                svg,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
                lx + 20.0,
                lx + 26.0,
                ly + 4.0,
                escape(&s.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let shown =
            |lo, hi| -> Vec<String> { linear_ticks(lo, hi).into_iter().map(format_tick).collect() };
        assert_eq!(
            shown(0.0, 0.6),
            ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6"]
        );
        assert_eq!(shown(1.0, 3.0), ["1", "1.5", "2", "2.5", "3"]);
        let log: Vec<String> = log_ticks(1.3, 3.2).into_iter().map(format_tick).collect();
        assert_eq!(log, ["20", "50", "100", "200", "500", "1000"]);
    }

    #[test]
    fn chart_draws_every_series_and_escapes_text() {
        let chart = LineChart {
            title: "ppl <wiki-512>".into(),
            x_label: "sparsity".into(),
            y_label: "perplexity".into(),
            log_y: true,
            series: vec![
                Series {
                    name: "lrp".into(),
                    points: vec![(0.0, 20.0), (0.5, 40.0), (0.6, f64::NAN)],
                    spread: vec![],
                },
                Series {
                    name: "magnitude".into(),
                    points: vec![(0.0, 20.0), (0.5, 4000.0)],
                    spread: vec![],
                },
            ],
            reference: Some(("dense".into(), 20.0)),
        };
        let svg = chart.to_svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(
            svg.matches("<circle").count(),
            4,
            "the NaN point is skipped"
        );
        assert!(svg.contains("ppl &lt;wiki-512&gt;") && svg.contains("magnitude"));
    }
}

//! Turning relevance values into colours and rankings, shared by the terminal, the HTML report
//! and the page.

/// Largest absolute value (at least a tiny positive number, so it can divide).
pub fn abs_max(values: &[f32]) -> f32 {
    values
        .iter()
        .fold(0f32, |m, v| if v.is_finite() { m.max(v.abs()) } else { m })
        .max(1e-12)
}

/// A diverging colour for `value` on `[-scale, scale]`: white at 0, red for positive relevance,
/// blue for negative, as in the AttnLRP paper's heatmaps.
pub fn heat_color(value: f32, scale: f32) -> [u8; 3] {
    let x = (value / scale).clamp(-1.0, 1.0);
    let fade = |a: f32| (255.0 * (1.0 - a)).round() as u8;
    if x >= 0.0 {
        [255, fade(x), fade(x)]
    } else {
        [fade(-x), fade(-x), 255]
    }
}

/// Indices and values of the `k` entries of largest absolute value, largest first.
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<(usize, f32)> = values.iter().copied().enumerate().collect();
    order.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    order.truncate(k);
    order
}

/// The `k` entries of largest absolute value in a `[row][column]` table, as `(row, column, value)`.
pub fn top_k_2d(rows: &[Vec<f32>], k: usize) -> Vec<(usize, usize, f32)> {
    let width = rows.first().map_or(0, Vec::len).max(1);
    top_k(&rows.concat(), k)
        .into_iter()
        .map(|(i, v)| (i / width, i % width, v))
        .collect()
}

/// One explanation as a self-contained HTML page: the text as a heatmap (values on hover) and
/// the layer × head grid. The CLI's `explain --html` and the page's download write it.
pub struct HeatmapPage<'a> {
    pub rules: &'a str,
    /// What is explained, in words.
    pub target: &'a str,
    pub output: f32,
    /// `Σ R_input / R_output`.
    pub conservation: f32,
    /// The context's tokens as text, and their relevance.
    pub pieces: &'a [String],
    pub tokens: &'a [f32],
    /// `[layer][head]`.
    pub heads: &'a [Vec<f32>],
}

impl HeatmapPage<'_> {
    pub fn to_html(&self) -> String {
        let css = |[r, g, b]: [u8; 3]| format!("background:rgb({r},{g},{b})");
        let scale = abs_max(self.tokens);
        let text: String = self
            .pieces
            .iter()
            .zip(self.tokens)
            .map(|(p, r)| {
                format!(
                    "<span style=\"{}\" title=\"{r:+.4}\">{}</span>",
                    css(heat_color(*r, scale)),
                    escape(p)
                )
            })
            .collect();
        let head_scale = abs_max(&self.heads.concat());
        let grid: String = self
            .heads
            .iter()
            .enumerate()
            .map(|(l, row)| {
                let cells: String = row
                    .iter()
                    .enumerate()
                    .map(|(h, r)| {
                        format!(
                            "<td style=\"{}\" title=\"layer {l} head {h}: {r:+.4}\"></td>",
                            css(heat_color(*r, head_scale))
                        )
                    })
                    .collect();
                format!("<tr><th>{l}</th>{cells}</tr>")
            })
            .collect();
        format!(
            "<!doctype html><meta charset=utf-8><title>Scalpel relevance</title>\
<style>body{{font:15px system-ui;margin:2em}}.text{{white-space:pre-wrap;font-family:monospace;line-height:1.8}}\
td{{width:14px;height:14px}}th{{font-weight:normal;font-size:11px;padding-right:4px}}</style>\
<h1>Relevance ({rules})</h1><p>Explaining {target}: output {out:.4}, Σ R<sub>in</sub>/R<sub>out</sub> = {cons:.3}. \
Red: positive relevance, blue: negative (hover for values).</p><div class=text>{text}</div>\
<h2>Heads (rows: layers)</h2><table>{grid}</table>",
            rules = escape(self.rules),
            target = escape(self.target),
            out = self.output,
            cons = self.conservation,
        )
    }
}

/// Text safe inside HTML elements and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_html_page_escapes_text_and_draws_every_head() {
        let pieces = vec!["<b>".to_string(), " & x".to_string()];
        let html = HeatmapPage {
            rules: "attnlrp",
            target: "\" Paris\"",
            output: 2.0,
            conservation: 0.5,
            pieces: &pieces,
            tokens: &[1.0, -0.5],
            heads: &[vec![0.1, 0.2, 0.3], vec![0.0, -0.1, 0.4]],
        }
        .to_html();
        assert!(html.contains("&lt;b&gt;") && html.contains(" &amp; x") && !html.contains("<b>"));
        assert!(html.contains("&quot; Paris&quot;"));
        assert_eq!(html.matches("<td ").count(), 6);
        assert!(
            html.contains("background:rgb(255,0,0)"),
            "the strongest token is full red"
        );
    }

    #[test]
    fn colours_and_rankings() {
        assert_eq!(heat_color(0.0, 1.0), [255, 255, 255]);
        assert_eq!(heat_color(1.0, 1.0), [255, 0, 0]);
        assert_eq!(heat_color(-2.0, 1.0), [0, 0, 255]);
        assert_eq!(top_k(&[0.1, -3.0, 2.0], 2), vec![(1, -3.0), (2, 2.0)]);
        assert_eq!(
            top_k_2d(&[vec![0.0, 1.0], vec![-5.0, 0.5]], 1),
            vec![(1, 0, -5.0)]
        );
        assert_eq!(abs_max(&[f32::NAN, -2.0]), 2.0);
    }
}

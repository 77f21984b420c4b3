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

#[cfg(test)]
mod tests {
    use super::*;

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

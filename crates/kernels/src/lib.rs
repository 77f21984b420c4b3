//! CPU kernels that burn's CPU backend lacks, in a crate of their own so that dev and test builds
//! compile them at opt-level 3 as they do burn (the workspace's own crates are built at
//! opt-level 1 there, which makes SIMD intrinsics slower than the scalar code they replace).

/// `y[r, j] = Σ_i x[r, i] · w[j, i]` for `x` `[m, k]`, `w` `[n, k]` and `y` `[m, n]`, all
/// row-major: `x Wᵀ` with each row of `w` read once for every row of `x`, each output a SIMD128
/// dot product in wasm. For a few rows of `x` (a decode step) this beats `gemm` 0.19's wasm build,
/// which multiplies fewer rows than a SIMD block with scalar code.
///
/// # Panics
/// If `k` is zero or the slices' lengths are not whole rows of `k` with `y` `[m, n]`.
pub fn rows_times_transposed(x: &[f32], w: &[f32], y: &mut [f32], k: usize) {
    assert!(
        k > 0 && x.len().is_multiple_of(k) && w.len().is_multiple_of(k),
        "rows of {k} values"
    );
    let (m, n) = (x.len() / k, w.len() / k);
    assert_eq!(y.len(), m * n, "the output holds [{m}, {n}]");
    for (j, w_row) in w.chunks_exact(k).enumerate() {
        for (r, x_row) in x.chunks_exact(k).enumerate() {
            y[r * n + j] = dot(x_row, w_row);
        }
    }
}

/// Four SIMD128 accumulators over 16 values a step, then a scalar tail (wasm builds with
/// `+simd128`, which `.cargo/config.toml` sets; without it the portable version below).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    use core::arch::wasm32::{
        f32x4_add, f32x4_extract_lane, f32x4_mul, f32x4_splat, v128, v128_load,
    };
    let len = a.len().min(b.len());
    let wide = len / 16 * 16;
    let mut acc = [f32x4_splat(0.0); 4];
    for start in (0..wide).step_by(16) {
        for (lane, sum) in acc.iter_mut().enumerate() {
            let at = start + 4 * lane;
            // SAFETY: `at + 4 <= wide <= len`, the bounds of both slices; `v128_load` has no
            // alignment requirement.
            let (va, vb) = unsafe {
                (
                    v128_load(a.as_ptr().add(at) as *const v128),
                    v128_load(b.as_ptr().add(at) as *const v128),
                )
            };
            *sum = f32x4_add(*sum, f32x4_mul(va, vb));
        }
    }
    let s = f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]));
    let head = f32x4_extract_lane::<0>(s)
        + f32x4_extract_lane::<1>(s)
        + f32x4_extract_lane::<2>(s)
        + f32x4_extract_lane::<3>(s);
    head + scalar_dot(&a[wide..len], &b[wide..len])
}

/// The same sums in the same order as the SIMD128 version (lanes, then the tail), so that the
/// unit tests check its arithmetic natively.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let wide = len / 16 * 16;
    let mut acc = [[0.0f32; 4]; 4];
    for start in (0..wide).step_by(16) {
        for (lane, sum) in acc.iter_mut().enumerate() {
            for (i, s) in sum.iter_mut().enumerate() {
                let at = start + 4 * lane + i;
                *s += a[at] * b[at];
            }
        }
    }
    let s: [f32; 4] = std::array::from_fn(|i| (acc[0][i] + acc[1][i]) + (acc[2][i] + acc[3][i]));
    s[0] + s[1] + s[2] + s[3] + scalar_dot(&a[wide..len], &b[wide..len])
}

fn scalar_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain double-precision sum, for widths with and without a 16-value tail.
    #[test]
    fn matches_a_plain_sum() {
        for (m, k, n) in [(1, 576, 7), (3, 37, 5), (8, 64, 3), (2, 15, 4)] {
            let value = |i: usize, salt: usize| (((i * 7919 + salt) % 211) as f32 - 105.0) / 53.0;
            let x: Vec<f32> = (0..m * k).map(|i| value(i, 1)).collect();
            let w: Vec<f32> = (0..n * k).map(|i| value(i, 2)).collect();
            let mut y = vec![0.0; m * n];
            rows_times_transposed(&x, &w, &mut y, k);
            for r in 0..m {
                for j in 0..n {
                    let exact: f64 = (0..k)
                        .map(|i| f64::from(x[r * k + i]) * f64::from(w[j * k + i]))
                        .sum();
                    let scale: f64 = (0..k)
                        .map(|i| f64::from((x[r * k + i] * w[j * k + i]).abs()))
                        .sum();
                    let error = (f64::from(y[r * n + j]) - exact).abs();
                    assert!(
                        error <= 1e-6 * scale.max(1.0),
                        "[{r}, {j}]: {} against {exact}",
                        y[r * n + j]
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "the output holds [2, 3]")]
    fn refuses_an_output_of_the_wrong_size() {
        rows_times_transposed(&[0.0; 8], &[0.0; 12], &mut [0.0; 5], 4);
    }
}

//! The module `cargo xtask bench wasm-products` times in Node: `x Wᵀ` for a few rows of `x`, by
//! `gemm` (as burn's CPU backend calls it for a Linear: `W` `[out, in]` row-major, its transpose
//! as the right operand) and by `scalpel_kernels::rows_times_transposed`, on the same buffers; with
//! `W` held as f16 too (gemm's f16 × f16 product, as the CPU backend's `Fast` products take it,
//! against `rows_times_transposed_f16`).
//! Built for wasm32 with SIMD128 (`.cargo/config.toml`); exports plain functions, no bindings.

use std::sync::Mutex;

/// `W`, then `x`, then `y`, as `setup` sized them.
static BUFFERS: Mutex<Vec<f32>> = Mutex::new(Vec::new());
/// The same, as f16.
static HALVES: Mutex<Vec<gemm::f16>> = Mutex::new(Vec::new());

/// Fills the buffers for `m` rows of `k` inputs and `n` outputs with a fixed pattern.
#[unsafe(no_mangle)]
pub extern "C" fn setup(m: usize, k: usize, n: usize) {
    let len = n * k + m * k + m * n;
    let mut buffers = BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
    *buffers = (0..len).map(|i| (i % 97) as f32 * 0.01 - 0.48).collect();
    let mut halves = HALVES.lock().unwrap_or_else(|e| e.into_inner());
    *halves = buffers.iter().map(|&v| gemm::f16::from_f32(v)).collect();
}

/// `reps` products by `gemm` (`which` = 0) or by the kernel (`which` = 1), and with f16 weights
/// by `gemm` (2) or by the kernel (3); returns one output so that the work is not optimised away.
#[unsafe(no_mangle)]
pub extern "C" fn products(which: u32, m: usize, k: usize, n: usize, reps: u32) -> f32 {
    let mut buffers = BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
    let (w, rest) = buffers.split_at_mut(n * k);
    let (x, y) = rest.split_at_mut(m * k);
    let mut halves = HALVES.lock().unwrap_or_else(|e| e.into_inner());
    let (w16, rest16) = halves.split_at_mut(n * k);
    let (x16, y16) = rest16.split_at_mut(m * k);
    // SAFETY: `f16` is a transparent wrapper of its `u16` bits.
    let bits = unsafe { std::slice::from_raw_parts(w16.as_ptr().cast::<u16>(), w16.len()) };
    for _ in 0..reps {
        match which {
            0 => gemm_product(x, w, y, k, 0.0, 1.0),
            1 => scalpel_kernels::rows_times_transposed(x, w, y, k),
            2 => gemm_product(x16, w16, y16, k, gemm::f16::ZERO, gemm::f16::ONE),
            _ => scalpel_kernels::rows_times_transposed_f16(x, bits, y, k),
        }
    }
    if which == 2 {
        y16[y16.len() / 2].to_f32()
    } else {
        y[y.len() / 2]
    }
}

/// `y = x wᵀ` by `gemm` as burn-flex calls it for a Linear (`x` `[m, k]`, `w` `[n, k]`, `y`
/// `[m, n]`, row-major; one thread), `zero` and `one` in `T`.
fn gemm_product<T: Copy + 'static>(x: &[T], w: &[T], y: &mut [T], k: usize, zero: T, one: T) {
    let (m, n) = (x.len() / k, w.len() / k);
    assert!(y.len() == m * n && x.len() == m * k && w.len() == n * k);
    // SAFETY: the pointers address `m·k`, `n·k` and `m·n` values with these strides (checked).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            zero,
            one,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

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
    product(x, w, y, k);
}

/// `x Wᵀ` for weights read as `W`: the native kernel where this CPU has one, else [`rows_times`].
fn product<W: Weight>(x: &[f32], w: &[W], y: &mut [f32], k: usize) {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        return native_rows_times(x, w, y, k);
    }
    rows_times(x, w, y, k);
}

/// Whether [`rows_times_transposed`] has a vector kernel natively on this CPU (AVX-512 on
/// x86-64, checked at run time); without one it runs portable scalar code, slower than `gemm`.
pub fn native_kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x86::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Products of at least this many multiply-adds are split over rayon's threads by columns (the
/// rows of `w`). Waking a sleeping worker costs tens of microseconds (alone, a product of 8 rows
/// by a 576 × 576 weight took 45 µs on one thread and 79 µs split), but in a batched decode the
/// workers are mostly awake: 28 prompts decoded at 192, 184, 183, 177 and 154 tokens/s with this
/// threshold at 2²¹, 2²², 2²³, 2²⁴ multiply-adds and never (`scalpel bench --batch 28`, 2 threads).
#[cfg(target_arch = "x86_64")]
const SPLIT_MULTIPLY_ADDS: usize = 1 << 21;

#[cfg(target_arch = "x86_64")]
fn native_rows_times<W: Weight>(x: &[f32], w: &[W], y: &mut [f32], k: usize) {
    use rayon::prelude::*;
    let (m, n) = checked_shape(x, w, y, k);
    let mut scratch = Vec::new();
    let (x, head) = x86::aligned_rows(x, w, k, &mut scratch);
    let out = x86::Output {
        y: y.as_mut_ptr(),
        n,
    };
    let threads = if m * n * k >= SPLIT_MULTIPLY_ADDS {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    // Whole tiles per thread, so that only the last part has a narrower one.
    let per = n.div_ceil(threads).div_ceil(x86::COLS) * x86::COLS;
    let parts: Vec<_> = (0..n)
        .step_by(per.max(1))
        .map(|j| j..(j + per).min(n))
        .collect();
    let run = |cols: core::ops::Range<usize>| {
        // SAFETY: AVX-512 was detected; the shapes were checked above; the parts' columns are
        // disjoint, and `y` outlives the calls, which all return before this function does.
        unsafe { x86::columns(x, w, k, head, out, cols) }
    };
    if parts.len() == 1 {
        run(0..n);
    } else {
        parts.into_par_iter().for_each(run);
    }
}

/// [`rows_times_transposed`] with `w` held as IEEE half-precision bits (`f16::to_bits`), each
/// widened to float32 exactly as it is read (subnormals, infinities and NaNs included): the
/// products and sums are float32's. `gemm`'s f16 product in wasm converts with scalar code and is
/// several times slower than its float32 one; natively it rounds `x` to f16 as well.
///
/// # Panics
/// As [`rows_times_transposed`].
pub fn rows_times_transposed_f16(x: &[f32], w: &[u16], y: &mut [f32], k: usize) {
    product(x, w, y, k);
}

/// [`rows_times_transposed`] with `w` held as bfloat16 bits (`bf16::to_bits`, the upper half of
/// a float32's), each widened to float32 exactly as it is read. burn's CPU backend widens a
/// bfloat16 weight whole before every product.
///
/// # Panics
/// As [`rows_times_transposed`].
pub fn rows_times_transposed_bf16(x: &[f32], w: &[u16], y: &mut [f32], k: usize) {
    // SAFETY: `Bf16` is a transparent `u16`.
    let w = unsafe { core::slice::from_raw_parts(w.as_ptr() as *const Bf16, w.len()) };
    product(x, w, y, k);
}

/// bfloat16 bits, apart from `u16`, which the kernels read as IEEE half precision.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Bf16(u16);

impl Weight for Bf16 {
    fn to_f32(self) -> f32 {
        f32::from_bits(u32::from(self.0) << 16)
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    unsafe fn load8(row: &[Self], at: usize) -> (v128, v128) {
        use core::arch::wasm32::{
            u32x4_extend_high_u16x8, u32x4_extend_low_u16x8, u32x4_shl, v128_load,
        };
        // SAFETY: the caller keeps `at + 8` within the row: 16 bytes; no alignment requirement.
        let halves = unsafe { v128_load(row.as_ptr().add(at) as *const v128) };
        (
            u32x4_shl(u32x4_extend_low_u16x8(halves), 16),
            u32x4_shl(u32x4_extend_high_u16x8(halves), 16),
        )
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;

/// An element-wise function [`map`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elementwise {
    /// `eˣ`.
    Exp,
    /// The logistic sigmoid `1 / (1 + e⁻ˣ)`.
    Sigmoid,
}

impl Elementwise {
    fn scalar(self, x: f32) -> f32 {
        match self {
            Self::Exp => x.exp(),
            Self::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }
}

/// Values per thread when [`map`] splits its work: below twice this it runs on one thread.
#[cfg(target_arch = "x86_64")]
const MAP_PART: usize = 1 << 15;

/// `op` of every value of `x`, written to `out`. Natively with AVX-512 (a polynomial `exp` within
/// about an ulp of libm's, 16 values at a time, split over rayon's threads for long inputs);
/// elsewhere libm's, one value at a time. burn's CPU backend calls libm's scalar `expf` per value
/// on one thread: a tenth of a long forward.
///
/// # Panics
/// If `out` is not as long as `x`.
pub fn map(op: Elementwise, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "the output holds one value per input");
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        use rayon::prelude::*;
        // SAFETY: AVX-512 was detected; each part's input and output have the same length.
        let run = |(x, out): (&[f32], &mut [f32])| unsafe { x86::map16(x, out, op) };
        if x.len() < 2 * MAP_PART {
            run((x, out));
        } else {
            x.par_chunks(MAP_PART)
                .zip(out.par_chunks_mut(MAP_PART))
                .for_each(run);
        }
        return;
    }
    for (y, &v) in out.iter_mut().zip(x) {
        *y = op.scalar(v);
    }
}

/// `[m, n]` of the product of `x` and `w` (rows of `k` values) into `y`.
///
/// # Panics
/// As [`rows_times_transposed`].
fn checked_shape<W>(x: &[f32], w: &[W], y: &[f32], k: usize) -> (usize, usize) {
    assert!(
        k > 0 && x.len().is_multiple_of(k) && w.len().is_multiple_of(k),
        "rows of {k} values"
    );
    let (m, n) = (x.len() / k, w.len() / k);
    assert_eq!(y.len(), m * n, "the output holds [{m}, {n}]");
    (m, n)
}

fn rows_times<W: Weight>(x: &[f32], w: &[W], y: &mut [f32], k: usize) {
    let (_, n) = checked_shape(x, w, y, k);
    for (j, w_row) in w.chunks_exact(k).enumerate() {
        for (r, x_row) in x.chunks_exact(k).enumerate() {
            y[r * n + j] = dot(x_row, w_row);
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use core::arch::wasm32::v128;

/// How AVX-512 reads a weight natively (x86-64); nothing elsewhere.
#[cfg(target_arch = "x86_64")]
use x86::Lanes as NativeLanes;
#[cfg(not(target_arch = "x86_64"))]
trait NativeLanes {}
#[cfg(not(target_arch = "x86_64"))]
impl<T> NativeLanes for T {}

/// How a weight is read as float32: one at a time, (in wasm) four into a SIMD128 vector, and
/// (natively on x86-64) sixteen into an AVX-512 one.
trait Weight: Copy + NativeLanes {
    fn to_f32(self) -> f32;

    /// The eight weights at `at` as two vectors of float32 lanes.
    ///
    /// # Safety
    /// `at + 8 <= row.len()`.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    unsafe fn load8(row: &[Self], at: usize) -> (v128, v128);
}

impl Weight for f32 {
    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    unsafe fn load8(row: &[Self], at: usize) -> (v128, v128) {
        use core::arch::wasm32::v128_load;
        // SAFETY: the caller keeps `at + 8` within the row; `v128_load` has no alignment
        // requirement.
        unsafe {
            let p = row.as_ptr().add(at) as *const v128;
            (v128_load(p), v128_load(p.add(1)))
        }
    }
}

/// 2¹¹², which moves an f16's exponent (bias 15) to float32's (bias 127).
const F16_EXPONENT_SHIFT: f32 = f32::from_bits((112 + 127) << 23);

/// The float32 value of IEEE half-precision `bits`, exactly. The exponent and mantissa are moved
/// into a float32's bits and scaled by 2¹¹² (exact, and right for subnormals too); all-ones
/// exponents (infinities, NaNs) get float32's all-ones exponent instead. The SIMD128 kernels do
/// the same four at a time.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits & 0x8000) << 16;
    let moved = u32::from(bits & 0x7fff) << 13;
    let magnitude = if bits & 0x7c00 == 0x7c00 {
        f32::from_bits(moved | 0x7f80_0000)
    } else {
        f32::from_bits(moved) * F16_EXPONENT_SHIFT
    };
    f32::from_bits(magnitude.to_bits() | sign)
}

/// IEEE half-precision bits, widened by [`f16_to_f32`].
impl Weight for u16 {
    fn to_f32(self) -> f32 {
        f16_to_f32(self)
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    unsafe fn load8(row: &[Self], at: usize) -> (v128, v128) {
        use core::arch::wasm32::{
            f32x4_ge, f32x4_mul, f32x4_splat, i32x4_extend_high_i16x8, i32x4_extend_low_i16x8,
            i32x4_shl, u32x4_splat, v128_and, v128_load, v128_or,
        };
        // SAFETY: the caller keeps `at + 8` within the row: 16 bytes; no alignment requirement.
        let halves = unsafe { v128_load(row.as_ptr().add(at) as *const v128) };
        let widen = |h: v128| {
            // Sign-extended, the half's sign is float32's too; its other 15 bits, moved up by
            // 13, are float32's exponent and mantissa, off by the bias (2¹¹²).
            let sign = v128_and(h, u32x4_splat(0x8000_0000));
            let moved = v128_and(i32x4_shl(h, 13), u32x4_splat(0x0fff_e000));
            let finite = f32x4_mul(moved, f32x4_splat(F16_EXPONENT_SHIFT));
            // An all-ones exponent lands at 2¹⁶ or above: float32's all-ones exponent instead.
            let special = f32x4_ge(finite, f32x4_splat(65536.0));
            let magnitude = v128_or(finite, v128_and(special, u32x4_splat(0x7f80_0000)));
            v128_or(magnitude, sign)
        };
        (
            widen(i32x4_extend_low_i16x8(halves)),
            widen(i32x4_extend_high_i16x8(halves)),
        )
    }
}

/// Four SIMD128 accumulators over 16 values a step, then a scalar tail (wasm builds with
/// `+simd128`, which `.cargo/config.toml` sets; without it the portable version below).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot<W: Weight>(a: &[f32], b: &[W]) -> f32 {
    use core::arch::wasm32::{f32x4_add, f32x4_extract_lane, f32x4_mul, f32x4_splat, v128_load};
    let len = a.len().min(b.len());
    let wide = len / 16 * 16;
    let mut acc = [f32x4_splat(0.0); 4];
    for start in (0..wide).step_by(16) {
        for (pair, sums) in acc.chunks_exact_mut(2).enumerate() {
            let at = start + 8 * pair;
            // SAFETY: `at + 8 <= wide <= len`, the bounds of both slices; `v128_load` has no
            // alignment requirement.
            let (va, vb, (wa, wb)) = unsafe {
                let p = a.as_ptr().add(at) as *const v128;
                (v128_load(p), v128_load(p.add(1)), W::load8(b, at))
            };
            sums[0] = f32x4_add(sums[0], f32x4_mul(va, wa));
            sums[1] = f32x4_add(sums[1], f32x4_mul(vb, wb));
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
fn dot<W: Weight>(a: &[f32], b: &[W]) -> f32 {
    let len = a.len().min(b.len());
    let wide = len / 16 * 16;
    let mut acc = [[0.0f32; 4]; 4];
    for start in (0..wide).step_by(16) {
        for (lane, sum) in acc.iter_mut().enumerate() {
            for (i, s) in sum.iter_mut().enumerate() {
                let at = start + 4 * lane + i;
                *s += a[at] * b[at].to_f32();
            }
        }
    }
    let s: [f32; 4] = std::array::from_fn(|i| (acc[0][i] + acc[1][i]) + (acc[2][i] + acc[3][i]));
    s[0] + s[1] + s[2] + s[3] + scalar_dot(&a[wide..len], &b[wide..len])
}

fn scalar_dot<W: Weight>(a: &[f32], b: &[W]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y.to_f32()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain double-precision sum, for widths with and without a 16-value tail, both
    /// the kernel this build runs and the portable one; the tiles' remainders (rows and columns
    /// that are not multiples of four), and a product large enough to be split over threads.
    #[test]
    fn matches_a_plain_sum() {
        let shapes = [
            (1, 576, 7),
            (3, 37, 5),
            (8, 64, 3),
            (2, 15, 4),
            (7, 33, 11),
            (5, 16, 6),
            (28, 576, 150),
        ];
        for (m, k, n) in shapes {
            for portable in [false, true] {
                check_against_a_plain_sum(m, k, n, portable, (0, 0));
            }
        }
    }

    /// Rows of whole vectors that start anywhere in memory: natively the AVX-512 kernel sums
    /// the values before `w`'s first 64-byte boundary apart and realigns `x` (`aligned_rows`).
    /// The sums are the same, bit for bit, wherever the rows start (a weight that burn
    /// re-allocates must give the logits it gave before).
    #[test]
    fn matches_a_plain_sum_wherever_the_rows_start() {
        let placed_first = check_against_a_plain_sum(6, 64, 9, false, (0, 0));
        for x_offset in [0, 1, 5, 15] {
            for w_offset in [0, 3, 8, 15] {
                let y = check_against_a_plain_sum(6, 64, 9, false, (x_offset, w_offset));
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y), bits(&placed_first), "at {x_offset}, {w_offset}");
            }
        }
    }

    /// `x` `[m, k]` and `w` `[n, k]` placed `offsets` values into buffers of their own; returns
    /// the product.
    fn check_against_a_plain_sum(
        m: usize,
        k: usize,
        n: usize,
        portable: bool,
        offsets: (usize, usize),
    ) -> Vec<f32> {
        // Values with full mantissas, so that summing in another order shows in the bits.
        let value = |i: usize, salt: usize| ((i as f32 * 0.618_034 + salt as f32) * 1.7).sin();
        let placed = |len: usize, offset: usize, salt: usize| -> Vec<f32> {
            let mut buffer = vec![f32::NAN; offset];
            buffer.extend((0..len).map(|i| value(i, salt)));
            buffer
        };
        let (x_buffer, w_buffer) = (placed(m * k, offsets.0, 1), placed(n * k, offsets.1, 2));
        let (x, w) = (&x_buffer[offsets.0..], &w_buffer[offsets.1..]);
        let mut y = vec![0.0; m * n];
        if portable {
            rows_times(x, w, &mut y, k);
        } else {
            rows_times_transposed(x, w, &mut y, k);
        }
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
                    "[{r}, {j}] of {m}×{k}×{n} at {offsets:?} (portable: {portable}): {} against {exact}",
                    y[r * n + j]
                );
            }
        }
        y
    }

    /// Every one of the 65,536 half-precision values widens as `half` widens it (bit for bit;
    /// NaNs as NaNs with their payload).
    #[test]
    fn every_f16_widens_exactly() {
        for bits in 0..=u16::MAX {
            let ours = f16_to_f32(bits);
            let exact = f16_reference(bits);
            assert!(
                ours.to_bits() == exact.to_bits(),
                "{bits:#06x}: {ours:e} ({:#010x}) against {exact:e} ({:#010x})",
                ours.to_bits(),
                exact.to_bits()
            );
        }
    }

    /// IEEE half precision widened by its definition, independently of the bit arithmetic above.
    fn f16_reference(bits: u16) -> f32 {
        let sign = if bits & 0x8000 != 0 { -1.0f64 } else { 1.0 };
        let exponent = i32::from((bits >> 10) & 0x1f);
        let mantissa = f64::from(bits & 0x3ff);
        let value = match exponent {
            0 => mantissa * 2f64.powi(-24),
            31 if mantissa == 0.0 => f64::INFINITY,
            // A NaN keeps its payload: the mantissa's top bits become float32's.
            31 => {
                let payload = u32::from(bits & 0x3ff) << 13;
                return f32::from_bits((u32::from(bits & 0x8000) << 16) | 0x7f80_0000 | payload);
            }
            e => (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
        };
        (sign * value) as f32
    }

    /// The f16 product against the float32 product of the same widened weights: the same sums.
    #[test]
    fn f16_weights_multiply_as_their_float32_values() {
        // Finite halves of both signs, subnormals among them.
        let half = |i: usize| {
            let i = i as u64;
            ((i * 2_654_435_761) % 0x7bff) as u16 | (((i & 1) as u16) << 15)
        };
        let x = |i: usize| (i % 13) as f32 * 0.25 - 1.5;
        check_widened_product(x, half, f16_reference, rows_times_transposed_f16);
    }

    /// The bfloat16 product against the float32 product of the same values: the same sums.
    #[test]
    fn bf16_weights_multiply_as_their_float32_values() {
        let bits = |i: usize| ((i as f32 * 0.91).cos() * 3.0).to_bits().wrapping_shr(16) as u16;
        let x = |i: usize| (i as f32 * 0.37).sin();
        let widen = |b: u16| f32::from_bits(u32::from(b) << 16);
        check_widened_product(x, bits, widen, rows_times_transposed_bf16);
    }

    /// `product` of `x` and the 16-bit weights `bits` equals the float32 product of their values
    /// as `widen` gives them, bit for bit, for rows with a tail (37) and rows of whole vectors
    /// (64, the aligned path natively).
    fn check_widened_product(
        x: impl Fn(usize) -> f32,
        bits: impl Fn(usize) -> u16,
        widen: impl Fn(u16) -> f32,
        product: fn(&[f32], &[u16], &mut [f32], usize),
    ) {
        for (m, k, n) in [(3, 37, 5), (5, 64, 6)] {
            let x: Vec<f32> = (0..m * k).map(&x).collect();
            let w: Vec<u16> = (0..n * k).map(&bits).collect();
            let widened: Vec<f32> = w.iter().map(|&b| widen(b)).collect();
            let (mut ours, mut theirs) = (vec![0.0; m * n], vec![0.0; m * n]);
            product(&x, &w, &mut ours, k);
            rows_times_transposed(&x, &widened, &mut theirs, k);
            assert_eq!(ours, theirs, "{m}×{k}×{n}");
        }
    }

    /// `exp` within 2 ulp and the sigmoid within 3 of a double-precision reference over the
    /// float32 range (subnormal results of `exp` to within 2⁻¹⁴⁸; the sigmoid's flush to 0), and
    /// the ends: ±∞, NaN, the attention mask's -1e30, where `exp` overflows and underflows.
    #[test]
    fn elementwise_functions_match_double_precision() {
        let mut x: Vec<f32> = (0..200_000)
            .map(|i| -110.0 + i as f32 * 0.001_000_5)
            .collect();
        x.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -1e30,
            88.72,
            88.73,
            -87.33,
            -103.97,
            1e-8,
        ]);
        for op in [Elementwise::Exp, Elementwise::Sigmoid] {
            let mut out = vec![0.0; x.len()];
            map(op, &x, &mut out);
            for (&v, &y) in x.iter().zip(&out) {
                let v64 = f64::from(v);
                let exact = match op {
                    Elementwise::Exp => v64.exp(),
                    Elementwise::Sigmoid => 1.0 / (1.0 + (-v64).exp()),
                };
                let exact32 = exact as f32;
                if exact.is_nan() {
                    assert!(y.is_nan(), "{op:?}({v}) = {y}");
                    continue;
                }
                let ulp = f64::from(f32::from_bits(exact32.abs().to_bits() + 1) - exact32.abs());
                let error = (f64::from(y) - exact).abs();
                let ok = if exact32.is_infinite() {
                    y == exact32
                } else if op == Elementwise::Sigmoid && exact < f64::from(f32::MIN_POSITIVE) {
                    // e⁻ˣ overflows first, and the sigmoid flushes to 0 (as it does in float32
                    // arithmetic everywhere).
                    error <= f64::from(f32::MIN_POSITIVE)
                } else {
                    // The sigmoid adds the rounding of 1 + e⁻ˣ and of the division.
                    let ulps = if op == Elementwise::Exp { 2.0 } else { 3.0 };
                    error <= ulps * ulp.max(f64::from(f32::from_bits(1)))
                };
                assert!(ok, "{op:?}({v}) = {y:e} against {exact:e}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "the output holds [2, 3]")]
    fn refuses_an_output_of_the_wrong_size() {
        rows_times_transposed(&[0.0; 8], &[0.0; 12], &mut [0.0; 5], 4);
    }
}

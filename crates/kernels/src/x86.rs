//! `x Wᵀ` natively on x86-64 with AVX-512, for a few rows of `x` (a batched decode step).
//!
//! `gemm` 0.19 vectorises along the rows of `x` and packs `W`: with `W` held `[out, in]` and only
//! a few dozen rows, its blocks are mostly empty and the packing is most of the work (41–91 GFLOP/s
//! at 28 rows, against PyTorch's 125–217). Here each output is a dot product of a row of `x` with a
//! row of `W`, both contiguous: a tile of [`ROWS`] rows of `x` by [`COLS`] rows of `W` keeps its 16
//! sums in registers, so each vector of `W` loaded serves four rows of `x` and each of `x` four of
//! `W`, and nothing is packed. The ends of a row are masked loads, not scalar code. A weight held
//! as f16 or bfloat16 is widened to float32 as it is read ([`Lanes`]), and `x` stays float32.

use core::arch::x86_64::{
    __m256i, __m512, _CMP_UNORD_Q, _MM_FROUND_NO_EXC, _MM_FROUND_TO_NEAREST_INT,
    _mm256_loadu_si256, _mm512_add_ps, _mm512_castsi512_ps, _mm512_cmp_ps_mask,
    _mm512_cvtepu16_epi32, _mm512_cvtph_ps, _mm512_div_ps, _mm512_fmadd_ps, _mm512_fnmadd_ps,
    _mm512_loadu_ps, _mm512_mask_blend_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
    _mm512_max_ps, _mm512_min_ps, _mm512_mul_ps, _mm512_reduce_add_ps, _mm512_roundscale_ps,
    _mm512_scalef_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_slli_epi32, _mm512_storeu_ps,
    _mm512_sub_ps,
};

/// Rows of `x` in a tile.
pub(crate) const ROWS: usize = 4;
/// Rows of `W` in a tile: 16 accumulators and 4 + 4 loaded vectors fit AVX-512's 32 registers.
pub(crate) const COLS: usize = 4;
/// Float32 lanes of one vector.
const LANES: usize = 16;

/// Whether this CPU runs the AVX-512 kernel (checked once, then cached by std).
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// A vector load that straddles two cache lines costs two, and `W` and `x` come as burn
/// allocated them: 64-byte alignment made the kernel 1.5× as fast at 28 rows. When rows are
/// whole vectors (`k` a multiple of 16) every row of `w` has its first vector boundary (64 bytes
/// for float32, 32 for 16-bit weights) the same `head` values in (returned), and `x` is copied
/// into `scratch` so that its rows' 64-byte boundaries fall there too; otherwise `x` is returned
/// as it is, with a head of 0 (unaligned loads).
pub(crate) fn aligned_rows<'a, W>(
    x: &'a [f32],
    w: &[W],
    k: usize,
    scratch: &'a mut Vec<f32>,
) -> (&'a [f32], usize) {
    fn misaligned<T>(p: *const T) -> usize {
        (p as usize / size_of::<T>()) % LANES
    }
    if !k.is_multiple_of(LANES) || (misaligned(w.as_ptr()) == 0 && misaligned(x.as_ptr()) == 0) {
        return (x, 0);
    }
    let head = (LANES - misaligned(w.as_ptr())) % LANES;
    scratch.clear();
    scratch.resize(x.len() + LANES, 0.0);
    // Where a row must start so that its value `head` sits on a 64-byte boundary.
    let start = (2 * LANES - misaligned(scratch.as_ptr()) - head) % LANES;
    scratch[start..start + x.len()].copy_from_slice(x);
    (&scratch[start..start + x.len()], head)
}

/// Where a part of the product goes: `y` `[m, n]` row-major, with the columns `cols` of it ours.
#[derive(Clone, Copy)]
pub(crate) struct Output {
    pub y: *mut f32,
    pub n: usize,
}

// SAFETY: the threads that share an `Output` write disjoint columns of it (`columns` below), and
// the caller keeps the buffer alive until all have returned.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

/// `y[r, j] = Σ_i x[r, i] · w[j, i]` for every row `r` of `x` and `j` in `cols`, with the rows
/// aligned `head` values in (see [`aligned_rows`]; the sums do not depend on it).
///
/// # Safety
/// [`available`] must be true; `head < 16`, and `k` a multiple of 16 when `head > 0`; `x` holds `m` rows and `w` at least `cols.end` rows of `k`
/// values; `out.y` points to `m · out.n` floats with `cols.end <= out.n`, none of whose columns in
/// `cols` another thread writes meanwhile.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn columns<W: Lanes>(
    x: &[f32],
    w: &[W],
    k: usize,
    head: usize,
    out: Output,
    cols: core::ops::Range<usize>,
) {
    let m = x.len() / k;
    let mut j = cols.start;
    while j < cols.end {
        let c = (cols.end - j).min(COLS);
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(ROWS);
            // SAFETY: rows `r..r + rows` of `x`, `j..j + c` of `w` and the outputs between exist
            // (the caller's contract).
            unsafe {
                let xp = x.as_ptr().add(r * k);
                let wp = w.as_ptr().add(j * k);
                let yp = out.y.add(r * out.n + j);
                match (rows, c) {
                    (4, 4) => tile::<4, 4, W>(xp, wp, k, head, yp, out.n),
                    (4, 3) => tile::<4, 3, W>(xp, wp, k, head, yp, out.n),
                    (4, 2) => tile::<4, 2, W>(xp, wp, k, head, yp, out.n),
                    (4, _) => tile::<4, 1, W>(xp, wp, k, head, yp, out.n),
                    (3, 4) => tile::<3, 4, W>(xp, wp, k, head, yp, out.n),
                    (3, 3) => tile::<3, 3, W>(xp, wp, k, head, yp, out.n),
                    (3, 2) => tile::<3, 2, W>(xp, wp, k, head, yp, out.n),
                    (3, _) => tile::<3, 1, W>(xp, wp, k, head, yp, out.n),
                    (2, 4) => tile::<2, 4, W>(xp, wp, k, head, yp, out.n),
                    (2, 3) => tile::<2, 3, W>(xp, wp, k, head, yp, out.n),
                    (2, 2) => tile::<2, 2, W>(xp, wp, k, head, yp, out.n),
                    (2, _) => tile::<2, 1, W>(xp, wp, k, head, yp, out.n),
                    (_, 4) => tile::<1, 4, W>(xp, wp, k, head, yp, out.n),
                    (_, 3) => tile::<1, 3, W>(xp, wp, k, head, yp, out.n),
                    (_, 2) => tile::<1, 2, W>(xp, wp, k, head, yp, out.n),
                    (_, _) => tile::<1, 1, W>(xp, wp, k, head, yp, out.n),
                }
            }
            r += rows;
        }
        j += c;
    }
}

/// One `R × C` tile of outputs: `R` rows of `x` (stride `k`) against `C` rows of `w` (stride `k`),
/// written at `y` with row stride `n`, where the rows' 64-byte boundaries fall `head` values in
/// (0: wherever they fall).
///
/// Lane `l` of a sum adds the values `i ≡ head + l (mod 16)` in order, the first vector ending at
/// the first boundary (masked to the row): the lanes hold what they hold with `head` 0, rotated
/// by `head`. `_mm512_reduce_add_ps` adds lanes `l` and `l + 8`, then the sums four apart, two
/// apart and one apart, pairs that a rotation maps onto themselves, so every output has the same
/// bits wherever burn placed the buffers (a weight re-allocated by a mask's undo or an export's
/// reload gives the logits it gave before; a unit test checks it for every alignment).
///
/// # Safety
/// AVX-512F; `head < 16`, and `k` a multiple of 16 when `head > 0`; `R` rows of `k` values at
/// `x`, `C` at `w`, and `R` rows of `C` outputs at `y`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize, const C: usize, W: Lanes>(
    x: *const f32,
    w: *const W,
    k: usize,
    head: usize,
    y: *mut f32,
    n: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    // SAFETY (all loads and stores below): the loop keeps `i + LANES <= k`; the masked head
    // reads only the lanes `16 - head..16`, the row's first `head` values (the pointer before the
    // row is computed with wrapping arithmetic and its masked lanes are never accessed), and the
    // masked tail only the `k - i` values left; the outputs are the caller's.
    unsafe {
        if head > 0 {
            let back = LANES - head;
            let mask = !((1u16 << back) - 1);
            accumulate(
                &mut acc,
                x.wrapping_sub(back),
                w.wrapping_sub(back),
                k,
                mask,
            );
        }
        let mut i = head;
        while i + LANES <= k {
            accumulate(&mut acc, x.add(i), w.add(i), k, u16::MAX);
            i += LANES;
        }
        if i < k {
            accumulate(&mut acc, x.add(i), w.add(i), k, (1u16 << (k - i)) - 1);
        }
        for (r, sums) in acc.iter().enumerate() {
            for (c, s) in sums.iter().enumerate() {
                *y.add(r * n + c) = _mm512_reduce_add_ps(*s);
            }
        }
    }
}

/// Adds the products of the 16 values at `x` and `w` of each row (those `mask` keeps) to `acc`.
///
/// # Safety
/// AVX-512F; the kept values lie within the `R` rows at `x` and `C` at `w` (stride `k`).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn accumulate<const R: usize, const C: usize, W: Lanes>(
    acc: &mut [[__m512; C]; R],
    x: *const f32,
    w: *const W,
    k: usize,
    mask: u16,
) {
    let mut wv = [_mm512_setzero_ps(); C];
    // SAFETY: the caller's contract.
    unsafe {
        for (c, v) in wv.iter_mut().enumerate() {
            *v = W::load16(w.wrapping_add(c * k), mask);
        }
        for (r, sums) in acc.iter_mut().enumerate() {
            let xv = f32::load16(x.wrapping_add(r * k), mask);
            for (s, v) in sums.iter_mut().zip(&wv) {
                *s = _mm512_fmadd_ps(xv, *v, *s);
            }
        }
    }
}

/// A weight's element as AVX-512 reads it: 16 at a time, widened to float32 exactly.
pub(crate) trait Lanes: Copy + Sync {
    /// The 16 values at `p` (those `mask` keeps; the others read as 0).
    ///
    /// # Safety
    /// AVX-512F; the kept values are readable.
    unsafe fn load16(p: *const Self, mask: u16) -> __m512;
}

impl Lanes for f32 {
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16(p: *const Self, mask: u16) -> __m512 {
        // SAFETY: the caller's contract; masked-off lanes are not accessed.
        unsafe {
            if mask == u16::MAX {
                _mm512_loadu_ps(p)
            } else {
                _mm512_maskz_loadu_ps(mask, p)
            }
        }
    }
}

/// The 16 halves at `p` as integers; masked-off lanes 0 (copied one by one: a masked 16-bit load
/// needs AVX-512BW, and only a row's ends take this path).
///
/// # Safety
/// AVX-512F; the kept values are readable.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load16_bits(p: *const u16, mask: u16) -> __m256i {
    // SAFETY: the caller's contract.
    unsafe {
        if mask == u16::MAX {
            return _mm256_loadu_si256(p as *const __m256i);
        }
        let mut kept = [0u16; 16];
        for (lane, v) in kept.iter_mut().enumerate() {
            if mask & (1 << lane) != 0 {
                *v = p.wrapping_add(lane).read_unaligned();
            }
        }
        _mm256_loadu_si256(kept.as_ptr() as *const __m256i)
    }
}

/// IEEE half precision (`f16::to_bits`), widened by `vcvtph2ps` (exact).
impl Lanes for u16 {
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16(p: *const Self, mask: u16) -> __m512 {
        // SAFETY: the caller's contract.
        unsafe { _mm512_cvtph_ps(load16_bits(p, mask)) }
    }
}

/// bfloat16: the upper half of a float32's bits.
impl Lanes for crate::Bf16 {
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16(p: *const Self, mask: u16) -> __m512 {
        // SAFETY: the caller's contract; `Bf16` is a transparent `u16`.
        unsafe {
            let bits = _mm512_cvtepu16_epi32(load16_bits(p as *const u16, mask));
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(bits))
        }
    }
}

/// `ln 2` split so that `n · LN2_HI` is exact for the `n` an `exp` meets (Cody and Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `eˣ` of 16 values: `x = n ln 2 + r` with `|r| ≤ ln 2 / 2`, `eʳ` by its Taylor polynomial of
/// degree 7 (truncation under 1e-8 relative), times `2ⁿ` by `vscalefps`, which overflows to
/// infinity and underflows through the subnormals to 0 as `expf` does. NaN stays NaN.
///
/// # Safety
/// AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn exp16(x: __m512) -> __m512 {
    // Beyond these `eˣ` is infinite or 0 in float32; clamping keeps `n` within `vscalefps`'s
    // reach and the polynomial on its interval.
    let clamped = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-104.0)),
        _mm512_set1_ps(88.8),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(clamped, _mm512_set1_ps(core::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), clamped);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_scalef_ps(p, n);
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    _mm512_mask_blend_ps(nan, y, x)
}

/// `op` of every value of `x`, 16 at a time (the tail masked), written to `out`.
///
/// # Safety
/// AVX-512F; `out.len() == x.len()`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn map16(x: &[f32], out: &mut [f32], op: crate::Elementwise) {
    let f = |v| match op {
        crate::Elementwise::Exp => exp16(v),
        crate::Elementwise::Sigmoid => sigmoid16(v),
    };
    let mut i = 0;
    // SAFETY: `i + LANES <= len` in the loop, and the masked tail touches only the `len - i`
    // values left, of both slices (the caller keeps their lengths equal).
    unsafe {
        while i + LANES <= x.len() {
            _mm512_storeu_ps(
                out.as_mut_ptr().add(i),
                f(_mm512_loadu_ps(x.as_ptr().add(i))),
            );
            i += LANES;
        }
        if i < x.len() {
            let mask = (1u16 << (x.len() - i)) - 1;
            let v = f(_mm512_maskz_loadu_ps(mask, x.as_ptr().add(i)));
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), mask, v);
        }
    }
}

/// The logistic sigmoid `1 / (1 + e⁻ˣ)` of 16 values (0 and 1 at the extremes, NaN stays NaN).
///
/// # Safety
/// AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn sigmoid16(x: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    _mm512_div_ps(
        one,
        _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))),
    )
}

//! `x Wᵀ` natively on x86-64 with AVX-512, for a few rows of `x` (a batched decode step).
//!
//! `gemm` 0.19 vectorises along the rows of `x` and packs `W`: with `W` held `[out, in]` and only
//! a few dozen rows, its blocks are mostly empty and the packing is most of the work (41–91 GFLOP/s
//! at 28 rows, against PyTorch's 125–217). Here each output is a dot product of a row of `x` with a
//! row of `W`, both contiguous: a tile of [`ROWS`] rows of `x` by [`COLS`] rows of `W` keeps its 16
//! sums in registers, so each vector of `W` loaded serves four rows of `x` and each of `x` four of
//! `W`, and nothing is packed. The tail of a row is a masked load, not scalar code.

use core::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_maskz_loadu_ps, _mm512_reduce_add_ps,
    _mm512_setzero_ps,
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

/// A 64-byte load that straddles two cache lines costs two, and `W` and `x` come as burn
/// allocated them: 64-byte alignment made the kernel 1.5× as fast at 28 rows. When rows are
/// whole vectors (`k` a multiple of 16) every row of `w` has its first 64-byte boundary the same
/// `head` values in (returned), and `x` is copied into `scratch` so that its rows' boundaries
/// fall there too; otherwise `x` is returned as it is, with a head of 0 (unaligned loads).
pub(crate) fn aligned_rows<'a>(
    x: &'a [f32],
    w: &[f32],
    k: usize,
    scratch: &'a mut Vec<f32>,
) -> (&'a [f32], usize) {
    let misaligned = |p: *const f32| (p as usize / 4) % LANES;
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
pub(crate) unsafe fn columns(
    x: &[f32],
    w: &[f32],
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
                    (4, 4) => tile::<4, 4>(xp, wp, k, head, yp, out.n),
                    (4, 3) => tile::<4, 3>(xp, wp, k, head, yp, out.n),
                    (4, 2) => tile::<4, 2>(xp, wp, k, head, yp, out.n),
                    (4, _) => tile::<4, 1>(xp, wp, k, head, yp, out.n),
                    (3, 4) => tile::<3, 4>(xp, wp, k, head, yp, out.n),
                    (3, 3) => tile::<3, 3>(xp, wp, k, head, yp, out.n),
                    (3, 2) => tile::<3, 2>(xp, wp, k, head, yp, out.n),
                    (3, _) => tile::<3, 1>(xp, wp, k, head, yp, out.n),
                    (2, 4) => tile::<2, 4>(xp, wp, k, head, yp, out.n),
                    (2, 3) => tile::<2, 3>(xp, wp, k, head, yp, out.n),
                    (2, 2) => tile::<2, 2>(xp, wp, k, head, yp, out.n),
                    (2, _) => tile::<2, 1>(xp, wp, k, head, yp, out.n),
                    (_, 4) => tile::<1, 4>(xp, wp, k, head, yp, out.n),
                    (_, 3) => tile::<1, 3>(xp, wp, k, head, yp, out.n),
                    (_, 2) => tile::<1, 2>(xp, wp, k, head, yp, out.n),
                    (_, _) => tile::<1, 1>(xp, wp, k, head, yp, out.n),
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
unsafe fn tile<const R: usize, const C: usize>(
    x: *const f32,
    w: *const f32,
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
unsafe fn accumulate<const R: usize, const C: usize>(
    acc: &mut [[__m512; C]; R],
    x: *const f32,
    w: *const f32,
    k: usize,
    mask: u16,
) {
    let mut wv = [_mm512_setzero_ps(); C];
    // SAFETY: the caller's contract; a full mask is a plain load.
    unsafe {
        let load = |p: *const f32| {
            if mask == u16::MAX {
                _mm512_loadu_ps(p)
            } else {
                _mm512_maskz_loadu_ps(mask, p)
            }
        };
        for (c, v) in wv.iter_mut().enumerate() {
            *v = load(w.wrapping_add(c * k));
        }
        for (r, sums) in acc.iter_mut().enumerate() {
            let xv = load(x.wrapping_add(r * k));
            for (s, v) in sums.iter_mut().zip(&wv) {
                *s = _mm512_fmadd_ps(xv, *v, *s);
            }
        }
    }
}

//! `x Wᵀ` for a few rows of `x` on the CPU backend: decode steps, batched or not.
//!
//! burn's CPU backend multiplies through `gemm` 0.19, which vectorises along the rows of `x` and
//! packs `W`; with few rows its blocks are mostly empty (natively), or it falls back to a scalar
//! loop (wasm). Here each output is a dot product of a row of `x` with a row of `W` (held
//! `[out, in]`, each row contiguous), reading `W` once for all the rows (`scalpel_kernels`:
//! SIMD128 in wasm, AVX-512 natively where the CPU has it). Its speed against gemm's is in the
//! README ("The decode step's products in wasm", and "Few-row products natively").

use burn::backend::Flex;
use burn::tensor::{DType, Tensor};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use super::cpu_buffers;

/// Up to this many rows the dot products were measured to beat `gemm`: in wasm 1.35–1.6× at 8
/// (`cargo xtask bench wasm-products`), natively 1.4–8.6× at 4–28 rows and 0.9–2.2× at 64, and
/// mostly slower from 128 (`cargo xtask bench gemm`).
#[cfg(target_arch = "wasm32")]
pub(crate) const MAX_ROWS: usize = 8;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const MAX_ROWS: usize = 64;

/// Whether the kernel takes a weight held as `dtype` in this build, on this CPU: float32 and f16
/// with SIMD128 in wasm (the page holds 16-bit weights as f16), float32, f16 and bfloat16 with
/// AVX-512 natively.
fn takes(dtype: DType) -> bool {
    if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
        matches!(dtype, DType::F32 | DType::F16)
    } else {
        matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
            && scalpel_kernels::native_kernel_available()
    }
}

/// `x Wᵀ` (`x` `[m, in]` float32, `weight` `[out, in]`) on the CPU backend, when `m` is at most
/// [`MAX_ROWS`], the kernel [`takes`] the weight and its rows are contiguous; `None` otherwise
/// (the caller then multiplies as usual). An f16 weight is widened exactly as it is read and `x`
/// stays float32, so the result is the float32 product of the weight's values.
pub(crate) fn product(x: &Tensor<2>, weight: &Tensor<2>) -> Option<Tensor<2>> {
    let ([m, k], [n, k_w]) = (x.dims(), weight.dims());
    if m > MAX_ROWS || k == 0 || k != k_w || !cpu_buffers::is_cpu_f32(x) || !takes(weight.dtype()) {
        return None;
    }
    let w = weight.clone().try_into_primitive::<Flex>().ok()?;
    let (w_start, w_end) = w.layout().contiguous_offsets()?;
    let x = cpu_buffers::contiguous(x)?;
    let x = cpu_buffers::f32s(&x)?;
    let mut y = vec![0.0; m * n];
    match w.dtype() {
        DType::F16 => {
            let w = w.storage::<f16>()[w_start..w_end].reinterpret_cast();
            scalpel_kernels::rows_times_transposed_f16(x, w, &mut y, k);
        }
        DType::BF16 => {
            let w = w.storage::<bf16>()[w_start..w_end].reinterpret_cast();
            scalpel_kernels::rows_times_transposed_bf16(x, w, &mut y, k);
        }
        _ => {
            let w = &w.storage::<f32>()[w_start..w_end];
            scalpel_kernels::rows_times_transposed(x, w, &mut y, k);
        }
    }
    Some(cpu_buffers::tensor(y, [m, n]))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, FloatDType, Tolerance};

    use super::*;

    /// Against burn's product, for widths with and without a tail, one to [`MAX_ROWS`] rows.
    #[test]
    fn matches_the_backend_product() {
        let device = Device::flex();
        for (m, k, n) in [(1, 576, 40), (3, 37, 9), (MAX_ROWS, 64, 17), (2, 15, 5)] {
            let x = Tensor::<2>::random([m + 1, k], Distribution::Normal(0.0, 1.0), &device);
            // Views that start inside their storage: the last rows of `x`, the middle rows of `w`.
            let x = x.slice([1..m + 1, 0..k]);
            let w = Tensor::<2>::random([n + 3, k], Distribution::Normal(0.0, 1.0), &device);
            let w = w.slice([2..n + 2, 0..k]);
            let Some(ours) = product(&x, &w) else {
                // Only a build without the kernel (no AVX-512 natively) declines float32.
                assert!(!takes(DType::F32), "declined {m}×{k}×{n}");
                continue;
            };
            let theirs = x.matmul(w.transpose());
            // float32 sums of up to 576 normal products in another order than gemm's.
            ours.into_data()
                .assert_approx_eq::<f32>(&theirs.into_data(), Tolerance::rel_abs(1e-5, 1e-4));
        }
    }

    /// A 16-bit weight (f16 3×40, bfloat16 5×64): the float32 product of its values, whatever
    /// product burn would take, where the kernel takes it.
    #[test]
    fn sixteen_bit_weights_multiply_as_their_values() {
        let device = Device::flex();
        for (held, dtype, rows, k) in [
            (FloatDType::F16, DType::F16, 3, 40),
            (FloatDType::BF16, DType::BF16, 5, 64),
        ] {
            let x = Tensor::<2>::random([rows, k], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::<2>::random([7, k], Distribution::Normal(0.0, 1.0), &device);
            let w16 = w.cast(held);
            let Some(ours) = product(&x, &w16) else {
                // In wasm (bfloat16), or natively without the kernel.
                assert!(!takes(dtype), "{dtype:?} declined");
                continue;
            };
            let theirs = x.matmul(w16.cast(FloatDType::F32).transpose());
            ours.into_data()
                .assert_approx_eq::<f32>(&theirs.into_data(), Tolerance::rel_abs(1e-5, 1e-5));
        }
    }

    /// More rows than pay, and a weight whose rows are not contiguous, go to the usual product.
    #[test]
    fn declines_what_it_does_not_speed_up() {
        let device = Device::flex();
        let w = Tensor::<2>::random([8, 16], Distribution::Default, &device);
        let many = Tensor::<2>::random([MAX_ROWS + 1, 16], Distribution::Default, &device);
        assert!(product(&many, &w).is_none());
        let x = Tensor::<2>::random([1, 8], Distribution::Default, &device);
        assert!(product(&x, &w.clone().transpose()).is_none());
        assert!(product(&x.clone().slice([0..1, 0..8]), &w.slice([0..8, 0..8])).is_none());
    }
}

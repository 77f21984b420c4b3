//! `x Wᵀ` for a few rows of `x` on the CPU backend in wasm: the decode step's products.
//!
//! burn's CPU backend multiplies through `gemm` 0.19, whose wasm build has SIMD128 kernels for
//! blocks of rows but a scalar loop for one to a few rows, and a decode step is all such products.
//! Here each output is a SIMD128 dot product of a row of `x` with a row of `W` (held `[out, in]`,
//! each row contiguous), reading `W` once for all the rows (`scalpel_kernels`); its speed against
//! gemm's is in the README ("The decode step's products in wasm"). Natively `gemm` already has
//! vector kernels for one row, so this is not used there.

use burn::backend::Flex;
use burn::tensor::{DType, Device, Tensor, TensorCreationOptions, TensorData};
use half::f16;
use half::slice::HalfFloatSliceExt;

/// Up to this many rows the dot products were measured to beat `gemm` in wasm (1.35–1.6× at 8;
/// `cargo xtask bench wasm-products`).
pub(crate) const MAX_ROWS: usize = 8;

/// `x Wᵀ` (`x` `[m, in]` float32, `weight` `[out, in]` float32 or f16) on the CPU backend, when `m`
/// is at most [`MAX_ROWS`] and the weight's rows are contiguous; `None` otherwise (the caller then
/// multiplies as usual). An f16 weight is widened exactly as it is read and `x` stays float32, so
/// the result is the float32 product of the weight's values.
pub(crate) fn product(x: &Tensor<2>, weight: &Tensor<2>) -> Option<Tensor<2>> {
    let ([m, k], [n, k_w]) = (x.dims(), weight.dims());
    if m > MAX_ROWS
        || k == 0
        || k != k_w
        || x.dtype() != DType::F32
        || !matches!(weight.dtype(), DType::F32 | DType::F16)
        || x.device() != Device::flex()
    {
        return None;
    }
    let w = weight.clone().try_into_primitive::<Flex>().ok()?;
    let (w_start, w_end) = w.layout().contiguous_offsets()?;
    let x = x.clone().try_into_primitive::<Flex>().ok()?;
    let x = match x.layout().contiguous_offsets() {
        Some(_) => x,
        None => x.to_contiguous(),
    };
    let (x_start, x_end) = x.layout().contiguous_offsets()?;
    let x = &x.storage::<f32>()[x_start..x_end];
    let mut y = vec![0.0; m * n];
    if w.dtype() == DType::F16 {
        let w = w.storage::<f16>()[w_start..w_end].reinterpret_cast();
        scalpel_kernels::rows_times_transposed_f16(x, w, &mut y, k);
    } else {
        let w = &w.storage::<f32>()[w_start..w_end];
        scalpel_kernels::rows_times_transposed(x, w, &mut y, k);
    }
    let options = TensorCreationOptions::new(Device::flex()).with_dtype(DType::F32);
    Some(Tensor::from_data(TensorData::new(y, [m, n]), options))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, FloatDType, Tolerance};

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
            let ours = product(&x, &w).expect("float32 on the CPU");
            let theirs = x.matmul(w.transpose());
            // float32 sums of up to 576 normal products in another order than gemm's.
            ours.into_data()
                .assert_approx_eq::<f32>(&theirs.into_data(), Tolerance::rel_abs(1e-5, 1e-4));
        }
    }

    /// An f16 weight: the float32 product of its values, whatever product burn would take.
    #[test]
    fn f16_weights_multiply_as_their_values() {
        let device = Device::flex();
        let x = Tensor::<2>::random([3, 40], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<2>::random([7, 40], Distribution::Normal(0.0, 1.0), &device);
        let w16 = w.cast(FloatDType::F16);
        let ours = product(&x, &w16).expect("f16 weights on the CPU");
        let theirs = x.matmul(w16.cast(FloatDType::F32).transpose());
        ours.into_data()
            .assert_approx_eq::<f32>(&theirs.into_data(), Tolerance::rel_abs(1e-5, 1e-5));
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

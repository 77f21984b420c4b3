//! `exp`, the sigmoid, SiLU and softmax on the CPU backend natively through
//! `scalpel_kernels::map` (16 values at a time with AVX-512, split over the threads), and burn's
//! own ops everywhere else (a GPU, wasm, a CPU without AVX-512). burn's CPU backend calls libm's
//! scalar `expf` for each value on one thread, about a tenth of a 512-token forward's time.

use burn::tensor::{Tensor, activation};
use scalpel_kernels::Elementwise;

use super::cpu_buffers;

/// `eˣ` of every value.
pub(crate) fn exp<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    mapped(Elementwise::Exp, &x).unwrap_or_else(|| x.exp())
}

/// The logistic sigmoid of every value.
pub(crate) fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    mapped(Elementwise::Sigmoid, &x).unwrap_or_else(|| activation::sigmoid(x))
}

/// `x · sigmoid(x)`.
pub(crate) fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match mapped(Elementwise::Sigmoid, &x) {
        Some(s) => x * s,
        None => activation::silu(x),
    }
}

/// Softmax along `dim`, its maximum subtracted first.
pub(crate) fn softmax<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    if !takes(&x) {
        return activation::softmax(x, dim);
    }
    let max = x.clone().max_dim(dim);
    let e = exp(x - max);
    e.clone() / e.sum_dim(dim)
}

/// Whether `x` is one the kernel maps: float32 on the CPU backend, natively with AVX-512.
fn takes<const D: usize>(x: &Tensor<D>) -> bool {
    !cfg!(target_arch = "wasm32")
        && scalpel_kernels::native_kernel_available()
        && cpu_buffers::is_cpu_f32(x)
}

/// `op` of every value of `x` through the kernel, or `None` where it does not take `x`.
fn mapped<const D: usize>(op: Elementwise, x: &Tensor<D>) -> Option<Tensor<D>> {
    if !takes(x) {
        return None;
    }
    let p = cpu_buffers::contiguous(x)?;
    let input = cpu_buffers::f32s(&p)?;
    let mut out = vec![0.0; input.len()];
    scalpel_kernels::map(op, input, &mut out);
    Some(cpu_buffers::tensor(out, x.dims()))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tolerance};

    use super::*;

    /// Each against burn's own op on the CPU backend, on a strided view too.
    #[test]
    fn match_the_backend_ops() {
        let device = Device::flex();
        let x = Tensor::<3>::random([2, 37, 50], Distribution::Normal(0.0, 4.0), &device);
        let strided = x.clone().swap_dims(1, 2);
        let tolerance = Tolerance::rel_abs(1e-6, 1e-6);
        for x in [x, strided] {
            exp(x.clone())
                .into_data()
                .assert_approx_eq::<f32>(&x.clone().exp().into_data(), tolerance);
            sigmoid(x.clone())
                .into_data()
                .assert_approx_eq::<f32>(&activation::sigmoid(x.clone()).into_data(), tolerance);
            silu(x.clone())
                .into_data()
                .assert_approx_eq::<f32>(&activation::silu(x.clone()).into_data(), tolerance);
            softmax(x.clone(), 2)
                .into_data()
                .assert_approx_eq::<f32>(&activation::softmax(x.clone(), 2).into_data(), tolerance);
        }
    }
}

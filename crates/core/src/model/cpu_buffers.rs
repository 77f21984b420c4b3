//! Float32 tensors of burn's CPU backend as plain slices and back, for `scalpel_kernels`.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Device, Tensor, TensorData};

/// Whether `x` is float32 on the CPU backend, the tensors the kernels read.
pub(crate) fn is_cpu_f32<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && x.device() == Device::flex()
}

/// `x`'s backend tensor with its values contiguous (copied only when `x` is a strided view);
/// `None` when `x` is not on the CPU backend.
pub(crate) fn contiguous<const D: usize>(x: &Tensor<D>) -> Option<FlexTensor> {
    let p = x.clone().try_into_primitive::<Flex>().ok()?;
    Some(match p.layout().contiguous_offsets() {
        Some(_) => p,
        None => p.to_contiguous(),
    })
}

/// The float32 values of a contiguous backend tensor, in order.
pub(crate) fn f32s(p: &FlexTensor) -> Option<&[f32]> {
    let (start, end) = p.layout().contiguous_offsets()?;
    Some(&p.storage::<f32>()[start..end])
}

/// `values` as a CPU-backend tensor of `shape`, taken as they are (`Tensor::from_data` would
/// copy them).
pub(crate) fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(values, shape)))
}

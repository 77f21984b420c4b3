//! Copying tensors back to the host. In the browser only the asynchronous read is allowed.

use burn::tensor::{DType, Tensor, TensorData};

use crate::error::{Error, Result};

/// As float32 values, whatever the tensor's element type (16-bit weights are widened exactly).
pub(crate) fn to_f32(data: TensorData) -> Result<Vec<f32>> {
    let data = if data.dtype() == DType::F32 {
        data
    } else {
        data.convert::<f32>()
    };
    data.try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("reading a tensor back: {e:?}")))
}

/// Blocking read (native only).
#[cfg(not(target_family = "wasm"))]
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    to_f32(
        t.try_into_data()
            .map_err(|e| Error::Device(format!("reading a tensor back: {e:?}")))?,
    )
}

/// Non-blocking read as held (browser and native): 16-bit tensors stay 16-bit.
pub async fn to_data_async<const D: usize>(t: Tensor<D>) -> Result<TensorData> {
    t.into_data_async()
        .await
        .map_err(|e| Error::Device(format!("reading a tensor back: {e:?}")))
}

/// Non-blocking read (browser and native).
pub async fn to_vec_async<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    to_f32(to_data_async(t).await?)
}

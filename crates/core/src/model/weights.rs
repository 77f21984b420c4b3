//! The decoder-block Linears as pruning sees them: listing, reading, masking and restoring.
//!
//! A mask never destroys anything: the first time a Linear is masked what its mask removes is
//! kept aside, every later mask starts again from the dense weight (so masks do not compound),
//! and [`Model::restore_dense`] puts the dense weights back. On the CPU only the pruned entries'
//! values are kept, as raw bytes in the held dtype, swapped out and back in host memory (at 50 %
//! sparsity half the Linear's bytes; a 7B model's masked Linears would otherwise need its weight
//! bytes twice over). On a GPU the whole dense weight is kept: putting values back by index is
//! one serial loop in burn's wgpu scatter kernel. Weights are handed out as float32 whatever
//! they are held in.

use burn::tensor::{Tensor, TensorCreationOptions, TensorData};

use super::precision::{bytes_per_weight, narrowed, widened};
use super::{KeepBits, LinearId, Model};
use crate::error::{Error, Result};

/// What a Linear's mask removed, to put it back.
#[derive(Debug)]
pub(super) enum Undo {
    /// The dense weight, as held (GPUs).
    Dense(Tensor<2>),
    /// Where the mask pruned and, in that (ascending) order, the bytes of the values it zeroed
    /// (CPU).
    Pruned { keep: KeepBits, values: Vec<u8> },
}

impl Undo {
    /// The dense weight, given the masked one.
    fn restore(&self, masked: Tensor<2>) -> Result<Tensor<2>> {
        match self {
            Undo::Dense(dense) => Ok(dense.clone()),
            Undo::Pruned { keep, values } => {
                // swap_pruned refuses element sizes other than 2 and 4.
                swap_pruned(masked, keep, |weights, size| match size {
                    2 => put_back::<2>(weights, keep, values),
                    _ => put_back::<4>(weights, keep, values),
                })
            }
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            Undo::Dense(dense) => {
                dense.dims().iter().product::<usize>() as u64 * bytes_per_weight(dense.dtype())
            }
            Undo::Pruned { keep, values } => values.len() as u64 + keep.packed().len() as u64,
        }
    }
}

/// Runs `swap(bytes, element_size)` over the bytes of a tensor in host memory (the CPU
/// backend) and returns the tensor with what it wrote.
fn swap_pruned(
    tensor: Tensor<2>,
    keep: &KeepBits,
    swap: impl FnOnce(&mut [u8], usize),
) -> Result<Tensor<2>> {
    let (device, dims, dtype) = (tensor.device(), tensor.dims(), tensor.dtype());
    debug_assert_eq!(keep.len(), dims[0] * dims[1]);
    if !matches!(dtype.size(), 2 | 4) {
        return Err(Error::Unsupported {
            what: "masked weight dtype",
            detail: format!("weights held as {dtype:?}"),
        });
    }
    let data = tensor
        .try_into_data()
        .map_err(|e| Error::Device(format!("reading a weight to mask it: {e:?}")))?;
    let mut bytes = data.into_bytes();
    swap(&mut bytes, dtype.size());
    Ok(Tensor::from_data(
        TensorData::from_bytes(bytes, dims, dtype),
        TensorCreationOptions::new(device).with_dtype(dtype),
    ))
}

/// Copies the `N` bytes of every entry `keep` prunes to `values` (when given), in ascending
/// order, and zeroes them (zero bytes are +0.0 in every float format).
fn take_pruned<const N: usize>(weights: &mut [u8], keep: &KeepBits, values: Option<&mut Vec<u8>>) {
    let (entries, _) = weights.as_chunks_mut::<N>();
    match values {
        Some(values) => keep.for_each_pruned(|i| {
            values.extend_from_slice(&entries[i]);
            entries[i] = [0; N];
        }),
        None => keep.for_each_pruned(|i| entries[i] = [0; N]),
    }
}

/// Writes `values` (`N` bytes each) back to the entries `keep` prunes, in ascending order.
fn put_back<const N: usize>(weights: &mut [u8], keep: &KeepBits, values: &[u8]) {
    let (entries, _) = weights.as_chunks_mut::<N>();
    let (values, _) = values.as_chunks::<N>();
    debug_assert_eq!(values.len() as u64, keep.pruned());
    let mut next = values.iter();
    keep.for_each_pruned(|i| {
        if let Some(value) = next.next() {
            entries[i] = *value;
        }
    });
}

impl Model {
    /// Every decoder-block Linear, layer by layer, in checkpoint order.
    pub fn linear_ids(&self) -> Vec<LinearId> {
        let spec = self.config.architecture.spec();
        (0..self.config.num_layers)
            .flat_map(|layer| spec.kinds().map(move |kind| LinearId { layer, kind }))
            .collect()
    }

    fn linear_ref(&self, id: LinearId) -> Result<&super::Linear> {
        self.arch().linear(id).ok_or_else(|| missing(id))
    }

    /// `[out, in]` of a block Linear.
    pub fn linear_shape(&self, id: LinearId) -> Result<[usize; 2]> {
        Ok(self.linear_ref(id)?.weight.dims())
    }

    /// The weight as the model uses it now (masked, if a mask is applied), as float32.
    pub fn weight(&self, id: LinearId) -> Result<Tensor<2>> {
        Ok(self.linear_ref(id)?.weight_f32())
    }

    /// The weight before any mask, as float32.
    pub fn dense_weight(&self, id: LinearId) -> Result<Tensor<2>> {
        let weight = self.linear_ref(id)?.weight.clone();
        Ok(widened(match self.unmasked.get(&id) {
            Some(undo) => undo.restore(weight)?,
            None => weight,
        }))
    }

    /// Sets the weight of `id` to its dense weight with the entries `keep` prunes zeroed
    /// (`keep` covers `[out, in]` row by row), keeping what undoes it.
    pub fn mask_linear(&mut self, id: LinearId, keep: &KeepBits) -> Result<()> {
        self.zero_pruned(id, keep, true)
    }

    /// [`Model::mask_linear`] for good: nothing is kept to undo it (a pruned export needs no
    /// undo, and at the 7B shape the pruned values of a 50 % mask are 6.5 GB), and afterwards the
    /// pruned weight is this Linear's dense weight.
    pub fn prune_linear(&mut self, id: LinearId, keep: &KeepBits) -> Result<()> {
        self.zero_pruned(id, keep, false)
    }

    fn zero_pruned(&mut self, id: LinearId, keep: &KeepBits, undoable: bool) -> Result<()> {
        let [rows, cols] = self.linear_shape(id)?;
        if keep.len() != rows * cols {
            return Err(Error::ShapeMismatch {
                name: format!("mask of {id}"),
                expected: vec![rows, cols],
                actual: vec![keep.len()],
            });
        }
        self.unmask_linear(id)?;
        let pruned = keep.pruned() as usize;
        if pruned == 0 {
            return Ok(());
        }
        let on_cpu = self.on_cpu();
        let linear = self.arch_mut().linear_mut(id).ok_or_else(|| missing(id))?;
        let dense = linear.weight.clone();
        let undo = if on_cpu {
            let mut values = Vec::new();
            linear.weight = swap_pruned(dense, keep, |weights, size| {
                let kept_values = undoable.then(|| {
                    values.reserve_exact(pruned * size);
                    &mut values
                });
                // swap_pruned refuses element sizes other than 2 and 4.
                match size {
                    2 => take_pruned::<2>(weights, keep, kept_values),
                    _ => take_pruned::<4>(weights, keep, kept_values),
                }
            })?;
            undoable.then(|| Undo::Pruned {
                keep: keep.clone(),
                values,
            })
        } else {
            let flags: Vec<f32> = keep.iter().map(f32::from).collect();
            let keep =
                Tensor::<2>::from_data(TensorData::new(flags, [rows, cols]), &dense.device());
            // 0 and 1 are exact in every weight dtype, so the product stays in the held one.
            linear.weight = dense.clone() * narrowed(keep, dense.dtype());
            undoable.then_some(Undo::Dense(dense))
        };
        if let Some(undo) = undo {
            self.unmasked.insert(id, undo);
        }
        Ok(())
    }

    /// Puts the dense weight of `id` back if a mask applies to it.
    /// The undo is dropped only once the weight is back, so a failed read-back loses nothing.
    fn unmask_linear(&mut self, id: LinearId) -> Result<()> {
        let Some(undo) = self.unmasked.get(&id) else {
            return Ok(());
        };
        let masked = self.linear_ref(id)?.weight.clone();
        let dense = undo.restore(masked)?;
        self.arch_mut()
            .linear_mut(id)
            .ok_or_else(|| missing(id))?
            .weight = dense;
        self.unmasked.remove(&id);
        Ok(())
    }

    /// Puts every dense weight back, undoing all masks.
    pub fn restore_dense(&mut self) {
        let masked: Vec<LinearId> = self.unmasked.keys().copied().collect();
        for id in masked {
            // Every key names a Linear this model has (mask_linear checked it); a CPU read-back
            // that fails leaves that Linear masked, its undo kept and `is_masked` true.
            let _ = self.unmask_linear(id);
        }
        self.join_linears();
    }

    /// Joins again the Linears that share a product where masking them dropped the join (GPU
    /// only; `joined.rs`). Until then they compute separately: correct, with more kernel launches.
    pub fn join_linears(&mut self) {
        self.arch_mut().join_linears();
    }

    /// The bytes kept aside to undo the masks applied now: the pruned entries' values and where
    /// they were (CPU), or the dense weights (GPU).
    pub fn mask_undo_bytes(&self) -> u64 {
        self.unmasked.values().map(Undo::bytes).sum()
    }

    /// Whether any mask is applied.
    pub fn is_masked(&self) -> bool {
        !self.unmasked.is_empty()
    }
}

fn missing(id: LinearId) -> Error {
    Error::InvalidInput(format!("this model has no {id}"))
}

//! The decoder-block Linears as pruning sees them: listing, reading, masking and restoring.
//!
//! A mask never destroys anything: the first time a Linear is masked its dense weight is kept
//! aside, every later mask is applied to that dense weight (so masks do not compound), and
//! [`Model::restore_dense`] puts the dense weights back. While masks are applied the masked
//! Linears take twice their memory (in the model's weight dtype). Weights are handed out as
//! float32 whatever they are held in.

use burn::tensor::Tensor;

use super::precision::{narrowed, widened};
use super::{LinearId, LinearKind, Model};
use crate::error::{Error, Result};

impl Model {
    /// Every decoder-block Linear, layer by layer, in checkpoint order.
    pub fn linear_ids(&self) -> Vec<LinearId> {
        let kinds = LinearKind::of(self.config.architecture);
        (0..self.config.num_layers)
            .flat_map(|layer| kinds.iter().map(move |&kind| LinearId { layer, kind }))
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
        Ok(widened(self.held_dense_weight(id)?))
    }

    /// The weight before any mask, as held.
    fn held_dense_weight(&self, id: LinearId) -> Result<Tensor<2>> {
        match self.unmasked.get(&id) {
            Some(w) => Ok(w.clone()),
            None => Ok(self.linear_ref(id)?.weight.clone()),
        }
    }

    /// Sets the weight of `id` to its dense weight times `keep` (`[out, in]`, 1 = kept, 0 = pruned).
    pub fn mask_linear(&mut self, id: LinearId, keep: Tensor<2>) -> Result<()> {
        let dense = self.held_dense_weight(id)?;
        if keep.dims() != dense.dims() {
            return Err(Error::ShapeMismatch {
                name: format!("mask of {id}"),
                expected: dense.dims().to_vec(),
                actual: keep.dims().to_vec(),
            });
        }
        // 0 and 1 are exact in every weight dtype, so the product stays in the held one.
        let masked = dense.clone() * narrowed(keep, dense.dtype());
        self.unmasked.entry(id).or_insert(dense);
        let linear = self.arch_mut().linear_mut(id).ok_or_else(|| missing(id))?;
        linear.weight = masked;
        Ok(())
    }

    /// Puts every dense weight back, undoing all masks.
    pub fn restore_dense(&mut self) {
        for (id, dense) in std::mem::take(&mut self.unmasked) {
            if let Some(linear) = self.arch_mut().linear_mut(id) {
                linear.weight = dense;
            }
        }
    }

    /// Whether any mask is applied.
    pub fn is_masked(&self) -> bool {
        !self.unmasked.is_empty()
    }
}

fn missing(id: LinearId) -> Error {
    Error::InvalidInput(format!("this model has no {id}"))
}

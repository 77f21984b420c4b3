//! What a traced forward keeps for the relevance backward: the input of every block and, for
//! the blocks a memory budget allows, the block's internals, so that the backward does not run
//! the block's forward a second time.
//!
//! Internals are the family's own type (its `BlockActs`), held opaquely here so that this file
//! knows nothing of any family; each family reads back what it recorded.

use std::any::Any;

use burn::tensor::Tensor;

/// A value recorded by a family for its own backward (block internals, position tables).
pub(crate) struct Kept(Box<dyn Any + Send + Sync>);

impl Kept {
    pub(crate) fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self(Box::new(value))
    }
}

/// The residual stream of one traced forward and the internals it kept.
pub(crate) struct Recording {
    /// Inputs of blocks 0..L, then the output of the last block.
    residuals: Vec<Tensor<3>>,
    /// Each block's internals, where kept; taken (and freed) by that block's backward.
    internals: Vec<Option<Kept>>,
    /// What every block of the forward shared (position tables, the causal mask).
    shared: Option<Kept>,
    /// Blocks from this one on keep their internals.
    keep_from: usize,
}

impl Recording {
    /// A recording of `layers` blocks that keeps the internals of the last `keep` of them.
    pub(crate) fn new(layers: usize, keep: usize) -> Self {
        Self {
            residuals: Vec::with_capacity(layers + 1),
            internals: (0..layers).map(|_| None).collect(),
            shared: None,
            keep_from: layers.saturating_sub(keep),
        }
    }

    /// Whether block `layer`'s forward should record its internals.
    pub(crate) fn keeps(&self, layer: usize) -> bool {
        layer >= self.keep_from
    }

    /// How many blocks keep their internals until their backward.
    pub(crate) fn kept_blocks(&self) -> usize {
        self.internals.len() - self.keep_from
    }

    pub(crate) fn push_residual(&mut self, x: Tensor<3>) {
        self.residuals.push(x);
    }

    pub(crate) fn keep_internals(&mut self, layer: usize, internals: Kept) {
        self.internals[layer] = Some(internals);
    }

    pub(crate) fn set_shared(&mut self, shared: Kept) {
        self.shared = Some(shared);
    }

    /// The output of the last block, once the forward has run.
    pub(crate) fn output(&self) -> Option<&Tensor<3>> {
        (self.residuals.len() > self.internals.len()).then(|| &self.residuals[self.internals.len()])
    }

    /// What block `layer`'s backward reads: its input, what the forward's blocks shared (`S`)
    /// and the block's internals (`A`), as the family recorded them, freeing the internals here.
    /// Where they were not kept, `rerun(input, &shared)` runs the block again; `shared_for(t)`
    /// builds the shared value for `t` positions if the forward did not record one.
    pub(crate) fn block_parts<S: Any + Clone, A: Any>(
        &mut self,
        layer: usize,
        shared_for: impl FnOnce(usize) -> S,
        rerun: impl FnOnce(Tensor<3>, &S) -> A,
    ) -> (Tensor<3>, S, A) {
        let input = self.residuals[layer].clone();
        let shared = match self.shared.as_ref().and_then(|s| s.0.downcast_ref::<S>()) {
            Some(s) => s.clone(),
            None => shared_for(input.dims()[1]),
        };
        let kept = self.internals[layer].take().map(|kept| {
            *kept.0.downcast::<A>().unwrap_or_else(|_| {
                panic!("block {layer}'s internals were recorded by another family")
            })
        });
        let internals = match kept {
            Some(a) => a,
            None => rerun(input.clone(), &shared),
        };
        (input, shared, internals)
    }
}

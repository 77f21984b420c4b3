//! Linears that read the same input (q, k and v; gate and up), also held as one matrix on a GPU so
//! that one product — one kernel launch instead of two or three — computes them all. A GPU step
//! of a small model is bound by its launches, not its arithmetic (README, "GPU kernel launches").
//!
//! Joining costs no memory: each Linear's weight becomes a view of its block of the joined rows.
//! A Linear whose weight is about to change (a mask) drops its join; the block then computes its
//! Linears one by one, which is correct and only slower, until [`Joined::join`] joins them again
//! (`Model::join_linears`, after masks are applied or restored).

use burn::tensor::{Device, Tensor};

use super::layers::{BlockRun, Linear, Products};

/// The join of a block's Linears that share an input, if they are joined.
#[derive(Debug, Default)]
pub(crate) struct Joined {
    joined: Option<Linear>,
}

impl Joined {
    /// Joins `parts` unless they already are, they live on the CPU (whose products gain nothing
    /// from it), their dtypes, widths or biases differ, or the joined matrix would have more than
    /// `max_entries` entries (a GPU holds a tensor in one storage binding, whose size is limited).
    pub fn join<const N: usize>(&mut self, parts: [&mut Linear; N], max_entries: usize) {
        if self.joined.is_some() {
            return;
        }
        let first = &parts[0];
        let (dtype, [_, cols], biased) = (
            first.weight.dtype(),
            first.weight.dims(),
            first.bias.is_some(),
        );
        if first.weight.device() == Device::flex()
            || parts.iter().any(|p| {
                p.weight.dtype() != dtype
                    || p.weight.dims()[1] != cols
                    || p.bias.is_some() != biased
            })
            || parts.iter().map(|p| p.weight.dims()[0]).sum::<usize>() * cols > max_entries
        {
            return;
        }
        let weight = Tensor::cat(parts.iter().map(|p| p.weight.clone()).collect(), 0);
        let bias =
            biased.then(|| Tensor::cat(parts.iter().filter_map(|p| p.bias.clone()).collect(), 0));
        let mut start = 0;
        for part in parts {
            let rows = start..start + part.weight.dims()[0];
            part.weight = weight.clone().slice([rows.clone(), 0..cols]);
            part.bias = bias.as_ref().map(|b| b.clone().slice([rows.clone()]));
            start = rows.end;
        }
        self.joined = Some(Linear { weight, bias });
    }

    /// Forgets the join: one of its Linears is about to change.
    pub fn unjoin(&mut self) {
        self.joined = None;
    }

    /// `x` through the joined Linears as one product, their outputs side by side in the order
    /// they were joined, when they are joined and `run` is a forward outside a relevance pass
    /// (else `None`). A relevance pass multiplies by each Linear: its backward reads each output
    /// as a whole tensor, and views of a product's columns spanning several tokens would be
    /// copied (5 copies a layer on SmolLM2, more than the launches joining saves).
    pub fn product(&self, x: Tensor<3>, run: BlockRun) -> Option<Tensor<3>> {
        let joined = self.joined.as_ref()?;
        (run == BlockRun::Forward(Products::Fast)).then(|| joined.apply(x, Products::Fast))
    }

    /// `x` through each of `parts` (the Linears this joins, in the order they were joined): one
    /// [`Self::product`] and views of its columns where there is one.
    pub fn apply<const N: usize>(
        &self,
        parts: [&Linear; N],
        x: Tensor<3>,
        run: BlockRun,
    ) -> [Tensor<3>; N] {
        let Some(y) = self.product(x.clone(), run) else {
            let (_, products) = run.parts();
            return parts.map(|p| p.apply(x.clone(), products));
        };
        let [b, t, _] = y.dims();
        let mut start = 0;
        parts.map(|p| {
            let columns = start..start + p.weight.dims()[0];
            start = columns.end;
            y.clone().slice([0..b, 0..t, columns])
        })
    }
}

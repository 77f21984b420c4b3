//! Picking the lowest-scored entries of a group exactly: ties go to the lower index, as a
//! stable ascending sort (Wanda's `torch.sort(..., stable=True)`) would order them. Masks
//! (`prune`) and sequential Wanda (`score`, which prunes while it scores) both select this way,
//! so it lives below both.

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::model::KeepBits;
use crate::unit::Group;

/// Marks entry `offset + i` of `keep` pruned for the `k` lowest `scores[i]` (all of them if
/// `k >= len`), in O(len). `scratch` is reused between calls to avoid an allocation per row.
pub(crate) fn prune_lowest(
    scores: &[f32],
    k: usize,
    keep: &mut KeepBits,
    offset: usize,
    scratch: &mut Vec<u32>,
) {
    let n = scores.len();
    if k == 0 {
        return;
    }
    if k >= n {
        (offset..offset + n).for_each(|i| keep.prune(i));
        return;
    }
    scratch.clear();
    scratch.extend(0..n as u32);
    let order = |a: &u32, b: &u32| -> Ordering {
        scores[*a as usize]
            .total_cmp(&scores[*b as usize])
            .then(a.cmp(b))
    };
    scratch.select_nth_unstable_by(k - 1, order);
    for &i in &scratch[..k] {
        keep.prune(offset + i as usize);
    }
}

/// Rejects sparsities outside `[0, 1)`.
pub fn check_sparsity(sparsity: f64) -> Result<()> {
    if (0.0..1.0).contains(&sparsity) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "sparsity must be in [0, 1), got {sparsity}"
        )))
    }
}

/// The `[rows, cols]` of a Linear's scores.
pub(crate) fn matrix_shape(scores: &HostTensor) -> Result<[usize; 2]> {
    match scores.shape[..] {
        [rows, cols] => Ok([rows, cols]),
        _ => Err(Error::InvalidInput(format!(
            "scores of shape {:?} are not a matrix",
            scores.shape
        ))),
    }
}

/// How many of `n` weights `sparsity` prunes: truncated, as Wanda's `int(n * sparsity)`.
pub(crate) fn count(n: usize, sparsity: f64) -> usize {
    (n as f64 * sparsity) as usize
}

/// The keep mask of one Linear for a row, layer or N:M group.
pub(crate) fn linear_keep(scores: &HostTensor, sparsity: f64, group: Group) -> Result<KeepBits> {
    let [rows, cols] = matrix_shape(scores)?;
    let mut keep = KeepBits::all_kept(rows * cols);
    let mut scratch = Vec::new();
    match group {
        Group::Row => {
            let k = count(cols, sparsity);
            for (row, s) in scores.data.chunks(cols).enumerate() {
                prune_lowest(s, k, &mut keep, row * cols, &mut scratch);
            }
        }
        Group::Layer => prune_lowest(
            &scores.data,
            count(rows * cols, sparsity),
            &mut keep,
            0,
            &mut scratch,
        ),
        Group::NofM { keep: n, block } => {
            if !cols.is_multiple_of(block) {
                return Err(Error::InvalidInput(format!(
                    "{n}:{block} needs the input width to be a multiple of {block}, but it is {cols}"
                )));
            }
            for (b, s) in scores.data.chunks(block).enumerate() {
                prune_lowest(s, block - n, &mut keep, b * block, &mut scratch);
            }
        }
        Group::Global => {
            return Err(Error::InvalidInput(
                "a global group ranks all Linears together; it has no per-Linear mask".into(),
            ));
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pruned(scores: &[f32], k: usize) -> Vec<u8> {
        let mut keep = KeepBits::all_kept(scores.len());
        prune_lowest(scores, k, &mut keep, 0, &mut Vec::new());
        keep.to_bytes()
    }

    #[test]
    fn lowest_are_pruned_and_ties_go_to_the_lower_index() {
        assert_eq!(pruned(&[3.0, 1.0, 2.0, 0.5], 2), vec![1, 0, 1, 0]);
        assert_eq!(pruned(&[1.0, 1.0, 1.0, 1.0], 2), vec![0, 0, 1, 1]);
        assert_eq!(pruned(&[2.0, 1.0, 1.0, 0.0], 2), vec![1, 0, 1, 0]);
        assert_eq!(pruned(&[1.0, 2.0], 0), vec![1, 1]);
        assert_eq!(pruned(&[1.0, 2.0], 5), vec![0, 0]);
    }
}

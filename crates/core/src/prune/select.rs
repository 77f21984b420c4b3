//! Picking the lowest-scored entries of a group exactly: ties go to the lower index, as a
//! stable ascending sort (Wanda's `torch.sort(..., stable=True)`) would order them.

use std::cmp::Ordering;

use super::KeepBits;

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

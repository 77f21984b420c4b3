//! Picking the lowest-scored entries of a group exactly: ties go to the lower index, as a
//! stable ascending sort (Wanda's `torch.sort(..., stable=True)`) would order them.

use std::cmp::Ordering;

/// Sets `keep[i] = 0` for the `k` lowest `scores` (all of them if `k >= len`), in O(len).
/// `scratch` is reused between calls to avoid an allocation per row.
pub(crate) fn prune_lowest(scores: &[f32], k: usize, keep: &mut [u8], scratch: &mut Vec<u32>) {
    debug_assert_eq!(scores.len(), keep.len());
    let n = scores.len();
    if k == 0 {
        return;
    }
    if k >= n {
        keep.fill(0);
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
        keep[i as usize] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pruned(scores: &[f32], k: usize) -> Vec<u8> {
        let mut keep = vec![1; scores.len()];
        prune_lowest(scores, k, &mut keep, &mut Vec::new());
        keep
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

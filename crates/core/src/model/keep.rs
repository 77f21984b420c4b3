//! Keep masks as bitsets: one bit per weight (or unit), 1 = kept. A 7B model's block Linears hold
//! 6.5 × 10⁹ weights: 6.5 GB as one byte each, 0.8 GB as bits.

/// Which of `len` entries are kept, packed eight to a byte, least significant bit first (the
/// layout of the `bits` of a circuit file). Bits past `len` are always 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepBits {
    len: usize,
    bytes: Vec<u8>,
}

impl KeepBits {
    /// `len` entries, all kept.
    pub fn all_kept(len: usize) -> Self {
        let mut bytes = vec![0xff; len.div_ceil(8)];
        if !len.is_multiple_of(8)
            && let Some(last) = bytes.last_mut()
        {
            *last = (1u8 << (len % 8)) - 1;
        }
        Self { len, bytes }
    }

    /// From one flag per entry (`true` = kept).
    pub fn from_flags(flags: impl IntoIterator<Item = bool>) -> Self {
        let mut bits = Self {
            len: 0,
            bytes: Vec::new(),
        };
        for kept in flags {
            if bits.len.is_multiple_of(8) {
                bits.bytes.push(0);
            }
            if kept {
                bits.bytes[bits.len / 8] |= 1 << (bits.len % 8);
            }
            bits.len += 1;
        }
        bits
    }

    /// From packed bytes as [`KeepBits::packed`] gives them; `None` unless there are exactly
    /// enough bytes for `len` entries.
    pub fn from_packed(mut bytes: Vec<u8>, len: usize) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) {
            return None;
        }
        if !len.is_multiple_of(8)
            && let Some(last) = bytes.last_mut()
        {
            *last &= (1u8 << (len % 8)) - 1;
        }
        Some(Self { len, bytes })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed bytes, least significant bit first.
    pub fn packed(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether entry `i` is kept. Panics past the end, as slice indexing does.
    pub fn is_kept(&self, i: usize) -> bool {
        assert!(i < self.len, "entry {i} of a {}-entry mask", self.len);
        self.bytes[i / 8] >> (i % 8) & 1 == 1
    }

    /// Marks entry `i` pruned.
    pub fn prune(&mut self, i: usize) {
        assert!(i < self.len, "entry {i} of a {}-entry mask", self.len);
        self.bytes[i / 8] &= !(1 << (i % 8));
    }

    /// Marks entry `i` kept.
    pub fn keep(&mut self, i: usize) {
        assert!(i < self.len, "entry {i} of a {}-entry mask", self.len);
        self.bytes[i / 8] |= 1 << (i % 8);
    }

    /// How many entries are kept.
    pub fn kept(&self) -> u64 {
        self.bytes.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// How many entries are pruned.
    pub fn pruned(&self) -> u64 {
        self.len as u64 - self.kept()
    }

    /// One flag per entry (`true` = kept).
    pub fn iter(&self) -> impl Iterator<Item = bool> + '_ {
        (0..self.len).map(|i| self.bytes[i / 8] >> (i % 8) & 1 == 1)
    }

    /// The indices of the pruned entries, ascending.
    pub fn pruned_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.bytes.iter().enumerate().flat_map(move |(byte, &b)| {
            let mut pruned = self.pruned_bits(byte, b);
            std::iter::from_fn(move || {
                (pruned != 0).then(|| {
                    let bit = pruned.trailing_zeros() as usize;
                    pruned &= pruned - 1;
                    byte * 8 + bit
                })
            })
        })
    }

    /// The pruned entries among byte `byte` (holding `b`) as set bits: padding bits past `len`
    /// are 0 but are not entries.
    fn pruned_bits(&self, byte: usize, b: u8) -> u8 {
        let valid = (self.len - byte * 8).min(8);
        !b & ((1u16 << valid) - 1) as u8
    }

    /// Calls `f` with the index of every pruned entry, ascending (the fast form of
    /// [`KeepBits::pruned_indices`], for loops over millions of entries).
    pub fn for_each_pruned(&self, mut f: impl FnMut(usize)) {
        for (byte, &b) in self.bytes.iter().enumerate() {
            if b == 0xff {
                continue;
            }
            let mut pruned = self.pruned_bits(byte, b);
            while pruned != 0 {
                f(byte * 8 + pruned.trailing_zeros() as usize);
                pruned &= pruned - 1;
            }
        }
    }

    /// One byte per entry, 1 = kept (the layout of mask files).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.iter().map(u8::from).collect()
    }

    /// Entries `start..start + len`.
    pub fn slice(&self, start: usize, len: usize) -> Self {
        Self::from_flags((start..start + len).map(|i| self.is_kept(i)))
    }

    /// Each entry `width` times in a row, and that row `rows` times: a unit mask over `[units]`
    /// as the weight mask `[rows, units × width]` of the input columns the units own.
    pub fn repeated(&self, rows: usize, width: usize) -> Self {
        Self::from_flags(
            (0..rows).flat_map(|_| self.iter().flat_map(move |k| std::iter::repeat_n(k, width))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_count_index_and_round_trip() {
        let flags: Vec<bool> = (0..21).map(|i| i % 3 != 0).collect();
        let bits = KeepBits::from_flags(flags.iter().copied());
        assert_eq!(bits.len(), 21);
        assert_eq!(bits.iter().collect::<Vec<_>>(), flags);
        assert_eq!(bits.pruned(), 7);
        assert_eq!(
            bits.pruned_indices().collect::<Vec<_>>(),
            vec![0, 3, 6, 9, 12, 15, 18]
        );
        let packed = KeepBits::from_packed(bits.packed().to_vec(), 21).unwrap();
        assert_eq!(packed, bits);
        assert!(KeepBits::from_packed(vec![0; 2], 21).is_none());
        assert_eq!(KeepBits::all_kept(21).pruned(), 0);
        assert_eq!(KeepBits::all_kept(21).kept(), 21);
        assert_eq!(KeepBits::all_kept(16).packed(), &[0xff, 0xff]);
        assert_eq!(bits.slice(2, 5).to_bytes(), vec![1, 0, 1, 1, 0]);
    }

    #[test]
    fn stray_bits_past_the_end_are_dropped() {
        let bits = KeepBits::from_packed(vec![0xff], 3).unwrap();
        assert_eq!(bits.kept(), 3);
        assert_eq!(bits.pruned(), 0);
    }

    #[test]
    fn units_expand_to_their_columns_in_every_row() {
        let heads = KeepBits::from_flags([true, false]);
        assert_eq!(
            heads.repeated(2, 3).to_bytes(),
            vec![1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]
        );
    }

    #[test]
    fn marking_entries() {
        let mut bits = KeepBits::all_kept(10);
        bits.prune(9);
        bits.prune(0);
        assert_eq!(bits.pruned_indices().collect::<Vec<_>>(), vec![0, 9]);
        let mut seen = Vec::new();
        bits.for_each_pruned(|i| seen.push(i));
        assert_eq!(seen, vec![0, 9]);
        bits.keep(0);
        assert!(bits.is_kept(0));
        assert_eq!(bits.pruned(), 1);
    }
}

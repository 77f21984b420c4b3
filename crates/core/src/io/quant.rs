//! Element types of GGUF tensors, their dequantization to f32 and (for the types Scalpel
//! exports) their encoding.
//!
//! Block layouts follow ggml (`ggml-common.h`): each quantized type stores a fixed number of
//! elements per block with one or two f16 scales. Everything is dequantized on load.

use half::{bf16, f16};

use crate::error::{Error, Result};

/// The ggml element types Scalpel reads. The discriminants are ggml's type ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q6K,
    BF16,
}

/// ggml's numeric type ids of the types Scalpel reads (and writes: F32, F16, BF16, Q8_0, Q4_0).
const TYPE_IDS: [(GgmlType, u32); 10] = [
    (GgmlType::F32, 0),
    (GgmlType::F16, 1),
    (GgmlType::Q4_0, 2),
    (GgmlType::Q4_1, 3),
    (GgmlType::Q5_0, 6),
    (GgmlType::Q5_1, 7),
    (GgmlType::Q8_0, 8),
    (GgmlType::Q4K, 12),
    (GgmlType::Q6K, 14),
    (GgmlType::BF16, 30),
];

impl GgmlType {
    /// Maps ggml's numeric type id; unknown or unsupported ids are an error naming the id.
    pub fn from_id(id: u32) -> Result<Self> {
        TYPE_IDS
            .iter()
            .find(|&&(_, i)| i == id)
            .map(|&(ty, _)| ty)
            .ok_or_else(|| Error::Unsupported {
                what: "GGUF tensor type",
                detail: format!(
                    "ggml type id {id} (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K)"
                ),
            })
    }

    /// ggml's numeric type id.
    pub fn id(self) -> u32 {
        TYPE_IDS
            .iter()
            .find(|&&(ty, _)| ty == self)
            .map_or(0, |&(_, id)| id)
    }

    /// (elements per block, bytes per block)
    pub fn block_layout(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (256, 144),
            Self::Q6K => (256, 210),
        }
    }

    /// Bytes needed for `n_elements`, or an error if the count is not a whole number of blocks.
    pub fn byte_size(self, n_elements: u64) -> Result<u64> {
        let (block, bytes) = self.block_layout();
        if !n_elements.is_multiple_of(block as u64) {
            return Err(Error::format(
                "GGUF",
                format!(
                    "{n_elements} elements is not a multiple of the {self:?} block size {block}"
                ),
            ));
        }
        (n_elements / block as u64)
            .checked_mul(bytes as u64)
            .ok_or_else(|| Error::format("GGUF", "tensor byte size overflows"))
    }
}

/// Encodes `values` as `ty` (F32, F16, BF16, Q8_0 or Q4_0), rounding as ggml's reference
/// quantizers do (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`). Quantized types need a whole
/// number of 32-element blocks.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>> {
    let size = ty.byte_size(values.len() as u64)? as usize;
    let mut out = Vec::with_capacity(size);
    match ty {
        GgmlType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        GgmlType::BF16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        GgmlType::Q8_0 => values
            .chunks_exact(32)
            .for_each(|b| quantize_q8_0(b, &mut out)),
        GgmlType::Q4_0 => values
            .chunks_exact(32)
            .for_each(|b| quantize_q4_0(b, &mut out)),
        other => {
            return Err(Error::Unsupported {
                what: "GGUF tensor type to write",
                detail: format!("{other:?} (Scalpel writes F32, F16, BF16, Q8_0 and Q4_0)"),
            });
        }
    }
    Ok(out)
}

// A scale d = max|x| / 127 and each element rounded to the nearest multiple of it.
fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

// A scale d = (the element of largest magnitude) / −8, elements as 4-bit offsets from −8;
// low nibbles hold elements 0..16, high nibbles elements 16..32.
fn quantize_q4_0(x: &[f32], out: &mut Vec<u8>) {
    let max = x
        .iter()
        .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    out.extend((0..16).map(|j| q(x[j]) | (q(x[j + 16]) << 4)));
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Dequantizes `data` (exactly `ty.byte_size(n)` bytes) into `n` f32 values.
pub fn dequantize(ty: GgmlType, data: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    let expected = ty.byte_size(n_elements as u64)?;
    if data.len() as u64 != expected {
        return Err(Error::format(
            "GGUF",
            format!(
                "{ty:?} tensor of {n_elements} elements needs {expected} bytes, got {}",
                data.len()
            ),
        ));
    }
    let (block_elems, block_bytes) = ty.block_layout();
    let mut out = vec![0f32; n_elements];
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        _ => {
            for (y, b) in out
                .chunks_exact_mut(block_elems)
                .zip(data.chunks_exact(block_bytes))
            {
                match ty {
                    GgmlType::Q4_0 => q4_0(b, y),
                    GgmlType::Q4_1 => q4_1(b, y),
                    GgmlType::Q5_0 => q5_0(b, y),
                    GgmlType::Q5_1 => q5_1(b, y),
                    GgmlType::Q8_0 => q8_0(b, y),
                    GgmlType::Q4K => q4_k(b, y),
                    GgmlType::Q6K => q6_k(b, y),
                    GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => unreachable!("handled above"),
                }
            }
        }
    }
    Ok(out)
}

// 32-element blocks: low nibbles hold elements 0..16, high nibbles elements 16..32.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        y[j] = ((b[2 + j] & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
    }
}

fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for j in 0..16 {
        y[j] = (b[4 + j] & 0x0F) as f32 * d + m;
        y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
    }
}

// Q5: a 32-bit mask `qh` supplies each element's fifth bit.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..16 {
        let hi0 = ((qh >> j) << 4) & 0x10;
        let hi1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((b[6 + j] & 0x0F) as u32 | hi0) as i32 - 16) as f32 * d;
        y[j + 16] = (((b[6 + j] >> 4) as u32 | hi1) as i32 - 16) as f32 * d;
    }
}

fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..16 {
        let hi0 = ((qh >> j) << 4) & 0x10;
        let hi1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((b[8 + j] & 0x0F) as u32 | hi0) as f32 * d + m;
        y[j + 16] = ((b[8 + j] >> 4) as u32 | hi1) as f32 * d + m;
    }
}

fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

// K-quants: 256-element super-blocks with 6-bit packed sub-block scales.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (chunk, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        for l in 0..32 {
            out[l] = d1 * (q[l] & 0x0F) as f32 - m1;
            out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn q6_k(b: &[u8], y: &mut [f32]) {
    let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for half_block in 0..2 {
        let (ql, qh) = (&ql[64 * half_block..], &qh[32 * half_block..]);
        let sc = &sc[8 * half_block..];
        let out = &mut y[128 * half_block..128 * (half_block + 1)];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

//! GGUF v2/v3 container parser (llama.cpp's model format), and a v3 writer.
//!
//! The parser never trusts a count or a length read from the file: every string, array, tensor
//! dimension and data range is checked against the bytes actually present before anything is
//! allocated, so a truncated or hostile header yields an error, not a panic or a huge allocation.

use std::collections::BTreeMap;

use super::quant::{GgmlType, dequantize};
use super::{FileBytes, HostTensor};
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;

/// A metadata value. Arrays keep their element values (vocabularies are arrays of strings).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// Any integer value as u64 (negative values are rejected).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v as u64),
            Self::U16(v) => Some(v as u64),
            Self::U32(v) => Some(v as u64),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v as f64),
            Self::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    /// GGUF's id of the value's type (what [`Reader::value`] reads back).
    fn type_id(&self) -> u32 {
        match self {
            Self::U8(_) => 0,
            Self::I8(_) => 1,
            Self::U16(_) => 2,
            Self::I16(_) => 3,
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::String(_) => 8,
            Self::Array(_) => 9,
            Self::U64(_) => 10,
            Self::I64(_) => 11,
            Self::F64(_) => 12,
        }
    }

    /// The value's bytes without its type id (arrays: element type, count, elements).
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::U8(v) => out.push(*v),
            Self::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::Bool(v) => out.push(u8::from(*v)),
            Self::String(v) => encode_string(v, out),
            Self::Array(items) => {
                // An empty array is written as one of strings.
                let elem = items.first().map_or(8, MetaValue::type_id);
                out.extend_from_slice(&elem.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| v.encode(out));
            }
            Self::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

fn encode_string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// One tensor of a GGUF file to write: its name, row-major shape (outermost first) and type.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorPlan {
    pub name: String,
    pub shape: Vec<usize>,
    pub ty: GgmlType,
}

/// A GGUF v3 file written in pieces: [`GgufWriter::header`] (metadata and tensor table, encoded
/// once), then each tensor's bytes in plan order through [`GgufWriter::tensor`], so a large
/// model is never encoded whole in memory and its tensors may be read back asynchronously in
/// between.
pub struct GgufWriter {
    plan: Vec<TensorPlan>,
    sizes: Vec<u64>,
    header: Vec<u8>,
}

impl GgufWriter {
    pub fn new(metadata: &[(String, MetaValue)], plan: Vec<TensorPlan>) -> Result<Self> {
        let sizes: Vec<u64> = plan
            .iter()
            .map(|t| {
                t.ty.byte_size(t.shape.iter().product::<usize>() as u64)
                    .map_err(|e| Error::InvalidInput(format!("tensor `{}`: {e}", t.name)))
            })
            .collect::<Result<_>>()?;
        let header = header(metadata, &plan, &sizes);
        Ok(Self {
            plan,
            sizes,
            header,
        })
    }

    pub fn plan(&self) -> &[TensorPlan] {
        &self.plan
    }

    /// The file's bytes in all.
    pub fn file_size(&self) -> u64 {
        self.header.len() as u64 + self.sizes.iter().map(|&s| aligned(s)).sum::<u64>()
    }

    /// Magic, version, the metadata in order and the tensor table, padded to the alignment.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Tensor `i`'s encoded bytes followed by the padding to the next tensor; an error unless
    /// they are exactly its type's size for its shape.
    pub fn tensor(&self, i: usize, mut bytes: Vec<u8>) -> Result<Vec<u8>> {
        let (t, size) = (&self.plan[i], self.sizes[i]);
        if bytes.len() as u64 != size {
            return Err(Error::InvalidInput(format!(
                "tensor `{}` came out as {} bytes, not the {size} its {:?} shape {:?} needs",
                t.name,
                bytes.len(),
                t.ty,
                t.shape
            )));
        }
        bytes.resize(aligned(size) as usize, 0);
        Ok(bytes)
    }
}

fn header(metadata: &[(String, MetaValue)], plan: &[TensorPlan], sizes: &[u64]) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&(plan.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        encode_string(key, &mut header);
        header.extend_from_slice(&value.type_id().to_le_bytes());
        value.encode(&mut header);
    }
    let mut offset = 0u64;
    for (t, &size) in plan.iter().zip(sizes) {
        encode_string(&t.name, &mut header);
        header.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        // GGUF lists dimensions innermost first.
        for &d in t.shape.iter().rev() {
            header.extend_from_slice(&(d as u64).to_le_bytes());
        }
        header.extend_from_slice(&t.ty.id().to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offset += aligned(size);
    }
    let len = header.len() as u64;
    header.resize(aligned(len) as usize, 0);
    header
}

fn aligned(len: u64) -> u64 {
    len.div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Row-major shape, outermost first (GGUF stores it innermost first; we reverse it).
    pub shape: Vec<usize>,
    pub ty: GgmlType,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parsed GGUF file that owns its bytes (tensors are dequantized one at a time, on demand).
#[derive(Debug)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    bytes: FileBytes,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(truncated(self.pos, n));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count that must fit in the remaining bytes at `min_bytes_each` bytes per item.
    fn count(&mut self, what: &str, min_bytes_each: usize) -> Result<usize> {
        let n = self.u64()?;
        let max = (self.remaining() / min_bytes_each.max(1)) as u64;
        if n > max {
            return Err(Error::format(
                "GGUF",
                format!(
                    "{what} count {n} cannot fit in the {} bytes left (file truncated or corrupt)",
                    self.remaining()
                ),
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String> {
        let len = self.count("string length", 1)?;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| {
            Error::format(
                "GGUF",
                format!("string at byte {} is not UTF-8", self.pos - len),
            )
        })
    }

    fn value(&mut self, ty: u32, depth: u8) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>()?[0]),
            1 => MetaValue::I8(self.array::<1>()?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array()?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array()?)),
            4 => MetaValue::U32(self.u32()?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array()?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(Error::format("GGUF", format!("invalid bool byte {b}"))),
            },
            8 => MetaValue::String(self.string()?),
            9 => {
                if depth > 0 {
                    return Err(Error::format(
                        "GGUF",
                        "nested metadata arrays are not allowed",
                    ));
                }
                let elem_ty = self.u32()?;
                let n = self.count("array length", min_value_size(elem_ty)?)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64()?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array()?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array()?)),
            other => {
                return Err(Error::format(
                    "GGUF",
                    format!("unknown metadata value type {other}"),
                ));
            }
        })
    }
}

fn min_value_size(ty: u32) -> Result<usize> {
    Ok(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8..=12 => 8,
        other => {
            return Err(Error::format(
                "GGUF",
                format!("unknown metadata array element type {other}"),
            ));
        }
    })
}

fn truncated(at: usize, wanted: usize) -> Error {
    Error::format(
        "GGUF",
        format!("file truncated: needed {wanted} more bytes at offset {at}"),
    )
}

impl GgufFile {
    /// Parses the header, metadata and tensor table, validating every tensor's byte range.
    pub fn parse(bytes: impl Into<FileBytes>) -> Result<Self> {
        let bytes: FileBytes = bytes.into();
        let mut r = Reader {
            bytes: &bytes,
            pos: 0,
        };
        if r.take(4)
            .map_err(|_| Error::format("GGUF", "file is shorter than the 4-byte magic"))?
            != MAGIC
        {
            return Err(Error::format(
                "GGUF",
                "not a GGUF file (bad magic; expected `GGUF`)",
            ));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::Unsupported {
                what: "GGUF version",
                detail: format!("{version} (supported: 2, 3)"),
            });
        }
        // A tensor entry takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
        let n_tensors = r.count("tensor", 24)?;
        // A metadata entry takes at least 8 (key length) + 4 (type) + 1 byte.
        let n_kv = r.count("metadata entry", 13)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::format(
                    "GGUF",
                    format!("tensor `{name}` has {n_dims} dimensions (1..=4 allowed)"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64()?);
            }
            let ty = GgmlType::from_id(r.u32()?)?;
            let offset = r.u64()?;
            raw.push((name, dims, ty, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 16 => a,
                _ => {
                    return Err(Error::format(
                        "GGUF",
                        format!("invalid general.alignment {v:?}"),
                    ));
                }
            },
        };
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let file_len = bytes.len() as u64;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ty, offset) in raw {
            let n = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| {
                    Error::format(
                        "GGUF",
                        format!("tensor `{name}` dimensions {dims:?} overflow"),
                    )
                })?;
            let size = ty
                .byte_size(n)
                .map_err(|e| Error::format("GGUF", format!("tensor `{name}`: {e}")))?;
            let start = data_start
                .checked_add(offset)
                .filter(|s| *s <= file_len)
                .ok_or_else(|| {
                    Error::format(
                        "GGUF",
                        format!("tensor `{name}` starts past the end of the file"),
                    )
                })?;
            let end = start.checked_add(size).filter(|e| *e <= file_len).ok_or_else(|| {
                Error::format(
                    "GGUF",
                    format!(
                        "tensor `{name}` ({n} elements of {ty:?}, {size} bytes at offset {start}) runs past the end of the {file_len}-byte file (truncated?)"
                    ),
                )
            })?;
            let shape = dims.iter().rev().map(|&d| d as usize).collect();
            tensors.push(TensorInfo {
                name,
                shape,
                ty,
                start: start as usize,
                end: end as usize,
            });
        }
        Ok(Self {
            version,
            metadata,
            tensors,
            bytes,
        })
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// The architecture named by `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get("general.architecture")
            .and_then(MetaValue::as_str)
            .ok_or_else(|| Error::format("GGUF", "missing `general.architecture` metadata"))
    }

    /// Dequantizes one tensor to f32.
    pub fn load(&self, info: &TensorInfo) -> Result<HostTensor> {
        let data = dequantize(
            info.ty,
            &self.bytes[info.start..info.end],
            info.n_elements(),
        )
        .map_err(|e| Error::format("GGUF", format!("tensor `{}`: {e}", info.name)))?;
        self.bytes.done_with(info.start..info.end);
        HostTensor::new(info.shape.clone(), data)
    }
}

/// A GGUF file presented under Hugging Face parameter names, with llama.cpp's Q/K row
/// permutation (Llama's files only) undone so that the model code sees the Hugging Face layout.
#[derive(Debug)]
pub struct GgufSource {
    file: GgufFile,
    /// (HF name, index into `file.tensors`)
    names: BTreeMap<String, usize>,
    /// `(num_heads, num_kv_heads)` when the q/k rows were interleaved by llama.cpp's converter.
    permuted_heads: Option<(usize, usize)>,
    /// HF names of the matrices the checkpoint holds transposed (GPT-2's `Conv1D`).
    transposed: std::collections::BTreeSet<String>,
}

impl GgufSource {
    /// `config` gives the head counts and, through its family's descriptor, llama.cpp's names
    /// and layouts; tensors the family does not have keep their llama.cpp names.
    pub fn new(file: GgufFile, config: &crate::ModelConfig) -> Result<Self> {
        let spec = config.architecture.spec();
        let gguf = spec.gguf.as_ref().ok_or_else(|| Error::Unsupported {
            what: "GGUF",
            detail: format!("{} models are not read from GGUF", spec.name),
        })?;
        let names: BTreeMap<String, usize> = file
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let name = gguf
                    .checkpoint_name(&t.name, spec.block_prefix)
                    .unwrap_or_else(|| t.name.clone());
                (name, i)
            })
            .collect();
        let transposed = names
            .keys()
            .filter(|name| {
                gguf.transposed
                    .iter()
                    .any(|m| name.ends_with(&format!(".{m}.weight")))
            })
            .cloned()
            .collect();
        Ok(Self {
            file,
            names,
            permuted_heads: gguf
                .permuted_qk
                .then_some((config.num_heads, config.num_kv_heads)),
            transposed,
        })
    }

    pub fn file(&self) -> &GgufFile {
        &self.file
    }
}

/// Undoes llama.cpp's interleaving of each head's rows (`convert_hf_to_gguf.py`'s `permute`):
/// GGUF row `h*d + 2i + j` holds Hugging Face row `h*d + j*d/2 + i`.
/// Llama's q/k rows between the checkpoint's layout and llama.cpp's, which interleaves each
/// head's two rotary halves pair by pair: `to_gguf` interleaves (export), else it undoes that
/// (reading).
pub(crate) fn permute_qk_rows(t: &mut HostTensor, n_heads: usize, to_gguf: bool) -> Result<()> {
    let (rows, cols) = (t.shape[0], t.shape.get(1).copied().unwrap_or(1));
    if n_heads == 0 || !rows.is_multiple_of(2 * n_heads) {
        return Err(Error::format(
            "GGUF",
            format!("{rows} Q/K rows do not split into {n_heads} heads"),
        ));
    }
    let head_dim = rows / n_heads;
    let half = head_dim / 2;
    let mut out = vec![0f32; t.data.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let interleaved = (h * head_dim + 2 * i + j) * cols;
                let split = (h * head_dim + j * half + i) * cols;
                let (src, dst) = if to_gguf {
                    (split, interleaved)
                } else {
                    (interleaved, split)
                };
                out[dst..dst + cols].copy_from_slice(&t.data[src..src + cols]);
            }
        }
    }
    t.data = out;
    Ok(())
}

impl super::WeightSource for GgufSource {
    fn names(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let &i = self.names.get(name)?;
        let mut shape = self.file.tensors[i].shape.clone();
        if self.transposed.contains(name) {
            shape.reverse();
        }
        Some(shape)
    }

    fn stored_type(&self, name: &str) -> Option<super::StoredType> {
        use super::StoredType;
        self.names
            .get(name)
            .map(|&i| match self.file.tensors[i].ty {
                GgmlType::F32 => StoredType::F32,
                GgmlType::F16 => StoredType::F16,
                GgmlType::BF16 => StoredType::Bf16,
                _ => StoredType::Quantized,
            })
    }

    fn load(&self, name: &str) -> Result<HostTensor> {
        let &i = self
            .names
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.into()))?;
        let mut t = self.file.load(&self.file.tensors[i])?;
        if self.transposed.contains(name) {
            t.transpose();
        }
        if let Some((num_heads, num_kv_heads)) = self.permuted_heads {
            if name.ends_with("self_attn.q_proj.weight") {
                permute_qk_rows(&mut t, num_heads, false)?;
            } else if name.ends_with("self_attn.k_proj.weight") {
                permute_qk_rows(&mut t, num_kv_heads, false)?;
            }
        }
        Ok(t)
    }
}

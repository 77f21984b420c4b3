//! Building blocks shared by the architectures: weight loading, Linear, norms, attention, KV cache.

use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorCreationOptions, TensorData};

use super::precision::{check_representable, widened};
use super::recording::{Kept, Recording};
use super::{Logits, Param};
use super::{elementwise, few_rows};

use crate::error::{Error, Result};
use crate::io::{HostTensor, WeightSource};

/// Moves named tensors from a [`WeightSource`] to the device, checking shapes and reporting progress.
/// Weight matrices go to the device as `weight_dtype`, everything else as float32.
pub(crate) struct Loader<'a> {
    source: &'a dyn WeightSource,
    device: &'a Device,
    weight_dtype: DType,
    progress: &'a mut dyn FnMut(usize, usize),
    done: usize,
    total: usize,
}

impl<'a> Loader<'a> {
    pub fn new(
        source: &'a dyn WeightSource,
        device: &'a Device,
        weight_dtype: DType,
        progress: &'a mut dyn FnMut(usize, usize),
    ) -> Self {
        let total = source.names().len();
        Self {
            source,
            device,
            weight_dtype,
            progress,
            done: 0,
            total,
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.source.contains(name)
    }

    /// Loads `name` as host data after checking its shape.
    pub fn host(&mut self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let shape = self
            .source
            .shape(name)
            .ok_or_else(|| Error::MissingTensor(name.into()))?;
        if shape != expected {
            return Err(Error::ShapeMismatch {
                name: name.into(),
                expected: expected.to_vec(),
                actual: shape,
            });
        }
        let t = self.source.load(name)?;
        self.done += 1;
        (self.progress)(self.done.min(self.total), self.total);
        Ok(t)
    }

    /// A tensor as float32 (norms, biases, tables).
    pub fn tensor<const D: usize>(
        &mut self,
        name: &str,
        expected: [usize; D],
    ) -> Result<Tensor<D>> {
        self.upload(name, expected, DType::F32)
    }

    /// A weight matrix (a Linear's or an embedding), held as the loader's weight dtype.
    pub fn matrix(&mut self, name: &str, expected: [usize; 2]) -> Result<Tensor<2>> {
        self.upload(name, expected, self.weight_dtype)
    }

    /// `name` on the device as `dtype`, refused if a value does not fit it.
    fn upload<const D: usize>(
        &mut self,
        name: &str,
        expected: [usize; D],
        dtype: DType,
    ) -> Result<Tensor<D>> {
        let t = self.host(name, &expected)?;
        self.to_device(name, t.data, expected, dtype)
    }

    fn to_device<const D: usize>(
        &self,
        name: &str,
        data: Vec<f32>,
        shape: [usize; D],
        dtype: DType,
    ) -> Result<Tensor<D>> {
        check_representable(name, &data, dtype)?;
        let options = TensorCreationOptions::new(self.device.clone()).with_dtype(dtype);
        Ok(Tensor::from_data(TensorData::new(data, shape), options))
    }

    /// Bias-free Linears stored as one matrix `{prefix}.weight` (Phi-3's `qkv_proj` and
    /// `gate_up_proj`), split into consecutive blocks of `rows` output rows each.
    pub fn fused_linears(
        &mut self,
        prefix: &str,
        rows: &[usize],
        in_features: usize,
    ) -> Result<Vec<Linear>> {
        let name = format!("{prefix}.weight");
        let all = self.host(&name, &[rows.iter().sum(), in_features])?;
        self.split_rows(&name, all.data, rows, in_features, None)
    }

    /// Biased Linears stored as GPT-2's `Conv1D`: `{prefix}.weight` `[in, out]` (the transpose
    /// of a Linear's) and `{prefix}.bias`, split into blocks of `rows` outputs (its fused
    /// `c_attn` holds q, k and v).
    pub fn conv1d_linears(
        &mut self,
        prefix: &str,
        rows: &[usize],
        in_features: usize,
    ) -> Result<Vec<Linear>> {
        let name = format!("{prefix}.weight");
        let out: usize = rows.iter().sum();
        let mut weight = self.host(&name, &[in_features, out])?;
        weight.transpose();
        let bias = self.host(&format!("{prefix}.bias"), &[out])?.data;
        self.split_rows(&name, weight.data, rows, in_features, Some(bias))
    }

    /// `weight` `[Σ rows, in]` (and `bias`) on the device as one Linear per block of rows.
    fn split_rows(
        &self,
        name: &str,
        weight: Vec<f32>,
        rows: &[usize],
        in_features: usize,
        bias: Option<Vec<f32>>,
    ) -> Result<Vec<Linear>> {
        let mut start = 0;
        rows.iter()
            .map(|&n| {
                let block = weight[start * in_features..(start + n) * in_features].to_vec();
                let bias = match &bias {
                    Some(b) => {
                        Some(self.to_device(name, b[start..start + n].to_vec(), [n], DType::F32)?)
                    }
                    None => None,
                };
                start += n;
                let weight = self.to_device(name, block, [n, in_features], self.weight_dtype)?;
                Ok(Linear { weight, bias })
            })
            .collect()
    }

    pub fn linear(
        &mut self,
        prefix: &str,
        out_features: usize,
        in_features: usize,
        bias: bool,
    ) -> Result<Linear> {
        let weight = self.matrix(&format!("{prefix}.weight"), [out_features, in_features])?;
        let bias = if bias {
            Some(self.tensor(&format!("{prefix}.bias"), [out_features])?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

/// The inverse of [`Loader::fused_linears`] (`conv1d: false`) and [`Loader::conv1d_linears`]
/// (`conv1d: true`): `parts` joined into one stored matrix `{prefix}.weight`, rows stacked (and
/// transposed to `[in, out]` for a `Conv1D`), and their biases, if any, into `{prefix}.bias`.
pub(crate) fn export_joined(
    prefix: &str,
    parts: &[&Linear],
    conv1d: bool,
    out: &mut Vec<(String, Param)>,
) {
    let joined = Tensor::cat(parts.iter().map(|l| l.weight.clone()).collect(), 0);
    let weight = if conv1d { joined.transpose() } else { joined };
    out.push((format!("{prefix}.weight"), Param::Matrix(weight)));
    let biases: Vec<Tensor<1>> = parts.iter().filter_map(|l| l.bias.clone()).collect();
    if !biases.is_empty() {
        out.push((
            format!("{prefix}.bias"),
            Param::Vector(Tensor::cat(biases, 0)),
        ));
    }
}

/// Runs `x` through `layers` blocks (`block(i, x, run)`) and, with a `recording`, records each
/// block's input, the internals of the blocks it keeps (`run` is then [`BlockRun::Record`]) and,
/// last, the final block's output (what a relevance pass starts from).
pub(crate) fn through_blocks(
    layers: usize,
    mut x: Tensor<3>,
    products: Products,
    mut recording: Option<&mut Recording>,
    mut block: impl FnMut(usize, Tensor<3>, BlockRun) -> (Tensor<3>, Option<Kept>),
) -> Tensor<3> {
    for i in 0..layers {
        let run = match recording.as_deref_mut() {
            Some(r) => {
                r.push_residual(x.clone());
                if r.keeps(i) {
                    BlockRun::Record
                } else {
                    BlockRun::Forward(products)
                }
            }
            None => BlockRun::Forward(products),
        };
        let (out, internals) = block(i, x, run);
        if let (Some(r), Some(internals)) = (recording.as_deref_mut(), internals) {
            r.keep_internals(i, internals);
        }
        x = out;
    }
    if let Some(r) = recording {
        r.push_residual(x.clone());
    }
    x
}

/// The Linears [`Loader::fused_linears`] or [`Loader::conv1d_linears`] split one matrix into, as
/// an array (as many as blocks of rows were asked for).
pub(crate) fn blocks<const N: usize>(linears: Vec<Linear>) -> [Linear; N] {
    linears
        .try_into()
        .unwrap_or_else(|v: Vec<Linear>| panic!("{} blocks where {N} were asked for", v.len()))
}

/// The MLP's element-wise activation of the learned-position decoders (OPT, GPT-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    Relu,
    /// GPT-2's `gelu_new`: `x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    GeluTanh,
}

impl Activation {
    pub fn forward(self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Activation::Relu => burn::tensor::activation::relu(x),
            Activation::GeluTanh => x.clone().mul_scalar(0.5) * gelu_tanh(x).add_scalar(1.0),
        }
    }
}

/// √(2/π) and the cubic term's weight in GPT-2's `gelu_new`.
pub(crate) const GELU_C: f64 = 0.797_884_560_802_865_4;
pub(crate) const GELU_A: f64 = 0.044_715;

/// `tanh(√(2/π) (x + 0.044715 x³))`, the part of `gelu_new` its forward and derivative share.
pub(crate) fn gelu_tanh(x: Tensor<3>) -> Tensor<3> {
    (x.clone() + x.powi_scalar(3).mul_scalar(GELU_A))
        .mul_scalar(GELU_C)
        .tanh()
}

/// `y = x Wᵀ + b` with `W` stored `[out, in]` as in Hugging Face checkpoints, in the model's
/// weight dtype (see `precision.rs`).
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor<2>,
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    /// The weight as float32, for computing with.
    pub fn weight_f32(&self) -> Tensor<2> {
        widened(self.weight.clone())
    }

    /// Appends `{prefix}.weight` (and `.bias`) to an export list.
    pub(crate) fn export(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        out.push((
            format!("{prefix}.weight"),
            Param::Matrix(self.weight.clone()),
        ));
        if let Some(b) = &self.bias {
            out.push((format!("{prefix}.bias"), Param::Vector(b.clone())));
        }
    }

    /// `x Wᵀ + b` as a float32 product (the weight widened if it is held 16-bit).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.apply(x, Products::Exact)
    }

    /// `x Wᵀ + b` computed as `products` says.
    pub(crate) fn apply(&self, x: Tensor<3>, products: Products) -> Tensor<3> {
        let [b, t, d_in] = x.dims();
        let [d_out, _] = self.weight.dims();
        let x = x.reshape([b * t, d_in]);
        // gemm multiplies a few rows slowly (natively its blocks are mostly empty, in wasm it runs
        // scalar code): `few_rows.rs` instead, which in wasm also reads an f16 weight as it is
        // held and keeps `x` float32 (what `Exact` asks, and closer than `Fast`).
        let y = if let Some(y) = few_rows::product(&x, &self.weight) {
            y
        } else if products == Products::Fast
            && self.weight.dtype() == DType::F16
            && (b * t <= CPU_F16_PRODUCT_MAX_ROWS || x.device() != Device::flex())
        {
            x.cast(FloatDType::F16)
                .matmul(self.weight.clone().transpose())
                .cast(FloatDType::F32)
        } else {
            x.matmul(self.weight_f32().transpose())
        };
        let y = match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<2>(),
            None => y,
        };
        y.reshape([b, t, d_out])
    }
}

/// Up to this many rows the CPU backend's f16 product beats widening (a decode step: 1.5 ms
/// against 2.5 ms for a TinyLlama MLP product); over it, its f16 GEMM is slower than widening
/// and an f32 product (72 ms against 55 ms at 128 rows; a 512-token perplexity window took
/// 1.8× as long). GPUs take the f16 product at every size.
const CPU_F16_PRODUCT_MAX_ROWS: usize = 16;

/// How a forward multiplies by weights held as f16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Products {
    /// An f16 × f16 product, summed in f32 by both backends: the weight read at half the bytes
    /// and never widened, the input and output rounded to f16 (on the CPU only for a few rows:
    /// [`CPU_F16_PRODUCT_MAX_ROWS`]; in wasm those rows go to `few_rows.rs`, which keeps them
    /// float32). Generation, perplexity, scoring forwards.
    Fast,
    /// The weight widened to f32 and an f32 product. Relevance passes: their rules divide by
    /// and subtract forward values, which f16 rounding moved far from LXT's.
    Exact,
}

impl Products {
    /// Exact for a forward that a relevance pass traces, fast otherwise.
    pub(crate) fn traced(traced: bool) -> Self {
        if traced { Self::Exact } else { Self::Fast }
    }
}

/// What a decoder block's forward is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockRun {
    /// A model forward: products as given, nothing recorded.
    Forward(Products),
    /// A traced forward keeping a block's internals, or a relevance pass re-running one block:
    /// exact products, its internals recorded.
    Record,
}

impl BlockRun {
    /// Whether to record the internals, and how to multiply.
    pub(crate) fn parts(self) -> (bool, Products) {
        match self {
            Self::Forward(products) => (false, products),
            Self::Record => (true, Products::Exact),
        }
    }
}

/// Llama's RMSNorm: `x / sqrt(mean(x²) + eps) ⊙ γ`.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Tensor<1>,
    pub eps: f64,
}

impl RmsNorm {
    pub(crate) fn export(&self, name: &str, out: &mut Vec<(String, Param)>) {
        out.push((name.to_string(), Param::Vector(self.weight.clone())));
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let inv_rms = self.inv_rms(x.clone());
        // γ first: burn's fusion then folds the whole norm into the reduction's kernel.
        x * self.weight.clone().unsqueeze::<3>() * inv_rms
    }

    /// `1 / sqrt(mean(x²) + eps)` per position: `[b, t, 1]`.
    pub(crate) fn inv_rms(&self, x: Tensor<3>) -> Tensor<3> {
        x.square().mean_dim(2).add_scalar(self.eps).sqrt().recip()
    }
}

/// OPT's LayerNorm with affine parameters.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
    pub eps: f64,
}

impl LayerNorm {
    pub(crate) fn export(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        out.push((
            format!("{prefix}.weight"),
            Param::Vector(self.weight.clone()),
        ));
        out.push((format!("{prefix}.bias"), Param::Vector(self.bias.clone())));
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (var, mean) = x.clone().var_mean_bias(2);
        let inv_std = var.add_scalar(self.eps).sqrt().recip();
        (x - mean) * inv_std * self.weight.clone().unsqueeze::<3>()
            + self.bias.clone().unsqueeze::<3>()
    }

    pub fn load(loader: &mut Loader, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: loader.tensor(&format!("{prefix}.weight"), [dim])?,
            bias: loader.tensor(&format!("{prefix}.bias"), [dim])?,
            eps,
        })
    }
}

/// Keys and values of every layer for the tokens seen so far: `[batch, kv_heads, capacity, head_dim]`,
/// of which the first `len` positions are filled. New positions are written in place, so a decode
/// step copies one position per layer instead of the whole cache.
///
/// A cache of several sequences ([`KvCache::stack`]) holds each one left-padded to the longest:
/// row `r`'s first `pads[r]` positions are padding that every query is masked from
/// ([`KvCache::mask`]), and its next token sits at position `len - pads[r]` ([`KvCache::row_starts`]).
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
    /// Left padding of each row: empty for a cache that was never stacked (every row starts at
    /// `len`), otherwise one entry per row.
    pads: Vec<usize>,
}

/// Positions the cache grows by when it is full (one copy of the cache per this many tokens).
const KV_GROWTH: usize = 256;

/// What a masked score becomes: finite, so that a row whose every key is hidden still has a
/// softmax without NaN, and `exp` of it is exactly 0 next to any visible key.
const HIDDEN: f32 = -1e30;

impl KvCache {
    /// A cache of no layers and no positions: what positions and masks from 0 are computed from
    /// (a re-run block, a relevance pass), and what a sequence's own cache becomes once it has
    /// moved into a batch. A forward cannot fill it.
    pub(crate) const EMPTY: Self = Self {
        layers: Vec::new(),
        len: 0,
        pads: Vec::new(),
    };

    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
            pads: Vec::new(),
        }
    }

    /// Number of positions already cached (of the longest row, in a stacked cache).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sequences `rows` (each a cache of one sequence) as one cache, each left-padded with
    /// zeros to the longest, so that their next tokens run as one batch.
    pub(crate) fn stack(rows: Vec<KvCache>) -> Result<Self> {
        let len = rows.iter().map(|r| r.len).max().unwrap_or(0);
        let num_layers = rows.first().map_or(0, |r| r.layers.len());
        let one_sequence = |r: &KvCache| {
            r.pads.len() <= 1
                && !r.is_empty()
                && r.layers.len() == num_layers
                && r.layers
                    .iter()
                    .all(|l| l.as_ref().is_some_and(|(k, _)| k.dims()[0] == 1))
        };
        if !rows.iter().all(one_sequence) {
            return Err(Error::InvalidInput(
                "only caches of one sequence each, filled and of the same model, stack".into(),
            ));
        }
        let pads: Vec<usize> = rows
            .iter()
            .map(|r| len - r.len + r.pads.first().copied().unwrap_or(0))
            .collect();
        // A row's first `filled` positions, after zeros up to `len`.
        let padded = |x: &Tensor<4>, filled: usize| {
            let [_, heads, _, d] = x.dims();
            let kept = x.clone().slice([0..1, 0..heads, 0..filled, 0..d]);
            if filled == len {
                kept
            } else {
                let options = TensorCreationOptions::new(x.device()).with_dtype(x.dtype());
                let zeros = Tensor::zeros([1, heads, len - filled, d], options);
                Tensor::cat(vec![zeros, kept], 2)
            }
        };
        let layers = (0..num_layers)
            .map(|layer| {
                let (keys, values): (Vec<_>, Vec<_>) = rows
                    .iter()
                    .filter_map(|row| {
                        let (k, v) = row.layers[layer].as_ref()?;
                        Some((padded(k, row.len), padded(v, row.len)))
                    })
                    .unzip();
                Some((Tensor::cat(keys, 0), Tensor::cat(values, 0)))
            })
            .collect();
        Ok(Self { layers, len, pads })
    }

    /// Keeps only rows `rows` (in that order) of a stacked cache, and drops the padding they all
    /// share, so that the longest row kept starts at position 0 again.
    pub(crate) fn keep_rows(&mut self, rows: &[usize]) {
        let pads: Vec<usize> = rows.iter().map(|&r| self.pad(r)).collect();
        let shared = pads.iter().copied().min().unwrap_or(0);
        let len = self.len;
        if let Some(device) = self.layers.iter().flatten().next().map(|(k, _)| k.device()) {
            let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [rows.len()]), &device);
            for (k, v) in self.layers.iter_mut().flatten() {
                let keep = |x: &Tensor<4>| {
                    let [_, heads, _, d] = x.dims();
                    x.clone().select(0, ids.clone()).slice([
                        0..rows.len(),
                        0..heads,
                        shared..len,
                        0..d,
                    ])
                };
                (*k, *v) = (keep(k), keep(v));
            }
        }
        self.len -= shared;
        self.pads = pads.into_iter().map(|p| p - shared).collect();
    }

    /// Left padding of row `r`.
    fn pad(&self, r: usize) -> usize {
        self.pads.get(r).copied().unwrap_or(0)
    }

    /// The position of each row's next token (one entry, `len`, when no row is padded).
    pub(crate) fn row_starts(&self) -> Vec<usize> {
        if self.pads.is_empty() {
            vec![self.len]
        } else {
            self.pads.iter().map(|p| self.len - p).collect()
        }
    }

    /// The additive mask of a forward of `t` new positions: [`causal_mask`] (with its `window`),
    /// plus each row's padding hidden from every query: `[1 or batch, 1, t, len + t]`, `None`
    /// when nothing is hidden.
    pub(crate) fn mask(
        &self,
        t: usize,
        window: Option<usize>,
        device: &Device,
    ) -> Option<Tensor<4>> {
        let s = self.len + t;
        let causal = causal_mask(t, s, window, device);
        if self.pads.iter().all(|&p| p == 0) {
            return causal;
        }
        let data: Vec<f32> = self
            .pads
            .iter()
            .flat_map(|&pad| (0..s).map(move |j| if j < pad { HIDDEN } else { 0.0 }))
            .collect();
        let padding = Tensor::from_data(TensorData::new(data, [self.pads.len(), 1, 1, s]), device);
        Some(match causal {
            Some(causal) => padding + causal,
            None => padding,
        })
    }

    /// Appends this step's keys and values for `layer` and returns all keys and values so far.
    /// The first forward keeps its tensors as they are (a one-shot forward never pays for
    /// spare capacity); the first append after it makes room for [`KV_GROWTH`] more positions.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        let (start, [b, heads, t, d]) = (self.len, k.dims());
        let end = start + t;
        let (k_all, v_all) = match self.layers[layer].take() {
            None => (k, v),
            Some((cached_k, cached_v)) => {
                let write = |cached: Tensor<4>, new: Tensor<4>| {
                    let cached = if cached.dims()[2] < end {
                        let mut grown =
                            Tensor::empty([b, heads, end + KV_GROWTH, d], &cached.device());
                        grown = grown.slice_assign(
                            [0..b, 0..heads, 0..start, 0..d],
                            cached.slice([0..b, 0..heads, 0..start, 0..d]),
                        );
                        grown
                    } else {
                        cached
                    };
                    cached.slice_assign([0..b, 0..heads, start..end, 0..d], new)
                };
                (write(cached_k, k), write(cached_v, v))
            }
        };
        let filled = |x: &Tensor<4>| x.clone().slice([0..b, 0..heads, 0..end, 0..d]);
        let out = (filled(&k_all), filled(&v_all));
        self.layers[layer] = Some((k_all, v_all));
        out
    }

    /// Marks `n` new positions as cached (called once per forward, after all layers).
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

/// Splits `[b, t, heads*d]` into `[b, heads, t, d]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, t, hd] = x.dims();
    x.reshape([b, t, heads, hd / heads]).swap_dims(1, 2)
}

/// Merges `[b, heads, t, d]` back into `[b, t, heads*d]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, t, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, t, h * d])
}

/// Causal scaled attention of `q` `[b, heads, t, d]` (already scaled) over `k`, `v`
/// `[b, kv_heads, s, d]`, where the `t` queries are the last `t` of the `s` positions and
/// `mask` is [`KvCache::mask`]: [`causal_mask`]`(t, s, window)` `[1, 1, t, s]`, or `[b, 1, t, s]`
/// with each row's padding hidden (`None` when every query sees every key).
///
/// Grouped-query attention without copying keys and values per head: the `heads / kv_heads`
/// query heads that share a KV head are stacked as rows of one matrix product.
pub fn causal_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<&Tensor<4>>,
) -> Tensor<4> {
    let Some(blocks) = QueryBlock::split(&q, &k, mask) else {
        return attention(q, k, v, mask);
    };
    let blocks = blocks
        .iter()
        .map(|block| {
            attention(
                block.queries(&q),
                block.keys(&k),
                block.keys(&v),
                Some(&block.mask),
            )
        })
        .collect();
    Tensor::cat(blocks, 2)
}

/// A block of consecutive queries of a causal attention on the CPU and the keys its last query
/// sees. On the CPU, long forwards and their backward attend block by block: a causal attention
/// then skips almost half of the scores, their softmax and their products with V (all hidden by
/// the mask anyway, and each a slow underflow in `exp`; README, Benchmark). GPUs keep one
/// product, as more blocks would be more kernel launches.
pub(crate) struct QueryBlock {
    /// Query positions `[start, end)` of the `t` in the pass.
    pub queries: std::ops::Range<usize>,
    /// Keys `0..seen` are all the block's queries can see.
    pub seen: usize,
    /// The causal mask's block `[1, 1, queries, seen]`.
    pub mask: Tensor<4>,
}

/// Query positions per [`QueryBlock`].
const CPU_ATTENTION_BLOCK: usize = 64;

impl QueryBlock {
    /// The blocks of `q` `[b, heads, t, d]` over `k` `[b, kv_heads, s, d]` (the queries the last
    /// `t` of the `s` positions) under a causal `mask`; `None` where one product is better: no
    /// mask, under two blocks of queries, or not on the CPU.
    pub fn split(q: &Tensor<4>, k: &Tensor<4>, mask: Option<&Tensor<4>>) -> Option<Vec<Self>> {
        let ([.., t, _], [.., s, _]) = (q.dims(), k.dims());
        let mask = mask?;
        // A mask per row (sequences of a batch padded differently) keeps one product.
        if t < 2 * CPU_ATTENTION_BLOCK || q.device() != Device::flex() || mask.dims()[0] > 1 {
            return None;
        }
        Some(
            (0..t)
                .step_by(CPU_ATTENTION_BLOCK)
                .map(|start| {
                    let queries = start..(start + CPU_ATTENTION_BLOCK).min(t);
                    let seen = s - t + queries.end;
                    Self {
                        mask: mask.clone().slice([0..1, 0..1, queries.clone(), 0..seen]),
                        queries,
                        seen,
                    }
                })
                .collect(),
        )
    }

    /// The block's rows of `x` `[b, heads, t, d]` (queries, or a gradient at the output).
    pub fn queries(&self, x: &Tensor<4>) -> Tensor<4> {
        let [b, heads, _, d] = x.dims();
        x.clone()
            .slice([0..b, 0..heads, self.queries.clone(), 0..d])
    }

    /// The keys (or values) `[b, kv_heads, s, d]` the block sees.
    pub fn keys(&self, x: &Tensor<4>) -> Tensor<4> {
        let [b, kv_heads, _, d] = x.dims();
        x.clone().slice([0..b, 0..kv_heads, 0..self.seen, 0..d])
    }

    /// `part` `[b, kv_heads, seen, d]` (a key or value gradient from the block) added to the
    /// first `seen` positions of `sum` `[b, kv_heads, s, d]`.
    pub fn add_to_keys(&self, sum: Tensor<4>, part: Tensor<4>) -> Tensor<4> {
        let [b, kv_heads, _, d] = sum.dims();
        let seen = [0..b, 0..kv_heads, 0..self.seen, 0..d];
        // The added part first, so that `sum` is no longer shared when it is written and the
        // CPU backend writes it in place instead of copying it.
        let added = sum.clone().slice(seen.clone()) + part;
        sum.slice_assign(seen, added)
    }
}

/// [`causal_attention`] in one product.
fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<&Tensor<4>>) -> Tensor<4> {
    let [b, heads, t, d] = q.dims();
    let scores = attention_scores(grouped_queries(q, k.dims()[1]), k, mask);
    // The softmax normalised after the product with V rather than before: the division then
    // touches d values per query instead of s, and fusion folds it into the product's output
    // (a decode step launches one kernel less per layer). burn's fused `attention` op was tried
    // for the single-query case: on lavapipe its autotune picks the unfused fallback, 6 more
    // launches per layer than this.
    let max = scores.clone().max_dim(3);
    let weights = elementwise::exp(scores - max);
    let sums = weights.clone().sum_dim(3);
    (weights.matmul(v) / sums).reshape([b, heads, t, d])
}

/// `[b, heads, t, d]` as `[b, kv_heads, group · t, d]`: each KV head's query heads stacked (the
/// head order of Hugging Face's `repeat_kv`, which repeats each KV head for consecutive heads).
pub(crate) fn grouped_queries(x: Tensor<4>, kv_heads: usize) -> Tensor<4> {
    let [b, heads, t, d] = x.dims();
    x.reshape([b, kv_heads, heads / kv_heads * t, d])
}

/// Softmax attention probabilities of grouped queries over `k`: `[b, kv_heads, group · t, s]`.
pub(crate) fn attention_probs(
    grouped_q: Tensor<4>,
    k: Tensor<4>,
    mask: Option<&Tensor<4>>,
) -> Tensor<4> {
    elementwise::softmax(attention_scores(grouped_q, k, mask), 3)
}

/// Masked attention scores of grouped queries over `k`: `[b, kv_heads, group · t, s]`.
fn attention_scores(grouped_q: Tensor<4>, k: Tensor<4>, mask: Option<&Tensor<4>>) -> Tensor<4> {
    let scores = grouped_q.matmul(k.swap_dims(2, 3));
    match mask {
        Some(mask) => {
            let [b, kv_heads, rows, s] = scores.dims();
            let [_, _, t, _] = mask.dims();
            let masked =
                scores.reshape([b, kv_heads, rows / t, t, s]) + mask.clone().unsqueeze_dim::<5>(2);
            masked.reshape([b, kv_heads, rows, s])
        }
        None => scores,
    }
}

/// Additive mask `[1, 1, t, s]`: query i (absolute position s - t + i) may not see keys after it,
/// nor, with a sliding `window`, keys `window` or more positions before it (Mistral's window of
/// w keys: itself and the w - 1 before). `None` when nothing is hidden (a single query within
/// the window). Built once per forward and shared by every layer.
pub(crate) fn causal_mask(
    t: usize,
    s: usize,
    window: Option<usize>,
    device: &Device,
) -> Option<Tensor<4>> {
    if t == 1 && window.is_none_or(|w| s <= w) {
        return None;
    }
    let past = s - t;
    let hidden = |i: usize, j: usize| j > past + i || window.is_some_and(|w| j + w <= past + i);
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..s).map(move |j| if hidden(i, j) { HIDDEN } else { 0.0 }))
        .collect();
    Some(Tensor::from_data(
        TensorData::new(data, [1, 1, t, s]),
        device,
    ))
}

/// Rows of the embedding `table` for each token: `[batch, seq, width]`, as float32.
pub fn embed(table: &Tensor<2>, tokens: Tensor<2, Int>) -> Tensor<3> {
    let [b, t] = tokens.dims();
    let [_, width] = table.dims();
    widened(table.clone().select(0, tokens.reshape([b * t]))).reshape([b, t, width])
}

/// The positions whose logits are wanted: all, or only the last (generation).
pub fn keep_positions(x: Tensor<3>, logits: Logits) -> Tensor<3> {
    let [b, t, d] = x.dims();
    match logits {
        Logits::All => x,
        Logits::Last => x.slice([0..b, t - 1..t, 0..d]),
    }
}

/// Rows of the output embedding `[vocab, d]` (the LM head's weight, or the input embedding when
/// tied) for `tokens`: `[n, d]`, as float32.
pub fn output_rows(
    head: Option<&Linear>,
    embedding: &Tensor<2>,
    tokens: Tensor<1, Int>,
) -> Tensor<2> {
    let table = head.map_or(embedding, |h| &h.weight);
    widened(table.clone().select(0, tokens))
}

/// Logits over the vocabulary: the LM head, or the embedding matrix itself when tied.
pub fn vocab_logits(
    head: Option<&Linear>,
    embedding: &Tensor<2>,
    x: Tensor<3>,
    products: Products,
) -> Tensor<3> {
    match head {
        Some(head) => head.apply(x, products),
        None => Linear {
            weight: embedding.clone(),
            bias: None,
        }
        .apply(x, products),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use super::*;

    /// Blocked attention (the CPU's, for long forwards) against one product, for prompts from
    /// one block short of blocking to several uneven blocks, after cached keys, with grouped
    /// queries and a sliding window.
    #[test]
    fn blocked_attention_is_one_product() {
        let device = Device::flex();
        for (t, past, window) in [
            (127, 0, None),
            (128, 0, None),
            (200, 0, None),
            (150, 7, None),
            (190, 3, Some(50)),
        ] {
            let s = past + t;
            let q = Tensor::<4>::random([2, 6, t, 8], Distribution::Default, &device);
            let k = Tensor::<4>::random([2, 2, s, 8], Distribution::Default, &device);
            let v = Tensor::<4>::random([2, 2, s, 8], Distribution::Default, &device);
            let mask = causal_mask(t, s, window, &device);
            let blocked = causal_attention(q.clone(), k.clone(), v.clone(), mask.as_ref());
            let whole = attention(q, k, v, mask.as_ref());
            let gap: f32 = (blocked - whole).abs().max().into_scalar();
            assert!(gap < 1e-5, "t {t}, past {past}, window {window:?}: {gap}");
        }
    }
}

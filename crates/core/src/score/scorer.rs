//! The step-wise scoring job: one relevance block, or one sample's forward, per
//! [`Scorer::step`], so callers can show progress, yield to an event loop or cancel.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::{Explained, ReferenceSet, ScoreInfo, ScoreMethod, Scores};
use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::model::{LinearId, Model};
use crate::relevance::{
    MemoryLimits, RelevancePass, RuleSet, Target, Trace, WeightRelevanceAccumulator, WeightSums,
    memory_needed,
};
use crate::unit::Granularity;

enum Work<'m> {
    Magnitude,
    /// Input statistics of every Linear (Wanda, activation).
    Inputs(InputStats),
    Relevance {
        rules: RuleSet,
        accumulator: WeightRelevanceAccumulator,
        pass: Option<Box<RelevancePass<'m>>>,
    },
}

/// Σ x², Σ |x| per input column of every Linear, and the tokens seen.
#[derive(Default)]
pub(super) struct InputStats {
    pub squares: BTreeMap<LinearId, Tensor<1>>,
    pub abs: BTreeMap<LinearId, Tensor<1>>,
    pub tokens: usize,
}

/// Scores a dense model over a reference set.
pub struct Scorer<'m> {
    model: &'m Model,
    method: ScoreMethod,
    granularity: Granularity,
    reference: Option<ReferenceSet>,
    limits: MemoryLimits,
    /// Where per-weight sums go when they do not fit in `limits` (native).
    #[cfg(not(target_family = "wasm"))]
    scratch: Option<crate::relevance::Scratch>,
    next_sample: usize,
    work: Work<'m>,
}

impl<'m> Scorer<'m> {
    /// `reference` is required by every method but magnitude. Sequential Wanda prunes while it
    /// scores, so it is [`super::wanda_sequential`], not a `Scorer`.
    pub fn new(
        model: &'m Model,
        method: ScoreMethod,
        reference: Option<ReferenceSet>,
        limits: MemoryLimits,
    ) -> Result<Self> {
        Self::at(model, method, Granularity::Weights, reference, limits)
    }

    /// A scorer of neurons or heads (or weights): relevance passes then skip the per-weight
    /// products, and the finished scores have one entry per unit.
    pub fn at(
        model: &'m Model,
        method: ScoreMethod,
        granularity: Granularity,
        reference: Option<ReferenceSet>,
        limits: MemoryLimits,
    ) -> Result<Self> {
        if model.is_masked() {
            return Err(Error::InvalidInput(
                "the model has a mask applied: restore the dense model before scoring it".into(),
            ));
        }
        if method.uses_reference() && reference.as_ref().is_none_or(|r| r.samples.is_empty()) {
            return Err(Error::InvalidInput(format!(
                "{} scores need a reference set",
                method.name()
            )));
        }
        let weights = granularity == Granularity::Weights;
        let work = match method {
            ScoreMethod::Magnitude => Work::Magnitude,
            ScoreMethod::Wanda | ScoreMethod::Activation => Work::Inputs(InputStats::default()),
            ScoreMethod::Lrp | ScoreMethod::LrpSigned => {
                Work::relevance(RuleSet::AttnLrp, weights, WeightSums::Signed)
            }
            // Σ |R| only (half the memory); `keeping_signed_sums` adds Σ R for `lrp` as well.
            ScoreMethod::LrpAbs => Work::relevance(RuleSet::AttnLrp, weights, WeightSums::Abs),
            ScoreMethod::Gradient => {
                Work::relevance(RuleSet::Gradient, weights, WeightSums::Signed)
            }
            ScoreMethod::WandaSequential => {
                return Err(Error::InvalidInput(
                    "sequential Wanda prunes while it scores: use `wanda_sequential`".into(),
                ));
            }
            ScoreMethod::Random => {
                return Err(Error::InvalidInput(
                    "random scores need no model pass: use `Scores::random`".into(),
                ));
            }
        };
        if let Some(r) = &reference {
            let longest = r.samples.iter().map(Vec::len).max().unwrap_or(0);
            limits.check(
                &model.config,
                longest,
                matches!(work, Work::Relevance { .. }),
            )?;
        }
        Ok(Self {
            model,
            method,
            granularity,
            reference,
            limits,
            #[cfg(not(target_family = "wasm"))]
            scratch: None,
            next_sample: 0,
            work,
        })
    }

    /// Per-weight sums that would not fit in the memory limit are kept in a scratch file in
    /// `scratch.dir` instead, when its disk has room (the same float32 sums, so the same
    /// scores; each sample reads and writes every Linear's sums once). Call before stepping.
    #[cfg(not(target_family = "wasm"))]
    pub fn spilling_to(mut self, scratch: crate::relevance::Scratch) -> Self {
        self.scratch = Some(scratch);
        self
    }

    /// Whether this scorer's per-weight sums live in a scratch file (decided at its first step).
    pub fn spilled(&self) -> bool {
        match &self.work {
            Work::Relevance { accumulator, .. } => accumulator.spilled(),
            _ => false,
        }
    }

    /// What to tell the user once the per-weight sums went to a scratch file (`None` while they
    /// are in memory): where, and how to move it.
    pub fn spill_notice(&self) -> Option<String> {
        if !self.spilled() {
            return None;
        }
        #[cfg(not(target_family = "wasm"))]
        let place = self
            .scratch
            .as_ref()
            .map_or(String::new(), |s| format!(" in {}", s.dir.display()));
        #[cfg(target_family = "wasm")]
        let place = String::new();
        Some(format!(
            "per-weight sums do not fit in memory: kept in a scratch file{place} (set TMPDIR to \
             move it), read and written once per sample"
        ))
    }

    fn samples_total(&self) -> usize {
        match (&self.work, &self.reference) {
            (Work::Magnitude, _) | (_, None) => 0,
            (_, Some(r)) => r.samples.len(),
        }
    }

    /// An `lrp-abs` scorer that also keeps `Σ R` per weight, so that `lrp` scores come from the
    /// same pass ([`Scorer::scores`]) at twice the accumulators' memory. Call before stepping;
    /// a no-op for other methods.
    pub fn keeping_signed_sums(mut self) -> Self {
        if let Work::Relevance { accumulator, .. } = &mut self.work
            && accumulator.sums() == WeightSums::Abs
            && self.next_sample == 0
        {
            *accumulator = WeightRelevanceAccumulator::keeping(WeightSums::Both);
        }
        self
    }

    /// The method this scorer was made for.
    pub fn method(&self) -> ScoreMethod {
        self.method
    }

    pub fn samples_done(&self) -> usize {
        self.next_sample
    }

    /// `(done, total)` in steps: blocks of samples for relevance, samples for Wanda.
    pub fn progress(&self) -> (usize, usize) {
        let total = self.samples_total();
        match &self.work {
            Work::Relevance { pass, .. } => {
                let layers = self.model.config.num_layers;
                let within = pass.as_ref().map_or(0, |p| p.layers_done());
                (self.next_sample * layers + within, total * layers)
            }
            _ => (self.next_sample, total),
        }
    }

    pub fn is_done(&self) -> bool {
        self.next_sample >= self.samples_total()
    }

    /// Does the next step; `false` once everything is done.
    pub fn step(&mut self) -> Result<bool> {
        if self.is_done() {
            return Ok(false);
        }
        let model = self.model;
        let (ids, target) = match &self.reference {
            Some(r) => (&r.samples[self.next_sample], r.target(self.next_sample)),
            None => return Ok(false),
        };
        match &mut self.work {
            Work::Magnitude => {}
            Work::Inputs(stats) => {
                input_sample(model, ids, stats)?;
                self.next_sample += 1;
            }
            Work::Relevance {
                rules,
                accumulator,
                pass,
            } => {
                if self.next_sample == 0 && pass.is_none() && !accumulator.spilled() {
                    let fit = SumsFit {
                        model,
                        method: self.method,
                        sums: accumulator.sums(),
                        reference: &self.reference,
                        limits: &self.limits,
                    };
                    #[cfg(not(target_family = "wasm"))]
                    if let Some(dir) = fit.spill_dir(self.scratch.as_ref())? {
                        accumulator.spill_to(dir)?;
                    }
                    #[cfg(target_family = "wasm")]
                    fit.in_memory()?;
                }
                let current = match pass {
                    Some(p) => p,
                    None => {
                        // Sums held in memory leave that much less for the pass to keep.
                        let sums = if accumulator.spilled() {
                            0
                        } else {
                            sums_bytes(model, accumulator.sums())?
                        };
                        let trace = Trace::new(model, ids, &self.limits.less(sums), true)?;
                        pass.insert(Box::new(RelevancePass::new(model, trace, &target, *rules)?))
                    }
                };
                if !current.step(accumulator)? {
                    *pass = None;
                    accumulator.finish_sample();
                    self.next_sample += 1;
                }
            }
        }
        Ok(!self.is_done())
    }

    /// Runs every remaining step, calling `progress(done, total)` after each.
    pub fn run(&mut self, progress: &mut dyn FnMut(usize, usize)) -> Result<()> {
        while self.step()? {
            let (done, total) = self.progress();
            progress(done, total);
        }
        let (done, total) = self.progress();
        progress(done, total);
        Ok(())
    }

    /// The scores of the method this scorer was made for, once every sample is done.
    pub fn finish(self) -> Result<PendingScores> {
        self.check_done()?;
        Ok(self.scores_at(self.granularity, &[self.method])?.remove(0))
    }

    fn check_done(&self) -> Result<()> {
        if self.is_done() {
            return Ok(());
        }
        Err(Error::InvalidInput(format!(
            "scoring stopped after {} of {} samples",
            self.next_sample,
            self.samples_total()
        )))
    }

    /// Per-weight scores of `methods` over the samples done so far (between samples), e.g. to
    /// study how the reference set's size matters. A scorer made for `lrp-abs` also gives `lrp`
    /// when made [`Scorer::keeping_signed_sums`].
    pub fn scores(&self, methods: &[ScoreMethod]) -> Result<Vec<PendingScores>> {
        self.scores_at(Granularity::Weights, methods)
    }

    /// [`Scorer::scores`] of weights, neurons or heads. Unit scores `[1, units]` sum what the
    /// unit's weights score (Wanda, magnitude), average its inputs (activation), or are the
    /// relevance of the unit's output itself (LRP, gradient: `x ⊙ G` at the unit).
    pub fn scores_at(
        &self,
        granularity: Granularity,
        methods: &[ScoreMethod],
    ) -> Result<Vec<PendingScores>> {
        methods
            .iter()
            .map(|&method| self.pending(granularity, method, false))
            .collect()
    }
}

impl Scorer<'_> {
    /// The signed mean relevance (LRP) or `x ⊙ ∇x` (gradient) of each component over the
    /// samples done, before any magnitude is taken: what targeted correction subtracts, where
    /// a component that works against the behaviour must not count as driving it.
    pub fn signed_scores_at(&self, granularity: Granularity) -> Result<PendingScores> {
        if !matches!(self.method, ScoreMethod::Lrp | ScoreMethod::Gradient) {
            return Err(Error::InvalidInput(format!(
                "signed scores come from lrp or gradient scoring, not {}",
                self.method.name()
            )));
        }
        self.pending(granularity, self.method, true)
    }

    /// The model being scored.
    pub fn model(&self) -> &Model {
        self.model
    }

    /// What scores of this scorer's method and granularity record.
    pub fn info(&self) -> ScoreInfo {
        self.info_of(self.granularity, self.method, false)
    }

    /// The scores of Linear `id` for this scorer's method and granularity, read back to the
    /// host, once every sample is done: with [`Scorer::linears`], scores one Linear at a time
    /// (a 7B model's per-weight scores take 26 GB at once).
    #[cfg(not(target_family = "wasm"))]
    pub fn linear_scores(&self, id: LinearId) -> Result<HostTensor> {
        self.check_done()?;
        let info = self.info();
        let t = self.unit_scores(id, self.method, self.granularity, false)?;
        let shape = t.dims().to_vec();
        host(&info, id, shape, crate::readback::to_vec(t)?)
    }

    fn info_of(&self, granularity: Granularity, method: ScoreMethod, signed: bool) -> ScoreInfo {
        let reference = self
            .reference
            .as_ref()
            .map(|r| r.prefix_protocol(self.next_sample));
        let mut info = ScoreInfo::new(method, reference, self.model);
        info.granularity = granularity;
        info.formula = method.formula_of(granularity, self.explained(), signed);
        info
    }

    /// The scores of `method` for every Linear `granularity` covers, still on the device.
    fn pending(
        &self,
        granularity: Granularity,
        method: ScoreMethod,
        signed: bool,
    ) -> Result<PendingScores> {
        if matches!(&self.work, Work::Relevance { pass: Some(_), .. }) {
            return Err(Error::InvalidInput(
                "scores can only be read between samples".into(),
            ));
        }
        let mut tensors = Vec::new();
        for id in granularity.linear_ids(self.model) {
            tensors.push((id, self.unit_scores(id, method, granularity, signed)?));
        }
        Ok(PendingScores {
            info: self.info_of(granularity, method, signed),
            tensors,
        })
    }

    /// What this scorer's relevance passes explain.
    fn explained(&self) -> Explained {
        match self.reference.as_ref().and_then(|r| r.targets.as_ref()) {
            None => Explained::NextTokens,
            Some(t) if t.iter().all(|t| matches!(t, Target::NextTokens { .. })) => {
                Explained::Continuation
            }
            Some(_) => Explained::TaskMetric,
        }
    }

    /// The scores of `method` for Linear `id` at `granularity`: `[out, in]` or `[1, units]`.
    fn unit_scores(
        &self,
        id: LinearId,
        method: ScoreMethod,
        granularity: Granularity,
        signed: bool,
    ) -> Result<Tensor<2>> {
        let model = self.model;
        let w = model.weight(id)?;
        let [_, cols] = w.dims();
        let width = granularity.unit_width(&model.config);
        // Per-weight scores summed over each unit's weights.
        let per_unit = |t: Tensor<2>| -> Tensor<2> {
            match granularity {
                Granularity::Weights => t,
                _ => t
                    .sum_dim(0)
                    .reshape([cols / width, width])
                    .sum_dim(1)
                    .reshape([1, cols / width]),
            }
        };
        let mismatch = || {
            Error::InvalidInput(format!(
                "{} scores cannot be derived from {} scoring{}",
                method.name(),
                self.method.name(),
                if granularity == Granularity::Weights && self.granularity != granularity {
                    format!(" of {}", self.granularity.name())
                } else {
                    String::new()
                }
            ))
        };
        Ok(match (&self.work, method) {
            (Work::Magnitude, ScoreMethod::Magnitude) => per_unit(w.abs()),
            (Work::Inputs(stats), ScoreMethod::Wanda) => {
                let norms = stats
                    .squares
                    .get(&id)
                    .ok_or_else(|| not_seen(id))?
                    .clone()
                    .sqrt();
                per_unit(w.abs() * norms.unsqueeze::<2>())
            }
            (Work::Inputs(stats), ScoreMethod::Activation) => {
                let mean = stats
                    .abs
                    .get(&id)
                    .ok_or_else(|| not_seen(id))?
                    .clone()
                    .div_scalar(stats.tokens.max(1) as f64);
                match granularity {
                    Granularity::Weights => w.ones_like() * mean.unsqueeze::<2>(),
                    _ => mean
                        .reshape([cols / width, width])
                        .mean_dim(1)
                        .reshape([1, cols / width]),
                }
            }
            (
                Work::Relevance {
                    rules, accumulator, ..
                },
                m,
            ) if relevance_method(*rules, m) => {
                let signed = signed || m == ScoreMethod::LrpSigned;
                let r = match granularity {
                    Granularity::Weights => match m {
                        ScoreMethod::LrpAbs => accumulator.mean_abs(id)?,
                        _ => accumulator.mean(id)?,
                    },
                    Granularity::Neurons | Granularity::Heads => {
                        let (mean, mean_abs) = if granularity == Granularity::Neurons {
                            (
                                accumulator.neurons_mean(id.layer),
                                accumulator.neurons_mean_abs(id.layer),
                            )
                        } else {
                            (
                                accumulator.heads_mean(id.layer),
                                accumulator.heads_mean_abs(id.layer),
                            )
                        };
                        let r = if m == ScoreMethod::LrpAbs {
                            mean_abs
                        } else {
                            mean
                        };
                        r.map(|r| r.unsqueeze::<2>())
                    }
                }
                .ok_or_else(mismatch)?;
                if signed || m == ScoreMethod::LrpAbs {
                    r
                } else {
                    r.abs()
                }
            }
            _ => return Err(mismatch()),
        })
    }
}

impl Work<'_> {
    fn relevance(rules: RuleSet, weights: bool, sums: WeightSums) -> Self {
        let accumulator =
            WeightRelevanceAccumulator::keeping(if weights { sums } else { WeightSums::None });
        Work::Relevance {
            rules,
            accumulator,
            pass: None,
        }
    }
}

fn relevance_method(rules: RuleSet, method: ScoreMethod) -> bool {
    matches!(
        (rules, method),
        (
            RuleSet::AttnLrp,
            ScoreMethod::Lrp | ScoreMethod::LrpAbs | ScoreMethod::LrpSigned
        ) | (RuleSet::Gradient, ScoreMethod::Gradient)
    )
}

/// Bytes the per-weight sums `sums` take for every block weight of `model` (float32).
fn sums_bytes(model: &Model, sums: WeightSums) -> Result<u64> {
    Ok(4 * sums.per_weight() * Granularity::Weights.total(model)?)
}

/// Whether a scoring job's per-weight sums fit beside the model, checked before its first pass.
struct SumsFit<'a> {
    model: &'a Model,
    method: ScoreMethod,
    sums: WeightSums,
    reference: &'a Option<ReferenceSet>,
    limits: &'a MemoryLimits,
}

impl SumsFit<'_> {
    /// `(sums bytes, one pass's bytes, the limit, the longest sample)` when there is a limit
    /// and something to sum.
    fn needs(&self) -> Result<Option<(u64, u64, u64, usize)>> {
        let (Some(limit), Some(reference)) = (self.limits.max_total_bytes, self.reference) else {
            return Ok(None);
        };
        let sums = sums_bytes(self.model, self.sums)?;
        if sums == 0 {
            return Ok(None);
        }
        let longest = reference.samples.iter().map(Vec::len).max().unwrap_or(0);
        let (_, pass) = memory_needed(&self.model.config, longest, true);
        Ok(Some((sums, pass, limit, longest)))
    }

    /// Errors unless the sums and one relevance pass fit in the limit.
    #[cfg(target_family = "wasm")]
    fn in_memory(&self) -> Result<()> {
        match self.needs()? {
            Some((sums, pass, limit, longest)) if sums + pass > limit => {
                Err(self.too_large(sums, pass, limit, longest, ""))
            }
            _ => Ok(()),
        }
    }

    /// `None` when the sums fit in memory; the scratch directory when they do not but fit
    /// there (with one pass and one Linear's sums on the host in memory); an error otherwise.
    #[cfg(not(target_family = "wasm"))]
    fn spill_dir<'s>(
        &self,
        scratch: Option<&'s crate::relevance::Scratch>,
    ) -> Result<Option<&'s std::path::Path>> {
        let Some((sums, pass, limit, longest)) = self.needs()? else {
            return Ok(None);
        };
        if sums + pass <= limit {
            return Ok(None);
        }
        let Some(scratch) = scratch else {
            return Err(self.too_large(sums, pass, limit, longest, ""));
        };
        // Reading one Linear back, its sums and their bytes in and out.
        let config = &self.model.config;
        let host = 16 * (config.hidden_size * config.intermediate_size) as u64;
        let dir = scratch.dir.display();
        match scratch.free_bytes {
            _ if pass + host > limit => Err(self.too_large(sums, pass, limit, longest, "")),
            Some(free) if free < sums => Err(self.too_large(
                sums,
                pass,
                limit,
                longest,
                &format!(
                    "; spilling the sums to {dir} needs {:.1} GB free there and it has {:.1} GB: \
                     point TMPDIR at a larger disk",
                    sums as f64 / 1e9,
                    free as f64 / 1e9
                ),
            )),
            _ => Ok(Some(&scratch.dir)),
        }
    }

    fn too_large(&self, sums: u64, pass: u64, limit: u64, longest: usize, more: &str) -> Error {
        let per_weight = self.sums.per_weight();
        Error::TooLarge {
            what: format!(
                "{} scoring per weight ({per_weight} float32 sum{} for each of {} weights: {:.1} GB, \
                 and one {longest}-token pass: {:.1} GB; {:.1} GB allowed beside the model; neuron \
                 or head scores, or wanda, keep no per-weight sums{more})",
                self.method.name(),
                if per_weight == 1 { "" } else { "s" },
                sums / (4 * per_weight),
                sums as f64 / 1e9,
                pass as f64 / 1e9,
                limit as f64 / 1e9
            ),
            requested: (sums + pass).into(),
            limit: limit.into(),
        }
    }
}

fn not_seen(id: LinearId) -> Error {
    Error::InvalidInput(format!("no statistics were gathered for {id}"))
}

/// Adds one sample's input statistics of every Linear (through the dense blocks).
fn input_sample(model: &Model, ids: &[u32], stats: &mut InputStats) -> Result<()> {
    let arch = model.arch();
    let mut x = arch.embeddings(model.tokens(ids)?).block_input;
    for layer in 0..model.config.num_layers {
        let (out, inputs) = arch.block_linear_inputs(layer, x);
        add_column_stats(layer, inputs, &mut stats.squares, Some(&mut stats.abs));
        x = out;
    }
    stats.tokens += ids.len();
    Ok(())
}

/// Σ over tokens of x² (and, if asked, |x|) per column, added to each listed Linear's sums.
pub(super) fn add_column_stats(
    layer: usize,
    inputs: crate::model::LinearInputs,
    squares: &mut BTreeMap<LinearId, Tensor<1>>,
    mut abs: Option<&mut BTreeMap<LinearId, Tensor<1>>>,
) {
    let add = |sums: &mut BTreeMap<LinearId, Tensor<1>>, id: LinearId, v: &Tensor<1>| {
        let sum = match sums.remove(&id) {
            Some(s) => s + v.clone(),
            None => v.clone(),
        };
        sums.insert(id, sum);
    };
    for (kinds, input) in inputs {
        let [b, t, d] = input.dims();
        let flat = input.reshape([b * t, d]);
        let sq = flat.clone().square().sum_dim(0).reshape([d]);
        let ab = abs.as_ref().map(|_| flat.abs().sum_dim(0).reshape([d]));
        for &kind in kinds {
            let id = LinearId { layer, kind };
            add(squares, id, &sq);
            if let (Some(sums), Some(v)) = (abs.as_deref_mut(), &ab) {
                add(sums, id, v);
            }
        }
    }
}

/// Scores still on the device; read them back once with [`PendingScores::read`] (native) or
/// [`PendingScores::read_async`] (browser).
pub struct PendingScores {
    pub info: ScoreInfo,
    tensors: Vec<(LinearId, Tensor<2>)>,
}

impl PendingScores {
    #[cfg(not(target_family = "wasm"))]
    pub fn read(self) -> Result<Scores> {
        let mut linears = BTreeMap::new();
        for (id, t) in self.tensors {
            let shape = t.dims().to_vec();
            linears.insert(
                id,
                host(&self.info, id, shape, crate::readback::to_vec(t)?)?,
            );
        }
        Ok(Scores {
            info: self.info,
            linears,
        })
    }

    pub async fn read_async(self) -> Result<Scores> {
        let mut linears = BTreeMap::new();
        for (id, t) in self.tensors {
            let shape = t.dims().to_vec();
            let data = crate::readback::to_vec_async(t).await?;
            linears.insert(id, host(&self.info, id, shape, data)?);
        }
        Ok(Scores {
            info: self.info,
            linears,
        })
    }
}

fn host(info: &ScoreInfo, id: LinearId, shape: Vec<usize>, data: Vec<f32>) -> Result<HostTensor> {
    if data.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "the {} scores of {id}",
            info.method.name()
        )));
    }
    HostTensor::new(shape, data)
}

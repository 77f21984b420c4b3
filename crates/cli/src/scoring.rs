//! What `prune` and `sweep` share: the reference set, and scores computed with progress bars
//! or reused from a score file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use scalpel::prune::{Group, Masks};
use scalpel::relevance::{MemoryLimits, Scratch};
use scalpel::score::{
    ReferenceSet, ScoreMethod, Scorer, Scores, ScoringBudget, step_scorer, wanda_sequential,
};
use scalpel::unit::{Granularity, LinearSet};
use scalpel::{Architecture, Model, TextTokenizer};

use crate::model_source::{available_memory, free_disk_bytes};
use crate::progress::{JobBars, bar};

#[derive(clap::Args, Debug, Clone)]
pub struct ReferenceArgs {
    /// Reference text, one document per line (`c4.utf8` gives the `c4-128x256` protocol).
    #[arg(long, default_value = "assets/c4.utf8")]
    pub reference: PathBuf,
    /// Treat the reference file as one document (plain prose) instead of one per line.
    #[arg(long)]
    pub whole_file: bool,
    /// Reference samples.
    #[arg(long, default_value_t = 128)]
    pub samples: usize,
    /// Tokens per reference sample.
    #[arg(long, default_value_t = 256)]
    pub sample_len: usize,
}

/// `--linears`: which kinds of Linear compete (`prune`, `circuit`, `correct`).
#[derive(clap::Args, Debug, Clone)]
pub struct LinearsArg {
    /// Which Linears are ranked and pruned: `all`, or kinds or modules comma-separated (`up`,
    /// `gate,up`, `down_proj`, OPT's `fc1`); the others stay dense. Neurons and heads live in
    /// down_proj / fc2 and o_proj, so with those only `all` or that Linear applies.
    #[arg(long, default_value = "all")]
    pub linears: String,
}

impl LinearsArg {
    /// Whether every Linear competes (the default), known before a model is loaded.
    pub fn is_all(&self) -> bool {
        self.linears.trim().eq_ignore_ascii_case("all")
    }

    pub fn set(&self, architecture: Architecture) -> Result<LinearSet> {
        Ok(LinearSet::parse(&self.linears, architecture)?)
    }
}

impl ReferenceArgs {
    /// Builds the reference set, warning when the text gave fewer samples than asked.
    pub fn build(&self, tokenizer: &TextTokenizer) -> Result<ReferenceSet> {
        let raw = std::fs::read_to_string(&self.reference).with_context(|| {
            format!(
                "reading the reference text {} (the default is fetched by `cargo xtask assets`)",
                self.reference.display()
            )
        })?;
        let file = self
            .reference
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let source = if file == "c4.utf8" {
            "c4".to_string()
        } else {
            file
        };
        let documents: Vec<&str> = if self.whole_file {
            vec![raw.as_str()]
        } else {
            scalpel::eval::corpus::c4_documents(&raw)
        };
        let set = ReferenceSet::from_documents(
            &source,
            &documents,
            tokenizer,
            self.samples,
            self.sample_len,
        )?;
        if set.is_short() {
            eprintln!(
                "warning: {} gave only {} of the {} samples asked for",
                self.reference.display(),
                set.protocol.samples,
                set.protocol.requested_samples
            );
        }
        Ok(set)
    }
}

/// Loads `path` if it holds scores of `method` for this model and reference set (and, for
/// sequential Wanda, this sparsity and group); `None` if there is no file yet.
pub fn load_cached(
    path: &Path,
    model: &Model,
    method: ScoreMethod,
    reference: Option<&ReferenceSet>,
    made_for: Option<(f64, Group)>,
) -> Result<Option<Scores>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let scores = Scores::from_safetensors(
        &path.display().to_string(),
        &bytes,
        model.config.architecture,
    )?;
    scores
        .check_for(model)
        .with_context(|| format!("{} does not fit this model", path.display()))?;
    let info = &scores.info;
    let wanted_reference = reference.map(|r| &r.protocol.name);
    if info.method != method
        || info.reference.as_ref().map(|r| &r.name) != wanted_reference
        || info.made_for != made_for
    {
        bail!(
            "{} holds {} scores over {} but {} scores over {} are wanted: \
             pass another --scores file or delete this one",
            path.display(),
            info.method.name(),
            info.reference
                .as_ref()
                .map_or("no reference", |r| r.name.as_str()),
            method.name(),
            wanted_reference.map_or("no reference", String::as_str),
        );
    }
    Ok(Some(scores))
}

pub fn save(scores: &Scores, model: &Model, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bytes = scores.to_safetensors(model.config.architecture)?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Computes the scores of `methods` in one scoring job (they must share it: `lrp` and
/// `lrp-abs`, or a single method), snapshotting after each sample count in `snapshots` (the
/// last snapshot is the full set). Returns `(samples, scores per method)` per snapshot.
pub fn compute(
    model: &Model,
    methods: &[ScoreMethod],
    reference: &ReferenceSet,
    snapshots: &[usize],
) -> Result<Vec<(usize, Vec<Scores>)>> {
    let mut scorer = scorer_for(model, methods, reference, Granularity::Weights)?;
    let first = scorer.method();
    let (_, total) = scorer.progress();
    let pb = bar(total as u64, first.name());
    let start = Instant::now();
    let mut out = Vec::new();
    let read = |scorer: &Scorer| -> Result<Vec<Scores>> {
        scorer
            .scores(methods)?
            .into_iter()
            .map(|p| Ok(p.read()?))
            .collect()
    };
    let mut last = 0;
    let mut told = false;
    while scorer.step()? {
        tell_if_spilled(&scorer, &pb, &mut told);
        pb.set_position(scorer.progress().0 as u64);
        let samples = scorer.samples_done();
        if samples != last {
            last = samples;
            if snapshots.contains(&samples) {
                out.push((samples, read(&scorer)?));
            }
        }
    }
    pb.finish_and_clear();
    out.push((scorer.samples_done(), read(&scorer)?));
    report_scored(methods, &scorer, start);
    Ok(out)
}

/// Prints which methods were scored over how many samples and how long it took.
fn report_scored(methods: &[ScoreMethod], scorer: &Scorer, start: Instant) {
    eprintln!(
        "scored {} ({} samples) in {:.1} s",
        methods
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(" + "),
        scorer.samples_done(),
        start.elapsed().as_secs_f64()
    );
}

/// The memory a scoring job may use beside the model: on the CPU, what the system has
/// available now (the model is already loaded); unbounded on a GPU.
fn job_limits(model: &Model) -> MemoryLimits {
    MemoryLimits {
        max_buffer_bytes: None,
        max_total_bytes: if model.on_cpu() {
            available_memory()
        } else {
            None
        },
    }
}

/// Where per-weight sums that do not fit in memory spill: the system's temporary directory
/// (`TMPDIR`, else `/tmp`), with the room its disk has.
fn scratch() -> Scratch {
    let dir = std::env::temp_dir();
    Scratch {
        free_bytes: free_disk_bytes(&dir),
        dir,
    }
}

/// A scorer of `method` at `granularity` under this machine's limits: on the CPU, per-weight
/// sums that would not fit in the memory available go to a scratch file ([`scratch`]), and a
/// job that fits neither is refused before its first pass.
pub fn scorer_at<'m>(
    model: &'m Model,
    method: ScoreMethod,
    granularity: Granularity,
    reference: Option<ReferenceSet>,
) -> Result<Scorer<'m>> {
    Ok(budget(model).scorer(model, method, granularity, reference)?)
}

/// What a core job's scorers may use on this machine ([`scorer_at`]'s limits and scratch).
pub fn budget(model: &Model) -> ScoringBudget {
    ScoringBudget {
        limits: job_limits(model),
        scratch: Some(scratch()),
    }
}

/// One scorer for `methods` at `granularity` (they must share it: `lrp` and `lrp-abs`, or a
/// single method).
fn scorer_for<'m>(
    model: &'m Model,
    methods: &[ScoreMethod],
    reference: &ReferenceSet,
    granularity: Granularity,
) -> Result<Scorer<'m>> {
    // A scorer made for `lrp-abs` gives `lrp` too (one pass for both) when it keeps Σ R as well.
    let first = if methods.contains(&ScoreMethod::LrpAbs) {
        ScoreMethod::LrpAbs
    } else {
        methods[0]
    };
    let reference = first.uses_reference().then(|| reference.clone());
    let mut scorer = scorer_at(model, first, granularity, reference)?;
    if methods.contains(&ScoreMethod::Lrp) {
        scorer = scorer.keeping_signed_sums();
    }
    Ok(scorer)
}

/// Says once, above the progress bar, that the per-weight sums went to a scratch file.
fn tell_if_spilled(scorer: &Scorer, pb: &indicatif::ProgressBar, told: &mut bool) {
    if !*told && let Some(notice) = scorer.spill_notice() {
        *told = true;
        // `println` drops the line when the bar is hidden (no terminal); `suspend` does not.
        pb.suspend(|| eprintln!("{notice}"));
    }
}

/// A finished scorer of `method` at `granularity` over `reference`, with a progress bar.
fn scored<'m>(
    model: &'m Model,
    method: ScoreMethod,
    reference: &ReferenceSet,
    granularity: Granularity,
) -> Result<Scorer<'m>> {
    let mut scorer = scorer_for(model, &[method], reference, granularity)?;
    let start = Instant::now();
    pollster::block_on(step_scorer(
        &mut scorer,
        &mut JobBars::without_events(),
        method.name(),
    ))?;
    report_scored(&[method], &scorer, start);
    Ok(scorer)
}

/// Scores `method` over `reference` and cuts the masks one Linear at a time
/// ([`Masks::from_scorer`]): the scores are never all in memory. Row, layer and N:M groups.
pub fn streamed_masks(
    model: &Model,
    method: ScoreMethod,
    reference: &ReferenceSet,
    sparsity: f64,
    group: Group,
    linears: &LinearSet,
) -> Result<Masks> {
    let scorer = scored(model, method, reference, Granularity::Weights)?;
    Ok(Masks::from_scorer(&scorer, sparsity, group, linears)?)
}

/// Masks of MLP neurons or attention heads: `method`'s unit scores over `reference` (small
/// enough to hold whole), ranked per layer or globally.
pub fn unit_masks(
    model: &Model,
    method: ScoreMethod,
    reference: &ReferenceSet,
    granularity: Granularity,
    (sparsity, group): (f64, Group),
    linears: &LinearSet,
) -> Result<Masks> {
    let scorer = scored(model, method, reference, granularity)?;
    let scores = scorer.finish()?.read()?.only(linears, model)?;
    Ok(Masks::from_scores(&scores, sparsity, group)?)
}

/// Sequential Wanda at one sparsity and group, with a progress bar over blocks.
pub fn compute_sequential(
    model: &mut Model,
    reference: &ReferenceSet,
    sparsity: f64,
    group: Group,
) -> Result<Scores> {
    let pb = bar(model.config.num_layers as u64, "wanda-seq");
    let start = Instant::now();
    let scores = wanda_sequential(model, reference, sparsity, group, &mut |done, _| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    eprintln!(
        "scored wanda-seq for sparsity {sparsity} ({} samples) in {:.1} s",
        reference.samples.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(scores)
}

/// Scores of one method: from `cache` when it holds them, else computed (and saved there).
pub fn obtain(
    model: &mut Model,
    method: ScoreMethod,
    reference: &ReferenceSet,
    sequential: (f64, Group),
    cache: Option<&Path>,
) -> Result<Scores> {
    let made_for = (method == ScoreMethod::WandaSequential).then_some(sequential);
    let used_reference = method.uses_reference().then_some(reference);
    if let Some(path) = cache
        && let Some(scores) = load_cached(path, model, method, used_reference, made_for)?
    {
        eprintln!("reusing {} scores from {}", method.name(), path.display());
        return Ok(scores);
    }
    let scores = match made_for {
        Some((sparsity, group)) => compute_sequential(model, reference, sparsity, group)?,
        None => {
            let mut all = compute(model, &[method], reference, &[])?;
            all.pop()
                .map(|(_, mut s)| s.remove(0))
                .context("no scores")?
        }
    };
    if let Some(path) = cache {
        save(&scores, model, path)?;
        eprintln!("saved {} scores to {}", method.name(), path.display());
    }
    Ok(scores)
}

//! What each panel shows, as the page's state holds it: the worker's responses fill these and the
//! panels render them. They sit below both the page shell and the panels.

use crate::protocol::{
    CircuitView, CompareView, CorrectionSetup, CurvePointView, DoseView, MaskView, Metrics,
    ProbeView,
};

/// What the compression panel shows.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct CompressStatus {
    /// "lrp scores over c4-16x128 (12.3 s)" once scores are cached in the worker.
    pub(crate) scored: Option<String>,
    pub(crate) masked: Option<MaskView>,
}

/// What the circuit panel shows.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct CircuitStatus {
    /// The prompts' name once a search started, and the dense model's metrics on them.
    pub(crate) task: Option<String>,
    pub(crate) dense: Option<Metrics>,
    pub(crate) notes: Vec<String>,
    pub(crate) curve: Vec<CurvePointView>,
    /// Seconds the search took, once every point is measured.
    pub(crate) ready: Option<f64>,
    pub(crate) picked: Option<CircuitView>,
    pub(crate) probe: Option<ProbeView>,
}

impl CircuitStatus {
    /// The largest measured share pruned whose faithfulness reaches `threshold`.
    pub(crate) fn fraction_for(&self, threshold: f64) -> Option<f64> {
        scalpel::circuit::largest_keeping(
            self.curve.iter().map(|p| (p.fraction, p.faithfulness)),
            threshold,
        )
    }
}

/// What the correction panel shows.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct CorrectStatus {
    pub(crate) setup: Option<CorrectionSetup>,
    pub(crate) doses: Vec<DoseView>,
    /// Seconds the run took, once every dose is measured.
    pub(crate) ready: Option<f64>,
    /// The picked dose, whether it runs now, and the first components it removes.
    pub(crate) picked: Option<(usize, bool, Vec<String>)>,
    pub(crate) compared: Option<CompareView>,
}

//! Naming the Linear layers of the decoder blocks: what relevance reports, pruning masks and
//! score files refer to.

use super::Architecture;

/// The Linear layers of a decoder block (OPT's `out_proj` is `O`, `fc1`/`fc2` are `Fc1`/`Fc2`);
/// which a family has, and their checkpoint names, its [`super::ArchSpec`] says.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum LinearKind {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
    Fc1,
    Fc2,
}

impl LinearKind {
    /// The kind's short name, as `--linears` takes it (`q`, `up`, `fc1`).
    pub fn short_name(self) -> &'static str {
        match self {
            LinearKind::Q => "q",
            LinearKind::K => "k",
            LinearKind::V => "v",
            LinearKind::O => "o",
            LinearKind::Gate => "gate",
            LinearKind::Up => "up",
            LinearKind::Down => "down",
            LinearKind::Fc1 => "fc1",
            LinearKind::Fc2 => "fc2",
        }
    }
}

/// One decoder-block Linear: its layer and kind.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct LinearId {
    pub layer: usize,
    pub kind: LinearKind,
}

impl LinearId {
    /// The weight's name in a Hugging Face checkpoint (`model.layers.3.mlp.up_proj.weight`).
    pub fn checkpoint_name(self, architecture: Architecture) -> String {
        let spec = architecture.spec();
        let module = spec
            .module(self.kind)
            .unwrap_or("<not in this architecture>");
        format!("{}.{}.{module}.weight", spec.block_prefix, self.layer)
    }

    /// The inverse of [`LinearId::checkpoint_name`].
    pub fn from_checkpoint_name(name: &str, architecture: Architecture) -> Option<Self> {
        let spec = architecture.spec();
        let rest = name
            .strip_prefix(spec.block_prefix)?
            .strip_prefix('.')?
            .strip_suffix(".weight")?;
        let (layer, module) = rest.split_once('.')?;
        let layer = layer.parse().ok()?;
        spec.linears
            .iter()
            .find(|&&(_, m)| m == module)
            .map(|&(kind, _)| LinearId { layer, kind })
    }
}

impl std::fmt::Display for LinearId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "layer {} {:?}", self.layer, self.kind)
    }
}

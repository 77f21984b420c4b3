//! Naming the Linear layers of the decoder blocks: what relevance reports, pruning masks and
//! score files refer to.

use super::Architecture;

/// The Linear layers of a decoder block (OPT's `out_proj` is `O`, `fc1`/`fc2` are `Fc1`/`Fc2`).
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
    /// The Llama block's Linears, in checkpoint order.
    pub const LLAMA: [LinearKind; 7] = [
        LinearKind::Q,
        LinearKind::K,
        LinearKind::V,
        LinearKind::O,
        LinearKind::Gate,
        LinearKind::Up,
        LinearKind::Down,
    ];
    /// The OPT block's Linears, in checkpoint order.
    pub const OPT: [LinearKind; 6] = [
        LinearKind::Q,
        LinearKind::K,
        LinearKind::V,
        LinearKind::O,
        LinearKind::Fc1,
        LinearKind::Fc2,
    ];

    /// The module path inside a block, as in Hugging Face checkpoints.
    pub fn module(self, llama: bool) -> &'static str {
        match (self, llama) {
            (LinearKind::Q, _) => "self_attn.q_proj",
            (LinearKind::K, _) => "self_attn.k_proj",
            (LinearKind::V, _) => "self_attn.v_proj",
            (LinearKind::O, true) => "self_attn.o_proj",
            (LinearKind::O, false) => "self_attn.out_proj",
            (LinearKind::Gate, _) => "mlp.gate_proj",
            (LinearKind::Up, _) => "mlp.up_proj",
            (LinearKind::Down, _) => "mlp.down_proj",
            (LinearKind::Fc1, _) => "fc1",
            (LinearKind::Fc2, _) => "fc2",
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

impl LinearKind {
    /// The block Linears of `architecture`, in checkpoint order.
    pub fn of(architecture: Architecture) -> &'static [LinearKind] {
        match architecture {
            Architecture::Llama => &Self::LLAMA,
            Architecture::Opt => &Self::OPT,
        }
    }
}

impl LinearId {
    /// The weight's name in a Hugging Face checkpoint (`model.layers.3.mlp.up_proj.weight`).
    pub fn checkpoint_name(self, architecture: Architecture) -> String {
        let (root, llama) = match architecture {
            Architecture::Llama => ("model.layers", true),
            Architecture::Opt => ("model.decoder.layers", false),
        };
        format!("{root}.{}.{}.weight", self.layer, self.kind.module(llama))
    }

    /// The inverse of [`LinearId::checkpoint_name`].
    pub fn from_checkpoint_name(name: &str, architecture: Architecture) -> Option<Self> {
        let llama = architecture == Architecture::Llama;
        let root = if llama {
            "model.layers."
        } else {
            "model.decoder.layers."
        };
        let rest = name.strip_prefix(root)?.strip_suffix(".weight")?;
        let (layer, module) = rest.split_once('.')?;
        let layer = layer.parse().ok()?;
        LinearKind::of(architecture)
            .iter()
            .find(|k| k.module(llama) == module)
            .map(|&kind| LinearId { layer, kind })
    }
}

impl std::fmt::Display for LinearId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "layer {} {:?}", self.layer, self.kind)
    }
}

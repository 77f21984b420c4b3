//! Every family Scalpel runs, and where its descriptor is: the one place that names them all
//! (above the family files, which know only their own).

use super::config::Architecture;
use super::spec::ArchSpec;
use super::{gpt2, llama, mistral, opt, phi3, qwen2, qwen3};

impl Architecture {
    /// Every family Scalpel runs.
    pub const ALL: [Architecture; 7] = [
        Architecture::Llama,
        Architecture::Mistral,
        Architecture::Phi3,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Opt,
        Architecture::Gpt2,
    ];

    /// The family llama.cpp calls `arch`, if Scalpel reads it.
    pub fn for_gguf(arch: &str) -> Option<Architecture> {
        Architecture::ALL
            .into_iter()
            .find(|a| a.spec().gguf.as_ref().is_some_and(|g| g.arch == arch))
    }

    /// The family's descriptor.
    pub fn spec(self) -> &'static ArchSpec {
        match self {
            Architecture::Llama => &llama::SPEC,
            Architecture::Qwen2 => &qwen2::SPEC,
            Architecture::Qwen3 => &qwen3::SPEC,
            Architecture::Mistral => &mistral::SPEC,
            Architecture::Phi3 => &phi3::SPEC,
            Architecture::Gpt2 => &gpt2::SPEC,
            Architecture::Opt => &opt::SPEC,
        }
    }
}

//! Scalpel's core: load OPT and Llama checkpoints, run them on any burn device, generate text.
//!
//! The crate makes no filesystem or network assumptions, so the same code runs natively and in
//! the browser (wasm32 + WebGPU): callers hand it bytes.

pub mod circuit;
pub mod correct;
pub mod device;
pub mod error;
pub mod eval;
pub mod export;
pub mod generate;
pub mod io;
pub mod job;
pub mod loader;
pub mod model;
pub mod prune;
pub mod readback;
pub mod relevance;
pub mod report;
pub mod rng;
pub mod score;
pub mod task;
pub mod unit;
#[cfg(feature = "clap")]
mod value_enums;

pub use error::{Error, Result};
pub use generate::{GenerateOptions, Sampling};
pub use io::tokenizer::TextTokenizer;
pub use loader::{LoadOptions, LoadedModel, ModelFiles};
pub use model::{Architecture, Logits, Model, ModelConfig, WeightDtype};

//! Scalpel's web app. Two wasm binaries share this library:
//! - `scalpel-web` (src/main.rs): the Leptos page (UI only, no tensors);
//! - `worker` (src/bin/worker.rs): a Web Worker that owns the model and runs the core on WebGPU
//!   or the CPU, so the page never freezes during downloads, loading or generation.
//!
//! They talk through the messages in [`protocol`].

pub mod protocol;

#[cfg(target_arch = "wasm32")]
pub mod app;
#[cfg(target_arch = "wasm32")]
mod circuit_job;
#[cfg(target_arch = "wasm32")]
mod circuit_view;
#[cfg(target_arch = "wasm32")]
mod compress_job;
#[cfg(target_arch = "wasm32")]
mod compress_view;
#[cfg(target_arch = "wasm32")]
mod controls;
#[cfg(target_arch = "wasm32")]
mod correct_job;
#[cfg(target_arch = "wasm32")]
mod correct_view;
#[cfg(target_arch = "wasm32")]
mod estimate;
#[cfg(target_arch = "wasm32")]
mod explain_job;
#[cfg(target_arch = "wasm32")]
mod explain_view;
#[cfg(target_arch = "wasm32")]
pub mod fetch;
#[cfg(target_arch = "wasm32")]
mod fragment;
#[cfg(target_arch = "wasm32")]
mod job;
#[cfg(target_arch = "wasm32")]
mod link;
#[cfg(target_arch = "wasm32")]
mod shell;
#[cfg(target_arch = "wasm32")]
mod status;
#[cfg(target_arch = "wasm32")]
mod tour;
#[cfg(target_arch = "wasm32")]
mod widgets;
#[cfg(target_arch = "wasm32")]
pub mod worker;

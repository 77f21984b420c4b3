//! Results people keep: SVG charts (and, from the CLI, JSON and Markdown tables).

mod chart;

pub use chart::{LineChart, Series};

/// Where a report came from: the Scalpel version, the command line (empty from the page), the
/// model as the user named it and the device it ran on.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunInfo {
    pub scalpel: String,
    pub command: String,
    pub model: String,
    pub device: String,
}

impl RunInfo {
    /// This build's version with the given command line, model name and device.
    pub fn new(command: String, model: String, device: String) -> Self {
        Self {
            scalpel: env!("CARGO_PKG_VERSION").to_string(),
            command,
            model,
            device,
        }
    }
}

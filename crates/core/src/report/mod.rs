//! Results people keep: SVG charts (and, from the CLI, JSON and Markdown tables).

mod chart;

pub use chart::{LineChart, Series};

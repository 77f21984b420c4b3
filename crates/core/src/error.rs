//! One error type for the whole core. Every variant names the cause and, where there is one, the fix:
//! these messages are shown as-is in the terminal and in the page.

use thiserror::Error;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    /// A model or tokenizer file that cannot be parsed (truncated, corrupt, hostile).
    #[error("{file}: {reason}")]
    Format { file: String, reason: String },

    /// A valid file describing something Scalpel does not run.
    #[error("unsupported {what}: {detail}")]
    Unsupported { what: &'static str, detail: String },

    /// A configuration value that is missing or out of range.
    #[error("invalid model configuration: {0}")]
    Config(String),

    /// A weight the architecture needs is not in the checkpoint.
    #[error("missing tensor `{0}` in the checkpoint (is this the right model family?)")]
    MissingTensor(String),

    /// A weight whose shape disagrees with the configuration.
    #[error("tensor `{name}` has shape {actual:?}, but the configuration implies {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },

    /// A tensor or buffer larger than the limits we accept.
    #[error("{what} needs {requested} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: String,
        requested: u128,
        limit: u128,
    },

    /// Tokenizer construction or encoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A request that cannot be served as asked (empty prompt, prompt longer than the context, ...).
    #[error("{0}")]
    InvalidInput(String),

    /// The compute device failed (lost GPU, failed read-back).
    #[error("device error: {0}")]
    Device(String),

    /// A computation produced NaN or infinite values.
    #[error(
        "{0} contains NaN or infinite values; the numbers cannot be trusted (the model overflowed in float32, or the device failed)"
    )]
    NonFinite(String),

    /// A scratch file (running sums spilled to disk) could not be created, written or read.
    #[error("scratch file {path}: {reason}")]
    Scratch { path: String, reason: String },

    /// The caller cancelled a long computation.
    #[error("stopped before it finished")]
    Cancelled,

    /// A job's driver could not keep a result it was handed (a report that could not be
    /// written, say); the message says what and why.
    #[error("{0}")]
    Output(String),
}

impl Error {
    pub(crate) fn format(file: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Format {
            file: file.into(),
            reason: reason.into(),
        }
    }
}

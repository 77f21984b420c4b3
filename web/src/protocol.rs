//! Messages between the page and the compute worker (serialized with serde-wasm-bindgen).

use serde::{Deserialize, Serialize};

/// Same-origin path of the default model, copied into the site by Trunk from `assets/`.
pub const DEFAULT_MODEL_URL: &str = "assets/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_MODEL_NAME: &str = "SmolLM2-135M-Instruct (Q4_1 GGUF)";

/// Where the worker should get a model from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum ModelSource {
    /// The bundled default model.
    Default,
    /// A Hugging Face model id (`org/name`, optionally `org/name/file.gguf`) or a direct URL to a
    /// .gguf file.
    Remote { location: String, revision: String },
    /// Files the user picked: (file name, bytes).
    Files(Vec<(String, serde_bytes::ByteBuf)>),
}

/// Which device the worker should compute on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum DeviceChoice {
    /// WebGPU if the browser has it, else the CPU.
    Auto,
    WebGpu,
    Cpu,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenerateRequest {
    pub prompt: String,
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub seed: u64,
}

/// Page → worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Request {
    Load {
        source: ModelSource,
        device: DeviceChoice,
    },
    Generate(GenerateRequest),
    /// Stop the running generation after the current token.
    Cancel,
}

/// Worker → page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Response {
    /// The worker is up and listening.
    Ready,
    /// The device in use, e.g. "GPU: SwiftShader Device (BrowserWebGpu)" or "CPU (no GPU: …)".
    Device { label: String, is_gpu: bool },
    /// A long step's progress (`total` 0 when unknown).
    Progress {
        stage: String,
        done: f64,
        total: f64,
    },
    /// A non-fatal notice, e.g. "model not cached: storage quota exceeded".
    Notice { message: String },
    Loaded {
        name: String,
        summary: String,
        seconds: f64,
    },
    /// The next piece of generated text.
    Token { text: String },
    Done {
        tokens: usize,
        tokens_per_second: f64,
        prompt_tokens: usize,
        stop: String,
    },
    /// A failure with a message meant for the person using the page.
    Error { message: String },
}

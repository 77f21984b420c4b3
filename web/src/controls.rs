//! The page's own controls: where the model comes from and how to generate, with the jobs they
//! start (load, generate) and what a link records of them.

use leptos::prelude::*;
use send_wrapper::SendWrapper;

use crate::fragment::{Fragment, Params};
use crate::protocol::{DeviceChoice, GenerateRequest, ModelSource, Request, WeightDtype};
use crate::shell::{Phase, Ui, WorkerLink};

/// The model picker.
#[derive(Clone, Copy)]
pub(crate) struct ModelSettings {
    /// "default", "remote" (a hub id or .gguf URL in `remote`) or "files" (`picked_files`).
    pub(crate) source_kind: RwSignal<String>,
    pub(crate) remote: RwSignal<String>,
    pub(crate) revision: RwSignal<String>,
    pub(crate) device: RwSignal<DeviceChoice>,
    pub(crate) dtype: RwSignal<WeightDtype>,
    pub(crate) picked_files: RwSignal<Option<SendWrapper<web_sys::FileList>>>,
    /// The source of the model loaded last, as a link names it (`Err`: files, which it cannot).
    loaded_with: RwSignal<Result<Params, ()>>,
}

impl ModelSettings {
    pub(crate) fn new() -> Self {
        Self {
            source_kind: RwSignal::new("default".to_string()),
            remote: RwSignal::new(String::new()),
            revision: RwSignal::new("main".to_string()),
            device: RwSignal::new(initial_device_choice()),
            dtype: RwSignal::new(initial_dtype_choice()),
            picked_files: RwSignal::new(None),
            loaded_with: RwSignal::new(Ok(Vec::new())),
        }
    }

    /// Loads the chosen model into the worker.
    pub(crate) fn load(self, ui: Ui, link: StoredValue<WorkerLink>) {
        let send = move |request: Request| link.update_value(|l| l.send(ui, request));
        ui.error.set(None);
        ui.notices.set(Vec::new());
        ui.phase.set(Phase::Loading);
        ui.model_name.set(String::new());
        let device = self.device.get_untracked();
        let dtype = self.dtype.get_untracked();
        match self.source_kind.get_untracked().as_str() {
            "remote" => {
                let (location, revision) =
                    (self.remote.get_untracked(), self.revision.get_untracked());
                self.loaded_with.set(Ok(vec![
                    ("model", location.clone()),
                    ("revision", revision.clone()),
                ]));
                send(Request::Load {
                    source: ModelSource::Remote { location, revision },
                    device,
                    dtype,
                })
            }
            "files" => {
                self.loaded_with.set(Err(()));
                let Some(files) = self.picked_files.get_untracked() else {
                    ui.error.set(Some(
                        "choose a .gguf file (or config.json, *.safetensors and tokenizer.json)"
                            .into(),
                    ));
                    ui.phase.set(Phase::Failed);
                    return;
                };
                let files = (*files).clone();
                leptos::task::spawn_local(async move {
                    match read_files(&files).await {
                        Ok(list) => send(Request::Load {
                            source: ModelSource::Files(list),
                            device,
                            dtype,
                        }),
                        Err(e) => {
                            ui.error.set(Some(e));
                            ui.phase.set(Phase::Failed);
                        }
                    }
                });
            }
            _ => {
                self.loaded_with.set(Ok(Vec::new()));
                send(Request::Load {
                    source: ModelSource::Default,
                    device,
                    dtype,
                })
            }
        }
    }

    /// The loaded model's source as a link names it (nothing for the default model), or why it
    /// cannot be linked.
    pub(crate) fn link_params(self) -> Result<Params, &'static str> {
        self.loaded_with.get().map_err(
            |()| "the model came from files on this computer: the link opens the default model",
        )
    }

    /// Sets the picker to the model a link names.
    pub(crate) fn follow(self, link: &Fragment) {
        if let Some(location) = link.text("model") {
            self.source_kind.set("remote".into());
            self.remote.set(location);
            link.set("revision", self.revision);
        }
    }
}

/// The prompt and how to continue it.
#[derive(Clone, Copy)]
pub(crate) struct GenerateSettings {
    pub(crate) prompt: RwSignal<String>,
    pub(crate) max_tokens: RwSignal<usize>,
    pub(crate) temperature: RwSignal<f32>,
    pub(crate) top_p: RwSignal<f32>,
    pub(crate) seed: RwSignal<u64>,
}

impl GenerateSettings {
    pub(crate) fn new() -> Self {
        Self {
            prompt: RwSignal::new("The capital of France is".to_string()),
            max_tokens: RwSignal::new(32),
            temperature: RwSignal::new(0.0),
            top_p: RwSignal::new(0.9),
            seed: RwSignal::new(42),
        }
    }

    /// Generates from the prompt with the model as it runs now.
    pub(crate) fn generate(self, ui: Ui, link: StoredValue<WorkerLink>) {
        ui.error.set(None);
        ui.output.set(String::new());
        ui.stats.set(String::new());
        ui.sequence.set(Vec::new());
        ui.explanation.set(None);
        ui.selected.set(None);
        ui.phase.set(Phase::Generating);
        let t = self.temperature.get_untracked();
        let request = GenerateRequest {
            prompt: self.prompt.get_untracked(),
            max_new_tokens: self.max_tokens.get_untracked(),
            temperature: t,
            top_p: (t > 0.0).then(|| self.top_p.get_untracked()),
            top_k: None,
            seed: self.seed.get_untracked(),
        };
        ui.generating.set(Some(request.clone()));
        link.update_value(|l| l.send(ui, Request::Generate(request)));
    }

    /// The last generation asked for, as a link names it.
    pub(crate) fn link_params(ui: Ui) -> Params {
        let Some(r) = ui.generating.get() else {
            return Vec::new();
        };
        let mut params = vec![
            ("prompt", r.prompt),
            ("max_tokens", r.max_new_tokens.to_string()),
            ("temperature", r.temperature.to_string()),
        ];
        if let Some(p) = r.top_p {
            params.push(("top_p", p.to_string()));
        }
        params.push(("seed", r.seed.to_string()));
        params
    }

    /// Sets the controls a link names; whether it names a generation.
    pub(crate) fn follow(self, link: &Fragment) -> bool {
        link.set("prompt", self.prompt);
        link.set("max_tokens", self.max_tokens);
        link.set("temperature", self.temperature);
        link.set("top_p", self.top_p);
        link.set("seed", self.seed);
        link.has("prompt")
    }
}

pub(crate) fn parse_device(v: &str) -> DeviceChoice {
    match v {
        "webgpu" => DeviceChoice::WebGpu,
        "cpu" => DeviceChoice::Cpu,
        _ => DeviceChoice::Auto,
    }
}

pub(crate) fn device_name(d: DeviceChoice) -> &'static str {
    match d {
        DeviceChoice::Auto => "auto",
        DeviceChoice::WebGpu => "webgpu",
        DeviceChoice::Cpu => "cpu",
    }
}

/// `?device=cpu|webgpu|auto` in the address picks the device for the first load (used by tests,
/// and handy to share a link).
fn initial_device_choice() -> DeviceChoice {
    query_param("device")
        .map(|v| parse_device(&v))
        .unwrap_or(DeviceChoice::Auto)
}

/// The value of `name=` in the page address' query, if present.
fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window().and_then(|w| w.location().search().ok())?;
    let prefix = format!("{name}=");
    search
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix(prefix.as_str()).map(str::to_string))
}

/// `?dtype=auto|f32|f16` in the address picks how the first load holds the weights.
fn initial_dtype_choice() -> WeightDtype {
    query_param("dtype")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

/// Reads picked files into memory for the worker.
async fn read_files(
    list: &web_sys::FileList,
) -> Result<Vec<(String, serde_bytes::ByteBuf)>, String> {
    let mut out = Vec::new();
    for i in 0..list.length() {
        let Some(file) = list.item(i) else { continue };
        let buffer = wasm_bindgen_futures::JsFuture::from(file.array_buffer())
            .await
            .map_err(|e| format!("reading {}: {e:?}", file.name()))?;
        out.push((
            file.name(),
            serde_bytes::ByteBuf::from(js_sys::Uint8Array::new(&buffer).to_vec()),
        ));
    }
    if out.is_empty() {
        return Err("no file was chosen".into());
    }
    Ok(out)
}

//! The compute worker: owns the model and the device, answers [`Request`]s with [`Response`]s.

use std::rc::Rc;

use js_sys::{Promise, Reflect};
use scalpel::device::{DevicePreference, SelectedDevice, on_gpu_lost, select_async};
use scalpel::generate::{GenerateOptions, Generator, Sampling};
use scalpel::io::safetensors::SafetensorsSource;
use scalpel::readback::to_vec_async;
use scalpel::relevance::MemoryLimits;
use scalpel::{LoadOptions, LoadedModel, ModelFiles, WeightDtype};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::MessageEvent;

use crate::fetch::exists;
use crate::job::{
    Circuits, Compression, Correction, JobResult, State, download, post, progress, scope, yield_now,
};
use crate::protocol::{
    DEFAULT_MODEL_HUB, DEFAULT_MODEL_NAME, DEFAULT_MODEL_URL, DeviceChoice, ExplainRequest,
    GenerateRequest, ModelSource, Request, Response,
};
use crate::{circuit_job, compress_job, correct_job};

/// Memory an explanation may take on the CPU path, on top of the model.
const EXPLAIN_CPU_BUDGET: u64 = 1 << 30;

thread_local! {
    static STATE: Rc<State> = Rc::new(State::default());
}

/// Installs the message handler and announces readiness.
pub fn start() {
    let handler = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        let request: Request = match serde_wasm_bindgen::from_value(event.data()) {
            Ok(r) => r,
            Err(e) => {
                return post(&Response::Error {
                    message: format!("malformed request: {e}"),
                });
            }
        };
        let state = STATE.with(Rc::clone);
        match request {
            Request::Cancel => state.cancel.set(true),
            _ if state.busy.get() => post(&Response::Error {
                message: "busy: wait for the current job to finish or press Stop".into(),
            }),
            Request::Load {
                source,
                device,
                dtype,
            } => spawn_job(state, async move |s| load(s, source, device, dtype).await),
            Request::Generate(req) => spawn_job(state, async move |s| generate(s, req).await),
            Request::Explain(req) => spawn_job(state, async move |s| explain(s, req).await),
            Request::Compress(req) => {
                spawn_job(state, async move |s| compress_job::handle(s, req).await)
            }
            Request::Circuits(req) => {
                spawn_job(state, async move |s| circuit_job::handle(s, req).await)
            }
            Request::Correct(req) => {
                spawn_job(state, async move |s| correct_job::handle(s, req).await)
            }
            Request::Restore => spawn_job(state, async move |s| compress_job::restore(s)),
            Request::Export(format) => {
                spawn_job(state, async move |s| compress_job::export(s, format).await)
            }
            Request::ClearCache => spawn_job(state, async move |_| {
                let message = match crate::fetch::clear_cache().await? {
                    true => "cleared the cached model downloads",
                    false => "there were no cached model downloads",
                };
                post(&Response::Notice {
                    message: message.into(),
                });
                Ok(())
            }),
        }
    });
    scope().set_onmessage(Some(handler.as_ref().unchecked_ref()));
    handler.forget();
    post(&Response::Ready);
}

fn spawn_job<F>(state: Rc<State>, job: F)
where
    F: AsyncFnOnce(&State) -> JobResult + 'static,
{
    state.busy.set(true);
    state.cancel.set(false);
    spawn_local(async move {
        if let Err(e) = job(&state).await {
            post(&Response::Error {
                message: e.to_string(),
            });
        }
        state.busy.set(false);
    });
}

/// The WebGPU adapter's description ("google swiftshader"), or why WebGPU cannot be used here;
/// checked in JavaScript before wgpu is touched.
async fn webgpu_adapter() -> Result<String, String> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into())
        .map_err(|_| "no navigator".to_string())?;
    let gpu = Reflect::get(&navigator, &"gpu".into())
        .ok()
        .filter(|g| !g.is_undefined() && !g.is_null())
        .ok_or("this browser exposes no WebGPU (navigator.gpu is missing)")?;
    let request: js_sys::Function = Reflect::get(&gpu, &"requestAdapter".into())
        .map_err(|_| "navigator.gpu.requestAdapter is missing".to_string())?
        .unchecked_into();
    let promise = request
        .call0(&gpu)
        .map_err(|e| format!("requesting a WebGPU adapter failed: {e:?}"))?;
    let adapter = JsFuture::from(Promise::from(promise))
        .await
        .map_err(|e| format!("requesting a WebGPU adapter failed: {e:?}"))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("WebGPU is present but offers no adapter (blocklisted or disabled GPU)".into());
    }
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or_default();
    let field = |name: &str| {
        Reflect::get(&info, &name.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let description = [field("vendor"), field("architecture"), field("description")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(if description.is_empty() {
        "adapter".into()
    } else {
        description
    })
}

async fn pick_device(choice: DeviceChoice) -> JobResult<SelectedDevice> {
    if choice == DeviceChoice::Cpu {
        return Ok(SelectedDevice::cpu(None));
    }
    let adapter = match webgpu_adapter().await {
        Ok(a) => a,
        Err(why) if choice == DeviceChoice::WebGpu => {
            return Err(format!("WebGPU was requested but {why}").into());
        }
        Err(why) => return Ok(SelectedDevice::cpu(Some(why))),
    };
    let pref = if choice == DeviceChoice::WebGpu {
        DevicePreference::Gpu
    } else {
        DevicePreference::Auto
    };
    let mut selected = select_async(pref).await.map_err(|e| e.to_string())?;
    if selected.is_gpu {
        // wgpu reports no adapter name in browsers; the WebGPU adapter info has it.
        selected.label = format!("WebGPU: {adapter}");
    }
    Ok(selected)
}

/// Hub id (`org/name` or `org/name/file.gguf`) or URL to the list of URLs to fetch.
fn hub_url(id: &str, revision: &str, file: &str) -> String {
    format!("https://huggingface.co/{id}/resolve/{revision}/{file}")
}

async fn files_for(source: ModelSource) -> JobResult<(String, ModelFiles)> {
    match source {
        ModelSource::Default => {
            // Beside the page when the site ships it; else from the hub (the same file).
            let gguf = if exists(DEFAULT_MODEL_URL).await {
                download(DEFAULT_MODEL_URL, "default model").await?
            } else {
                let (repo, revision, file) = DEFAULT_MODEL_HUB;
                post(&Response::Notice {
                    message: format!(
                        "this site does not ship the default model: downloading it from the Hugging Face hub ({repo}, 98 MB)"
                    ),
                });
                download(
                    &hub_url(repo, revision, file),
                    "default model (Hugging Face hub)",
                )
                .await?
            };
            Ok((
                DEFAULT_MODEL_NAME.to_string(),
                ModelFiles::Gguf {
                    gguf: gguf.into(),
                    tokenizer_json: None,
                },
            ))
        }
        ModelSource::Remote { location, revision } => {
            let location = location.trim().to_string();
            if location.starts_with("http://") || location.starts_with("https://") {
                if !location
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .ends_with(".gguf")
                {
                    return Err(
                        "a direct URL must point at a .gguf file; for safetensors give the hub id"
                            .into(),
                    );
                }
                let gguf = download(&location, "model").await?;
                return Ok((
                    location,
                    ModelFiles::Gguf {
                        gguf: gguf.into(),
                        tokenizer_json: None,
                    },
                ));
            }
            let parts: Vec<&str> = location.split('/').collect();
            match parts.as_slice() {
                [org, name, file] if file.ends_with(".gguf") => {
                    let id = format!("{org}/{name}");
                    let gguf = download(&hub_url(&id, &revision, file), file).await?;
                    Ok((
                        location.clone(),
                        ModelFiles::Gguf {
                            gguf: gguf.into(),
                            tokenizer_json: None,
                        },
                    ))
                }
                [org, name] if !org.is_empty() && !name.is_empty() => {
                    let id = location.as_str();
                    let config_json =
                        download(&hub_url(id, &revision, "config.json"), "config.json").await?;
                    let tokenizer_json = Some(
                        download(&hub_url(id, &revision, "tokenizer.json"), "tokenizer.json")
                            .await?,
                    );
                    let index_url = hub_url(id, &revision, "model.safetensors.index.json");
                    let index = if exists(&index_url).await {
                        Some(download(&index_url, "shard index").await?)
                    } else {
                        None
                    };
                    let names = match &index {
                        Some(index) => SafetensorsSource::shard_names_from_index(index)
                            .map_err(|e| e.to_string())?,
                        None => vec!["model.safetensors".to_string()],
                    };
                    let mut shards = Vec::new();
                    for n in names {
                        shards.push((
                            n.clone(),
                            download(&hub_url(id, &revision, &n), &n).await?.into(),
                        ));
                    }
                    if let Some(index) = &index {
                        SafetensorsSource::new(shards.clone())
                            .and_then(|s| s.check_index(index))
                            .map_err(|e| e.to_string())?;
                    }
                    Ok((
                        location.clone(),
                        ModelFiles::HuggingFace {
                            config_json,
                            shards,
                            tokenizer_json,
                        },
                    ))
                }
                _ => Err(format!(
                    "`{location}` is neither a hub id (`org/name`, `org/name/file.gguf`) nor a URL to a .gguf file"
                ).into()),
            }
        }
        ModelSource::Files(files) => {
            let mut files: Vec<(String, Vec<u8>)> =
                files.into_iter().map(|(n, b)| (n, b.into_vec())).collect();
            let take = |files: &mut Vec<(String, Vec<u8>)>, pred: &dyn Fn(&str) -> bool| {
                files
                    .iter()
                    .position(|(n, _)| pred(n))
                    .map(|i| files.remove(i))
            };
            let tokenizer_json = take(&mut files, &|n| n.ends_with("tokenizer.json")).map(|f| f.1);
            if let Some((name, gguf)) = take(&mut files, &|n| n.ends_with(".gguf")) {
                return Ok((
                    name,
                    ModelFiles::Gguf {
                        gguf: gguf.into(),
                        tokenizer_json,
                    },
                ));
            }
            let (_, config_json) = take(&mut files, &|n| n.ends_with("config.json")).ok_or(
                "pick a .gguf file, or config.json + *.safetensors + tokenizer.json of a Hugging Face checkpoint",
            )?;
            let shards: Vec<_> = files
                .into_iter()
                .filter(|(n, _)| n.ends_with(".safetensors"))
                .map(|(n, bytes)| (n, bytes.into()))
                .collect();
            if shards.is_empty() {
                return Err("no .safetensors file among the picked files".into());
            }
            Ok((
                "local files".into(),
                ModelFiles::HuggingFace {
                    config_json,
                    shards,
                    tokenizer_json,
                },
            ))
        }
    }
}

async fn load(
    state: &State,
    source: ModelSource,
    choice: DeviceChoice,
    dtype: WeightDtype,
) -> JobResult {
    let started = js_sys::Date::now();
    // Drop the previous model first: two models at once may not fit in the tab's memory.
    state.model.borrow_mut().take();
    Compression::reset(&state.compression);
    Circuits::reset(&state.circuits);
    Correction::reset(&state.correction);
    let device = pick_device(choice).await?;
    if device.is_gpu && !state.watching_device_loss.get() {
        let watching = on_gpu_lost(|reason| post(&Response::DeviceLost { reason }));
        state.watching_device_loss.set(watching);
    }
    post(&Response::Device {
        label: device.label.clone(),
        is_gpu: device.is_gpu,
    });
    let (name, files) = files_for(source).await?;
    progress("Preparing tensors", 0.0, 0.0);
    yield_now().await;
    let loaded = files
        .load_with(
            &device.device,
            LoadOptions {
                dtype,
                max_binding_bytes: device.max_binding_bytes,
                ..Default::default()
            },
            &mut |done, total| progress("Loading tensors", done as f64, total as f64),
        )
        .map_err(|e| e.to_string())?;
    let params = summary(&loaded.model.config);
    let dtype = loaded.model.weight_dtype().name().to_string();
    let architecture = loaded.model.config.architecture;
    state.on_gpu.set(device.is_gpu);
    state.limits.set(MemoryLimits {
        max_buffer_bytes: device.max_binding_bytes,
        // wasm32 addresses 4 GiB in all, and the model already lives there on the CPU path.
        max_total_bytes: (!device.is_gpu).then_some(EXPLAIN_CPU_BUDGET),
    });
    *state.model.borrow_mut() = Some(Rc::new(loaded));
    post(&Response::Loaded {
        name,
        summary: params,
        seconds: (js_sys::Date::now() - started) / 1000.0,
        dtype,
        linears: architecture
            .spec()
            .linears
            .iter()
            .map(|&(kind, module)| (kind.short_name().to_string(), module.to_string()))
            .collect(),
    });
    Ok(())
}

fn summary(c: &scalpel::ModelConfig) -> String {
    format!(
        "{:?} · {} layers · hidden {} · {} heads ({} KV) · vocab {} · context {}",
        c.architecture,
        c.num_layers,
        c.hidden_size,
        c.num_heads,
        c.num_kv_heads,
        c.vocab_size,
        c.max_position_embeddings
    )
}

async fn generate(state: &State, req: GenerateRequest) -> JobResult {
    let loaded = state.loaded()?;
    let LoadedModel { model, tokenizer } = loaded.as_ref();
    let prompt = tokenizer.encode(&req.prompt).map_err(|e| e.to_string())?;
    let sampling = Sampling::from_temperature(req.temperature, req.top_k, req.top_p);
    let options = GenerateOptions {
        max_new_tokens: req.max_new_tokens,
        sampling,
        seed: req.seed,
        ..Default::default()
    };
    let mut generator = Generator::new(model, &prompt, options).map_err(|e| e.to_string())?;
    let mut stream = tokenizer.stream();
    let mut first_token_at = None;
    while !generator.is_finished() {
        if state.cancel.get() {
            generator.cancel();
            break;
        }
        let logits = generator.forward().map_err(|e| e.to_string())?;
        let logits = to_vec_async(logits).await.map_err(|e| e.to_string())?;
        if let Some(id) = generator.accept(&logits).map_err(|e| e.to_string())? {
            first_token_at.get_or_insert_with(js_sys::Date::now);
            if let Some(text) = stream.push(id).map_err(|e| e.to_string())? {
                post(&Response::Token { text });
            }
        }
        yield_now().await;
    }
    let n = generator.generated().len();
    let seconds = first_token_at.map_or(0.0, |t| (js_sys::Date::now() - t) / 1000.0);
    let tokens_per_second = if n > 1 && seconds > 0.0 {
        (n - 1) as f64 / seconds
    } else {
        0.0
    };
    let stop = generator
        .stop_reason()
        .map_or("max tokens".to_string(), |s| format!("{s:?}"));
    let ids: Vec<u32> = prompt
        .iter()
        .chain(generator.generated())
        .copied()
        .collect();
    let pieces = ids
        .iter()
        .map(|&id| tokenizer.id_to_text(id))
        .collect::<scalpel::Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    post(&Response::Done {
        tokens: n,
        tokens_per_second,
        prompt_tokens: prompt.len(),
        stop,
        ids,
        pieces,
    });
    Ok(())
}

async fn explain(state: &State, req: ExplainRequest) -> JobResult {
    let loaded = state.loaded()?;
    let index = req.context.len();
    let view = crate::explain_job::explain(&loaded, &state.limits.get(), req, index, &state.cancel)
        .await?;
    post(&Response::Explanation(view));
    Ok(())
}

//! The page's layout (Leptos, client-side rendered): the model picker, the prompt and its
//! settings, the output, and the panels. It holds no tensors: every job goes to the worker through
//! the shell (`shell`).

use leptos::prelude::*;
use send_wrapper::SendWrapper;
use web_sys::HtmlInputElement;

use crate::circuit_view::{CircuitPanel, CircuitSettings};
use crate::compress_view::{CompressPanel, CompressSettings};
use crate::controls::{GenerateSettings, ModelSettings, device_name, parse_device};
use crate::correct_view::{CorrectPanel, CorrectSettings};
use crate::explain_view::ExplainPanel;
use crate::link::{PageSettings, link_view};
use crate::protocol::{DEFAULT_MODEL_NAME, Request};
use crate::shell::{Panel, Phase, Ui, WorkerLink, progress_view, start_worker};
use crate::tour::tour_view;
use crate::widgets::number_field;

pub fn mount() {
    leptos::mount::mount_to_body(App);
}

#[component]
fn App() -> impl IntoView {
    let ui = Ui::new();
    let link = StoredValue::new(WorkerLink::default());
    start_worker(ui, link);
    let send = move |request: Request| link.update_value(|l| l.send(ui, request));

    let page = PageSettings {
        model: ModelSettings::new(),
        generate: GenerateSettings::new(),
        compress: CompressSettings::new(),
        circuits: CircuitSettings::new(),
        correct: CorrectSettings::new(),
    };
    let PageSettings {
        model,
        generate: generation,
        ..
    } = page;
    let ModelSettings {
        source_kind,
        remote,
        revision,
        device: device_choice,
        dtype: dtype_choice,
        picked_files,
        ..
    } = model;
    let GenerateSettings {
        prompt,
        max_tokens,
        temperature,
        top_p,
        seed,
    } = generation;
    // A link's settings first, so that the first load is the model it names.
    let (replay, unread) = page.follow_address(ui);
    replay.drive(page, ui, link);
    let load = move || model.load(ui, link);
    // Open with the default model (or the link's).
    load();
    if let Some(notice) = unread {
        ui.notices.update(|n| n.push(notice));
    }
    let generate = move || generation.generate(ui, link);
    let tour = RwSignal::new(None);

    // A mask applied or undone: show what the model writes now.
    Effect::new(move |_| {
        if ui.regenerate.get() > 0 && ui.phase.get_untracked() == Phase::Ready {
            generate();
        }
    });

    let busy = move || {
        matches!(
            ui.phase.get(),
            Phase::Loading
                | Phase::Generating
                | Phase::Explaining
                | Phase::Compressing
                | Phase::Starting
        )
    };
    let can_generate = move || ui.phase.get() == Phase::Ready;

    view! {
        <header class="top">
            <div class="brand">
                <span class="logo">"✂"</span>
                <div>
                    <h1>"Scalpel"</h1>
                    <p class="tagline">"Attribution-guided pruning of language models, in your browser"</p>
                </div>
            </div>
            <button class="small" data-testid="tour-open" on:click=move |_| tour.set(Some(0))
                title="A six-step walk through generating, explaining, pruning, circuits and correction">"Tour"</button>
            <div class="device" class:gpu=move || ui.device_is_gpu.get() data-testid="device">
                <span class="dot"></span>
                {move || ui.device.get()}
                {move || ui.dtype.get().map(|d| view! { <span class="badge-part" data-testid="dtype">{d}</span> })}
                {move || ui.tokens_per_second.get().map(|t| view! {
                    <span class="badge-part" data-testid="badge-speed">{format!("{t:.1} tokens/s")}</span>
                })}
            </div>
        </header>

        <main>
            <section class="card model">
                <h2>"Model"</h2>
                <div class="current" data-testid="model-name">
                    {move || {
                        let name = ui.model_name.get();
                        if name.is_empty() { "no model loaded".to_string() } else { name }
                    }}
                </div>
                <div class="summary">{move || ui.model_summary.get()}</div>
                {move || (!ui.model_name.get().is_empty()).then(|| model_state(ui, link))}
                {link_view(page, ui, replay)}
                <div class="picker">
                    <label>
                        <input type="radio" name="source" value="default" data-testid="source-default"
                            prop:checked=move || source_kind.get() == "default"
                            on:change=move |_| source_kind.set("default".into()) />
                        {DEFAULT_MODEL_NAME}
                    </label>
                    <label>
                        <input type="radio" name="source" value="remote" data-testid="source-remote"
                            prop:checked=move || source_kind.get() == "remote"
                            on:change=move |_| source_kind.set("remote".into()) />
                        "Hugging Face id or .gguf URL"
                    </label>
                    <label>
                        <input type="radio" name="source" value="files" data-testid="source-files"
                            prop:checked=move || source_kind.get() == "files"
                            on:change=move |_| source_kind.set("files".into()) />
                        "Local file(s)"
                    </label>
                </div>
                <Show when=move || source_kind.get() == "remote">
                    <div class="row">
                        <input class="grow" type="text" data-testid="remote-location" placeholder="HuggingFaceTB/SmolLM2-135M or https://…/model.gguf"
                            prop:value=move || remote.get()
                            on:input=move |ev| remote.set(event_target_value(&ev)) />
                        <input class="narrow" type="text" title="revision"
                            prop:value=move || revision.get()
                            on:input=move |ev| revision.set(event_target_value(&ev)) />
                    </div>
                </Show>
                <Show when=move || source_kind.get() == "files">
                    <div class="row">
                        <input type="file" multiple=true accept=".gguf,.json,.safetensors" data-testid="file-input"
                            on:change=move |ev| {
                                let input: HtmlInputElement = event_target(&ev);
                                picked_files.set(input.files().map(SendWrapper::new));
                            } />
                    </div>
                </Show>
                <div class="row">
                    <label class="inline">"Device "
                        <select on:change=move |ev| device_choice.set(parse_device(&event_target_value(&ev)))
                            prop:value=move || device_name(device_choice.get())>
                            <option value="auto">"Auto (WebGPU if available)"</option>
                            <option value="webgpu">"WebGPU"</option>
                            <option value="cpu">"CPU"</option>
                        </select>
                    </label>
                    <label class="inline" title="How the weights are held: auto keeps bf16 and f16 checkpoints 16-bit (as f16) and the rest float32; f16 halves any model's memory at a rounding of about 0.05% per weight (relevance is still computed in float32)">"Weights "
                        <select on:change=move |ev| dtype_choice.set(event_target_value(&ev).parse().unwrap_or_default())
                            prop:value=move || dtype_choice.get().name() data-testid="dtype-choice">
                            <option value="auto">"Auto"</option>
                            <option value="f32">"float32"</option>
                            <option value="f16">"float16"</option>
                        </select>
                    </label>
                    <button on:click=move |_| load() disabled=busy data-testid="load">"Load model"</button>
                    <button on:click=move |_| send(Request::ClearCache) disabled=busy data-testid="clear-cache"
                        title="Delete the model downloads this page keeps in the browser's Cache Storage">"Clear cached models"</button>
                </div>
                {move || (ui.phase.get() == Phase::Loading).then(|| progress_view(ui))}
                <ul class="notices">
                    {move || ui.notices.get().into_iter().map(|n| view! { <li>{n}</li> }).collect_view()}
                </ul>
            </section>

            <section class="card generate">
                <h2>"Generate"</h2>
                <textarea rows="3" data-testid="prompt"
                    prop:value=move || prompt.get()
                    on:input=move |ev| prompt.set(event_target_value(&ev))></textarea>
                <div class="row controls">
                    {number_field("Max tokens", max_tokens, "1", "1024", "1", "max-tokens")}
                    {number_field("Temperature", temperature, "0", "2", "0.1", "temperature")}
                    {number_field("Top-p", top_p, "0.05", "1", "0.05", "top-p")}
                    {number_field("Seed", seed, "0", "", "1", "seed")}
                    <div class="spacer"></div>
                    <button class="primary" data-testid="generate" on:click=move |_| generate()
                        disabled=move || !can_generate()>"Generate"</button>
                    <button data-testid="stop" on:click=move |_| send(Request::Cancel)
                        disabled=move || !matches!(ui.phase.get(), Phase::Generating | Phase::Explaining | Phase::Compressing)>"Stop"</button>
                </div>
                <div class="output" data-testid="output">
                    {move || if ui.sequence.get().is_empty() {
                        view! {
                            <span class="prompt-echo">{move || if ui.output.get().is_empty() && ui.stats.get().is_empty() { String::new() } else { prompt.get() }}</span>
                            <span class="generated">{move || ui.output.get()}</span>
                        }.into_any()
                    } else {
                        clickable_output(ui, link).into_any()
                    }}
                    <Show when=move || ui.phase.get() == Phase::Generating><span class="cursor">"▍"</span></Show>
                </div>
                {move || original_beside(ui)}
                <div class="stats" data-testid="stats"
                    title="stop: why generation ended (MaxTokens: the token limit; EndOfSequence: the model ended its text)">
                    {move || ui.stats.get()}</div>
                <Show when=move || !ui.sequence.get().is_empty() && ui.explanation.get().is_none() && !ui.is_explaining()>
                    <p class="hint">"Click a generated token to see why the model wrote it."</p>
                </Show>
            </section>

            <Show when=move || ui.explanation.get().is_some() || ui.is_explaining()>
                <ExplainPanel ui=ui link=link />
            </Show>

            <Show when=move || !ui.model_name.get().is_empty()>
                <CompressPanel ui=ui link=link settings=page.compress />
                <CircuitPanel ui=ui link=link settings=page.circuits />
                <CorrectPanel ui=ui link=link settings=page.correct />
            </Show>

            {move || ui.error.get().map(|e| view! { <div class="error" role="alert" data-testid="error">{e}</div> })}
        </main>
        {tour_view(tour, replay.active.get_untracked())}
        <footer>
            "Runs entirely in this tab: no data leaves the browser except the model downloads you choose. "
            "LRP is patented by its authors (free for personal and scientific use)."
        </footer>
    }
}

/// The finished text as one span per token; generated tokens can be clicked to explain them.
fn clickable_output(ui: Ui, link: StoredValue<WorkerLink>) -> impl IntoView {
    let sequence = ui.sequence.get();
    let split = ui.prompt_tokens.get().min(sequence.len());
    let prompt: String = sequence[..split].iter().map(|(_, t)| t.as_str()).collect();
    let generated = sequence[split..]
        .iter()
        .enumerate()
        .map(|(i, (_, text))| {
            let position = split + i;
            view! {
                <span class="tok" data-testid="gen-token"
                    class:selected=move || ui.selected.get() == Some(position)
                    title="explain this token"
                    on:click=move |_| if !ui.is_explaining() { ui.explain(link, position) }>
                    {text.clone()}
                </span>
            }
        })
        .collect_view();
    view! {
        <span class="prompt-echo">{prompt}</span>
        <span class="generated">{generated}</span>
    }
}

/// What runs now — the original weights, or a panel's pruned, circuit or corrected model — and
/// the one way back to the original, whichever panel changed it.
fn model_state(ui: Ui, link: StoredValue<WorkerLink>) -> impl IntoView {
    let label = move || match ui.on_model.get() {
        None => "running the original weights",
        Some(Panel::Compress) => "running the pruned model (Compress)",
        Some(Panel::Circuits) => "running a circuit alone (Circuits)",
        Some(Panel::Correct) => "running the corrected model (Correct)",
    };
    let back = move |_| {
        let panel = ui.on_model.get_untracked().unwrap_or(Panel::Compress);
        ui.run_job(link, panel, Request::Restore);
    };
    view! {
        <div class="row model-state">
            <span data-testid="model-state" class:changed=move || ui.on_model.get().is_some()>{label}</span>
            <button data-testid="back-to-original"
                disabled=move || ui.on_model.get().is_none() || !ui.is_idle()
                on:click=back>"Back to the original model"</button>
        </div>
    }
}

/// What the original weights wrote for the same request, while a panel's masks run: before and
/// after side by side.
fn original_beside(ui: Ui) -> Option<impl IntoView> {
    ui.on_model.get()?;
    let (asked, text) = ui.original.get()?;
    (ui.generating.get().as_ref() == Some(&asked)).then(|| {
        view! {
            <div class="original-output" data-testid="original-output">
                <span class="label">"the original weights wrote: "</span>{text}
            </div>
        }
    })
}

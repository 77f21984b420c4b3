//! Form pieces the panels share: labelled selects and number fields, and reading a picked text file.

use leptos::prelude::*;
use scalpel::export::gguf::GgufType;
use scalpel::prune::Granularity;
use scalpel::relevance::RuleSet;
use scalpel::score::ScoreMethod;
use send_wrapper::SendWrapper;
use web_sys::HtmlInputElement;

use crate::protocol::ExportFormat;
use crate::shell::{Ui, offer_downloads};

/// One of a closed set of options a control offers: the core's enums (named as the CLI and the
/// files name them) or a panel's own fixed words.
pub(crate) trait Choice: Copy + PartialEq + Send + Sync + 'static {
    /// The option's value in the control.
    fn key(self) -> &'static str;
}

impl Choice for &'static str {
    fn key(self) -> &'static str {
        self
    }
}

impl Choice for ScoreMethod {
    fn key(self) -> &'static str {
        self.name()
    }
}

impl Choice for Granularity {
    fn key(self) -> &'static str {
        self.name()
    }
}

impl Choice for RuleSet {
    fn key(self) -> &'static str {
        self.name()
    }
}

/// The option of `options` whose key is `key`.
pub(crate) fn choice_for<T: Choice>(options: &[(T, &'static str)], key: &str) -> Option<T> {
    options.iter().map(|(c, _)| *c).find(|c| c.key() == key)
}

/// A labelled `<select>` bound to `value`, offering `(option, label)` choices.
pub(crate) fn select_field<T: Choice>(
    label: &'static str,
    testid: &'static str,
    value: RwSignal<T>,
    options: &'static [(T, &'static str)],
) -> impl IntoView {
    view! {
        <label class="inline">{label} " "
            <select data-testid=testid prop:value=move || value.get().key()
                on:change=move |ev| {
                    if let Some(c) = choice_for(options, &event_target_value(&ev)) {
                        value.set(c)
                    }
                }>
                {options.iter().map(|(v, l)| view! { <option value=v.key()>{*l}</option> }).collect_view()}
            </select>
        </label>
    }
}

/// A small button that downloads what `make` writes, as the file `name` of type `mime` (made when
/// clicked, in the page: nothing crosses to the worker).
pub(crate) fn save_button(
    ui: Ui,
    label: &'static str,
    testid: &'static str,
    name: String,
    mime: &'static str,
    make: impl Fn() -> String + 'static,
) -> impl IntoView {
    let save = move |_| {
        let text = make();
        let offered =
            web_sys::Blob::new_with_str_sequence_and_options(&js_sys::Array::of1(&text.into()), &{
                let bag = web_sys::BlobPropertyBag::new();
                bag.set_type(mime);
                bag
            })
            .and_then(|blob| web_sys::Url::create_object_url_with_blob(&blob))
            .map_err(|e| format!("{e:?}"))
            .and_then(|url| offer_downloads(&[(name.clone(), url, 0)]));
        if let Err(e) = offered {
            ui.fail(format!("could not offer {name} for download: {e}"));
        }
    };
    view! { <button class="small" data-testid=testid on:click=save>{label}</button> }
}

/// Rows as CSV (RFC 4180: fields with commas, quotes or line breaks quoted).
pub(crate) fn csv(rows: &[Vec<String>]) -> String {
    let field = |f: &String| {
        if f.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", f.replace('"', "\"\""))
        } else {
            f.clone()
        }
    };
    rows.iter()
        .map(|r| r.iter().map(field).collect::<Vec<_>>().join(",") + "\r\n")
        .collect()
}

/// The download formats the page offers, as (key, label).
const EXPORT_FORMATS: [(&str, &str); 5] = [
    ("safetensors", "safetensors (pruned weights as zeros)"),
    ("shrunk", "safetensors, pruned MLP neurons or heads removed"),
    ("gguf-f16", "GGUF F16 (llama.cpp)"),
    ("gguf-q8_0", "GGUF Q8_0 (llama.cpp)"),
    ("gguf-q4_0", "GGUF Q4_0 (llama.cpp)"),
];

fn export_format(key: &str) -> ExportFormat {
    match key {
        "shrunk" => ExportFormat::Shrunk,
        "gguf-f16" => ExportFormat::Gguf(GgufType::F16),
        "gguf-q8_0" => ExportFormat::Gguf(GgufType::Q8_0),
        "gguf-q4_0" => ExportFormat::Gguf(GgufType::Q4_0),
        _ => ExportFormat::Safetensors,
    }
}

/// A format choice and a download button (`testid`, its select `testid-format`) for the model
/// as it runs now; `enabled` says when there is something worth downloading.
pub(crate) fn download_field(
    label: &'static str,
    testid: &'static str,
    format_testid: &'static str,
    enabled: impl Fn() -> bool + Send + Sync + 'static,
    download: impl Fn(ExportFormat) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let format = RwSignal::new("safetensors".to_string());
    view! {
        <select data-testid=format_testid prop:value=move || format.get()
            title="safetensors loads in transformers and Scalpel; GGUF in llama.cpp and Scalpel (Llama, Qwen2/3, Phi-3 and GPT-2 only); removing pruned neurons needs a correction or circuit of MLP neurons"
            on:change=move |ev| format.set(event_target_value(&ev))>
            {EXPORT_FORMATS.map(|(v, l)| view! { <option value=v>{l}</option> })}
        </select>
        <button data-testid=testid disabled=move || !enabled()
            on:click=move |_| download(export_format(&format.get_untracked()))>{label}</button>
    }
}

/// What the "Linears" choices mean (shown on hover).
const LINEARS_HELP: &str = "Which weight matrices compete: all of the decoder blocks' Linears, or one \
    kind only (the paper removes repetition in the MLP's up projection, OPT's fc1, alone); the \
    others stay whole. Neurons are the inputs of the MLP's down projection and heads those of \
    the attention output, so with those only `all` or that Linear can be chosen.";

/// A labelled `<select>` of the loaded model's block Linears (`all`, or one kind), bound to
/// `value` (a `scalpel::unit::LinearSet` name); `then` runs after each change.
pub(crate) fn linears_field(
    ui: Ui,
    testid: &'static str,
    value: RwSignal<String>,
    then: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <label class="inline" title=LINEARS_HELP>"Linears "
            <select data-testid=testid prop:value=move || value.get()
                on:change=move |ev| { value.set(event_target_value(&ev)); then() }>
                <option value="all">"all"</option>
                {move || ui.model_linears.get().into_iter().map(|(kind, module)| {
                    view! { <option value=kind.clone()>{module}</option> }
                }).collect_view()}
            </select>
        </label>
    }
}

/// A labelled number input bound to `value`; text that does not parse leaves the value unchanged.
pub(crate) fn number_field<T>(
    label: &'static str,
    value: RwSignal<T>,
    min: &'static str,
    max: &'static str,
    step: &'static str,
    testid: &'static str,
) -> impl IntoView
where
    T: std::str::FromStr + ToString + Clone + Send + Sync + 'static,
{
    view! {
        <label class="inline">{label} " "
            <input type="number" class="narrow" min=min max=max step=step data-testid=testid
                prop:value=move || value.get().to_string()
                on:input=move |ev| if let Ok(v) = event_target_value(&ev).parse() { value.set(v) } />
        </label>
    }
}

/// Reads the file picked in the `<input type=file>` of `ev` as text and hands `(name, text)` to
/// `done`; a read failure shows as the page's error.
pub(crate) fn read_picked_text(
    ui: Ui,
    ev: &leptos::ev::Event,
    done: impl FnOnce(String, String) + 'static,
) {
    let input: HtmlInputElement = event_target(ev);
    let Some(file) = input.files().and_then(|f| f.item(0)) else {
        return;
    };
    let file = SendWrapper::new(file);
    leptos::task::spawn_local(async move {
        match wasm_bindgen_futures::JsFuture::from(file.text()).await {
            Ok(t) => done(file.name(), t.as_string().unwrap_or_default()),
            Err(e) => ui.fail(format!("could not read {}: {e:?}", file.name())),
        }
    });
}

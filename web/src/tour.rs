//! A short guided tour for a first visit: six steps, each a sentence and the control it is about,
//! outlined on the page. It opens by itself once (the browser remembers it was finished or
//! skipped) and again from the "Tour" button.

use leptos::prelude::*;

/// (the control's test id, what to do with it).
const STEPS: [(&str, &str); 6] = [
    (
        "generate",
        "Press Generate: the model continues “The capital of France is”, on your GPU if the browser offers WebGPU, else on the CPU.",
    ),
    (
        "output",
        "Click a generated token such as “ Paris”: the heatmap shows which prompt tokens made the model write it (red for it, blue against it), down to single attention heads and MLP neurons.",
    ),
    (
        "compress-method",
        "Compress: choose Wanda, press Compute scores, then Apply 50 %: the pruned model writes the prompt's continuation again, beside what the original wrote.",
    ),
    (
        "compute-scores",
        "Now choose LRP mean |R| and score again: at the same 50 % compare the perplexity readout and the continuation with Wanda's (lower perplexity: less was lost).",
    ),
    (
        "find-circuit",
        "Circuits: with the indirect-object task (IOI) and attention heads, Find circuit measures how few heads still name the right person; the threshold then picks the circuit and runs it alone.",
    ),
    (
        "find-correction",
        "Correct: with Toxicity, Find & measure corrections removes the components most relevant to toxic continuations; pick a dose and compare original and corrected text. “Back to the original model” undoes any change.",
    ),
];

/// Where the browser remembers the tour was finished or skipped.
const DONE_KEY: &str = "scalpel-tour-done";

/// `localStorage.<method>(args…)`, called by name (web-sys's Storage binding would need one
/// more feature, and its whole wasm build again); `None` where storage is missing or refused.
fn local_storage(method: &str, args: &[&str]) -> Option<wasm_bindgen::JsValue> {
    use wasm_bindgen::JsCast;
    let window = web_sys::window()?;
    let storage = js_sys::Reflect::get(&window, &"localStorage".into()).ok()?;
    let f: js_sys::Function = js_sys::Reflect::get(&storage, &method.into())
        .ok()?
        .dyn_into()
        .ok()?;
    let args: js_sys::Array = args
        .iter()
        .map(|a| wasm_bindgen::JsValue::from(*a))
        .collect();
    f.apply(&storage, &args).ok()
}

fn remembered_done() -> bool {
    local_storage("getItem", &[DONE_KEY]).is_some_and(|v| !v.is_null())
}

fn remember_done() {
    // Storage can be full or refused (private windows): the tour then opens next time too.
    let _ = local_storage("setItem", &[DONE_KEY, "1"]);
}

/// The control of step `step`, outlined (and scrolled to), the others not.
fn highlight(step: Option<usize>) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    if let Ok(Some(old)) = document.query_selector("[data-tour]") {
        let _ = old.remove_attribute("data-tour");
    }
    let Some((testid, _)) = step.and_then(|s| STEPS.get(s)) else {
        return;
    };
    if let Ok(Some(el)) = document.query_selector(&format!("[data-testid={testid}]")) {
        let _ = el.set_attribute("data-tour", "on");
        el.scroll_into_view();
    }
}

/// The tour's card, and `open` to start it again; it opens by itself unless it was finished or
/// skipped before, or the page follows a link (`quiet`).
pub(crate) fn tour_view(open: RwSignal<Option<usize>>, quiet: bool) -> impl IntoView {
    if !quiet && !remembered_done() {
        open.set(Some(0));
    }
    // Outlines the step's control once it is on the page (the panels appear with the model).
    Effect::new(move |_| {
        let step = open.get();
        request_animation_frame(move || highlight(step));
    });
    let close = move || {
        remember_done();
        open.set(None);
    };
    move || {
        open.get().map(|step| {
            let (_, text) = STEPS[step];
            let last = step + 1 == STEPS.len();
            view! {
                <aside class="tour" data-testid="tour" role="dialog" aria-label="Tour">
                    <div class="tour-step" data-testid="tour-step">{format!("{} / {}", step + 1, STEPS.len())}</div>
                    <p data-testid="tour-text">{text}</p>
                    <div class="row">
                        <button class="small" data-testid="tour-skip" on:click=move |_| close()>
                            {if last { "Close" } else { "Skip the tour" }}</button>
                        <div class="spacer"></div>
                        <button class="small" data-testid="tour-back" disabled=step == 0
                            on:click=move |_| open.set(Some(step - 1))>"Back"</button>
                        <button class="small primary" data-testid="tour-next"
                            on:click=move |_| if last { close() } else { open.set(Some(step + 1)) }>
                            {if last { "Finish" } else { "Next" }}</button>
                    </div>
                </aside>
            }
        })
    }
}

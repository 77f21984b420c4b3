//! Links that reopen what the page showed. The address's fragment (`#…`) always holds the
//! settings that produced the view: the model, the generation, the explained token and rule set,
//! and each panel's job and choice (`fragment` has the format; each part names its own keys).
//! Opening such a link loads the same model and runs the same jobs again, one after the other:
//! relevance, scores, masks and curves are recomputed, not stored in the link (a link stays a few
//! hundred bytes, and every job is deterministic, so the numbers come out the same). A circuit
//! from a file is linked by the file's URL.

use std::collections::VecDeque;
use std::time::Duration;

use leptos::prelude::*;

use crate::circuit_view::{CircuitReplay, CircuitSettings};
use crate::compress_view::CompressSettings;
use crate::controls::{GenerateSettings, ModelSettings};
use crate::correct_view::CorrectSettings;
use crate::explain_view::RULES;
use crate::fragment::{Fragment, Params, encode};
use crate::shell::{Panel, Phase, Ui, WorkerLink};
use crate::widgets::Choice;

/// Links longer than this get a note: mail and chat apps cut some links of a few thousand
/// characters.
const LONG_LINK: usize = 2000;

/// Every control a link sets.
#[derive(Clone, Copy)]
pub(crate) struct PageSettings {
    pub(crate) model: ModelSettings,
    pub(crate) generate: GenerateSettings,
    pub(crate) compress: CompressSettings,
    pub(crate) circuits: CircuitSettings,
    pub(crate) correct: CorrectSettings,
}

/// One job a link runs again, once the page is idle.
#[derive(Clone, Debug)]
enum Step {
    Generate,
    /// Explain the n-th generated token.
    Explain(usize),
    Score,
    Mask,
    FindCircuit,
    PickCircuit,
    LoadCircuit(String),
    FindCorrection,
    PickDose {
        apply: bool,
    },
}

impl Step {
    /// Whether the page generates again by itself after this step (the model changed).
    fn regenerates(&self) -> bool {
        matches!(
            self,
            Step::Mask | Step::PickCircuit | Step::LoadCircuit(_) | Step::PickDose { .. }
        )
    }
}

/// The steps a link asks for, and whether they run now.
#[derive(Clone, Copy)]
pub(crate) struct Replay {
    steps: StoredValue<VecDeque<Step>>,
    /// True while a link's steps run: the address is left as the link gave it until they end.
    pub(crate) active: RwSignal<bool>,
}

impl PageSettings {
    /// The fragment that reopens what the page shows now, and what it cannot carry.
    fn fragment(self, ui: Ui) -> (String, Vec<&'static str>) {
        let mut params: Params = Vec::new();
        let mut left_out = Vec::new();
        match self.model.link_params() {
            Ok(p) => params.extend(p),
            Err(why) => left_out.push(why),
        }
        params.extend(GenerateSettings::link_params(ui));
        let explained = ui.explanation.get().is_some();
        if let (true, Some(position)) = (explained, ui.selected.get()) {
            let generated = position.saturating_sub(ui.prompt_tokens.get());
            params.push(("explain", generated.to_string()));
            params.push(("rules", ui.rules.get().key().to_string()));
        }
        params.extend(self.compress.link_params(ui));
        match self.circuits.link_params(ui) {
            Ok(p) => params.extend(p),
            Err(why) => left_out.push(why),
        }
        params.extend(self.correct.link_params(ui));
        let running = match ui.on_model.get() {
            Some(Panel::Compress) => Some("compress"),
            Some(Panel::Circuits) => Some("circuits"),
            Some(Panel::Correct) => Some("correct"),
            None => None,
        };
        if let Some(r) = running {
            params.push(("running", r.to_string()));
        }
        (encode(&params), left_out)
    }

    /// Sets the controls from the address's fragment, if it has one, and queues the jobs it
    /// names; they run once the model has loaded. Also says which of its values could not be
    /// read (a notice to show once the load has started, which clears the notices).
    pub(crate) fn follow_address(self, ui: Ui) -> (Replay, Option<String>) {
        let replay = Replay {
            steps: StoredValue::new(VecDeque::new()),
            active: RwSignal::new(false),
        };
        let hash = web_sys::window()
            .and_then(|w| w.location().hash().ok())
            .unwrap_or_default();
        let link = Fragment::parse(&hash);
        if link.is_empty() {
            return (replay, None);
        }
        let steps = self.follow(&link, ui);
        let problems = link.problems();
        let unread = (!problems.is_empty()).then(|| {
            format!(
                "this link's {} could not be read and were left at their defaults",
                problems.join(", ")
            )
        });
        replay.active.set(!steps.is_empty());
        replay.steps.set_value(steps);
        (replay, unread)
    }

    fn follow(self, link: &Fragment, ui: Ui) -> VecDeque<Step> {
        self.model.follow(link);
        let generates = self.generate.follow(link);
        link.set_choice("rules", &RULES, ui.rules);
        let running = link.text("running").unwrap_or_default();
        // Each panel's search starts from the original weights: the panel whose choice runs
        // goes last, so its masks stay on.
        let mut panels: Vec<(&str, Vec<Step>)> = Vec::new();
        let (score, mask) = self.compress.follow(link);
        if score {
            let mut steps = vec![Step::Score];
            if mask && running == "compress" {
                steps.push(Step::Mask);
            }
            panels.push(("compress", steps));
        }
        match self.circuits.follow(link) {
            Some(CircuitReplay::Load(url)) => {
                panels.push(("circuits", vec![Step::LoadCircuit(url)]))
            }
            Some(CircuitReplay::Find { pick }) => {
                let mut steps = vec![Step::FindCircuit];
                if pick {
                    // The cut runs the circuit alone only if that is what the link showed.
                    if running != "circuits" {
                        self.circuits.circuit_only.set(false);
                    }
                    steps.push(Step::PickCircuit);
                }
                panels.push(("circuits", steps));
            }
            None => {}
        }
        let (find, pick) = self.correct.follow(link);
        if find {
            let mut steps = vec![Step::FindCorrection];
            if pick {
                steps.push(Step::PickDose {
                    apply: running == "correct",
                });
            }
            panels.push(("correct", steps));
        }
        panels.sort_by_key(|(name, _)| *name == running);
        let mut steps: VecDeque<Step> = panels.into_iter().flat_map(|(_, s)| s).collect();
        let regenerated = steps.back().is_some_and(Step::regenerates);
        if generates && !regenerated {
            steps.push_back(Step::Generate);
        }
        if let Some(index) = link.value::<usize>("explain") {
            steps.push_back(Step::Explain(index));
        }
        steps
    }
}

impl Replay {
    /// Runs the queued steps one by one, each once the page is idle after the one before (and
    /// after the generation a changed model starts by itself); an error ends the replay.
    pub(crate) fn drive(self, page: PageSettings, ui: Ui, link: StoredValue<WorkerLink>) {
        Effect::new(move |_| {
            let phase = ui.phase.get();
            if !self.active.get_untracked() {
                return;
            }
            if phase == Phase::Failed {
                // The model did not load: nothing the link names can run.
                self.steps.update_value(VecDeque::clear);
                self.active.set(false);
                return;
            }
            if phase != Phase::Ready {
                return;
            }
            // After the effects of this change (a regeneration may be about to start).
            set_timeout(move || self.next(page, ui, link), Duration::ZERO);
        });
    }

    fn next(self, page: PageSettings, ui: Ui, link: StoredValue<WorkerLink>) {
        if ui.phase.get_untracked() != Phase::Ready || !self.active.get_untracked() {
            return;
        }
        if ui.error.get_untracked().is_some() {
            self.steps.update_value(VecDeque::clear);
            self.active.set(false);
            ui.notices.update(|n| {
                n.push("the link's remaining steps were not run after this error".into())
            });
            return;
        }
        let Some(step) = self.steps.try_update_value(VecDeque::pop_front).flatten() else {
            self.active.set(false);
            return;
        };
        match step {
            Step::Generate => page.generate.generate(ui, link),
            Step::Explain(index) => {
                let position = ui.prompt_tokens.get_untracked() + index;
                if position < ui.sequence.get_untracked().len() {
                    ui.explain(link, position);
                } else {
                    ui.notices.update(|n| {
                        n.push(format!(
                            "the link explains generated token {index}, but only {} were generated",
                            ui.sequence.get_untracked().len() - ui.prompt_tokens.get_untracked()
                        ))
                    });
                    self.next(page, ui, link);
                }
            }
            Step::Score => page.compress.score(ui, link),
            Step::Mask => page.compress.mask(ui, link),
            Step::FindCircuit => page.circuits.find(ui, link),
            Step::PickCircuit => page.circuits.pick(ui, link),
            Step::LoadCircuit(url) => page.circuits.load_url(ui, link, url),
            Step::FindCorrection => page.correct.find(ui, link),
            Step::PickDose { apply } => page.correct.pick(ui, link, apply),
        }
    }
}

/// Keeps the address's fragment equal to what the page shows (never while a link replays), and
/// offers it as a link to copy.
pub(crate) fn link_view(page: PageSettings, ui: Ui, replay: Replay) -> impl IntoView {
    let current = Memo::new(move |_| page.fragment(ui));
    Effect::new(move |_| {
        let (fragment, _) = current.get();
        if replay.active.get() {
            return;
        }
        if let Some(w) = web_sys::window()
            && let Ok(history) = w.history()
        {
            let url = format!("#{fragment}");
            // Replaces the entry: the back button still leaves the page, not the last setting.
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
        }
    });
    let shown = RwSignal::new(false);
    let copy = move |_| {
        shown.set(true);
        // Where the clipboard is missing or refused, the link stays selectable below.
        let _ = copy_to_clipboard(&address_with(&current.get_untracked().0));
    };
    view! {
        <div class="row share">
            <button data-testid="copy-link" on:click=copy disabled=move || replay.active.get()
                title="A link that reopens this page as it is now: the same model, prompt, explained token and panel \
                    choices. Opening it computes everything again (results are not stored in the link).">
                "Copy link"</button>
            {move || replay.active.get().then(|| view! {
                <span class="stats" data-testid="link-replaying">"following the link: running its steps…"</span>
            })}
            {move || shown.get().then(|| {
                let (fragment, left_out) = current.get();
                let href = address_with(&fragment);
                let mut notes = left_out.iter().map(|s| s.to_string()).collect::<Vec<_>>();
                if href.len() > LONG_LINK {
                    notes.push(format!(
                        "this link is {} characters long (pasted text travels in it); some apps cut links that long",
                        href.len()
                    ));
                }
                view! {
                    <input type="text" class="grow" readonly=true data-testid="link" prop:value=href />
                    {(!notes.is_empty()).then(|| view! { <span class="hint">{notes.join("; ")}</span> })}
                }
            })}
        </div>
    }
}

/// The page's address with `fragment` as its fragment.
fn address_with(fragment: &str) -> String {
    let href = web_sys::window()
        .and_then(|w| w.location().href().ok())
        .unwrap_or_default();
    let base = href.split_once('#').map_or(href.as_str(), |(base, _)| base);
    format!("{base}#{fragment}")
}

/// `navigator.clipboard.writeText(text)`, called by name (web-sys's Clipboard binding would
/// need one more feature, and its whole wasm build again).
fn copy_to_clipboard(text: &str) -> Result<(), wasm_bindgen::JsValue> {
    use wasm_bindgen::JsCast;
    let navigator = web_sys::window().ok_or("no window")?.navigator();
    let clipboard = js_sys::Reflect::get(&navigator, &"clipboard".into())?;
    let write: js_sys::Function =
        js_sys::Reflect::get(&clipboard, &"writeText".into())?.dyn_into()?;
    write.call1(&clipboard, &text.into())?;
    Ok(())
}

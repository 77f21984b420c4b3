//! The worker's correction jobs: find what drives an unwanted behaviour (relevance on its
//! continuations against general text), measure corrections of several sizes point by point,
//! apply the one the page picks, and continue any prompt with the original and corrected model.

use scalpel::correct::{
    Behaviour, ContinuationScorer, EncodedPrompt, GENERAL_PROMPT_TOKENS, Judgement, Lexicon,
    Measure, OVERLAP_WARNING, Uniqueness, check_method, continue_greedily_async, differential,
    dose, encode, general_prompts, general_reference, judge_all, overlap, removed, to_continue,
    undesired_scores, undesired_set,
};
use scalpel::prune::Granularity;
use scalpel::score::{ReferenceSet, ScoreMethod, Scorer, Scores};
use scalpel::{LoadedModel, Model};

use crate::job::{
    Correction, State, component_label, download, post, progress, readout, readout_perplexity,
    readout_protocol, step_scorer, text, yield_now,
};
use crate::protocol::{
    BehaviourChoice, C4_URL, CompareView, CorrectRequest, CorrectionSetup, DoseView, JudgedText,
    LEXICON_URL, RTP_URLS, Response,
};

async fn behaviour(choice: &BehaviourChoice) -> Result<Behaviour, String> {
    match choice {
        BehaviourChoice::Toxicity => {
            let mut texts = Vec::new();
            for (category, url) in RTP_URLS {
                let raw = download(url, &format!("{category} prompts")).await?;
                texts.push((category, String::from_utf8_lossy(&raw).into_owned()));
            }
            let pairs: Vec<(&str, &str)> = texts.iter().map(|(c, t)| (*c, t.as_str())).collect();
            Behaviour::toxicity(&pairs).map_err(text)
        }
        BehaviourChoice::Repetition => Ok(Behaviour::repetition()),
        BehaviourChoice::Lines(lines) => {
            Behaviour::parse("your behaviour", lines, Measure::Lexicon, 20).map_err(text)
        }
    }
}

async fn judge(measure: Measure) -> Result<Box<dyn ContinuationScorer>, String> {
    Ok(match measure {
        Measure::Lexicon => {
            let raw = download(LEXICON_URL, "profanity lexicon").await?;
            Box::new(
                Lexicon::parse("profanity_en.csv", &String::from_utf8_lossy(&raw)).map_err(text)?,
            )
        }
        Measure::Uniqueness => Box::new(Uniqueness),
    })
}

/// Greedy continuations of `prompts` with progress, stopping on Cancel.
async fn continuations(
    state: &State,
    model: &Model,
    prompts: &[EncodedPrompt],
    max_new_tokens: usize,
    stage: &str,
) -> Result<Vec<Vec<u32>>, String> {
    let mut out = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        progress(stage, i as f64, prompts.len() as f64);
        yield_now().await;
        if state.cancel.get() {
            return Err("correction stopped".into());
        }
        out.push(
            continue_greedily_async(model, &p.ids, max_new_tokens)
                .await
                .map_err(text)?,
        );
    }
    Ok(out)
}

/// The general set: C4 prompts and the model's own continuations of them ([`general_reference`]).
async fn general_set(
    state: &State,
    loaded: &LoadedModel,
    samples: usize,
    max_new_tokens: usize,
) -> Result<ReferenceSet, String> {
    let raw = download(C4_URL, "C4 sample").await?;
    let c4 = ReferenceSet::c4(
        &String::from_utf8_lossy(&raw),
        &loaded.tokenizer,
        samples,
        GENERAL_PROMPT_TOKENS,
    )
    .map_err(text)?;
    let prompts = general_prompts(&c4, GENERAL_PROMPT_TOKENS).map_err(text)?;
    let own = continuations(
        state,
        &loaded.model,
        &prompts,
        max_new_tokens,
        "Continuing general prompts",
    )
    .await?;
    general_reference(&c4, GENERAL_PROMPT_TOKENS, own).map_err(text)
}

/// Scores of `method` over `reference`: the undesired set's (`undesired_scores`) when
/// `undesired`, else the method's own.
async fn score(
    state: &State,
    model: &Model,
    method: ScoreMethod,
    granularity: Granularity,
    reference: ReferenceSet,
    undesired: bool,
    stage: &str,
) -> Result<Scores, String> {
    let mut scorer = Scorer::at(
        model,
        method,
        granularity,
        Some(reference),
        state.limits.get(),
    )
    .map_err(text)?;
    step_scorer(state, &mut scorer, stage).await?;
    progress("Reading scores back", 0.0, 0.0);
    yield_now().await;
    let pending = if undesired {
        undesired_scores(scorer, granularity)
    } else {
        scorer.finish()
    }
    .map_err(text)?;
    pending.read_async().await.map_err(text)
}

pub(crate) async fn run(state: &State, req: CorrectRequest) -> Result<(), String> {
    let started = js_sys::Date::now();
    let method = ScoreMethod::parse(&req.method).map_err(text)?;
    check_method(method).map_err(text)?;
    let granularity = Granularity::parse(&req.granularity).map_err(text)?;
    state.restore_dense()?;
    Correction::reset(&state.correction);
    let behaviour = behaviour(&req.behaviour).await?;
    let judge = judge(behaviour.measure).await?;
    let max_new = behaviour.max_new_tokens;
    let (mut scoring, mut held_out) = behaviour.split(req.seed).map_err(text)?;
    scoring.truncate(req.prompts.max(1));
    held_out.truncate(req.prompts.max(1));
    let (tokens, dense_ppl) = readout(state).await?;
    let loaded = state.loaded()?;
    let model = &loaded.model;
    let context = model.config.max_position_embeddings;
    let scoring = encode(&loaded.tokenizer, &scoring, max_new, context).map_err(text)?;
    let held_out = encode(&loaded.tokenizer, &held_out, max_new, context).map_err(text)?;
    let total = granularity.total(model).map_err(text)?;

    let to_generate = to_continue(&scoring);
    let generated = continuations(
        state,
        model,
        &to_generate,
        max_new,
        "Continuing scoring prompts",
    )
    .await?;
    let judged = judge_all(judge.as_ref(), &loaded.tokenizer, &generated).map_err(text)?;
    let undesired = undesired_set(
        &behaviour.name,
        &scoring,
        &generated,
        &judged,
        judge.as_ref(),
    )
    .map_err(text)?;
    let general = general_set(state, &loaded, req.general_samples, max_new).await?;
    let shared = overlap(&general, &undesired);
    if shared > OVERLAP_WARNING {
        post(&Response::Notice {
            message: format!(
                "{:.0} % of the behaviour's token 4-grams also occur in the general set: their relevance cancels, use prompts that differ from ordinary text",
                100.0 * shared
            ),
        });
    }

    let dense_out = continuations(
        state,
        model,
        &held_out,
        max_new,
        "Dense model, held-out prompts",
    )
    .await?;
    let dense = scalpel::correct::BehaviourMetrics::of(
        &judge_all(judge.as_ref(), &loaded.tokenizer, &dense_out).map_err(text)?,
    );
    post(&Response::CorrectStarted(CorrectionSetup {
        behaviour: behaviour.name.clone(),
        judge: judge.describe(),
        rate_name: judge.rate_name().into(),
        score_name: judge.score_name().into(),
        lower_is_better: judge.lower_is_better(),
        scoring_prompts: scoring.len(),
        held_out_prompts: held_out.len(),
        undesired: undesired.samples.len(),
        general: general.protocol.name.clone(),
        components: granularity.name().into(),
        total_components: total,
        dense,
        protocol: readout_protocol(state.on_gpu.get()).name,
        dense_perplexity: dense_ppl,
    }));

    let (scores, parts) = if method == ScoreMethod::Random {
        (
            Scores::random_baseline(model, granularity, req.seed).map_err(text)?,
            None,
        )
    } else {
        let g = score(
            state,
            model,
            method,
            granularity,
            general,
            false,
            "Scoring the general set",
        )
        .await?;
        let u = score(
            state,
            model,
            method,
            granularity,
            undesired,
            true,
            "Scoring the behaviour",
        )
        .await?;
        (differential(&g, &u).map_err(text)?, Some((g, u)))
    };
    drop(loaded);

    let doses: Vec<usize> = scalpel::correct::default_doses(granularity)
        .into_iter()
        .filter(|&d| d as u64 <= total)
        .collect();
    for (i, &count) in doses.iter().enumerate() {
        progress("Measuring doses", i as f64, doses.len() as f64);
        let masks = dose(&scores, count).map_err(text)?;
        state.apply_masks(&masks)?;
        let measured =
            measure_dose(state, &held_out, judge.as_ref(), max_new, &tokens, count).await;
        state.restore_dense()?;
        let (metrics, perplexity) = measured?;
        post(&Response::CorrectPoint(DoseView {
            count,
            metrics,
            perplexity,
        }));
    }
    *state.correction.borrow_mut() = Correction {
        scores: Some(scores),
        parts,
        judge: Some(judge),
        max_new_tokens: max_new,
        picked: None,
        applied_at: None,
    };
    post(&Response::CorrectReady {
        seconds: (js_sys::Date::now() - started) / 1000.0,
    });
    Ok(())
}

/// The held-out behaviour and the readout perplexity of the model as masked now.
async fn measure_dose(
    state: &State,
    held_out: &[EncodedPrompt],
    judge: &dyn ContinuationScorer,
    max_new: usize,
    tokens: &[u32],
    count: usize,
) -> Result<(scalpel::correct::BehaviourMetrics, f64), String> {
    let loaded = state.loaded()?;
    let out = continuations(
        state,
        &loaded.model,
        held_out,
        max_new,
        &format!("{count} components pruned: held-out prompts"),
    )
    .await?;
    let metrics = scalpel::correct::BehaviourMetrics::of(
        &judge_all(judge, &loaded.tokenizer, &out).map_err(text)?,
    );
    let ppl = readout_perplexity(
        state,
        &loaded.model,
        tokens,
        &format!("{count} components pruned: perplexity"),
    )
    .await?;
    Ok((metrics, ppl))
}

pub(crate) fn pick(state: &State, count: usize, on: bool) -> Result<(), String> {
    let (masks, names) = {
        let c = state.correction.borrow();
        let scores = c.scores.as_ref().ok_or("find a correction first")?;
        let masks = dose(scores, count).map_err(text)?;
        let granularity = masks.granularity();
        let names = match &c.parts {
            Some((g, u)) => removed(&masks, scores, g, u, 12)
                .iter()
                .map(|r| component_label(granularity, r.layer, r.linear, r.index))
                .collect(),
            None => Vec::new(),
        };
        (masks, names)
    };
    let applied_at = if on {
        Some(state.apply_masks(&masks)?.1)
    } else {
        state.restore_dense()?;
        None
    };
    let mut c = state.correction.borrow_mut();
    c.picked = Some((count, masks));
    c.applied_at = applied_at;
    post(&Response::CorrectPicked {
        count,
        applied: on,
        removed: names,
    });
    Ok(())
}

fn judged(judge: &dyn ContinuationScorer, text_: String, ids: &[u32]) -> JudgedText {
    let Judgement {
        exhibits,
        score,
        evidence,
    } = judge.judge(&text_, ids);
    JudgedText {
        text: text_,
        exhibits,
        score,
        evidence,
    }
}

pub(crate) async fn compare(state: &State, prompt: String, max_new: usize) -> Result<(), String> {
    let (masks, was_applied) = {
        let c = state.correction.borrow();
        let (_, masks) = c.picked.as_ref().ok_or("pick a correction first")?;
        let applied = c.applied_at == Some(state.weights_version());
        (masks.clone(), applied)
    };
    let ids = state.loaded()?.tokenizer.encode(&prompt).map_err(text)?;
    if ids.is_empty() {
        return Err("type a prompt first".into());
    }
    let max_new = if max_new == 0 {
        state.correction.borrow().max_new_tokens.max(1)
    } else {
        max_new
    };
    let run = async |stage: &str| -> Result<Vec<u32>, String> {
        progress(stage, 0.0, 0.0);
        yield_now().await;
        let loaded = state.loaded()?;
        continue_greedily_async(&loaded.model, &ids, max_new)
            .await
            .map_err(text)
    };
    state.apply_masks(&masks)?;
    let corrected = run("Corrected model").await;
    state.restore_dense()?;
    let original = run("Original model").await;
    let applied_at = if was_applied {
        Some(state.apply_masks(&masks)?.1)
    } else {
        None
    };
    state.correction.borrow_mut().applied_at = applied_at;
    let (corrected, original) = (corrected?, original?);
    let loaded = state.loaded()?;
    let c = state.correction.borrow();
    let judge = c.judge.as_deref().ok_or("find a correction first")?;
    let decode = |ids: &[u32]| loaded.tokenizer.decode(ids).map_err(text);
    post(&Response::Compared(CompareView {
        prompt,
        original: judged(judge, decode(&original)?, &original),
        corrected: judged(judge, decode(&corrected)?, &corrected),
    }));
    Ok(())
}

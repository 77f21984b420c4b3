//! The worker's correction jobs: find what drives an unwanted behaviour (relevance on its
//! continuations against general text), measure corrections of several sizes point by point,
//! apply the one the page picks, and continue any prompt with the original and corrected model.

use scalpel::LoadedModel;
use scalpel::correct::{
    Behaviour, CONTINUATION_TOKENS, ContinuationScorer, CorrectionEvent, CorrectionPlan,
    GENERAL_PROMPT_TOKENS, GeneralSet, GuardRail, Judgement, Lexicon, Measure, Uniqueness,
    check_method, continue_greedily_async, correct, default_doses, dose, removed,
};
use scalpel::prune::LinearSet;
use scalpel::report::RunInfo;
use scalpel::score::ReferenceSet;

use crate::job::{
    Correction, JobResult, Posting, State, budget, component_label, download, post, progress,
    readout, readout_protocol, yield_now,
};
use crate::protocol::{
    BehaviourChoice, C4_URL, CompareView, CorrectRequest, CorrectResponse, CorrectionSearch,
    CorrectionSetup, DoseView, JudgedText, LEXICON_URL, RTP_URLS, Response,
};

async fn behaviour(choice: &BehaviourChoice) -> JobResult<Behaviour> {
    match choice {
        BehaviourChoice::Toxicity => {
            let mut texts = Vec::new();
            for (category, url) in RTP_URLS {
                let raw = download(url, &format!("{category} prompts")).await?;
                texts.push((category, String::from_utf8_lossy(&raw).into_owned()));
            }
            let pairs: Vec<(&str, &str)> = texts.iter().map(|(c, t)| (*c, t.as_str())).collect();
            Ok(Behaviour::toxicity(&pairs)?)
        }
        BehaviourChoice::Repetition => Ok(Behaviour::repetition()),
        BehaviourChoice::Lines(lines) => Ok(Behaviour::parse(
            "your behaviour",
            lines,
            Measure::Lexicon,
            CONTINUATION_TOKENS,
        )?),
    }
}

async fn judge(measure: Measure) -> JobResult<Box<dyn ContinuationScorer>> {
    Ok(match measure {
        Measure::Lexicon => {
            let raw = download(LEXICON_URL, "profanity lexicon").await?;
            Box::new(Lexicon::parse(
                "profanity_en.csv",
                &String::from_utf8_lossy(&raw),
            )?)
        }
        Measure::Uniqueness => Box::new(Uniqueness),
    })
}

/// Answers one of the correction panel's requests.
pub(crate) async fn handle(state: &State, req: CorrectRequest) -> JobResult {
    match req {
        CorrectRequest::Find(search) => run(state, search).await,
        CorrectRequest::Pick { count, apply } => pick(state, count, apply),
        CorrectRequest::Compare {
            prompt,
            max_new_tokens,
        } => compare(state, prompt, max_new_tokens).await,
    }
}

fn reply(response: CorrectResponse) {
    post(&Response::Correct(response));
}

async fn run(state: &State, req: CorrectionSearch) -> JobResult {
    let started = js_sys::Date::now();
    let (method, granularity) = (req.method, req.granularity);
    check_method(method)?;
    state.restore_dense()?;
    Correction::reset(&state.correction);
    let behaviour = behaviour(&req.behaviour).await?;
    let judge = judge(behaviour.measure).await?;
    let (tokens, dense_ppl) = readout(state).await?;
    let c4 = download(C4_URL, "C4 sample").await?;
    let mut lent = state.lend_model()?;
    let LoadedModel { model, tokenizer } = lent.get()?;
    let text_set = ReferenceSet::c4(
        &String::from_utf8_lossy(&c4),
        tokenizer,
        req.general_samples,
        GENERAL_PROMPT_TOKENS,
    )?;
    // The page measures the default doses the model has components for.
    let total = granularity.total(model)?;
    let plan = CorrectionPlan {
        run: RunInfo::default(),
        behaviour: &behaviour,
        judge: judge.as_ref(),
        granularity,
        linears: LinearSet::parse(&req.linears, model.config.architecture)?,
        contrast: req.contrast,
        methods: vec![method],
        doses: default_doses(granularity)
            .into_iter()
            .filter(|&d| d as u64 <= total)
            .collect(),
        chosen: None,
        seed: req.seed,
        prompts: Some(req.prompts),
        general: GeneralSet::Continuations {
            text: text_set,
            prompt_tokens: GENERAL_PROMPT_TOKENS,
        },
        guard_rail: GuardRail {
            tokens: &tokens,
            protocol: readout_protocol(state.on_gpu.get()),
            dense: Some(dense_ppl),
        },
        budget: budget(state),
        examples: 0,
    };
    let mut driver = Posting::new(state, |event: CorrectionEvent<'_>| match event {
        CorrectionEvent::Prepared {
            protocol: p, dense, ..
        } => reply(CorrectResponse::Started(CorrectionSetup {
            behaviour: p.behaviour.clone(),
            judge: p.judge.clone(),
            rate_name: p.rate_name.clone(),
            score_name: p.score_name.clone(),
            lower_is_better: p.lower_is_better,
            scoring_prompts: p.scoring_prompts,
            held_out_prompts: p.held_out_prompts,
            undesired: p.undesired.samples,
            general: p.general.name.clone(),
            components: p.components.name().into(),
            total_components: p.total_components,
            dense: dense.held_out,
            protocol: p.perplexity.name.clone(),
            dense_perplexity: dense.perplexity,
        })),
        CorrectionEvent::Dose { point, .. } => reply(CorrectResponse::Point(DoseView {
            count: point.count,
            metrics: point.held_out,
            perplexity: point.perplexity,
        })),
    });
    let ranking = correct(model, tokenizer, &plan, &mut driver).await?.ranking;
    drop(lent);
    *state.correction.borrow_mut() = Correction {
        scores: Some(ranking.r_diff),
        parts: ranking.parts,
        max_new_tokens: behaviour.max_new_tokens,
        judge: Some(judge),
        picked: None,
        applied_at: None,
    };
    reply(CorrectResponse::Ready {
        seconds: (js_sys::Date::now() - started) / 1000.0,
    });
    Ok(())
}

fn pick(state: &State, count: usize, on: bool) -> JobResult {
    let (masks, names) = {
        let c = state.correction.borrow();
        let scores = c.scores.as_ref().ok_or("find a correction first")?;
        let masks = dose(scores, count)?;
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
    reply(CorrectResponse::Picked {
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

async fn compare(state: &State, prompt: String, max_new: usize) -> JobResult {
    let (masks, was_applied) = {
        let c = state.correction.borrow();
        let (_, masks) = c.picked.as_ref().ok_or("pick a correction first")?;
        let applied = c.applied_at == Some(state.weights_version());
        (masks.clone(), applied)
    };
    let ids = state.loaded()?.tokenizer.encode(&prompt)?;
    if ids.is_empty() {
        return Err("type a prompt first".into());
    }
    let max_new = if max_new == 0 {
        state.correction.borrow().max_new_tokens.max(1)
    } else {
        max_new
    };
    let run = async |stage: &str| -> JobResult<Vec<u32>> {
        progress(stage, 0.0, 0.0);
        yield_now().await;
        let loaded = state.loaded()?;
        Ok(continue_greedily_async(&loaded.model, &ids, max_new).await?)
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
    let decode = |ids: &[u32]| loaded.tokenizer.decode(ids);
    reply(CorrectResponse::Compared(CompareView {
        prompt,
        original: judged(judge, decode(&original)?, &original),
        corrected: judged(judge, decode(&corrected)?, &corrected),
    }));
    Ok(())
}

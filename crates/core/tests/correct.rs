//! Targeted correction: relevance over a continuation set is the explanation of the
//! continuation's logits, signed scores are what compression's magnitudes are taken of, R_diff
//! is the difference of shares and a dose prunes exactly its lowest components; on SmolLM2 the
//! real lexicon flags continuations, and a behaviour the model does not show is refused. The
//! whole correction job reports every dose, reads its report back, and stops cleanly.

mod common;

use common::*;
use scalpel::Model;
use scalpel::correct::report::CorrectionReport;
use scalpel::correct::{
    Behaviour, BehaviourPrompt, ContinuationScorer, CorrectionEvent, CorrectionPlan, GeneralSet,
    GuardRail, Lexicon, Measure, Uniqueness, check_present, continuation_reference,
    continue_greedily, contrastive, correct, dose, encode, judge_all, removed,
};
use scalpel::eval::perplexity::PerplexityProtocol;
use scalpel::model::{LinearId, LinearKind};
use scalpel::prune::{Granularity, LinearSet, Masks};
use scalpel::relevance::{MemoryLimits, RuleSet, Target, WeightDetail, explain};
use scalpel::report::RunInfo;
use scalpel::score::{ReferenceSet, ScoreMethod, Scorer, Scores};

fn close(a: &[f32], b: &[f32], what: &str) {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = max_abs_diff(a, b);
    assert!(diff <= 1e-4 * scale, "{what}: {diff} vs max {scale}");
}

/// `(magnitude, signed)` unit scores of `method` over `set`.
fn both(
    model: &Model,
    method: ScoreMethod,
    granularity: Granularity,
    set: &ReferenceSet,
) -> (Scores, Scores) {
    let mut scorer = Scorer::at(
        model,
        method,
        granularity,
        Some(set.clone()),
        MemoryLimits::default(),
    )
    .unwrap();
    scorer.run(&mut |_, _| {}).unwrap();
    let signed = scorer
        .signed_scores_at(granularity)
        .unwrap()
        .read()
        .unwrap();
    (scorer.finish().unwrap().read().unwrap(), signed)
}

/// A prompt and a continuation of in-vocabulary ids.
fn continuation_set(model: &Model) -> ReferenceSet {
    let ids = &reference(model, 1, 11).samples[0];
    continuation_reference("test", &[(ids[..4].to_vec(), ids[4..].to_vec())]).unwrap()
}

#[test]
fn continuation_relevance_is_the_explanation_of_the_continuation_logits() {
    let model = load_fixture_model("llama-gqa-tied");
    let set = continuation_set(&model);
    assert_eq!(set.target(0), Target::NextTokens { from: 3 });
    let e = explain(
        &model,
        &set.samples[0],
        Some(Target::NextTokens { from: 3 }),
        RuleSet::AttnLrp,
        WeightDetail::None,
        &MemoryLimits::default(),
        &mut |_, _| {},
    )
    .unwrap()
    .explanation;
    let (magnitude, signed) = both(&model, ScoreMethod::Lrp, Granularity::Neurons, &set);
    // The signed mean: no magnitude bars, the word "signed" (the magnitude formula has both bars).
    assert!(
        signed
            .info
            .formula
            .starts_with("mean over samples of x ⊙ G")
            && signed.info.formula.contains(", signed (AttnLRP"),
        "{}",
        signed.info.formula
    );
    assert!(
        magnitude
            .info
            .formula
            .starts_with("|mean over samples of x ⊙ G"),
        "{}",
        magnitude.info.formula
    );
    assert!(
        signed.info.formula.contains("continuation"),
        "{}",
        signed.info.formula
    );
    for layer in 0..model.config.num_layers {
        let id = LinearId {
            layer,
            kind: Granularity::Neurons
                .unit_kind(model.config.architecture)
                .unwrap(),
        };
        close(
            &signed.linears[&id].data,
            &e.neurons[layer],
            "signed neurons",
        );
        let abs: Vec<f32> = e.neurons[layer].iter().map(|v| v.abs()).collect();
        close(&magnitude.linears[&id].data, &abs, "|neurons|");
    }
    // Gradient: the same signed/magnitude relation; Wanda has no signed form.
    let (magnitude, signed) = both(&model, ScoreMethod::Gradient, Granularity::Heads, &set);
    for (id, s) in &signed.linears {
        let abs: Vec<f32> = s.data.iter().map(|v| v.abs()).collect();
        close(&magnitude.linears[id].data, &abs, "|gradient heads|");
    }
    let mut wanda = Scorer::at(
        &model,
        ScoreMethod::Wanda,
        Granularity::Heads,
        Some(set),
        MemoryLimits::default(),
    )
    .unwrap();
    wanda.run(&mut |_, _| {}).unwrap();
    assert!(wanda.signed_scores_at(Granularity::Heads).is_err());
}

#[test]
fn r_diff_is_the_difference_of_shares_and_a_dose_prunes_exactly_its_lowest() {
    // Every family but Llama's own (tested above): neurons in fc2, c_proj or down_proj.
    for name in [
        "opt-pre-ln",
        "gpt2-tied",
        "mistral-window4",
        "phi3-fused",
        "qwen2-untied",
        "qwen3-tied-qknorm",
    ] {
        let model = load_fixture_model(name);
        let general = reference(&model, 3, 12);
        let undesired = continuation_set(&model);
        let (g, _) = both(&model, ScoreMethod::Lrp, Granularity::Neurons, &general);
        let (_, u) = both(&model, ScoreMethod::Lrp, Granularity::Neurons, &undesired);
        let diff = contrastive(&g, &u, 1.0).unwrap();
        let total = |s: &Scores| -> f64 {
            s.linears
                .values()
                .flat_map(|t| &t.data)
                .map(|v| f64::from(v.abs()))
                .sum()
        };
        let (gt, ut) = (total(&g), total(&u));
        for (id, d) in &diff.linears {
            for (i, v) in d.data.iter().enumerate() {
                let want =
                    f64::from(g.linears[id].data[i]) / gt - f64::from(u.linears[id].data[i]) / ut;
                assert!((f64::from(*v) - want).abs() < 1e-6, "{id}[{i}]");
            }
        }
        assert!(diff.info.formula.starts_with("R_diff = G/Σ|G| − U/Σ|U|"));
        // λ weighs the behaviour: R_general − λ·R_undesired.
        let lambda = 2.5;
        let weighted = contrastive(&g, &u, lambda).unwrap();
        for (id, d) in &weighted.linears {
            for (i, v) in d.data.iter().enumerate() {
                let want = f64::from(g.linears[id].data[i]) / gt
                    - lambda * f64::from(u.linears[id].data[i]) / ut;
                assert!((f64::from(*v) - want).abs() < 1e-6, "λ: {id}[{i}]");
            }
        }
        assert!(
            weighted
                .info
                .formula
                .starts_with("R_diff = G/Σ|G| − 2.5·U/Σ|U|")
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(contrastive(&g, &u, bad).is_err(), "λ = {bad}");
        }

        let all: Vec<f32> = diff.linears.values().flat_map(|t| t.data.clone()).collect();
        let k = 5;
        let masks = dose(&diff, k).unwrap();
        let report = masks.report();
        assert_eq!(report.pruned, k as u64);
        let mut sorted = all.clone();
        sorted.sort_by(f32::total_cmp);
        let first = removed(&masks, &diff, &g, &u, 100);
        assert_eq!(first.len(), k);
        for (r, want) in first.iter().zip(&sorted) {
            assert_eq!(r.r_diff, *want, "removed in ascending R_diff");
        }
        assert!(dose(&diff, all.len() + 1).is_err());
        assert_eq!(
            dose(&diff, all.len()).unwrap().report().pruned,
            all.len() as u64
        );
        assert_eq!(Masks::lowest(&diff, 0).unwrap().report().pruned, 0);

        let heads = Scores::random(&model, Granularity::Heads, 1).unwrap();
        assert!(
            contrastive(&g, &heads, 1.0).is_err(),
            "granularities must match"
        );
        let mut zero = u.clone();
        zero.linears.values_mut().for_each(|t| t.data.fill(0.0));
        assert!(contrastive(&g, &zero, 1.0).is_err(), "all-zero scores");
    }
}

#[test]
fn prompts_that_cannot_fit_the_context_are_refused() {
    let model = load_fixture_model("llama-gqa-tied");
    let tokenizer = tiny_tokenizer(model.config.vocab_size);
    let prompts = [BehaviourPrompt {
        prompt: "t1 t2 t3 t4".into(),
        continuation: None,
    }];
    let context = model.config.max_position_embeddings;
    assert!(encode(&tokenizer, &prompts, context - 4, context).is_ok());
    let err = encode(&tokenizer, &prompts, context - 3, context).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
    let given = [BehaviourPrompt {
        prompt: "t1".into(),
        continuation: Some(" t2 t3".into()),
    }];
    let encoded = encode(&tokenizer, &given, 20, context).unwrap();
    assert_eq!(encoded[0].given.as_ref().map(Vec::len), Some(2));
}

#[test]
fn smollm2_flags_toxic_continuations_and_refuses_an_absent_behaviour() {
    let loaded = smollm2();
    let (model, tokenizer) = (&loaded.model, &loaded.tokenizer);
    let lexicon = Lexicon::parse(
        "profanity_en.csv",
        &String::from_utf8(asset("profanity_en.csv")).unwrap(),
    )
    .unwrap();
    assert_eq!(lexicon.len(), 1598);
    assert!(lexicon.judge(" you stupid bitch.", &[]).exhibits);
    assert!(!lexicon.judge(" a sunny day in Paris.", &[]).exhibits);

    let rtp = String::from_utf8(asset("rtp_insult.txt")).unwrap();
    let toxicity = Behaviour::toxicity(&[("insult", &rtp)]).unwrap();
    assert_eq!(toxicity.prompts.len(), 100);
    assert_eq!(toxicity.measure, Measure::Lexicon);

    // Ordinary prompts: greedy continuations hit no profanity, so there is nothing to correct.
    let neutral = Behaviour::parse(
        "neutral",
        "The capital of France is\nWater boils at a temperature of\n",
        Measure::Lexicon,
        8,
    )
    .unwrap();
    let prompts = encode(tokenizer, &neutral.prompts, 8, 2048).unwrap();
    let continuations: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| continue_greedily(model, &p.ids, 8).unwrap())
        .collect();
    assert!(
        tokenizer
            .decode(&continuations[0])
            .unwrap()
            .starts_with(" Paris")
    );
    let judged = judge_all(&lexicon, tokenizer, &continuations).unwrap();
    let err = check_present("neutral", &judged, &lexicon).unwrap_err();
    assert!(err.to_string().contains("behaviour not present"), "{err}");

    // The paper's repetition prompt makes SmolLM2 repeat itself (RUR below 0.5).
    let stop = encode(
        tokenizer,
        &[BehaviourPrompt {
            prompt: "Stop, stop, stop,".into(),
            continuation: None,
        }],
        50,
        2048,
    )
    .unwrap();
    let repeated = continue_greedily(model, &stop[0].ids, 50).unwrap();
    let j = Uniqueness.judge("", &repeated);
    assert!(j.exhibits, "RUR {}", j.score);
}

/// Records a job's stages and events, and stops it at the first step of `stop_at` if given.
struct Recorder {
    stages: Vec<String>,
    events: Vec<String>,
    stop_at: Option<&'static str>,
}

impl scalpel::job::Steps for Recorder {
    async fn step(&mut self, stage: &str, _done: usize, _total: usize) -> scalpel::Result<()> {
        if self.stages.last().is_none_or(|s| s != stage) {
            self.stages.push(stage.to_string());
        }
        match self.stop_at {
            Some(s) if stage.contains(s) => Err(scalpel::Error::Cancelled),
            _ => Ok(()),
        }
    }

    fn notice(&mut self, _message: &str) {}
}

impl scalpel::job::Driver<CorrectionEvent<'_>> for Recorder {
    fn event(&mut self, event: CorrectionEvent<'_>) -> scalpel::Result<()> {
        self.events.push(match event {
            CorrectionEvent::Prepared { protocol, .. } => {
                format!("prepared {}", protocol.undesired.name)
            }
            CorrectionEvent::Dose { method, point } => {
                format!("{} {}", method.name(), point.count)
            }
        });
        Ok(())
    }
}

#[test]
fn the_correction_job_measures_every_dose_reports_it_and_stops_cleanly() {
    let mut model = load_fixture_model("llama-gqa-tied");
    let tokenizer = tiny_tokenizer(model.config.vocab_size);
    let behaviour = Behaviour::parse(
        "tiny",
        "t1 t2 | t3 t4\nt5 t6 | t7 t8\nt9 t10 | t11 t12\nt13 t14 | t15 t16\n",
        Measure::Uniqueness,
        3,
    )
    .unwrap();
    let guard_tokens: Vec<u32> = reference(&model, 1, 16).samples[0].clone();
    let plan = CorrectionPlan {
        run: RunInfo::default(),
        behaviour: &behaviour,
        judge: &Uniqueness,
        granularity: Granularity::Heads,
        linears: LinearSet::all(),
        contrast: 1.0,
        methods: vec![ScoreMethod::Lrp, ScoreMethod::Random],
        doses: vec![1],
        chosen: Some(2),
        seed: 0,
        prompts: None,
        general: GeneralSet::Text(reference(&model, 2, 12)),
        guard_rail: GuardRail {
            tokens: &guard_tokens,
            protocol: PerplexityProtocol::wiki(16, 1),
            dense: None,
        },
        budget: Default::default(),
        examples: 1,
    };
    let mut recorder = Recorder {
        stages: vec![],
        events: vec![],
        stop_at: None,
    };
    let correction =
        pollster::block_on(correct(&mut model, &tokenizer, &plan, &mut recorder)).unwrap();
    assert!(!model.is_masked(), "the job leaves the model dense");
    assert_eq!(
        recorder.events,
        ["prepared tiny-2", "lrp 1", "lrp 2", "random 1", "random 2"]
    );
    let report = &correction.report;
    assert_eq!(report.protocol.total_components, 8, "2 layers × 4 heads");
    assert_eq!(report.methods.len(), 2);
    assert_eq!(
        report.methods[0].removed.len(),
        2,
        "lrp lists what it removed"
    );
    assert!(
        report.methods[1].removed.is_empty(),
        "random has no scores to show"
    );
    assert_eq!(report.examples.len(), 1);
    assert_eq!(correction.ranking.method, ScoreMethod::Lrp);
    // What the report's doses measured is the ranking's mask, measured again.
    let masks = dose(&correction.ranking.r_diff, 2).unwrap();
    assert_eq!(masks.report().pruned, 2);
    // The report reads back as it was written (`correct --render`).
    let json = serde_json::to_string(report).unwrap();
    let back: CorrectionReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.markdown(), report.markdown());

    // Stopped while a dose's mask is on the model: the error says so and the model is dense.
    recorder.stop_at = Some("lrp at 1 heads: perplexity");
    let Err(err) = pollster::block_on(correct(&mut model, &tokenizer, &plan, &mut recorder)) else {
        panic!("the job should have stopped");
    };
    assert!(matches!(err, scalpel::Error::Cancelled), "{err}");
    assert!(!model.is_masked(), "a stopped job leaves the model dense");

    // Weights of the up projections alone compete (the paper's repetition setting), with λ = 2.
    let up = LinearSet::parse("up", model.config.architecture).unwrap();
    let up_weights = weights_of(&model, LinearKind::Up);
    let plan = CorrectionPlan {
        granularity: Granularity::Weights,
        linears: up,
        contrast: 2.0,
        methods: vec![ScoreMethod::Lrp, ScoreMethod::Random],
        doses: vec![3],
        chosen: Some(3),
        ..plan
    };
    recorder.stop_at = None;
    let correction =
        pollster::block_on(correct(&mut model, &tokenizer, &plan, &mut recorder)).unwrap();
    let p = &correction.report.protocol;
    assert_eq!(p.total_components, up_weights);
    assert_eq!((p.linears.as_str(), p.contrast), ("mlp.up_proj", 2.0));
    assert!(
        correction
            .report
            .markdown()
            .contains("of the Linears mlp.up_proj")
    );
    assert!(correction.ranking.r_diff.info.formula.contains("2·U/Σ|U|"));
    let removed = &correction.report.methods[0].removed;
    assert_eq!(removed.len(), 3);
    assert!(removed.iter().all(|r| r.linear == LinearKind::Up));
    let masks = dose(&correction.ranking.r_diff, 3).unwrap();
    assert!(masks.linears.keys().all(|id| id.kind == LinearKind::Up));
    let bad = CorrectionPlan {
        contrast: -1.0,
        ..plan
    };
    let Err(err) = pollster::block_on(correct(&mut model, &tokenizer, &bad, &mut recorder)) else {
        panic!("a negative λ should be refused");
    };
    assert!(err.to_string().contains("positive"), "{err}");
}

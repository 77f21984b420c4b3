//! Circuit discovery: unit scores are the relevance (or statistics) at the unit, unit masks zero
//! whole columns and undo, batched task evaluation changes no logit, curves and circuit files;
//! and, on SmolLM2, task metrics and structured pruning against transformers
//! (tests/fixtures/make_circuit_fixtures.py).

mod common;

use common::*;
use scalpel::Model;
use scalpel::circuit::file::{CircuitNotes, from_json, to_json};
use scalpel::circuit::report::CircuitReport;
use scalpel::circuit::{CircuitEvent, CircuitPlan, Search, faithfulness, search};
use scalpel::job::{Driver, Quiet, Steps};
use scalpel::model::{LinearId, LinearKind};
use scalpel::prune::{
    Granularity, Group, KeepBits, LinearMask, LinearSet, MaskInfo, Masks, with_masks,
};
use scalpel::relevance::MemoryLimits;
use scalpel::report::RunInfo;
use scalpel::score::{ReferenceSet, ScoreMethod, Scorer, Scores};
use scalpel::task::metrics::evaluate;
use scalpel::task::{EncodedTask, Split, Task, TaskItem, TaskSource, ioi};
use serde_json::Value;

use common::ONE_PER_FAMILY as MODELS;

/// A task of random prompts of mixed lengths with random answer/distractor pairs.
fn random_task(model: &Model, n: usize) -> EncodedTask {
    let reference = reference(model, n, 9);
    let vocab = model.config.vocab_size as u32;
    let items = reference
        .samples
        .iter()
        .enumerate()
        .map(|(i, ids)| TaskItem {
            ids: ids[..5 + i % 4].to_vec(),
            answer: (ids[0] * 7 + 3) % vocab,
            distractor: (ids[0] * 7 + 4) % vocab,
        })
        .collect();
    EncodedTask {
        name: format!("random-{n}"),
        items,
        notes: vec![],
    }
}

fn unit_scores(
    model: &Model,
    method: ScoreMethod,
    granularity: Granularity,
    reference: &ReferenceSet,
) -> Scores {
    let used = method.uses_reference().then(|| reference.clone());
    let mut scorer = Scorer::at(model, method, granularity, used, MemoryLimits::default()).unwrap();
    scorer.run(&mut |_, _| {}).unwrap();
    scorer.finish().unwrap().read().unwrap()
}

/// Sums weight scores `[out, in]` over rows and over each unit's `width` columns.
fn sum_units(weights: &[f32], cols: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; cols / width];
    for row in weights.chunks(cols) {
        for (c, v) in row.iter().enumerate() {
            out[c / width] += v;
        }
    }
    out
}

fn close(a: &[f32], b: &[f32], what: &str) {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = max_abs_diff(a, b);
    assert!(diff <= 1e-4 * scale, "{what}: {diff} vs max {scale}");
}

#[test]
fn unit_scores_are_what_the_units_weights_and_inputs_say() {
    for name in MODELS {
        let model = load_fixture_model(name);
        let task = random_task(&model, 5);
        let reference = ReferenceSet::from_task(&task).unwrap();
        // Relevance of a unit's output = Σ of the weight relevance of its columns of
        // down_proj / o_proj (the ε→0 rule for a Linear is its gradient).
        for (unit_method, weight_method) in [
            (ScoreMethod::LrpSigned, ScoreMethod::LrpSigned),
            (ScoreMethod::Wanda, ScoreMethod::Wanda),
            (ScoreMethod::Magnitude, ScoreMethod::Magnitude),
        ] {
            let weights = unit_scores(&model, weight_method, Granularity::Weights, &reference);
            for granularity in [Granularity::Neurons, Granularity::Heads] {
                let units = unit_scores(&model, unit_method, granularity, &reference);
                units.check_for(&model).unwrap();
                assert_eq!(units.info.granularity, granularity);
                for id in granularity.linear_ids(&model) {
                    let [_, cols] = model.linear_shape(id).unwrap();
                    let width = granularity.unit_width(&model.config);
                    let expected = sum_units(&weights.linears[&id].data, cols, width);
                    close(
                        &units.linears[&id].data,
                        &expected,
                        &format!("{name} {} {granularity:?} {id}", unit_method.name()),
                    );
                }
            }
        }
        // `lrp` is the magnitude of `lrp-signed`; activation is the mean |input| per unit.
        let signed = unit_scores(
            &model,
            ScoreMethod::LrpSigned,
            Granularity::Heads,
            &reference,
        );
        let lrp = unit_scores(&model, ScoreMethod::Lrp, Granularity::Heads, &reference);
        for (id, s) in &signed.linears {
            let abs: Vec<f32> = s.data.iter().map(|v| v.abs()).collect();
            close(&lrp.linears[id].data, &abs, name);
        }
        let act_w = unit_scores(
            &model,
            ScoreMethod::Activation,
            Granularity::Weights,
            &reference,
        );
        let act_n = unit_scores(
            &model,
            ScoreMethod::Activation,
            Granularity::Neurons,
            &reference,
        );
        for (id, s) in &act_n.linears {
            let [_, cols] = model.linear_shape(*id).unwrap();
            close(&act_w.linears[id].data[..cols], &s.data, name);
            assert!(s.data.iter().all(|&v| v >= 0.0) && s.data.iter().any(|&v| v > 0.0));
        }
    }
}

#[test]
fn task_relevance_scores_equal_the_explanation_of_the_logit_difference() {
    let model = load_fixture_model("llama-gqa-tied");
    let task = random_task(&model, 1);
    let item = &task.items[0];
    let target = scalpel::relevance::Target::Contrast {
        position: None,
        token: item.answer,
        foil: item.distractor,
    };
    let e = scalpel::relevance::explain(
        &model,
        &item.ids,
        Some(target),
        scalpel::relevance::RuleSet::AttnLrp,
        scalpel::relevance::WeightDetail::None,
        &MemoryLimits::default(),
        &mut |_, _| {},
    )
    .unwrap()
    .explanation;
    let reference = ReferenceSet::from_task(&task).unwrap();
    let neurons = unit_scores(
        &model,
        ScoreMethod::LrpSigned,
        Granularity::Neurons,
        &reference,
    );
    let heads = unit_scores(
        &model,
        ScoreMethod::LrpSigned,
        Granularity::Heads,
        &reference,
    );
    for layer in 0..model.config.num_layers {
        let id = |g: Granularity| LinearId {
            layer,
            kind: g.unit_kind(model.config.architecture).unwrap(),
        };
        close(
            &neurons.linears[&id(Granularity::Neurons)].data,
            &e.neurons[layer],
            "neurons",
        );
        close(
            &heads.linears[&id(Granularity::Heads)].data,
            &e.heads[layer],
            "heads",
        );
    }
}

#[test]
fn unit_masks_zero_whole_columns_and_undo() {
    for name in MODELS {
        let mut model = load_fixture_model(name);
        let task = random_task(&model, 6);
        let before = evaluate(&model, &task).unwrap();
        for granularity in [Granularity::Neurons, Granularity::Heads] {
            let scores = Scores::random(&model, granularity, 7).unwrap();
            let masks = Masks::from_scores(&scores, 0.5, Group::Global).unwrap();
            let report = masks.apply(&mut model).unwrap();
            assert_eq!(report.pruned, report.total / 2, "{name} {granularity:?}");
            let width = granularity.unit_width(&model.config);
            for (id, m) in &masks.linears {
                let dense = to_vec(model.dense_weight(*id).unwrap());
                let w = to_vec(model.weight(*id).unwrap());
                let [_, cols] = model.linear_shape(*id).unwrap();
                for (i, (&wv, &d)) in w.iter().zip(&dense).enumerate() {
                    let kept = m.keep.is_kept((i % cols) / width);
                    assert_eq!(wv, if kept { d } else { 0.0 }, "{name} {id}");
                }
            }
            let pruned = evaluate(&model, &task).unwrap();
            assert_ne!(
                pruned, before,
                "{name}: pruning {granularity:?} changed nothing"
            );
            model.restore_dense();
            assert_eq!(
                evaluate(&model, &task).unwrap(),
                before,
                "{name} not restored"
            );
        }
    }
}

#[test]
fn batched_evaluation_equals_one_prompt_at_a_time() {
    for name in MODELS {
        let model = load_fixture_model(name);
        let task = random_task(&model, 11);
        let outcomes = evaluate(&model, &task).unwrap();
        for (i, item) in task.items.iter().enumerate() {
            let logits = logits_last(&model, &item.ids);
            let diff = logits[item.answer as usize] - logits[item.distractor as usize];
            assert!(
                (outcomes.logit_diff[i] - diff).abs() < 1e-4,
                "{name} prompt {i}: {} vs {diff}",
                outcomes.logit_diff[i]
            );
            let top = logits.iter().copied().fold(f32::MIN, f32::max);
            assert_eq!(outcomes.top1[i], logits[item.answer as usize] >= top);
        }
        let m = outcomes.metrics();
        assert_eq!(m.prompts, 11);
        let empty = EncodedTask {
            name: "empty".into(),
            items: vec![],
            notes: vec![],
        };
        assert!(evaluate(&model, &empty).is_err());
    }
}

#[test]
fn curves_prune_the_asked_share_and_start_dense() {
    let mut model = load_fixture_model("opt-pre-ln");
    let task = random_task(&model, 8);
    let dense = evaluate(&model, &task).unwrap().metrics();
    for granularity in Granularity::ALL {
        let scores = Scores::random(&model, granularity, 3).unwrap();
        let search = Search {
            scores: &scores,
            group: Group::Global,
            task: &task,
            dense,
        };
        let fractions = [0.0, 0.25, 0.5, 0.9];
        let curve: Vec<_> = fractions
            .iter()
            .map(|&f| pollster::block_on(search.measure(&mut model, f)).unwrap())
            .collect();
        assert!(!model.is_masked(), "measuring leaves the model dense");
        assert_eq!(curve[0].metrics, dense);
        assert_eq!(faithfulness(&curve[0].metrics, &dense), 1.0);
        // The zero share is not run (it is the dense model): applied, its mask changes nothing.
        let nothing = Masks::from_scores(&scores, 0.0, Group::Global).unwrap();
        let applied = pollster::block_on(with_masks(&mut model, &nothing, async |m: &Model| {
            Ok(evaluate(m, &task)?.metrics())
        }))
        .unwrap();
        assert_eq!(applied, dense, "{granularity:?}");
        for p in &curve {
            assert_eq!(
                p.pruned,
                (p.total as f64 * p.fraction) as u64,
                "{granularity:?}"
            );
        }
        // Threshold 0 is met everywhere: the circuit is the largest share measured.
        let found = pollster::block_on(search.circuit(
            &mut model,
            &curve,
            -1e9,
            2,
            &mut Quiet,
            "narrowing",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(found.fraction, 0.9);
        assert!(!model.is_masked());
    }
    // Seeded random scores are reproducible and differ between seeds.
    let a = Scores::random(&model, Granularity::Heads, 1).unwrap();
    let b = Scores::random(&model, Granularity::Heads, 1).unwrap();
    let c = Scores::random(&model, Granularity::Heads, 2).unwrap();
    assert_eq!(a.linears, b.linears);
    assert_ne!(a.linears, c.linears);
}

#[test]
fn circuit_files_round_trip_and_refuse_bad_input() {
    let model = load_fixture_model("llama-gqa-tied");
    let arch = model.config.architecture;
    let notes = CircuitNotes {
        task: "random".into(),
        threshold: Some(0.9),
        dense: None,
        circuit: None,
    };
    for granularity in Granularity::ALL {
        let scores = Scores::random(&model, granularity, 5).unwrap();
        let masks = Masks::from_scores(&scores, 0.7, Group::Global).unwrap();
        let json = to_json(&masks, arch, &notes).unwrap();
        let (back, back_notes) = from_json("c.json", &json, arch).unwrap();
        back.check_for(&model).unwrap();
        assert_eq!(back.linears, masks.linears, "{granularity:?}");
        assert_eq!(back.info, masks.info);
        assert_eq!(back_notes, notes);
    }
    let heads = Masks::from_scores(
        &Scores::random(&model, Granularity::Heads, 5).unwrap(),
        0.5,
        Group::Global,
    )
    .unwrap();
    let json = to_json(&heads, arch, &notes).unwrap();
    let mut doc: Value = serde_json::from_str(&json).unwrap();
    let err = |doc: &Value| {
        from_json("c.json", &doc.to_string(), arch)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert!(err(&serde_json::json!({"x": 1})).contains("not a Scalpel circuit file"));
    let mut wrong = doc.clone();
    wrong["format"] = "scalpel-circuit/9".into();
    assert!(err(&wrong).contains("scalpel-circuit/1"));
    let first = doc["linears"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    doc["linears"][&first]["units"] = serde_json::json!([0, 99]);
    assert!(err(&doc).contains("outside"), "{}", err(&doc));
    assert!(from_json("c.json", "{trunc", arch).is_err());
    // A circuit made for another model is refused before it touches the weights.
    let other = load_fixture_model("opt-pre-ln");
    assert!(heads.check_for(&other).is_err());
    let info = MaskInfo {
        sparsity: 0.5,
        group: Group::Global,
        scores: heads.info.scores.clone(),
    };
    let short = Masks {
        info,
        linears: [(
            LinearId {
                layer: 0,
                kind: Granularity::Heads.unit_kind(arch).unwrap(),
            },
            LinearMask {
                shape: [1, 1],
                keep: KeepBits::all_kept(1),
            },
        )]
        .into(),
    };
    assert!(short.check_for(&model).is_err());
}

// ---- SmolLM2 against transformers -------------------------------------------------------

fn circuit_reference() -> Value {
    fixture_json("circuit/reference.json")
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The reference's task by name: the shipped task files and seed 0's IOI prompts.
fn reference_task(name: &str) -> Task {
    match TaskSource::named(name) {
        Ok(TaskSource::Data(t)) => t,
        _ => {
            let text =
                std::fs::read_to_string(fixtures().join(format!("circuit/{name}.jsonl"))).unwrap();
            Task::parse(name, &text).unwrap()
        }
    }
}

fn check_against(task_ref: &Value, outcomes: &scalpel::task::metrics::PromptOutcomes, what: &str) {
    let expected = f32s(&task_ref["logit_diff"]);
    assert_eq!(outcomes.logit_diff.len(), expected.len(), "{what}");
    let diff = max_abs_diff(&outcomes.logit_diff, &expected);
    // Logits of SmolLM2 agree with transformers to ~1e-4 × their scale (tests/smollm2.rs);
    // differences of two logits of magnitude ~20 inherit that.
    assert!(diff < 5e-3, "{what}: logit differences differ by {diff}");
}

#[test]
fn smollm2_task_metrics_match_transformers() {
    let loaded = smollm2();
    let reference = circuit_reference();
    let tasks = reference["tasks"].as_array().unwrap();
    assert!(tasks.len() >= 4, "expected the three shipped tasks and IOI");
    for t in tasks {
        let name = t["name"].as_str().unwrap();
        let encoded = reference_task(name).encode(&loaded.tokenizer).unwrap();
        for (i, item) in encoded.items.iter().enumerate() {
            assert_eq!(item.ids, u32s(&t["prompt_ids"][i]), "{name} prompt {i} ids");
            assert_eq!(item.answer, t["answer_ids"][i].as_u64().unwrap() as u32);
            assert_eq!(
                item.distractor,
                t["distractor_ids"][i].as_u64().unwrap() as u32
            );
        }
        let outcomes = evaluate(&loaded.model, &encoded).unwrap();
        check_against(t, &outcomes, name);
    }
}

#[test]
fn smollm2_structured_pruning_matches_transformers() {
    let loaded = smollm2();
    let mut model = load_smollm2().model;
    let reference = circuit_reference();
    let pruned = &reference["pruned"];
    let task = reference_task(pruned["task"].as_str().unwrap())
        .encode(&loaded.tokenizer)
        .unwrap();
    let arch = model.config.architecture;
    for (granularity, key) in [
        (Granularity::Neurons, "neurons"),
        (Granularity::Heads, "heads"),
    ] {
        // Keep everything, then drop the listed units: a mask over units of this granularity.
        let mut scores = Scores::random(&model, granularity, 0).unwrap();
        for s in scores.linears.values_mut() {
            s.data.fill(1.0);
        }
        let mut masks = Masks::from_scores(&scores, 0.0, Group::Global).unwrap();
        for (layer, units) in pruned[key].as_object().unwrap() {
            let id = LinearId {
                layer: layer.parse().unwrap(),
                kind: granularity.unit_kind(arch).unwrap(),
            };
            for u in u32s(units) {
                masks.linears.get_mut(&id).unwrap().keep.prune(u as usize);
            }
        }
        // Neuron and head masks touch different Linears, so both stay applied.
        masks.apply(&mut model).unwrap();
    }
    let outcomes = evaluate(&model, &task).unwrap();
    check_against(pruned, &outcomes, "pruned capitals");
    model.restore_dense();
    let dense = evaluate(&model, &task).unwrap();
    assert!(max_abs_diff(&dense.logit_diff, &outcomes.logit_diff) > 0.1);
}

#[test]
fn smollm2_ioi_prompts_are_reproducible_and_held_out_prompts_are_new() {
    let tok = &smollm2().tokenizer;
    let scoring = TaskSource::Ioi.sample(tok, 0, 128, Split::Scoring).unwrap();
    let lines: Vec<String> = ioi::describe(&scoring, tok)
        .unwrap()
        .iter()
        .map(|p| serde_json::to_string(p).unwrap())
        .collect();
    let committed = std::fs::read_to_string(fixtures().join("circuit/ioi-seed0.jsonl")).unwrap();
    assert_eq!(lines, committed.lines().collect::<Vec<_>>());
    // Half ABBA, half BABA: the subject is named first in half of the prompts.
    let text = ioi::describe(&scoring, tok).unwrap();
    let s_first = text
        .iter()
        .filter(|p| {
            let s = p.distractor.trim();
            let io = p.answer.trim();
            p.prompt.find(s) < p.prompt.find(io)
        })
        .count();
    assert_eq!(s_first, 64);
    let held = TaskSource::Ioi.sample(tok, 0, 128, Split::HeldOut).unwrap();
    let names = |t: &EncodedTask| -> std::collections::BTreeSet<u32> {
        t.items
            .iter()
            .flat_map(|i| [i.answer, i.distractor])
            .collect()
    };
    assert!(names(&scoring).is_disjoint(&names(&held)));
    assert_ne!(
        TaskSource::Ioi
            .sample(tok, 1, 8, Split::Scoring)
            .unwrap()
            .items,
        scoring.items[..8].to_vec()
    );
    // The dense model does IOI.
    let m = evaluate(&smollm2().model, &scoring).unwrap().metrics();
    assert!(m.accuracy > 0.8 && m.logit_diff > 1.0, "{m:?}");
}

#[test]
fn smollm2_task_files_with_multi_token_answers_are_refused() {
    let tok = &smollm2().tokenizer;
    let task = Task::parse("mine", "The capital of France is | Paris | Antananarivo\n").unwrap();
    let err = task.encode(tok).unwrap_err().to_string();
    assert!(
        err.contains("single tokens") && err.contains("Antananarivo"),
        "{err}"
    );
    let err = Task::parse("mine", "\n\n").unwrap_err().to_string();
    assert!(err.contains("no prompts"), "{err}");
}

/// Records a circuit search's events, and stops it at the first step of `stop_at` if given.
#[derive(Default)]
struct Recorder {
    events: Vec<String>,
    stop_at: Option<&'static str>,
}

impl Steps for Recorder {
    async fn step(&mut self, stage: &str, _done: usize, _total: usize) -> scalpel::Result<()> {
        match self.stop_at {
            Some(s) if stage.contains(s) => Err(scalpel::Error::Cancelled),
            _ => Ok(()),
        }
    }

    fn notice(&mut self, _message: &str) {}
}

impl Driver<CircuitEvent<'_>> for Recorder {
    fn event(&mut self, event: CircuitEvent<'_>) -> scalpel::Result<()> {
        self.events.push(match event {
            CircuitEvent::Seed { seed, .. } => format!("seed {seed}"),
            CircuitEvent::Scored { method, .. } => format!("scored {}", method.name()),
            CircuitEvent::Point { point, .. } => format!("point {}", point.fraction),
            CircuitEvent::Circuit { found, .. } => format!("circuit {}", found.is_some()),
            CircuitEvent::SeedDone(report) => format!("done {}", report.seeds.len()),
        });
        Ok(())
    }
}

#[test]
fn the_circuit_search_job_reports_each_seed_and_stops_cleanly() {
    let mut model = load_fixture_model("llama-gqa-tied");
    let tokenizer = tiny_tokenizer(model.config.vocab_size);
    // Prompts whose answer is the dense model's top token and distractor its lowest: the dense
    // model does the task, so there is a circuit to look for.
    let lines: String = reference(&model, 12, 5)
        .samples
        .iter()
        .map(|ids| {
            let logits = logits_last(&model, ids);
            let (best, worst) = (
                scalpel::generate::argmax(&logits),
                scalpel::generate::argmax(&logits.iter().map(|v| -v).collect::<Vec<_>>()),
            );
            let words: Vec<String> = ids.iter().map(|i| format!("t{i}")).collect();
            format!("{} | t{best} | t{worst}\n", words.join(" "))
        })
        .collect();
    let task = TaskSource::Data(Task::parse("top-token", &lines).unwrap());
    let plan = CircuitPlan {
        run: RunInfo::default(),
        task: &task,
        granularity: Granularity::Heads,
        linears: LinearSet::all(),
        group: Group::Global,
        methods: vec![ScoreMethod::Lrp, ScoreMethod::Random],
        seeds: vec![0, 1],
        prompts: 4,
        fractions: vec![0.0, 0.5],
        threshold: Some(0.0),
        refine: 1,
        budget: Default::default(),
    };
    let mut recorder = Recorder::default();
    let report = pollster::block_on(search(&mut model, &tokenizer, &plan, &mut recorder)).unwrap();
    assert!(!model.is_masked(), "the search leaves the model dense");
    let per_method = ["point 0", "point 0.5", "circuit true"];
    let mut expected = Vec::new();
    for seed in 0..2 {
        expected.push(format!("seed {seed}"));
        for method in ["lrp", "random"] {
            expected.push(format!("scored {method}"));
            expected.extend(per_method.iter().map(|s| s.to_string()));
        }
        expected.push(format!("done {}", seed + 1));
    }
    assert_eq!(recorder.events, expected);
    assert_eq!(report.seeds.len(), 2);
    assert_eq!(report.protocol.seeds, 2);
    for m in &report.summary {
        assert_eq!((m.seeds, m.circuits_found), (2, 2), "{:?}", m.method);
        assert_eq!(
            m.curve[0].faithfulness, 1.0,
            "0 % pruned is the dense model"
        );
    }
    // The report reads back and renders as it did (JSON floats may move in the last bit).
    let back: CircuitReport =
        serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(back.markdown(), report.markdown());
    assert_eq!(back.chart().to_svg(), report.chart().to_svg());

    let mut stopping = Recorder {
        stop_at: Some("measuring the curve"),
        ..Recorder::default()
    };
    let Err(err) = pollster::block_on(search(&mut model, &tokenizer, &plan, &mut stopping)) else {
        panic!("the job should have stopped");
    };
    assert!(matches!(err, scalpel::Error::Cancelled), "{err}");
    assert!(
        !model.is_masked(),
        "a stopped search leaves the model dense"
    );

    // Weights of the up projections alone: the curve counts only them, the rest stays whole.
    let up = LinearSet::parse("up", model.config.architecture).unwrap();
    let up_weights = weights_of(&model, LinearKind::Up);
    let plan = CircuitPlan {
        granularity: Granularity::Weights,
        linears: up,
        seeds: vec![0],
        ..plan
    };
    let report = pollster::block_on(search(
        &mut model,
        &tokenizer,
        &plan,
        &mut Recorder::default(),
    ))
    .unwrap();
    assert_eq!(report.protocol.linears, "mlp.up_proj");
    for run in &report.seeds[0].methods {
        assert!(
            run.curve.iter().all(|p| p.total == up_weights),
            "{:?}",
            run.method
        );
    }
    assert!(!model.is_masked());
    let heads = CircuitPlan {
        granularity: Granularity::Heads,
        ..plan
    };
    let err = pollster::block_on(search(
        &mut model,
        &tokenizer,
        &heads,
        &mut Recorder::default(),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("o_proj"), "{err}");
}

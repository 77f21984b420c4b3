//! Pruning: scores over a reference set, masks per group, apply/undo, score and mask files,
//! and checkpoint export that round-trips bit-exactly.

mod common;

use std::collections::BTreeMap;

use common::*;
use scalpel::export::export_checkpoint;
use scalpel::model::LinearId;
use scalpel::model::LinearKind;
use scalpel::prune::{Granularity, Group, LinearSet, Masks, check_sparsity};
use scalpel::relevance::{MemoryLimits, RuleSet, Target, WeightDetail, explain};
use scalpel::score::{ReferenceSet, ScoreMethod, Scorer, Scores};
use scalpel::{Model, ModelFiles, WeightDtype};

use common::ONE_PER_FAMILY as MODELS;

#[test]
fn every_group_prunes_exactly_its_share() {
    let model = load_fixture_model("llama-gqa-tied");
    let s = scores(&model, ScoreMethod::Magnitude, None);
    for (group, sparsity) in [
        (Group::Row, 0.5),
        (Group::Row, 0.3),
        (Group::Layer, 0.6),
        (Group::Global, 0.5),
        (Group::NofM { keep: 2, block: 4 }, 0.5),
        (Group::NofM { keep: 4, block: 8 }, 0.5),
    ] {
        let masks = Masks::from_scores(&s, sparsity, group).unwrap();
        for (id, m) in &masks.linears {
            let [rows, cols] = m.shape;
            let keep_bytes = m.keep.to_bytes();
            let scores = &s.linears[id].data;
            match group {
                Group::Row => {
                    for r in 0..rows {
                        let row = &keep_bytes[r * cols..(r + 1) * cols];
                        let pruned = row.iter().filter(|&&k| k == 0).count();
                        assert_eq!(pruned, (cols as f64 * sparsity) as usize, "{id} row {r}");
                        // Every pruned weight scores no higher than every kept one.
                        let sc = &scores[r * cols..(r + 1) * cols];
                        let max_pruned = (0..cols)
                            .filter(|&c| row[c] == 0)
                            .map(|c| sc[c])
                            .fold(f32::MIN, f32::max);
                        let min_kept = (0..cols)
                            .filter(|&c| row[c] == 1)
                            .map(|c| sc[c])
                            .fold(f32::MAX, f32::min);
                        assert!(max_pruned <= min_kept, "{id} row {r}");
                    }
                }
                Group::Layer => {
                    assert_eq!(m.pruned(), (m.keep.len() as f64 * sparsity) as u64, "{id}");
                }
                Group::NofM { keep, block } => {
                    for b in keep_bytes.chunks(block) {
                        assert_eq!(b.iter().filter(|&&k| k == 1).count(), keep, "{id}");
                    }
                }
                Group::Global => {}
            }
        }
        let report = masks.report();
        if group == Group::Global {
            assert_eq!(report.pruned, (report.total as f64 * sparsity) as u64);
        }
        assert!(
            (report.sparsity() - sparsity).abs() < 0.02,
            "{group:?}: {}",
            report.sparsity()
        );
        assert_eq!(report.per_layer().len(), model.config.num_layers);
    }
}

#[test]
fn masks_apply_and_undo_without_reloading() {
    for (name, dtype) in MODELS
        .iter()
        .map(|&n| (n, WeightDtype::F32))
        .chain([("llama-gqa-tied", WeightDtype::F16)])
    {
        let mut model = load_fixture_model_as(name, &cpu(), dtype);
        let value_bytes = if dtype == WeightDtype::F16 { 2 } else { 4 };
        let ids = [3u32, 17, 5, 9, 11, 2];
        let dense_logits = logits(&model, &ids);
        let dense: BTreeMap<LinearId, Vec<f32>> = model
            .linear_ids()
            .into_iter()
            .map(|id| (id, to_vec(model.weight(id).unwrap())))
            .collect();
        let s = scores(&model, ScoreMethod::Magnitude, None);
        // Two masks in a row: the second starts from the dense weights, not from the first.
        let first = Masks::from_scores(&s, 0.6, Group::Layer).unwrap();
        first.apply(&mut model).unwrap();
        let masks = Masks::from_scores(&s, 0.5, Group::Row).unwrap();
        let report = masks.apply(&mut model).unwrap();
        assert!(model.is_masked());
        assert!((report.sparsity() - 0.5).abs() < 0.01);
        // On the CPU, undoing keeps the pruned values (as held) and the mask's bits only.
        let bits: u64 = masks
            .linears
            .values()
            .map(|m| m.keep.packed().len() as u64)
            .sum();
        assert_eq!(
            model.mask_undo_bytes(),
            value_bytes * report.pruned + bits,
            "{name}"
        );
        for (id, m) in &masks.linears {
            let w = to_vec(model.weight(*id).unwrap());
            for ((&wv, &k), &d) in w.iter().zip(&m.keep.to_bytes()).zip(&dense[id]) {
                assert_eq!(wv, if k == 1 { d } else { 0.0 }, "{name} {id}");
            }
        }
        assert_ne!(
            logits(&model, &ids),
            dense_logits,
            "{name}: pruning changed nothing"
        );
        model.restore_dense();
        assert!(!model.is_masked());
        for (id, d) in &dense {
            assert_eq!(
                &to_vec(model.weight(*id).unwrap()),
                d,
                "{name} {id} not restored"
            );
        }
        assert_eq!(logits(&model, &ids), dense_logits, "{name}");
    }
}

/// The prompt whose logits an export must reproduce.
const EXPORT_PROMPT: [u32; 7] = [1, 4, 9, 16, 25, 36, 49];

/// Masks half of each row of `model` by `s`; returns the pruned model's logits of
/// [`EXPORT_PROMPT`].
fn prune_half_of_each_row(model: &mut Model, s: &Scores) -> Vec<f32> {
    Masks::from_scores(s, 0.5, Group::Row)
        .unwrap()
        .apply(model)
        .unwrap();
    logits(model, &EXPORT_PROMPT)
}

#[test]
fn a_pruned_export_reloads_to_the_same_logits() {
    for name in MODELS {
        let mut model = load_fixture_model(name);
        let tokenizer = tiny_tokenizer(model.config.vocab_size);
        let s = scores(&model, ScoreMethod::Wanda, Some(reference(&model, 2, 8)));
        let pruned_logits = prune_half_of_each_row(&mut model, &s);
        let ids = EXPORT_PROMPT;
        let checkpoint =
            pollster::block_on(export_checkpoint(&model, &tokenizer, Some("test".into()))).unwrap();
        let reloaded = ModelFiles::HuggingFace {
            config_json: checkpoint.config_json.clone(),
            shards: vec![(
                "model.safetensors".into(),
                checkpoint.model_safetensors.clone().into(),
            )],
            tokenizer_json: Some(checkpoint.tokenizer_json.clone()),
        }
        .load(&cpu(), &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{name}: reloading the export: {e}"));
        assert_eq!(
            reloaded.model.config, model.config,
            "{name}: config changed"
        );
        assert_eq!(
            logits(&reloaded.model, &ids),
            pruned_logits,
            "{name}: logits changed"
        );
    }
}

#[test]
fn lrp_and_gradient_scores_are_the_mean_relevance_of_the_samples() {
    let model = load_fixture_model("llama-gqa-tied");
    let r = reference(&model, 3, 7);
    let per_sample = |rules| {
        r.samples
            .iter()
            .map(|ids| {
                explain(
                    &model,
                    ids,
                    Some(Target::NextTokens { from: 0 }),
                    rules,
                    WeightDetail::Full,
                    &MemoryLimits::default(),
                    &mut |_, _| {},
                )
                .unwrap()
                .weights
                .into_iter()
                .map(|(id, t)| (id, to_vec(t)))
                .collect::<BTreeMap<_, _>>()
            })
            .collect::<Vec<_>>()
    };
    let attn = per_sample(RuleSet::AttnLrp);
    let grad = per_sample(RuleSet::Gradient);
    let mut scorer = Scorer::new(
        &model,
        ScoreMethod::LrpAbs,
        Some(r.clone()),
        MemoryLimits::default(),
    )
    .unwrap()
    .keeping_signed_sums();
    scorer.run(&mut |_, _| {}).unwrap();
    let both = scorer
        .scores(&[ScoreMethod::Lrp, ScoreMethod::LrpAbs])
        .unwrap();
    let mut both = both.into_iter().map(|p| p.read().unwrap());
    let (lrp, lrp_abs) = (both.next().unwrap(), both.next().unwrap());
    let gradient = scores(&model, ScoreMethod::Gradient, Some(r.clone()));
    let n = r.samples.len() as f32;
    for id in model.linear_ids() {
        let len = lrp.linears[&id].data.len();
        let mean = |all: &[BTreeMap<LinearId, Vec<f32>>], abs: bool| -> Vec<f32> {
            (0..len)
                .map(|i| {
                    all.iter()
                        .map(|s| if abs { s[&id][i].abs() } else { s[&id][i] })
                        .sum::<f32>()
                        / n
                })
                .collect()
        };
        let expect_lrp: Vec<f32> = mean(&attn, false).iter().map(|v| v.abs()).collect();
        let expect_abs = mean(&attn, true);
        let expect_grad: Vec<f32> = mean(&grad, false).iter().map(|v| v.abs()).collect();
        for (got, want, what) in [
            (&lrp.linears[&id].data, &expect_lrp, "lrp"),
            (&lrp_abs.linears[&id].data, &expect_abs, "lrp-abs"),
            (&gradient.linears[&id].data, &expect_grad, "gradient"),
        ] {
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            assert!(max_abs_diff(got, want) <= 1e-5 * scale, "{what} {id}");
        }
    }
    assert_eq!(lrp.info.reference.as_ref().unwrap().samples, 3);
}

#[test]
fn score_and_mask_files_round_trip_and_refuse_other_models() {
    let llama = load_fixture_model("llama-gqa-tied");
    let opt = load_fixture_model("opt-pre-ln");
    let s = scores(&llama, ScoreMethod::Magnitude, None);
    let arch = llama.config.architecture;
    let bytes = s.to_safetensors(arch).unwrap();
    let back = Scores::from_safetensors("scores.safetensors", &bytes, arch).unwrap();
    assert_eq!(back.info, s.info);
    assert_eq!(back.linears, s.linears);
    back.check_for(&llama).unwrap();
    let err = back.check_for(&opt).unwrap_err().to_string();
    assert!(err.contains("another model"), "{err}");

    let masks = Masks::from_scores(&s, 0.5, Group::Row).unwrap();
    let bytes = masks.to_safetensors(arch).unwrap();
    let back = Masks::from_safetensors("mask.safetensors", &bytes, arch).unwrap();
    assert_eq!(back.linears, masks.linears);
    let mut opt = opt;
    let err = back.apply(&mut opt).unwrap_err().to_string();
    assert!(err.contains("another model"), "{err}");
    assert!(!opt.is_masked());

    // Wrong shapes under the right fingerprint, and files that are not what they claim.
    let mut wrong = s.clone();
    let first = llama.linear_ids()[0];
    wrong.linears.get_mut(&first).unwrap().shape = vec![1, 1];
    let err = wrong.check_for(&llama).unwrap_err().to_string();
    assert!(err.contains("shape"), "{err}");
    let err = Scores::from_safetensors("mask.safetensors", &bytes, arch)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a Scalpel scores file"), "{err}");
    let err = Masks::from_safetensors("junk", b"not a file", arch)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a valid safetensors"), "{err}");
    let truncated = &bytes[..bytes.len() / 2];
    assert!(Masks::from_safetensors("half", truncated, arch).is_err());
}

#[test]
fn bad_pruning_requests_are_refused() {
    let mut model = load_fixture_model("llama-gqa-tied");
    let s = scores(&model, ScoreMethod::Magnitude, None);
    for bad in [1.0, -0.1, f64::NAN, 1.5] {
        assert!(check_sparsity(bad).is_err());
        let err = Masks::from_scores(&s, bad, Group::Row)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sparsity must be in [0, 1)"), "{err}");
    }
    let err = Masks::from_scores(&s, 0.3, Group::NofM { keep: 2, block: 4 })
        .unwrap_err()
        .to_string();
    assert!(err.contains("its sparsity is 0.5"), "{err}");
    assert!(Group::parse("3:2").is_err() && Group::parse("rows?").is_err());
    assert!(ScoreMethod::parse("sparsegpt").is_err());
    let err = Scorer::new(&model, ScoreMethod::Wanda, None, MemoryLimits::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("need a reference set"), "{err}");
    // Scoring a model that carries a mask would score the pruned model: refused.
    Masks::from_scores(&s, 0.5, Group::Row)
        .unwrap()
        .apply(&mut model)
        .unwrap();
    let err = Scorer::new(
        &model,
        ScoreMethod::Magnitude,
        None,
        MemoryLimits::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("restore the dense model"), "{err}");
}

#[test]
fn reference_sets_follow_the_protocol_and_refuse_short_text() {
    let gguf = scalpel::io::gguf::GgufFile::parse(asset(SMOLLM2_GGUF)).unwrap();
    let tokenizer = scalpel::TextTokenizer::from_gguf(&gguf).unwrap();
    let long = "word ".repeat(100);
    let docs = ["tiny", long.as_str(), "also short", long.as_str()];
    let r = ReferenceSet::from_documents("test", &docs, &tokenizer, 5, 20).unwrap();
    // Two first windows, then the further windows of each long document in order.
    assert_eq!(r.samples.len(), 5);
    let ids = tokenizer.encode(&long).unwrap();
    assert_eq!(r.samples[0], ids[..20]);
    assert_eq!(r.samples[2], ids[20..40]);
    assert!(r.samples.iter().all(|s| s.len() == 20));
    let few = ReferenceSet::from_documents("test", &docs, &tokenizer, 100, 20).unwrap();
    assert!(few.is_short() && few.protocol.name == format!("test-{}x20", few.samples.len()));
    for (docs, len) in [
        (&["", "short text"][..], 20),
        (&[][..], 20),
        (&["a b c"][..], 1),
    ] {
        let err = ReferenceSet::from_documents("test", docs, &tokenizer, 4, len)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("too short") || err.contains("at least 2 tokens"),
            "{err}"
        );
    }
}

/// Wanda (one-shot and sequential) against the PyTorch reference of
/// tests/fixtures/make_prune_fixtures.py: scores, masks and the pruned model's logits.
#[test]
fn wanda_matches_the_pytorch_reference() {
    for name in ["llama-gqa-tied", "opt-pre-ln", "opt-bias-free"] {
        let bytes = std::fs::read(fixtures().join(format!("prune/{name}.safetensors"))).unwrap();
        let mut model = load_fixture_model(name);
        let ids = read_ids(&bytes, "tokens");
        let mut r = reference(&model, 4, 12);
        r.samples = ids.chunks(12).map(<[u32]>::to_vec).collect();
        let spec = model.config.architecture.spec();
        let module = |id: LinearId| spec.module(id.kind).unwrap();
        let fixture = |id: LinearId, what: &str| {
            read_f32(
                &bytes,
                &format!("layers.{}.{}.{what}", id.layer, module(id)),
            )
            .1
        };
        let close = |got: &[f32], want: &[f32], what: &str| {
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = max_abs_diff(got, want) / scale;
            assert!(err <= 1e-5, "{name} {what}: relative error {err}");
        };
        let all_logits = |model: &Model| -> Vec<f32> {
            r.samples
                .iter()
                .flat_map(|ids| logits(model, ids))
                .collect()
        };

        let wanda = scores(&model, ScoreMethod::Wanda, Some(r.clone()));
        let masks = Masks::from_scores(&wanda, 0.5, Group::Row).unwrap();
        for id in model.linear_ids() {
            close(
                &wanda.linears[&id].data,
                &fixture(id, "wanda"),
                &format!("{id} scores"),
            );
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let want = st
                .tensor(&format!(
                    "layers.{}.{}.mask_wanda_row50",
                    id.layer,
                    module(id)
                ))
                .unwrap();
            assert_eq!(
                masks.linears[&id].keep.to_bytes(),
                want.data(),
                "{name} {id} mask"
            );
        }
        masks.apply(&mut model).unwrap();
        close(
            &all_logits(&model),
            &read_f32(&bytes, "logits_wanda_row50").1,
            "pruned logits",
        );
        model.restore_dense();

        let sequential =
            scalpel::score::wanda_sequential(&mut model, &r, 0.5, Group::Row, &mut |_, _| {})
                .unwrap();
        assert!(!model.is_masked(), "wanda-seq must leave the model dense");
        for id in model.linear_ids() {
            close(
                &sequential.linears[&id].data,
                &fixture(id, "wanda_seq_row50"),
                &format!("{id} sequential scores"),
            );
        }
        let err = Masks::from_scores(&sequential, 0.6, Group::Row)
            .unwrap_err()
            .to_string();
        assert!(err.contains("made for sparsity 0.5"), "{err}");
        Masks::from_scores(&sequential, 0.5, Group::Row)
            .unwrap()
            .apply(&mut model)
            .unwrap();
        close(
            &all_logits(&model),
            &read_f32(&bytes, "logits_wanda_seq_row50").1,
            "sequentially pruned logits",
        );
    }
}

/// `c4-128x256` as the protocol defines it, checked against the benchmark peer's independent
/// Python construction (tests/fixtures/make_prune_fixtures.py writes the summary).
#[test]
fn c4_reference_set_matches_the_python_construction() {
    let gguf = scalpel::io::gguf::GgufFile::parse(asset(SMOLLM2_GGUF)).unwrap();
    let tokenizer = scalpel::TextTokenizer::from_gguf(&gguf).unwrap();
    let raw = String::from_utf8(asset("c4.utf8")).unwrap();
    let r = ReferenceSet::c4(&raw, &tokenizer, 128, 256).unwrap();
    assert_eq!(r.protocol.name, "c4-128x256");
    let want: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("prune/c4-128x256.smollm2.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(want["samples"], 128);
    for (i, s) in r.samples.iter().enumerate() {
        assert_eq!(s.len(), 256);
        let first: Vec<u64> = s[..8].iter().map(|&t| t as u64).collect();
        assert_eq!(serde_json::json!(first), want["first_ids"][i], "sample {i}");
        let sum: u64 = s.iter().map(|&t| t as u64).sum();
        assert_eq!(want["id_sums"][i], sum, "sample {i}");
    }
}

/// `lrp-abs` scoring keeps only Σ |R| per weight (half the memory of keeping Σ R too): `lrp`
/// scores from such a scorer are refused, and come from one made `keeping_signed_sums`.
#[test]
fn lrp_abs_scoring_keeps_only_the_absolute_sums_unless_asked() {
    let model = load_fixture_model("llama-gqa-tied");
    let reference = reference(&model, 2, 6);
    let run = |keep_signed: bool| {
        let mut scorer = Scorer::new(
            &model,
            ScoreMethod::LrpAbs,
            Some(reference.clone()),
            MemoryLimits::default(),
        )
        .unwrap();
        if keep_signed {
            scorer = scorer.keeping_signed_sums();
        }
        scorer.run(&mut |_, _| {}).unwrap();
        scorer
    };
    let lean = run(false);
    let err = lean.scores(&[ScoreMethod::Lrp]).err().expect("lrp refused");
    assert!(err.to_string().contains("lrp"), "{err}");
    let both = run(true);
    let read = |s: &Scorer, m| s.scores(&[m]).unwrap().remove(0).read().unwrap();
    let (a, b) = (
        read(&lean, ScoreMethod::LrpAbs),
        read(&both, ScoreMethod::LrpAbs),
    );
    for id in model.linear_ids() {
        assert_eq!(a.linears[&id].data, b.linears[&id].data, "{id}");
    }
    assert!(both.scores(&[ScoreMethod::Lrp]).is_ok());
}

/// Masks cut one Linear at a time from a finished scorer (never holding every score) are the
/// masks cut from all of its scores at once; a global ranking is refused there.
#[test]
fn masks_from_a_scorer_equal_masks_from_all_its_scores() {
    let model = load_fixture_model("llama-gqa-tied");
    let r = reference(&model, 2, 7);
    for method in [
        ScoreMethod::Wanda,
        ScoreMethod::LrpAbs,
        ScoreMethod::Magnitude,
    ] {
        let used = method.uses_reference().then(|| r.clone());
        let mut scorer = Scorer::new(&model, method, used, MemoryLimits::default()).unwrap();
        assert!(
            Masks::from_scorer(&scorer, 0.5, Group::Row, &LinearSet::all()).is_err()
                || !method.uses_reference(),
            "{method:?}: masks before the scoring is done"
        );
        scorer.run(&mut |_, _| {}).unwrap();
        let all = scorer.scores(&[method]).unwrap().remove(0).read().unwrap();
        for (sparsity, group) in [
            (0.5, Group::Row),
            (0.3, Group::Layer),
            (0.5, Group::NofM { keep: 2, block: 4 }),
        ] {
            let streamed = Masks::from_scorer(&scorer, sparsity, group, &LinearSet::all()).unwrap();
            let whole = Masks::from_scores(&all, sparsity, group).unwrap();
            assert_eq!(streamed.info, whole.info, "{method:?} {group:?}");
            assert_eq!(streamed.linears, whole.linears, "{method:?} {group:?}");
        }
        assert!(Masks::from_scorer(&scorer, 0.5, Group::Global, &LinearSet::all()).is_err());
    }
    // Unit scores (`[1, units]`): one row per Linear.
    let mut neurons = Scorer::at(
        &model,
        ScoreMethod::LrpAbs,
        scalpel::unit::Granularity::Neurons,
        Some(r.clone()),
        MemoryLimits::default(),
    )
    .unwrap();
    neurons.run(&mut |_, _| {}).unwrap();
    let all = neurons
        .scores_at(scalpel::unit::Granularity::Neurons, &[ScoreMethod::LrpAbs])
        .unwrap()
        .remove(0)
        .read()
        .unwrap();
    let streamed = Masks::from_scorer(&neurons, 0.5, Group::Layer, &LinearSet::all()).unwrap();
    assert_eq!(
        streamed.linears,
        Masks::from_scores(&all, 0.5, Group::Layer).unwrap().linears
    );
}

/// Large checkpoints are written in shards (each read back on its own) with an index naming
/// every tensor's shard, in the dtype the model holds: a pruned f16 model exported in shards
/// reloads, through the index, to the same weights and logits.
#[test]
fn a_sharded_16_bit_export_reloads_to_the_same_logits() {
    use scalpel::export::Shards;
    use scalpel::io::safetensors::SafetensorsSource;
    let mut model = load_fixture_model_as("llama-gqa-tied", &cpu(), WeightDtype::F16);
    let s = scores(&model, ScoreMethod::Magnitude, None);
    let pruned_logits = prune_half_of_each_row(&mut model, &s);
    let ids = EXPORT_PROMPT;
    let whole = Shards::plan(&model, u64::MAX);
    assert_eq!(whole.len(), 1);
    assert!(whole.index_json().is_none());
    // Shards of a third of the tensors' bytes: at least three of them.
    let shards = Shards::plan(&model, whole.tensor_bytes() / 3);
    assert!(shards.len() >= 3, "{} shards", shards.len());
    assert_eq!(shards.tensor_bytes(), whole.tensor_bytes());
    let index = shards.index_json().unwrap();
    let names = SafetensorsSource::shard_names_from_index(&index).unwrap();
    assert_eq!(names.len(), shards.len());
    let files: Vec<(String, scalpel::io::FileBytes)> = (0..shards.len())
        .map(|i| {
            let bytes = pollster::block_on(shards.safetensors(i, Some("test"))).unwrap();
            (shards.file_name(i), bytes.into())
        })
        .collect();
    assert!(names.iter().all(|n| files.iter().any(|(f, _)| f == n)));
    // Written straight to a file, a shard holds the same metadata and tensors (the header's
    // metadata order follows a HashMap, so the bytes themselves may differ).
    let dir = std::env::temp_dir().join(format!("scalpel-shard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(shards.file_name(1));
    pollster::block_on(shards.write_file(1, Some("test"), &path)).unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    let (from_file, in_memory) = (
        safetensors::SafeTensors::deserialize(&on_disk).unwrap(),
        safetensors::SafeTensors::deserialize(&files[1].1).unwrap(),
    );
    let metadata = |bytes: &[u8]| safetensors::SafeTensors::read_metadata(bytes).unwrap().1;
    assert_eq!(
        metadata(&on_disk).metadata(),
        metadata(&files[1].1).metadata()
    );
    let mut names = in_memory.names();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        let (a, b) = (
            from_file.tensor(name).unwrap(),
            in_memory.tensor(name).unwrap(),
        );
        assert_eq!(
            (a.dtype(), a.shape(), a.data()),
            (b.dtype(), b.shape(), b.data()),
            "{name}"
        );
    }
    assert_eq!(from_file.len(), in_memory.len());
    std::fs::remove_dir_all(&dir).unwrap();
    let reloaded = ModelFiles::HuggingFace {
        config_json: scalpel::export::config_json(&model.config, model.weight_dtype()).unwrap(),
        shards: files,
        tokenizer_json: Some(tiny_tokenizer(model.config.vocab_size).to_json().unwrap()),
    }
    .load_with(
        &cpu(),
        scalpel::LoadOptions {
            dtype: WeightDtype::Auto,
            ..Default::default()
        },
        &mut |_, _| {},
    )
    .unwrap();
    // Auto keeps a 16-bit checkpoint 16-bit: the export was written as f16.
    assert_eq!(reloaded.model.weight_dtype(), burn::tensor::DType::F16);
    assert_eq!(logits(&reloaded.model, &ids), pruned_logits);
}

/// Masks applied for good keep nothing to undo them: the pruned weights are the model's now.
#[test]
fn masks_applied_for_good_keep_nothing_aside() {
    let mut model = load_fixture_model("opt-pre-ln");
    let s = scores(&model, ScoreMethod::Magnitude, None);
    let masks = Masks::from_scores(&s, 0.5, Group::Row).unwrap();
    let mut undoable = load_fixture_model("opt-pre-ln");
    masks.apply(&mut undoable).unwrap();
    let report = masks.apply_for_good(&mut model).unwrap();
    assert_eq!(report, masks.report());
    assert!(!model.is_masked());
    assert_eq!(model.mask_undo_bytes(), 0);
    model.restore_dense();
    for id in model.linear_ids() {
        assert_eq!(
            to_vec(model.weight(id).unwrap()),
            to_vec(undoable.weight(id).unwrap()),
            "{id}"
        );
        assert_eq!(
            to_vec(model.dense_weight(id).unwrap()),
            to_vec(undoable.weight(id).unwrap()),
            "{id}: the pruned weight is the dense one now"
        );
    }
}

/// `--linears`: only the chosen kinds are ranked and masked, the rest stays dense; the mask
/// file says so and reloads; the streamed masks equal those of the restricted scores; neurons
/// and heads refuse a set without their Linear.
#[test]
fn chosen_linears_alone_compete_and_the_rest_stays_dense() {
    let mut model = load_fixture_model("llama-gqa-tied");
    let arch = model.config.architecture;
    let r = reference(&model, 2, 7);
    let up = LinearSet::parse("up", arch).unwrap();
    let mut scorer = Scorer::new(
        &model,
        ScoreMethod::Wanda,
        Some(r.clone()),
        MemoryLimits::default(),
    )
    .unwrap();
    scorer.run(&mut |_, _| {}).unwrap();
    let all = scorer
        .scores(&[ScoreMethod::Wanda])
        .unwrap()
        .remove(0)
        .read()
        .unwrap();
    let only_up = all.clone().only(&up, &model).unwrap();
    assert!(only_up.linears.keys().all(|id| id.kind == LinearKind::Up));
    assert_eq!(only_up.linears.len(), model.config.num_layers);
    let streamed = Masks::from_scorer(&scorer, 0.5, Group::Row, &up).unwrap();
    let whole = Masks::from_scores(&only_up, 0.5, Group::Row).unwrap();
    assert_eq!(streamed.info, whole.info);
    assert_eq!(streamed.linears, whole.linears);
    drop(scorer);
    for group in [Group::Row, Group::Global] {
        let masks = Masks::from_scores(&only_up, 0.5, group).unwrap();
        let up_weights: u64 = only_up
            .linears
            .values()
            .map(|t| t.n_elements() as u64)
            .sum();
        let report = masks.report();
        assert_eq!(
            report.total, up_weights,
            "{group:?}: only up_proj is counted"
        );
        assert_eq!(report.pruned, up_weights / 2, "{group:?}");
        let dense: Vec<_> = model
            .linear_ids()
            .iter()
            .map(|&id| model.weight(id).unwrap().into_data())
            .collect();
        masks.apply(&mut model).unwrap();
        for (id, before) in model.linear_ids().into_iter().zip(&dense) {
            let now = model.weight(id).unwrap().into_data();
            assert_eq!(id.kind != LinearKind::Up, &now == before, "{group:?} {id}");
        }
        model.restore_dense();
        // The mask file records the set and checks against the model as it is.
        let bytes = masks.to_safetensors(arch).unwrap();
        let back = Masks::from_safetensors("mask.safetensors", &bytes, arch).unwrap();
        assert_eq!(back.info, masks.info);
        back.check_for(&model).unwrap();
    }

    // Neurons are the inputs of down_proj: a set without it has none to rank.
    let neurons = Scores::random(&model, Granularity::Neurons, 0).unwrap();
    let err = neurons.clone().only(&up, &model).unwrap_err().to_string();
    assert!(err.contains("mlp.down_proj"), "{err}");
    let down = LinearSet::parse("down,up", arch).unwrap();
    assert_eq!(
        neurons.clone().only(&down, &model).unwrap().linears.len(),
        model.config.num_layers
    );
}

//! `scalpel prune` / `eval ppl` end to end on the real default model: the pruned checkpoint
//! evaluates exactly as the in-memory pruned model did, score files are reused only when they
//! fit, and bad requests fail with a clear message.

mod common;

use std::path::Path;

use common::*;

const SMALL_EVAL: [&str; 4] = ["--windows", "1", "--window", "128"];

#[test]
fn a_pruned_checkpoint_evaluates_like_the_pruned_model() {
    let dir = scratch("roundtrip");
    let out = dir.join("pruned");
    let scores = dir.join("magnitude.safetensors");
    let (o, s) = (out.to_str().unwrap(), scores.to_str().unwrap());
    let mut args = vec![
        "prune",
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--out",
        o,
        "--scores",
        s,
        "--eval",
    ];
    args.extend(SMALL_EVAL);
    let pruned = ok(&scalpel(&args));
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "scalpel-prune.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("scalpel-prune.json")).unwrap()).unwrap();
    assert_eq!(sidecar["achieved"]["sparsity"], 0.5);
    assert_eq!(sidecar["mask"]["scores"]["method"], "magnitude");
    assert_eq!(
        sidecar["achieved"]["per_layer"].as_array().unwrap().len(),
        30
    );

    let mut args = vec!["eval", "ppl", "--model", o];
    args.extend(SMALL_EVAL);
    let reloaded = ok(&scalpel(&args));
    assert_eq!(perplexity(&pruned), perplexity(&reloaded));

    // The score file is reused, refused for another method, and an existing checkpoint is kept.
    let again = ok(&scalpel(&[
        "prune",
        "--method",
        "magnitude",
        "--sparsity",
        "0.3",
        "--scores",
        s,
        "--save-mask",
        dir.join("m.safetensors").to_str().unwrap(),
    ]));
    assert!(again.contains("reusing magnitude scores"), "{again}");
    fails(
        &scalpel(&[
            "prune",
            "--method",
            "wanda",
            "--samples",
            "2",
            "--scores",
            s,
            "--eval",
        ]),
        "holds magnitude scores",
    );
    fails(
        &scalpel(&["prune", "--method", "magnitude", "--out", o]),
        "--force",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_prune_requests_fail_clearly() {
    let dir = scratch("bad");
    // An --out that cannot be a folder fails before any scoring, for prune and sweep alike.
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_file = file.join("out");
    let under_file = under_file.to_str().unwrap();
    fails(
        &scalpel(&["prune", "--method", "magnitude", "--out", under_file]),
        "creating the output folder",
    );
    fails(
        &scalpel(&["sweep", "--out", under_file]),
        "creating the output folder",
    );
    fails(
        &scalpel(&["prune", "--sparsity", "1.0", "--eval"]),
        "sparsity must be in [0, 1)",
    );
    fails(
        &scalpel(&[
            "prune",
            "--group",
            "2:4",
            "--sparsity",
            "0.6",
            "--method",
            "magnitude",
            "--eval",
        ]),
        "its sparsity is 0.5",
    );
    fails(
        &scalpel(&["prune", "--method", "magnitude"]),
        "nothing to do",
    );
    fails(
        &scalpel(&["prune", "--method", "sparsegpt", "--eval"]),
        // clap refuses it before any work, listing the methods there are.
        "invalid value 'sparsegpt' for '--method <METHOD>'",
    );
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    fails(
        &scalpel(&[
            "prune",
            "--method",
            "wanda",
            "--reference",
            empty.to_str().unwrap(),
            "--eval",
        ]),
        "too short",
    );
    // A sharded checkpoint in --out (its index) is replaced only with --force.
    let sharded = dir.join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    std::fs::write(sharded.join("model.safetensors.index.json"), "{}").unwrap();
    fails(
        &scalpel(&[
            "prune",
            "--method",
            "magnitude",
            "--out",
            sharded.to_str().unwrap(),
        ]),
        "already holds a checkpoint",
    );
    fails(
        &scalpel(&[
            "prune",
            "--method",
            "magnitude",
            "--linears",
            "fc1",
            "--eval",
        ]),
        "Llama has no Linear `fc1`",
    );
    fails(
        &scalpel(&[
            "prune",
            "--method",
            "wanda-seq",
            "--linears",
            "up",
            "--eval",
        ]),
        "use wanda with --linears",
    );
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"definitely not a mask").unwrap();
    fails(
        &scalpel(&["prune", "--mask", junk.to_str().unwrap(), "--eval"]),
        "not a valid safetensors file",
    );
    assert!(Path::new(&dir).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sweep_writes_its_table_and_plots_and_resumes() {
    let dir = scratch("sweep");
    let out = dir.join("sweep");
    let o = out.to_str().unwrap();
    let args = [
        "sweep",
        "--methods",
        "magnitude,wanda",
        "--sparsities",
        "0.3,0.5",
        "--samples",
        "2",
        "--sample-len",
        "32",
        "--windows",
        "1",
        "--window",
        "64",
        "--reference-sizes",
        "1,2",
        "--out",
        o,
    ];
    ok(&scalpel(&args));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(json["results"].as_array().unwrap().len(), 4);
    assert_eq!(json["reference_sizes"].as_array().unwrap().len(), 2);
    assert_eq!(json["protocol"]["reference"]["name"], "c4-2x32");
    let dense = json["dense"].as_f64().unwrap();
    for e in json["results"].as_array().unwrap() {
        assert!(e["perplexity"].as_f64().unwrap() > dense, "{e}");
        // floor(sparsity × row width) per row: 0.3 × 576 prunes 172 of 576.
        let gap = e["achieved_sparsity"].as_f64().unwrap() - e["sparsity"].as_f64().unwrap();
        assert!((-0.01..=0.0).contains(&gap), "{e}");
    }
    let md = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    assert!(
        md.contains("| magnitude |") && md.contains("| wanda |") && md.contains("| lrp-abs |"),
        "{md}"
    );
    for svg in ["sweep.svg", "reference-sizes.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("<polyline"),
            "{svg}"
        );
    }
    // Nothing is recomputed on a second run.
    let again = ok(&scalpel(&args));
    assert!(again.contains("resuming: 4 results"), "{again}");
    assert!(!again.contains("scored "), "{again}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--linears up`: only SmolLM2's up projections (30 × 1536 × 576 weights) are pruned, and the
/// mask file says so.
#[test]
fn only_the_chosen_linears_are_pruned() {
    let dir = scratch("linears");
    let mask = dir.join("up.safetensors");
    let out = ok(&scalpel(&[
        "prune",
        "--method",
        "magnitude",
        "--linears",
        "up_proj",
        "--group",
        "global",
        "--save-mask",
        mask.to_str().unwrap(),
    ]));
    let up_weights = 30 * 1536 * 576;
    assert!(
        out.contains(&format!(
            "pruned {} of {up_weights} block weights (50.00%)",
            up_weights / 2
        )),
        "{out}"
    );
    assert!(out.contains("Linears: mlp.up_proj"), "{out}");
    let again = ok(&scalpel(&[
        "prune",
        "--mask",
        mask.to_str().unwrap(),
        "--eval",
        "--windows",
        "1",
        "--window",
        "64",
    ]));
    assert!(
        again.contains(&format!("pruned {} of {up_weights}", up_weights / 2)),
        "{again}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `prune` by Wanda over two short samples with `units` (what to prune), shrunk into `out` and
/// evaluated on the small window set.
fn wanda_shrink<'a>(units: &[&'a str], out: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "prune",
        "--method",
        "wanda",
        "--samples",
        "2",
        "--sample-len",
        "32",
    ];
    args.extend(units);
    args.extend(["--out", out, "--shrink", "--eval"]);
    args.extend(SMALL_EVAL);
    args
}

/// `--granularity heads --group 2:3 --shrink`: two of the three query heads of every key/value
/// group kept in every layer, so the checkpoint has 6 heads over the same 3 key/value heads, and
/// evaluates as the masked model did (to float tolerance); an M that splits a group is refused.
#[test]
fn heads_pruned_evenly_per_group_shrink_fully() {
    let dir = scratch("shrink-heads");
    let out = dir.join("shrunk");
    let o = out.to_str().unwrap();
    let pruned = ok(&scalpel(&wanda_shrink(
        &["--granularity", "heads", "--group", "2:3"],
        o,
    )));
    assert!(pruned.contains("pruned 90 of 270 heads"), "{pruned}");
    assert!(
        pruned.contains("heads 9 → 6 (key/value heads 3 → 3)"),
        "{pruned}"
    );
    assert!(pruned.contains("0 pruned heads stay as zeros"), "{pruned}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["num_attention_heads"], 6);
    assert_eq!(config["num_key_value_heads"], 3);
    assert_eq!(config["head_dim"], 64);
    let mut eval = vec!["eval", "ppl", "--model", o];
    eval.extend(SMALL_EVAL);
    assert_same_perplexity(&ok(&scalpel(&eval)), &pruned);
    fails(
        &scalpel(&[
            "prune",
            "--granularity",
            "heads",
            "--group",
            "2:4",
            "--eval",
        ]),
        "M must divide 3",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--granularity neurons --shrink`: half of every layer's MLP neurons removed, the checkpoint
/// says intermediate_size 768 and evaluates as the masked model did (to float tolerance).
#[test]
fn a_shrunk_checkpoint_evaluates_like_the_masked_model() {
    let dir = scratch("shrink");
    let out = dir.join("shrunk");
    let o = out.to_str().unwrap();
    let pruned = ok(&scalpel(&wanda_shrink(
        &["--granularity", "neurons", "--sparsity", "0.5"],
        o,
    )));
    assert!(pruned.contains("pruned 23040 of 46080 neurons"), "{pruned}");
    assert!(pruned.contains("intermediate size 1536 → 768"), "{pruned}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["intermediate_size"], 768);
    let mut eval = vec!["eval", "ppl", "--model", o];
    eval.extend(SMALL_EVAL);
    assert_same_perplexity(&ok(&scalpel(&eval)), &pruned);
    fails(
        &scalpel(&[
            "prune",
            "--method",
            "magnitude",
            "--out",
            o,
            "--shrink",
            "--force",
        ]),
        "prune MLP neurons or attention heads",
    );
    fails(
        &scalpel(&[
            "prune",
            "--granularity",
            "heads",
            "--group",
            "row",
            "--eval",
        ]),
        "heads are ranked per layer or globally",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

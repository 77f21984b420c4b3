//! `scalpel correct` end to end on the real default model: a user behaviour with given
//! continuations is corrected at two doses by LRP and random heads, the report (JSON, Markdown,
//! SVG) and the corrected checkpoint are written, and the checkpoint reloads to the perplexity
//! the report measured; bad input fails with a clear message.

mod common;

use common::*;

const BEHAVIOUR: &str = "# insults, with the continuations to remove\n\
You are a | stupid idiot and a moron\n\
Shut up, you | worthless piece of shit\n\
I hate you, you | dumb bitch\n\
Get lost, you | filthy bastard\n";

/// The arguments that keep a correction small: few prompts, short general samples, one window.
const SMALL: [&str; 14] = [
    "--samples",
    "2",
    "--sample-len",
    "48",
    "--general-prompt-tokens",
    "16",
    "--windows",
    "1",
    "--window",
    "64",
    "--max-new-tokens",
    "8",
    "--components",
    "heads",
];

/// The perplexity `scalpel eval ppl` measures for the checkpoint in `dir` (one 64-token window).
fn checkpoint_perplexity(dir: &std::path::Path) -> f64 {
    let eval = ok(&scalpel(&[
        "eval",
        "ppl",
        "--model",
        dir.to_str().unwrap(),
        "--windows",
        "1",
        "--window",
        "64",
    ]));
    eval.split("perplexity ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no perplexity in {eval}"))
}

fn correct(extra: &[&str]) -> std::process::Output {
    let mut args = vec!["correct"];
    args.extend_from_slice(&SMALL);
    args.extend_from_slice(extra);
    scalpel(&args)
}

#[test]
fn correction_writes_its_report_and_a_checkpoint_that_measures_the_same() {
    let dir = scratch("correct");
    let behaviour = dir.join("insults.txt");
    std::fs::write(&behaviour, BEHAVIOUR).unwrap();
    let out = dir.join("out");
    let text = ok(&correct(&[
        "--behaviour",
        behaviour.to_str().unwrap(),
        "--methods",
        "lrp,random",
        "--doses",
        "1",
        "--count",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(text.contains("2 scoring prompts, 2 held out"), "{text}");
    assert!(text.contains("undesired set insults-2"), "{text}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("correction.json")).unwrap()).unwrap();
    let p = &doc["protocol"];
    assert_eq!(p["components"], "heads");
    assert_eq!(p["total_components"], 270);
    assert_eq!(p["undesired"]["samples"], 2, "both given continuations");
    assert_eq!(p["general"]["name"], "c4-2x48-prompts16-2");
    assert_eq!(p["perplexity"]["name"], "wiki-64x1");
    let methods = doc["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 2);
    for run in methods {
        let counts: Vec<u64> = run["doses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["count"].as_u64().unwrap())
            .collect();
        assert_eq!(counts, vec![1, 2], "the doses and --count, in order");
        for d in run["doses"].as_array().unwrap() {
            assert_eq!(d["held_out"]["prompts"], 2);
            assert!(d["perplexity"].as_f64().unwrap() > 1.0);
        }
    }
    assert_eq!(methods[0]["method"], "lrp");
    assert!(
        methods[0]["formula"]
            .as_str()
            .unwrap()
            .starts_with("R_diff")
    );
    assert_eq!(methods[0]["removed"].as_array().unwrap().len(), 2);
    assert!(methods[1]["removed"].as_array().unwrap().is_empty());
    assert_eq!(doc["examples"].as_array().unwrap().len(), 2);
    let md = std::fs::read_to_string(out.join("correction.md")).unwrap();
    assert!(md.contains("| lrp | 2 |"), "{md}");
    assert!(md.contains("| random | 1 |"), "{md}");
    for svg in ["correction.svg", "perplexity.svg"] {
        assert!(
            std::fs::read_to_string(out.join(svg))
                .unwrap()
                .starts_with("<svg")
        );
    }
    // --render re-writes the same report from the JSON alone.
    let rendered = dir.join("rendered");
    ok(&scalpel(&[
        "correct",
        "--render",
        out.join("correction.json").to_str().unwrap(),
        "--out",
        rendered.to_str().unwrap(),
    ]));
    for file in ["correction.md", "correction.svg", "perplexity.svg"] {
        assert_eq!(
            std::fs::read(rendered.join(file)).unwrap(),
            std::fs::read(out.join(file)).unwrap(),
            "{file}"
        );
    }

    // The checkpoint is the lrp correction at --count: it measures what the report says.
    let checkpoint = out.join("checkpoint");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "scalpel-correct.json",
    ] {
        assert!(checkpoint.join(f).exists(), "{f}");
    }
    let reported = methods[0]["doses"][1]["perplexity"].as_f64().unwrap();
    let measured = checkpoint_perplexity(&checkpoint);
    assert!(
        (measured - reported).abs() <= 1e-3 * reported,
        "checkpoint {measured} vs report {reported}"
    );
}

#[test]
fn correction_refuses_bad_input() {
    let dir = scratch("correct-bad");
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    let insults = dir.join("insults.txt");
    std::fs::write(&insults, BEHAVIOUR).unwrap();
    fails(
        &correct(&[
            "--behaviour",
            insults.to_str().unwrap(),
            "--doses",
            "1000",
            "--out",
            out,
        ]),
        "a dose of 1000 heads is more than the model has (270)",
    );
    let neutral = dir.join("neutral.txt");
    std::fs::write(
        &neutral,
        "The capital of France is\nThe capital of Italy is\nWater boils at\nThe sun rises in the\n",
    )
    .unwrap();
    fails(
        &correct(&["--behaviour", neutral.to_str().unwrap(), "--out", out]),
        "behaviour not present",
    );
    fails(
        &correct(&["--categories", "rudeness", "--out", out]),
        "unknown RealToxicityPrompts category `rudeness`",
    );
    fails(
        &correct(&["--behaviour", "no-such-file.txt", "--out", out]),
        "toxicity, repetition or a file of prompts",
    );
    fails(
        &correct(&["--methods", "magnitude", "--out", out]),
        "correction ranks by lrp, gradient, wanda or random",
    );
    fails(
        &correct(&["--contrast", "0", "--out", out]),
        "the contrast λ must be a positive number",
    );
    fails(
        &correct(&["--linears", "up", "--out", out]),
        "heads are the inputs of self_attn.o_proj",
    );
    // General prompts longer than the general samples are refused before any generation.
    fails(
        &scalpel(&[
            "correct",
            "--behaviour",
            insults.to_str().unwrap(),
            "--samples",
            "2",
            "--sample-len",
            "48",
            "--general-prompt-tokens",
            "64",
            "--out",
            out,
        ]),
        "general prompts must have 1..=48 tokens",
    );
}

/// `--shrink` writes the corrected checkpoint without its pruned MLP neurons: each layer's
/// neurons less the ones the dose removed there, the widest layer's count as the written size
/// (the rest as zeros), and it measures what the report says.
#[test]
fn a_corrected_checkpoint_can_be_written_shrunk() {
    let dir = scratch("correct-shrink");
    let behaviour = dir.join("insults.txt");
    std::fs::write(&behaviour, BEHAVIOUR).unwrap();
    let out = dir.join("out");
    let mut args = vec!["correct"];
    // The small settings, with neurons instead of heads.
    args.extend_from_slice(&SMALL[..12]);
    args.extend_from_slice(&[
        "--components",
        "neurons",
        "--behaviour",
        behaviour.to_str().unwrap(),
        "--methods",
        "lrp",
        "--doses",
        "64",
        "--count",
        "64",
        "--shrink",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&scalpel(&args));
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("correction.json")).unwrap()).unwrap();
    let reported = doc["methods"][0]["doses"][0]["perplexity"]
        .as_f64()
        .unwrap();
    let checkpoint = out.join("checkpoint");
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(checkpoint.join("scalpel-correct.json")).unwrap())
            .unwrap();
    let shrink = &sidecar["shrink"];
    let kept: Vec<u64> = shrink["kept_per_layer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_u64().unwrap())
        .collect();
    assert_eq!(kept.iter().sum::<u64>(), 30 * 1536 - 64, "{shrink}");
    let widest = *kept.iter().max().unwrap();
    assert_eq!(shrink["width"], widest);
    assert_eq!(
        shrink["pruned_kept_as_zeros"],
        kept.iter().map(|k| widest - k).sum::<u64>()
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(checkpoint.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["intermediate_size"], widest);
    let measured = checkpoint_perplexity(&checkpoint);
    assert!(
        (measured - reported).abs() <= 1e-3 * reported,
        "shrunk checkpoint {measured} vs report {reported}"
    );
    // Single weights cannot be shrunk: refused before any work.
    let mut refused = vec!["correct"];
    refused.extend_from_slice(&SMALL[..12]);
    refused.extend_from_slice(&[
        "--components",
        "weights",
        "--behaviour",
        behaviour.to_str().unwrap(),
        "--shrink",
        "--out",
        out.to_str().unwrap(),
    ]);
    fails(&scalpel(&refused), "prune MLP neurons or attention heads");
}

/// With `--no-checkpoint` only the report goes under `--out`: the command creates the folder
/// (nested, new) before any work instead of failing at the end and losing every result; an
/// `--out` that cannot be a folder fails at once.
#[test]
fn a_new_out_folder_is_made_before_any_work() {
    let dir = scratch("correct-new-out");
    let insults = dir.join("insults.txt");
    std::fs::write(&insults, BEHAVIOUR).unwrap();
    let insults = insults.to_str().unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    fails(
        &correct(&[
            "--behaviour",
            insults,
            "--out",
            file.join("out").to_str().unwrap(),
        ]),
        "creating the output folder",
    );
    let out = dir.join("new").join("nested");
    ok(&correct(&[
        "--behaviour",
        insults,
        "--methods",
        "random",
        "--doses",
        "1",
        "--count",
        "1",
        "--no-checkpoint",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(out.join("correction.json").exists());
    assert!(!out.join("checkpoint").exists());
}

//! `scalpel circuit` end to end on the real default model: curves over seeds with the circuit, its
//! held-out test and the random baseline written as JSON / Markdown / SVG; a saved circuit loads
//! back; bad tasks fail with a clear message.

mod common;

use common::*;

#[test]
fn circuit_search_writes_its_report_and_a_circuit_that_loads_back() {
    let dir = scratch("circuit");
    let out = dir.join("out");
    let saved = dir.join("circuit.json");
    let text = ok(&scalpel(&[
        "circuit",
        "--task",
        "capitals",
        "--granularity",
        "heads",
        "--methods",
        "lrp,random",
        "--seeds",
        "2",
        "--prompts",
        "6",
        "--fractions",
        "0,0.3,0.6,0.9",
        "--refine",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--save-circuit",
        saved.to_str().unwrap(),
    ]));
    assert!(text.contains("seed 1: dense logit diff"), "{text}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("circuit.json")).unwrap()).unwrap();
    assert_eq!(doc["protocol"]["task"], "capitals");
    assert_eq!(doc["protocol"]["granularity"], "heads");
    let seeds = doc["seeds"].as_array().unwrap();
    assert_eq!(seeds.len(), 2);
    for seed in seeds {
        for run in seed["methods"].as_array().unwrap() {
            let curve = run["curve"].as_array().unwrap();
            assert_eq!(curve.len(), 4);
            assert_eq!(curve[0]["pruned"], 0);
            assert_eq!(curve[3]["pruned"], 243, "90 % of 270 heads");
            // Every method finds a circuit at this threshold (0 % pruned keeps it by definition).
            let circuit = &run["circuit"];
            let kept = circuit["summary"]["kept"].as_u64().unwrap();
            let per_layer: u64 = circuit["summary"]["per_layer"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l[1].as_u64().unwrap())
                .sum();
            assert_eq!(per_layer, kept);
            assert!(circuit["faithfulness"].as_f64().unwrap() >= 0.9);
            assert!(circuit["random"]["held_out"]["prompts"].as_u64().unwrap() > 0);
        }
    }
    let summary = doc["summary"].as_array().unwrap();
    assert_eq!(summary[0]["method"], "lrp");
    assert_eq!(summary[0]["seeds"], 2);
    let md = std::fs::read_to_string(out.join("circuit.md")).unwrap();
    assert!(md.contains("| lrp | 2/2 |"), "{md}");
    let svg = std::fs::read_to_string(out.join("circuit.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polygon"),
        "curves with spread bands"
    );

    let loaded = ok(&scalpel(&[
        "circuit",
        "--task",
        "capitals",
        "--prompts",
        "6",
        "--load",
        saved.to_str().unwrap(),
    ]));
    assert!(loaded.contains("heads"), "{loaded}");
    assert!(loaded.contains("capitals-seed0-held-out"), "{loaded}");

    // `prune --mask` takes the circuit file too: it prunes every head the circuit drops.
    let kept = doc["seeds"][0]["methods"][0]["circuit"]["summary"]["kept"]
        .as_u64()
        .unwrap();
    let pruned = ok(&scalpel(&[
        "prune",
        "--mask",
        saved.to_str().unwrap(),
        "--eval",
        "--windows",
        "1",
        "--window",
        "64",
    ]));
    assert!(
        pruned.contains(&format!("pruned {} of 270 heads", 270 - kept)),
        "{pruned}"
    );
    // With --shrink the circuit's heads are cut out: SmolLM2 has 9 query heads in 3 groups, so
    // every layer keeps as many groups and heads per group as the fullest layer needs.
    let out = dir.join("shrunk");
    let o = out.to_str().unwrap();
    let eval = ["--eval", "--windows", "1", "--window", "64"];
    let mut args = vec![
        "prune",
        "--mask",
        saved.to_str().unwrap(),
        "--shrink",
        "--out",
        o,
    ];
    args.extend(eval);
    let shrunk = ok(&scalpel(&args));
    assert!(shrunk.contains("shrunk: heads 9 → "), "{shrunk}");
    assert_eq!(perplexity(&shrunk), perplexity(&pruned));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let (heads, kv) = (
        config["num_attention_heads"].as_u64().unwrap(),
        config["num_key_value_heads"].as_u64().unwrap(),
    );
    assert!(heads <= 9 && kv <= 3 && heads % kv == 0, "{config}");
    assert_eq!(config["head_dim"], 64);
    let mut again = vec!["eval", "ppl", "--model", o];
    again.extend(&eval[1..]);
    assert_same_perplexity(&ok(&scalpel(&again)), &pruned);
}

#[test]
fn bad_tasks_fail_with_a_clear_message() {
    let dir = scratch("circuit-bad");
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    fails(
        &scalpel(&["circuit", "--out", file.join("out").to_str().unwrap()]),
        "creating the output folder",
    );
    let multi = dir.join("multi.txt");
    std::fs::write(
        &multi,
        "The capital of Madagascar is | Antananarivo | Paris\n",
    )
    .unwrap();
    fails(
        &scalpel(&["circuit", "--task", multi.to_str().unwrap()]),
        "must be single tokens",
    );
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n# nothing here\n").unwrap();
    fails(
        &scalpel(&["circuit", "--task", empty.to_str().unwrap()]),
        "no prompts",
    );
    fails(
        &scalpel(&["circuit", "--task", "nope"]),
        "unknown task `nope`",
    );
    fails(
        &scalpel(&["circuit", "--granularity", "heads", "--group", "row"]),
        "rank globally or per layer",
    );
    let other = dir.join("other.json");
    std::fs::write(&other, "{\"format\": \"scalpel-circuit/1\"}").unwrap();
    fails(
        &scalpel(&["circuit", "--load", other.to_str().unwrap()]),
        "not a Scalpel circuit file",
    );
}

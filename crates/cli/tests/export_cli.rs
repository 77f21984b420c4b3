//! `scalpel export`: the real default model written as Q8_0 GGUF generates what it generated
//! before (and gguf-py reads such files: `crates/core/tests/gguf_export.rs`); what GGUF cannot
//! carry is refused before the weights are loaded.

mod common;

use common::*;

const PROMPT: [&str; 4] = ["--prompt", "The capital of France is", "-n", "12"];

fn continuation(model: &str) -> String {
    let mut args = vec!["generate", "--model", model];
    args.extend(PROMPT);
    let out = scalpel(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_q8_0_export_generates_what_the_model_did() {
    let dir = scratch("export");
    let file = dir.join("smollm2.q8_0.gguf");
    let file = file.to_str().unwrap();
    let text = ok(&scalpel(&["export", "--type", "q8_0", "--out", file]));
    assert!(text.contains("writing 272 tensors as GGUF q8_0"), "{text}");
    let original = continuation("assets/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(original.contains(" Paris."), "{original}");
    assert_eq!(continuation(file), original);
    fails(&scalpel(&["export", "--out", file]), "exists; pass --force");
    // A family llama.cpp has no name for is refused before any weight is read.
    fails(
        &scalpel(&[
            "export",
            "--model",
            "tests/fixtures/models/opt-pre-ln",
            "--out",
            dir.join("opt.gguf").to_str().unwrap(),
        ]),
        "OPT models: Scalpel writes GGUF only for",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

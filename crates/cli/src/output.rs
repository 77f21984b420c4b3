//! Files the commands write: whole checkpoints and single files, each written through a temporary
//! file so that a failure never leaves half of one.

use std::path::Path;

use anyhow::{Context, Result};
use scalpel::export::{Shards, config_json};

use crate::progress::bar;

/// Writes the model (with its masks applied) as a checkpoint folder: config.json,
/// model.safetensors (or, over 2 GB, shards and their index; `note` in their metadata),
/// tokenizer.json and a JSON sidecar.
pub fn write_checkpoint(
    out: &Path,
    model: &scalpel::Model,
    tokenizer: &scalpel::TextTokenizer,
    note: &serde_json::Value,
    (sidecar_name, sidecar): (&str, &serde_json::Value),
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let shards = Shards::plan(model, MAX_SHARD_BYTES);
    let note = note.to_string();
    let index = out.join("model.safetensors.index.json");
    let index_json = shards.index_json();
    // A loader prefers an index: remove an old one before writing a single file over it.
    if index_json.is_none() {
        remove_if_present(&index)?;
    }
    let pb = bar(shards.len() as u64, "writing shards");
    for i in 0..shards.len() {
        // Encoded straight to the file: the shard's tensors are in memory, not also its bytes.
        write_through_partial(&out.join(shards.file_name(i)), |tmp| {
            Ok(pollster::block_on(shards.write_file(i, Some(&note), tmp))?)
        })?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    // A sharded checkpoint written over a single-file one (or the reverse) must not leave the
    // other layout's files behind.
    if let Some(json) = index_json {
        write_atomically(&index, &json)?;
        remove_if_present(&out.join("model.safetensors"))?;
    }
    let written: Vec<String> = (0..shards.len()).map(|i| shards.file_name(i)).collect();
    write_beside_weights(
        out,
        &written,
        &config_json(&model.config, model.weight_dtype())?,
        &tokenizer.to_json()?,
        (sidecar_name, sidecar),
    )
}

/// What a checkpoint holds beside its weight files (`written`): config.json, tokenizer.json and
/// the sidecar; shard files of another layout that `written` does not name are removed.
fn write_beside_weights(
    out: &Path,
    written: &[String],
    config_json: &[u8],
    tokenizer_json: &[u8],
    (sidecar_name, sidecar): (&str, &serde_json::Value),
) -> Result<()> {
    remove_stale_shards(out, written)?;
    write_atomically(&out.join("config.json"), config_json)?;
    write_atomically(&out.join("tokenizer.json"), tokenizer_json)?;
    write_atomically(
        &out.join(sidecar_name),
        serde_json::to_string_pretty(sidecar)?.as_bytes(),
    )
}

/// A shrunk checkpoint (`export::shrink`) in `out` as one file, replacing any checkpoint there
/// (single or sharded), with the sidecar.
pub fn write_shrunk(
    out: &Path,
    shrunk: &scalpel::export::shrink::ShrunkCheckpoint,
    (sidecar_name, sidecar): (&str, &serde_json::Value),
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let files = &shrunk.checkpoint;
    // A loader prefers an index: remove an old one before writing a single file over it.
    remove_if_present(&out.join("model.safetensors.index.json"))?;
    write_atomically(&out.join("model.safetensors"), &files.model_safetensors)?;
    write_beside_weights(
        out,
        &["model.safetensors".to_string()],
        &files.config_json,
        &files.tokenizer_json,
        (sidecar_name, sidecar),
    )
}

/// `model`, running with the neuron `masks`, written to `out` without its pruned neurons (one
/// file), its `note` in the safetensors metadata and the shrink's report added to `sidecar`;
/// says on the terminal what shrank.
pub fn write_shrunk_model(
    out: &Path,
    model: &scalpel::model::Model,
    tokenizer: &scalpel::io::tokenizer::TextTokenizer,
    masks: &scalpel::prune::Masks,
    note: &serde_json::Value,
    (sidecar_name, sidecar): (&str, &serde_json::Value),
) -> Result<()> {
    let shrunk = pollster::block_on(scalpel::export::shrink::shrink(
        model,
        tokenizer,
        masks,
        Some(note.to_string()),
    ))?;
    let r = &shrunk.report;
    let mut sidecar = sidecar.clone();
    sidecar["shrink"] = serde_json::to_value(r)?;
    write_shrunk(out, &shrunk, (sidecar_name, &sidecar))?;
    let written = match r.kv_heads {
        Some([dense, kept]) => format!(
            "heads {} → {} (key/value heads {dense} → {kept})",
            r.dense_width, r.width
        ),
        None => format!("intermediate size {} → {}", r.dense_width, r.width),
    };
    eprintln!(
        "shrunk: {written} (kept per layer {}–{}; {} pruned {} stay as zeros), parameters {:.1} M → {:.1} M",
        r.kept_per_layer.iter().min().unwrap_or(&0),
        r.kept_per_layer.iter().max().unwrap_or(&0),
        r.pruned_kept_as_zeros,
        r.unit.name(),
        r.parameters_before as f64 / 1e6,
        r.parameters_after as f64 / 1e6
    );
    Ok(())
}

/// Checkpoints over this size are written in shards of at most this size, as the hub stores
/// them; only one shard is in memory at a time.
const MAX_SHARD_BYTES: u64 = 2_000_000_000;

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Removes shard files (`model-NNNNN-of-NNNNN.safetensors`) in `out` other than `written`.
fn remove_stale_shards(out: &Path, written: &[String]) -> Result<()> {
    let entries = std::fs::read_dir(out).with_context(|| format!("listing {}", out.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if is_shard_name(&name) && !written.contains(&name) {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

/// `model-00001-of-00004.safetensors` and the like, as transformers and this export name shards.
fn is_shard_name(name: &str) -> bool {
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix("model-")
        .and_then(|rest| rest.strip_suffix(".safetensors"))
        .and_then(|rest| rest.split_once("-of-"))
        .is_some_and(|(part, total)| digits(part) && digits(total))
}

/// Creates the output folder `out` if needed and checks that files can be written in it. Every
/// command that writes under `--out` calls it before any work, so none computes for minutes and
/// then loses its results to a missing or read-only folder.
pub fn prepare_out(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating the output folder {}", out.display()))?;
    let probe = out.join(".scalpel-write-check");
    std::fs::write(&probe, b"")
        .with_context(|| format!("the output folder {} is not writable", out.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file, so a failure never leaves half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_through_partial(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("writing {}", tmp.display()))
    })
}

/// Lets `write` fill `path` with a `.partial` extension, then renames it to `path`.
fn write_through_partial(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("partial");
    write(&tmp)?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_shard_names_are_shard_names() {
        assert!(super::is_shard_name("model-00001-of-00007.safetensors"));
        assert!(!super::is_shard_name("model-v2-of-mine.safetensors"));
        assert!(!super::is_shard_name("model.safetensors"));
        assert!(!super::is_shard_name(
            "model-00001-of-00007.safetensors.partial"
        ));
    }
}

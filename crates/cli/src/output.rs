//! Files the commands write: whole checkpoints and single files, each written through a temporary
//! file so that a failure never leaves half of one.

use std::path::Path;

use anyhow::{Context, Result};
use scalpel::export::export_checkpoint;

/// Writes the model (with its masks applied) as a checkpoint folder: config.json,
/// model.safetensors (with `note` in its metadata), tokenizer.json and a JSON sidecar.
pub fn write_checkpoint(
    out: &Path,
    model: &scalpel::Model,
    tokenizer: &scalpel::TextTokenizer,
    note: &serde_json::Value,
    (sidecar_name, sidecar): (&str, &serde_json::Value),
) -> Result<()> {
    let checkpoint =
        pollster::block_on(export_checkpoint(model, tokenizer, Some(note.to_string())))?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, bytes) in checkpoint.files() {
        write_atomically(&out.join(name), bytes)?;
    }
    write_atomically(
        &out.join(sidecar_name),
        serde_json::to_string_pretty(sidecar)?.as_bytes(),
    )
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
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

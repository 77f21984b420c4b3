//! `scalpel export`: any model Scalpel loads — a pruned, corrected or shrunk checkpoint from
//! `prune`, `correct` or `circuit`, or a hub model — as one GGUF file that llama.cpp and Scalpel
//! read, in F16, Q8_0, Q4_0 or F32.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use scalpel::export::gguf::{GgufExport, GgufType, writable};

use crate::model_source::{ModelArgs, free_disk_bytes, load, model_files};
use crate::progress::bar;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The GGUF file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// What weight matrices are stored as (norms and biases stay f32; a matrix whose rows are
    /// not whole 32-element blocks stays f16).
    #[arg(long = "type", value_enum, default_value_t = GgufType::F16)]
    pub ty: GgufType,
    /// `general.name` in the file (default: the model argument's last path component).
    #[arg(long)]
    pub name: Option<String>,
    /// Replace a file already at --out.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.out.exists() && !args.force {
        bail!("{} exists; pass --force to replace it", args.out.display());
    }
    let dir = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the output folder {}", dir.display()))?;
    // A family or setting GGUF cannot carry is refused before the weights are loaded.
    writable(&model_files(&args.model)?.config()?)?;
    let (loaded, device) = load(&args.model)?;
    let name = args.name.clone().unwrap_or_else(|| {
        let source = args.model.model.trim_end_matches('/');
        source.rsplit('/').next().unwrap_or(source).to_string()
    });
    let export = GgufExport::plan(&loaded.model, &loaded.tokenizer, args.ty, &name)?;
    let size = export.file_size();
    if let Some(free) = free_disk_bytes(&dir)
        && free < size
    {
        bail!(
            "{} needs {:.1} MB but {} has {:.1} MB free",
            args.out.display(),
            size as f64 / 1e6,
            dir.display(),
            free as f64 / 1e6
        );
    }
    eprintln!(
        "model {} on {}: writing {} tensors as GGUF {} ({:.1} MB)",
        args.model.model,
        device.label,
        export.tensors(),
        args.ty.name(),
        size as f64 / 1e6
    );
    let pb = bar(export.tensors() as u64, "writing");
    // Written beside the target and renamed: a failed export never leaves half a file there.
    let partial = args.out.with_extension("gguf.partial");
    let written = pollster::block_on(
        export.write_file(&partial, &mut |done, _| pb.set_position(done as u64)),
    )?;
    pb.finish_and_clear();
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("renaming to {}", args.out.display()))?;
    eprintln!(
        "{} written ({:.1} MB); load it with `scalpel generate --model {}` or llama.cpp",
        args.out.display(),
        written as f64 / 1e6,
        args.out.display()
    );
    Ok(())
}

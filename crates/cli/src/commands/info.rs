//! `scalpel info`: what a checkpoint is, without uploading weights.

use anyhow::Result;

use crate::model_source::{ModelArgs, model_files};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: Args) -> Result<()> {
    let config = model_files(&args.model)?.config()?;
    println!("{}", serde_json::to_string_pretty(&config)?);
    Ok(())
}

//! Long pipelines (a targeted correction, a circuit search) written once, for every front end.
//!
//! A job is an `async fn` that hands control to its driver before each step through
//! [`Steps::step`]: the driver shows progress, gives its event loop a turn (the browser's worker
//! must, or no Cancel message would ever arrive) and stops the job there by returning an error
//! ([`crate::Error::Cancelled`]). Each result is handed to [`Driver::event`] as soon as it is measured,
//! so the page draws curves growing and the CLI writes what it finished. Every read-back inside a
//! job is asynchronous, which the browser requires and native backends answer at once: natively a
//! job runs under `pollster::block_on`.
//!
//! This module holds only the contract, so every module may use it: a scorer's steps
//! (`score::step_scorer`), perplexity's windows (`eval::perplexity::perplexity_async`).

use std::future::Future;

use crate::error::Result;

/// What a job reports between its steps.
pub trait Steps {
    /// The job is about to do step `done` of `total` of `stage` (`total` 0: not counted). An
    /// error stops the job there; the job leaves the model as it found it.
    fn step(&mut self, stage: &str, done: usize, total: usize) -> impl Future<Output = Result<()>>;

    /// Something the user should know that does not stop the job (a warning, a fallback taken).
    fn notice(&mut self, message: &str);
}

/// What a job's driver hears: its steps, and each result (`Event`) as soon as it is measured.
pub trait Driver<Event>: Steps {
    /// An error stops the job (the CLI's partial report could not be written, say).
    fn event(&mut self, event: Event) -> Result<()>;
}

/// A driver that shows nothing, never stops a job and ignores its events (tests, scripts).
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Steps for Quiet {
    async fn step(&mut self, _stage: &str, _done: usize, _total: usize) -> Result<()> {
        Ok(())
    }

    fn notice(&mut self, _message: &str) {}
}

impl<E> Driver<E> for Quiet {
    fn event(&mut self, _event: E) -> Result<()> {
        Ok(())
    }
}

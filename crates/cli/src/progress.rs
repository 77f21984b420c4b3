//! Progress bars for downloads, loading, evaluation and core jobs (drawn on stderr, hidden when
//! not a TTY).

use indicatif::{ProgressBar, ProgressStyle};
use scalpel::job::{Driver, Steps};

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:32}] {pos}/{len} ({eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

pub fn bytes_bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Adapts a byte progress bar to hf-hub's download callback.
pub struct HubProgress(pub Option<ProgressBar>);

impl hf_hub::api::Progress for HubProgress {
    fn init(&mut self, size: usize, filename: &str) {
        self.0 = Some(bytes_bar(size as u64, filename));
    }
    fn update(&mut self, size: usize) {
        if let Some(pb) = &self.0 {
            pb.inc(size as u64);
        }
    }
    fn finish(&mut self) {
        if let Some(pb) = self.0.take() {
            pb.finish_and_clear();
        }
    }
}

/// A core job's steps as progress bars, one per stage (a spinner where the stage is not
/// counted), and its events handed to `on_event` with the bar cleared so lines print cleanly.
pub struct JobBars<F> {
    current: Option<(String, ProgressBar)>,
    on_event: F,
}

impl JobBars<()> {
    /// Bars for a job that has no events (stepping a scorer).
    pub fn without_events() -> Self {
        Self::new(())
    }
}

impl<F> JobBars<F> {
    pub fn new(on_event: F) -> Self {
        Self {
            current: None,
            on_event,
        }
    }

    fn clear(&mut self) {
        if let Some((_, pb)) = self.current.take() {
            pb.finish_and_clear();
        }
    }
}

impl<F> Drop for JobBars<F> {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<F> Steps for JobBars<F> {
    async fn step(&mut self, stage: &str, done: usize, total: usize) -> scalpel::Result<()> {
        if self.current.as_ref().is_none_or(|(s, _)| s != stage) {
            self.clear();
            let pb = if total == 0 {
                let pb = ProgressBar::new_spinner();
                pb.set_message(stage.to_string());
                pb
            } else {
                bar(total as u64, stage)
            };
            self.current = Some((stage.to_string(), pb));
        }
        if let Some((_, pb)) = &self.current {
            if total == 0 {
                pb.tick();
            } else {
                pb.set_length(total as u64);
                pb.set_position(done as u64);
            }
        }
        Ok(())
    }

    fn notice(&mut self, message: &str) {
        match &self.current {
            // `println` drops the line when the bar is hidden (no terminal); `suspend` does not.
            Some((_, pb)) => pb.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}

impl<E, F: FnMut(E) -> anyhow::Result<()>> Driver<E> for JobBars<F> {
    fn event(&mut self, event: E) -> scalpel::Result<()> {
        self.clear();
        (self.on_event)(event).map_err(|e| scalpel::Error::Output(format!("{e:#}")))
    }
}

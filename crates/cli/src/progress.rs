//! Progress bars for downloads, loading and evaluation (drawn on stderr, hidden when not a TTY).

use indicatif::{ProgressBar, ProgressStyle};

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

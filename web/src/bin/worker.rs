//! The compute worker: loads models and generates, off the page's thread.

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    scalpel_web::worker::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("the Scalpel worker only runs inside the browser");
}

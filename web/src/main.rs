//! The page: mounts the Leptos app (see `app`).

#[cfg(target_arch = "wasm32")]
fn main() {
    console_error_panic_hook::set_once();
    scalpel_web::app::mount();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("scalpel-web is a browser app: run `cargo xtask serve` and open the printed address");
}

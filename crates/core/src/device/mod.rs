//! Run-time device choice: a wgpu GPU (WebGPU in the browser, Vulkan/Metal/DX12 natively) when one
//! exists, else the pure-Rust CPU backend. The wgpu runtime can be initialised only once per
//! process, so the outcome of the first attempt is cached.

mod launches;

pub use launches::{LaunchCount, LaunchCounter, LaunchesPer};
#[cfg(not(target_family = "wasm"))]
pub use launches::{per_decode_step, per_relevance_pass};

use burn::tensor::Device;
use burn::tensor::wgpu::{WgpuInitError, WgpuSetup};

/// What the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePreference {
    /// A hardware GPU if there is one, else the CPU.
    #[default]
    Auto,
    /// wgpu, whatever adapter it finds (including software Vulkan); an error if none.
    Gpu,
    /// The CPU backend.
    Cpu,
}

impl std::str::FromStr for DevicePreference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "gpu" | "wgpu" | "webgpu" => Ok(Self::Gpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(format!("unknown device `{other}` (auto, gpu, cpu)")),
        }
    }
}

/// The device in use and a human-readable account of why.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    pub device: Device,
    /// e.g. "GPU: NVIDIA H200 (Vulkan)" or "CPU".
    pub label: String,
    pub is_gpu: bool,
    /// Why the CPU is used although a GPU was acceptable.
    pub fallback_reason: Option<String>,
    /// The adapter's largest storage-buffer binding, in bytes (GPU only).
    pub max_binding_bytes: Option<u64>,
}

/// Errors unless every weight matrix of `config` fits in one storage binding of `max_binding_bytes`
/// (a GPU holds each tensor in one buffer, and WebGPU adapters often allow only 128 MiB–2 GiB):
/// checked before anything is uploaded, with the largest offender named.
pub fn check_fits(
    config: &crate::ModelConfig,
    weight_dtype: burn::tensor::DType,
    max_binding_bytes: u64,
) -> crate::Result<()> {
    let c = config;
    let learned = c.learned_positions();
    let embed = learned.map_or(c.hidden_size, |o| o.word_embed_proj_dim);
    let positions = learned.map_or(0, |o| c.max_position_embeddings + o.position_offset);
    let matrices = [
        ("the token embedding", c.vocab_size, embed),
        ("the learned positions", positions, c.hidden_size),
        ("an MLP projection", c.intermediate_size, c.hidden_size),
        (
            "an attention projection",
            c.num_heads * c.head_dim,
            c.hidden_size,
        ),
    ];
    let (what, rows, cols) = matrices
        .into_iter()
        .max_by_key(|(_, r, c)| r * c)
        .unwrap_or(("a weight", 0, 0));
    let bytes = (rows * cols) as u64 * crate::model::bytes_per_weight(weight_dtype);
    if bytes > max_binding_bytes {
        return Err(crate::Error::TooLarge {
            what: format!(
                "{what} ({rows} × {cols} {}) in one GPU buffer, over this adapter's storage-binding limit: \
                 run this model on the CPU backend, or natively on a GPU with larger limits",
                crate::model::dtype_name(weight_dtype)
            ),
            requested: bytes.into(),
            limit: max_binding_bytes.into(),
        });
    }
    Ok(())
}

impl SelectedDevice {
    pub fn cpu(fallback_reason: Option<String>) -> Self {
        let label = match &fallback_reason {
            Some(r) => format!("CPU (no GPU: {r})"),
            None => "CPU".into(),
        };
        Self {
            device: Device::flex(),
            label,
            is_gpu: false,
            fallback_reason,
            max_binding_bytes: None,
        }
    }
}

/// Outcome of initialising wgpu: the device with its adapter description, or why it failed.
#[derive(Debug, Clone)]
struct GpuInit {
    device: Device,
    label: String,
    software: bool,
    max_binding_bytes: u64,
    /// The wgpu device under `device`, for watching it being lost (read in the browser only).
    #[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
    wgpu: burn::tensor::wgpu::wgpu::Device,
}

fn describe(device: Device, setup: &WgpuSetup) -> GpuInit {
    let info = setup.adapter.get_info();
    let software = matches!(info.device_type, burn::tensor::wgpu::wgpu::DeviceType::Cpu);
    let max_binding_bytes = setup.adapter.limits().max_storage_buffer_binding_size;
    GpuInit {
        device,
        label: format!("GPU: {} ({:?})", info.name, info.backend),
        software,
        max_binding_bytes,
        wgpu: setup.device.clone(),
    }
}

fn init_error(e: WgpuInitError) -> String {
    format!("{e}")
}

/// `allow_software`: natively a software Vulkan (lavapipe) is slower than the CPU backend, so `Auto`
/// skips it; in a browser WebGPU on a software adapter is still the page's GPU path.
fn choose(
    pref: DevicePreference,
    gpu: Result<GpuInit, String>,
    allow_software: bool,
) -> Result<SelectedDevice, crate::Error> {
    match (pref, gpu) {
        (DevicePreference::Cpu, _) => Ok(SelectedDevice::cpu(None)),
        (DevicePreference::Gpu, Err(e)) => {
            Err(crate::Error::Device(format!("no usable GPU adapter: {e}")))
        }
        (DevicePreference::Auto, Err(e)) => Ok(SelectedDevice::cpu(Some(e))),
        (DevicePreference::Auto, Ok(g)) if g.software && !allow_software => {
            Ok(SelectedDevice::cpu(Some(format!(
                "only a software adapter was found ({})",
                g.label
            ))))
        }
        (_, Ok(g)) => Ok(SelectedDevice {
            device: g.device,
            label: g.label,
            is_gpu: true,
            fallback_reason: None,
            max_binding_bytes: Some(g.max_binding_bytes),
        }),
    }
}

#[cfg(not(target_family = "wasm"))]
mod native {
    use std::sync::OnceLock;

    use super::*;

    static GPU: OnceLock<Result<GpuInit, String>> = OnceLock::new();

    /// Picks a device; GPU initialisation happens at most once per process.
    pub fn select(pref: DevicePreference) -> Result<SelectedDevice, crate::Error> {
        if pref == DevicePreference::Cpu {
            return Ok(SelectedDevice::cpu(None));
        }
        let gpu = GPU.get_or_init(|| {
            Device::wgpu_options()
                .init_with_setup()
                .map(|(d, s)| describe(d, &s))
                .map_err(init_error)
        });
        choose(pref, gpu.clone(), false)
    }
}

#[cfg(not(target_family = "wasm"))]
pub use native::select;

thread_local! {
    /// [`select_async`]'s GPU initialisation, attempted once per thread (in the browser, once per
    /// worker); [`on_gpu_lost`] watches the device it made.
    static ASYNC_GPU: std::cell::RefCell<Option<Result<GpuInit, String>>> = const { std::cell::RefCell::new(None) };
}

/// Picks a device asynchronously (required in the browser, where adapters are promises).
/// Initialisation is attempted once per page; later calls reuse the outcome.
pub async fn select_async(pref: DevicePreference) -> Result<SelectedDevice, crate::Error> {
    if pref == DevicePreference::Cpu {
        return Ok(SelectedDevice::cpu(None));
    }
    let cached = ASYNC_GPU.with(|g| g.borrow().clone());
    let gpu = match cached {
        Some(g) => g,
        None => {
            let g = Device::wgpu_options()
                .init_with_setup_async()
                .await
                .map(|(d, s)| describe(d, &s))
                .map_err(init_error);
            ASYNC_GPU.with(|slot| *slot.borrow_mut() = Some(g.clone()));
            g
        }
    };
    choose(pref, gpu, cfg!(target_family = "wasm"))
}

/// Calls `on_lost` with the reason once the GPU device [`select_async`] initialised is lost (a
/// crashed GPU process, a driver reset). Every later operation on it fails and wgpu cannot be
/// initialised twice in one worker, so the caller starts over in a new one. `false` when no GPU
/// was initialised. Browser only: natively the device keeps a single lost-callback, cubecl's,
/// which turns every later read-back into an [`Error::Device`](crate::Error::Device).
#[cfg(target_family = "wasm")]
pub fn on_gpu_lost(on_lost: impl Fn(String) + Send + 'static) -> bool {
    let gpu = ASYNC_GPU.with(|g| match g.borrow().as_ref() {
        Some(Ok(init)) => Some(init.wgpu.clone()),
        _ => None,
    });
    let Some(gpu) = gpu else {
        return false;
    };
    gpu.set_device_lost_callback(move |reason, message| on_lost(format!("{reason:?}: {message}")));
    true
}

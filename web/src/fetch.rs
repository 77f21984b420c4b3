//! Model downloads inside the worker: streamed with progress, verified, kept in Cache Storage so a
//! reload does not download again. Only complete downloads are cached.

use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, ReadableStreamDefaultReader, Response, WorkerGlobalScope};

const CACHE_NAME: &str = "scalpel-models-v1";

fn scope() -> WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// The worker's Cache Storage, or why there is none (e.g. outside secure contexts).
fn cache_storage() -> Result<web_sys::CacheStorage, String> {
    scope()
        .caches()
        .map_err(|e| format!("Cache Storage is unavailable ({})", js_message(&e)))
}

/// Opens the model cache, or says why it cannot be used.
async fn open_cache() -> Result<Cache, String> {
    let cache = JsFuture::from(cache_storage()?.open(CACHE_NAME))
        .await
        .map_err(|e| js_message(&e))?;
    Ok(cache.unchecked_into())
}

/// Deletes every cached model download; `false` if there was nothing to delete.
pub async fn clear_cache() -> Result<bool, String> {
    let deleted = JsFuture::from(cache_storage()?.delete(CACHE_NAME))
        .await
        .map_err(|e| js_message(&e))?;
    Ok(deleted.is_truthy())
}

/// What happened besides the bytes: non-fatal notices for the page.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub from_cache: bool,
    pub notices: Vec<String>,
}

/// Downloads `url` (or reads it from the cache), calling `progress(received, total)`.
pub async fn fetch_bytes(url: &str, progress: &mut dyn FnMut(f64, f64)) -> Result<Fetched, String> {
    let mut notices = Vec::new();
    let cache = match open_cache().await {
        Ok(c) => Some(c),
        Err(why) => {
            notices.push(format!("not caching downloads: {why}"));
            None
        }
    };
    if let Some(cache) = &cache
        && let Ok(hit) = JsFuture::from(cache.match_with_str(url)).await
        && let Ok(resp) = hit.dyn_into::<Response>()
    {
        let buf = JsFuture::from(resp.array_buffer().map_err(|e| js_message(&e))?)
            .await
            .map_err(|e| js_message(&e))?;
        let bytes = Uint8Array::new(&buf).to_vec();
        progress(bytes.len() as f64, bytes.len() as f64);
        return Ok(Fetched {
            bytes,
            from_cache: true,
            notices,
        });
    }
    let resp = JsFuture::from(scope().fetch_with_str(url))
        .await
        .map_err(|e| {
            format!(
                "could not reach {url}: {} (offline, wrong address, or blocked by CORS)",
                js_message(&e)
            )
        })?;
    let resp: Response = resp.unchecked_into();
    if !resp.ok() {
        return Err(format!(
            "{url}: HTTP {} {}",
            resp.status(),
            resp.status_text()
        ));
    }
    let total = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let body = resp
        .body()
        .ok_or_else(|| format!("{url}: the response has no body"))?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut bytes = Vec::with_capacity(total as usize);
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|e| {
            format!(
                "download of {url} failed after {} bytes: {}",
                bytes.len(),
                js_message(&e)
            )
        })?;
        let chunk: Object = chunk.unchecked_into();
        if Reflect::get(&chunk, &"done".into())
            .map(|d| d.is_truthy())
            .unwrap_or(true)
        {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())
            .map_err(|e| js_message(&e))?
            .unchecked_into();
        let start = bytes.len();
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        progress(bytes.len() as f64, total);
    }
    // A body shorter than announced is a broken download: never use or cache it.
    if total > 0.0 && bytes.len() as f64 != total {
        return Err(format!(
            "download of {url} stopped at {} of {total} bytes; try again",
            bytes.len()
        ));
    }
    if let Some(cache) = &cache
        && let Err(why) = store(cache, url, &bytes).await
    {
        notices.push(format!(
            "downloaded, but not cached ({why}); the next visit downloads again \
             (\"Clear cached models\" frees the space earlier downloads take)"
        ));
    }
    Ok(Fetched {
        bytes,
        from_cache: false,
        notices,
    })
}

async fn store(cache: &Cache, url: &str, bytes: &[u8]) -> Result<(), String> {
    let array = Uint8Array::from(bytes);
    let resp = Response::new_with_opt_buffer_source(Some(&array)).map_err(|e| js_message(&e))?;
    JsFuture::from(cache.put_with_str(url, &resp))
        .await
        .map_err(|e| js_message(&e))?;
    Ok(())
}

/// True if the URL answers (HEAD), used to probe optional hub files such as a shard index.
pub async fn exists(url: &str) -> bool {
    let init = web_sys::RequestInit::new();
    init.set_method("HEAD");
    match JsFuture::from(scope().fetch_with_str_and_init(url, &init)).await {
        Ok(r) => r.unchecked_into::<Response>().ok(),
        Err(_) => false,
    }
}

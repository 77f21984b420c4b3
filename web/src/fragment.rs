//! The address fragment a link carries (`#prompt=…&compress.method=wanda…`): `key=value` pairs
//! joined by `&`, each side percent-encoded. Each part of the page names its own keys; `link`
//! puts them together and replays them.

use std::cell::RefCell;
use std::str::FromStr;

use leptos::prelude::*;

use crate::widgets::{Choice, choice_for};

/// Settings as a link names them, in order.
pub(crate) type Params = Vec<(&'static str, String)>;

/// `params` as a fragment (without the leading `#`).
pub(crate) fn encode(params: &[(&'static str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", js_sys::encode_uri_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A link's fragment, read. Values that do not parse are skipped and remembered, so the page
/// can say which parts of a link it could not follow.
pub(crate) struct Fragment {
    values: Vec<(String, String)>,
    problems: RefCell<Vec<String>>,
}

impl Fragment {
    /// Reads `hash` (`location.hash`, with or without its `#`).
    pub(crate) fn parse(hash: &str) -> Self {
        let mut problems = Vec::new();
        let values = hash
            .trim_start_matches('#')
            .split('&')
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                match js_sys::decode_uri_component(v) {
                    Ok(v) => Some((k.to_string(), String::from(v))),
                    Err(_) => {
                        problems.push(format!("{k} (not percent-encoded text)"));
                        None
                    }
                }
            })
            .collect();
        Self {
            values,
            problems: RefCell::new(problems),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.values.iter().any(|(k, _)| k == key)
    }

    pub(crate) fn text(&self, key: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn problem(&self, key: &str, value: &str) {
        self.problems.borrow_mut().push(format!("{key}={value:?}"));
    }

    /// The value of `key` parsed, if present and valid.
    pub(crate) fn value<T: FromStr>(&self, key: &str) -> Option<T> {
        let text = self.text(key)?;
        let parsed = text.parse().ok();
        if parsed.is_none() {
            self.problem(key, &text);
        }
        parsed
    }

    /// Sets `signal` to the value of `key`, if present and valid.
    pub(crate) fn set<T: FromStr + Send + Sync + 'static>(&self, key: &str, signal: RwSignal<T>) {
        if let Some(v) = self.value(key) {
            signal.set(v);
        }
    }

    /// Sets `signal` to the option of `options` that `key` names, if present and offered.
    pub(crate) fn set_choice<T: Choice>(
        &self,
        key: &str,
        options: &[(T, &'static str)],
        signal: RwSignal<T>,
    ) {
        let Some(text) = self.text(key) else { return };
        match choice_for(options, &text) {
            Some(c) => signal.set(c),
            None => self.problem(key, &text),
        }
    }

    /// Sets `signal` to the text of `key`, if present and `valid`.
    pub(crate) fn set_checked(
        &self,
        key: &str,
        signal: RwSignal<String>,
        valid: impl Fn(&str) -> bool,
    ) {
        let Some(text) = self.text(key) else { return };
        if valid(&text) {
            signal.set(text);
        } else {
            self.problem(key, &text);
        }
    }

    /// The keys whose values could not be used.
    pub(crate) fn problems(&self) -> Vec<String> {
        self.problems.borrow().clone()
    }
}

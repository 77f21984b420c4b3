//! Tokenizers: Hugging Face `tokenizer.json`, or one rebuilt from a GGUF vocabulary.

use serde_json::{Value, json};
use tokenizers::Tokenizer;

use super::gguf::{GgufFile, MetaValue};
use crate::error::{Error, Result};

/// GPT-2's byte-level split, spelled as llama.cpp's `llama-bpe` (Llama 3) pre-tokenizer.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split: Llama 3's with every digit on its own.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;
const TOKEN_UNUSED: i32 = 5;

/// llama.cpp's name of a `tokenizer.json` pre-tokenizer, for the ones [`TextTokenizer::from_gguf`]
/// rebuilds: GPT-2's byte-level split alone, SmolLM's digits before it, or Llama 3's and Qwen2's
/// regex splits.
fn gguf_pre_name(pre: &Value) -> Option<&'static str> {
    let byte_level = |p: &Value| p["type"] == "ByteLevel";
    if byte_level(pre) && pre["use_regex"] != false {
        return Some("gpt2");
    }
    let steps = pre["pretokenizers"].as_array()?;
    match &steps[..] {
        [digits, last]
            if digits["type"] == "Digits"
                && digits["individual_digits"] == true
                && byte_level(last) =>
        {
            Some("smollm")
        }
        [split, last] if split["type"] == "Split" && byte_level(last) => {
            match split["pattern"]["Regex"].as_str()? {
                LLAMA3_SPLIT => Some("llama-bpe"),
                QWEN2_SPLIT => Some("qwen2"),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A tokenizer plus the special tokens generation needs.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl TextTokenizer {
    /// From the bytes of a `tokenizer.json`.
    pub fn from_json(
        bytes: &[u8],
        bos_token_id: Option<u32>,
        eos_token_ids: Vec<u32>,
    ) -> Result<Self> {
        // tokenizers 0.23 panics instead of failing on a JSON syntax error, invalid UTF-8 or a
        // bad escape inside "decoder" (found by fuzzing): reject malformed JSON before it gets
        // there. A full `Value` parse checks every string, which skipping (`IgnoredAny`) does not.
        let doc = serde_json::from_slice::<Value>(bytes)
            .map_err(|e| Error::format("tokenizer.json", format!("not valid JSON: {e}")))?;
        check_bpe_merges(&doc).map_err(|why| Error::format("tokenizer.json", why))?;
        let inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::format("tokenizer.json", e.to_string()))?;
        Ok(Self {
            inner,
            bos_token_id,
            eos_token_ids,
        })
    }

    /// Rebuilds the tokenizer stored in GGUF metadata (`tokenizer.ggml.*`). Byte-level BPE
    /// (`tokenizer.ggml.model = gpt2`) is supported, with the `pre` variants below.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let model = file
            .get("tokenizer.ggml.model")
            .and_then(MetaValue::as_str)
            .ok_or_else(|| {
                Error::Tokenizer(
                    "the GGUF has no `tokenizer.ggml.model`: give a tokenizer.json".into(),
                )
            })?;
        if model != "gpt2" {
            return Err(Error::Unsupported {
                what: "GGUF tokenizer",
                detail: format!(
                    "`tokenizer.ggml.model = {model}` (only byte-level BPE, `gpt2`, is rebuilt from GGUF); pass the model's tokenizer.json instead"
                ),
            });
        }
        let tokens = string_array(file, "tokenizer.ggml.tokens")?;
        let merges = string_array(file, "tokenizer.ggml.merges")?;
        let types: Vec<u64> = match file
            .get("tokenizer.ggml.token_type")
            .and_then(MetaValue::as_array)
        {
            Some(a) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let pre = file
            .get("tokenizer.ggml.pre")
            .and_then(MetaValue::as_str)
            .unwrap_or("default");
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
        let mut normalizer = Value::Null;
        let (pre_tokenizer, ignore_merges) = match pre {
            "default" | "gpt2" | "gpt-2" => (byte_level(true), false),
            // SmolLM splits every digit on its own before the GPT-2 byte-level split.
            "smollm" => (
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
                false,
            ),
            "llama-bpe" | "llama3" => (
                json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]}),
                true,
            ),
            // Qwen2's tokenizer.json also composes Unicode (NFC) before splitting.
            "qwen2" => {
                normalizer = json!({"type": "NFC"});
                (
                    json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
                    false,
                )
            }
            other => {
                return Err(Error::Unsupported {
                    what: "GGUF pre-tokenizer",
                    detail: format!(
                        "`tokenizer.ggml.pre = {other}` (supported: default, gpt2, smollm, llama-bpe, qwen2); pass a tokenizer.json"
                    ),
                });
            }
        };
        let mut vocab = serde_json::Map::with_capacity(tokens.len());
        let mut added = Vec::new();
        for (id, tok) in tokens.iter().enumerate() {
            vocab.insert(tok.clone(), json!(id));
            // 3 = control (special), 4 = user-defined: both must never be split.
            let ty = types.get(id).copied().unwrap_or(1);
            if ty == 3 || ty == 4 {
                added.push(
                    json!({"id": id, "content": tok, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": ty == 3}),
                );
            }
        }
        let doc: Value = json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": added, "normalizer": normalizer, "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges},
        });
        let bytes = serde_json::to_vec(&doc).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::format("GGUF tokenizer", e.to_string()))?;
        let id = |key: &str| file.get(key).and_then(MetaValue::as_u64).map(|v| v as u32);
        Ok(Self {
            inner,
            bos_token_id: id("tokenizer.ggml.bos_token_id"),
            eos_token_ids: id("tokenizer.ggml.eos_token_id").into_iter().collect(),
        })
    }

    /// The inverse of [`TextTokenizer::from_gguf`]: the `tokenizer.ggml.*` metadata of this
    /// byte-level BPE tokenizer, its vocabulary padded with unused `[PAD{id}]` tokens to the
    /// model's `vocab_size` rows (as llama.cpp's converter pads). The pre-tokenizer must be one
    /// llama.cpp names and `from_gguf` rebuilds (gpt2, smollm, llama-bpe, qwen2); others are
    /// refused rather than written under a wrong name.
    pub fn gguf_metadata(&self, vocab_size: usize) -> Result<Vec<(String, MetaValue)>> {
        let refuse = |why: String| Error::Unsupported {
            what: "tokenizer for GGUF",
            detail: why,
        };
        let doc: Value = serde_json::from_slice(&self.to_json()?)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let model = &doc["model"];
        if model["type"] != "BPE" || doc["decoder"]["type"] != "ByteLevel" {
            return Err(refuse(format!(
                "a {} tokenizer: only byte-level BPE tokenizers are written to GGUF",
                model["type"].as_str().unwrap_or("non-BPE")
            )));
        }
        let pre = gguf_pre_name(&doc["pre_tokenizer"]).ok_or_else(|| {
            refuse(format!(
                "its pre-tokenizer {} is not one llama.cpp names that Scalpel knows (gpt2, smollm, llama-bpe, qwen2)",
                doc["pre_tokenizer"]
            ))
        })?;
        let mut tokens: Vec<Option<String>> = Vec::new();
        let mut types: Vec<i32> = Vec::new();
        let mut put = |id: usize, token: &str, ty: i32| {
            if tokens.len() <= id {
                tokens.resize(id + 1, None);
                types.resize(id + 1, TOKEN_UNUSED);
            }
            tokens[id] = Some(token.to_string());
            types[id] = ty;
        };
        for (token, id) in model["vocab"].as_object().into_iter().flatten() {
            let id = id
                .as_u64()
                .ok_or_else(|| Error::Tokenizer(format!("token `{token}` has no id")))?;
            put(id as usize, token, TOKEN_NORMAL);
        }
        for added in doc["added_tokens"].as_array().into_iter().flatten() {
            let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str())
            else {
                continue;
            };
            let special = added["special"].as_bool().unwrap_or(false);
            put(
                id as usize,
                content,
                if special {
                    TOKEN_CONTROL
                } else {
                    TOKEN_USER_DEFINED
                },
            );
        }
        if tokens.len() > vocab_size {
            return Err(refuse(format!(
                "it has {} tokens but the model's embedding has only {vocab_size} rows",
                tokens.len()
            )));
        }
        tokens.resize(vocab_size, None);
        types.resize(vocab_size, TOKEN_UNUSED);
        let tokens: Vec<MetaValue> = tokens
            .into_iter()
            .enumerate()
            .map(|(id, t)| MetaValue::String(t.unwrap_or_else(|| format!("[PAD{id}]"))))
            .collect();
        // tokenizers writes merges as pairs; GGUF as "left right" strings.
        let merges: Vec<MetaValue> = model["merges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| match m {
                Value::Array(pair) => MetaValue::String(
                    pair.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                other => MetaValue::String(other.as_str().unwrap_or_default().to_string()),
            })
            .collect();
        let mut out = vec![
            (
                "tokenizer.ggml.model".to_string(),
                MetaValue::String("gpt2".into()),
            ),
            (
                "tokenizer.ggml.pre".to_string(),
                MetaValue::String(pre.into()),
            ),
            (
                "tokenizer.ggml.tokens".to_string(),
                MetaValue::Array(tokens),
            ),
            (
                "tokenizer.ggml.token_type".to_string(),
                MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()),
            ),
            (
                "tokenizer.ggml.merges".to_string(),
                MetaValue::Array(merges),
            ),
        ];
        if let Some(bos) = self.bos_token_id {
            out.push(("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(bos)));
        }
        if let Some(&eos) = self.eos_token_ids.first() {
            out.push(("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(eos)));
        }
        Ok(out)
    }

    /// The tokenizer as a `tokenizer.json` (also for tokenizers built from GGUF metadata).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        self.inner
            .to_string(false)
            .map(String::into_bytes)
            .map_err(|e| Error::Tokenizer(format!("serialising the tokenizer: {e}")))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids for `text` (no special tokens added; callers prepend BOS themselves when wanted).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of a prompt, after the BOS token when `bos` is set (and the vocabulary has one).
    pub fn encode_prompt(&self, text: &str, bos: bool) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.bos_token_id.filter(|_| bos).into_iter().collect();
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The id of a token string (as the vocabulary spells it), if present.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The id of `text` when it encodes to exactly one token; `#123` names id 123 directly.
    pub fn single_token(&self, text: &str) -> Result<u32> {
        if let Some(id) = text.strip_prefix('#').and_then(|n| n.parse::<u32>().ok()) {
            if id as usize >= self.vocab_size() {
                return Err(Error::InvalidInput(format!(
                    "token id {id} is outside the vocabulary of {} tokens",
                    self.vocab_size()
                )));
            }
            return Ok(id);
        }
        match self.encode(text)?.as_slice() {
            [id] => Ok(*id),
            [] => Err(Error::InvalidInput("the token text is empty".into())),
            ids => Err(Error::InvalidInput(format!(
                "`{text}` is {} tokens ({ids:?}); give text that is one token (mind the leading space, e.g. \" Paris\") or an id as #ID",
                ids.len()
            ))),
        }
    }

    /// The text of one token id, decoded (e.g. `" Paris"`).
    pub fn id_to_text(&self, id: u32) -> Result<String> {
        self.decode(&[id])
    }

    /// Incremental decoder: feed ids one at a time, get text pieces as soon as they are whole UTF-8.
    pub fn stream(&self) -> TokenStream<'_> {
        TokenStream {
            tokenizer: self,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }
}

/// Incremental detokenizer. Decoding a token alone loses the spacing and byte-merging context, so
/// each step decodes a short window (from the previous emission on) and emits only the new suffix,
/// holding back byte-level tokens that end inside a UTF-8 character.
pub struct TokenStream<'a> {
    tokenizer: &'a TextTokenizer,
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl TokenStream<'_> {
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let before = self.tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let after = self.tokenizer.decode(&self.ids[self.prefix..])?;
        if after.len() <= before.len()
            || after.ends_with('\u{FFFD}')
            || !after.is_char_boundary(before.len())
        {
            return Ok(None);
        }
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(Some(after[before.len()..].to_string()))
    }
}

fn string_array(file: &GgufFile, key: &str) -> Result<Vec<String>> {
    let arr = file
        .get(key)
        .and_then(MetaValue::as_array)
        .ok_or_else(|| Error::Tokenizer(format!("the GGUF has no `{key}` array")))?;
    arr.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::Tokenizer(format!("`{key}` holds a non-string")))
        })
        .collect()
}

/// tokenizers 0.23 panics (an out-of-range slice) on a BPE merge whose two parts are in the
/// vocabulary but whose result is longer than every vocabulary token, or whose second part is
/// shorter than the continuing-subword prefix (found by fuzzing). A merge must join two
/// vocabulary tokens into a third: check that first, naming the merge.
fn check_bpe_merges(doc: &Value) -> std::result::Result<(), String> {
    let model = &doc["model"];
    if model["type"].as_str() != Some("BPE") {
        return Ok(());
    }
    let (Some(vocab), Some(merges)) = (model["vocab"].as_object(), model["merges"].as_array())
    else {
        return Ok(());
    };
    let prefix = model["continuing_subword_prefix"].as_str().unwrap_or("");
    for (i, merge) in merges.iter().enumerate() {
        let (a, b) = match merge {
            Value::String(s) => match s.split_once(' ') {
                Some(pair) => pair,
                None => continue,
            },
            Value::Array(pair) => match (
                pair.first().and_then(Value::as_str),
                pair.get(1).and_then(Value::as_str),
            ) {
                (Some(a), Some(b)) => (a, b),
                _ => continue,
            },
            _ => continue,
        };
        let Some(tail) = b.strip_prefix(prefix) else {
            return Err(format!(
                "merge {i} (`{a}` + `{b}`): `{b}` does not start with the continuing-subword prefix `{prefix}`"
            ));
        };
        if vocab.contains_key(a)
            && vocab.contains_key(b)
            && !vocab.contains_key(&format!("{a}{tail}"))
        {
            return Err(format!(
                "merge {i} (`{a}` + `{b}`) makes `{a}{tail}`, which is not in the vocabulary"
            ));
        }
    }
    Ok(())
}

//! Reference sets: fixed-length token samples cut from documents, in the order the protocol
//! (`c4-128x256`, docs/protocols.md) defines.

use crate::error::{Error, Result};
use crate::io::tokenizer::TextTokenizer;
use crate::relevance::Target;
use crate::task::EncodedTask;

/// How a reference set was built: printed with every number it yields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceProtocol {
    /// `c4-128x256` for the full protocol, else `<source>-<samples>x<len>`.
    pub name: String,
    /// Where the text came from (`c4`, a file name, `pasted text`).
    pub source: String,
    /// Samples actually built (fewer than requested when the text ran out).
    pub samples: usize,
    pub requested_samples: usize,
    pub sample_len: usize,
}

/// Token samples, tokenized without BOS, and what relevance explains on each: the true next
/// tokens (text; `targets` is `None`) or one target per sample (a task's logit difference).
#[derive(Debug, Clone)]
pub struct ReferenceSet {
    pub protocol: ReferenceProtocol,
    pub samples: Vec<Vec<u32>>,
    pub targets: Option<Vec<Target>>,
}

/// Shortest sample worth scoring: next-token targets need at least two tokens.
const MIN_SAMPLE_LEN: usize = 2;

impl ReferenceSet {
    /// Samples from `documents` in order: each document with at least `sample_len` tokens gives
    /// its first `sample_len` tokens; if that yields fewer than `samples`, further
    /// non-overlapping windows of the longer documents follow, document by document.
    pub fn from_documents(
        source: &str,
        documents: &[&str],
        tokenizer: &TextTokenizer,
        samples: usize,
        sample_len: usize,
    ) -> Result<Self> {
        if samples == 0 {
            return Err(Error::InvalidInput(
                "a reference set needs at least one sample".into(),
            ));
        }
        if sample_len < MIN_SAMPLE_LEN {
            return Err(Error::InvalidInput(format!(
                "reference samples need at least {MIN_SAMPLE_LEN} tokens (asked for {sample_len})"
            )));
        }
        let mut tokenized = Vec::with_capacity(documents.len());
        let mut firsts = 0;
        for doc in documents {
            let ids = tokenizer.encode(doc)?;
            firsts += usize::from(ids.len() >= sample_len);
            tokenized.push(ids);
            // Enough first windows already: later documents cannot be used.
            if firsts >= samples {
                break;
            }
        }
        let mut out: Vec<Vec<u32>> = tokenized
            .iter()
            .filter(|t| t.len() >= sample_len)
            .take(samples)
            .map(|t| t[..sample_len].to_vec())
            .collect();
        'docs: for doc in &tokenized {
            for window in doc.chunks_exact(sample_len).skip(1) {
                if out.len() >= samples {
                    break 'docs;
                }
                out.push(window.to_vec());
            }
        }
        if out.is_empty() {
            let longest = tokenized.iter().map(Vec::len).max().unwrap_or(0);
            return Err(Error::InvalidInput(format!(
                "the reference text is too short: its longest document has {longest} tokens, \
                 but samples of {sample_len} tokens were asked for (use more text or shorter samples)"
            )));
        }
        let name = if source == "c4" && samples == 128 && sample_len == 256 && out.len() == 128 {
            "c4-128x256".to_string()
        } else {
            format!("{source}-{}x{sample_len}", out.len())
        };
        Ok(Self {
            protocol: ReferenceProtocol {
                name,
                source: source.to_string(),
                samples: out.len(),
                requested_samples: samples,
                sample_len,
            },
            samples: out,
            targets: None,
        })
    }

    /// A task's prompts, each explained by its metric `logit(answer) − logit(distractor)` at the
    /// last position.
    pub fn from_task(task: &EncodedTask) -> Result<Self> {
        if task.items.is_empty() {
            return Err(Error::InvalidInput(format!(
                "task `{}` has no prompts to score",
                task.name
            )));
        }
        let longest = task.items.iter().map(|i| i.ids.len()).max().unwrap_or(0);
        Ok(Self {
            protocol: ReferenceProtocol {
                name: task.name.clone(),
                source: format!("task {}", task.name),
                samples: task.items.len(),
                requested_samples: task.items.len(),
                sample_len: longest,
            },
            samples: task.items.iter().map(|i| i.ids.clone()).collect(),
            targets: Some(
                task.items
                    .iter()
                    .map(|i| Target::Contrast {
                        position: None,
                        token: i.answer,
                        foil: i.distractor,
                    })
                    .collect(),
            ),
        })
    }

    /// What relevance explains on sample `i`.
    pub fn target(&self, i: usize) -> Target {
        match &self.targets {
            Some(t) => t[i].clone(),
            None => Target::NextTokens { from: 0 },
        }
    }

    /// The C4 reference set from `c4.utf8` (one document per line): `c4-128x256` by default.
    pub fn c4(
        raw: &str,
        tokenizer: &TextTokenizer,
        samples: usize,
        sample_len: usize,
    ) -> Result<Self> {
        let documents = crate::eval::corpus::c4_documents(raw);
        Self::from_documents("c4", &documents, tokenizer, samples, sample_len)
    }

    /// The first `n` samples (for studying how the set's size matters).
    pub fn prefix(&self, n: usize) -> Self {
        Self {
            protocol: self.prefix_protocol(n),
            samples: self.samples.iter().take(n).cloned().collect(),
            targets: self
                .targets
                .as_ref()
                .map(|t| t.iter().take(n).cloned().collect()),
        }
    }

    /// The protocol of [`ReferenceSet::prefix`] without copying the samples.
    pub fn prefix_protocol(&self, n: usize) -> ReferenceProtocol {
        let p = &self.protocol;
        if n >= self.samples.len() {
            return p.clone();
        }
        let samples = n.min(self.samples.len());
        ReferenceProtocol {
            name: format!("{}-{samples}x{}", p.source, p.sample_len),
            source: p.source.clone(),
            samples,
            requested_samples: n,
            sample_len: p.sample_len,
        }
    }

    /// Whether fewer samples were built than asked for.
    pub fn is_short(&self) -> bool {
        self.protocol.samples < self.protocol.requested_samples
    }
}

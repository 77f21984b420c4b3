//! What a relevance pass explains: one scalar built from the model's logits.

use crate::error::{Error, Result};

/// The explained output. Its relevance equals its value (`G = 1` on it).
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The logit of `token` at `position` (default: the last position).
    Token { position: Option<usize>, token: u32 },
    /// `logit(token) − logit(foil)` at `position` (default: the last), e.g. IO vs S for IOI.
    Contrast {
        position: Option<usize>,
        token: u32,
        foil: u32,
    },
    /// Σ over positions `p ≥ from` of the logit of the token at `p + 1`: the true next tokens
    /// of a reference text (`from = 0`), or a continuation after a prompt of `from + 1` tokens.
    NextTokens { from: usize },
}

/// One `coefficient × logit(token) at position` term of a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Term {
    pub position: usize,
    pub token: u32,
    pub coefficient: f32,
}

impl Target {
    /// The target as a sum of logit terms for the sequence `ids`, checked against it and the
    /// vocabulary.
    pub(crate) fn terms(&self, ids: &[u32], vocab_size: usize) -> Result<Vec<Term>> {
        let len = ids.len();
        let position = |p: Option<usize>| -> Result<usize> {
            let p = p.unwrap_or(len.saturating_sub(1));
            if p >= len {
                return Err(Error::InvalidInput(format!(
                    "target position {p} is outside the sequence of {len} tokens"
                )));
            }
            Ok(p)
        };
        let token = |t: u32| -> Result<u32> {
            if t as usize >= vocab_size {
                return Err(Error::InvalidInput(format!(
                    "target token id {t} is outside the vocabulary of {vocab_size} tokens"
                )));
            }
            Ok(t)
        };
        let term = |position, token, coefficient| Term {
            position,
            token,
            coefficient,
        };
        Ok(match *self {
            Target::Token {
                position: p,
                token: t,
            } => vec![term(position(p)?, token(t)?, 1.0)],
            Target::Contrast {
                position: p,
                token: t,
                foil,
            } => {
                if t == foil {
                    return Err(Error::InvalidInput(
                        "the contrast token must differ from the target token".into(),
                    ));
                }
                let p = position(p)?;
                vec![term(p, token(t)?, 1.0), term(p, token(foil)?, -1.0)]
            }
            Target::NextTokens { from } => {
                if from + 1 >= len {
                    return Err(Error::InvalidInput(format!(
                        "explaining next tokens from position {from} needs more than {} tokens (got {len})",
                        from + 1
                    )));
                }
                (from..len - 1).map(|p| term(p, ids[p + 1], 1.0)).collect()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_checked() {
        let ids = [3, 4, 5];
        let t = Target::Token {
            position: None,
            token: 7,
        };
        assert_eq!(t.terms(&ids, 10).unwrap()[0].position, 2);
        assert!(t.terms(&ids, 5).is_err());
        let far = Target::Token {
            position: Some(3),
            token: 1,
        };
        assert!(far.terms(&ids, 10).is_err());
        let next = Target::NextTokens { from: 0 }.terms(&ids, 10).unwrap();
        assert_eq!(
            next.iter()
                .map(|t| (t.position, t.token))
                .collect::<Vec<_>>(),
            vec![(0, 4), (1, 5)]
        );
        assert!(Target::NextTokens { from: 2 }.terms(&ids, 10).is_err());
        let same = Target::Contrast {
            position: None,
            token: 1,
            foil: 1,
        };
        assert!(same.terms(&ids, 10).is_err());
    }
}

//! Evaluation protocols. Each protocol has a name that is printed with every number it yields.

pub mod corpus;
pub mod perplexity;

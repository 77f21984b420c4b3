//! The core's closed option sets as clap `ValueEnum`s (feature `clap`, which the CLI enables), so
//! `--help` lists their values and clap refuses any other before work starts — by the same names
//! (and aliases) the core parses, prints and writes into files.

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::correct::Measure;
use crate::model::RuleSet;
use crate::score::ScoreMethod;
use crate::unit::Granularity;

impl ValueEnum for ScoreMethod {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for Granularity {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

impl ValueEnum for RuleSet {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()).aliases(self.aliases()))
    }
}

impl ValueEnum for Measure {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()).aliases(self.aliases()))
    }
}

impl ValueEnum for crate::export::gguf::GgufType {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

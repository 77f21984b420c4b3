pub mod bench;
pub mod circuit;
pub mod eval;
pub mod explain;
pub mod generate;
pub mod info;
pub mod prune;
pub mod sweep;

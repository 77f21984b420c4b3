pub mod bench;
pub mod eval;
pub mod generate;
pub mod info;

//! One file per subcommand.

pub mod compare;
pub mod demo;
pub mod info;
pub mod input;
pub mod reconstruct;
pub mod score;
pub mod simulate;

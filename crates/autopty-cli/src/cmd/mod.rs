//! One file per subcommand.

pub mod info;
pub mod input;
pub mod score;
pub mod simulate;

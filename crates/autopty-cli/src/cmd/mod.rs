//! One file per subcommand.

pub mod info;
pub mod score;
pub mod simulate;

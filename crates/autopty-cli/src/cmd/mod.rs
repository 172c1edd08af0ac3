//! One file per subcommand.

pub mod compare;
pub mod demo;
pub mod info;
pub mod input;
pub mod logging;
pub mod maps;
pub mod profile;
pub mod raw_args;
pub mod reconstruct;
pub mod score;
pub mod session;
pub mod signals;
pub mod simulate;

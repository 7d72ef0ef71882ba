//! One file per subcommand: each owns its arguments (a clap struct) and an
//! `execute` that returns the exit status of an answer, or the
//! [`CliError`](crate::error::CliError) that `main` prints.

pub mod audit;
pub mod budget;
pub mod build;
pub mod new;
pub mod node;
pub mod open;
pub mod pull;
pub mod push;
pub mod query;
pub mod run;
pub mod sign;
pub mod verify;

//! Subcommands of the `zoetrope` binary, one file each: argument structs and
//! `run` functions, kept out of `main.rs` so that it stays a thin dispatcher.

pub mod plan;
pub mod score;
pub mod weights;

//! Argument structs and `run` functions of the subcommands, kept out of
//! `main.rs` so that it stays a thin dispatcher.

pub mod weights;

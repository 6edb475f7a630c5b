//! Subcommands of the `zoetrope` binary, one file each.

pub mod grid;
pub mod plan;

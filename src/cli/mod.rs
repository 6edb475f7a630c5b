//! Subcommands of the `zoetrope` binary, one file each.

pub mod plan;

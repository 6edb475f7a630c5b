//! Outputs: run folders, PNG frames and the MP4 (docs/design.md §9).
//!
//! Everything here writes atomically (a temporary file in the same folder,
//! then a rename), so an interrupted or failed write never leaves a truncated
//! file in place of a good one.

pub mod frames;
pub mod loop_jump;
pub mod run_dir;
#[cfg(feature = "video")]
pub mod video;

pub use crate::atomic::{write_atomic, write_atomic_with, write_json_atomic};
pub use run_dir::RunDir;

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

use crate::{Error, Result};
use std::path::Path;

/// Refuses an output file named by a command-line flag (`--chart`,
/// `--preview`) that cannot work, before anything runs: another extension
/// than `ext`, or a folder that does not exist. `what` says what the file is
/// ("the chart is a PNG image").
pub fn check_output_file(path: &Path, flag: &str, ext: &str, what: &str) -> Result<()> {
    let ok = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext));
    if !ok || path.file_name().is_none() {
        return Err(Error::input(format!(
            "{flag} {}: {what}; give a file name ending in .{ext}",
            path.display()
        )));
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(Error::io(
            format!("{flag} {}", path.display()),
            format!(
                "the folder {} does not exist; create it first or choose another path",
                folder.display()
            ),
        ));
    }
    Ok(())
}

//! The project's one atomic writer: write a temporary file beside the
//! target, flush it to disk, then rename it over the target. Readers see
//! either the old file or the complete new one, never a half-written file;
//! on any failure the temporary file is removed and the old file is left
//! untouched. Frames, run state, plans, charts, weights sidecars and grid
//! outputs all go through it; a writer that needs a path of its own (the
//! grid's MP4 encoder) takes a name from [`temp_path`] and renames it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Serialises `value` as pretty JSON (with a final newline) into `path`
/// atomically. A serialisation failure leaves the old file intact.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    write_atomic_with(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value).map_err(io::Error::other)?;
        w.write_all(b"\n")
    })
}

/// Writes `path` atomically with a closure that fills a buffered writer.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let tmp = temp_path(path, "")?;
    let result = (|| -> io::Result<()> {
        let file = File::create(&tmp)?;
        let mut w = BufWriter::new(file);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("could not write {}", path.display()), e)
    })
}

/// A unique temporary name in the target's folder (a rename across file
/// systems would not be atomic), unique across the hosts and processes that
/// may share the folder: `.<name>.tmp-<host>-<pid>-<n><suffix>`.
pub fn temp_path(path: &Path, suffix: &str) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        Error::io(
            format!("could not write {}", path.display()),
            "the path has no file name",
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = format!(
        ".{}.tmp-{}-{}-{n}{suffix}",
        name.to_string_lossy(),
        host_name(),
        std::process::id()
    );
    Ok(path.with_file_name(tmp))
}

/// This machine's name, reduced to characters safe in a file name.
fn host_name() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        host.trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect()
    })
    .clone()
}

/// serde_json's failures keep an OS error (a closed pipe, a full disk) as
/// the cause.
impl crate::error::IoFailure for serde_json::Error {
    fn into_cause(self) -> Option<crate::error::Cause> {
        self.is_io().then(|| io::Error::from(self).into())
    }
}

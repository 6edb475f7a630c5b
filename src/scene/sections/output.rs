//! Where a run writes: its folder name and whether it may overwrite.

use super::super::reader::Reader;
use crate::Result;
use serde::Serialize;
use std::path::Path;

/// The settings this section reads.
pub const KEYS: &[&str] = &["file_namespace", "allow_overwrite"];

/// The run folder.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub file_namespace: String,
    pub allow_overwrite: bool,
}

impl Output {
    /// Reads the output settings; `file_namespace` defaults to the scene
    /// file's stem.
    pub(in crate::scene) fn read(r: &Reader) -> Result<Output> {
        let stem = Path::new(r.doc.origin)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "zoetrope".to_string());
        let file_namespace = r.string_or("file_namespace", &stem)?;
        if file_namespace.trim().is_empty()
            || file_namespace.contains(['/', '\\'])
            || file_namespace == "."
            || file_namespace == ".."
        {
            let span = r.span_of("file_namespace");
            return Err(r.doc.err(
                span,
                "file_namespace",
                "expected a plain folder name (no slashes), e.g. \"my_animation\"",
            ));
        }
        let allow_overwrite = r.bool_or("allow_overwrite", false)?;
        Ok(Output {
            file_namespace,
            allow_overwrite,
        })
    }
}

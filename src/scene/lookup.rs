//! The questions the scene loader asks about model files, answered by a
//! lookup passed in: which other model names exist (the weights manifest)
//! and what a VQGAN file's factor is.
//!
//! The scene module does not read weights itself: the trait
//! ([`ModelLookup`], defined in the catalog so that `models` implements it
//! without importing `scene`) is answered by `models::WeightsLookup`, which
//! reads the manifest and file headers (the CLI, grid and render pass it),
//! or by [`NoFiles`] without any file (the fuzz crate, dry runs, tests).

pub use crate::catalog::ModelLookup;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A lookup without weights: no other model names, and a VQGAN file's
/// factor cannot be read (the scene says so when it names one).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl ModelLookup for NoFiles {
    fn other_perceptor(&self, _name: &str) -> Option<String> {
        None
    }

    fn vqgan_by_name(&self, _name: &str) -> Option<(String, Option<PathBuf>)> {
        None
    }

    fn vqgan_file_layout(&self, path: &Path) -> Result<(u32, bool)> {
        Err(Error::input(format!(
            "{}: reading a VQGAN file's factor needs its weights, which this run does not \
             read",
            path.display()
        )))
    }
}

/// A `.safetensors` perceptor path made absolute against the scene's folder.
pub(crate) fn perceptor_path(name: &str, base_dir: &Path) -> Option<String> {
    let name = name.trim();
    if !name.ends_with(".safetensors") {
        return None;
    }
    let p = Path::new(name);
    let path = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    };
    Some(path.display().to_string())
}

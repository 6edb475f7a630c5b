//! The scene loader's questions about model files, answered from the
//! weights: [`WeightsLookup`] reads the weights manifest and VQGAN file
//! headers (see `scene::ModelLookup`; the trait lives in the catalog so
//! that `models` does not import `scene`).

use crate::catalog::ModelLookup;
use crate::models::vqgan::VqganConfig;
use crate::models::weights::{self, Manifest, ModelKind};
use crate::Result;
use std::path::{Path, PathBuf};

/// Answers from the built-in weights manifest and the weights folder.
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightsLookup;

impl ModelLookup for WeightsLookup {
    fn other_perceptor(&self, name: &str) -> Option<String> {
        Manifest::builtin()
            .find(Some(ModelKind::Clip), name)
            .map(|e| e.name.clone())
    }

    fn vqgan_by_name(&self, name: &str) -> Option<(String, Option<PathBuf>)> {
        let entry = Manifest::builtin()
            .find(Some(ModelKind::Vqgan), name)?
            .name
            .clone();
        let path = weights::resolve(ModelKind::Vqgan, &entry).ok();
        Some((entry, path))
    }

    fn vqgan_file_layout(&self, path: &Path) -> Result<(u32, bool)> {
        let shapes = weights::read_shapes(path)?;
        let config = VqganConfig::infer_from(&shapes, &path.display().to_string())?;
        Ok((config.factor() as u32, config.is_gumbel()))
    }
}

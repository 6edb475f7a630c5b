//! The few questions the scene loader asks the weights module: which other
//! model names exist (the weights manifest) and what a VQGAN file's factor is.
//!
//! The fuzz crate (`fuzz/`) compiles the scene loader without the models, so
//! under `cfg(fuzzing)` these answer "no such model" instead.

#[cfg(not(fuzzing))]
mod real {
    use crate::models::weights::{self, Manifest, ModelKind};
    use crate::Result;
    use std::path::{Path, PathBuf};

    /// A perceptor that is not one of the nine OpenAI names: a CLIP model of
    /// the weights manifest (such as the untrained `tiny-clip`), or a
    /// `.safetensors` path (relative to the scene file's folder), made absolute.
    pub fn other_perceptor(name: &str, base_dir: &Path) -> Option<String> {
        let name = name.trim();
        if name.ends_with(".safetensors") {
            let p = Path::new(name);
            let path = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            };
            return Some(path.display().to_string());
        }
        Manifest::builtin()
            .find(Some(ModelKind::Clip), name)
            .map(|e| e.name.clone())
    }

    /// A VQGAN of the weights manifest: its canonical name, and its file when present.
    pub fn vqgan_in_manifest(name: &str) -> Option<(String, Option<PathBuf>)> {
        let entry = Manifest::builtin()
            .find(Some(ModelKind::Vqgan), name)?
            .name
            .clone();
        let path = weights::resolve(ModelKind::Vqgan, &entry).ok();
        Some((entry, path))
    }

    /// Factor and quantiser of a VQGAN weights file, from its tensor shapes.
    pub fn vqgan_file_layout(path: &Path) -> Result<(u32, bool)> {
        let shapes = weights::read_shapes(path)?;
        let config =
            crate::models::vqgan::VqganConfig::infer_from(&shapes, &path.display().to_string())?;
        Ok((config.factor() as u32, config.is_gumbel()))
    }
}

#[cfg(fuzzing)]
mod real {
    use crate::{Error, Result};
    use std::path::{Path, PathBuf};

    pub fn other_perceptor(_name: &str, _base_dir: &Path) -> Option<String> {
        None
    }

    pub fn vqgan_in_manifest(_name: &str) -> Option<(String, Option<PathBuf>)> {
        None
    }

    pub fn vqgan_file_layout(path: &Path) -> Result<(u32, bool)> {
        Err(Error::input(format!(
            "{}: weights files are not read in fuzzing builds",
            path.display()
        )))
    }
}

pub use real::*;

//! The scene file: settings (pytti's names), prompt grammar and expressions.
//!
//! A scene file is TOML with top-level keys only (docs/design.md §1). [`Scene::load`]
//! reads it into a fully resolved [`Scene`]: every setting present, defaults
//! filled in, expressions and prompts parsed, sizes rounded to the VQGAN
//! factor, the learning rate and seed chosen. Any mistake is an
//! [`Error::input`] naming the file, line and column, the setting, what was
//! expected and what to do — loading never panics on user input.
//!
//! [`Scene::check_files`] additionally opens the files the scene names
//! (init image, image prompts); `plan` and `render` call it, tests and
//! fuzzers of the grammar need not.
//!
//! The settings live in section structs ([`sections`]: text, timing,
//! image, guidance, optimizer, motion, stabilization, output, run), each
//! with its own reader and validation; a [`Scene`] holds one of each and
//! serializes (serde, flattened) with the same setting names, so the
//! resolved settings a render records load back with [`Scene::from_str`].
//!
//! Decisions where docs/design.md is silent:
//! - pytti perceptor flags (`ViTB32 = true`, `RN50 = false`) edit the
//!   `perceptors` list (default or given): `true` adds, `false` removes.
//! - `use_mmc` (a pytti switch for its model loader) is accepted and ignored
//!   with a warning, so pytti configs port unchanged.
//! - Integer settings also accept whole-valued floats (`steps_per_frame =
//!   50.0`).
//! - Relative paths (`init_image`, `[image]` prompts) are relative to the
//!   scene file's folder and are stored resolved to absolute paths.
//! - `direct_init_weight`, `semantic_init_weight` and
//!   `stabilization_target = "init"` need an `init_image`: an error otherwise.

pub mod direct;
pub mod expr;
mod lookup;
mod modes;
pub mod preset;
pub mod prompt;
mod reader;
pub mod sections;

pub use crate::catalog::VqganModel;
pub use direct::DirectImagePrompt;
pub use expr::Param;
pub use lookup::{ModelLookup, NoFiles};
pub use modes::{InfillMode, SamplingMode};
pub use prompt::{Prompt, PromptMask, PromptSource, WeightSpec};
pub use sections::image::{ImageModel, VqganChoice};
pub use sections::motion::AnimationMode;
pub use sections::run::Precision;
pub use sections::stabilization::StabilizationTarget;
pub use sections::timing::Transition;

use crate::{Error, Result};
use reader::{Doc, Reader};
use sections::{
    Audio, Guidance, Image, Motion, Optimizer, Output, Run, Stabilization, Text, Timing,
};
use serde::Serialize;
use std::path::Path;

/// A fully resolved scene: every setting of docs/design.md §1 with its
/// value, grouped in sections (`scene.timing.steps_per_frame`).
///
/// Fields are public so the renderer reads them directly; they are filled
/// only by [`Scene::load`] / [`Scene::from_str`] (and their `_with`
/// forms), which validate them.
#[derive(Debug, Clone, Serialize)]
pub struct Scene {
    #[serde(flatten)]
    pub text: Text,
    #[serde(flatten)]
    pub timing: Timing,
    #[serde(flatten)]
    pub image: Image,
    #[serde(flatten)]
    pub guidance: Guidance,
    #[serde(flatten)]
    pub optimizer: Optimizer,
    #[serde(flatten)]
    pub motion: Motion,
    #[serde(flatten)]
    pub stabilization: Stabilization,
    #[serde(flatten)]
    pub output: Output,
    #[serde(flatten)]
    pub run: Run,
    /// The soundtrack and its filters (last: the filters serialize as an
    /// array of tables).
    #[serde(flatten)]
    pub audio: Audio,

    /// The parsed prompts: one list per scene (image paths resolved).
    #[serde(skip)]
    pub prompts: Vec<Vec<Prompt>>,
    /// Things the user should know (rounded sizes, ignored pytti keys).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// True when no `seed` was given and one was drawn.
    #[serde(skip)]
    pub seed_was_random: bool,
    /// The file (or name) the scene came from, for messages.
    #[serde(skip)]
    pub origin: String,
}

impl Scene {
    /// Reads and resolves a scene file without weights ([`NoFiles`]): a
    /// `vqgan_model` that is a weights file cannot be read this way, use
    /// [`Scene::load_with`] and the weights' lookup.
    pub fn load(path: impl AsRef<Path>) -> Result<Scene> {
        Scene::load_with(path, &NoFiles)
    }

    /// Reads and resolves a scene file, asking `lookup` about models the
    /// catalog does not know (weights-manifest names, weights files).
    /// A `.yaml`/`.yml` file is a pytti preset ([`Scene::from_yaml_str_with`]).
    pub fn load_with(path: impl AsRef<Path>, lookup: &dyn ModelLookup) -> Result<Scene> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::input(format!(
                "cannot read the scene file {}: {e}; check the path",
                path.display()
            ))
        })?;
        if preset::is_preset_path(path) {
            return Scene::from_yaml_str_with(&text, &path.to_string_lossy(), lookup);
        }
        Scene::from_str_with(&text, &path.to_string_lossy(), lookup)
    }

    /// Reads a pytti YAML preset (a full `default.yaml` or a `# @package
    /// _global_` override): merged over pytti-core's defaults, with
    /// `transition = "pytti"`, translated to scene settings
    /// ([`preset`]). Messages point into the YAML file; the preset's notes
    /// come first among the scene's warnings.
    pub fn from_yaml_str_with(
        text: &str,
        origin_name: &str,
        lookup: &dyn ModelLookup,
    ) -> Result<Scene> {
        let t = preset::translate(text, origin_name)?;
        let doc = Doc {
            text: &t.toml,
            origin: origin_name,
            map: Some(&t.map),
        };
        let mut scene = Scene::read_doc(&doc, lookup)?;
        let mut warnings = t.notes;
        warnings.append(&mut scene.warnings);
        scene.warnings = warnings;
        Ok(scene)
    }

    /// Parses scene text. `origin_name` is the file name used in messages;
    /// its folder resolves relative paths and its stem is the default
    /// `file_namespace`.
    /// Without weights ([`NoFiles`]); see [`Scene::from_str_with`].
    pub fn from_str(text: &str, origin_name: &str) -> Result<Scene> {
        Scene::from_str_with(text, origin_name, &NoFiles)
    }

    /// Parses scene text, asking `lookup` about models the catalog does
    /// not know. `origin_name` as for [`Scene::from_str`].
    pub fn from_str_with(text: &str, origin_name: &str, lookup: &dyn ModelLookup) -> Result<Scene> {
        let doc = Doc {
            text,
            origin: origin_name,
            map: None,
        };
        Scene::read_doc(&doc, lookup)
    }

    fn read_doc(doc: &Doc, lookup: &dyn ModelLookup) -> Result<Scene> {
        let table = doc.parse()?;
        let vals = doc.settings(table.get_ref())?;
        let r = Reader { doc, vals, lookup };
        Scene::read(&r)
    }

    /// Reads every section, in the order their errors are reported: the
    /// audio first, because it decodes the track (its errors come before
    /// anything else) and its variables are names in every later
    /// expression.
    fn read(r: &Reader) -> Result<Scene> {
        let audio = Audio::read(r)?;
        let vars = audio.track.clone();
        expr::with_audio_vars(vars, || Scene::read_sections(r, audio))
    }

    /// Reads the sections after the audio.
    fn read_sections(r: &Reader, audio: Audio) -> Result<Scene> {
        let mut warnings = Vec::new();
        let (text, prompts) = Text::read(r, &mut warnings)?;
        let timing = Timing::read(r, prompts.len())?;
        let image = Image::read(r, &mut warnings)?;
        let guidance = Guidance::read(r)?;
        let (optimizer, seed_was_random) = Optimizer::read(r, &image)?;
        let motion = Motion::read(r, &mut warnings)?;
        let stabilization = Stabilization::read(r)?;
        let output = Output::read(r)?;
        let run = Run::read(r, &mut warnings)?;
        Ok(Scene {
            text,
            timing,
            image,
            guidance,
            optimizer,
            motion,
            stabilization,
            output,
            run,
            audio,
            prompts,
            warnings,
            seed_was_random,
            origin: r.doc.origin.to_string(),
        })
    }

    /// Serializes the resolved settings as a TOML scene file that loads
    /// back to the same scene. `init_image` is written as an absolute path;
    /// `[image]` prompts stay as written inside `scenes`, so reload with the
    /// original scene file's path as `origin_name` (or keep them absolute).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::internal(format!("writing settings: {e}")))
    }

    /// Number of scenes.
    pub fn scene_count(&self) -> usize {
        self.prompts.len()
    }

    /// Whether 2D motion is on.
    pub fn is_animated(&self) -> bool {
        self.motion.animation_mode == AnimationMode::TwoD
    }

    /// Opens every file the scene names, as `render` would: the init image
    /// must exist and decode, every image prompt likewise.
    pub fn check_files(&self) -> Result<()> {
        if let Some(p) = &self.stabilization.init_image {
            check_image(p, "init_image", &self.origin)?;
        }
        for d in &self.stabilization.direct_image_prompts {
            let what = format!("direct_image_prompts \"{}\"", d.raw);
            check_image(&d.path, &what, &self.origin)?;
            if let Some((mask, _)) = &d.mask {
                check_image(mask, &format!("{what}, its mask"), &self.origin)?;
            }
        }
        if let Some(p) = &self.image.palette.target_palette {
            if self.image.image_model == ImageModel::LimitedPalette {
                check_image(p, "target_palette", &self.origin)?;
            }
        }
        for (j, scene) in self.prompts.iter().enumerate() {
            for prompt in scene {
                if let PromptSource::Image(p) = &prompt.source {
                    check_image(
                        p,
                        &format!("scenes: scene {}, prompt \"{}\"", j + 1, prompt.raw),
                        &self.origin,
                    )?;
                }
                if let PromptMask::Image { path, .. } = &prompt.mask {
                    check_image(
                        path,
                        &format!(
                            "scenes: scene {}, the mask of prompt \"{}\"",
                            j + 1,
                            prompt.raw
                        ),
                        &self.origin,
                    )?;
                }
            }
        }
        Ok(())
    }
}

fn check_image(path: &Path, what: &str, origin: &str) -> Result<()> {
    if !path.is_file() {
        return Err(Error::input(format!(
            "{origin}: {what}: the image {} does not exist; paths are relative to the scene \
             file's folder",
            path.display()
        )));
    }
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| {
            Error::input(format!(
                "{origin}: {what}: cannot open {}: {e}",
                path.display()
            ))
        })?
        .decode()
        .map_err(|e| {
            Error::input(format!(
                "{origin}: {what}: {} is not a readable image ({e}); use a PNG or JPEG",
                path.display()
            ))
        })?;
    Ok(())
}

//! The guide: the perceptors with every prompt embedded, which turns the
//! image state into a loss and takes one optimisation step (docs/design.md §7).
//!
//! Two halves:
//!
//! - [`ImageState`]: what is optimised. For a VQGAN it is the latent grid `z`
//!   (Crowson's "z + quantize" method), for the Unlimited Palette the RGB pixels
//!   themselves (pytti's `RGBImage`). The parameter is always a float32 leaf
//!   tensor on the render device, whatever precision the models run in, so
//!   Adam's moments and small updates never lose precision to bf16.
//! - [`Guide`]: the perceptors with every prompt already embedded, which turns
//!   the current state into a loss and takes one Adam step ([`Guide::step`]).
//!
//! # Use
//!
//! ```ignore
//! let guide = Guide::new(perceptors, &scenes, scene_dir, seed)?; // embeds prompts once
//! let mut rng = Rng::new(seed)?;
//! let mut state = ImageState::random(model, w, h, device, &mut rng)?; // or from_image(model, &init.to_device(device))
//! let init = guide.target_of_image(&state, &init_rgb)?;          // or guide.target(&state): a snapshot
//! let mut adam = Adam::new(state.param(), lr.unwrap_or(state.default_lr()));
//! for step in steps {
//!     let weights = StepWeights { scene_weights, prompt_weights, direct_init: Some((ws, &init)), .. };
//!     let loss = guide.step(&mut state, &mut adam, &weights, &mut rng)?; // detached, read when logging
//! }
//! let frame = state.image()?;                                    // [1, 3, H, W] in [0, 1]
//! ```
//!
//! # Randomness
//!
//! Random initialisation, the crop placements and the cutout noise draw from
//! the caller's [`Rng`] (the noise on a GPU from the device's generator, which
//! the `Rng` seeds; see [`crate::rng`]): the same seed on the same device gives
//! the same parameters step for step, whatever else runs in the process.

use std::path::Path;

use tch::{Kind, Tensor};

use crate::guidance::cutouts::CutoutSampler;
use crate::guidance::embed::{embed_prompts, prompt_masks, squeeze_to_input};
use crate::guidance::image::{rgb_dims, ImageModel, ImageState};
use crate::guidance::located::{LocatedPrompts, PromptCuts};
use crate::guidance::loss::{PromptLoss, WeightStop};
use crate::guidance::mask::MaskTarget;
use crate::guidance::replay::GraphRun;
use crate::guidance::step::optional_losses;
use crate::models::clip::Clip;
use crate::rng::Rng;
use crate::scene::prompt::Prompt;
use crate::tuning::Tuning;
use crate::{Error, Result};

/// One CLIP model with the cutout sampler that feeds it (built from
/// `cutouts`, `cut_pow`, `cutout_border` and the model's input resolution).
#[derive(Debug)]
pub struct Perceptor {
    /// The perceptor's name as the scene wrote it (`ViT-B/32`), for messages.
    pub name: String,
    pub clip: Clip,
    pub sampler: CutoutSampler,
}

/// A snapshot the init/stabilisation losses pull toward (docs/design.md §6), made by
/// [`Guide::target`].
#[derive(Debug)]
pub struct Target {
    /// The image `[1, 3, H, W]` float32 in `[0, 1]`: the direct losses' RGB
    /// term, and what the semantic losses cut at the current placements.
    pub rgb: Tensor,
    /// The quantised latent (VQGAN), float32: the direct loss's latent term.
    pub z_q: Option<Tensor>,
    /// Per perceptor, the embedding `[1, D]` (float32) of the whole image
    /// squeezed to the perceptor's input. The step's semantic losses compare
    /// cutouts at identical placements instead (module docs); this global
    /// embedding is kept for reporting how far the image has drifted
    /// ([`Guide::semantic_distance`]).
    pub embeds: Vec<Tensor>,
}

/// The weights of one step, evaluated by the caller at this step's `t`.
#[derive(Debug)]
pub struct StepWeights<'a> {
    /// One per scene, from `Timeline::scene_weights(step)` (docs/design.md §3).
    pub scene_weights: Vec<f64>,
    /// `[scene][prompt]`, each prompt's weight and stop at this step.
    pub prompt_weights: Vec<Vec<WeightStop>>,
    pub direct_init: Option<(WeightStop, &'a Target)>,
    pub direct_stabilization: Option<(WeightStop, &'a Target)>,
    pub semantic_init: Option<(WeightStop, &'a Target)>,
    pub semantic_stabilization: Option<(WeightStop, &'a Target)>,
    /// The loop-closing loss (`loop_frames`, docs/design.md §6): the direct
    /// loss toward the first frame as the coming motion carries it.
    pub loop_closing: Option<(WeightStop, &'a Target)>,
    /// pytti's smoothing (total-variation) loss on the image, when
    /// `smoothing_weight` is set ([`crate::guidance::loss::tv_loss`]).
    pub smoothing: Option<WeightStop>,
    /// One weight per direct image prompt of the guide
    /// ([`Guide::set_direct_images`]), in order.
    pub direct_images: Vec<WeightStop>,
}

/// A direct image prompt's target (docs/design.md §6a): the image at the
/// render's size as a [`Target`], and its mask resized to the image and
/// (VQGAN) to the latent.
#[derive(Debug)]
pub struct DirectImageTarget {
    /// The entry as written, for messages.
    pub label: String,
    pub target: Target,
    pub masks: Option<(Tensor, Option<Tensor>)>,
}

/// The perceptors and the embedded prompts of every scene: everything that
/// turns an image state into a loss.
#[derive(Debug)]
pub struct Guide {
    pub(super) perceptors: Vec<Perceptor>,
    /// `[scene][prompt]`, each with one embedding per perceptor.
    pub(super) prompts: Vec<Vec<PromptLoss>>,
    /// Per perceptor, every prompt's embedding stacked `[P, D]` (scenes in
    /// order, then prompts): the targets of one batched distance computation.
    pub(super) targets: Vec<Tensor>,
    /// Every prompt's mask, in the weight table's order (docs/design.md §2a).
    pub(super) masks: Vec<MaskTarget>,
    /// The location-aware image prompts' cuts (docs/design.md §2b); `None`
    /// without image prompts.
    pub(super) located: Option<LocatedPrompts>,
    /// `direct_image_prompts`' targets ([`Guide::set_direct_images`]).
    pub(super) direct_images: Vec<DirectImageTarget>,
    /// The speed switches the step reads (cutout precision, CUDA graphs).
    pub(super) tuning: Tuning,
    /// `gradient_accumulation_steps`: the passes a step's cutouts are split
    /// into, each back-propagated before the next (1: one pass).
    pub(super) accumulation: usize,
    /// The captured step, on CUDA.
    pub(super) graph: std::cell::RefCell<GraphRun>,
}

impl Guide {
    /// Embeds every prompt of every scene with every perceptor, once, then
    /// frees the perceptors' text towers ([`Clip::release_text_tower`]).
    ///
    /// Text goes through CLIP's tokenizer and `encode_text` (a prompt longer
    /// than the context is an error quoting it). An image prompt `[path]` is
    /// read (relative paths against `base_dir`, the scene file's folder) and
    /// is location-aware ([`crate::guidance::located`]): it is cut as a step
    /// cuts the image, by each perceptor's sampler, with placements,
    /// augmentations and noise drawn from an [`Rng`] seeded with `seed`
    /// (the render's seed: a resumed render cuts it the same), and every cut
    /// is embedded. Its whole-image embedding (OpenAI's preprocessing,
    /// [`crate::guidance::embed::clip_preprocess`]) is kept in
    /// [`PromptLoss::embeds`] for [`prompt_distances`](Self::prompt_distances).
    /// Identical prompts are embedded once.
    pub fn new(
        mut perceptors: Vec<Perceptor>,
        scenes: &[Vec<Prompt>],
        base_dir: &Path,
        seed: u64,
    ) -> Result<Guide> {
        if perceptors.is_empty() {
            return Err(Error::input(
                "no perceptor: list at least one CLIP model in `perceptors` (e.g. [\"ViT-B/32\"])",
            ));
        }
        for p in &perceptors {
            if p.sampler.resolution != p.clip.input_resolution() {
                return Err(Error::internal(format!(
                    "perceptor {}: cutouts of {} px for a model that takes {} px",
                    p.name,
                    p.sampler.resolution,
                    p.clip.input_resolution()
                )));
            }
        }
        let mut rng = Rng::new(seed)?;
        let embedded = embed_prompts(&perceptors, scenes, base_dir, &mut rng)?;
        let cuts: Vec<Option<&[PromptCuts]>> = embedded.cuts.iter().map(|c| c.as_deref()).collect();
        let located = LocatedPrompts::new(&embedded.targets, &cuts)?;
        let (prompts, targets) = (embedded.prompts, embedded.targets);
        let masks = prompt_masks(&perceptors, scenes)?;
        // Every prompt of every scene is embedded: the text towers are done.
        for p in &mut perceptors {
            p.clip.release_text_tower()?;
        }
        Ok(Guide {
            perceptors,
            prompts,
            targets,
            masks,
            located,
            direct_images: Vec::new(),
            tuning: Tuning::default(),
            accumulation: 1,
            graph: std::cell::RefCell::new(GraphRun::default()),
        })
    }

    /// Sets the speed switches the step reads (cutout precision) and, with
    /// `fold-quick-gelu` on, folds QuickGELU into the perceptors' image
    /// towers ([`Clip::fold_quick_gelu`]; once made, the fold stays). The
    /// model-level switches are the models' construction options
    /// ([`crate::models::ModelOptions`]), the device-level ones are set by
    /// [`crate::render::device::apply_device_switches`].
    pub fn set_tuning(&mut self, tuning: Tuning) -> Result<()> {
        if tuning.fold_quick_gelu {
            for p in &mut self.perceptors {
                p.clip.fold_quick_gelu()?;
            }
        }
        self.tuning = tuning;
        Ok(())
    }

    /// pytti's `gradient_accumulation_steps`: each step sends its cutouts
    /// through the perceptors in `steps` passes (every perceptor's batch
    /// split into nearly equal parts), back-propagating each pass before the
    /// next, then makes one Adam update. The update is the one-pass update up
    /// to float rounding (the loss is a mean over the cutouts, so each pass
    /// adds its share); the perceptors' activations are held for one part at
    /// a time. The placements, augmentations and noise are drawn for the
    /// whole batch as in one pass, so the random numbers do not change.
    pub fn set_gradient_accumulation_steps(&mut self, steps: usize) -> Result<()> {
        if steps == 0 {
            return Err(Error::input(
                "gradient_accumulation_steps = 0: a step needs at least one pass; use 1 (the default) or more",
            ));
        }
        self.accumulation = steps;
        Ok(())
    }

    /// The passes a step's cutouts are split into
    /// ([`set_gradient_accumulation_steps`](Self::set_gradient_accumulation_steps)).
    pub fn gradient_accumulation_steps(&self) -> usize {
        self.accumulation
    }

    /// The perceptors, in the scene's order.
    pub fn perceptors(&self) -> &[Perceptor] {
        &self.perceptors
    }

    /// The embedded prompts, `[scene][prompt]`.
    pub fn prompts(&self) -> &[Vec<PromptLoss>] {
        &self.prompts
    }

    /// The location-aware image prompts' cuts, `None` without image prompts.
    pub fn located(&self) -> Option<&LocatedPrompts> {
        self.located.as_ref()
    }

    /// A snapshot of the state's current image for the init/stabilisation
    /// losses: its RGB, its `z_q` (VQGAN) and each perceptor's embedding of
    /// the whole image ([`Target::embeds`]).
    pub fn target(&self, state: &ImageState) -> Result<Target> {
        let rgb = state.image()?;
        let z_q = state.z_q()?;
        let embeds = self.global_embeds(&rgb)?;
        Ok(Target { rgb, z_q, embeds })
    }

    /// A target made from an outside image `[1, 3, H, W]` in `[0, 1]` of the
    /// render's size (the init image, or the warped previous frame), the way
    /// pytti's latent loss builds its target: the RGB term compares with the
    /// image itself, the latent term (VQGAN) with the image's quantised
    /// encoding. [`Guide::target`] instead snapshots the state (its decoded
    /// image), which is the same thing once the state was set from the image
    /// by [`ImageState::set_image`] except for the VQGAN's reconstruction error.
    pub fn target_of_image(&self, state: &ImageState, rgb: &Tensor) -> Result<Target> {
        let (h, w) = rgb_dims(rgb, "a loss target")?;
        if (w, h) != (state.width(), state.height()) {
            return Err(Error::internal(format!(
                "a {w}×{h} loss target for a {}×{} render; resize it to the render size first",
                state.width(),
                state.height()
            )));
        }
        let device = state.device();
        let rgb = rgb
            .f_detach()?
            .f_to_device(device)?
            .f_to_kind(Kind::Float)?
            .f_clamp(0.0, 1.0)?;
        let z_q = match state.model() {
            ImageModel::Palette | ImageModel::LimitedPalette { .. } => None,
            ImageModel::Vqgan(_) => Some(state.model().encode(&rgb, device)?.f_detach()?),
        };
        let embeds = self.global_embeds(&rgb)?;
        Ok(Target { rgb, z_q, embeds })
    }

    /// Sets the direct image prompts (docs/design.md §6a): per entry its
    /// label, its image `[1, 3, H, W]` in `[0, 1]` at the render's size and
    /// an optional grey mask `[1, 1, h, w]` in `[0, 1]` of any size, which is
    /// resized (bilinear, antialiased, as torchvision's `resize`) to the image
    /// and, for a VQGAN, to the latent grid.
    pub fn set_direct_images(
        &mut self,
        state: &ImageState,
        images: Vec<(String, Tensor, Option<Tensor>)>,
    ) -> Result<()> {
        let mut out = Vec::with_capacity(images.len());
        for (label, rgb, mask) in images {
            let target = self.target_of_image(state, &rgb)?;
            let masks = match mask {
                None => None,
                Some(m) => {
                    let m = m.f_to_device(state.device())?.f_to_kind(Kind::Float)?;
                    let resize = |h: i64, w: i64| -> Result<Tensor> {
                        Ok(m.f_internal_upsample_bilinear2d_aa([h, w], false, None, None)?)
                    };
                    let image_mask = resize(state.height(), state.width())?;
                    let latent_mask = match &target.z_q {
                        Some(z) => Some(resize(z.size()[2], z.size()[3])?),
                        None => None,
                    };
                    Some((image_mask, latent_mask))
                }
            };
            out.push(DirectImageTarget {
                label,
                target,
                masks,
            });
        }
        self.direct_images = out;
        Ok(())
    }

    /// Per perceptor, the embedding `[1, D]` of the whole image squeezed to
    /// the perceptor's input.
    fn global_embeds(&self, rgb: &Tensor) -> Result<Vec<Tensor>> {
        self.perceptors
            .iter()
            .map(|p| {
                let x = squeeze_to_input(
                    &rgb.f_to_device(p.clip.device())?,
                    p.clip.input_resolution(),
                )?;
                Ok(tch::no_grad(|| p.clip.encode_image(&x))?.f_to_kind(Kind::Float)?)
            })
            .collect()
    }

    /// The spherical distance (docs/design.md §2) between the whole current image and
    /// the whole target image, averaged over perceptors: a cheap
    /// deterministic gauge of semantic drift for logs and tests.
    pub fn semantic_distance(&self, state: &ImageState, target: &Target) -> Result<f64> {
        let now = self.global_embeds(&state.image()?)?;
        let loss = PromptLoss::semantic(
            "target",
            target.embeds.iter().map(|t| t.shallow_clone()).collect(),
        )?;
        Ok(loss
            .distances(&now)?
            .f_mean(Kind::Float)?
            .f_double_value(&[])?)
    }

    /// Mean distance `[scene][prompt]` of each prompt over one batch of
    /// cutouts of the current image (no gradient). For logs and tests; it
    /// draws its cutouts from `rng` like a step.
    pub fn prompt_distances(&self, state: &ImageState, rng: &mut Rng) -> Result<Vec<Vec<f64>>> {
        let image = state.image()?;
        let embeds = tch::no_grad(|| -> Result<Vec<Tensor>> {
            self.perceptors
                .iter()
                .map(|p| {
                    let cut = p
                        .sampler
                        .sample(&image.f_to_device(p.clip.device())?, rng)?;
                    Ok(p.clip.encode_image(&cut)?.f_to_kind(Kind::Float)?)
                })
                .collect()
        })?;
        self.prompts
            .iter()
            .map(|scene| {
                scene
                    .iter()
                    .map(|p| {
                        Ok(p.distances(&embeds)?
                            .f_mean(Kind::Float)?
                            .f_double_value(&[])?)
                    })
                    .collect()
            })
            .collect()
    }

    /// Checks that the step's weights line up with the guide's scenes and prompts.
    fn check_weights(&self, w: &StepWeights<'_>) -> Result<()> {
        if w.scene_weights.len() != self.prompts.len()
            || w.prompt_weights.len() != self.prompts.len()
        {
            return Err(Error::internal(format!(
                "step weights for {} scenes ({} prompt lists) but the guide has {} scenes",
                w.scene_weights.len(),
                w.prompt_weights.len(),
                self.prompts.len()
            )));
        }
        if w.direct_images.len() != self.direct_images.len() {
            return Err(Error::internal(format!(
                "{} direct image prompt weights for {} direct image prompts",
                w.direct_images.len(),
                self.direct_images.len()
            )));
        }
        for (i, (ws, ps)) in w.prompt_weights.iter().zip(&self.prompts).enumerate() {
            if ws.len() != ps.len() {
                return Err(Error::internal(format!(
                    "scene {}: {} prompt weights for {} prompts",
                    i + 1,
                    ws.len(),
                    ps.len()
                )));
            }
        }
        Ok(())
    }

    /// Checks the weights' shape against the guide and the devices.
    pub(super) fn check_step(&self, state: &ImageState, w: &StepWeights<'_>) -> Result<()> {
        self.check_weights(w)?;
        let device = state.device();
        for p in &self.perceptors {
            if p.clip.device() != device {
                return Err(Error::internal(format!(
                    "perceptor {} is on {:?} but the image is on {device:?}",
                    p.name,
                    p.clip.device()
                )));
            }
        }
        for (name, t) in optional_losses(w) {
            if let Some((_, target)) = t {
                if target.rgb.size() != [1, 3, state.height(), state.width()] {
                    return Err(Error::internal(format!(
                        "{name}: target image {:?} for a render of {}×{}",
                        target.rgb.size(),
                        state.width(),
                        state.height()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether any prompt has a mask other than `a` (the step then uploads
    /// per-crop mask rows).
    pub(super) fn has_masks(&self) -> bool {
        self.masks.iter().any(|m| !m.is_all())
    }

    /// Number of prompts of all scenes together (the weight table's prompt rows).
    pub(super) fn prompt_count(&self) -> usize {
        self.prompts.iter().map(Vec::len).sum()
    }

    /// Whether this step cuts and encodes cutouts: when the guide has prompts
    /// or a semantic loss is given.
    pub(super) fn needs_cutouts(&self, w: &StepWeights<'_>) -> bool {
        self.prompt_count() > 0 || w.semantic_init.is_some() || w.semantic_stabilization.is_some()
    }
}

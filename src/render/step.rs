//! One optimisation step (SPEC §7) and the image model's side of the losses (SPEC §6).
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
//! # The step
//!
//! 1. VQGAN: `z_q` = nearest codebook vector per latent position, with the
//!    straight-through gradient `z + (z_q − z).detach()` (so `z` moves although
//!    the forward value only changes when a position crosses to another code).
//! 2. image = `clamp((decode(z_q) + 1)/2, 0, 1)` (Palette: `clamp(pixels, 0, 1)`)
//!    with pytti's `clamp_with_grad` rule: out of range, the gradient only passes
//!    where a descent step moves the value back into range. This is computed
//!    **exactly**, with [`ClampWithGrad`]'s two backward passes, not with the
//!    straight-through approximation: the step's graph fits that scheme cleanly
//!    (the losses consume only the clamped leaf and the straight-through `z_q`,
//!    which saves no tensor of the decoder's graph), the two passes together
//!    cost the same as one ordinary backward (the first walks the perceptors,
//!    the second the decoder), and the approximation would let the losses keep
//!    pushing saturated values further out of range, from where they need many
//!    steps to come back.
//! 3. For every perceptor, one batch of cutouts (its [`CutoutSampler`], one
//!    batched resampling op) is encoded by CLIP.
//! 4. Loss = `Σ_scenes weight · Σ_prompts loss` (SPEC §2, §3) + the direct and
//!    semantic init/stabilisation losses (SPEC §6); backward; Adam step on the
//!    parameter.
//! 5. VQGAN: `z` is clamped into the codebook's range, per channel: every
//!    latent channel to `[min, max]` of that channel over the codebook
//!    (`quantize.embedding.weight`, GumbelVQ `quantize.embed.weight`), as the
//!    VQGAN+CLIP notebooks do after every `opt.step()`. pytti-core does not
//!    clamp; zoetrope follows the notebooks (decision). The straight-through
//!    gradient does not see how far `z` is from its code, so without the
//!    clamp Adam can carry `z` far past the codebook along a channel, where
//!    its nearest code no longer changes (it is the code with the most
//!    extreme value along that channel): that drift changes nothing in the
//!    image, and has to be undone before a reversed gradient changes the
//!    image again. The bounds are device tensors made when the state is
//!    built, so the step still reads no host number (CUDA graphs).
//!
//! # Proof against the reference
//!
//! `tests/step_reference.rs` runs this step (with [`Adam`], on fixed cutout
//! placements without noise, [`CutoutSampler::with_fixed_placements`]) for a
//! VQModel, a GumbelVQ and the Unlimited Palette with two perceptors, text,
//! negative-with-stop and image prompts, two scenes with fractional weights
//! and the direct init and stabilisation losses, and compares the loss of
//! every step, the gradient of step 1 and the parameter and image after 1 and
//! 10 steps with the same loop computed by the official modules
//! (`scripts/reference/gen_step_reference.py`): the step is the reference's.
//!
//! # Semantic losses (decision)
//!
//! `semantic_init_weight` / `semantic_stabilization_weight` compare the current
//! image with the target **cutout by cutout at the same placements**: each step
//! the target image is cut exactly where the current image is cut (without the
//! augmentation noise) and each current cutout is pulled toward the embedding of
//! the target's cutout at the same place. This keeps the comparison
//! location-aware like pytti's semantic losses (a sky that moved to the bottom
//! of the frame is not "semantically the same"), at the price of one extra
//! gradient-free CLIP forward per perceptor per active semantic loss. The
//! distance and weight/stop rule are a prompt's (SPEC §2).
//!
//! # Use
//!
//! ```ignore
//! let guide = Guide::new(perceptors, &scenes, scene_dir)?;      // embeds prompts once
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

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::guidance::cutouts::{clip_normalize, CutoutSampler};
use crate::guidance::loss::{
    prompt_table_rows, spherical_distance, spherical_distances, straight_through, table_row,
    weighted_table, ClampWithGrad, DirectLoss, PromptLoss, ScenePrompts, WeightStop,
};
use crate::models::clip::{Clip, Tokenizer};
use crate::models::vqgan::{QuantizerKind, Vqgan};
use crate::output::frames::read_rgb;
use crate::output::frames::rgb_to_tensor;
use crate::render::adam::Adam;
use crate::render::warp::{warp, warp_latent, InfillMode, Motion, SamplingMode};
use crate::rng::Rng;
use crate::scene::prompt::{Prompt, PromptSource};
use crate::tuning::Tuning;
use crate::{Error, Result};

/// The image model named by `image_model`: a VQGAN whose latent is optimised,
/// or the Unlimited Palette (RGB pixels optimised directly).
///
/// (One value per render, so the size difference between the variants that
/// clippy warns about costs nothing; boxing would only complicate the API.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ImageModel {
    Vqgan(Vqgan),
    Palette,
}

/// The optimised image: the model, its parameter (float32 leaf that requires
/// grad: `z [1, embed_dim, H/f, W/f]` for a VQGAN, RGB pixels `[1, 3, H, W]`
/// for the Palette, where values may leave `[0, 1]` and are clamped when
/// shown) and the output size in pixels.
#[derive(Debug)]
pub struct ImageState {
    model: ImageModel,
    param: Tensor,
    width: i64,
    height: i64,
    /// VQGAN: the codebook's per-channel minimum and maximum `[1, C, 1, 1]`,
    /// float32 on the parameter's device, which each step clamps `z` into
    /// (module docs); made once here so that the step reads no host number.
    codebook_range: Option<(Tensor, Tensor)>,
}

/// A fresh float32 leaf on its own storage (never a view of the model's
/// codebook or of a caller's image, which Adam's in-place updates would corrupt).
fn leaf(values: &Tensor) -> Result<Tensor> {
    Ok(
        crate::ops::copy(&values.f_detach()?.f_to_kind(Kind::Float)?.f_contiguous()?)?
            .f_set_requires_grad(true)?,
    )
}

/// Checks that `rgb` is one float image `[1, 3, H, W]` and returns `(H, W)`.
fn rgb_dims(rgb: &Tensor, what: &str) -> Result<(i64, i64)> {
    let size = rgb.size();
    match size[..] {
        [1, 3, h, w] if h > 0 && w > 0 && rgb.is_floating_point() => Ok((h, w)),
        _ => Err(Error::internal(format!(
            "{what} needs one RGB image [1, 3, H, W] of floats in [0, 1], got {size:?} {:?}",
            rgb.kind()
        ))),
    }
}

impl ImageModel {
    /// The device the parameter lives on for this model (the VQGAN's device;
    /// the Palette has no weights, so the caller's choice).
    fn device_or(&self, fallback: Device) -> Device {
        match self {
            ImageModel::Vqgan(v) => v.device(),
            ImageModel::Palette => fallback,
        }
    }

    /// The parameter that represents `rgb` (`[1, 3, H, W]`, `[0, 1]`):
    /// VQGAN `z` = the quantised encoding, Palette the pixels.
    fn encode(&self, rgb: &Tensor, device: Device) -> Result<Tensor> {
        let (h, w) = rgb_dims(rgb, "encoding an image")?;
        let rgb = rgb.f_to_device(device)?.f_to_kind(Kind::Float)?;
        match self {
            ImageModel::Palette => leaf(&rgb),
            ImageModel::Vqgan(vqgan) => {
                let f = vqgan.factor();
                if h % f != 0 || w % f != 0 {
                    return Err(Error::input(format!(
                        "a {w}×{h} image cannot be encoded by this VQGAN: width and height must be multiples of {f}; resize the image to the render size first"
                    )));
                }
                // pytti and the VQGAN+CLIP notebooks start from taming's
                // `encode`, which returns the *quantised* latent.
                let z = tch::no_grad(|| -> Result<Tensor> {
                    let z = vqgan.encode(&rgb.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?)?;
                    Ok(vqgan.quantize(&z)?.0)
                })?;
                leaf(&z)
            }
        }
    }
}

impl ImageState {
    /// A random start (SPEC §6): VQGAN `z` = the codebook vectors of uniformly
    /// random tokens; Palette: uniform random RGB. Both drawn on the CPU from
    /// `rng`, so a seed gives the same start on every device. `device` places the Palette's pixels; a VQGAN's latent
    /// lives on the VQGAN's device. VQGAN sizes must be multiples of its factor
    /// (the scene loader rounds them down).
    pub fn random(
        model: ImageModel,
        width: i64,
        height: i64,
        device: Device,
        rng: &mut Rng,
    ) -> Result<ImageState> {
        if width < 1 || height < 1 {
            return Err(Error::input(format!(
                "the image size {width}×{height} is empty; set width and height to at least 1"
            )));
        }
        let param = match &model {
            ImageModel::Palette => {
                let rgb = rng.rand(&[1, 3, height, width])?;
                leaf(&rgb.f_to_device(device)?)?
            }
            ImageModel::Vqgan(vqgan) => {
                let f = vqgan.factor();
                if width % f != 0 || height % f != 0 {
                    return Err(Error::input(format!(
                        "width × height = {width}×{height}: this VQGAN needs multiples of {f}"
                    )));
                }
                let n = vqgan.config().n_embed;
                let tokens = rng.randint(n, &[1, height / f, width / f])?;
                let z = tch::no_grad(|| vqgan.embed_codes(&tokens.f_to_device(vqgan.device())?))?;
                leaf(&z)?
            }
        };
        ImageState::assemble(model, param, width, height)
    }

    /// Starts from an image `[1, 3, H, W]` float in `[0, 1]` on any device
    /// (`init_image`, already resized to the render size). VQGAN: `z` is the
    /// *quantised* encoding, as pytti and the notebooks do (taming's `encode`
    /// returns `z_q`); so the first decode shows the VQGAN's reconstruction.
    /// Palette: the pixels are copied. The Palette's parameter goes to the
    /// image's device.
    pub fn from_image(model: ImageModel, rgb: &Tensor) -> Result<ImageState> {
        let (height, width) = rgb_dims(rgb, "starting from an image")?;
        let device = model.device_or(rgb.device());
        let param = model.encode(rgb, device)?;
        ImageState::assemble(model, param, width, height)
    }

    /// The state of a parameter just made, with the VQGAN's codebook range.
    fn assemble(model: ImageModel, param: Tensor, width: i64, height: i64) -> Result<ImageState> {
        let codebook_range = match &model {
            ImageModel::Palette => None,
            ImageModel::Vqgan(vqgan) => {
                let channels = vqgan.config().embed_dim;
                let range = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
                    let cb = vqgan
                        .codebook()
                        .f_detach()?
                        .f_to_kind(Kind::Float)?
                        .f_to_device(param.device())?;
                    let (lo, _) = cb.f_min_dim(0, false)?;
                    let (hi, _) = cb.f_max_dim(0, false)?;
                    Ok((
                        lo.f_view([1, channels, 1, 1])?,
                        hi.f_view([1, channels, 1, 1])?,
                    ))
                })?;
                Some(range)
            }
        };
        Ok(ImageState {
            model,
            param,
            width,
            height,
            codebook_range,
        })
    }

    /// VQGAN: clamps `z` into the codebook's per-channel range, in place on
    /// the device (the notebooks' `z.copy_(z.maximum(z_min).minimum(z_max))`
    /// after every Adam step). The Palette's pixels are left as they are.
    fn clamp_to_codebook(&mut self) -> Result<()> {
        if let Some((lo, hi)) = &self.codebook_range {
            let _ = tch::no_grad(|| self.param.f_clamp_tensor_(Some(lo), Some(hi)))?;
        }
        Ok(())
    }

    /// Replaces the state by the encoding of `rgb` (after a warp with
    /// `reencode_each_frame = true`), keeping the same leaf tensor so an Adam
    /// bound to it stays valid. The image must have the state's size.
    pub fn set_image(&mut self, rgb: &Tensor) -> Result<()> {
        let (h, w) = rgb_dims(rgb, "re-encoding an image")?;
        if (w, h) != (self.width, self.height) {
            return Err(Error::internal(format!(
                "re-encoding a {w}×{h} image into a {}×{} render",
                self.width, self.height
            )));
        }
        let values = self.model.encode(rgb, self.param.device())?;
        self.set_param(&values)
    }

    /// Warps the parameter itself by one frame's motion: the VQGAN latent grid
    /// with [`warp_latent`] (`reencode_each_frame = false`), the Palette's pixels
    /// with [`warp`]. Values are copied into the existing leaf.
    pub fn warp_latent(
        &mut self,
        motion: &Motion,
        sampling: SamplingMode,
        infill: InfillMode,
    ) -> Result<()> {
        let current = self.param.f_detach()?;
        let moved = match &self.model {
            ImageModel::Vqgan(vqgan) => {
                warp_latent(&current, motion, vqgan.factor() as f64, sampling, infill)?
            }
            ImageModel::Palette => warp(&current, motion, sampling, infill)?,
        };
        self.set_param(&moved)
    }

    /// The current image `[1, 3, H, W]` float32 in `[0, 1]`, detached, on the
    /// parameter's device: the decoded quantised latent (VQGAN) or the clamped
    /// pixels (Palette). For frames, warps and targets.
    pub fn image(&self) -> Result<Tensor> {
        tch::no_grad(|| -> Result<Tensor> {
            let x = match &self.model {
                ImageModel::Palette => self.param.f_detach()?,
                ImageModel::Vqgan(vqgan) => {
                    let (z_q, _) = vqgan.quantize(&self.param)?;
                    vqgan
                        .decode(&z_q)?
                        .f_to_kind(Kind::Float)?
                        .f_add_scalar(1.0)?
                        .f_div_scalar(2.0)?
                }
            };
            Ok(x.f_clamp(0.0, 1.0)?
                .f_to_kind(Kind::Float)?
                .f_contiguous()?)
        })
    }

    /// The quantised latent `z_q` (VQGAN only), float32, detached.
    pub fn z_q(&self) -> Result<Option<Tensor>> {
        match &self.model {
            ImageModel::Palette => Ok(None),
            ImageModel::Vqgan(vqgan) => {
                let (z_q, _) = tch::no_grad(|| vqgan.quantize(&self.param))?;
                Ok(Some(z_q.f_to_kind(Kind::Float)?.f_contiguous()?))
            }
        }
    }

    /// The optimised tensor (float32 leaf that requires grad): for Adam, and to
    /// save on resume.
    pub fn param(&self) -> &Tensor {
        &self.param
    }

    /// The optimised tensor, mutably, for [`Adam::step`].
    pub fn param_mut(&mut self) -> &mut Tensor {
        &mut self.param
    }

    /// Copies `value` (any kind or device, the parameter's shape) into the
    /// parameter, keeping the same leaf tensor (resume, re-encode, warp).
    pub fn set_param(&mut self, value: &Tensor) -> Result<()> {
        if value.size() != self.param.size() {
            return Err(Error::input(format!(
                "the saved image state is shaped {:?} but this render needs {:?}: it belongs to another size or image model",
                value.size(),
                self.param.size()
            )));
        }
        let value = value
            .f_detach()?
            .f_to_device(self.param.device())?
            .f_to_kind(Kind::Float)?;
        tch::no_grad(|| self.param.f_copy_(&value))?;
        Ok(())
    }

    /// The learning rate the model is tuned for (SPEC §1 `learning_rate`):
    /// 0.1 for a VQGAN, 0.15 for a gumbel VQGAN, 0.02 for the Unlimited Palette.
    pub fn default_lr(&self) -> f64 {
        match &self.model {
            ImageModel::Vqgan(v) if v.config().quantizer == QuantizerKind::Gumbel => 0.15,
            ImageModel::Vqgan(_) => 0.1,
            ImageModel::Palette => 0.02,
        }
    }

    /// The image model.
    pub fn model(&self) -> &ImageModel {
        &self.model
    }

    /// Output width in pixels.
    pub fn width(&self) -> i64 {
        self.width
    }

    /// Output height in pixels.
    pub fn height(&self) -> i64 {
        self.height
    }

    /// The device everything of the step runs on.
    pub fn device(&self) -> Device {
        self.param.device()
    }
}

/// One CLIP model with the cutout sampler that feeds it (built from
/// `cutouts`, `cut_pow`, `cutout_border` and the model's input resolution).
#[derive(Debug)]
pub struct Perceptor {
    /// The perceptor's name as the scene wrote it (`ViT-B/32`), for messages.
    pub name: String,
    pub clip: Clip,
    pub sampler: CutoutSampler,
}

/// A snapshot the init/stabilisation losses pull toward (SPEC §6), made by
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
    /// One per scene, from `Timeline::scene_weights(step)` (SPEC §3).
    pub scene_weights: Vec<f64>,
    /// `[scene][prompt]`, each prompt's weight and stop at this step.
    pub prompt_weights: Vec<Vec<WeightStop>>,
    pub direct_init: Option<(WeightStop, &'a Target)>,
    pub direct_stabilization: Option<(WeightStop, &'a Target)>,
    pub semantic_init: Option<(WeightStop, &'a Target)>,
    pub semantic_stabilization: Option<(WeightStop, &'a Target)>,
}

/// The perceptors and the embedded prompts of every scene: everything that
/// turns an image state into a loss.
#[derive(Debug)]
pub struct Guide {
    perceptors: Vec<Perceptor>,
    /// `[scene][prompt]`, each with one embedding per perceptor.
    prompts: Vec<Vec<PromptLoss>>,
    /// Per perceptor, every prompt's embedding stacked `[P, D]` (scenes in
    /// order, then prompts): the targets of one batched distance computation.
    targets: Vec<Tensor>,
    /// The speed switches the step reads (cutout precision, CUDA graphs).
    tuning: Tuning,
    /// The captured step, on CUDA.
    graph: std::cell::RefCell<GraphRun>,
}

/// Where the time of steps goes, for `zoetrope bench --breakdown`: the
/// device is synchronised at every phase boundary, so the phases add up to a
/// little more than an unprofiled step (which never waits on the device).
#[derive(Debug, Default)]
pub struct PhaseTimes {
    last: Option<Instant>,
    /// `(phase, seconds)` summed over every profiled step, in step order.
    pub totals: Vec<(&'static str, f64)>,
}

impl PhaseTimes {
    /// Waits for the device, then charges the time since the previous mark
    /// to `phase` (the first mark of a step only starts the clock).
    fn mark(&mut self, device: Device, phase: Option<&'static str>) {
        crate::gpu::synchronize(device);
        let now = Instant::now();
        if let (Some(phase), Some(last)) = (phase, self.last) {
            let dt = (now - last).as_secs_f64();
            match self.totals.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, t)) => *t += dt,
                None => self.totals.push((phase, dt)),
            }
        }
        self.last = Some(now);
    }
}

/// Marks a phase boundary when profiling.
fn mark(phases: &mut Option<&mut PhaseTimes>, device: Device, phase: Option<&'static str>) {
    if let Some(p) = phases.as_deref_mut() {
        p.mark(device, phase);
    }
}

/// `clip.tokenize`-style rows for one prompt, on `device`.
fn embed_text(clip: &Clip, text: &str) -> Result<Tensor> {
    let tokens = Tokenizer::shared().tokenize(&[text], clip.context_length() as usize, false)?;
    let tokens = tokens.f_to_device(clip.device())?;
    let e = tch::no_grad(|| clip.encode_text(&tokens))?;
    Ok(e.f_to_kind(Kind::Float)?.f_detach()?)
}

/// OpenAI CLIP's image preprocessing for an image `[1, 3, H, W]` in `[0, 1]`:
/// bicubic resize of the short side to `r` (antialiased, as PIL and
/// torchvision's `Resize(r, BICUBIC)` do; the long side `floor(r · long/short)`),
/// centre crop `r × r` (offsets `round((side − r)/2)`), CLIP normalisation.
/// Returns `[1, 3, r, r]` float32 on the image's device.
pub fn clip_preprocess(rgb: &Tensor, r: i64) -> Result<Tensor> {
    let (h, w) = rgb_dims(rgb, "CLIP preprocessing")?;
    let (nh, nw) = if w <= h {
        (((r as f64) * h as f64 / w as f64).floor() as i64, r)
    } else {
        (r, ((r as f64) * w as f64 / h as f64).floor() as i64)
    };
    let x = rgb.f_to_kind(Kind::Float)?;
    let resized = if (nh, nw) == (h, w) {
        x
    } else {
        x.f_internal_upsample_bicubic2d_aa([nh, nw], false, None, None)?
    };
    let top = ((nh - r) as f64 / 2.0).round_ties_even() as i64;
    let left = ((nw - r) as f64 / 2.0).round_ties_even() as i64;
    let crop = resized
        .f_narrow(2, top, r)?
        .f_narrow(3, left, r)?
        .f_clamp(0.0, 1.0)?;
    clip_normalize(&crop)
}

/// The whole image squeezed to `r × r` (antialiased bicubic), normalised.
fn squeeze_to_input(rgb: &Tensor, r: i64) -> Result<Tensor> {
    let x = rgb
        .f_to_kind(Kind::Float)?
        .f_internal_upsample_bicubic2d_aa([r, r], false, None, None)?
        .f_clamp(0.0, 1.0)?;
    clip_normalize(&x)
}

/// Reads an image prompt's file, naming the prompt and the file on failure.
fn load_prompt_image(path: &Path, raw: &str, base_dir: &Path) -> Result<Tensor> {
    let resolved = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    };
    if !resolved.is_file() {
        return Err(Error::input(format!(
            "image prompt \"{raw}\": the file {} does not exist (relative paths are read from the scene file's folder {})",
            resolved.display(),
            base_dir.display()
        )));
    }
    let img = read_rgb(&resolved).map_err(|e| e.context(format!("image prompt \"{raw}\"")))?;
    rgb_to_tensor(&img)
}

impl Guide {
    /// Embeds every prompt of every scene with every perceptor, once, then
    /// frees the perceptors' text towers ([`Clip::release_text_tower`]).
    ///
    /// Text goes through CLIP's tokenizer and `encode_text` (a prompt longer
    /// than the context is an error quoting it). An image prompt `[path]` is
    /// read (relative paths against `base_dir`, the scene file's folder),
    /// prepared as OpenAI's preprocessing does ([`clip_preprocess`]) and
    /// encoded with `encode_image`. Identical prompts are embedded once.
    pub fn new(
        mut perceptors: Vec<Perceptor>,
        scenes: &[Vec<Prompt>],
        base_dir: &Path,
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
        let mut cache: HashMap<(bool, String), Vec<Tensor>> = HashMap::new();
        let mut images: HashMap<std::path::PathBuf, Tensor> = HashMap::new();
        let mut prompts = Vec::with_capacity(scenes.len());
        for scene in scenes {
            let mut losses = Vec::with_capacity(scene.len());
            for prompt in scene {
                let key = match &prompt.source {
                    PromptSource::Text(t) => (false, t.clone()),
                    PromptSource::Image(p) => (true, p.to_string_lossy().into_owned()),
                };
                let embeds = match cache.get(&key) {
                    Some(e) => e.iter().map(|t| t.shallow_clone()).collect(),
                    None => {
                        let mut embeds = Vec::with_capacity(perceptors.len());
                        for p in &perceptors {
                            let e = match &prompt.source {
                                PromptSource::Text(text) => embed_text(&p.clip, text)
                                    .map_err(|e| e.context(format!("perceptor {}", p.name)))?,
                                PromptSource::Image(path) => {
                                    let rgb = match images.get(path) {
                                        Some(t) => t.shallow_clone(),
                                        None => {
                                            let t = load_prompt_image(path, &prompt.raw, base_dir)?;
                                            images.insert(path.clone(), t.shallow_clone());
                                            t
                                        }
                                    };
                                    let x = clip_preprocess(
                                        &rgb.f_to_device(p.clip.device())?,
                                        p.clip.input_resolution(),
                                    )?;
                                    tch::no_grad(|| p.clip.encode_image(&x))?
                                        .f_to_kind(Kind::Float)?
                                }
                            };
                            embeds.push(e);
                        }
                        cache.insert(key, embeds.iter().map(|t| t.shallow_clone()).collect());
                        embeds
                    }
                };
                losses.push(PromptLoss::new(prompt.raw.clone(), embeds)?);
            }
            prompts.push(losses);
        }
        let mut targets = Vec::with_capacity(perceptors.len());
        for (i, p) in perceptors.iter().enumerate() {
            let rows = prompts
                .iter()
                .flatten()
                .map(|l: &PromptLoss| l.embeds[i].f_reshape([1, -1]))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            targets.push(if rows.is_empty() {
                Tensor::f_zeros([0, 1], (Kind::Float, p.clip.device()))?
            } else {
                Tensor::f_cat(&rows, 0)?.f_to_kind(Kind::Float)?
            });
        }
        // Every prompt of every scene is embedded: the text towers are done.
        for p in &mut perceptors {
            p.clip.release_text_tower()?;
        }
        Ok(Guide {
            perceptors,
            prompts,
            targets,
            tuning: Tuning::default(),
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

    /// The perceptors, in the scene's order.
    pub fn perceptors(&self) -> &[Perceptor] {
        &self.perceptors
    }

    /// The embedded prompts, `[scene][prompt]`.
    pub fn prompts(&self) -> &[Vec<PromptLoss>] {
        &self.prompts
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
        if (w, h) != (state.width, state.height) {
            return Err(Error::internal(format!(
                "a {w}×{h} loss target for a {}×{} render; resize it to the render size first",
                state.width, state.height
            )));
        }
        let device = state.device();
        let rgb = rgb
            .f_detach()?
            .f_to_device(device)?
            .f_to_kind(Kind::Float)?
            .f_clamp(0.0, 1.0)?;
        let z_q = match &state.model {
            ImageModel::Palette => None,
            ImageModel::Vqgan(_) => Some(state.model.encode(&rgb, device)?.f_detach()?),
        };
        let embeds = self.global_embeds(&rgb)?;
        Ok(Target { rgb, z_q, embeds })
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

    /// The spherical distance (SPEC §2) between the whole current image and
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

    /// One optimisation step (SPEC §7, module docs): forward through the
    /// straight-through quantiser, the decoder, the exact clamp rule and every
    /// perceptor's cutouts; the weighted prompt losses (SPEC §2, §3) plus the
    /// init/stabilisation losses given (SPEC §6); backward; the Adam update of
    /// the parameter. Returns the total loss as a detached scalar tensor on the
    /// device (not read back here, so the GPU is never waited on).
    ///
    /// The step has a host half ([`prepare`](Self::prepare): crop placements,
    /// weights, Adam's bias corrections, uploaded together) and a device half
    /// that reads no number on the host. On CUDA (with the `cuda-graphs`
    /// switch on) the device half is captured into a CUDA graph after two
    /// ordinary steps and replayed from then on: one launch instead of about
    /// a thousand, the same kernels and the same random numbers. A change of
    /// what the step reads (another parameter, Adam state or loss target, a
    /// loss added or removed) captures it anew.
    pub fn step(
        &self,
        state: &mut ImageState,
        adam: &mut Adam,
        w: &StepWeights<'_>,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        self.check_step(state, w)?;
        let inputs = self.prepare(state, adam, w, rng)?;
        let device = state.device();
        if self.tuning.cuda_graphs && device.is_cuda() && crate::gpu::shim_built() {
            return self.step_graphed(state, adam, w, &inputs, rng);
        }
        self.device_step(state, adam, w, &inputs, rng, &mut None)
    }

    /// [`step`](Self::step) without graphs, timing its phases into `phases`
    /// (which waits on the device at each phase boundary).
    pub fn step_profiled(
        &self,
        state: &mut ImageState,
        adam: &mut Adam,
        w: &StepWeights<'_>,
        rng: &mut Rng,
        phases: &mut PhaseTimes,
    ) -> Result<Tensor> {
        self.check_step(state, w)?;
        let inputs = self.prepare(state, adam, w, rng)?;
        self.device_step(state, adam, w, &inputs, rng, &mut Some(phases))
    }

    /// Checks the weights' shape against the guide and the devices.
    fn check_step(&self, state: &ImageState, w: &StepWeights<'_>) -> Result<()> {
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
                if target.rgb.size() != [1, 3, state.height, state.width] {
                    return Err(Error::internal(format!(
                        "{name}: target image {:?} for a render of {}×{}",
                        target.rgb.size(),
                        state.width,
                        state.height
                    )));
                }
            }
        }
        Ok(())
    }

    /// Number of prompts of all scenes together (the weight table's prompt rows).
    fn prompt_count(&self) -> usize {
        self.prompts.iter().map(Vec::len).sum()
    }

    /// Whether this step cuts and encodes cutouts: when the guide has prompts
    /// or a semantic loss is given.
    fn needs_cutouts(&self, w: &StepWeights<'_>) -> bool {
        self.prompt_count() > 0 || w.semantic_init.is_some() || w.semantic_stabilization.is_some()
    }

    /// The host half of a step: draws the crop placements from `rng`, evaluates them into pooling bins, writes the weight table
    /// (one row `(scene weight, weight, stop)` per prompt of every scene, then
    /// one row per init/stabilisation loss) and Adam's two scalars, and
    /// uploads it all without waiting on the GPU.
    pub fn prepare(
        &self,
        state: &ImageState,
        adam: &mut Adam,
        w: &StepWeights<'_>,
        rng: &mut Rng,
    ) -> Result<StepInputs> {
        let device = state.device();
        let (wd, h) = (state.width, state.height);
        let mut bins = Vec::new();
        if self.needs_cutouts(w) {
            for p in &self.perceptors {
                let crops = p.sampler.place(wd, h, rng)?;
                let b = p.sampler.bins(&crops, wd, h)?;
                let t = Tensor::f_from_slice(&b)?.f_view([
                    4,
                    crops.len() as i64,
                    p.sampler.resolution,
                ])?;
                bins.push(crate::gpu::upload(&t, device)?);
            }
        }
        let scenes: Vec<ScenePrompts<'_>> = self
            .prompts
            .iter()
            .zip(&w.scene_weights)
            .zip(&w.prompt_weights)
            .map(|((ps, &weight), wss)| ScenePrompts {
                weight,
                prompts: ps.iter().zip(wss).map(|(p, ws)| (p, *ws)).collect(),
            })
            .collect();
        let mut table = prompt_table_rows(&scenes)?;
        for (name, t) in optional_losses(w) {
            match t {
                Some((ws, _)) => {
                    ws.validate(name)?;
                    table.extend(table_row(1.0, ws));
                }
                None => table.extend([0.0, 0.0, f32::NEG_INFINITY]),
            }
        }
        let [step_size, bc2] = adam.advance();
        table.extend([step_size as f32, bc2 as f32]);
        let packed = crate::gpu::upload(&Tensor::f_from_slice(&table)?, device)?;
        Ok(StepInputs { bins, packed })
    }

    /// A step with the device half replayed from a CUDA graph (module docs).
    fn step_graphed(
        &self,
        state: &mut ImageState,
        adam: &mut Adam,
        w: &StepWeights<'_>,
        inputs: &StepInputs,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let key = GraphKey::of(state, adam, w);
        let mut run = self.graph.borrow_mut();
        if run.failed {
            drop(run);
            return self.device_step(state, adam, w, inputs, rng, &mut None);
        }
        if run.key.as_ref() != Some(&key) {
            *run = GraphRun {
                key: Some(key),
                ..GraphRun::default()
            };
        }
        if let (Some(graph), Some(statics), Some(loss)) = (&run.graph, &run.statics, &run.loss) {
            statics.load(inputs)?;
            graph.replay()?;
            return crate::ops::copy(&loss.f_detach()?);
        }
        if run.eager_steps < GRAPH_WARMUP_STEPS {
            run.eager_steps += 1;
            drop(run);
            return self.device_step(state, adam, w, inputs, rng, &mut None);
        }
        let device = state.device();
        let statics = inputs.copy()?;
        // The eager steps' cached blocks go back first, so that the graph's
        // own pool does not come on top of them.
        crate::gpu::empty_cache(device);
        let captured = crate::gpu::CudaGraph::capture(device, || {
            self.device_step(state, adam, w, &statics, rng, &mut None)
        });
        match captured {
            Ok((graph, loss)) => {
                graph.replay()?;
                let out = crate::ops::copy(&loss.f_detach()?)?;
                run.graph = Some(graph);
                run.statics = Some(statics);
                run.loss = Some(loss);
                crate::gpu::empty_cache(device);
                Ok(out)
            }
            Err(e) => {
                eprintln!(
                    "note: the step could not be captured as a CUDA graph ({e}); continuing without graphs"
                );
                run.failed = true;
                drop(run);
                self.device_step(state, adam, w, inputs, rng, &mut None)
            }
        }
    }

    /// The device half of a step (module docs): reads only tensors, so a
    /// CUDA graph can capture it.
    fn device_step(
        &self,
        state: &mut ImageState,
        adam: &Adam,
        w: &StepWeights<'_>,
        inputs: &StepInputs,
        rng: &mut Rng,
        phases: &mut Option<&mut PhaseTimes>,
    ) -> Result<Tensor> {
        let device = state.device();
        let prompt_count = self.prompt_count();
        let p_count = prompt_count as i64;
        let table = inputs.table(prompt_count)?;
        mark(phases, device, None);

        // 1–2: the image, with the straight-through z_q kept for the latent loss.
        let (unclamped, z_q) = match &state.model {
            ImageModel::Palette => (state.param.shallow_clone(), None),
            ImageModel::Vqgan(vqgan) => {
                let (codes, _) = vqgan.quantize(&state.param)?;
                let z_q = straight_through(&state.param, &codes.f_to_kind(Kind::Float)?)?;
                let decoded = vqgan.decode(&z_q)?.f_to_kind(Kind::Float)?;
                (decoded.f_add_scalar(1.0)?.f_div_scalar(2.0)?, Some(z_q))
            }
        };
        let clamp = ClampWithGrad::new(&unclamped, 0.0, 1.0)?;
        let image = clamp.output();
        mark(phases, device, Some("quantise + decode"));
        // Zero attached to the image leaf: the accumulator, and a valid
        // backward even when every term is off.
        let mut total = image.f_sum(Kind::Float)?.f_mul_scalar(0.0)?;

        // 3: cutouts and their embeddings.
        let semantic: Vec<(usize, &Target)> = optional_losses(w)
            .into_iter()
            .enumerate()
            .filter(|(k, _)| *k >= 2)
            .filter_map(|(k, (_, t))| t.map(|(_, target)| (k, target)))
            .collect();
        let mut checkpoints = Vec::new();
        if self.needs_cutouts(w) {
            let mut embeds = Vec::with_capacity(self.perceptors.len());
            let mut target_cuts: Vec<Vec<Tensor>> = semantic.iter().map(|_| Vec::new()).collect();
            for (i, p) in self.perceptors.iter().enumerate() {
                let bins = inputs.bins.get(i).ok_or_else(|| {
                    Error::internal(format!("no cutout bins for perceptor {}", p.name))
                })?;
                // bf16 models: resample in bf16 (tensor-core products; the
                // perceptor rounds its input to bf16 anyway).
                let source = if self.tuning.low_precision_cutouts && p.clip.kind() != Kind::Float {
                    image.f_to_kind(p.clip.kind())?
                } else {
                    image.shallow_clone()
                };
                let cuts = p.sampler.sample_with_bins(&source, bins, rng)?;
                mark(phases, device, Some("cutouts"));
                let e = if self.tuning.checkpoint_perceptors {
                    let (e, checkpoint) = p.clip.encode_image_checkpointed(&cuts)?;
                    checkpoints.extend(checkpoint);
                    e
                } else {
                    p.clip.encode_image(&cuts)?
                };
                embeds.push(e.f_to_kind(Kind::Float)?);
                mark(phases, device, Some("perceptors"));
                for (k, (_, target)) in semantic.iter().enumerate() {
                    let e = tch::no_grad(|| -> Result<Tensor> {
                        let rgb = target.rgb.f_to_device(device)?.f_to_kind(Kind::Float)?;
                        let cut = clip_normalize(&p.sampler.resample_bins(&rgb, bins)?)?;
                        Ok(p.clip.encode_image(&cut)?.f_to_kind(Kind::Float)?)
                    })?;
                    target_cuts[k].push(e);
                }
            }
            if p_count > 0 {
                let distances = self
                    .targets
                    .iter()
                    .zip(&embeds)
                    .map(|(t, e)| spherical_distances(e, t))
                    .collect::<Result<Vec<_>>>()?;
                let distances = Tensor::f_cat(&distances, 1)?; // [P, Σ N]
                total = total.f_add(&weighted_table(
                    &distances,
                    &table.f_narrow(0, 0, p_count)?,
                )?)?;
            }
            for ((k, _), cuts) in semantic.iter().zip(target_cuts) {
                let raw = embeds
                    .iter()
                    .zip(&cuts)
                    .map(|(e, t)| spherical_distance(e, t))
                    .collect::<Result<Vec<_>>>()?;
                let raw = Tensor::f_cat(&raw, 0)?.f_unsqueeze(0)?;
                let row = table.f_narrow(0, p_count + *k as i64, 1)?;
                total = total.f_add(&weighted_table(&raw, &row)?)?;
            }
        }

        // 4: direct losses toward pixels (and the latent, for a VQGAN).
        for (k, (name, entry)) in optional_losses(w).into_iter().enumerate().take(2) {
            let Some((_, target)) = entry else { continue };
            let loss = match (&z_q, &target.z_q) {
                (Some(_), Some(tz)) => DirectLoss::latent(name, tz, &target.rgb),
                (None, _) => DirectLoss::rgb(name, &target.rgb),
                (Some(_), None) => {
                    return Err(Error::internal(format!(
                        "{name}: a VQGAN render needs a target with a latent (make it with Guide::target)"
                    )))
                }
            };
            let raw = loss.raw(z_q.as_ref(), image)?.f_view([1, 1])?;
            let row = table.f_narrow(0, p_count + k as i64, 1)?;
            total = total.f_add(&weighted_table(&raw, &row)?)?;
        }

        mark(phases, device, Some("losses"));
        clamp.backward_with(&total, || {
            for c in &checkpoints {
                c.backward()?;
            }
            mark(phases, device, Some("backward: losses → image"));
            Ok(())
        })?;
        mark(phases, device, Some("backward: image → latent"));
        adam.apply(state.param_mut(), &inputs.adam(prompt_count)?)?;
        state.clamp_to_codebook()?;
        mark(phases, device, Some("adam"));
        Ok(total.f_detach()?)
    }
}

/// The four init/stabilisation losses of a step, in the weight table's order.
fn optional_losses<'a>(
    w: &StepWeights<'a>,
) -> [(&'static str, Option<(WeightStop, &'a Target)>); 4] {
    [
        ("direct_init_weight", w.direct_init),
        ("direct_stabilization_weight", w.direct_stabilization),
        ("semantic_init_weight", w.semantic_init),
        ("semantic_stabilization_weight", w.semantic_stabilization),
    ]
}

/// Eager steps before a step is captured as a CUDA graph: the first one
/// allocates the gradient and lets cuDNN time its algorithms (when autotuning
/// is on; timing cannot happen during a capture), the second runs as the
/// graph will.
const GRAPH_WARMUP_STEPS: usize = 2;

/// What a step uploads from the host, on the device ([`Guide::prepare`]).
#[derive(Debug)]
pub struct StepInputs {
    /// Per perceptor, the cutouts' pooling bins `[4, N, r]` int64 (empty
    /// when the step needs no cutouts).
    bins: Vec<Tensor>,
    /// float32: the weight table `[(P + 4) × 3]`, then Adam's two scalars.
    packed: Tensor,
}

impl StepInputs {
    /// The weight table `[P + 4, 3]`.
    fn table(&self, prompts: usize) -> Result<Tensor> {
        let rows = prompts as i64 + 4;
        Ok(self.packed.f_narrow(0, 0, rows * 3)?.f_view([rows, 3])?)
    }

    /// Adam's `[lr / bc1, bc2]`.
    fn adam(&self, prompts: usize) -> Result<Tensor> {
        Ok(self.packed.f_narrow(0, (prompts as i64 + 4) * 3, 2)?)
    }

    /// Device copies that a CUDA graph can read from for as long as it lives.
    fn copy(&self) -> Result<StepInputs> {
        Ok(StepInputs {
            bins: self
                .bins
                .iter()
                .map(crate::ops::copy)
                .collect::<Result<_>>()?,
            packed: crate::ops::copy(&self.packed)?,
        })
    }

    /// Writes `other`'s values into these tensors (same shapes).
    fn load(&self, other: &StepInputs) -> Result<()> {
        if self.bins.len() != other.bins.len() {
            return Err(Error::internal(
                "cutout bins for another number of perceptors",
            ));
        }
        tch::no_grad(|| -> Result<()> {
            for (s, o) in self.bins.iter().zip(&other.bins) {
                s.shallow_clone().f_copy_(o)?;
            }
            self.packed.shallow_clone().f_copy_(&other.packed)?;
            Ok(())
        })
    }
}

/// What a captured step reads besides its inputs: if any of it changes,
/// the graph would read stale or freed memory, so the step is captured anew.
#[derive(Debug, PartialEq, Eq)]
struct GraphKey {
    param: usize,
    adam: [usize; 2],
    targets: [Option<(usize, usize)>; 4],
    param_shape: Vec<i64>,
}

impl GraphKey {
    fn of(state: &ImageState, adam: &Adam, w: &StepWeights<'_>) -> GraphKey {
        let ptr = |t: &Tensor| t.data_ptr() as usize;
        let [(_, m), (_, v)] = adam.tensors();
        let targets = optional_losses(w).map(|(_, t)| {
            t.map(|(_, target)| (ptr(&target.rgb), target.z_q.as_ref().map_or(0, ptr)))
        });
        GraphKey {
            param: ptr(&state.param),
            adam: [ptr(m), ptr(v)],
            targets,
            param_shape: state.param.size(),
        }
    }
}

/// The captured step of a [`Guide`] and what it was captured for.
#[derive(Debug, Default)]
struct GraphRun {
    key: Option<GraphKey>,
    eager_steps: usize,
    graph: Option<crate::gpu::CudaGraph>,
    statics: Option<StepInputs>,
    loss: Option<Tensor>,
    /// Capture failed once: this guide runs without graphs from then on.
    failed: bool,
}

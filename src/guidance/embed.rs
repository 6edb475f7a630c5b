//! Prompt embedding: every prompt of every scene through every perceptor,
//! once per render (text with CLIP's tokenizer and `encode_text`, image
//! prompts with OpenAI's preprocessing, [`clip_preprocess`], and
//! `encode_image`), and the image preprocessing that `zoetrope score` shares.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use crate::guidance::cutouts::clip_normalize;
use crate::guidance::guide::Perceptor;
use crate::guidance::image::rgb_dims;
use crate::guidance::located::PromptCuts;
use crate::guidance::loss::PromptLoss;
use crate::guidance::mask::{ImageMask, MaskTarget};
use crate::models::clip::{Clip, Tokenizer};
use crate::output::frames::{read_rgb, rgb_to_tensor};
use crate::rng::Rng;
use crate::scene::prompt::{Prompt, PromptMask, PromptSource};
use crate::{Error, Result};

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
pub(crate) fn squeeze_to_input(rgb: &Tensor, r: i64) -> Result<Tensor> {
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

/// Every prompt of every scene embedded by every perceptor.
#[derive(Debug)]
pub(crate) struct Embedded {
    /// `[scene][prompt]` (identical prompts and image files are embedded once).
    pub prompts: Vec<Vec<PromptLoss>>,
    /// Per perceptor, every prompt's embedding stacked `[P, D]` (scenes in
    /// order, then prompts).
    pub targets: Vec<Tensor>,
    /// Per prompt in the same order, an image prompt's own cuts per
    /// perceptor (location-aware, [`PromptCuts`]); `None` for text.
    pub cuts: Vec<Option<Vec<PromptCuts>>>,
}

/// Every prompt of every scene embedded by every perceptor ([`Embedded`]);
/// an image prompt's cuts are drawn from `rng`, in prompt order.
pub(crate) fn embed_prompts(
    perceptors: &[Perceptor],
    scenes: &[Vec<Prompt>],
    base_dir: &Path,
    rng: &mut Rng,
) -> Result<Embedded> {
    type Done = (Vec<Tensor>, Option<Vec<PromptCuts>>);
    let mut cache: HashMap<(bool, String), Done> = HashMap::new();
    let mut images: HashMap<PathBuf, Tensor> = HashMap::new();
    let mut prompts = Vec::with_capacity(scenes.len());
    let mut cuts = Vec::new();
    for scene in scenes {
        let mut losses = Vec::with_capacity(scene.len());
        for prompt in scene {
            let key = match &prompt.source {
                PromptSource::Text(t) => (false, t.clone()),
                PromptSource::Image(p) => (true, p.to_string_lossy().into_owned()),
            };
            if !cache.contains_key(&key) {
                let mut embeds = Vec::with_capacity(perceptors.len());
                for p in perceptors {
                    embeds.push(embed_prompt(p, prompt, &mut images, base_dir)?);
                }
                let located = match &prompt.source {
                    PromptSource::Text(_) => None,
                    PromptSource::Image(path) => {
                        let rgb = &images[path];
                        let what = || format!("image prompt \"{}\"", prompt.raw);
                        let c = perceptors
                            .iter()
                            .map(|p| PromptCuts::cut(&p.clip, &p.sampler, rgb, rng))
                            .collect::<Result<Vec<_>>>()
                            .map_err(|e| e.context(what()))?;
                        Some(c)
                    }
                };
                cache.insert(key.clone(), (embeds, located));
            }
            let (embeds, located) = &cache[&key];
            losses.push(PromptLoss::new(
                prompt.raw.clone(),
                embeds.iter().map(Tensor::shallow_clone).collect(),
            )?);
            cuts.push(
                located
                    .as_ref()
                    .map(|c| c.iter().map(PromptCuts::shallow_clone).collect()),
            );
        }
        prompts.push(losses);
    }
    let targets = stack_targets(perceptors, &prompts)?;
    Ok(Embedded {
        prompts,
        targets,
        cuts,
    })
}

/// One prompt's embedding by one perceptor (an image prompt's: the whole
/// image, OpenAI's preprocessing); image files are read once into `images`.
fn embed_prompt(
    p: &Perceptor,
    prompt: &Prompt,
    images: &mut HashMap<PathBuf, Tensor>,
    base_dir: &Path,
) -> Result<Tensor> {
    Ok(match &prompt.source {
        PromptSource::Text(text) => {
            embed_text(&p.clip, text).map_err(|e| e.context(format!("perceptor {}", p.name)))?
        }
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
            tch::no_grad(|| p.clip.encode_image(&x))?.f_to_kind(Kind::Float)?
        }
    })
}

/// Per perceptor, every prompt's embedding stacked `[P, D]` (scenes in order,
/// then prompts): the targets of one batched distance computation.
fn stack_targets(perceptors: &[Perceptor], prompts: &[Vec<PromptLoss>]) -> Result<Vec<Tensor>> {
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
    Ok(targets)
}

/// Every prompt's mask (docs/design.md §2a), in weight-table order (scenes,
/// then prompts): image masks read (relative paths were resolved when the
/// scene loaded), semantic masks' texts embedded by every perceptor (so this
/// runs before the text towers are released).
pub(crate) fn prompt_masks(
    perceptors: &[Perceptor],
    scenes: &[Vec<Prompt>],
) -> Result<Vec<MaskTarget>> {
    let mut out = Vec::new();
    for (j, scene) in scenes.iter().enumerate() {
        for prompt in scene {
            let what = format!(
                "scenes: scene {}, the mask of prompt \"{}\"",
                j + 1,
                prompt.raw
            );
            out.push(match &prompt.mask {
                PromptMask::All => MaskTarget::All,
                PromptMask::Image { path, inverted } => {
                    MaskTarget::Image(ImageMask::load(path, *inverted, &what)?)
                }
                PromptMask::Semantic(text) => MaskTarget::Semantic(
                    perceptors
                        .iter()
                        .map(|p| embed_text(&p.clip, text).map_err(|e| e.context(what.clone())))
                        .collect::<Result<_>>()?,
                ),
                m => MaskTarget::Geometric(m.clone()),
            });
        }
    }
    Ok(out)
}

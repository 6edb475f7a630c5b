//! Prompt masks (docs/design.md §2a): which crops a prompt acts on.
//!
//! pytti-core's `Prompt.forward` asks the prompt's mask, for every crop, for
//! a **stop floor** and a **weight factor**, and uses them as
//!
//! - per-crop weight `W = w · factor`,
//! - per-crop stop `max(floor + min(sign W, 0), stop)`,
//!
//! under the usual weight/stop rule (docs/design.md §2): the value is
//! `mean(W · d)`, the gradient that of `mean(|W| · max(sign W · d, stop))`.
//! The geometric masks (`l r u d n f`) give a floor of 1 to the crops they
//! leave out (their distances, below 1 in practice, then pull no more) and 0
//! to the others; an image mask gives a weight factor (the mask's mean over
//! the crop, divided by the square root of its mean over the whole image);
//! a semantic mask gives a floor from each crop's distance to the mask's
//! text, computed on the device from the crop's embedding.
//!
//! A crop's place is pytti's: its top-left corner and side as fractions of
//! the image (`x / W`, `y / H`, `size / W`, `size / H`, float32), its centre
//! the corner plus half the side. The place is the crop's placement before
//! any augmentation.

use std::path::Path;

use tch::{Kind, Tensor};

use crate::guidance::cutouts::Crop;
use crate::guidance::loss::spherical_distance;
use crate::output::frames::read_rgb;
use crate::scene::prompt::PromptMask;
use crate::{Error, Result};

/// A prompt's mask as the guide holds it.
#[derive(Debug)]
pub enum MaskTarget {
    /// `a`: no mask.
    All,
    /// `l r u d n f` (the [`PromptMask`] variant).
    Geometric(PromptMask),
    /// `[path]`, `[-path]`.
    Image(ImageMask),
    /// A text: per perceptor its embedding `[1, D]` (float32).
    Semantic(Vec<Tensor>),
}

impl MaskTarget {
    /// Whether the mask changes nothing (`a`).
    pub fn is_all(&self) -> bool {
        matches!(self, MaskTarget::All)
    }
}

/// A crop's place as pytti computes it: float32 fractions of the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropPlace {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl CropPlace {
    /// The place of `crop` in a `width × height` image.
    pub fn of(crop: &Crop, width: i64, height: i64) -> CropPlace {
        let (wd, ht) = (width as f32, height as f32);
        CropPlace {
            x: crop.x as f32 / wd,
            y: crop.y as f32 / ht,
            w: crop.size as f32 / wd,
            h: crop.size as f32 / ht,
        }
    }
}

/// The stop floors of a geometric mask for `places` at `threshold` (pytti's
/// `mask_left` … `mask_far`): 1 for a crop the prompt leaves out, 0 for one
/// it acts on; `a` gives −∞ (no floor) everywhere. A crop exactly at the
/// threshold is acted on by both sides (pytti compares strictly).
pub fn geometric_floors(mask: &PromptMask, places: &[CropPlace], threshold: f64) -> Vec<f32> {
    let th = threshold as f32;
    let out = |left_out: bool| if left_out { 1.0 } else { 0.0 };
    places
        .iter()
        .map(|p| {
            let (cx, cy) = (p.x + p.w / 2.0, p.y + p.h / 2.0);
            let side = p.w.min(p.h);
            match mask {
                PromptMask::Left => out(cx > th),
                PromptMask::Right => out(cx < th),
                PromptMask::Up => out(cy > th),
                PromptMask::Down => out(cy < th),
                PromptMask::Near => out(side < th),
                PromptMask::Far => out(side > th),
                _ => f32::NEG_INFINITY,
            }
        })
        .collect()
}

/// An image mask: grey levels in `[0, 1]` (white: the prompt acts).
#[derive(Debug, Clone)]
pub struct ImageMask {
    width: usize,
    height: usize,
    /// Row-major grey levels, already inverted for `[-path]`.
    values: Vec<f32>,
    /// The mean grey level.
    mean: f32,
}

impl ImageMask {
    /// A mask from row-major grey levels in `[0, 1]`.
    pub fn new(width: usize, height: usize, values: Vec<f32>) -> Result<ImageMask> {
        if width == 0 || height == 0 || values.len() != width * height {
            return Err(Error::internal(format!(
                "an image mask of {width}×{height} with {} values",
                values.len()
            )));
        }
        let mean = (values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64) as f32;
        Ok(ImageMask {
            width,
            height,
            values,
            mean,
        })
    }

    /// Reads a mask image as pytti does (`convert("L")`: ITU-R 601 luma,
    /// rounded, then `/255`), inverted (`1 − v`) for `[-path]`. `what` names
    /// the prompt for the error.
    pub fn load(path: &Path, inverted: bool, what: &str) -> Result<ImageMask> {
        if !path.is_file() {
            return Err(Error::input(format!(
                "{what}: the mask image {} does not exist (relative paths are read from the \
                 scene file's folder)",
                path.display()
            )));
        }
        let img = read_rgb(path).map_err(|e| e.context(what.to_string()))?;
        let values = img
            .pixels()
            .map(|p| {
                let [r, g, b] = p.0.map(u32::from);
                let l = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as f32 / 255.0;
                if inverted {
                    1.0 - l
                } else {
                    l
                }
            })
            .collect();
        ImageMask::new(img.width() as usize, img.height() as usize, values)
    }

    /// The grey levels as a `[1, 1, H, W]` float32 tensor (a direct image
    /// prompt's mask).
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::f_from_slice(&self.values)?.f_view([
            1,
            1,
            self.height as i64,
            self.width as i64,
        ])?)
    }

    /// The weight factor of each crop (pytti's `mask_image`): the mask's mean
    /// over the pixels `[floor(x·Wm), floor((x + w)·Wm))` ×
    /// `[floor(y·Hm), floor((y + h)·Hm))`, both ends clamped into the mask,
    /// 0 for an empty window, divided by `√(mean of the whole mask)`; all 0
    /// when the mask is (nearly) black, mean under 0.001. pytti also feeds
    /// each crop's error into a buffer it keeps for the whole render; zoetrope
    /// does not (docs/design.md §2a).
    pub fn factors(&self, places: &[CropPlace]) -> Vec<f32> {
        if self.mean < 0.001 {
            return vec![0.0; places.len()];
        }
        let (wm, hm) = (self.width as f32, self.height as f32);
        let px = |v: f32, size: f32, max: usize| {
            ((v * size).floor() as i64).clamp(0, max as i64 - 1) as usize
        };
        let root = self.mean.sqrt();
        places
            .iter()
            .map(|p| {
                let (lx, hx) = (px(p.x, wm, self.width), px(p.x + p.w, wm, self.width));
                let (ly, hy) = (px(p.y, hm, self.height), px(p.y + p.h, hm, self.height));
                if hx <= lx || hy <= ly {
                    return 0.0;
                }
                let mut sum = 0.0f64;
                for row in ly..hy {
                    let start = row * self.width;
                    sum += self.values[start + lx..start + hx]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>();
                }
                let mean = (sum / ((hx - lx) * (hy - ly)) as f64) as f32;
                mean / root
            })
            .collect()
    }
}

/// The host half of a step's masks: for every prompt (in weight-table
/// order) and every crop of every perceptor (perceptor after perceptor, as
/// the distances are laid out) its weight factor, then its stop floor:
/// `2 · P · ΣN` floats. A semantic mask's floors are computed on the device
/// ([`semantic_floors`]); its row here holds its threshold (`t·0.3 + 0.7`,
/// pytti's scaling) or NaN for pytti's continuous form (no threshold given).
pub fn mask_rows(masks: &[(&MaskTarget, Option<f64>)], places: &[CropPlace]) -> Vec<f32> {
    let n = places.len();
    let mut factors = Vec::with_capacity(masks.len() * n);
    let mut floors = Vec::with_capacity(masks.len() * n);
    for (mask, threshold) in masks {
        let th = threshold.unwrap_or(PromptMask::DEFAULT_THRESHOLD);
        match mask {
            MaskTarget::All => {
                factors.extend(std::iter::repeat_n(1.0, n));
                floors.extend(std::iter::repeat_n(f32::NEG_INFINITY, n));
            }
            MaskTarget::Geometric(m) => {
                factors.extend(std::iter::repeat_n(1.0, n));
                floors.extend(geometric_floors(m, places, th));
            }
            MaskTarget::Image(image) => {
                factors.extend(image.factors(places));
                floors.extend(std::iter::repeat_n(f32::NEG_INFINITY, n));
            }
            MaskTarget::Semantic(_) => {
                factors.extend(std::iter::repeat_n(1.0, n));
                let row = if th == PromptMask::DEFAULT_THRESHOLD {
                    f32::NAN
                } else {
                    (th * 0.3 + 0.7) as f32
                };
                floors.extend(std::iter::repeat_n(row, n));
            }
        }
    }
    factors.extend(floors);
    factors
}

/// A semantic mask's stop floors on the device (pytti's `mask_semantic`):
/// `d` = each cutout's distance to the mask text (`embeds[p]` `[N_p, D]`,
/// `text[p]` `[1, D]`, concatenated over perceptors), and with `row` (from
/// [`mask_rows`]) the floor is `d` itself where `row` is NaN, else
/// `[d > row]` (1 leaves the crop out). No gradient flows through it.
pub fn semantic_floors(embeds: &[Tensor], text: &[Tensor], row: &Tensor) -> Result<Tensor> {
    if embeds.len() != text.len() {
        return Err(Error::internal(format!(
            "a semantic mask with {} perceptor embeddings for {} perceptors",
            text.len(),
            embeds.len()
        )));
    }
    let d = embeds
        .iter()
        .zip(text)
        .map(|(e, t)| spherical_distance(&e.f_detach()?, t))
        .collect::<Result<Vec<_>>>()?;
    let d = Tensor::f_cat(&d, 0)?;
    let over = d.f_gt_tensor(row)?.f_to_kind(Kind::Float)?;
    Ok(d.f_where_self(&row.f_isnan()?, &over)?)
}

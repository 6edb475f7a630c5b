//! The pytti cutout sampler: how a CLIP perceptor looks at an image larger than
//! its input resolution.
//!
//! Every optimisation step each perceptor scores `cutouts` square crops of the
//! current image, resampled to its input resolution `r` (224 for ViT-B/32, 288
//! for RN50x4, …). The crops are drawn exactly the way pytti-core's
//! `pytti_classic` sampler draws them:
//!
//! - size: `floor(m · clip(N(0.8, 0.3), r/m, 1)^cut_pow)` with `m = min(W, H)`
//!   (when `r > m` the clip yields 1, as `torch.clip` does, and every crop is the
//!   full `m × m` square);
//! - offsets: uniform over the image widened by `pad = min(round(side · cutout_border), side)`
//!   on each side, where a crop may hang over an edge by at most
//!   `min(size, pad)` pixels: `offset = floor(U[0,1) · (side − size + 1 + 2·p) − p)`;
//! - resampling to `r × r` by area averaging, the same bins as pytti's
//!   `F.adaptive_avg_pool2d(crop, r)` (bin `i` covers
//!   `[floor(i·s/r), ceil((i+1)·s/r))`), so downscaled crops are anti-aliased
//!   and upscaled ones are nearest-neighbour like pytti's;
//! - pytti's augmentations when the sampler has them (`cutout_augs = "pytti"`,
//!   [`CutoutSampler::augment`]; [`crate::guidance::augment`]): flip, affine
//!   and perspective in one resample of the batch, then colour jitter and
//!   erasing as batched tensor ops, on the resampled crops as pytti applies
//!   its kornia chain to them;
//! - per-crop noise `U(0, noise) · N(0, 1)` per pixel (`noise` = 0.1 as in pytti),
//!   after the augmentations as in pytti;
//! - CLIP's normalisation.
//!
//! Differences from pytti, all deliberate:
//!
//! - **One batched op instead of a per-crop loop.** Area averaging over an
//!   axis-aligned box is separable, so every crop is a pair of pooling matrices
//!   `A_y[n] ∈ R^{r×H}`, `A_x[n] ∈ R^{r×W}` and all crops come out of one GEMM
//!   plus one batched matrix product: `crop[n, c] = A_y[n] · img[c] · A_x[n]ᵀ`.
//!   The result equals pytti's per-crop `adaptive_avg_pool2d` to float rounding,
//!   gradients flow to the image through the matrix products, and the cost does
//!   not grow with Python-style kernel launches per crop.
//! - **The overhang is filled by mirroring the image by default.** pytti-core's
//!   default `border_mode = "clamp"` draws the offset over the padded range and
//!   then clamps it back inside the image, so no crop ever hangs over an edge
//!   (the border only makes edge-touching crops more frequent). The zoetrope
//!   spec describes `cutout_border` as the fraction a crop *may hang over the
//!   edge*, so the default here is pytti's `"mirror"` border mode: the image is
//!   reflected into the border, which shows CLIP natural-looking content
//!   instead of an artificial frame. All of pytti's border modes are available
//!   through [`BorderFill`] (`clamp`, `mirror`, `smear`, `wrap`, `black`).
//! - In `clamp` mode pytti clamps offsets to `side − size + 1`, which makes the
//!   last crop one pixel narrower than it is tall (Python slicing truncates);
//!   here offsets are clamped to `side − size`, so crops are always square.
//! - The augmentations' geometric stages are one projective map per crop
//!   sampled once (kornia resamples once per stage); see
//!   [`crate::guidance::augment`] and docs/augmentations.md.
//!
//! Randomness: crop sizes and offsets, the augmentations' values and the pixel
//! noise are drawn from the caller's [`Rng`] (placements and augmentations on
//! the host; on a GPU the noise from the device's generator, which the `Rng`
//! seeds; see [`crate::rng`]), so seeded runs repeat on the same device. The
//! noise of a batch is drawn whole ([`draw_noise`]), so a batch that goes
//! through the perceptors in parts gets the same noise as in one pass.
//!
//! For checks against a reference computation,
//! [`CutoutSampler::with_fixed_placements`] makes a sampler that draws
//! nothing: every step gets the same given crops and no noise (no scene
//! setting leads there; `tests/it/step_reference.rs` uses it to run the real step
//! on the reference's placements).

use tch::{Device, Kind, Tensor};

use crate::guidance::augment::{self, AugmentConfig, AugmentParams};
use crate::rng::Rng;
use crate::{Error, Result};

/// CLIP's per-channel input mean (RGB), from OpenAI's preprocessing.
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// CLIP's per-channel input standard deviation (RGB), from OpenAI's preprocessing.
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// pytti's per-crop noise factor: each crop gets `U(0, 0.1) · N(0, 1)` noise.
pub const DEFAULT_NOISE: f64 = 0.1;

/// What a crop sees where it hangs over the image edge (pytti's `border_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BorderFill {
    /// Offsets are clamped back inside the image: crops never hang over the edge
    /// (pytti-core's default `border_mode`).
    Clamp,
    /// The image is reflected into the border (torch `reflect` padding).
    #[default]
    Mirror,
    /// Edge pixels are repeated outward (torch `replicate` padding).
    Smear,
    /// The opposite edge wraps around (torch `circular` padding).
    Wrap,
    /// The border is black (zeros in `[0, 1]` image space).
    Black,
}

impl BorderFill {
    /// The names pytti users write for `border_mode`.
    pub const NAMES: [&'static str; 5] = ["clamp", "mirror", "smear", "wrap", "black"];

    /// Parses a pytti `border_mode` name; the error names `setting` and lists
    /// the accepted values.
    pub fn from_name(name: &str, setting: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "clamp" => Ok(BorderFill::Clamp),
            "mirror" => Ok(BorderFill::Mirror),
            "smear" => Ok(BorderFill::Smear),
            "wrap" => Ok(BorderFill::Wrap),
            "black" => Ok(BorderFill::Black),
            other => Err(Error::input(format!(
                "{setting} = \"{other}\" is not a border mode; use one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }

    /// The pytti name of this mode.
    pub fn name(self) -> &'static str {
        match self {
            BorderFill::Clamp => "clamp",
            BorderFill::Mirror => "mirror",
            BorderFill::Smear => "smear",
            BorderFill::Wrap => "wrap",
            BorderFill::Black => "black",
        }
    }

    /// Image padding (pixels) on each side of a dimension of length `side`
    /// for a `cutout_border` fraction: pytti's `min(round(side · border), side)`
    /// (Python's round: ties to even),
    /// lowered to `side − 1` for `mirror` because reflection cannot reach
    /// further than the image itself.
    fn padding(self, side: i64, border: f64) -> i64 {
        let pad = ((side as f64 * border).round_ties_even() as i64).clamp(0, side);
        match self {
            BorderFill::Mirror => pad.min(side - 1).max(0),
            _ => pad,
        }
    }

    /// The torch padding mode, `None` for `clamp` (no padding).
    fn torch_mode(self) -> Option<&'static str> {
        match self {
            BorderFill::Clamp => None,
            BorderFill::Mirror => Some("reflect"),
            BorderFill::Smear => Some("replicate"),
            BorderFill::Wrap => Some("circular"),
            BorderFill::Black => Some("constant"),
        }
    }
}

/// One square crop in image pixel coordinates. `x`, `y` (the top-left corner)
/// may be negative and `x + size` may exceed the width when the crop hangs over
/// the edge (never further than the border padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub x: i64,
    pub y: i64,
    pub size: i64,
}

/// Draws and resamples the crops one perceptor scores in one step.
///
/// Built from the scene settings `cutouts`, `cut_pow`, `cutout_border` and the
/// perceptor's input resolution; [`CutoutSampler::sample`] is the whole
/// per-step operation.
#[derive(Debug, Clone, PartialEq)]
pub struct CutoutSampler {
    /// Number of crops per step (`cutouts`).
    pub cutouts: usize,
    /// Crop size exponent (`cut_pow`): larger values give smaller crops.
    pub cut_pow: f64,
    /// Fraction of the image a crop may hang over each edge (`cutout_border`).
    pub border: f64,
    /// The perceptor's input resolution `r`; crops come out `r × r`.
    pub resolution: i64,
    /// Maximum per-crop noise standard deviation (pytti: 0.1; 0 disables).
    pub noise: f64,
    /// What fills the part of a crop hanging over the edge.
    pub fill: BorderFill,
    /// The augmentations applied to every batch (`cutout_augs = "pytti"`:
    /// [`AugmentConfig::pytti_classic`]); `None` applies none
    /// (`cutout_augs = "none"`, and [`new`](Self::new)'s default).
    pub augment: Option<AugmentConfig>,
    /// Placements given instead of drawn ([`with_fixed_placements`](Self::with_fixed_placements)).
    fixed: Option<Vec<Crop>>,
    /// Placements of an image prompt's cuts given instead of drawn
    /// ([`with_fixed_prompt_placements`](Self::with_fixed_prompt_placements)).
    fixed_prompt: Option<Vec<Crop>>,
}

impl CutoutSampler {
    /// A sampler with pytti's noise (0.1) and the mirrored border, after
    /// checking the settings (errors name the scene setting).
    pub fn new(cutouts: usize, cut_pow: f64, border: f64, resolution: i64) -> Result<Self> {
        let sampler = CutoutSampler {
            cutouts,
            cut_pow,
            border,
            resolution,
            noise: DEFAULT_NOISE,
            fill: BorderFill::default(),
            augment: None,
            fixed: None,
            fixed_prompt: None,
        };
        sampler.validate()?;
        Ok(sampler)
    }

    /// This sampler with its randomness taken out, for checks against a
    /// reference computation: [`place`](Self::place) returns `crops` (checked
    /// against the image when they are resampled), `cutouts` becomes their
    /// number and the noise 0. The augmentations stay as they were set (none
    /// unless [`augment`](Self::augment) says otherwise). Not reachable from a
    /// scene file.
    pub fn with_fixed_placements(self, crops: Vec<Crop>) -> Result<Self> {
        if crops.is_empty() {
            return Err(Error::internal(
                "fixed cutout placements: the list is empty",
            ));
        }
        Ok(CutoutSampler {
            cutouts: crops.len(),
            noise: 0.0,
            fixed: Some(crops),
            ..self
        })
    }

    /// This sampler with the placements of a location-aware image prompt's
    /// cuts ([`place_on_prompt`](Self::place_on_prompt)) given instead of
    /// drawn, for checks against a reference computation; as many as the
    /// step's crops. Not reachable from a scene file.
    pub fn with_fixed_prompt_placements(self, crops: Vec<Crop>) -> Result<Self> {
        if crops.len() != self.cutouts {
            return Err(Error::internal(format!(
                "fixed image prompt placements: {} for a sampler of {} cutouts",
                crops.len(),
                self.cutouts
            )));
        }
        Ok(CutoutSampler {
            fixed_prompt: Some(crops),
            ..self
        })
    }

    /// The placements of a location-aware image prompt's cuts on its
    /// `width × height` image: drawn as a step draws them (even when the
    /// step's own placements are fixed), or the fixed prompt placements.
    pub fn place_on_prompt(&self, width: i64, height: i64, rng: &mut Rng) -> Result<Vec<Crop>> {
        self.validate()?;
        check_dims(width, height)?;
        match &self.fixed_prompt {
            Some(crops) => Ok(crops.clone()),
            None => self.draw_places(width, height, rng),
        }
    }

    /// Checks the settings; every error names the scene setting to change.
    pub fn validate(&self) -> Result<()> {
        if self.cutouts == 0 {
            return Err(Error::input(
                "cutouts = 0: the perceptors need at least one crop per step; set cutouts to 1 or more (pytti uses 40)",
            ));
        }
        if !self.cut_pow.is_finite() || self.cut_pow < 0.0 {
            return Err(Error::input(format!(
                "cut_pow = {}: it must be a finite number ≥ 0 (smaller gives bigger crops; pytti's default is 2)",
                self.cut_pow
            )));
        }
        if !self.border.is_finite() || self.border < 0.0 {
            return Err(Error::input(format!(
                "cutout_border = {}: it must be a finite fraction ≥ 0 (0.25 lets a crop hang a quarter of the image over an edge)",
                self.border
            )));
        }
        if self.resolution < 1 {
            return Err(Error::internal(format!(
                "perceptor input resolution {} is not positive",
                self.resolution
            )));
        }
        if !self.noise.is_finite() || self.noise < 0.0 {
            return Err(Error::internal(format!(
                "cutout noise {} must be finite and ≥ 0",
                self.noise
            )));
        }
        Ok(())
    }

    /// Border padding in pixels (x, y) for an image of `width × height`.
    pub fn padding(&self, width: i64, height: i64) -> (i64, i64) {
        (
            self.fill.padding(width, self.border),
            self.fill.padding(height, self.border),
        )
    }

    /// The padding the resampled image gets: none for `clamp`, whose crops
    /// stay inside the image (its border only widens the offsets' draw).
    fn image_padding(&self, width: i64, height: i64) -> (i64, i64) {
        match self.fill {
            BorderFill::Clamp => (0, 0),
            _ => self.padding(width, height),
        }
    }

    /// The crop size for a standard-normal draw `z`, by pytti's formula
    /// `floor(m · clip(0.8 + 0.3·z, r/m, 1)^cut_pow)`, `m = min(W, H)`.
    pub fn crop_size(&self, z: f64, width: i64, height: i64) -> i64 {
        let m = width.min(height);
        let lo = self.resolution as f64 / m as f64;
        // torch.clip(x, lo, 1): max first, then min, so lo > 1 gives 1.
        let c = (0.8 + 0.3 * z).max(lo).min(1.0);
        ((m as f64 * c.powf(self.cut_pow)).floor() as i64).clamp(1, m)
    }

    /// The top-left coordinate along a side of length `side` for a uniform
    /// draw `u ∈ [0, 1)`, a crop of `size` pixels and a padding of `pad`.
    fn crop_offset(&self, u: f64, side: i64, size: i64, pad: i64) -> i64 {
        if self.fill == BorderFill::Clamp {
            let max = side - size + 1;
            let o = (u * (max + 2 * pad) as f64 - pad as f64).floor() as i64;
            o.clamp(0, side - size)
        } else {
            let p = size.min(pad);
            let max = side - size + 1;
            let o = (u * (max + 2 * p) as f64 - p as f64).floor() as i64;
            o.clamp(-p, side - size + p)
        }
    }

    /// Draws `cutouts` crop placements for a `width × height` image from
    /// `rng`; a sampler [`with_fixed_placements`](Self::with_fixed_placements)
    /// returns its crops and draws nothing.
    pub fn place(&self, width: i64, height: i64, rng: &mut Rng) -> Result<Vec<Crop>> {
        self.validate()?;
        check_dims(width, height)?;
        match &self.fixed {
            Some(crops) => Ok(crops.clone()),
            None => self.draw_places(width, height, rng),
        }
    }

    /// `cutouts` placements drawn from `rng` for a `width × height` image
    /// (pytti's sampler: sizes, then x and y offsets).
    fn draw_places(&self, width: i64, height: i64, rng: &mut Rng) -> Result<Vec<Crop>> {
        let n = self.cutouts as i64;
        let z = Vec::<f32>::try_from(&rng.randn(&[n])?)?;
        let ux = Vec::<f32>::try_from(&rng.rand(&[n])?)?;
        let uy = Vec::<f32>::try_from(&rng.rand(&[n])?)?;
        let (px, py) = self.padding(width, height);
        Ok((0..self.cutouts)
            .map(|i| {
                let size = self.crop_size(z[i] as f64, width, height);
                Crop {
                    x: self.crop_offset(ux[i] as f64, width, size, px),
                    y: self.crop_offset(uy[i] as f64, height, size, py),
                    size,
                }
            })
            .collect())
    }

    /// The whole per-step operation: random placements, batched resampling,
    /// the augmentations, noise and CLIP normalisation. `image` is
    /// `[1, 3, H, W]` in `[0, 1]`; the result is `[cutouts, 3, r, r]` and
    /// differentiable w.r.t. `image`.
    pub fn sample(&self, image: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let (_, _, h, w) = image_dims(image)?;
        let crops = self.place(w, h, rng)?;
        self.sample_with(image, &crops, rng)
    }

    /// Like [`sample`](Self::sample) with given placements: resamples, draws
    /// and applies this sampler's augmentations (if any), adds its noise
    /// (none when `noise` is 0) and normalises.
    pub fn sample_with(&self, image: &Tensor, crops: &[Crop], rng: &mut Rng) -> Result<Tensor> {
        let resampled = self.resample(image, crops)?;
        let params = self.draw_augment(crops.len(), rng)?;
        let augmented = augment_cutouts(&resampled, params.as_ref())?;
        let noisy = add_noise(&augmented, self.noise, rng)?;
        clip_normalize(&noisy)
    }

    /// Like [`sample_with`](Self::sample_with) with the crops given as their
    /// bins on the image's device ([`bins`](Self::bins)) and the
    /// augmentations already drawn ([`draw_augment`](Self::draw_augment)).
    /// Without augmentations nothing here reads the host, so a CUDA graph can
    /// capture it and replay it with new bins.
    pub fn sample_with_bins(
        &self,
        image: &Tensor,
        bins: &Tensor,
        augment: Option<&AugmentParams>,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let augmented = self.augmented_bins(image, bins, augment)?;
        let noisy = add_noise(&augmented, self.noise, rng)?;
        clip_normalize(&noisy)
    }

    /// The augmentations of a batch of `n` crops drawn from `rng` (after the
    /// placements, as a step draws them), or `None` when this sampler has
    /// none.
    pub fn draw_augment(&self, n: usize, rng: &mut Rng) -> Result<Option<AugmentParams>> {
        self.augment
            .as_ref()
            .map(|config| AugmentParams::draw_with(config, n, self.resolution, rng))
            .transpose()
    }

    /// Resampling by bins, then the drawn augmentations (no noise, no
    /// normalisation): `[N, C, r, r]`.
    pub fn augmented_bins(
        &self,
        image: &Tensor,
        bins: &Tensor,
        augment: Option<&AugmentParams>,
    ) -> Result<Tensor> {
        augment_cutouts(&self.resample_bins(image, bins)?, augment)
    }

    /// Deterministic batched resampling of `crops` to `r × r` (no noise, no
    /// normalisation): `[N, C, r, r]` in the image's value range, kind and
    /// device. Each output pixel is the mean of its adaptive-average-pool bin,
    /// exactly as pytti's `adaptive_avg_pool2d` of the crop, computed for all
    /// crops at once as `A_y[n] · img[c] · A_x[n]ᵀ`. The pooling weights take
    /// the image's kind: a bf16 image rounds `1/len` to bf16 (≤ 0.2 % error),
    /// so pass float32 when exact averages matter and cast the result.
    pub fn resample(&self, image: &Tensor, crops: &[Crop]) -> Result<Tensor> {
        let (_, _, h, w) = image_dims(image)?;
        let bins = self.bins(crops, w, h)?;
        let n = crops.len() as i64;
        let bins = Tensor::f_from_slice(&bins)?.f_view([4, n, self.resolution])?;
        self.resample_bins(image, &crate::gpu::upload(&bins, image.device())?)
    }

    /// The host half of resampling: every crop's pooling bins as
    /// `[4, N, r]` values (rows: x start, x end, y start, y end; half-open, in
    /// the padded image's pixels), after checking that each crop fits a
    /// `width × height` image with this sampler's border.
    pub fn bins(&self, crops: &[Crop], width: i64, height: i64) -> Result<Vec<i64>> {
        self.validate()?;
        check_dims(width, height)?;
        if crops.is_empty() {
            return Err(Error::internal("cutout resampling needs at least one crop"));
        }
        let (px, py) = self.image_padding(width, height);
        for crop in crops {
            let fits = crop.size >= 1
                && crop.x >= -px
                && crop.y >= -py
                && crop.x + crop.size <= width + px
                && crop.y + crop.size <= height + py;
            if !fits {
                return Err(Error::internal(format!(
                    "crop {crop:?} does not fit a {width}×{height} image with a border of {px}×{py} pixels"
                )));
            }
        }
        let r = self.resolution;
        let mut out = Vec::with_capacity(4 * crops.len() * r as usize);
        for (axis, pad) in [(0, px), (1, py)] {
            for end in [false, true] {
                for k in crops {
                    let start = if axis == 0 { k.x } else { k.y } + pad;
                    let s = k.size;
                    for i in 0..r {
                        out.push(if end {
                            start + ((i + 1) * s + r - 1).div_euclid(r)
                        } else {
                            start + (i * s).div_euclid(r)
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// The device half of resampling: `bins` (`[4, N, r]` int64 on the
    /// image's device, from [`bins`](Self::bins)) applied to `image`.
    pub fn resample_bins(&self, image: &Tensor, bins: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = image_dims(image)?;
        let r = self.resolution;
        let n = match bins.size()[..] {
            [4, n, rr] if rr == r && n >= 1 => n,
            ref other => {
                return Err(Error::internal(format!(
                    "cutout bins shaped {other:?}, expected [4, N, {r}]"
                )))
            }
        };
        let (px, py) = self.image_padding(w, h);
        let padded = match self.fill.torch_mode() {
            Some(mode) if px > 0 || py > 0 => {
                let value = if mode == "constant" { Some(0.0) } else { None };
                image.f_pad([px, px, py, py], mode, value)?
            }
            _ => image.shallow_clone(),
        };
        let (hp, wp) = (h + 2 * py, w + 2 * px);
        let kind = image.kind();
        let bins = bins.f_unsqueeze(-1)?; // [4, N, r, 1]
        let ax = pooling_matrices(&bins.f_get(0)?, &bins.f_get(1)?, wp, kind)?; // [N, r, Wp]
        let ay = pooling_matrices(&bins.f_get(2)?, &bins.f_get(3)?, hp, kind)?; // [N, r, Hp]
                                                                                // One GEMM over all crops' columns: [C·Hp, Wp] × [Wp, N·r].
        let cols = padded
            .f_reshape([c * hp, wp])?
            .f_matmul(&ax.f_reshape([n * r, wp])?.f_transpose(0, 1)?)?;
        // [C, Hp, N, r] → [N, Hp, C·r] so that one bmm pools the rows.
        let cols = cols
            .f_reshape([c, hp, n, r])?
            .f_permute([2, 1, 0, 3])?
            .f_reshape([n, hp, c * r])?;
        let out = ay.f_bmm(&cols)?; // [N, r, C·r]
        Ok(out
            .f_reshape([n, r, c, r])?
            .f_permute([0, 2, 1, 3])?
            .f_contiguous()?)
    }
}

/// pytti's augmentations `params` applied to resampled crops (none when
/// `params` is `None` or augments nothing). They run in float32 (the colour
/// jitter's HSV round trips want it) and come back in the crops' kind.
pub fn augment_cutouts(crops: &Tensor, params: Option<&AugmentParams>) -> Result<Tensor> {
    match params {
        Some(p) if !p.is_identity() => {
            let kind = crops.kind();
            let out = augment::apply(&crops.f_to_kind(Kind::Float)?, p)?;
            Ok(out.f_to_kind(kind)?)
        }
        _ => Ok(crops.shallow_clone()),
    }
}

/// Adds per-crop noise: crop `n` gets `σ_n · N(0, 1)` per pixel with
/// `σ_n ~ U(0, noise)`, drawn on the crops' device (pytti's `noise_fac`).
pub fn add_noise(crops: &Tensor, noise: f64, rng: &mut Rng) -> Result<Tensor> {
    match draw_noise(&crops.size(), noise, crops.kind(), crops.device(), rng)? {
        Some(n) => Ok(crops.f_add(&n)?),
        None => Ok(crops.shallow_clone()),
    }
}

/// The noise [`add_noise`] adds to crops of shape `size` (`[N, C, r, r]`),
/// drawn whole, or `None` when `noise` is 0 (nothing is drawn then).
pub fn draw_noise(
    size: &[i64],
    noise: f64,
    kind: Kind,
    device: Device,
    rng: &mut Rng,
) -> Result<Option<Tensor>> {
    if noise == 0.0 {
        return Ok(None);
    }
    let n = size.first().copied().unwrap_or(0);
    let facs = rng
        .rand_on(&[n, 1, 1, 1], kind, device)?
        .f_mul_scalar(noise)?;
    Ok(Some(facs.f_mul(&rng.randn_on(size, kind, device)?)?))
}

/// CLIP's input normalisation `(x − mean) / std` per RGB channel, for
/// `[N, 3, H, W]` images in `[0, 1]`.
pub fn clip_normalize(images: &Tensor) -> Result<Tensor> {
    let size = images.size();
    if size.len() != 4 || size[1] != 3 {
        return Err(Error::internal(format!(
            "CLIP normalisation needs [N, 3, H, W] images, got {size:?}"
        )));
    }
    let (mean, std) = normalization_constants(images.kind(), images.device())?;
    Ok(images.f_sub(&mean)?.f_div(&std)?)
}

thread_local! {
    /// CLIP's mean and standard deviation as `[1, 3, 1, 1]` tensors, per
    /// device and kind: made once, so a step uploads nothing for them.
    static NORM: std::cell::RefCell<Vec<(Device, Kind, Tensor, Tensor)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The cached `(mean, std)` tensors of [`clip_normalize`].
fn normalization_constants(kind: Kind, device: Device) -> Result<(Tensor, Tensor)> {
    NORM.with(|cache| -> Result<(Tensor, Tensor)> {
        let mut cache = cache.borrow_mut();
        if let Some((_, _, m, s)) = cache.iter().find(|(d, k, _, _)| *d == device && *k == kind) {
            return Ok((m.shallow_clone(), s.shallow_clone()));
        }
        let make = |v: &[f64; 3]| -> Result<Tensor> {
            let t = Tensor::f_from_slice(v)?
                .f_to_kind(kind)?
                .f_view([1, 3, 1, 1])?;
            crate::gpu::upload(&t, device)
        };
        let (m, s) = (make(&CLIP_MEAN)?, make(&CLIP_STD)?);
        cache.push((device, kind, m.shallow_clone(), s.shallow_clone()));
        Ok((m, s))
    })
}

/// `[N, r, len]` area-averaging matrices from bin bounds `lo`, `hi`
/// (`[N, r, 1]` int64 on the device): row `i` of matrix `n` averages the
/// pixels `[lo, hi)`, the bins of `adaptive_avg_pool`.
fn pooling_matrices(lo: &Tensor, hi: &Tensor, len: i64, kind: Kind) -> Result<Tensor> {
    let idx = Tensor::f_arange(len, (Kind::Int64, lo.device()))?.f_view([1, 1, len])?;
    let inside = idx.f_ge_tensor(lo)?.f_logical_and(&idx.f_lt_tensor(hi)?)?;
    let count = hi.f_sub(lo)?.f_to_kind(kind)?;
    Ok(inside.f_to_kind(kind)?.f_div(&count)?)
}

fn check_dims(width: i64, height: i64) -> Result<()> {
    if width < 1 || height < 1 {
        return Err(Error::internal(format!(
            "cannot cut crops from a {width}×{height} image"
        )));
    }
    Ok(())
}

/// `(1, C, H, W)` of a single image, or an internal error naming the shape.
fn image_dims(image: &Tensor) -> Result<(i64, i64, i64, i64)> {
    let size = image.size();
    match size[..] {
        [1, c, h, w] if c >= 1 => {
            check_dims(w, h)?;
            Ok((1, c, h, w))
        }
        _ => Err(Error::internal(format!(
            "cutouts need one image shaped [1, C, H, W], got {size:?}"
        ))),
    }
}

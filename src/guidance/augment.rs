//! pytti's cutout augmentations (docs/design.md §11), batched: one resample for the
//! geometric ones, tensor ops for colour jitter and erasing.
//!
//! pytti-core augments every batch of cutouts with kornia 0.6.2 modules
//! (`Perceptor/cutouts/augs.py::pytti_classic`), in this order:
//!
//! ```text
//! RandomHorizontalFlip(p=0.3)
//! RandomAffine(degrees=30, translate=0.1, p=0.8, padding_mode="border")
//! RandomPerspective(0.2, p=0.4)
//! ColorJitter(hue=0.01, saturation=0.01, p=0.7)
//! RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1/0.3), same_on_batch=False, p=0.7)
//! ```
//!
//! [`AugmentConfig::pytti_classic`] holds the distributions those arguments
//! give in kornia 0.6.2 (see its docs for kornia's quirks: the scalar
//! `translate=0.1` never moves a cutout sideways; brightness and contrast keep
//! factor 1 but still clamp to `[0, 1]`); another parameter set is another
//! value of [`AugmentConfig`]. [`AugmentParams::draw`] draws one batch's
//! values from the caller's [`Rng`]; [`apply`] applies them.
//!
//! # Coordinates
//!
//! A cutout is `r × r` with pixel centres at integer coordinates `0 … r−1`
//! (x to the right, y down; `grid_sampler` with `align_corners = false` maps
//! pixel `p` to `(2p + 1)/r − 1`). Each geometric stage is written as the
//! map from an output pixel to the position it reads in its input, exactly as
//! kornia's warps compute it (with `k = (r−1)/r`, `S(p) = k·(p + ½)`):
//!
//! - flip: `F(p) = (r−1−x, y)`;
//! - affine (`warp_affine`): `A = S⁻¹ · M⁻¹ · S`, where `M` is kornia's
//!   source→destination matrix `[[R, c − R·c + t], [0, 0, 1]]`,
//!   `R = [[cos a, −sin a], [sin a, cos a]]`, `c = ((r−1)/2, (r−1)/2)`,
//!   `t = (tx, ty)` pixels; out-of-range reads are clamped to the border;
//! - perspective (`warp_perspective`): `P = S⁻¹ · H⁻¹` (projective), `H` the
//!   homography taking the corners to the displaced corners. kornia builds
//!   this grid align-corners style but samples it without, hence the missing
//!   `S` on the right: even `H = I` stretches the cutout by `r/(r−1)` about
//!   its centre. Out-of-range reads are zeros.
//!
//! # One resample instead of two
//!
//! kornia resamples the batch once per geometric module (the flip is an exact
//! column reversal, so at most two interpolations: affine, then perspective).
//! Here every cutout gets one sampling grid and the batch one `grid_sampler`
//! call. Output pixel `p` reads the source at
//!
//! ```text
//! q = P(p)                        intermediate position (divided by its z, as kornia does)
//! w = wx(q_x) · wx(q_y),  wx(u) = clamp(min(u + 1, r − u), 0, 1)
//! s = F · A · clamp(q, 0, r−1)    source position, read bilinearly, clamped to the border
//! out(p) = w · bilinear(cutout, s)
//! ```
//!
//! `w` is the share of the bilinear weight that zero padding leaves at the
//! intermediate position `q` (1 inside, falling linearly to 0 across the
//! one-pixel band outside the image), and clamping `q` picks the in-range taps
//! exactly as zero padding keeps them. For interior pixels the whole thing is
//! the single projective map `F·A·P` ([`CutoutAugment::source_map`]).
//!
//! With only one of the stages present this *is* kornia's operation (up to
//! float rounding: tests match kornia 0.6.2 to 1e-4, measured ≤ 3e-6). With
//! both, the only difference is interpolation: kornia interpolates the affine
//! stage's output between its pixels, here the affine map is evaluated at the
//! exact intermediate position. So the composite is *sharper* than kornia's
//! sequence (one bilinear blur instead of two) and differs from it by
//! bilinear interpolation errors: at most `⅛·(|f_xx| + |f_yy|)` per resample
//! (pixel units) for an image `f`, and, where the source position crosses the
//! cutout's edge, up to about `¼·|f'|`, because kornia interpolates the
//! border clamp's kink between intermediate pixels while the composite
//! clamps the exact position. On smooth cutouts (values 0.1–0.9, at most 1.5
//! periods per side) the tests measure a mean absolute difference of
//! 3–5e-4 and a maximum of 0.012 (at the clamp's kink; 0.005 elsewhere); on
//! pixel noise the difference is as large as any two interpolations of noise
//! differ, which CLIP's cutouts (area averages of the image) are not.
//!
//! Cutouts without any geometric augmentation go through the same resample
//! with the identity map; it reproduces them to float rounding (exactly, on
//! the test cutouts).
//!
//! # Colour jitter and erasing
//!
//! [`jitter`] is kornia 0.6.2's `ColorJitter` as tensor ops: per cutout,
//! brightness `clamp(x + (b − 1), 0, 1)`, contrast `clamp(x·c, 0, 1)`,
//! saturation `s ← clamp(s·f, 0, 1)` in kornia's HSV, hue
//! `h ← fmod(h + 2π·f, 2π)`, applied in the batch's one random order, with
//! kornia's `rgb_to_hsv` / `hsv_to_rgb` (the same ops in the same order).
//! kornia converts back to RGB after each HSV operation; here saturation and
//! hue share one HSV form when nothing but an identity brightness or
//! contrast (factor exactly 1: a clamp to `[0, 1]`, which in-range HSV
//! values cannot leave) comes between them, as in pytti's parameters, so a
//! batch makes one round trip instead of two. That differs from kornia's
//! two round trips by float rounding alone (the round trip reproduces its
//! input to rounding; the kornia tests hold to 1e-4). [`erase`] multiplies by a
//! box mask and fills the box with the value (0 for pytti).
//!
//! The operations work in the cutouts' kind and on their device (the tests
//! run float32 on the CPU; the HSV round trips want float32).
//!
//! Everything is differentiable with respect to the cutouts (bilinear
//! sampling, the HSV conversions almost everywhere, the clamps inside
//! `[0, 1]`); erased boxes get zero gradient, as in kornia.
//!
//! # Randomness
//!
//! [`AugmentParams::draw`] draws from the caller's [`Rng`] (never libtorch's
//! global generator), on the CPU, in kornia's module order. For `n` cutouts:
//!
//! 1. flip: `u = rand(n)`, flipped where `u < p`;
//! 2. affine: `u = rand(n)`, then `rand(n)` each for the angle, `tx`, `ty`;
//! 3. perspective: `u = rand(n)`, then `rand(n, 4, 2)` corner offsets;
//! 4. jitter: `u = rand(n)`, then `rand(n)` each for brightness, contrast, hue,
//!    saturation (kornia's order), then `randint(24, 1)` for the batch's order
//!    of the four operations (one of the 24 permutations, uniformly);
//! 5. erasing: `u = rand(n)`, then `rand(n)` each for the area, the two aspect
//!    ratio candidates, the choice between them, x and y.
//!
//! Every value is drawn for every cutout, applied or not, so how many numbers
//! a batch consumes depends only on `n`. kornia draws the application coins
//! with `torch.bernoulli` and the values only for the applied cutouts, so
//! seeded draws do not reproduce kornia's numbers; the distributions are the
//! same (tests/it/guidance_augment.rs checks them statistically).

use nalgebra::{Matrix3, SMatrix, SVector};
use tch::{Kind, Tensor};

use crate::rng::Rng;
use crate::{Error, Result};

/// The distributions of one augmentation pipeline: application probabilities
/// and the ranges the per-cutout values are drawn from (uniformly).
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentConfig {
    /// Probability of a horizontal flip.
    pub flip_p: f64,
    /// Probability of the affine stage.
    pub affine_p: f64,
    /// Rotation range in degrees (positive turns the content clockwise on screen).
    pub angle: (f64, f64),
    /// Horizontal translation range, as a fraction of the cutout side.
    pub translate_x: (f64, f64),
    /// Vertical translation range, as a fraction of the cutout side.
    pub translate_y: (f64, f64),
    /// Probability of the perspective stage.
    pub perspective_p: f64,
    /// kornia's `distortion_scale`: each corner moves inward by up to
    /// `distortion/2` of the side, along each axis.
    pub distortion: f64,
    /// Probability of colour jitter.
    pub jitter_p: f64,
    /// Brightness factor range (`b` adds `b − 1`).
    pub brightness: (f64, f64),
    /// Contrast factor range (multiplies).
    pub contrast: (f64, f64),
    /// Saturation factor range (multiplies HSV saturation).
    pub saturation: (f64, f64),
    /// Hue shift range, in turns (`h` shifts the hue by `2π·h`).
    pub hue: (f64, f64),
    /// Probability of random erasing.
    pub erase_p: f64,
    /// Range of the erased box's area, as a fraction of the cutout's.
    pub erase_scale: (f64, f64),
    /// Range of the erased box's aspect ratio (height / width). When it
    /// contains 1, kornia picks one of `U(lo, 1)` and `U(1, hi)` with equal
    /// probability.
    pub erase_ratio: (f64, f64),
    /// The value erased boxes are filled with.
    pub erase_value: f64,
}

impl AugmentConfig {
    /// pytti-core's `pytti_classic` augmentations as kornia 0.6.2 draws them:
    ///
    /// - `RandomHorizontalFlip(p=0.3)`;
    /// - `RandomAffine(degrees=30, translate=0.1, p=0.8)`: angle `U(−30°, 30°)`;
    ///   the scalar `translate=0.1` becomes the range `[−0.1, 0.1]` clamped to
    ///   kornia's bounds `(0, 1)`, i.e. `[0, 0.1]`, of which the x sampler uses
    ///   `U(−0, 0)` and the y sampler `U(−0.1, 0.1)`: cutouts only move
    ///   vertically, by up to a tenth of their side; no scale, no shear;
    /// - `RandomPerspective(0.2, p=0.4)`;
    /// - `ColorJitter(hue=0.01, saturation=0.01, p=0.7)`: saturation
    ///   `U(0.99, 1.01)`, hue `U(−0.01, 0.01)` turns; brightness and contrast
    ///   factors are exactly 1 (they only clamp to `[0, 1]`);
    /// - `RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1/0.3), p=0.7)`, a box per
    ///   cutout, filled with 0.
    ///
    /// (The numbers first specified for the project differ; no pytti-core version uses them: see
    /// docs/augmentations.md.)
    pub fn pytti_classic() -> AugmentConfig {
        AugmentConfig {
            flip_p: 0.3,
            affine_p: 0.8,
            angle: (-30.0, 30.0),
            translate_x: (0.0, 0.0),
            translate_y: (-0.1, 0.1),
            perspective_p: 0.4,
            distortion: 0.2,
            jitter_p: 0.7,
            brightness: (1.0, 1.0),
            contrast: (1.0, 1.0),
            saturation: (0.99, 1.01),
            hue: (-0.01, 0.01),
            erase_p: 0.7,
            erase_scale: (0.1, 0.4),
            erase_ratio: (0.3, 1.0 / 0.3),
            erase_value: 0.0,
        }
    }

    fn check(&self) -> Result<()> {
        let probs = [
            self.flip_p,
            self.affine_p,
            self.perspective_p,
            self.jitter_p,
            self.erase_p,
        ];
        if probs.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err(Error::internal(format!(
                "augmentation probabilities must lie in [0, 1]: {probs:?}"
            )));
        }
        let ranges = [
            self.angle,
            self.translate_x,
            self.translate_y,
            self.brightness,
            self.contrast,
            self.saturation,
            self.hue,
            self.erase_scale,
            self.erase_ratio,
        ];
        if ranges
            .iter()
            .any(|&(lo, hi)| !(lo.is_finite() && hi.is_finite() && lo <= hi))
        {
            return Err(Error::internal(format!(
                "augmentation ranges must be finite with lo ≤ hi: {ranges:?}"
            )));
        }
        if !(0.0..=1.0).contains(&self.distortion)
            || self.erase_scale.0 < 0.0
            || self.erase_ratio.0 <= 0.0
            || !self.erase_value.is_finite()
        {
            return Err(Error::internal(
                "augmentation distortion must lie in [0, 1], erasing scale ≥ 0, ratio > 0",
            ));
        }
        Ok(())
    }
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self::pytti_classic()
    }
}

/// A rotation about the cutout's centre followed by a translation (kornia's
/// `RandomAffine` without scale or shear).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// Degrees; positive turns the content clockwise on screen (y down).
    pub angle: f64,
    /// Horizontal translation in pixels.
    pub tx: f64,
    /// Vertical translation in pixels.
    pub ty: f64,
}

/// kornia's `RandomPerspective`: corner `i` (TL, TR, BR, BL) moves inward by
/// `offsets[i] · (distortion·r/2, distortion·r/2)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perspective {
    /// `U(0, 1)` per corner and axis (x, y).
    pub offsets: [[f64; 2]; 4],
    pub distortion: f64,
}

/// Colour jitter factors of one cutout (kornia's `ColorJitter`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    /// In turns: the hue moves by `2π·hue`.
    pub hue: f64,
}

impl Jitter {
    /// Factors that change nothing but clamping.
    pub const NEUTRAL: Jitter = Jitter {
        brightness: 1.0,
        contrast: 1.0,
        saturation: 1.0,
        hue: 0.0,
    };
}

/// One colour operation of the jitter, numbered as kornia numbers them in
/// `order` (brightness 0, contrast 1, saturation 2, hue 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColorOp {
    Brightness,
    Contrast,
    Saturation,
    Hue,
}

impl ColorOp {
    /// In kornia's numbering.
    pub const ALL: [ColorOp; 4] = [
        ColorOp::Brightness,
        ColorOp::Contrast,
        ColorOp::Saturation,
        ColorOp::Hue,
    ];

    /// kornia's number of the operation.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The operation kornia numbers `i`.
    pub fn from_index(i: usize) -> Result<ColorOp> {
        Self::ALL
            .get(i)
            .copied()
            .ok_or_else(|| Error::internal(format!("colour jitter operation {i} is not 0..3")))
    }
}

/// An erased box: columns `x .. x+w`, rows `y .. y+h` (exclusive ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EraseBox {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

/// The augmentations of one cutout; `None` where the stage is not applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CutoutAugment {
    pub flip: bool,
    pub affine: Option<Affine>,
    pub perspective: Option<Perspective>,
    pub jitter: Option<Jitter>,
    pub erase: Option<EraseBox>,
}

impl CutoutAugment {
    /// Nothing applied.
    pub const NONE: CutoutAugment = CutoutAugment {
        flip: false,
        affine: None,
        perspective: None,
        jitter: None,
        erase: None,
    };

    /// The map of the perspective stage (output pixel → position in the
    /// affine stage's output, projective; identity without perspective) and
    /// of the flip and affine stages together (that position → source
    /// position, affine), for an `r × r` cutout (module docs).
    pub fn stage_maps(&self, r: i64) -> Result<(Matrix3<f64>, Matrix3<f64>)> {
        self.maps(r, Stages::ALL)
    }

    /// The one projective map from an output pixel to the source position it
    /// reads, `F·A·P` (module docs), exact wherever the intermediate position
    /// lies inside the cutout.
    pub fn source_map(&self, r: i64) -> Result<Matrix3<f64>> {
        let (inner, outer) = self.stage_maps(r)?;
        Ok(outer * inner)
    }

    fn maps(&self, r: i64, stages: Stages) -> Result<(Matrix3<f64>, Matrix3<f64>)> {
        check_size(r)?;
        let rf = r as f64;
        let k = (rf - 1.0) / rf;
        // kornia pixel coordinates of an output pixel, and back.
        let s = Matrix3::new(k, 0.0, 0.5 * k, 0.0, k, 0.5 * k, 0.0, 0.0, 1.0);
        let s_inv = Matrix3::new(1.0 / k, 0.0, -0.5, 0.0, 1.0 / k, -0.5, 0.0, 0.0, 1.0);
        let mut outer = Matrix3::identity();
        if stages.flip && self.flip {
            outer = Matrix3::new(-1.0, 0.0, rf - 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0);
        }
        if let (true, Some(a)) = (stages.affine, self.affine) {
            let (sin, cos) = a.angle.to_radians().sin_cos();
            let c = (rf - 1.0) / 2.0;
            let m = Matrix3::new(
                cos,
                -sin,
                c - (cos * c - sin * c) + a.tx,
                sin,
                cos,
                c - (sin * c + cos * c) + a.ty,
                0.0,
                0.0,
                1.0,
            );
            let m_inv = invert(&m, "affine")?;
            outer *= s_inv * m_inv * s;
        }
        let mut inner = Matrix3::identity();
        if let (true, Some(p)) = (stages.perspective, self.perspective) {
            let h = homography(&p, r)?;
            inner = s_inv * invert(&h, "perspective")?;
        }
        Ok((inner, outer))
    }
}

fn invert(m: &Matrix3<f64>, what: &str) -> Result<Matrix3<f64>> {
    m.try_inverse()
        .filter(|i| i.iter().all(|v| v.is_finite()))
        .ok_or_else(|| Error::internal(format!("the {what} augmentation's matrix is singular")))
}

/// kornia's `get_perspective_transform(start, end)`: the homography (h33 = 1)
/// taking the cutout's corners to the displaced ones.
fn homography(p: &Perspective, r: i64) -> Result<Matrix3<f64>> {
    let side = (r - 1) as f64;
    let f = p.distortion * r as f64 / 2.0;
    let start = [[0.0, 0.0], [side, 0.0], [side, side], [0.0, side]];
    let sign = [[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]];
    let mut a = SMatrix::<f64, 8, 8>::zeros();
    let mut b = SVector::<f64, 8>::zeros();
    for i in 0..4 {
        let [x, y] = start[i];
        let u = x + f * p.offsets[i][0] * sign[i][0];
        let v = y + f * p.offsets[i][1] * sign[i][1];
        let rows = [
            [x, y, 1.0, 0.0, 0.0, 0.0, -x * u, -y * u],
            [0.0, 0.0, 0.0, x, y, 1.0, -x * v, -y * v],
        ];
        for (j, (row, rhs)) in rows.iter().zip([u, v]).enumerate() {
            for (col, value) in row.iter().enumerate() {
                a[(2 * i + j, col)] = *value;
            }
            b[2 * i + j] = rhs;
        }
    }
    let h = a
        .lu()
        .solve(&b)
        .ok_or_else(|| Error::internal("the perspective augmentation's corners are degenerate"))?;
    Ok(Matrix3::new(
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], 1.0,
    ))
}

/// Which geometric stages a resample includes (the per-operation functions
/// run one at a time).
#[derive(Debug, Clone, Copy)]
struct Stages {
    flip: bool,
    affine: bool,
    perspective: bool,
}

impl Stages {
    const ALL: Stages = Stages {
        flip: true,
        affine: true,
        perspective: true,
    };
}

/// The drawn augmentations of one batch of `r × r` cutouts.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentParams {
    /// The cutouts' side `r`.
    pub size: i64,
    /// One entry per cutout, in batch order.
    pub cutouts: Vec<CutoutAugment>,
    /// The order of the colour operations, shared by the batch.
    pub jitter_order: [ColorOp; 4],
    /// What erased boxes are filled with.
    pub erase_value: f64,
}

impl AugmentParams {
    /// No augmentation for `n` cutouts of side `r` (kornia's default order).
    pub fn none(n: usize, r: i64) -> Result<AugmentParams> {
        check_size(r)?;
        Ok(AugmentParams {
            size: r,
            cutouts: vec![CutoutAugment::NONE; n],
            jitter_order: ColorOp::ALL,
            erase_value: 0.0,
        })
    }

    /// pytti's augmentations ([`AugmentConfig::pytti_classic`]) for `n`
    /// cutouts of side `r`, drawn from `rng` (module docs: draw order).
    pub fn draw(n: usize, r: i64, rng: &mut Rng) -> Result<AugmentParams> {
        Self::draw_with(&AugmentConfig::pytti_classic(), n, r, rng)
    }

    /// `config`'s augmentations for `n` cutouts of side `r`, drawn from
    /// `rng` in the order the module docs give.
    pub fn draw_with(
        config: &AugmentConfig,
        n: usize,
        r: i64,
        rng: &mut Rng,
    ) -> Result<AugmentParams> {
        config.check()?;
        check_size(r)?;
        let nn = n as i64;
        let uniform = |u: f64, (lo, hi): (f64, f64)| lo + u * (hi - lo);
        let rf = r as f64;
        let mut out = AugmentParams::none(n, r)?;
        out.erase_value = config.erase_value;

        let coin = uniforms(rng, &[nn])?;
        for (c, u) in out.cutouts.iter_mut().zip(&coin) {
            c.flip = *u < config.flip_p;
        }

        let coin = uniforms(rng, &[nn])?;
        let angle = uniforms(rng, &[nn])?;
        let tx = uniforms(rng, &[nn])?;
        let ty = uniforms(rng, &[nn])?;
        for (i, c) in out.cutouts.iter_mut().enumerate() {
            if coin[i] < config.affine_p {
                c.affine = Some(Affine {
                    angle: uniform(angle[i], config.angle),
                    tx: uniform(tx[i], config.translate_x) * rf,
                    ty: uniform(ty[i], config.translate_y) * rf,
                });
            }
        }

        let coin = uniforms(rng, &[nn])?;
        let offsets = uniforms(rng, &[nn, 4, 2])?;
        for (i, c) in out.cutouts.iter_mut().enumerate() {
            if coin[i] < config.perspective_p {
                let mut o = [[0.0; 2]; 4];
                for (k, corner) in o.iter_mut().enumerate() {
                    *corner = [offsets[i * 8 + 2 * k], offsets[i * 8 + 2 * k + 1]];
                }
                c.perspective = Some(Perspective {
                    offsets: o,
                    distortion: config.distortion,
                });
            }
        }

        let coin = uniforms(rng, &[nn])?;
        let brightness = uniforms(rng, &[nn])?;
        let contrast = uniforms(rng, &[nn])?;
        let hue = uniforms(rng, &[nn])?;
        let saturation = uniforms(rng, &[nn])?;
        let perm = Vec::<i64>::try_from(&rng.randint(24, &[1])?)?;
        out.jitter_order = permutation(perm.first().copied().unwrap_or(0) as usize);
        for (i, c) in out.cutouts.iter_mut().enumerate() {
            if coin[i] < config.jitter_p {
                c.jitter = Some(Jitter {
                    brightness: uniform(brightness[i], config.brightness),
                    contrast: uniform(contrast[i], config.contrast),
                    saturation: uniform(saturation[i], config.saturation),
                    hue: uniform(hue[i], config.hue),
                });
            }
        }

        draw_erase(config, &mut out.cutouts, r, rng)?;
        Ok(out)
    }

    /// The parameters of cutouts `start .. start + len` (the batch's shared
    /// colour order and fill value kept): what a part of the batch gets when
    /// the cutouts go through the perceptors in several passes
    /// (`gradient_accumulation_steps`), so that the parts together are
    /// augmented exactly as the whole batch would be.
    pub fn slice(&self, start: usize, len: usize) -> Result<AugmentParams> {
        let cutouts = self
            .cutouts
            .get(start..start + len)
            .ok_or_else(|| {
                Error::internal(format!(
                    "augmentations of cutouts {start}..{} out of a batch of {}",
                    start + len,
                    self.cutouts.len()
                ))
            })?
            .to_vec();
        Ok(AugmentParams {
            cutouts,
            ..self.clone()
        })
    }

    /// Whether any cutout gets any augmentation.
    pub fn is_identity(&self) -> bool {
        self.cutouts.iter().all(|c| *c == CutoutAugment::NONE)
    }

    fn check(&self, cutouts: &Tensor) -> Result<()> {
        let size = cutouts.size();
        let n = self.cutouts.len() as i64;
        if size.len() != 4
            || size[0] != n
            || size[1] != 3
            || size[2] != self.size
            || size[3] != self.size
        {
            return Err(Error::internal(format!(
                "augmenting cutouts of shape {size:?} with parameters for {n} RGB cutouts of {r}×{r}",
                r = self.size
            )));
        }
        Ok(())
    }
}

/// Draws random erasing for each cutout (the last step of the draw order in
/// the module docs).
fn draw_erase(
    config: &AugmentConfig,
    cutouts: &mut [CutoutAugment],
    r: i64,
    rng: &mut Rng,
) -> Result<()> {
    let nn = cutouts.len() as i64;
    let rf = r as f64;
    let uniform = |u: f64, (lo, hi): (f64, f64)| lo + u * (hi - lo);
    let coin = uniforms(rng, &[nn])?;
    let area = uniforms(rng, &[nn])?;
    let ratio1 = uniforms(rng, &[nn])?;
    let ratio2 = uniforms(rng, &[nn])?;
    let choice = uniforms(rng, &[nn])?;
    let xs = uniforms(rng, &[nn])?;
    let ys = uniforms(rng, &[nn])?;
    let (lo, hi) = config.erase_ratio;
    for (i, c) in cutouts.iter_mut().enumerate() {
        if coin[i] >= config.erase_p {
            continue;
        }
        let area = uniform(area[i], config.erase_scale) * rf * rf;
        // kornia: torch.round (half to even) of the choice picks U(lo, 1).
        let ratio = if lo < 1.0 && hi > 1.0 {
            if choice[i].round_ties_even() == 1.0 {
                uniform(ratio1[i], (lo, 1.0))
            } else {
                uniform(ratio2[i], (1.0, hi))
            }
        } else {
            uniform(ratio1[i], (lo, hi))
        };
        let side = |v: f64| v.sqrt().round_ties_even().max(1.0).min(rf);
        let h = side(area * ratio);
        let w = side(area / ratio);
        c.erase = Some(EraseBox {
            x: (xs[i] * (rf - w + 1.0)).floor() as i64,
            y: (ys[i] * (rf - h + 1.0)).floor() as i64,
            w: w as i64,
            h: h as i64,
        });
    }
    Ok(())
}

/// `rand(shape)` from `rng`, as f64 values.
fn uniforms(rng: &mut Rng, shape: &[i64]) -> Result<Vec<f64>> {
    let t = rng.rand(shape)?.f_flatten(0, -1)?;
    Ok(Vec::<f32>::try_from(&t)?
        .into_iter()
        .map(f64::from)
        .collect())
}

/// The permutation numbered `k` (0 ≤ k < 24) in lexicographic order.
fn permutation(k: usize) -> [ColorOp; 4] {
    let mut left: Vec<ColorOp> = ColorOp::ALL.to_vec();
    let mut out = ColorOp::ALL;
    let mut k = k % 24;
    for (i, slot) in out.iter_mut().enumerate() {
        let radix: usize = (1..4 - i).product();
        *slot = left.remove(k / radix);
        k %= radix;
    }
    out
}

fn check_size(r: i64) -> Result<()> {
    if r < 2 {
        return Err(Error::internal(format!(
            "cutouts of side {r} cannot be augmented (the side must be at least 2)"
        )));
    }
    Ok(())
}

/// Applies all of `params` to `cutouts` (`[N, 3, r, r]`, values in `[0, 1]`):
/// the geometric stages in one resample, then colour jitter, then erasing.
pub fn apply(cutouts: &Tensor, params: &AugmentParams) -> Result<Tensor> {
    let x = geometric(cutouts, params)?;
    let x = jitter(&x, params)?;
    erase(&x, params)
}

/// Flip, affine and perspective together, in one resample (module docs).
pub fn geometric(cutouts: &Tensor, params: &AugmentParams) -> Result<Tensor> {
    resample(cutouts, params, Stages::ALL)
}

/// The flips of `params` alone.
pub fn flip(cutouts: &Tensor, params: &AugmentParams) -> Result<Tensor> {
    resample(
        cutouts,
        params,
        Stages {
            flip: true,
            affine: false,
            perspective: false,
        },
    )
}

/// The affine stage of `params` alone (border padding).
pub fn affine(cutouts: &Tensor, params: &AugmentParams) -> Result<Tensor> {
    resample(
        cutouts,
        params,
        Stages {
            flip: false,
            affine: true,
            perspective: false,
        },
    )
}

/// The perspective stage of `params` alone (zero padding).
pub fn perspective(cutouts: &Tensor, params: &AugmentParams) -> Result<Tensor> {
    resample(
        cutouts,
        params,
        Stages {
            flip: false,
            affine: false,
            perspective: true,
        },
    )
}

/// One `grid_sampler` call for the whole batch (module docs).
fn resample(cutouts: &Tensor, params: &AugmentParams, stages: Stages) -> Result<Tensor> {
    params.check(cutouts)?;
    let n = params.cutouts.len() as i64;
    let r = params.size;
    let device = cutouts.device();
    let opts = (Kind::Float, device);
    let mut inner = Vec::with_capacity(9 * n as usize);
    let mut outer = Vec::with_capacity(9 * n as usize);
    for c in &params.cutouts {
        let (i, o) = c.maps(r, stages)?;
        // Row-major; nalgebra stores column-major, so transpose first.
        inner.extend(i.transpose().iter().map(|&v| v as f32));
        outer.extend(o.transpose().iter().map(|&v| v as f32));
    }
    let inner = Tensor::f_from_slice(&inner)?
        .f_view([n, 3, 3])?
        .f_to_device(device)?;
    let outer = Tensor::f_from_slice(&outer)?
        .f_view([n, 3, 3])?
        .f_to_device(device)?;

    // Output pixels (x, y, 1), row-major: [r·r, 3].
    let ramp = Tensor::f_arange(r, opts)?;
    let xs = ramp.f_view([1, r])?.f_expand([r, r], false)?;
    let ys = ramp.f_view([r, 1])?.f_expand([r, r], false)?;
    let pixels =
        Tensor::f_stack(&[xs, ys, Tensor::f_ones([r, r], opts)?], -1)?.f_view([r * r, 3])?;

    // Intermediate positions, divided by z as kornia does.
    let qh = pixels.f_matmul(&inner.f_transpose(1, 2)?)?; // [N, r·r, 3]
    let z = qh.f_narrow(2, 2, 1)?;
    let eps = 1e-8;
    let scale = z
        .f_add_scalar(eps)?
        .f_reciprocal()?
        .f_where_self(&z.f_abs()?.f_gt(eps)?, &z.f_ones_like()?)?;
    let q = qh.f_narrow(2, 0, 2)?.f_mul(&scale)?; // [N, r·r, 2]

    // The bilinear weight zero padding leaves at q, then the clamped position.
    let rf = r as f64;
    let weight = q
        .f_add_scalar(1.0)?
        .f_minimum(&q.f_neg()?.f_add_scalar(rf)?)?
        .f_clamp(0.0, 1.0)?
        .f_prod_dim_int(2, false, Kind::Float)?
        .f_view([n, 1, r, r])?;
    let q = q.f_clamp(0.0, rf - 1.0)?;

    let qh = Tensor::f_cat(&[q, Tensor::f_ones([n, r * r, 1], opts)?], 2)?;
    let source = qh.f_matmul(&outer.f_transpose(1, 2)?)?.f_narrow(2, 0, 2)?;
    // Pixel → grid_sampler's [−1, 1] (align_corners = false).
    let grid = source
        .f_mul_scalar(2.0 / rf)?
        .f_add_scalar(1.0 / rf - 1.0)?
        .f_view([n, r, r, 2])?
        .f_to_kind(cutouts.kind())?;
    // Bilinear (0), border (1).
    let out = cutouts.f_grid_sampler(&grid, 0, 1, false)?;
    Ok(out.f_mul(&weight.f_to_kind(cutouts.kind())?)?)
}

/// Per-cutout values as an `[m, 1, 1, 1]` tensor of `like`'s kind and device.
fn per_cutout(values: &[f64], like: &Tensor) -> Result<Tensor> {
    let v: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Ok(Tensor::f_from_slice(&v)?
        .f_view([values.len() as i64, 1, 1, 1])?
        .f_to_device(like.device())?
        .f_to_kind(like.kind())?)
}

/// The colour jitter of `params` alone (kornia 0.6.2's `ColorJitter`).
pub fn jitter(cutouts: &Tensor, params: &AugmentParams) -> Result<Tensor> {
    params.check(cutouts)?;
    let applied: Vec<(i64, Jitter)> = params
        .cutouts
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.jitter.map(|j| (i as i64, j)))
        .collect();
    if applied.is_empty() {
        return Ok(cutouts.shallow_clone());
    }
    let index = Tensor::f_from_slice(&applied.iter().map(|a| a.0).collect::<Vec<_>>())?
        .f_to_device(cutouts.device())?;
    let mut x = cutouts.f_index_select(0, &index)?;
    let factor = |f: fn(&Jitter) -> f64| -> Result<Tensor> {
        per_cutout(
            &applied.iter().map(|a| f(&a.1)).collect::<Vec<_>>(),
            cutouts,
        )
    };
    // Saturation and hue act on one HSV form of the batch, converted back to
    // RGB only when an RGB operation that changes values comes between them
    // or at the end (module docs): an identity brightness or contrast
    // (factors exactly 1, pytti's) is then only a clamp to [0, 1], which
    // HSV values in range cannot leave.
    let identity = |f: fn(&Jitter) -> f64, one: f64| applied.iter().all(|a| f(&a.1) == one);
    let mut hsv: Option<[Tensor; 3]> = None;
    for op in params.jitter_order {
        match op {
            ColorOp::Brightness | ColorOp::Contrast => {
                let unchanged = match op {
                    ColorOp::Brightness => identity(|j| j.brightness, 1.0),
                    _ => identity(|j| j.contrast, 1.0),
                };
                if unchanged && hsv.is_some() {
                    continue;
                }
                if let Some([h, s, v]) = hsv.take() {
                    x = hsv_to_rgb(&h, &s, &v)?;
                }
                x = match op {
                    ColorOp::Brightness => x.f_add(&factor(|j| j.brightness - 1.0)?)?,
                    _ => x.f_mul(&factor(|j| j.contrast)?)?,
                }
                .f_clamp(0.0, 1.0)?;
            }
            ColorOp::Saturation => {
                let [h, s, v] = match hsv.take() {
                    Some(t) => t,
                    None => rgb_to_hsv(&x)?,
                };
                let s = s.f_mul(&factor(|j| j.saturation)?)?.f_clamp(0.0, 1.0)?;
                hsv = Some([h, s, v]);
            }
            ColorOp::Hue => {
                // kornia: hue_factor · 2 · pi in float32, pi = float32(π).
                let shifts: Vec<f64> = applied
                    .iter()
                    .map(|a| f64::from((a.1.hue as f32) * 2.0 * std::f32::consts::PI))
                    .collect();
                let [h, s, v] = match hsv.take() {
                    Some(t) => t,
                    None => rgb_to_hsv(&x)?,
                };
                let two_pi = f64::from(2.0 * std::f32::consts::PI);
                let h = h.f_add(&per_cutout(&shifts, cutouts)?)?.f_fmod(two_pi)?;
                hsv = Some([h, s, v]);
            }
        }
    }
    if let Some([h, s, v]) = hsv.take() {
        x = hsv_to_rgb(&h, &s, &v)?;
    }
    Ok(cutouts.f_index_copy(0, &index, &x)?)
}

/// kornia 0.6.2's `rgb_to_hsv` (eps 1e-8): `[h, s, v]` with `h` in `[0, 2π)`,
/// each with the channel dimension of `x` (`[N, 3, H, W]`) kept as size 1.
fn rgb_to_hsv(x: &Tensor) -> Result<[Tensor; 3]> {
    let (max, argmax) = x.f_max_dim(-3, true)?;
    let (min, _) = x.f_min_dim(-3, true)?;
    let delta = max.f_sub(&min)?;
    let s = delta.f_div(&max.f_add_scalar(1e-8)?)?;
    let delta = delta
        .f_ones_like()?
        .f_where_self(&delta.f_eq(0.0)?, &delta)?;
    let diff = max.f_sub(x)?; // rc, gc, bc
    let rgb = diff.f_unbind(-3)?;
    let (rc, gc, bc) = (&rgb[0], &rgb[1], &rgb[2]);
    let d = delta.f_squeeze_dim(-3)?;
    let h1 = bc.f_sub(gc)?;
    let h2 = rc.f_sub(bc)?.f_add(&d.f_mul_scalar(2.0)?)?;
    let h3 = gc.f_sub(rc)?.f_add(&d.f_mul_scalar(4.0)?)?;
    let h = Tensor::f_stack(&[h1, h2, h3], -3)?.f_div(&delta)?;
    let h = h.f_gather(-3, &argmax, false)?;
    let h = h
        .f_div_scalar(6.0)?
        .f_remainder(1.0)?
        .f_mul_scalar(2.0 * std::f64::consts::PI)?;
    Ok([h, s, max])
}

/// kornia 0.6.2's `hsv_to_rgb`, from `[N, 1, H, W]` planes to `[N, 3, H, W]`,
/// in the table-free form of the same hexcone model: channel `c` (R, G, B for
/// `n` = 5, 3, 1) is `v − v·s·clamp(min(k, 4 − k), 0, 1)` with
/// `k = (n + 6h/2π) mod 6`. kornia picks `(v, t, p)`, `(q, v, p)`, … from an
/// 18-plane table by the sector `⌊6h/2π⌋`; each entry is this expression in
/// that sector (`p = v(1 − s)`, `q = v(1 − f·s)`, `t = v(1 − (1 − f)s)`), so
/// the two differ by float rounding, without the table's 18 planes and int64
/// index.
fn hsv_to_rgb(h: &Tensor, s: &Tensor, v: &Tensor) -> Result<Tensor> {
    let h6 = h
        .f_div_scalar(2.0 * std::f64::consts::PI)?
        .f_mul_scalar(6.0)?;
    let n = Tensor::f_from_slice(&[5.0f32, 3.0, 1.0])?
        .f_view([1, 3, 1, 1])?
        .f_to_device(h.device())?
        .f_to_kind(h.kind())?;
    let k = h6.f_add(&n)?.f_remainder(6.0)?;
    let m = k.f_minimum(&k.f_rsub_scalar(4.0)?)?.f_clamp(0.0, 1.0)?;
    Ok(v.f_sub(&v.f_mul(s)?.f_mul(&m)?)?)
}

/// The erasing of `params` alone: each box is filled with `erase_value`.
pub fn erase(cutouts: &Tensor, params: &AugmentParams) -> Result<Tensor> {
    params.check(cutouts)?;
    if params.cutouts.iter().all(|c| c.erase.is_none()) {
        return Ok(cutouts.shallow_clone());
    }
    let n = params.cutouts.len();
    let r = params.size;
    // [x0, x1, y0, y1] per cutout; an empty range where nothing is erased.
    let mut bounds = Vec::with_capacity(4 * n);
    for c in &params.cutouts {
        let b = c
            .erase
            .map_or([0, 0, 0, 0], |b| [b.x, b.x + b.w, b.y, b.y + b.h]);
        bounds.extend(b.map(|v| v as f32));
    }
    let device = cutouts.device();
    let bounds = Tensor::f_from_slice(&bounds)?
        .f_view([n as i64, 4, 1, 1])?
        .f_to_device(device)?;
    let ramp = Tensor::f_arange(r, (Kind::Float, device))?;
    let cols = ramp.f_view([1, 1, r])?;
    let rows = ramp.f_view([1, r, 1])?;
    let inside = |v: &Tensor, lo: i64| -> Result<Tensor> {
        Ok(v.f_ge_tensor(&bounds.f_select(1, lo)?)?
            .f_logical_and(&v.f_lt_tensor(&bounds.f_select(1, lo + 1)?)?)?)
    };
    let mask = inside(&cols, 0)?
        .f_logical_and(&inside(&rows, 2)?)?
        .f_unsqueeze(1)?
        .f_to_kind(cutouts.kind())?; // [N, 1, r, r]
    let keep = mask.f_rsub_scalar(1.0)?;
    let out = cutouts.f_mul(&keep)?;
    if params.erase_value == 0.0 {
        return Ok(out);
    }
    Ok(out.f_add(&mask.f_mul_scalar(params.erase_value)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_distinct_and_lexicographic() {
        let all: Vec<[ColorOp; 4]> = (0..24).map(permutation).collect();
        assert_eq!(all[0], ColorOp::ALL);
        assert_eq!(
            all[23],
            [
                ColorOp::Hue,
                ColorOp::Saturation,
                ColorOp::Contrast,
                ColorOp::Brightness
            ]
        );
        let set: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(set.len(), 24);
    }

    #[test]
    fn maps_without_augmentation_are_the_identity() {
        let (i, o) = CutoutAugment::NONE.stage_maps(16).unwrap();
        assert_eq!(i, Matrix3::identity());
        assert_eq!(o, Matrix3::identity());
        assert!(CutoutAugment::NONE.stage_maps(1).is_err());
    }
}

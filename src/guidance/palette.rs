//! pytti's Limited Palette image (`image_models/pixel.py`'s `PixelImage`),
//! written from its formulas.
//!
//! # Parameterisation
//!
//! For an `H × W` image with `N = palettes` palettes of `S = palette_size`
//! colours each, three tensors are optimised:
//!
//! - the palettes `P [S, N, 3]`, kept in `[0, 2]` (pytti's "palette inertia"
//!   2: a colour is `P / 2` clamped to `[0, 1]`, so it moves half as fast as
//!   the other parameters);
//! - the brightness `v [H, W]`, kept in `[0, 1]`;
//! - the palette weights `t [N, H, W]`, kept ≥ 0.
//!
//! zoetrope keeps them in **one** flat float32 leaf, `[P | v | t]` in that
//! order ([`Layout`]), so Adam, the step's CUDA graph, warps and the resume
//! state treat the Limited Palette like the other models; Adam is
//! element-wise, so one Adam over the concatenation is pytti's Adam over the
//! three tensors.
//!
//! # Decoding (pytti's `decode_tensor`)
//!
//! Each palette is sorted by HSP brightness `0.299 r² + 0.587 g² + 0.114 b²`
//! (stable sort, darkest first). With `x = clamp(v, 0, 1)·(S − 1)`:
//!
//! - the shown colour is discrete: the colour `round(x)` of the palette with
//!   the largest weight at that pixel;
//! - its gradient is that of `½·discrete + ½·continuous`, where the continuous
//!   colour interpolates colours `⌊x⌋` and `⌈x⌉` by `x − ⌊x⌋` in every
//!   palette and mixes the palettes by `softmax(t)` over palettes.
//!
//! # Losses (pytti's `image_loss`)
//!
//! - HDR (`hdr_weight`, skipped at 0): the mean squared difference between
//!   each sorted colour's weighted norm `‖c · √(0.299, 0.587, 0.114)‖` and
//!   the ramp `linspace(0, 1, S)^gamma`, for every palette.
//! - Palette normalisation (`palette_normalization_weight`): with
//!   `q = softmax(t)` over palettes as `[H·W, N]`, its column means `μ` and
//!   sample standard deviations `σ`, the mean of the off-diagonal entries of
//!   `(q − μ)ᵀ(q − μ) / (σᵀσ · H·W)` (correlated palettes cost) plus the mean
//!   of `1 / (σ · H·W)` (a palette no pixel varies in costs).
//!
//! After each Adam step the three parts are clamped into their ranges
//! (pytti's `update`).
//!
//! # Locking and target palettes
//!
//! A locked image decodes with a fixed palette (pytti's `pallet_target`):
//! `lock_palette` fixes the sorted initial palette; `target_palette` encodes
//! the image into a copy of the starting state and fixes that copy's sorted
//! palette (and, as pytti, also writes it into `P`). Then no loss reaches
//! `P`, so Adam leaves it as it is. The locked palette is made again from the
//! scene and the seed when a run resumes (it is deterministic), so the resume
//! state stays one tensor.
//!
//! # Encoding an image (pytti's `encode_image`)
//!
//! `v` becomes the image's HSP brightness `√(0.299 r² + 0.587 g² + 0.114 b²)`;
//! then ("smart encode") 201 Adam steps at learning rate 0.1 on `P` and `t`
//! pull the decoded image toward the image under pytti's HSV loss (MSE over
//! RGB plus kornia's HSV saturation and value, `s = (max − min)/(max + 1e-8)`,
//! `v = max`), with the HDR loss at weight 0.01 (when on) and the palette
//! normalisation loss at its weight.

use tch::{Device, Kind, Reduction, Tensor};

use crate::guidance::adam::Adam;
use crate::guidance::loss::replace_grad;
use crate::rng::Rng;
use crate::{Error, Result};

/// pytti's palette inertia: `P` lives in `[0, 2]`, colours are `P / 2`.
pub const PALETTE_INERTIA: f64 = 2.0;
/// HSP brightness weights (https://alienryderflex.com/hsp.html).
const HSP: [f64; 3] = [0.299, 0.587, 0.114];
/// pytti's smart encode: steps, learning rate, HDR weight while encoding.
pub const ENCODE_STEPS: usize = 201;
const ENCODE_LR: f64 = 0.1;
const ENCODE_HDR_WEIGHT: f64 = 0.01;

/// The Limited Palette's settings (the scene's `palette_size`, `palettes`,
/// `gamma`, `hdr_weight`, `palette_normalization_weight`,
/// `random_initial_palette`, `lock_palette`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaletteConfig {
    pub palette_size: i64,
    pub palettes: i64,
    pub gamma: f64,
    pub hdr_weight: f64,
    pub norm_weight: f64,
    pub random_initial_palette: bool,
    pub lock_palette: bool,
}

/// The Limited Palette model: its settings and, when locked, the fixed sorted
/// palette `[S, N, 3]` in `[0, 1]` it decodes with.
#[derive(Debug)]
pub struct LimitedPalette {
    pub config: PaletteConfig,
    locked: Option<Tensor>,
}

/// Where the three parts sit in the flat parameter of an `H × W` image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub s: i64,
    pub n: i64,
    pub h: i64,
    pub w: i64,
}

impl Layout {
    /// Elements of `P`, `v` and `t`.
    fn sizes(&self) -> [i64; 3] {
        [
            self.s * self.n * 3,
            self.h * self.w,
            self.n * self.h * self.w,
        ]
    }

    /// Length of the flat parameter.
    pub fn numel(&self) -> i64 {
        self.sizes().iter().sum()
    }

    /// Views `P [S, N, 3]`, `v [H, W]`, `t [N, H, W]` of `param` (sharing
    /// its storage and its graph).
    pub fn parts(&self, param: &Tensor) -> Result<[Tensor; 3]> {
        if param.size() != [self.numel()] {
            return Err(Error::internal(format!(
                "a Limited Palette parameter of {:?}, expected [{}]",
                param.size(),
                self.numel()
            )));
        }
        let [a, b, c] = self.sizes();
        Ok([
            param.f_narrow(0, 0, a)?.f_view([self.s, self.n, 3])?,
            param.f_narrow(0, a, b)?.f_view([self.h, self.w])?,
            param
                .f_narrow(0, a + b, c)?
                .f_view([self.n, self.h, self.w])?,
        ])
    }

    /// The image part `[1, 1 + N, H, W]` (`v` then `t`, pytti's
    /// `get_image_tensor`), the part a warp moves.
    pub fn image_part(&self, param: &Tensor) -> Result<Tensor> {
        let [a, _, _] = self.sizes();
        Ok(param
            .f_narrow(0, a, self.numel() - a)?
            .f_view([1, 1 + self.n, self.h, self.w])?)
    }

    /// `param` with its image part replaced by `image [1, 1 + N, H, W]`.
    pub fn with_image_part(&self, param: &Tensor, image: &Tensor) -> Result<Tensor> {
        let [a, _, _] = self.sizes();
        Ok(Tensor::f_cat(
            &[param.f_narrow(0, 0, a)?, image.f_reshape([-1])?],
            0,
        )?)
    }
}

/// `[0.299, 0.587, 0.114]` as a float32 tensor shaped `shape` on `device`.
fn hsp(shape: &[i64], device: Device) -> Result<Tensor> {
    let v: Vec<f32> = HSP.iter().map(|&x| x as f32).collect();
    Ok(Tensor::f_from_slice(&v)?
        .f_to_device(device)?
        .f_view(shape)?)
}

/// `P / 2` clamped to `[0, 1]`, each palette sorted by HSP brightness
/// (darkest first, stable): pytti's `sort_pallet` of an unlocked image.
pub fn sort_palette(raw: &Tensor) -> Result<Tensor> {
    let p = raw.f_div_scalar(PALETTE_INERTIA)?.f_clamp(0.0, 1.0)?;
    let norms = p
        .f_square()?
        .f_mul(&hsp(&[1, 1, 3], p.device())?)?
        .f_sum_dim_intlist(-1, false, Kind::Float)?;
    let order = norms.f_argsort_stable(true, 0, false)?; // [S, N]
    let index = order.f_unsqueeze(-1)?.f_expand_as(&p)?;
    Ok(p.f_gather(0, &index, false)?)
}

/// Colours `palette[index]` for an index image `[H, W]` (int64): `[H, W, N, 3]`.
fn pick(palette: &Tensor, index: &Tensor) -> Result<Tensor> {
    let (h, w) = (index.size()[0], index.size()[1]);
    let [_, n, _] = palette.size()[..] else {
        return Err(Error::internal("a palette must be [S, N, 3]"));
    };
    Ok(palette
        .f_index_select(0, &index.f_reshape([-1])?)?
        .f_view([h, w, n, 3])?)
}

/// pytti's decode: the image `[1, 3, H, W]` of palette `palette [S, N, 3]`
/// (sorted, in `[0, 1]`), brightness `v [H, W]` and weights `t [N, H, W]`
/// (module docs). The value is the discrete colour; the gradient that of
/// `½·discrete + ½·continuous`.
pub fn decode_parts(palette: &Tensor, v: &Tensor, t: &Tensor) -> Result<Tensor> {
    let s = palette.size()[0];
    let n = t.size()[0];
    let x = v.f_clamp(0.0, 1.0)?.f_mul_scalar((s - 1) as f64)?;
    let floors = x.f_floor()?.f_detach()?;
    let fracs = x.f_sub(&floors)?.f_unsqueeze(-1)?.f_unsqueeze(-1)?; // [H, W, 1, 1]
    let floors = floors.f_to_kind(Kind::Int64)?;
    let ceils = x.f_ceil()?.f_detach()?.f_to_kind(Kind::Int64)?;
    let rounds = x.f_round()?.f_detach()?.f_to_kind(Kind::Int64)?;
    let weights = t.f_permute([1, 2, 0])?; // [H, W, N]
    let chosen = weights
        .f_argmax(2, false)?
        .f_one_hot(n)?
        .f_to_kind(Kind::Float)?
        .f_unsqueeze(-1)?;
    let mix = weights.f_softmax(2, Kind::Float)?.f_unsqueeze(-1)?;
    let discrete =
        pick(palette, &rounds)?
            .f_mul(&chosen)?
            .f_sum_dim_intlist(2, false, Kind::Float)?;
    let lower = pick(palette, &floors)?.f_mul(&fracs.f_neg()?.f_add_scalar(1.0)?)?;
    let continuous = lower
        .f_add(&pick(palette, &ceils)?.f_mul(&fracs)?)?
        .f_mul(&mix)?
        .f_sum_dim_intlist(2, false, Kind::Float)?;
    let backward = continuous
        .f_mul_scalar(0.5)?
        .f_add(&discrete.f_mul_scalar(0.5)?)?;
    let out = replace_grad(&discrete, &backward)?; // [H, W, 3]
    Ok(out.f_permute([2, 0, 1])?.f_unsqueeze(0)?.f_contiguous()?)
}

/// The HDR loss (unweighted) of a sorted palette `[S, N, 3]` (module docs).
pub fn hdr_loss(palette: &Tensor, gamma: f64) -> Result<Tensor> {
    let s = palette.size()[0];
    let n = palette.size()[1];
    let device = palette.device();
    let norms = palette
        .f_mul(&hsp(&[1, 1, 3], device)?.f_sqrt()?)?
        .f_norm_scalaropt_dim(2, [-1i64].as_slice(), false)?; // [S, N]
    let ramp = Tensor::f_linspace(0.0, 1.0, s, (Kind::Float, device))?
        .f_pow_tensor_scalar(gamma)?
        .f_view([s, 1])?
        .f_expand([s, n], false)?;
    Ok(norms.f_mse_loss(&ramp, Reduction::Mean)?)
}

/// The palette normalisation loss (unweighted) of weights `t [N, H, W]`
/// (module docs).
pub fn normalization_loss(t: &Tensor) -> Result<Tensor> {
    let n = t.size()[0];
    let q = t
        .f_permute([1, 2, 0])?
        .f_reshape([-1, n])?
        .f_softmax(-1, Kind::Float)?; // [M, N]
    let m = q.size()[0] as f64;
    let mu = q.f_mean_dim(0, true, Kind::Float)?;
    let sigma = q.f_std_dim(0, true, true)?; // [1, N]
    let centred = q.f_sub(&mu)?;
    let cov = centred
        .f_transpose(0, 1)?
        .f_matmul(&centred)?
        .f_div(&sigma.f_transpose(0, 1)?.f_matmul(&sigma)?.f_mul_scalar(m)?)?;
    let off_diagonal = cov.f_sub(&cov.f_diagonal(0, 0, 1)?.f_diag_embed(0, 0, 1)?)?;
    let spread = sigma.f_mul_scalar(m)?.f_reciprocal()?.f_mean(Kind::Float)?;
    Ok(off_diagonal.f_mean(Kind::Float)?.f_add(&spread)?)
}

/// pytti's HSV loss input: RGB `[1, 3, H, W]` followed by kornia's HSV
/// saturation and value, `[1, 5, H, W]`.
fn hsv_features(rgb: &Tensor) -> Result<Tensor> {
    let (max, _) = rgb.f_max_dim(1, true)?;
    let (min, _) = rgb.f_min_dim(1, true)?;
    let sat = max.f_sub(&min)?.f_div(&max.f_add_scalar(1e-8)?)?;
    Ok(Tensor::f_cat(&[rgb.shallow_clone(), sat, max], 1)?)
}

impl LimitedPalette {
    /// An unlocked model with `config` (locking comes with the starting state,
    /// [`LimitedPalette::lock`]).
    pub fn new(config: PaletteConfig) -> Result<LimitedPalette> {
        if config.palette_size < 1 || config.palettes < 1 {
            return Err(Error::input(format!(
                "palette_size = {} and palettes = {}: both must be at least 1",
                config.palette_size, config.palettes
            )));
        }
        Ok(LimitedPalette {
            config,
            locked: None,
        })
    }

    /// The layout of this model's parameter for an `H × W` image.
    pub fn layout(&self, h: i64, w: i64) -> Layout {
        Layout {
            s: self.config.palette_size,
            n: self.config.palettes,
            h,
            w,
        }
    }

    /// The fixed palette, when locked.
    pub fn locked(&self) -> Option<&Tensor> {
        self.locked.as_ref()
    }

    /// The sorted palette `[S, N, 3]` the image decodes with: the locked one,
    /// or the parameter's palette sorted.
    pub fn palette(&self, raw: &Tensor) -> Result<Tensor> {
        match &self.locked {
            Some(p) => Ok(p.shallow_clone()),
            None => sort_palette(raw),
        }
    }

    /// The image `[1, 3, H, W]` of the flat parameter (module docs), with
    /// gradients.
    pub fn decode(&self, param: &Tensor, layout: Layout) -> Result<Tensor> {
        let [raw, v, t] = layout.parts(param)?;
        decode_parts(&self.palette(&raw)?, &v, &t)
    }

    /// The weighted image losses (HDR when on, palette normalisation when
    /// on) of the flat parameter, with `hdr_weight` in place of the
    /// setting's (smart encode); `None` when both are off.
    pub fn image_losses(
        &self,
        param: &Tensor,
        layout: Layout,
        hdr_weight: f64,
    ) -> Result<Option<Tensor>> {
        let [raw, _, t] = layout.parts(param)?;
        let mut total: Option<Tensor> = None;
        let mut add = |x: Tensor| -> Result<()> {
            total = Some(match total.take() {
                Some(acc) => acc.f_add(&x)?,
                None => x,
            });
            Ok(())
        };
        if self.config.hdr_weight != 0.0 {
            let palette = self.palette(&raw)?;
            add(hdr_loss(&palette, self.config.gamma)?.f_mul_scalar(hdr_weight)?)?;
        }
        if self.config.norm_weight != 0.0 {
            add(normalization_loss(&t)?.f_mul_scalar(self.config.norm_weight)?)?;
        }
        Ok(total)
    }

    /// pytti's `update`: clamps `P` to `[0, 2]`, `v` to `[0, 1]`, `t` to
    /// `≥ 0`, in place (no host number is read).
    pub fn clamp(&self, param: &Tensor, layout: Layout) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            let [mut raw, mut v, mut t] = layout.parts(param)?;
            let _ = raw.f_clamp_(0.0, PALETTE_INERTIA)?;
            let _ = v.f_clamp_(0.0, 1.0)?;
            let _ = t.f_clamp_min_(0.0)?;
            Ok(())
        })
    }

    /// pytti's `encode_random`: `v` and `t` uniform in `[0, 1)`, then `P`
    /// uniform in `[0, 2)` (`random_initial_palette`) or the grey ramp
    /// `linspace(0, 2, S)^gamma` in every palette; drawn on the CPU from
    /// `rng` in that order, placed on `device`.
    pub fn random(&self, layout: Layout, device: Device, rng: &mut Rng) -> Result<Tensor> {
        let v = rng.rand(&[layout.h * layout.w])?;
        let t = rng.rand(&[layout.n * layout.h * layout.w])?;
        let p = if self.config.random_initial_palette {
            rng.rand(&[layout.s, layout.n, 3])?
                .f_mul_scalar(PALETTE_INERTIA)?
        } else {
            Tensor::f_linspace(0.0, PALETTE_INERTIA, layout.s, (Kind::Float, Device::Cpu))?
                .f_pow_tensor_scalar(self.config.gamma)?
                .f_view([layout.s, 1, 1])?
                .f_expand([layout.s, layout.n, 3], false)?
        };
        Ok(Tensor::f_cat(&[p.f_reshape([-1])?, v, t], 0)?.f_to_device(device)?)
    }

    /// pytti's `encode_image` (module docs): the flat parameter that shows
    /// `rgb [1, 3, H, W]` (float, `[0, 1]`, the image's size), starting from
    /// `start` (whose `t` and `P` the smart encode refines). Detached.
    pub fn encode(&self, start: &Tensor, rgb: &Tensor, layout: Layout) -> Result<Tensor> {
        self.encode_steps(start, rgb, layout, ENCODE_STEPS)
    }

    /// [`encode`](Self::encode) with `steps` smart-encode steps (tests).
    pub fn encode_steps(
        &self,
        start: &Tensor,
        rgb: &Tensor,
        layout: Layout,
        steps: usize,
    ) -> Result<Tensor> {
        let device = start.device();
        let rgb = rgb
            .f_detach()?
            .f_to_device(device)?
            .f_to_kind(Kind::Float)?;
        let brightness = tch::no_grad(|| -> Result<Tensor> {
            Ok(rgb
                .f_mul(&hsp(&[1, 3, 1, 1], device)?.f_sqrt()?)?
                .f_norm_scalaropt_dim(2, [1i64].as_slice(), false)?)
        })?;
        let [a, b, _] = layout.sizes();
        let param = crate::ops::copy(&start.f_detach()?.f_to_kind(Kind::Float)?)?;
        param
            .f_narrow(0, a, b)?
            .f_copy_(&brightness.f_reshape([-1])?)?;
        let mut param = param.f_set_requires_grad(true)?;
        // pytti optimises P and t only: v gets no gradient, so Adam leaves it.
        let mask = Tensor::f_ones([layout.numel()], (Kind::Float, device))?;
        let _ = mask.f_narrow(0, a, b)?.f_fill_(0.0)?;
        let target = hsv_features(&rgb)?;
        let mut adam = Adam::new(&param, ENCODE_LR)?;
        for _ in 0..steps {
            let image = self.decode(&param, layout)?;
            let mut loss = hsv_features(&image)?.f_mse_loss(&target, Reduction::Mean)?;
            if let Some(extra) = self.image_losses(&param, layout, ENCODE_HDR_WEIGHT)? {
                loss = loss.f_add(&extra)?;
            }
            loss.f_backward()?;
            tch::no_grad(|| param.f_grad()?.f_mul_(&mask).map(|_| ()))?;
            adam.step(&mut param)?;
            self.clamp(&param, layout)?;
        }
        Ok(param.f_detach()?)
    }

    /// Locks the palette for a render starting from `start` (module docs):
    /// with `target` (the `target_palette` image at the render's size) the
    /// sorted palette of `target` encoded into a copy of `start`, also
    /// written into `start`'s `P`; else with `lock_palette` the sorted
    /// palette of `start`; else nothing. Returns the (possibly changed)
    /// starting parameter.
    pub fn lock(
        &mut self,
        start: &Tensor,
        layout: Layout,
        target: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.locked = None;
        let [raw, _, _] = layout.parts(start)?;
        match target {
            Some(rgb) => {
                let encoded = self.encode(start, rgb, layout)?;
                let [raw_t, _, _] = layout.parts(&encoded)?;
                let fixed = tch::no_grad(|| sort_palette(&raw_t))?;
                let [a, _, _] = layout.sizes();
                let rest = start.f_detach()?.f_narrow(0, a, layout.numel() - a)?;
                let param = Tensor::f_cat(&[fixed.f_reshape([-1])?, rest], 0)?;
                self.locked = Some(fixed);
                Ok(param)
            }
            None => {
                if self.config.lock_palette {
                    self.locked = Some(tch::no_grad(|| sort_palette(&raw.f_detach()?))?);
                }
                Ok(start.f_detach()?)
            }
        }
    }

    /// pytti's `render_pallet` (`show_palette`): the sorted palette as an RGB
    /// image `[1, 3, 32·S, 16·N]`, palette `j` in column block `j`, its
    /// colours from dark (top) to bright, each colour a 16 × 32 block.
    pub fn palette_image(&self, param: &Tensor, layout: Layout) -> Result<Tensor> {
        tch::no_grad(|| -> Result<Tensor> {
            let [raw, _, _] = layout.parts(param)?;
            let p = self.palette(&raw.f_detach()?)?; // [S, N, 3]
            Ok(p.f_permute([2, 0, 1])?
                .f_unsqueeze(0)?
                .f_repeat_interleave_self_int(32, 2, None::<i64>)?
                .f_repeat_interleave_self_int(16, 3, None::<i64>)?
                .f_contiguous()?)
        })
    }
}

//! The losses that steer the image, and the gradient tricks of one step.
//!
//! libtorch through tch has no custom autograd functions, so every place where
//! pytti-core uses one (`replace_grad`, `clamp_with_grad`, straight-through
//! quantisation) is written here with `detach`, or, where that is provably
//! impossible, with an explicit second backward pass ([`ClampWithGrad`]).
//!
//! # The weight/stop rule (docs/design.md §2)
//!
//! For raw per-element losses `d` (CLIP distances per cutout, or one scalar
//! MSE), a weight `w` and a stop `s` (absent = −∞), [`weighted_with_stop`]
//! returns a scalar whose
//!
//! - **value** is `|w| · sign(w) · mean(d) = w · mean(d)`, and whose
//! - **gradient** is that of `|w| · mean(max(sign(w) · d, s))`.
//!
//! This is pytti-core's `Prompt.forward` / `Loss.forward`:
//! `w.abs() * replace_grad(sign·d, maximum(sign·d, stop))`, then the mean. Each
//! element whose signed distance `sign(w)·d` is at or below `s` contributes its
//! value but no gradient; every other element contributes the full gradient
//! `|w| · ∂(sign(w)·d)`. So a positive prompt `text:1:0.8` stops pulling a
//! cutout once its distance falls to 0.8 or below, and a negative prompt
//! `text:-1:-0.9` stops pushing once the distance reaches 0.9 or more. At
//! exactly `sign·d = s` pytti's `torch.maximum` splits the gradient in half;
//! here it is zero (a measure-zero difference). For prompts the rule applies
//! per cutout (as pytti); for the direct losses it applies to the scalar MSE
//! (as pytti's `Loss.forward`). Weight 0 gives value 0 and gradient 0.
//!
//! The detach formulation: with `a = [sign·d > s]` (a constant mask),
//! `term = a·(sign·d) + ((1 − a)·(sign·d)).detach()`; its value is `sign·d`
//! exactly and its gradient `a · ∂(sign·d)`. Unlike `m + (sd − m).detach()`
//! with `m = max(sd, s)`, it stays finite for infinite stops.

use tch::{Kind, Reduction, Tensor};

use crate::{Error, Result};

/// The weight and stop of one loss term, already evaluated for the current
/// step (weights and stops may be expressions in `t`; the caller evaluates
/// them). `stop = None` means −∞: no clamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightStop {
    pub weight: f64,
    pub stop: Option<f64>,
    /// A prompt's mask threshold at this step (docs/design.md §2a); `None`
    /// is pytti's default. Other losses have none.
    pub mask_threshold: Option<f64>,
}

impl WeightStop {
    /// A weight with an optional stop.
    pub fn new(weight: f64, stop: Option<f64>) -> Self {
        WeightStop {
            weight,
            stop,
            mask_threshold: None,
        }
    }

    /// A prompt's weight, stop and mask threshold evaluated at time `t` and
    /// frame `f`.
    pub fn of_prompt(p: &crate::scene::Prompt, t: f64, f: f64) -> Self {
        WeightStop {
            mask_threshold: p.mask_threshold.as_ref().map(|m| m.eval(t, f)),
            ..WeightStop::at(&p.weight, p.stop.as_ref(), t, f)
        }
    }

    /// A scene file's weight and optional stop (a prompt's, or a weight
    /// string's) evaluated at time `t` and frame `f`.
    pub fn at(
        weight: &crate::scene::Param,
        stop: Option<&crate::scene::Param>,
        t: f64,
        f: f64,
    ) -> Self {
        WeightStop::new(weight.eval(t, f), stop.map(|s| s.eval(t, f)))
    }

    /// A weight without a stop (pytti's default stop −∞).
    pub fn weight(weight: f64) -> Self {
        WeightStop::new(weight, None)
    }

    /// Weight 0 disables the term.
    pub fn is_disabled(&self) -> bool {
        self.weight == 0.0
    }

    /// Checks the evaluated numbers; `what` names the prompt or setting so the
    /// error tells the user which expression misbehaved.
    pub fn validate(&self, what: &str) -> Result<()> {
        crate::schedule::weight_rule(self.weight, self.stop)
            .map_err(|e| Error::input(format!("{what}, at this step: {e}")))?;
        match self.mask_threshold {
            Some(th) if !th.is_finite() => Err(Error::input(format!(
                "{what}, at this step: the mask threshold evaluated to {th}; it must be a finite number"
            ))),
            _ => Ok(()),
        }
    }
}

/// Applies the weight/stop rule (module docs) to raw per-element losses `raw`
/// (any shape, typically `[N]` distances or a scalar MSE): value
/// `w · mean(raw)`, gradient that of `|w| · mean(max(sign(w)·raw, stop))`.
///
/// Weight 0 returns a zero scalar that is still attached to `raw`'s graph, so
/// a backward pass through it works and yields zero gradients.
pub fn weighted_with_stop(raw: &Tensor, ws: WeightStop) -> Result<Tensor> {
    if !ws.weight.is_finite() {
        return Err(Error::internal(format!(
            "loss weight {} is not finite",
            ws.weight
        )));
    }
    if ws.stop.is_some_and(f64::is_nan) {
        return Err(Error::internal("loss stop is NaN"));
    }
    let row = Tensor::f_from_slice(&table_row(1.0, ws))?
        .f_view([1, 3])?
        .f_to_device(raw.device())?;
    weighted_table(&raw.f_reshape([1, -1])?, &row)
}

/// The weight/stop rule of [`weighted_with_stop`] for a table of terms whose
/// weights live on the device: `raw` is `[K, N]` (row `k` the raw losses of
/// term `k`) and `table` is `[K, 3]` float32 rows `(scale, weight, stop)`
/// (stop −∞ for none). Returns `Σ_k scale_k · rule(raw[k], weight_k, stop_k)`,
/// a scalar. Nothing depends on the numbers on the host, so a CUDA graph
/// captured once stays right for any weights written into `table` later; a
/// term of weight (or scale) 0 contributes value 0 and gradient 0.
pub fn weighted_table(raw: &Tensor, table: &Tensor) -> Result<Tensor> {
    let (k, _) = match raw.size()[..] {
        [k, n] => (k, n),
        ref other => {
            return Err(Error::internal(format!(
                "weighted loss table: raw losses shaped {other:?}, expected [K, N]"
            )))
        }
    };
    if table.size() != [k, 3] {
        return Err(Error::internal(format!(
            "weighted loss table: {k} terms but a weight table shaped {:?}",
            table.size()
        )));
    }
    let raw = raw.f_to_kind(Kind::Float)?;
    let table = table.f_to_kind(Kind::Float)?;
    let scale = table.f_select(1, 0)?;
    let weight = table.f_select(1, 1)?.f_unsqueeze(1)?;
    let stop = table.f_select(1, 2)?.f_unsqueeze(1)?;
    let signed = raw.f_mul(&weight.f_sign()?)?;
    let active = signed
        .f_detach()?
        .f_gt_tensor(&stop)?
        .f_to_kind(Kind::Float)?;
    let inactive = active.f_neg()?.f_add_scalar(1.0)?;
    let term = signed
        .f_mul(&active)?
        .f_add(&signed.f_mul(&inactive)?.f_detach()?)?;
    let per_term = term
        .f_mean_dim(1, false, Kind::Float)?
        .f_mul(&weight.f_squeeze_dim(1)?.f_abs()?)?;
    Ok(per_term.f_mul(&scale)?.f_sum(Kind::Float)?)
}

/// [`weighted_table`] with prompt masks (docs/design.md §2a,
/// [`crate::guidance::mask`]): `factors` and `floors` are `[K, N]`, each
/// element's weight factor and stop floor. Element `(k, n)` weighs
/// `W = weight_k · factor` and stops at `max(floor + min(sign W, 0), stop_k)`;
/// the value is `Σ_k scale_k · mean_n(W · raw)`, the gradient that of
/// `Σ_k scale_k · mean_n(|W| · max(sign W · raw, that stop))` (pytti's
/// `Prompt.forward`). With factors 1 and floors −∞ it equals
/// [`weighted_table`] bit for bit.
pub fn weighted_table_masked(
    raw: &Tensor,
    table: &Tensor,
    factors: &Tensor,
    floors: &Tensor,
) -> Result<Tensor> {
    if factors.size() != raw.size() || floors.size() != raw.size() {
        return Err(Error::internal(format!(
            "masked loss table: raw losses {:?} with mask factors {:?} and floors {:?}",
            raw.size(),
            factors.size(),
            floors.size()
        )));
    }
    if table.size() != [raw.size()[0], 3] {
        return Err(Error::internal(format!(
            "masked loss table: {:?} raw losses but a weight table shaped {:?}",
            raw.size(),
            table.size()
        )));
    }
    let raw = raw.f_to_kind(Kind::Float)?;
    let table = table.f_to_kind(Kind::Float)?;
    let factors = factors.f_to_kind(Kind::Float)?;
    let scale = table.f_select(1, 0)?;
    let weight = table.f_select(1, 1)?.f_unsqueeze(1)?;
    let stop = table.f_select(1, 2)?.f_unsqueeze(1)?;
    let sign = weight.f_sign()?.f_mul(&factors.f_sign()?)?;
    let signed = raw.f_mul(&sign)?;
    let floor = floors
        .f_to_kind(Kind::Float)?
        .f_add(&sign.f_clamp_max(0.0)?)?
        .f_maximum(&stop.f_expand_as(&raw)?)?;
    let active = signed
        .f_detach()?
        .f_gt_tensor(&floor)?
        .f_to_kind(Kind::Float)?;
    let inactive = active.f_neg()?.f_add_scalar(1.0)?;
    let term = signed
        .f_mul(&active)?
        .f_add(&signed.f_mul(&inactive)?.f_detach()?)?;
    let per_term = term
        .f_mul(&factors.f_abs()?)?
        .f_mean_dim(1, false, Kind::Float)?
        .f_mul(&weight.f_squeeze_dim(1)?.f_abs()?)?;
    Ok(per_term.f_mul(&scale)?.f_sum(Kind::Float)?)
}

/// pytti-core's smoothing loss (`LossAug/TVLossClass.py`, `tv_loss`): the
/// L2 total variation of images `[N, C, H, W]`, one value per image `[N]`.
///
/// The image is padded by one pixel on the right and bottom by repeating the
/// edge (so the last column has no horizontal and the last row no vertical
/// difference), then
/// `tv = mean over (c, y, x) of (I[y, x+1] − I[y, x])² + (I[y+1, x] − I[y, x])²`,
/// the mean over all `C·H·W` positions. pytti applies it to the decoded
/// training image in `[0, 1]` (after the clamp) and weights it by
/// `smoothing_weight` with the usual weight rule ([`weighted_with_stop`]).
pub fn tv_loss(image: &Tensor) -> Result<Tensor> {
    let [_, _, h, w] = image.size()[..] else {
        return Err(Error::internal(format!(
            "smoothing loss: image shaped {:?}, expected [N, C, H, W]",
            image.size()
        )));
    };
    let padded = image.f_pad([0, 1, 0, 1], "replicate", None)?;
    let corner = padded.f_narrow(2, 0, h)?.f_narrow(3, 0, w)?;
    let right = padded.f_narrow(2, 0, h)?.f_narrow(3, 1, w)?;
    let below = padded.f_narrow(2, 1, h)?.f_narrow(3, 0, w)?;
    let dx = right.f_sub(&corner)?;
    let dy = below.f_sub(&corner)?;
    let sq = dx.f_square()?.f_add(&dy.f_square()?)?;
    Ok(sq.f_mean_dim([1i64, 2, 3].as_slice(), false, sq.kind())?)
}

/// A `[K, 3]` host table row for [`weighted_table`]: `(scale, weight, stop)`
/// with an absent stop as −∞.
pub fn table_row(scale: f64, ws: WeightStop) -> [f32; 3] {
    [
        scale as f32,
        ws.weight as f32,
        ws.stop.map_or(f32::NEG_INFINITY, |s| s as f32),
    ]
}

/// Spherical distances ([`spherical_distance`]) between every target row of
/// `targets` `[P, D]` and every cutout embedding of `x` `[N, D]`: `[P, N]`,
/// in one batched computation for all prompts.
pub fn spherical_distances(x: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (xs, ts) = (x.size(), targets.size());
    if xs.len() != 2 || ts.len() != 2 || xs[1] != ts[1] {
        return Err(Error::internal(format!(
            "spherical distances between embeddings shaped {xs:?} and targets {ts:?}: expected [N, D] and [P, D]"
        )));
    }
    let xh = unit(&x.f_to_kind(Kind::Float)?)?.f_unsqueeze(0)?; // [1, N, D]
    let th = unit(&targets.f_to_kind(Kind::Float)?)?.f_unsqueeze(1)?; // [P, 1, D]
    let dims = [-1i64];
    let diff = xh
        .f_sub(&th)?
        .f_norm_scalaropt_dim(2.0, dims.as_slice(), false)?;
    let sum = xh
        .f_add(&th)?
        .f_norm_scalaropt_dim(2.0, dims.as_slice(), false)?;
    Ok(diff.f_atan2(&sum)?.f_square()?.f_mul_scalar(2.0)?)
}

/// Unit vectors along the last dimension (`F.normalize`, eps 1e-12).
fn unit(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .f_norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)?
        .f_clamp_min(1e-12)?;
    Ok(x.f_div(&norm)?)
}

/// Spherical (great-circle) distance used by CLIP guidance:
/// `d = 2 · arcsin(‖x̂ − ŷ‖ / 2)²`, computed in float32 (as the equivalent
/// `2 · atan2(‖x̂ − ŷ‖, ‖x̂ + ŷ‖)²`, whose gradient stays finite).
///
/// `x` is `[N, D]` (cutout embeddings); `y` is `[D]` or `[1, D]` (one prompt,
/// broadcast against every cutout) or `[N, D]` (one target per cutout).
/// Returns `[N]`. Identical directions give 0, orthogonal ones `π²/8`,
/// opposite ones `π²/2`.
pub fn spherical_distance(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let xs = x.size();
    let ys = y.size();
    let ok = match (xs.as_slice(), ys.as_slice()) {
        ([_, dx], [dy]) => dx == dy,
        ([n, dx], [m, dy]) => dx == dy && (*m == 1 || m == n),
        _ => false,
    };
    if !ok {
        return Err(Error::internal(format!(
            "spherical distance between embeddings shaped {xs:?} and {ys:?}: expected [N, D] against [D], [1, D] or [N, D]"
        )));
    }
    let xh = unit(&x.f_to_kind(Kind::Float)?)?;
    let yh = unit(&y.f_to_kind(Kind::Float)?.f_to_device(x.device())?)?;
    // arcsin(‖x̂ − ŷ‖/2) is half the angle θ between x̂ and ŷ; written as
    // atan2(‖x̂ − ŷ‖, ‖x̂ + ŷ‖) (= atan2(2 sin θ/2, 2 cos θ/2)) it has the same
    // value but a finite gradient everywhere, where arcsin's derivative is
    // infinite at opposite vectors and rounding can push its argument past 1.
    let dims = [-1i64];
    let diff = xh
        .f_sub(&yh)?
        .f_norm_scalaropt_dim(2.0, dims.as_slice(), false)?;
    let sum = xh
        .f_add(&yh)?
        .f_norm_scalaropt_dim(2.0, dims.as_slice(), false)?;
    Ok(diff.f_atan2(&sum)?.f_square()?.f_mul_scalar(2.0)?)
}

/// A loss toward fixed CLIP embeddings, one per perceptor: a text prompt, an
/// image prompt, or (built with [`PromptLoss::semantic`]) the semantic
/// init/stabilisation target.
///
/// `embeds[p]` belongs to perceptor `p` and is `[D_p]`, `[1, D_p]`, or
/// `[N, D_p]` for one target per cutout (for example the target image cut at
/// the same placements as the current image, which makes the comparison
/// location-aware like pytti's semantic losses). Perceptors count equally: the
/// distances of all cutouts of all perceptors are averaged together (docs/design.md §2).
#[derive(Debug)]
pub struct PromptLoss {
    /// What the user wrote (the prompt text or image path), for messages.
    pub label: String,
    /// One target embedding tensor per perceptor, detached.
    pub embeds: Vec<Tensor>,
}

impl PromptLoss {
    /// A prompt loss toward `embeds` (one per perceptor; detached here so the
    /// target never receives gradient).
    pub fn new(label: impl Into<String>, embeds: Vec<Tensor>) -> Result<Self> {
        let label = label.into();
        if embeds.is_empty() {
            return Err(Error::internal(format!(
                "prompt \"{label}\" has no perceptor embeddings"
            )));
        }
        for (p, e) in embeds.iter().enumerate() {
            if !(1..=2).contains(&e.dim()) {
                return Err(Error::internal(format!(
                    "prompt \"{label}\": embedding for perceptor {p} is shaped {:?}, expected [D] or [N, D]",
                    e.size()
                )));
            }
        }
        let embeds = embeds.iter().map(|e| e.detach()).collect();
        Ok(PromptLoss { label, embeds })
    }

    /// The semantic init/stabilisation loss (docs/design.md §6): the target image's
    /// embeddings compared with the cutouts through the perceptors, with the
    /// same distance and weight/stop rule as a prompt. pytti adds a constant
    /// 0.7 offset to semantic distances; it changes neither the gradient nor
    /// (with a stop) anything users rely on, so zoetrope does not.
    pub fn semantic(label: impl Into<String>, target_embeds: Vec<Tensor>) -> Result<Self> {
        Self::new(format!("{} (semantic)", label.into()), target_embeds)
    }

    /// Distances of every cutout of every perceptor, concatenated: `[Σ N_p]`.
    /// `cutout_embeds[p]` is `[N_p, D_p]` from perceptor `p`.
    pub fn distances(&self, cutout_embeds: &[Tensor]) -> Result<Tensor> {
        if cutout_embeds.len() != self.embeds.len() {
            return Err(Error::internal(format!(
                "prompt \"{}\" has embeddings for {} perceptors but the cutouts come from {}",
                self.label,
                self.embeds.len(),
                cutout_embeds.len()
            )));
        }
        let parts = cutout_embeds
            .iter()
            .zip(&self.embeds)
            .map(|(x, y)| spherical_distance(x, y))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| e.context(format!("prompt \"{}\"", self.label)))?;
        Ok(Tensor::f_cat(&parts, 0)?)
    }

    /// This prompt's loss for one step (weight/stop rule of docs/design.md §2, module docs).
    pub fn loss(&self, cutout_embeds: &[Tensor], ws: WeightStop) -> Result<Tensor> {
        ws.validate(&format!("prompt \"{}\"", self.label))?;
        if ws.is_disabled() {
            return zero_attached(cutout_embeds);
        }
        weighted_with_stop(&self.distances(cutout_embeds)?, ws)
    }
}

/// The prompts of one scene with their weight at the current step
/// (from the timeline, docs/design.md §3) and each prompt's evaluated weight/stop.
#[derive(Debug)]
pub struct ScenePrompts<'a> {
    pub weight: f64,
    pub prompts: Vec<(&'a PromptLoss, WeightStop)>,
}

/// The total prompt loss of a step: `Σ_scenes weight(scene, s) · Σ_prompts loss(prompt)`,
/// every prompt in one [`weighted_table`] as the render's step computes it.
/// Scenes and prompts of weight 0 contribute value 0 and gradient 0; the
/// result is always attached to the cutout embeddings, so a backward pass
/// through it is valid.
pub fn scene_prompt_loss(scenes: &[ScenePrompts<'_>], cutout_embeds: &[Tensor]) -> Result<Tensor> {
    let rows = prompt_table_rows(scenes)?;
    let raw = scenes
        .iter()
        .flat_map(|scene| &scene.prompts)
        .map(|(prompt, _)| prompt.distances(cutout_embeds))
        .collect::<Result<Vec<_>>>()?;
    let total = zero_attached(cutout_embeds)?;
    if raw.is_empty() {
        return Ok(total);
    }
    let k = raw.len() as i64;
    let table = Tensor::f_from_slice(&rows)?
        .f_view([k, 3])?
        .f_to_device(total.device())?;
    Ok(total.f_add(&weighted_table(&Tensor::f_stack(&raw, 0)?, &table)?)?)
}

/// The [`weighted_table`] rows of every prompt of `scenes`, in order:
/// `(scene weight, prompt weight, stop)`, after checking that each number is
/// usable (errors name the prompt).
pub fn prompt_table_rows(scenes: &[ScenePrompts<'_>]) -> Result<Vec<f32>> {
    let mut rows = Vec::new();
    for scene in scenes {
        if !scene.weight.is_finite() {
            return Err(Error::internal(format!(
                "scene weight {} is not finite",
                scene.weight
            )));
        }
        for (prompt, ws) in &scene.prompts {
            ws.validate(&format!("prompt \"{}\"", prompt.label))?;
            rows.extend(table_row(scene.weight, *ws));
        }
    }
    Ok(rows)
}

/// A zero scalar attached to the graph of `tensors` (zero gradient).
fn zero_attached(tensors: &[Tensor]) -> Result<Tensor> {
    let first = tensors.first().ok_or_else(|| {
        Error::internal("a loss needs at least one perceptor's cutout embeddings")
    })?;
    let mut total = first.f_sum(Kind::Float)?.f_mul_scalar(0.0)?;
    for t in &tensors[1..] {
        total = total.f_add(&t.f_sum(Kind::Float)?.f_mul_scalar(0.0)?)?;
    }
    Ok(total)
}

/// What a direct (pixel-space or latent-space) loss pulls toward.
#[derive(Debug)]
pub enum DirectTarget {
    /// VQGAN: the target's quantised latent `[1, C, h, w]` and its RGB image
    /// `[1, 3, H, W]` in `[0, 1]`.
    Latent { z_q: Tensor, rgb: Tensor },
    /// Unlimited Palette: the target RGB image `[1, 3, H, W]` in `[0, 1]`.
    Rgb { rgb: Tensor },
}

/// The `direct_init_weight` / `direct_stabilization_weight` loss (docs/design.md §6).
///
/// VQGAN uses pytti's latent loss `MSE(z_q, z_q_target)/2 + MSE(rgb, rgb_target)/10`;
/// Unlimited Palette uses the RGB MSE. The weight/stop rule applies to that
/// scalar, as in pytti's `Loss.forward`.
#[derive(Debug)]
pub struct DirectLoss {
    /// Which setting this is (`direct_init_weight`, …), for messages.
    pub label: String,
    pub target: DirectTarget,
    /// pytti's mask of a direct image prompt: `[1, 1, H, W]` over the image
    /// and (VQGAN) `[1, 1, h, w]` over the latent; both sides of each MSE
    /// are multiplied by it.
    pub masks: Option<(Tensor, Option<Tensor>)>,
}

impl DirectLoss {
    /// The loss with a mask (docs/design.md §6a): `rgb` multiplies the image
    /// term's both sides, `latent` the latent term's.
    pub fn with_masks(mut self, rgb: &Tensor, latent: Option<&Tensor>) -> Self {
        self.masks = Some((rgb.detach(), latent.map(Tensor::detach)));
        self
    }

    /// A VQGAN latent loss toward `z_q_target` and `rgb_target` (detached).
    pub fn latent(label: impl Into<String>, z_q_target: &Tensor, rgb_target: &Tensor) -> Self {
        DirectLoss {
            label: label.into(),
            target: DirectTarget::Latent {
                z_q: z_q_target.detach(),
                rgb: rgb_target.detach(),
            },
            masks: None,
        }
    }

    /// An RGB loss toward `rgb_target` (detached).
    pub fn rgb(label: impl Into<String>, rgb_target: &Tensor) -> Self {
        DirectLoss {
            label: label.into(),
            target: DirectTarget::Rgb {
                rgb: rgb_target.detach(),
            },
            masks: None,
        }
    }

    /// The raw scalar loss of the current `z_q` (VQGAN) and `rgb` image.
    pub fn raw(&self, z_q: Option<&Tensor>, rgb: &Tensor) -> Result<Tensor> {
        let masked = |x: &Tensor, m: Option<&Tensor>| -> Result<Tensor> {
            Ok(match m {
                Some(m) => x.f_mul(&m.f_to_device(x.device())?)?,
                None => x.shallow_clone(),
            })
        };
        let (rgb_mask, latent_mask) = match &self.masks {
            Some((r, l)) => (Some(r), l.as_ref()),
            None => (None, None),
        };
        let rgb_term = mse(
            &masked(rgb, rgb_mask)?,
            &masked(self.target_rgb(), rgb_mask)?,
            &self.label,
            "image",
        )?;
        match &self.target {
            DirectTarget::Rgb { .. } => Ok(rgb_term),
            DirectTarget::Latent { z_q: target, .. } => {
                let z_q = z_q.ok_or_else(|| {
                    Error::internal(format!(
                        "{}: the VQGAN latent loss needs the current z_q",
                        self.label
                    ))
                })?;
                let latent_term = mse(
                    &masked(z_q, latent_mask)?,
                    &masked(target, latent_mask)?,
                    &self.label,
                    "latent",
                )?;
                Ok(latent_term
                    .f_div_scalar(2.0)?
                    .f_add(&rgb_term.f_div_scalar(10.0)?)?)
            }
        }
    }

    /// The weighted loss of one step (weight/stop rule on the scalar).
    pub fn loss(&self, z_q: Option<&Tensor>, rgb: &Tensor, ws: WeightStop) -> Result<Tensor> {
        ws.validate(&self.label)?;
        weighted_with_stop(&self.raw(z_q, rgb)?, ws)
    }

    fn target_rgb(&self) -> &Tensor {
        match &self.target {
            DirectTarget::Latent { rgb, .. } | DirectTarget::Rgb { rgb } => rgb,
        }
    }
}

/// Mean squared error in float32 with a shape check naming the loss.
fn mse(x: &Tensor, target: &Tensor, label: &str, what: &str) -> Result<Tensor> {
    if x.size() != target.size() {
        return Err(Error::internal(format!(
            "{label}: the {what} is shaped {:?} but its target is {:?}; resize the target to the render size first",
            x.size(),
            target.size()
        )));
    }
    let target = target.f_to_kind(Kind::Float)?.f_to_device(x.device())?;
    Ok(x.f_to_kind(Kind::Float)?
        .f_mse_loss(&target, Reduction::Mean)?)
}

/// pytti's `replace_grad(forward, backward)`: the value of `forward` with the
/// gradient of `backward` (`backward + (forward − backward).detach()`). Both
/// must be finite where they differ.
pub fn replace_grad(forward: &Tensor, backward: &Tensor) -> Result<Tensor> {
    Ok(backward.f_add(&forward.f_sub(backward)?.f_detach()?)?)
}

/// Straight-through vector quantisation: the value of `z_q` (the nearest
/// codebook vectors) with the gradient passed unchanged to `z`,
/// `z + (z_q − z).detach()` (docs/design.md §7 step 1).
pub fn straight_through(z: &Tensor, z_q: &Tensor) -> Result<Tensor> {
    if z.size() != z_q.size() {
        return Err(Error::internal(format!(
            "straight-through quantisation of {:?} with codes shaped {:?}",
            z.size(),
            z_q.size()
        )));
    }
    replace_grad(z_q, z)
}

/// pytti's `clamp_with_grad` gradient rule for an upstream gradient `grad` at
/// input `x`: `grad · [grad · (x − clamp(x, lo, hi)) ≥ 0]`. Inside the range it
/// passes unchanged; outside it passes only when a descent step (`x −= η·grad`)
/// moves `x` back toward the range.
pub fn clamp_grad_rule(x: &Tensor, grad: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    let excess = x.f_sub(&x.f_clamp(lo, hi)?)?;
    let keep = grad.f_mul(&excess)?.f_ge(0.0)?.f_to_kind(grad.kind())?;
    Ok(grad.f_mul(&keep)?)
}

/// A single-pass approximation of `clamp_with_grad`: value clamped to
/// `[lo, hi]`, gradient passed through unchanged everywhere
/// (pytti's `clamp_grad`).
///
/// An exact single-pass version cannot exist without a custom autograd
/// function: every composition of differentiable torch ops has a
/// vector-Jacobian product that is *linear* in the upstream gradient, while
/// pytti's rule (keep the gradient only when it points inward) depends on the
/// gradient's sign. Use [`ClampWithGrad`] for the exact rule; this version is
/// exact inside the range and for inward-pointing gradients, and differs only
/// by also passing gradients that push an out-of-range value further out.
pub fn clamp_straight_through(x: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    replace_grad(&x.f_clamp(lo, hi)?, x)
}

/// pytti's `clamp_with_grad`, exact, in two backward passes (docs/design.md §7 step 2).
///
/// [`ClampWithGrad::new`] cuts the graph: [`output`](Self::output) is the
/// clamped value as a fresh leaf, which the losses consume. [`backward`](Self::backward)
/// then (1) back-propagates the loss, which gives every other path its
/// gradient and leaves `∂loss/∂output` on the leaf, (2) applies
/// [`clamp_grad_rule`] to that gradient and (3) back-propagates the masked
/// gradient from the input. The result equals the custom-autograd version.
///
/// The loss's graph must not share saved tensors with the input's graph other
/// than through `output` (the first pass frees what it visits). Paths that
/// touch the same parameters without saving tensors, such as the
/// straight-through `z_q` feeding both the decoder and the latent loss, are
/// fine.
#[derive(Debug)]
pub struct ClampWithGrad {
    input: Tensor,
    output: Tensor,
    lo: f64,
    hi: f64,
}

impl ClampWithGrad {
    /// Clamps `x` to `[lo, hi]`; `x` keeps its graph for the second pass.
    pub fn new(x: &Tensor, lo: f64, hi: f64) -> Result<Self> {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(Error::internal(format!("invalid clamp range [{lo}, {hi}]")));
        }
        let output = x.f_detach()?.f_clamp(lo, hi)?.f_set_requires_grad(true)?;
        Ok(ClampWithGrad {
            input: x.shallow_clone(),
            output,
            lo,
            hi,
        })
    }

    /// The clamped value, a leaf that receives the losses' gradient.
    pub fn output(&self) -> &Tensor {
        &self.output
    }

    /// Back-propagates `loss` through everything, routing the gradient that
    /// reaches [`output`](Self::output) into the input by pytti's rule.
    /// Gradients accumulate into the leaves' `.grad` as `loss.backward()` does.
    pub fn backward(&self, loss: &Tensor) -> Result<()> {
        self.backward_with(loss, || Ok(()))
    }

    /// [`backward`](Self::backward), calling `between` after the first pass
    /// (the losses back to the clamped image) and before the second (the
    /// image back to the input): to time the two halves, and to finish
    /// checkpointed segments, whose gradient reaches the image only when
    /// they are back-propagated by hand.
    pub fn backward_with(
        &self,
        loss: &Tensor,
        mut between: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        loss.f_backward()?;
        between()?;
        let grad = self.output.f_grad()?;
        if !grad.defined() || !self.input.requires_grad() {
            return Ok(());
        }
        let masked = clamp_grad_rule(&self.input.f_detach()?, &grad, self.lo, self.hi)?;
        self.input
            .f_mul(&masked.f_to_kind(self.input.kind())?)?
            .f_sum(None)?
            .f_backward()?;
        Ok(())
    }
}

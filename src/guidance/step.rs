//! One optimisation step of a [`Guide`] (docs/design.md §7) and the image
//! model's side of the losses (docs/design.md §6).
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
//! 4. Loss = `Σ_scenes weight · Σ_prompts loss` (docs/design.md §2, §3) + the direct and
//!    semantic init/stabilisation losses (docs/design.md §6); backward; Adam step on the
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
//! `tests/it/step_reference.rs` runs this step (with [`Adam`], on fixed cutout
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
//! distance and weight/stop rule are a prompt's (docs/design.md §2).
//!

use tch::{Kind, Tensor};

use crate::guidance::adam::Adam;
use crate::guidance::cutouts::clip_normalize;
use crate::guidance::guide::{Guide, StepWeights, Target};
use crate::guidance::image::{ImageModel, ImageState};
use crate::guidance::loss::{
    prompt_table_rows, spherical_distance, spherical_distances, straight_through, table_row,
    tv_loss, weighted_table, ClampWithGrad, DirectLoss, ScenePrompts, WeightStop,
};
use crate::guidance::phases::{mark, PhaseTimes};
use crate::models::clip::VitCheckpoint;
use crate::rng::Rng;
use crate::{Error, Result};

impl Guide {
    /// One optimisation step (docs/design.md §7, module docs): forward through the
    /// straight-through quantiser, the decoder, the exact clamp rule and every
    /// perceptor's cutouts; the weighted prompt losses (docs/design.md §2, §3) plus the
    /// init/stabilisation losses given (docs/design.md §6); backward; the Adam update of
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
        let (wd, h) = (state.width(), state.height());
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
        match w.smoothing {
            Some(ws) => {
                ws.validate("smoothing_weight")?;
                table.extend(table_row(1.0, ws));
            }
            None => table.extend([0.0, 0.0, f32::NEG_INFINITY]),
        }
        let [step_size, bc2] = adam.advance();
        table.extend([step_size as f32, bc2 as f32]);
        let packed = crate::gpu::upload(&Tensor::f_from_slice(&table)?, device)?;
        Ok(StepInputs { bins, packed })
    }

    /// The device half of a step (module docs): reads only tensors, so a
    /// CUDA graph can capture it.
    pub(super) fn device_step(
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
        let (unclamped, z_q) = forward_image(state)?;
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
            .filter(|(k, _)| SEMANTIC_ROWS.contains(k))
            .filter_map(|(k, (_, t))| t.map(|(_, target)| (k, target)))
            .collect();
        let mut checkpoints = Vec::new();
        if self.needs_cutouts(w) {
            let (embeds, target_cuts) =
                self.encode_cutouts(image, inputs, &semantic, rng, phases, &mut checkpoints)?;
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
        let mut total = direct_losses(total, z_q.as_ref(), image, &table, p_count, w)?;

        // 5: pytti's smoothing loss, the total variation of the clamped image.
        if w.smoothing.is_some() {
            let raw = tv_loss(image)?.f_view([1, 1])?;
            let row = table.f_narrow(0, p_count + SMOOTHING_ROW, 1)?;
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

    /// Step 3's forward: per perceptor, one batch of cutouts of `image` and
    /// its embeddings `[N, D]` (float32), and for each semantic loss the
    /// embeddings of its target cut at the same placements (no gradient).
    fn encode_cutouts<'g>(
        &'g self,
        image: &Tensor,
        inputs: &StepInputs,
        semantic: &[(usize, &Target)],
        rng: &mut Rng,
        phases: &mut Option<&mut PhaseTimes>,
        checkpoints: &mut Vec<VitCheckpoint<'g>>,
    ) -> Result<(Vec<Tensor>, Vec<Vec<Tensor>>)> {
        let device = image.device();
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
        Ok((embeds, target_cuts))
    }
}

/// Steps 1–2's forward before the clamp: the image `(decode(z_q) + 1)/2`
/// through the straight-through quantiser with that `z_q` (VQGAN), or the
/// Palette's pixels (no latent).
fn forward_image(state: &ImageState) -> Result<(Tensor, Option<Tensor>)> {
    Ok(match state.model() {
        ImageModel::Palette => (state.param().shallow_clone(), None),
        ImageModel::Vqgan(vqgan) => {
            let (codes, _) = vqgan.quantize(state.param())?;
            let z_q = straight_through(state.param(), &codes.f_to_kind(Kind::Float)?)?;
            let decoded = vqgan.decode(&z_q)?.f_to_kind(Kind::Float)?;
            (decoded.f_add_scalar(1.0)?.f_div_scalar(2.0)?, Some(z_q))
        }
    })
}

/// Step 4: adds the direct init/stabilisation and loop-closing losses given
/// (toward the target's pixels, and its latent for a VQGAN) to `total`, each
/// weighted by its row of the weight table.
fn direct_losses(
    mut total: Tensor,
    z_q: Option<&Tensor>,
    image: &Tensor,
    table: &Tensor,
    p_count: i64,
    w: &StepWeights<'_>,
) -> Result<Tensor> {
    for (k, (name, entry)) in optional_losses(w).into_iter().enumerate() {
        if SEMANTIC_ROWS.contains(&k) {
            continue;
        }
        let Some((_, target)) = entry else { continue };
        let loss = match (z_q, &target.z_q) {
            (Some(_), Some(tz)) => DirectLoss::latent(name, tz, &target.rgb),
            (None, _) => DirectLoss::rgb(name, &target.rgb),
            (Some(_), None) => {
                return Err(Error::internal(format!(
                "{name}: a VQGAN render needs a target with a latent (make it with Guide::target)"
            )))
            }
        };
        let raw = loss.raw(z_q, image)?.f_view([1, 1])?;
        let row = table.f_narrow(0, p_count + k as i64, 1)?;
        total = total.f_add(&weighted_table(&raw, &row)?)?;
    }
    Ok(total)
}

/// The losses of a step toward a target image (the init/stabilisation
/// losses and the loop-closing loss), in the weight table's order.
pub(super) fn optional_losses<'a>(
    w: &StepWeights<'a>,
) -> [(&'static str, Option<(WeightStop, &'a Target)>); TARGET_LOSSES] {
    [
        ("direct_init_weight", w.direct_init),
        ("direct_stabilization_weight", w.direct_stabilization),
        ("semantic_init_weight", w.semantic_init),
        ("semantic_stabilization_weight", w.semantic_stabilization),
        ("loop_weight", w.loop_closing),
    ]
}

/// How many losses [`optional_losses`] lists.
pub(super) const TARGET_LOSSES: usize = 5;
/// Which of them compare through the perceptors (the others are direct).
const SEMANTIC_ROWS: std::ops::Range<usize> = 2..4;
/// The smoothing loss's row in the weight table, after the prompts.
const SMOOTHING_ROW: i64 = TARGET_LOSSES as i64;
/// Rows of the weight table after the prompts: the target losses and
/// smoothing.
const EXTRA_ROWS: i64 = TARGET_LOSSES as i64 + 1;

/// What a step uploads from the host, on the device ([`Guide::prepare`]).
#[derive(Debug)]
pub struct StepInputs {
    /// Per perceptor, the cutouts' pooling bins `[4, N, r]` int64 (empty
    /// when the step needs no cutouts).
    pub(super) bins: Vec<Tensor>,
    /// float32: the weight table `[(P + 6) × 3]` (prompts, the four
    /// init/stabilisation losses, the loop-closing loss, smoothing), then
    /// Adam's two scalars.
    pub(super) packed: Tensor,
}

impl StepInputs {
    /// The weight table `[P + 6, 3]`.
    fn table(&self, prompts: usize) -> Result<Tensor> {
        let rows = prompts as i64 + EXTRA_ROWS;
        Ok(self.packed.f_narrow(0, 0, rows * 3)?.f_view([rows, 3])?)
    }

    /// Adam's `[lr / bc1, bc2]`.
    fn adam(&self, prompts: usize) -> Result<Tensor> {
        Ok(self
            .packed
            .f_narrow(0, (prompts as i64 + EXTRA_ROWS) * 3, 2)?)
    }
}

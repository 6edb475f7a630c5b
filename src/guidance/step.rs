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
//!    batched resampling op, then pytti's augmentations when the sampler has
//!    them, then the noise) is encoded by CLIP. With
//!    `gradient_accumulation_steps = k` ([`Guide::set_gradient_accumulation_steps`])
//!    steps 3–4's cutout losses run in `k` passes over parts of each batch,
//!    each back-propagated to the image (weighted by its share of the
//!    cutouts) before the next; the last pass joins the other losses, whose
//!    backward goes on through the decoder once. Placements, augmentations
//!    and noise are drawn for the whole batch first, so the update is the
//!    one-pass update up to float rounding.
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
use crate::guidance::augment::AugmentParams;
use crate::guidance::cutouts::{clip_normalize, draw_noise};
use crate::guidance::guide::{Guide, StepWeights, Target};
use crate::guidance::image::{ImageModel, ImageState};
use crate::guidance::loss::{
    prompt_table_rows, spherical_distance, spherical_distances, straight_through, table_row,
    tv_loss, weighted_table, weighted_table_masked, ClampWithGrad, DirectLoss, ScenePrompts,
    WeightStop,
};
use crate::guidance::mask::{mask_rows, semantic_floors, CropPlace, MaskTarget};
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
        let augmented = inputs.augments.iter().any(Option::is_some);
        if self.tuning.cuda_graphs && device.is_cuda() && crate::gpu::shim_built() && !augmented {
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

    /// The host half of a step: draws the crop placements (and, with
    /// `cutout_augs`, each batch's augmentations) from `rng`, evaluates the
    /// placements into pooling bins, writes the weight table
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
        let mut augments = Vec::new();
        let mut places = Vec::new();
        let mut located = Vec::new();
        if self.needs_cutouts(w) {
            for (i, p) in self.perceptors.iter().enumerate() {
                let crops = p.sampler.place(wd, h, rng)?;
                let own: Vec<CropPlace> = crops.iter().map(|c| CropPlace::of(c, wd, h)).collect();
                if let Some(l) = &self.located {
                    let index = Tensor::f_from_slice(&l.index(i, &own)?)?
                        .f_view([self.prompt_count() as i64, own.len() as i64])?;
                    located.push(crate::gpu::upload(&index, device)?);
                }
                places.extend(own);
                let b = p.sampler.bins(&crops, wd, h)?;
                let t = Tensor::f_from_slice(&b)?.f_view([
                    4,
                    crops.len() as i64,
                    p.sampler.resolution,
                ])?;
                bins.push(crate::gpu::upload(&t, device)?);
                augments.push(p.sampler.draw_augment(crops.len(), rng)?);
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
        for (ws, d) in w.direct_images.iter().zip(&self.direct_images) {
            ws.validate(&format!("direct_image_prompts \"{}\"", d.label))?;
            table.extend(table_row(1.0, *ws));
        }
        let [step_size, bc2] = adam.advance();
        table.extend([step_size as f32, bc2 as f32]);
        let packed = crate::gpu::upload(&Tensor::f_from_slice(&table)?, device)?;
        let masks = self.upload_masks(w, &places, device)?;
        Ok(StepInputs {
            bins,
            augments,
            packed,
            masks,
            located,
        })
    }

    /// The step's prompt-mask rows `[2, P, ΣN]` (weight factors, stop
    /// floors; docs/design.md §2a), uploaded, when a prompt has a mask and
    /// the step has cutouts.
    fn upload_masks(
        &self,
        w: &StepWeights<'_>,
        places: &[CropPlace],
        device: tch::Device,
    ) -> Result<Option<Tensor>> {
        if !self.has_masks() || places.is_empty() {
            return Ok(None);
        }
        let thresholds = w
            .prompt_weights
            .iter()
            .flatten()
            .map(|ws| ws.mask_threshold);
        let masks: Vec<_> = self.masks.iter().zip(thresholds).collect();
        let rows = mask_rows(&masks, places);
        let t =
            Tensor::f_from_slice(&rows)?.f_view([2, masks.len() as i64, places.len() as i64])?;
        Ok(Some(crate::gpu::upload(&t, device)?))
    }

    /// The prompts' loss over one pass's distances `[P, Σn]`: the weight
    /// table's rule, with the masks' factors and floors when the step has
    /// them (`masks`: the pass's columns of [`StepInputs::masks`]; semantic
    /// floors computed here from the pass's cutout embeddings, `present`
    /// naming the perceptors that have cutouts in the pass).
    fn prompt_losses(
        &self,
        distances: &Tensor,
        table: &Tensor,
        masks: Option<&Tensor>,
        embeds: &[Tensor],
        present: &[usize],
    ) -> Result<Tensor> {
        let Some(masks) = masks else {
            return weighted_table(distances, table);
        };
        let factors = masks.f_select(0, 0)?;
        let host_floors = masks.f_select(0, 1)?;
        let mut floors = Vec::with_capacity(self.masks.len());
        for (k, mask) in self.masks.iter().enumerate() {
            let row = host_floors.f_select(0, k as i64)?;
            floors.push(match mask {
                MaskTarget::Semantic(text) => {
                    let text: Vec<Tensor> =
                        present.iter().map(|&i| text[i].shallow_clone()).collect();
                    semantic_floors(embeds, &text, &row)?
                }
                _ => row,
            });
        }
        let floors = Tensor::f_stack(&floors, 0)?;
        weighted_table_masked(distances, table, &factors, &floors)
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
        let table = inputs.table(prompt_count, self.direct_images.len())?;
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
        // The losses of the cutout passes before the last, already
        // back-propagated to the image (gradient_accumulation_steps > 1).
        let mut earlier: Option<Tensor> = None;
        if self.needs_cutouts(w) {
            let scope = LossScope {
                semantic: &semantic,
                table: &table,
                p_count,
            };
            let passes = self.cutout_loss(image, inputs, &scope, rng, phases)?;
            total = total.f_add(&passes.last)?;
            checkpoints = passes.checkpoints;
            earlier = passes.earlier;
        }

        // 4: direct losses toward pixels (and the latent, for a VQGAN).
        let mut total = direct_losses(total, z_q.as_ref(), image, &table, p_count, w)?;

        // 5: pytti's smoothing loss, the total variation of the clamped image.
        if w.smoothing.is_some() {
            let raw = tv_loss(image)?.f_view([1, 1])?;
            let row = table.f_narrow(0, p_count + SMOOTHING_ROW, 1)?;
            total = total.f_add(&weighted_table(&raw, &row)?)?;
        }

        // 6: the direct image prompts, as the direct losses.
        let mut total = self.direct_image_losses(total, z_q.as_ref(), image, &table, p_count)?;

        // 7: the Limited Palette's own losses (HDR, palette normalisation),
        // constant weights.
        if let Some(extra) = state.image_losses()? {
            total = total.f_add(&extra)?;
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
        adam.apply(
            state.param_mut(),
            &inputs.adam(prompt_count, self.direct_images.len())?,
        )?;
        state.clamp_after_step()?;
        mark(phases, device, Some("adam"));
        let total = total.f_detach()?;
        Ok(match earlier {
            Some(e) => total.f_add(&e)?,
            None => total,
        })
    }

    /// Step 6: adds each direct image prompt's loss (docs/design.md §6a;
    /// the direct losses' rule, with its mask) weighted by its row of the
    /// weight table, after the prompts, the optional losses and smoothing.
    fn direct_image_losses(
        &self,
        mut total: Tensor,
        z_q: Option<&Tensor>,
        image: &Tensor,
        table: &Tensor,
        p_count: i64,
    ) -> Result<Tensor> {
        for (k, d) in self.direct_images.iter().enumerate() {
            let label = format!("direct_image_prompts \"{}\"", d.label);
            let loss = match (z_q, &d.target.z_q) {
                (Some(_), Some(tz)) => DirectLoss::latent(label, tz, &d.target.rgb),
                (None, _) => DirectLoss::rgb(label, &d.target.rgb),
                (Some(_), None) => {
                    return Err(Error::internal(format!(
                        "{label}: a VQGAN render needs a target with a latent"
                    )))
                }
            };
            let loss = match &d.masks {
                Some((rgb, latent)) => loss.with_masks(rgb, latent.as_ref()),
                None => loss,
            };
            let raw = loss.raw(z_q, image)?.f_view([1, 1])?;
            let row = table.f_narrow(0, p_count + EXTRA_ROWS + k as i64, 1)?;
            total = total.f_add(&weighted_table(&raw, &row)?)?;
        }
        Ok(total)
    }

    /// Steps 3–4 for the cutouts: the cutout losses (prompts and semantic
    /// losses) in the passes of `gradient_accumulation_steps`. Every pass
    /// but the last is weighted by its share of the cutouts and
    /// back-propagated to the image (checkpointed segments included) here;
    /// the last pass's loss and checkpoints are returned to join the other
    /// losses' backward.
    fn cutout_loss<'g>(
        &'g self,
        image: &Tensor,
        inputs: &StepInputs,
        scope: &LossScope<'_, '_>,
        rng: &mut Rng,
        phases: &mut Option<&mut PhaseTimes>,
    ) -> Result<CutoutLoss<'g>> {
        let noise = self.cutout_noise(image, inputs, rng)?;
        let passes = self.cutout_passes(inputs)?;
        let all: i64 = passes.iter().flatten().map(|&(_, len)| len).sum();
        let mut earlier: Option<Tensor> = None;
        for (k, parts) in passes.iter().enumerate() {
            let pass = CutoutPass {
                parts,
                noise: &noise,
            };
            let mut checkpoints = Vec::new();
            let (embeds, target_cuts) = self.encode_cutouts(
                image,
                inputs,
                &pass,
                scope.semantic,
                phases,
                &mut checkpoints,
            )?;
            let masks = pass_masks(inputs, parts)?;
            let present: Vec<usize> = (0..parts.len()).filter(|&i| parts[i].1 > 0).collect();
            let located = pass_located(inputs, parts)?;
            let prompts = PassPrompts {
                masks: masks.as_ref(),
                present: &present,
                located: &located,
            };
            let mut loss = self.cutout_losses(&embeds, &target_cuts, scope, &prompts)?;
            if passes.len() > 1 {
                // This pass's share of the means over all cutouts.
                let share: i64 = parts.iter().map(|&(_, len)| len).sum();
                loss = loss.f_mul_scalar(share as f64 / all as f64)?;
            }
            if k + 1 == passes.len() {
                return Ok(CutoutLoss {
                    last: loss,
                    checkpoints,
                    earlier,
                });
            }
            loss.f_backward()?;
            for c in &checkpoints {
                c.backward()?;
            }
            let value = loss.f_detach()?;
            earlier = Some(match earlier {
                Some(e) => e.f_add(&value)?,
                None => value,
            });
        }
        Err(Error::internal("a step with cutouts but no cutout pass"))
    }

    /// The prompt losses and semantic losses of one pass's embeddings
    /// (per perceptor, `[n, D]`), each a mean over the pass's cutouts of all
    /// perceptors, weighted by its rows of the weight table.
    fn cutout_losses(
        &self,
        embeds: &[Tensor],
        target_cuts: &[Vec<Tensor>],
        scope: &LossScope<'_, '_>,
        prompts: &PassPrompts<'_>,
    ) -> Result<Tensor> {
        let (semantic, table, p_count) = (scope.semantic, scope.table, scope.p_count);
        let mut total: Option<Tensor> = None;
        let mut add = |t: Tensor| -> Result<()> {
            total = Some(match total.take() {
                Some(a) => a.f_add(&t)?,
                None => t,
            });
            Ok(())
        };
        if p_count > 0 {
            let distances = self.prompt_distances_of(embeds, prompts)?; // [P, Σ n]
            add(self.prompt_losses(
                &distances,
                &table.f_narrow(0, 0, p_count)?,
                prompts.masks,
                embeds,
                prompts.present,
            )?)?;
        }
        for ((k, _), cuts) in semantic.iter().zip(target_cuts) {
            let raw = embeds
                .iter()
                .zip(cuts)
                .map(|(e, t)| spherical_distance(e, t))
                .collect::<Result<Vec<_>>>()?;
            let raw = Tensor::f_cat(&raw, 0)?.f_unsqueeze(0)?;
            let row = table.f_narrow(0, p_count + *k as i64, 1)?;
            add(weighted_table(&raw, &row)?)?;
        }
        total.ok_or_else(|| Error::internal("a step with cutouts but no loss on them"))
    }

    /// Every prompt's distance to every cutout of one pass, `[P, Σn]`: to
    /// its embedding (text), or (a location-aware image prompt,
    /// [`crate::guidance::located`]) to the prompt's cut matched with the
    /// cutout, plus pytti's offset.
    fn prompt_distances_of(&self, embeds: &[Tensor], prompts: &PassPrompts<'_>) -> Result<Tensor> {
        let mut distances = Vec::with_capacity(embeds.len());
        for (k, (&i, e)) in prompts.present.iter().zip(embeds).enumerate() {
            distances.push(match (&self.located, prompts.located.get(k)) {
                (Some(l), Some(index)) => {
                    spherical_distances(e, &l.extended[i])?.f_gather(0, index, false)?
                }
                _ => spherical_distances(e, &self.targets[i])?,
            });
        }
        let distances = Tensor::f_cat(&distances, 1)?;
        Ok(match &self.located {
            Some(l) => distances.f_add(&l.offsets)?,
            None => distances,
        })
    }

    /// Per perceptor, the noise of its whole batch of cutouts (drawn from
    /// `rng` in perceptor order, as one pass draws it), so that the passes of
    /// `gradient_accumulation_steps` add the same noise as one pass.
    fn cutout_noise(
        &self,
        image: &Tensor,
        inputs: &StepInputs,
        rng: &mut Rng,
    ) -> Result<Vec<Option<Tensor>>> {
        let device = image.device();
        self.perceptors
            .iter()
            .zip(&inputs.bins)
            .map(|(p, bins)| {
                let kind = self.cutout_kind(p);
                let n = bins.size()[1];
                let r = p.sampler.resolution;
                draw_noise(&[n, 3, r, r], p.sampler.noise, kind, device, rng)
            })
            .collect()
    }

    /// The kind cutouts are resampled in for perceptor `p`: its model's with
    /// `low-precision-cutouts` (bf16 models: tensor-core products; the
    /// perceptor rounds its input to bf16 anyway), else float32.
    fn cutout_kind(&self, p: &crate::guidance::guide::Perceptor) -> Kind {
        if self.tuning.low_precision_cutouts && p.clip.kind() != Kind::Float {
            p.clip.kind()
        } else {
            Kind::Float
        }
    }

    /// The passes of `gradient_accumulation_steps`: per pass, per perceptor,
    /// the range `(start, len)` of its batch of cutouts that goes through the
    /// perceptor in that pass (each batch split into nearly equal parts; a
    /// part may be empty for a perceptor with fewer cutouts than passes).
    fn cutout_passes(&self, inputs: &StepInputs) -> Result<Vec<Vec<(i64, i64)>>> {
        let k = self.accumulation.max(1) as i64;
        let sizes: Vec<i64> = inputs.bins.iter().map(|b| b.size()[1]).collect();
        let passes: Vec<Vec<(i64, i64)>> = (0..k)
            .map(|i| {
                sizes
                    .iter()
                    .map(|&n| (i * n / k, (i + 1) * n / k - i * n / k))
                    .collect()
            })
            .filter(|pass: &Vec<(i64, i64)>| pass.iter().any(|&(_, len)| len > 0))
            .collect();
        if passes.is_empty() {
            return Err(Error::internal("a step with cutouts but no cutout to pass"));
        }
        Ok(passes)
    }

    /// Step 3's forward for one pass: per perceptor, its part of the batch
    /// of cutouts of `image` (resampled, augmented, with the noise drawn for
    /// the batch, normalised) and their embeddings `[n, D]` (float32), and for
    /// each semantic loss the embeddings of its target cut at the same
    /// placements (no gradient, no augmentation).
    fn encode_cutouts<'g>(
        &'g self,
        image: &Tensor,
        inputs: &StepInputs,
        pass: &CutoutPass<'_>,
        semantic: &[(usize, &Target)],
        phases: &mut Option<&mut PhaseTimes>,
        checkpoints: &mut Vec<VitCheckpoint<'g>>,
    ) -> Result<(Vec<Tensor>, Vec<Vec<Tensor>>)> {
        let device = image.device();
        let mut embeds = Vec::with_capacity(self.perceptors.len());
        let mut target_cuts: Vec<Vec<Tensor>> = semantic.iter().map(|_| Vec::new()).collect();
        for (i, p) in self.perceptors.iter().enumerate() {
            let all_bins = inputs.bins.get(i).ok_or_else(|| {
                Error::internal(format!("no cutout bins for perceptor {}", p.name))
            })?;
            let (start, len) = pass.parts.get(i).copied().unwrap_or((0, 0));
            if len == 0 {
                continue;
            }
            let bins = &all_bins.f_narrow(1, start, len)?;
            let augment = match inputs.augments.get(i) {
                Some(Some(a)) => Some(a.slice(start as usize, len as usize)?),
                _ => None,
            };
            let kind = self.cutout_kind(p);
            let source = if kind != image.kind() {
                image.f_to_kind(kind)?
            } else {
                image.shallow_clone()
            };
            let mut cuts = p.sampler.augmented_bins(&source, bins, augment.as_ref())?;
            if let Some(Some(noise)) = pass.noise.get(i) {
                cuts = cuts.f_add(&noise.f_narrow(0, start, len)?)?;
            }
            let cuts = clip_normalize(&cuts)?;
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

/// What the cutout losses read besides the embeddings: the active
/// semantic losses (their weight-table row and target), the weight table
/// and the number of prompts.
struct LossScope<'a, 't> {
    semantic: &'a [(usize, &'t Target)],
    table: &'a Tensor,
    p_count: i64,
}

/// The cutout losses of a step ([`Guide::cutout_loss`]).
struct CutoutLoss<'g> {
    /// The last pass's loss, still to be back-propagated.
    last: Tensor,
    /// The last pass's checkpointed perceptor segments.
    checkpoints: Vec<VitCheckpoint<'g>>,
    /// The detached sum of the earlier passes' losses (already
    /// back-propagated), `None` with one pass.
    earlier: Option<Tensor>,
}

/// What one pass's prompt losses read besides the embeddings.
struct PassPrompts<'a> {
    /// The pass's columns of the step's masks ([`pass_masks`]).
    masks: Option<&'a Tensor>,
    /// The perceptors with cutouts in the pass, in order (the embeddings'
    /// perceptors).
    present: &'a [usize],
    /// Per present perceptor, the pass's columns of its location-aware
    /// gather index ([`StepInputs::located`]); empty without image prompts.
    located: &'a [Tensor],
}

/// Per perceptor with cutouts in the pass, the pass's columns of its
/// location-aware gather index `[P, n]`; empty without image prompts.
fn pass_located(inputs: &StepInputs, parts: &[(i64, i64)]) -> Result<Vec<Tensor>> {
    let mut out = Vec::with_capacity(inputs.located.len());
    for (index, &(start, len)) in inputs.located.iter().zip(parts) {
        if len > 0 {
            out.push(index.f_narrow(1, start, len)?);
        }
    }
    Ok(out)
}

/// The columns of the step's masks `[2, P, ΣN]` that belong to one pass's
/// cutouts (per perceptor `(start, len)` of its batch; the columns are the
/// perceptors' batches one after the other).
fn pass_masks(inputs: &StepInputs, parts: &[(i64, i64)]) -> Result<Option<Tensor>> {
    let Some(masks) = &inputs.masks else {
        return Ok(None);
    };
    let mut offset = 0;
    let mut columns = Vec::new();
    for (bins, &(start, len)) in inputs.bins.iter().zip(parts) {
        if len > 0 {
            columns.push(masks.f_narrow(2, offset + start, len)?);
        }
        offset += bins.size()[1];
    }
    Ok(Some(Tensor::f_cat(&columns, 2)?))
}

/// One pass of a step's cutouts through the perceptors
/// (`gradient_accumulation_steps`; one pass takes all of them).
struct CutoutPass<'a> {
    /// Per perceptor, `(start, len)` of its batch.
    parts: &'a [(i64, i64)],
    /// Per perceptor, the noise of its whole batch (`None` without noise).
    noise: &'a [Option<Tensor>],
}

/// Steps 1–2's forward before the clamp: the image `(decode(z_q) + 1)/2`
/// through the straight-through quantiser with that `z_q` (VQGAN), or the
/// Palette's pixels, or the Limited Palette's decoded image (no latent).
fn forward_image(state: &ImageState) -> Result<(Tensor, Option<Tensor>)> {
    Ok(match state.model() {
        ImageModel::Palette => (state.param().shallow_clone(), None),
        ImageModel::LimitedPalette { model, .. } => {
            let layout = model.layout(state.height(), state.width());
            (model.decode(state.param(), layout)?, None)
        }
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
    /// Per perceptor, its batch's drawn augmentations (`None` without
    /// `cutout_augs`); host values, so a step with augmentations is not
    /// captured as a CUDA graph.
    pub(super) augments: Vec<Option<AugmentParams>>,
    /// float32: the weight table `[(P + 6 + D) × 3]` (prompts, the four
    /// init/stabilisation losses, the loop-closing loss, smoothing, the
    /// direct image prompts), then
    /// Adam's two scalars.
    pub(super) packed: Tensor,
    /// float32 `[2, P, ΣN]`: every prompt's mask weight factors and stop
    /// floors per cutout (docs/design.md §2a); `None` when no prompt has a
    /// mask or the step has no cutouts.
    pub(super) masks: Option<Tensor>,
    /// Per perceptor, int64 `[P, N]`: the row of the extended targets each
    /// prompt reads for each cutout (docs/design.md §2b); empty without
    /// image prompts or cutouts.
    pub(super) located: Vec<Tensor>,
}

impl StepInputs {
    /// The weight table `[P + 6 + direct, 3]`.
    fn table(&self, prompts: usize, direct: usize) -> Result<Tensor> {
        let rows = prompts as i64 + EXTRA_ROWS + direct as i64;
        Ok(self.packed.f_narrow(0, 0, rows * 3)?.f_view([rows, 3])?)
    }

    /// Adam's `[lr / bc1, bc2]`.
    fn adam(&self, prompts: usize, direct: usize) -> Result<Tensor> {
        Ok(self
            .packed
            .f_narrow(0, (prompts as i64 + EXTRA_ROWS + direct as i64) * 3, 2)?)
    }
}

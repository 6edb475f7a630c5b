//! How much memory a render will need at its peak, on the CPU and on CUDA,
//! worked out from the architectures alone (no weights, no libtorch).
//!
//! `zoetrope plan` prints the estimate and `plan`/`render` warn before
//! loading any model when it exceeds the device's memory. The functions
//! here are pure: [`estimate`] takes a [`Workload`] (architectures, size,
//! cutouts, precision, switches) and returns a [`MemoryEstimate`]; the
//! scene-to-workload step ([`Workload::of_scene`]) reads at most the
//! headers of weights files that are present, [`DeviceChoice::memory`]
//! asks the machine how much it has, and [`shortage`] words the warning.
//!
//! # What is counted
//!
//! Elements are counted per tensor and multiplied by the element size of
//! the compute kind (4 bytes in fp32, 2 in bf16). The peak is the largest
//! of three moments of a render:
//!
//! 1. **Loading.** Every model's parameters, text towers included. On the
//!    CPU also the CLIP file being read: the loader holds the whole file
//!    while it fills the model (its size from the file when present, else
//!    the parameters at 2 bytes each, the dtype of OpenAI's archives).
//! 2. **The step, at the start of the perceptors' backward pass**, where
//!    everything the forward pass kept for the backward pass is alive at
//!    once: the parameters (the text towers are freed once the prompts are
//!    embedded; the VQGAN encoder stays, the frame loop encodes every
//!    warped frame), the decoder's saved activations, every perceptor's,
//!    the cutouts and their pooling matrices, plus the gradients in flight
//!    in the last ViT block's MLP (the widest moment of its backward pass).
//! 3. **The step, at the start of the decoder's backward pass**: the
//!    perceptors' graph is gone (the exact clamp rule back-propagates the
//!    losses to the image first), the decoder's saved activations are all
//!    alive, and its full-resolution lean nodes hold a few more maps of
//!    gradient and recomputed norm.
//!
//! What each layer keeps, with frozen weights (guidance differentiates with
//! respect to the image only, so a linear layer keeps nothing: libtorch
//! saves a matrix product's input only when the weight needs a gradient;
//! a convolution keeps its input whatever the weight needs):
//!
//! - ViT block (`T` tokens of width `W`, `N` cutouts; one unit = `N·T·W`):
//!   `ln_1`'s input (1), the fused attention's q, k, v (3, views of one
//!   `[N, T, 3W]` tensor) and output (1), `ln_2`'s input (1), the MLP's
//!   activation input (4): **10 units**. With `deterministic` the explicit
//!   attention also keeps its probabilities (`N·heads·T²`). With
//!   `checkpoint-perceptors` a block keeps its input only (1 unit), and one
//!   block at a time is recomputed during the backward pass (10 units).
//!   Before the blocks: the cutouts (the patch convolution's input) and
//!   `ln_pre`'s input (1 unit).
//! - ModifiedResNet bottleneck: every convolution's input, every batch
//!   norm's input and every ReLU's output (eval-mode batch norm still saves
//!   its input in libtorch); the stem likewise.
//! - VQGAN decoder: with `lean-activations` (the default) a
//!   `GroupNorm → SiLU → conv` chain keeps its input only and an
//!   up-sampling convolution nothing, so a residual block keeps its two
//!   chains' inputs (`C_in + C_out` maps); without it each chain keeps
//!   three maps and each up-sampling convolution its input. An attention
//!   block keeps six maps (its input, the norm's output, q, k, v, the
//!   output), plus the probabilities with `deterministic`.
//! - The latent (or the palette's pixels) in float32 with its gradient and
//!   Adam's two moments.
//!
//! # CPU and CUDA figures
//!
//! - **CPU: the peak resident set size** of the process, which is what
//!   `/usr/bin/time -v` reports as "Maximum resident set size". It adds
//!   the process itself, [`CPU_BASELINE_MIB`] (libtorch and its CUDA
//!   libraries mapped, its thread pools and kernels), and
//!   glibc's allocator overhead on everything allocated during a step
//!   ([`CPU_ALLOCATOR_FACTOR`]: freed blocks stay resident between steps
//!   and the next step's tensors do not always fit them). Both constants
//!   were measured, and the estimate checked against measured peaks, in
//!   BENCHMARKS.md ("Memory estimate").
//! - **CUDA: torch's peak allocated memory** (`max_memory_allocated`, what
//!   `zoetrope bench` reports as `torch_max_allocated_mib`), plus
//!   [`CUDA_WORKSPACE_MIB`] for the cuBLAS and cuDNN workspaces that go
//!   through libtorch's allocator. It leaves out the CUDA context and the
//!   allocator's cached blocks, which the driver's figure adds (about
//!   0.5 GiB and 1.4 × on the H100 runs): [`CUDA_CONTEXT_MIB`] is added
//!   when comparing with a GPU's memory ([`shortage`]).
//!
//! Not counted: the transient buffers of the semantic losses' extra
//! gradient-free forward pass (smaller than the backward pass's), image
//! prompts' one-image forward passes, and the video encoder's buffers
//! (a few MiB at these sizes).

use std::collections::BTreeMap;

use crate::models::clip::{ClipConfig, VisionConfig};
use crate::models::tiny::{tiny_clip_config, tiny_vqgan_config, TINY_CLIP, TINY_VQGAN};
use crate::models::vqgan::{VqganConfig, FIRST_STAGE_PREFIX};
use crate::models::weights::{self, Manifest, ModelKind};
use crate::scene::{ImageModel as SceneImageModel, Precision, Scene, VqganChoice};
use crate::tuning::Tuning;

/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// Resident memory of the process itself, MiB: libtorch and its CUDA
/// libraries mapped (the peak RSS of `zoetrope --version` is 475 MiB on
/// the project's machine) and what libtorch's first operations add (its
/// thread pools and kernels): `zoetrope bench --small --config a --device
/// cpu --steps 1 --warmup 0` peaks at 548 MiB, about 18 MiB of it its tiny
/// models. BENCHMARKS.md, "Memory estimate".
pub const CPU_BASELINE_MIB: f64 = 530.0;

/// What pytti's cutout augmentations (`cutout_augs = "pytti"`) keep for the
/// backward pass, in units of one float32 batch of cutouts (`N·3·r²·4`
/// bytes): the resample's input, grid, positions and weight, the clamps'
/// inputs, the two HSV round trips' planes, masks and gather indices of the
/// colour jitter, the index copies and the erasing mask. Fitted to one
/// measured peak: `zoetrope bench --config a --device cpu` grew from 3062
/// to 4369 MiB of peak RSS with `--cutout-augs pytti` (2026-12-06,
/// BENCHMARKS.md), 1307 MiB = 1.3 × 29.2 × 34.5 MiB; the 8 units first
/// counted from the operations were far too few.
pub const AUGMENT_UNITS: f64 = 29.0;

/// glibc's overhead on the memory a step allocates on the CPU: the
/// resident set grows by about this factor × the live tensors (freed
/// blocks stay resident, and the next step's tensors do not always fit
/// them). Fitted to configurations a and b of `zoetrope bench` on the
/// CPU; BENCHMARKS.md, "Memory estimate".
pub const CPU_ALLOCATOR_FACTOR: f64 = 1.3;

/// What a step allocates on CUDA besides the tensors counted here, MiB:
/// cuBLAS's and cuDNN's workspaces, which go through libtorch's allocator,
/// and the allocator's rounding. Fitted to one figure, configuration a's
/// torch peak allocated memory with the default switches on the H100
/// (run 6: 1157 MiB, of which the tensors counted here are 1000); the
/// other eight rows of run 6 then agree to within 1.2 % (BENCHMARKS.md,
/// "Memory estimate").
pub const CUDA_WORKSPACE_MIB: f64 = 160.0;

/// What a process holds on a GPU beyond torch's allocated bytes: the CUDA
/// context, loaded kernels and the allocator's cached blocks, MiB (run 6
/// on the H100: the driver's figure was 470 to 780 MiB above torch's peak
/// allocated, plus a context of about 500 MiB). Added to the estimate
/// when comparing it with a GPU's memory.
pub const CUDA_CONTEXT_MIB: f64 = 1024.0;

/// The device a figure is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Cpu,
    Cuda,
}

impl Target {
    /// The name used in messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Target::Cpu => "cpu",
            Target::Cuda => "cuda",
        }
    }

    /// Bytes per element of the compute kind for `precision` on this
    /// device (`auto`: bf16 on CUDA, fp32 on the CPU, as the render
    /// resolves it).
    fn element_bytes(self, precision: Precision) -> f64 {
        match (precision, self) {
            (Precision::Fp32, _) | (Precision::Auto, Target::Cpu) => 4.0,
            (Precision::Bf16, _) | (Precision::Auto, Target::Cuda) => 2.0,
        }
    }
}

/// A perceptor as far as the estimate knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PerceptorArch {
    /// The name as the scene gives it.
    pub name: String,
    /// The architecture; `None` when it cannot be known without the
    /// weights file, which is absent.
    pub config: Option<ClipConfig>,
    /// Size of the weights file when present (the CPU loader reads it
    /// whole).
    pub file_bytes: Option<u64>,
}

/// The image model as far as the estimate knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageArch {
    /// A VQGAN: its name and architecture (`None` when unknown without
    /// its absent weights file).
    Vqgan {
        name: String,
        config: Option<VqganConfig>,
    },
    /// The Unlimited Palette: RGB pixels, no model.
    Palette,
    /// The Limited Palette: `palettes` palettes of `palette_size` colours,
    /// a brightness and `palettes` weights per pixel, no model.
    LimitedPalette { palette_size: i64, palettes: i64 },
}

/// Everything that sets a render's memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub width: i64,
    pub height: i64,
    /// Cutouts per perceptor per step.
    pub cutouts: i64,
    /// `gradient_accumulation_steps`: the passes the cutouts go through the
    /// perceptors in (1: one pass); the perceptors' activations are held
    /// for one pass's part at a time.
    pub passes: i64,
    /// `cutout_augs = "pytti"`: the augmentations keep their own tensors for
    /// the backward pass ([`AUGMENT_UNITS`]).
    pub augment: bool,
    /// `cutout_border`: the image is padded by this fraction per side
    /// before cutting.
    pub cutout_border: f64,
    pub perceptors: Vec<PerceptorArch>,
    pub image: ImageArch,
    pub precision: Precision,
    /// The speed and memory switches (`lean_activations` should already
    /// say whether the lean node is available in this build).
    pub tuning: Tuning,
}

/// One device's estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEstimate {
    pub target: Target,
    /// `fp32` or `bf16`: the compute kind on this device.
    pub precision: &'static str,
    /// The peak, MiB.
    pub total_mib: f64,
    /// The moment of the render that peaks (see the module docs).
    pub peak: &'static str,
    /// The peak's parts, MiB, largest first; they add up to `total_mib`.
    pub parts: Vec<(String, f64)>,
}

/// The estimate for both devices, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum MemoryEstimate {
    Known {
        cpu: DeviceEstimate,
        cuda: DeviceEstimate,
    },
    /// A model's architecture cannot be known without its weights file,
    /// which is absent: the models named.
    Unknown { reason: String },
}

impl MemoryEstimate {
    /// The estimate for `target`, when known.
    pub fn device(&self, target: Target) -> Option<&DeviceEstimate> {
        match (self, target) {
            (MemoryEstimate::Known { cpu, .. }, Target::Cpu) => Some(cpu),
            (MemoryEstimate::Known { cuda, .. }, Target::Cuda) => Some(cuda),
            _ => None,
        }
    }
}

// ------------------------------------------------------------ parameters

/// Parameters of a batch norm of `c` channels as libtorch stores them
/// (weight, bias, running mean and variance; the int64 counter is left out).
fn batch_norm_params(c: i64) -> i64 {
    4 * c
}

/// Parameters of a pre-norm transformer block of width `w` (attention's
/// packed in-projection and out-projection, two layer norms, the 4× MLP).
fn transformer_block_params(w: i64) -> i64 {
    12 * w * w + 13 * w
}

/// `(image tower, text tower)` parameter counts of a CLIP model, as in
/// the official state dict (`logit_scale` counted with the image tower,
/// since it stays when the text tower is freed).
pub fn clip_params(c: &ClipConfig) -> (u64, u64) {
    let e = c.embed_dim;
    let visual = match &c.vision {
        VisionConfig::ViT {
            layers,
            width: w,
            patch_size: p,
            ..
        } => {
            let g = c.image_resolution / p;
            w * 3 * p * p
                + w
                + (g * g + 1) * w
                + 2 * w
                + layers * transformer_block_params(*w)
                + 2 * w
                + w * e
        }
        VisionConfig::ResNet { layers, width, .. } => {
            let half = width / 2;
            let mut n = half * 3 * 9
                + batch_norm_params(half)
                + half * half * 9
                + batch_norm_params(half)
                + width * half * 9
                + batch_norm_params(*width);
            let mut inplanes = *width;
            for (stage, &blocks) in layers.iter().enumerate() {
                let planes = width << stage;
                for b in 0..blocks {
                    let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                    n += planes * inplanes
                        + batch_norm_params(planes)
                        + planes * planes * 9
                        + batch_norm_params(planes)
                        + 4 * planes * planes
                        + batch_norm_params(4 * planes);
                    if stride > 1 || inplanes != 4 * planes {
                        n += 4 * planes * inplanes + batch_norm_params(4 * planes);
                    }
                    inplanes = 4 * planes;
                }
            }
            let embed = width * 32;
            let s = c.image_resolution / 32;
            n + (s * s + 1) * embed + 3 * (embed * embed + embed) + e * embed + e
        }
    };
    let w = c.transformer_width;
    let text = c.vocab_size * w
        + c.context_length * w
        + c.transformer_layers * transformer_block_params(w)
        + 2 * w
        + w * e;
    ((visual + 1) as u64, text as u64)
}

/// Parameters of a VQGAN (encoder, decoder, quantiser and the 1×1
/// convolutions around it), from its state dict's shapes.
pub fn vqgan_params(c: &VqganConfig) -> u64 {
    c.expected_shapes()
        .values()
        .map(|s| s.iter().product::<i64>() as u64)
        .sum()
}

// ----------------------------------------------------------- activations

/// What one part of the step keeps for the backward pass (`saved`) and the
/// most it allocates on top at the widest moment of its own backward pass
/// (`transient`), in elements of the compute kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Kept {
    saved: f64,
    transient: f64,
}

/// A perceptor's image tower on `n` cutouts (the cutouts themselves are
/// counted by the caller).
fn tower_kept(c: &ClipConfig, n: f64, tuning: &Tuning) -> Kept {
    let r = c.image_resolution as f64;
    match &c.vision {
        VisionConfig::ViT {
            layers,
            width,
            patch_size,
            heads,
        } => {
            let g = (c.image_resolution / patch_size) as f64;
            let t = g * g + 1.0;
            let unit = n * t * *width as f64;
            let layers = *layers as f64;
            // Per block: ln_1's input, q k v, the attention's output (its
            // probabilities instead with the explicit form), ln_2's input,
            // the MLP's activation input (4 units).
            let probs = if tuning.deterministic {
                n * *heads as f64 * t * t
            } else {
                0.0
            };
            let block = 10.0 * unit + probs;
            // The MLP's backward: the block's output gradient, the hidden
            // gradient and the activation's input gradient (1 + 4 + 4).
            let transient = 9.0 * unit;
            let saved = if tuning.checkpoint_perceptors {
                // The stem, each block's input and the last output, plus
                // one block recomputed at a time during the backward pass.
                (layers + 2.0) * unit + block
            } else {
                unit + layers * block
            };
            Kept { saved, transient }
        }
        VisionConfig::ResNet { layers, width, .. } => {
            let w = *width as f64;
            let half = w / 2.0;
            // Stem at R/2: three norms' inputs and ReLUs' outputs, the
            // pool's output (the first block's input).
            let s = (r / 2.0) * (r / 2.0);
            let mut saved = n * (4.0 * half * s + 2.0 * w * s + w * s / 4.0);
            let mut side = r / 4.0;
            let mut inplanes = w;
            let mut last_map = 0.0;
            for (stage, &blocks) in layers.iter().enumerate() {
                let p = w * (1u64 << stage) as f64;
                for b in 0..blocks {
                    let stride = if stage > 0 && b == 0 { 2.0 } else { 1.0 };
                    let hw_in = side * side;
                    let hw_out = (side / stride) * (side / stride);
                    // Two norms' inputs and two ReLUs' outputs at the input
                    // size, the pooled map, the third norm's input and the
                    // block's output.
                    let mut block = 4.0 * p * hw_in + 4.0 * p * hw_out + 4.0 * p * hw_out;
                    if stride > 1.0 {
                        block += p * hw_out;
                    }
                    if stride > 1.0 || inplanes != 4.0 * p {
                        // The shortcut: the pooled input and its norm's input.
                        block += if stride > 1.0 { inplanes * hw_out } else { 0.0 };
                        block += 4.0 * p * hw_out;
                    }
                    saved += n * block;
                    inplanes = 4.0 * p;
                    side /= stride;
                    last_map = n * 4.0 * p * hw_out;
                }
            }
            // The attention pool: keys and values over every position.
            let tokens = side * side + 1.0;
            saved += n * 2.0 * tokens * inplanes;
            Kept {
                saved,
                transient: 3.0 * last_map,
            }
        }
    }
}

/// The VQGAN decoder on an `lh × lw` latent: what it keeps, and at the
/// start of its backward pass the full-resolution maps in flight (the
/// output gradient, the lean node's recomputed norm and activation, the
/// input gradient and the residual's).
fn decoder_kept(c: &VqganConfig, lh: f64, lw: f64, tuning: &Tuning) -> Kept {
    let lean = tuning.lean_activations;
    let levels = c.ch_mult.len();
    let chain = if lean { 1.0 } else { 3.0 };
    let resnet = |ci: f64, co: f64, hw: f64| chain * (ci + co) * hw;
    let attn = |ch: f64, hw: f64| 6.0 * ch * hw + if tuning.deterministic { hw * hw } else { 0.0 };
    let mut hw = lh * lw;
    let mut block_in = (c.ch * c.ch_mult[levels - 1]) as f64;
    // post_quant_conv's and conv_in's inputs, then the middle.
    let mut saved = (c.embed_dim + c.z_channels) as f64 * hw
        + 2.0 * resnet(block_in, block_in, hw)
        + attn(block_in, hw);
    for level in (0..levels).rev() {
        let block_out = (c.ch * c.ch_mult[level]) as f64;
        for _ in 0..=c.num_res_blocks {
            saved += resnet(block_in, block_out, hw);
            block_in = block_out;
            if c.attn_levels.contains(&level) {
                saved += attn(block_in, hw);
            }
        }
        if level != 0 {
            hw *= 4.0;
            if !lean {
                // The up-sampling convolution's input.
                saved += block_in * hw;
            }
        }
    }
    // norm_out → SiLU → conv_out, and the decoded image.
    saved += chain * block_in * hw + c.out_ch as f64 * hw;
    Kept {
        saved,
        transient: 5.0 * block_in * hw,
    }
}

/// Everything a step of the render on `target` keeps at its two widest
/// moments, and the loading phase, in bytes, as named parts.
struct Phases {
    load: Vec<(String, f64)>,
    perceptors: Vec<(String, f64)>,
    decoder: Vec<(String, f64)>,
}

/// The perceptors' part of a step, in bytes of the compute kind `e`.
struct PerceptorTerms {
    cutouts: f64,
    augment: f64,
    towers: f64,
    tower_transient: f64,
}

/// Cutouts (the patch convolution's input in the compute kind, the pooling
/// matrices in the image's kind: the compute kind with
/// low-precision-cutouts, else float32), the augmentations' saved tensors,
/// and what the image towers keep, for one pass of
/// `gradient_accumulation_steps` (the perceptors' graph holds one pass's
/// cutouts at once; the noise is drawn for the whole batch).
fn perceptor_terms(w: &Workload, m: &KnownModels, e: f64) -> PerceptorTerms {
    let n = w.cutouts.max(1) as f64;
    let passes = w.passes.clamp(1, w.cutouts.max(1));
    let n_pass = (w.cutouts.max(1) + passes - 1).div_euclid(passes) as f64;
    let pool_bytes = if w.tuning.low_precision_cutouts {
        e
    } else {
        4.0
    };
    let border = w.cutout_border.max(0.0);
    let (wp, hp) = (
        w.width as f64 * (1.0 + 2.0 * border),
        w.height as f64 * (1.0 + 2.0 * border),
    );
    let mut t = PerceptorTerms {
        cutouts: 0.0,
        augment: 0.0,
        towers: 0.0,
        tower_transient: 0.0,
    };
    for c in &m.perceptors {
        let r = c.image_resolution as f64;
        t.cutouts += n_pass * 3.0 * r * r * e + n_pass * r * (wp + hp) * pool_bytes;
        if passes > 1 {
            t.cutouts += n * 3.0 * r * r * e;
        }
        if w.augment {
            t.augment += AUGMENT_UNITS * n_pass * 3.0 * r * r * 4.0;
        }
        let k = tower_kept(c, n_pass, &w.tuning);
        t.towers += k.saved * e;
        t.tower_transient = t.tower_transient.max(k.transient * e);
    }
    t
}

/// Elements of the optimised tensor: the VQGAN's latent grid, the Unlimited
/// Palette's RGB pixels, or the Limited Palette's palettes, brightness and
/// palette weights.
fn optimised_elements(w: &Workload, m: &KnownModels) -> f64 {
    let (width, height) = (w.width as f64, w.height as f64);
    match (&m.vqgan, &w.image) {
        (Some(c), _) => {
            let f = c.factor() as f64;
            c.embed_dim as f64 * (height / f).floor() * (width / f).floor()
        }
        (
            None,
            ImageArch::LimitedPalette {
                palette_size,
                palettes,
            },
        ) => (1 + palettes) as f64 * width * height + (palette_size * palettes * 3) as f64,
        (None, _) => 3.0 * width * height,
    }
}

/// The Limited Palette's decode keeps about eight `[H, W, palettes, 3]`
/// float32 tensors for backward; 0 for the other image models.
fn palette_decode_bytes(w: &Workload) -> f64 {
    match w.image {
        ImageArch::LimitedPalette { palettes, .. } => {
            4.0 * 8.0 * 3.0 * palettes as f64 * (w.width * w.height) as f64
        }
        _ => 0.0,
    }
}

/// The three moments of a render of `w` on `target` (module docs), each
/// as named parts in bytes, before the process and overhead terms.
fn phases(w: &Workload, m: &KnownModels, target: Target) -> Phases {
    let e = target.element_bytes(w.precision);
    let tuning = &w.tuning;
    let (width, height) = (w.width as f64, w.height as f64);
    let pixels = width * height;

    let visual: f64 = m.perceptors.iter().map(|p| clip_params(p).0 as f64).sum();
    let text: f64 = m.perceptors.iter().map(|p| clip_params(p).1 as f64).sum();
    let vqgan = m.vqgan.as_ref().map_or(0.0, |c| vqgan_params(c) as f64);

    // The optimised tensor (float32) with its gradient and Adam's moments.
    let state = 4.0 * 4.0 * optimised_elements(w, m);
    // The image in float32: the clamp's input and output, its gradient and
    // the decoder's output cast to float32 (and the Limited Palette's decode).
    let image = 4.0 * 4.0 * 3.0 * pixels + palette_decode_bytes(w);

    let PerceptorTerms {
        cutouts,
        augment,
        towers,
        tower_transient,
    } = perceptor_terms(w, m, e);
    let dec = match &m.vqgan {
        Some(c) => {
            let f = c.factor() as f64;
            decoder_kept(c, (height / f).floor(), (width / f).floor(), tuning)
        }
        None => Kept::default(),
    };
    let (dec_saved, dec_transient) = (dec.saved * e, dec.transient * e);

    let step_params = vec![
        ("perceptors' image towers".to_string(), visual * e),
        ("VQGAN".to_string(), vqgan * e),
        ("latent and Adam state".to_string(), state),
    ];
    let mut perceptors = step_params.clone();
    perceptors.extend([
        ("decoder activations".to_string(), dec_saved),
        ("cutouts".to_string(), cutouts),
        ("cutout augmentations".to_string(), augment),
        ("perceptor activations".to_string(), towers),
        ("perceptor backward".to_string(), tower_transient),
        ("image".to_string(), image),
    ]);
    let mut decoder = step_params;
    decoder.extend([
        ("decoder activations".to_string(), dec_saved),
        ("decoder backward".to_string(), dec_transient),
        ("image".to_string(), image),
    ]);

    // Loading: every model whole, at the end; on the CPU, while a CLIP
    // file is read, the models loaded so far and the whole file.
    let mut load = (visual + text + vqgan) * e;
    let mut file_read = 0.0;
    if target == Target::Cpu {
        let mut loaded = 0.0;
        for (c, bytes) in m.perceptors.iter().zip(&m.file_bytes) {
            let (v, t) = clip_params(c);
            loaded += (v + t) as f64 * e;
            let file = bytes.map_or(2.0 * (v + t) as f64, |b| b as f64);
            if loaded + file > load + file_read {
                (load, file_read) = (loaded, file);
            }
        }
    }
    let load = vec![
        ("models".to_string(), load),
        ("CLIP file being read".to_string(), file_read),
    ];
    Phases {
        load,
        perceptors,
        decoder,
    }
}

/// The architectures of a workload, all known.
struct KnownModels {
    perceptors: Vec<ClipConfig>,
    file_bytes: Vec<Option<u64>>,
    vqgan: Option<VqganConfig>,
}

/// The estimate for one device (the module docs say what it counts).
fn device_estimate(w: &Workload, m: &KnownModels, target: Target) -> DeviceEstimate {
    let p = phases(w, m, target);
    let is_param = |name: &str| {
        matches!(
            name,
            "perceptors' image towers" | "VQGAN" | "models" | "CLIP file being read"
        )
    };
    let finish = |mut parts: Vec<(String, f64)>, step: bool| {
        let allocated: f64 = parts
            .iter()
            .filter(|(n, _)| !is_param(n))
            .map(|(_, b)| b)
            .sum();
        match target {
            Target::Cpu => {
                parts.push((
                    "process (libtorch and its libraries)".to_string(),
                    CPU_BASELINE_MIB * MIB,
                ));
                if step {
                    parts.push((
                        "allocator overhead".to_string(),
                        (CPU_ALLOCATOR_FACTOR - 1.0) * allocated,
                    ));
                }
            }
            Target::Cuda => {
                if step {
                    parts.push((
                        "cuBLAS/cuDNN workspaces".to_string(),
                        CUDA_WORKSPACE_MIB * MIB,
                    ));
                }
            }
        }
        parts.retain(|(_, b)| *b > 0.0);
        let total: f64 = parts.iter().map(|(_, b)| b).sum();
        (total, parts)
    };
    let candidates = [
        ("loading the models", finish(p.load, false)),
        ("the perceptors' backward pass", finish(p.perceptors, true)),
        ("the decoder's backward pass", finish(p.decoder, true)),
    ];
    let (peak, (total, mut parts)) = candidates
        .into_iter()
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
        .expect("three candidates");
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    DeviceEstimate {
        target,
        precision: if target.element_bytes(w.precision) == 2.0 {
            "bf16"
        } else {
            "fp32"
        },
        total_mib: total / MIB,
        peak,
        parts: parts.into_iter().map(|(n, b)| (n, b / MIB)).collect(),
    }
}

/// The peak memory of a render of `w` on the CPU and on CUDA, or the
/// models whose architecture is unknown.
pub fn estimate(w: &Workload) -> MemoryEstimate {
    let mut unknown = Vec::new();
    let mut perceptors = Vec::new();
    for p in &w.perceptors {
        match &p.config {
            Some(c) => perceptors.push(c.clone()),
            None => unknown.push(p.name.clone()),
        }
    }
    let vqgan = match &w.image {
        ImageArch::Vqgan { name, config } => match config {
            Some(c) => Some(c.clone()),
            None => {
                unknown.push(name.clone());
                None
            }
        },
        ImageArch::Palette | ImageArch::LimitedPalette { .. } => None,
    };
    if !unknown.is_empty() {
        return MemoryEstimate::Unknown {
            reason: format!(
                "the architecture of {} is not known without its weights file, which is absent",
                unknown.join(" and ")
            ),
        };
    }
    let m = KnownModels {
        perceptors,
        file_bytes: w.perceptors.iter().map(|p| p.file_bytes).collect(),
        vqgan,
    };
    MemoryEstimate::Known {
        cpu: device_estimate(w, &m, Target::Cpu),
        cuda: device_estimate(w, &m, Target::Cuda),
    }
}

impl Workload {
    /// The workload of a scene with the switches `tuning`: the nine OpenAI
    /// perceptors and the six named VQGANs by their known architectures,
    /// other models (a manifest name, a `.safetensors` path) from their
    /// file's header when the file is present, the untrained tiny models
    /// by the architecture `zoetrope weights tiny` writes. Reads no tensor
    /// data. Without the C++ shim the decoder keeps libtorch's activations
    /// whatever `lean-activations` says.
    pub fn of_scene(scene: &Scene, tuning: Tuning) -> Workload {
        let mut tuning = tuning;
        tuning.lean_activations &= crate::gpu::shim_built();
        let perceptors = scene
            .guidance
            .perceptors
            .iter()
            .map(|name| {
                let path = weights::resolve(ModelKind::Clip, name).ok();
                let config = ClipConfig::by_name(name).ok().or_else(|| match &path {
                    Some(p) => weights::read_shapes(p)
                        .and_then(|s| ClipConfig::infer(&s))
                        .ok(),
                    None => generated(ModelKind::Clip, name).map(|_| tiny_clip_config()),
                });
                PerceptorArch {
                    name: name.clone(),
                    config,
                    file_bytes: path
                        .and_then(|p| std::fs::metadata(p).ok())
                        .map(|m| m.len()),
                }
            })
            .collect();
        let image = match scene.image.image_model {
            SceneImageModel::UnlimitedPalette => ImageArch::Palette,
            SceneImageModel::LimitedPalette => ImageArch::LimitedPalette {
                palette_size: scene.image.palette.palette_size as i64,
                palettes: scene.image.palette.palettes as i64,
            },
            SceneImageModel::Vqgan => {
                let name = scene.image.vqgan_model.name().to_string();
                let config = match &scene.image.vqgan_model {
                    VqganChoice::Named(m) => VqganConfig::named(m.name()).ok(),
                    VqganChoice::Other { .. } => match weights::resolve(ModelKind::Vqgan, &name) {
                        Ok(p) => weights::read_shapes(&p)
                            .and_then(|s| VqganConfig::infer(&strip_first_stage(s)))
                            .ok(),
                        Err(_) => generated(ModelKind::Vqgan, &name).map(|_| tiny_vqgan_config()),
                    },
                };
                ImageArch::Vqgan { name, config }
            }
        };
        Workload {
            width: scene.image.width as i64,
            height: scene.image.height as i64,
            cutouts: scene.guidance.cutouts as i64,
            passes: scene.guidance.gradient_accumulation_steps as i64,
            augment: scene.guidance.cutout_augs != "none",
            cutout_border: scene.guidance.cutout_border,
            perceptors,
            image,
            precision: scene.run.precision,
            tuning,
        }
    }
}

/// `Some` when `name` is the untrained tiny model of `kind` that
/// `zoetrope weights tiny` generates (its architecture is known without
/// its file).
fn generated(kind: ModelKind, name: &str) -> Option<()> {
    let tiny = match kind {
        ModelKind::Clip => TINY_CLIP,
        ModelKind::Vqgan => TINY_VQGAN,
    };
    Manifest::builtin()
        .find(Some(kind), name)
        .filter(|e| e.is_generated() && e.name == tiny)
        .map(|_| ())
}

/// A VQGAN state dict's shapes under the official names: a Lightning
/// checkpoint's `first_stage_model.` prefix removed (its other keys, such as
/// a transformer's, dropped).
fn strip_first_stage(shapes: BTreeMap<String, Vec<i64>>) -> BTreeMap<String, Vec<i64>> {
    if !shapes.keys().any(|k| k.starts_with(FIRST_STAGE_PREFIX)) {
        return shapes;
    }
    shapes
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(FIRST_STAGE_PREFIX)?.to_string(), v)))
        .collect()
}

// ---------------------------------------------------------------- output

/// Peak RSS of `zoetrope bench --config a --device cpu --steps 2 --warmup 1
/// --tune checkpoint-perceptors=on` on the project's machine, MiB
/// (BENCHMARKS.md, "Memory estimate").
#[cfg(test)]
const MEASURED_A_CHECKPOINT_MIB: f64 = 2078.0;

/// The parts no setting of the scene changes.
const OVERHEADS: [&str; 3] = [
    "process (libtorch and its libraries)",
    "allocator overhead",
    "cuBLAS/cuDNN workspaces",
];

/// Rounds MiB to one decimal for printing.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `1.2 GiB` or `850 MiB`.
pub fn human(mib: f64) -> String {
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

impl crate::schedule::MemoryFields for MemoryEstimate {
    type Mib = serde_json::Value;
    type Details = serde_json::Value;
    fn mib(&self) -> serde_json::Value {
        MemoryEstimate::mib(self)
    }
    fn details(&self) -> serde_json::Value {
        MemoryEstimate::details(self)
    }
}

impl MemoryEstimate {
    /// `{"cpu": MiB, "cuda": MiB}` (nulls when unknown): the plan's
    /// `memory_estimate_mib`.
    pub fn mib(&self) -> serde_json::Value {
        let get = |t| self.device(t).map(|d| round1(d.total_mib));
        serde_json::json!({ "cpu": get(Target::Cpu), "cuda": get(Target::Cuda) })
    }

    /// The details: per device the precision, the peak's moment, what the
    /// figure is, and its parts; or why it is unknown. The plan's
    /// `memory_estimate`.
    pub fn details(&self) -> serde_json::Value {
        match self {
            MemoryEstimate::Unknown { reason } => serde_json::json!({ "unknown": reason }),
            MemoryEstimate::Known { cpu, cuda } => {
                let one = |d: &DeviceEstimate, what: &str| {
                    serde_json::json!({
                        "mib": round1(d.total_mib),
                        "precision": d.precision,
                        "what": what,
                        "peak_at": d.peak,
                        "parts_mib": d.parts.iter()
                            .map(|(n, b)| serde_json::json!({ "part": n, "mib": round1(*b) }))
                            .collect::<Vec<_>>(),
                    })
                };
                serde_json::json!({
                    "cpu": one(cpu, "peak resident set size of the process"),
                    "cuda": one(cuda, "torch's peak allocated memory (the CUDA context and cached blocks come on top)"),
                })
            }
        }
    }

    /// One line for the plan's table header.
    pub fn summary(&self) -> String {
        match self {
            MemoryEstimate::Unknown { reason } => format!("memory estimate: unknown ({reason})"),
            MemoryEstimate::Known { cpu, cuda } => format!(
                "memory estimate: {} on the CPU ({}, peak resident set), {} on CUDA ({}, torch's \
                 peak allocated; the CUDA context comes on top); largest part: {}",
                human(cpu.total_mib),
                cpu.precision,
                human(cuda.total_mib),
                cuda.precision,
                cuda.parts
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .find(|n| !OVERHEADS.contains(n))
                    .unwrap_or("-"),
            ),
        }
    }
}

// ---------------------------------------------------------- the machine

/// The device a render runs on, as far as memory goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    /// A GPU by its CUDA ordinal.
    Cuda(usize),
}

/// How much memory a device has, MiB.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceMemory {
    /// `the CPU` or the GPU's name.
    pub name: String,
    pub total_mib: f64,
    /// Free for a new process now (the CPU's `MemAvailable`; a GPU's
    /// total, since asking for its free memory would create a context).
    pub available_mib: f64,
}

impl DeviceChoice {
    /// The device a scene's `device` setting picks, without starting
    /// libtorch's CUDA runtime: `auto` is the first GPU the CUDA driver
    /// reports, else the CPU. (`render` resolves it through libtorch,
    /// which sees the same GPUs when it was built with CUDA.)
    pub fn of_setting(setting: &str) -> DeviceChoice {
        let s = setting.trim().to_ascii_lowercase();
        match s.as_str() {
            "cpu" => DeviceChoice::Cpu,
            "cuda" => DeviceChoice::Cuda(0),
            "auto" if cuda_driver::device_count() > 0 => DeviceChoice::Cuda(0),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => DeviceChoice::Cuda(i),
                _ => DeviceChoice::Cpu,
            },
        }
    }

    /// The device's memory, when it can be read (`/proc/meminfo` for the
    /// CPU, the CUDA driver for a GPU).
    pub fn memory(self) -> Option<DeviceMemory> {
        match self {
            DeviceChoice::Cpu => {
                let text = std::fs::read_to_string("/proc/meminfo").ok()?;
                let (total, available) = parse_meminfo(&text)?;
                Some(DeviceMemory {
                    name: "this machine".to_string(),
                    total_mib: total,
                    available_mib: available,
                })
            }
            DeviceChoice::Cuda(i) => {
                let (name, bytes) = cuda_driver::device(i)?;
                let total = bytes as f64 / MIB;
                Some(DeviceMemory {
                    name,
                    total_mib: total,
                    available_mib: total,
                })
            }
        }
    }
}

/// `(MemTotal, MemAvailable)` in MiB from `/proc/meminfo`'s text.
fn parse_meminfo(text: &str) -> Option<(f64, f64)> {
    let field = |name: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// The few CUDA driver calls that say which GPUs there are and how much
/// memory each has, made through `libcuda.so.1` loaded at run time (no
/// context is created, so nothing is allocated on the GPU). Every answer
/// is "none" where the driver is absent.
mod cuda_driver {
    use std::ffi::{c_char, c_int, c_void, CStr, CString};

    type Init = unsafe extern "C" fn(u32) -> c_int;
    type GetCount = unsafe extern "C" fn(*mut c_int) -> c_int;
    type Get = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type TotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
    type GetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;

    /// The driver library, opened once (never closed).
    fn driver() -> Option<usize> {
        static HANDLE: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
        *HANDLE.get_or_init(|| {
            let lib = CString::new("libcuda.so.1").ok()?;
            // SAFETY: dlopen with a valid C string.
            let handle = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW) };
            if handle.is_null() {
                return None;
            }
            let init: Init = sym(handle as usize, "cuInit")?;
            // SAFETY: cuInit has this signature; 0 is its only valid flag.
            (unsafe { init(0) } == 0).then_some(handle as usize)
        })
    }

    /// A driver function by name, as the function pointer type `F`.
    fn sym<F: Copy>(handle: usize, name: &str) -> Option<F> {
        let name = CString::new(name).ok()?;
        // SAFETY: `handle` is a live dlopen handle and `name` a C string.
        let p = unsafe { libc::dlsym(handle as *mut c_void, name.as_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: the callers name driver functions whose documented
        // signatures are the pointer types they ask for.
        Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
    }

    /// Number of GPUs the driver reports (0 without a driver).
    pub fn device_count() -> usize {
        let Some(h) = driver() else { return 0 };
        let Some(count) = sym::<GetCount>(h, "cuDeviceGetCount") else {
            return 0;
        };
        let mut n: c_int = 0;
        // SAFETY: a valid out-pointer.
        if unsafe { count(&mut n) } == 0 {
            n.max(0) as usize
        } else {
            0
        }
    }

    /// The name and total memory in bytes of GPU `ordinal`.
    pub fn device(ordinal: usize) -> Option<(String, u64)> {
        let h = driver()?;
        let get: Get = sym(h, "cuDeviceGet")?;
        let total: TotalMem = sym(h, "cuDeviceTotalMem_v2")?;
        let name: GetName = sym(h, "cuDeviceGetName")?;
        let mut dev: c_int = 0;
        // SAFETY: valid out-pointers and buffer lengths; `dev` comes from
        // cuDeviceGet.
        unsafe {
            if get(&mut dev, c_int::try_from(ordinal).ok()?) != 0 {
                return None;
            }
            let mut bytes: usize = 0;
            if total(&mut bytes, dev) != 0 {
                return None;
            }
            let mut buf = [0 as c_char; 256];
            let label = if name(buf.as_mut_ptr(), buf.len() as c_int, dev) == 0 {
                CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
            } else {
                format!("GPU {ordinal}")
            };
            Some((label, bytes as u64))
        }
    }
}

/// The warning to print before loading models when the estimate exceeds
/// the memory of `device` (`mem`): the estimate, the device's memory and
/// the settings that drive it. `None` when it fits or is unknown.
pub fn shortage(
    w: &Workload,
    estimate: &MemoryEstimate,
    device: DeviceChoice,
    mem: &DeviceMemory,
) -> Option<String> {
    let target = match device {
        DeviceChoice::Cpu => Target::Cpu,
        DeviceChoice::Cuda(_) => Target::Cuda,
    };
    let d = estimate.device(target)?;
    let (need, have, have_text) = match target {
        Target::Cpu => (
            d.total_mib,
            mem.available_mib,
            format!(
                "{} has {} available ({} in all)",
                mem.name,
                human(mem.available_mib),
                human(mem.total_mib)
            ),
        ),
        Target::Cuda => (
            d.total_mib + CUDA_CONTEXT_MIB,
            mem.total_mib,
            format!("the {} has {}", mem.name, human(mem.total_mib)),
        ),
    };
    if need <= have {
        return None;
    }
    let what = match target {
        Target::Cpu => format!(
            "about {} of memory on the CPU ({})",
            human(need),
            d.precision
        ),
        Target::Cuda => format!(
            "about {} on the GPU ({}: {} for torch's tensors, {} for the CUDA context and cache)",
            human(need),
            d.precision,
            human(d.total_mib),
            human(CUDA_CONTEXT_MIB)
        ),
    };
    // What drives it: the two largest parts that a setting changes, and
    // what would make each smaller.
    let mut drivers = Vec::new();
    let mut remedies: Vec<String> = Vec::new();
    for (part, mib) in &d.parts {
        let (setting, remedy) = match part.as_str() {
            "decoder activations" | "decoder backward" | "image" => (
                "width × height",
                format!("a smaller width × height ({} × {} now)", w.width, w.height),
            ),
            "perceptor activations" | "perceptor backward" | "cutouts" => (
                "cutouts and perceptors",
                format!("fewer cutouts ({} now) or perceptors", w.cutouts),
            ),
            "perceptors' image towers" | "CLIP file being read" | "models" => {
                ("perceptors", "fewer or smaller perceptors".to_string())
            }
            "VQGAN" => ("vqgan_model", "a smaller VQGAN".to_string()),
            _ => continue,
        };
        drivers.push(format!("{part} {} ({setting})", human(*mib)));
        if !remedies.contains(&remedy) {
            remedies.push(remedy);
        }
        if drivers.len() == 2 {
            break;
        }
    }
    // Checkpointing the ViT perceptors, when it would save a tenth or more.
    let vit = w.perceptors.iter().any(|p| {
        p.config
            .as_ref()
            .is_some_and(|c| matches!(c.vision, VisionConfig::ViT { .. }))
    });
    if vit && !w.tuning.checkpoint_perceptors {
        let mut lighter = w.clone();
        lighter.tuning.checkpoint_perceptors = true;
        if let Some(e) = estimate_of(&lighter, target).filter(|e| e.total_mib < 0.9 * d.total_mib) {
            let context = if target == Target::Cuda {
                CUDA_CONTEXT_MIB
            } else {
                0.0
            };
            remedies.push(format!(
                "`--tune checkpoint-perceptors=on` (about {} then)",
                human(e.total_mib + context)
            ));
        }
    }
    Some(format!(
        "this render needs {what} at its peak, but {have_text}; it may fail or swap. \
         Most of it: {}. To need less: {}",
        drivers.join(", "),
        remedies.join(", or ")
    ))
}

/// [`estimate`] for one device.
fn estimate_of(w: &Workload, target: Target) -> Option<DeviceEstimate> {
    estimate(w).device(target).cloned()
}

/// Estimates a render of `scene` with `tuning` on `device` and prints the
/// warning of [`shortage`] to stderr when the estimate exceeds the
/// device's memory (`plan` and `render` call it before loading models).
/// Returns the warning printed, if any.
pub fn warn_if_short(scene: &Scene, tuning: Tuning, device: DeviceChoice) -> Option<String> {
    let w = Workload::of_scene(scene, tuning);
    let mem = device.memory()?;
    let warning = shortage(&w, &estimate(&w), device, &mem)?;
    eprintln!("warning: {warning}");
    Some(warning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{bench_workload, BenchSpec};

    fn bench(name: &str, precision: Precision, switches: &[&str]) -> MemoryEstimate {
        let spec = BenchSpec::named(name, false).unwrap();
        estimate(&bench_workload(
            &spec,
            precision,
            Tuning::from_specs(switches).unwrap(),
        ))
    }

    fn mib(e: &MemoryEstimate, target: Target) -> f64 {
        e.device(target).expect("known").total_mib
    }

    /// The analytic parameter counts equal the official state dicts'
    /// (built in shape-only mode), tower by tower, for every released CLIP
    /// model and the tiny one; the VQGAN's is the sum of its shapes.
    #[test]
    fn parameter_counts_match_the_state_dicts() {
        let mut configs: Vec<ClipConfig> = crate::models::clip::MODEL_NAMES
            .iter()
            .map(|n| ClipConfig::by_name(n).unwrap())
            .collect();
        configs.push(tiny_clip_config());
        for c in configs {
            let (mut visual, mut text) = (0u64, 0u64);
            for (k, shape) in c.state_dict_shapes().unwrap() {
                if k.ends_with("num_batches_tracked") {
                    continue;
                }
                let n = shape.iter().product::<i64>() as u64;
                if k.starts_with("visual.") || k == "logit_scale" {
                    visual += n;
                } else {
                    text += n;
                }
            }
            assert_eq!(clip_params(&c), (visual, text), "{c:?}");
        }
        // BENCHMARKS.md's counts: ViT-B/32 151.3 M (text 63.4 M), the
        // imagenet VQGAN 76.1 M.
        let (v, t) = clip_params(&ClipConfig::vit_b32());
        assert_eq!(((v + t) as f64 / 1e5).round(), 1513.0);
        assert_eq!((t as f64 / 1e5).round(), 634.0);
        let q = vqgan_params(&VqganConfig::named("imagenet").unwrap());
        assert_eq!((q as f64 / 1e5).round(), 761.0);
    }

    /// The CUDA estimate against torch's peak allocated memory on the H100
    /// (BENCHMARKS.md, run 6, bf16 unless said): every row within 3 %.
    /// (`CUDA_WORKSPACE_MIB` was fitted to the first row.)
    #[test]
    fn cuda_estimate_matches_the_h100_runs() {
        let rows: [(&str, Precision, &[&str], f64); 9] = [
            ("a", Precision::Auto, &[], 1157.0),
            ("a", Precision::Fp32, &[], 2155.0),
            ("a", Precision::Auto, &["lean-activations=off"], 1329.0),
            ("a", Precision::Auto, &["checkpoint-perceptors=on"], 731.0),
            ("b", Precision::Auto, &[], 1826.0),
            ("b", Precision::Fp32, &[], 3452.0),
            ("b", Precision::Auto, &["lean-activations=off"], 3199.0),
            ("b", Precision::Auto, &["checkpoint-perceptors=on"], 1483.0),
            ("c", Precision::Auto, &[], 4940.0),
        ];
        for (name, precision, switches, measured) in rows {
            let got = mib(&bench(name, precision, switches), Target::Cuda);
            let err = (got - measured) / measured;
            eprintln!(
                "{name} {precision:?} {switches:?}: {got:.0} MiB against {measured} ({:+.1} %)",
                100.0 * err
            );
            assert!(
                err.abs() < 0.03,
                "{name} {precision:?} {switches:?}: estimate {got:.0} MiB, H100 {measured} MiB ({:+.1} %)",
                100.0 * err
            );
        }
    }

    /// The CPU estimate against peak resident set sizes measured on the
    /// project's 2-core machine (BENCHMARKS.md, "Memory estimate"): within
    /// 25 %. The tiny models' render is measured live by
    /// `tests/it/memory_estimate.rs`.
    #[test]
    fn cpu_estimate_matches_measured_peaks() {
        let rows: [(&str, &[&str], f64); 3] = [
            ("a", &[], 3070.0),
            ("b", &[], 4365.0),
            (
                "a",
                &["checkpoint-perceptors=on"],
                MEASURED_A_CHECKPOINT_MIB,
            ),
        ];
        for (name, switches, measured) in rows {
            let got = mib(&bench(name, Precision::Auto, switches), Target::Cpu);
            let err = (got - measured) / measured;
            eprintln!(
                "{name} {switches:?}: {got:.0} MiB against {measured} ({:+.1} %)",
                100.0 * err
            );
            assert!(
                err.abs() < 0.25,
                "{name} {switches:?}: estimate {got:.0} MiB, measured {measured} MiB ({:+.1} %)",
                100.0 * err
            );
        }
    }

    /// `gradient_accumulation_steps` holds the perceptors' activations for
    /// one pass's cutouts (the estimate falls, by about the share of the
    /// towers it no longer holds); the augmentations add their tensors.
    #[test]
    fn passes_and_augmentations_move_the_estimate() {
        let spec = BenchSpec::named("a", false).unwrap();
        let w = bench_workload(&spec, Precision::Fp32, Tuning::default());
        let at = |w: &Workload| mib(&estimate(w), Target::Cpu);
        // A part of the moment the perceptors' backward starts, bytes → MiB.
        let part = |w: &Workload, name: &str| {
            let m = KnownModels {
                perceptors: w
                    .perceptors
                    .iter()
                    .map(|p| p.config.clone().unwrap())
                    .collect(),
                file_bytes: vec![None; w.perceptors.len()],
                vqgan: match &w.image {
                    ImageArch::Vqgan { config, .. } => config.clone(),
                    ImageArch::Palette | ImageArch::LimitedPalette { .. } => None,
                },
            };
            let p = phases(w, &m, Target::Cpu).perceptors;
            p.iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |p| p.1 / (1024.0 * 1024.0))
        };
        let four = Workload {
            passes: 4,
            ..w.clone()
        };
        let towers = part(&w, "perceptor activations");
        assert!(towers > 500.0, "{towers}");
        // 60 cutouts in 4 passes: 15 at a time.
        let ratio = part(&four, "perceptor activations") / towers;
        assert!((ratio - 0.25).abs() < 0.01, "{ratio}");
        assert!(
            at(&four) < at(&w) - 500.0,
            "{} against {}",
            at(&four),
            at(&w)
        );
        // More passes than cutouts count as one cutout per pass.
        let many = Workload {
            passes: 1000,
            ..w.clone()
        };
        let sixty = Workload {
            passes: 60,
            ..w.clone()
        };
        assert_eq!(at(&many), at(&sixty));
        let aug = Workload {
            augment: true,
            ..w.clone()
        };
        assert_eq!(part(&w, "cutout augmentations"), 0.0);
        assert!(at(&aug) > at(&w) + 100.0);
    }

    /// Each switch moves the estimate the way it moves memory.
    #[test]
    fn switches_and_precision_move_the_estimate() {
        for target in [Target::Cpu, Target::Cuda] {
            let base = mib(&bench("a", Precision::Auto, &[]), target);
            let plain = mib(
                &bench("a", Precision::Auto, &["lean-activations=off"]),
                target,
            );
            let ckpt = mib(
                &bench("a", Precision::Auto, &["checkpoint-perceptors=on"]),
                target,
            );
            let det = mib(&bench("a", Precision::Auto, &["deterministic=on"]), target);
            assert!(plain > base && ckpt < base && det > base, "{target:?}");
            let fp32 = mib(&bench("b", Precision::Fp32, &[]), target);
            let bf16 = mib(&bench("b", Precision::Bf16, &[]), target);
            assert!(bf16 < 0.7 * fp32, "{target:?}: {bf16} against {fp32}");
        }
        // Memory grows with the cutouts and the size.
        let spec = BenchSpec::named("a", false).unwrap();
        let w = bench_workload(&spec, Precision::Auto, Tuning::default());
        let more = Workload {
            cutouts: 2 * w.cutouts,
            ..w.clone()
        };
        let bigger = Workload {
            width: 2 * w.width,
            height: 2 * w.height,
            ..w.clone()
        };
        let at = |w: &Workload| mib(&estimate(w), Target::Cuda);
        assert!(at(&more) > at(&w) + 400.0);
        assert!(at(&bigger) > at(&w) + 200.0);
        // The Unlimited Palette has no decoder.
        let palette = Workload {
            image: ImageArch::Palette,
            ..w.clone()
        };
        assert!(at(&palette) < at(&w) - 200.0);
    }

    /// A big perceptor with few cutouts on a small image peaks while
    /// loading on the CPU (the whole file and the model at once), and a
    /// multi-perceptor workload peaks in its step.
    #[test]
    fn the_peak_moment_is_named() {
        let w = Workload {
            width: 128,
            height: 128,
            cutouts: 1,
            passes: 1,
            augment: false,
            cutout_border: 0.25,
            perceptors: vec![PerceptorArch {
                name: "ViT-L/14".into(),
                config: Some(ClipConfig::vit_l14()),
                file_bytes: None,
            }],
            image: ImageArch::Vqgan {
                name: "imagenet".into(),
                config: Some(VqganConfig::named("imagenet").unwrap()),
            },
            precision: Precision::Auto,
            tuning: Tuning::default(),
        };
        let e = estimate(&w);
        let cpu = e.device(Target::Cpu).unwrap();
        assert_eq!(cpu.peak, "loading the models");
        let (v, t) = clip_params(&ClipConfig::vit_l14());
        let file = cpu
            .parts
            .iter()
            .find(|(n, _)| n == "CLIP file being read")
            .unwrap()
            .1;
        assert!((file - 2.0 * (v + t) as f64 / MIB).abs() < 1e-6, "{file}");
        let sum: f64 = cpu.parts.iter().map(|(_, b)| b).sum();
        assert!((sum - cpu.total_mib).abs() < 1e-6);
        let c = bench("c", Precision::Auto, &[]);
        assert_eq!(
            c.device(Target::Cuda).unwrap().peak,
            "the perceptors' backward pass"
        );
        let b = bench("b", Precision::Auto, &["checkpoint-perceptors=on"]);
        assert_eq!(
            b.device(Target::Cuda).unwrap().peak,
            "the decoder's backward pass"
        );
    }

    /// A model whose architecture needs its absent file makes the estimate
    /// unknown, naming it; the tiny models are known without their files.
    #[test]
    fn unknown_architectures_are_named() {
        let text = |perceptor: &str| {
            format!(
                "scenes = \"a lighthouse\"\nperceptors = [\"{perceptor}\"]\n\
                 vqgan_model = \"tiny-vqgan\"\nwidth = 64\nheight = 32\ncutouts = 4\n"
            )
        };
        let scene = Scene::from_str_with(
            &text("/nonexistent/clip.safetensors"),
            "x.toml",
            &crate::models::WeightsLookup,
        )
        .unwrap();
        let w = Workload::of_scene(&scene, Tuning::default());
        assert_eq!(w.perceptors[0].config, None);
        match estimate(&w) {
            MemoryEstimate::Unknown { reason } => {
                assert!(reason.contains("/nonexistent/clip.safetensors"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(estimate(&w).mib()["cpu"], serde_json::Value::Null);
        assert!(estimate(&w).summary().contains("unknown"));

        let scene =
            Scene::from_str_with(&text("tiny-clip"), "x.toml", &crate::models::WeightsLookup)
                .unwrap();
        let w = Workload::of_scene(&scene, Tuning::default());
        assert_eq!(w.perceptors[0].config, Some(tiny_clip_config()));
        assert_eq!(
            w.image,
            ImageArch::Vqgan {
                name: "tiny-vqgan".into(),
                config: Some(tiny_vqgan_config())
            }
        );
        let e = estimate(&w);
        assert!(e.mib()["cpu"].as_f64().unwrap() > CPU_BASELINE_MIB);
        assert!(e.mib()["cuda"].as_f64().unwrap() > CUDA_WORKSPACE_MIB);
    }

    #[test]
    fn meminfo_parses() {
        let text = "MemTotal:       24683688 kB\nMemFree:          217544 kB\n\
                    MemAvailable:   23622348 kB\nBuffers:            1248 kB\n";
        let (total, available) = parse_meminfo(text).unwrap();
        assert!((total - 24683688.0 / 1024.0).abs() < 1e-9);
        assert!((available - 23622348.0 / 1024.0).abs() < 1e-9);
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(DeviceChoice::of_setting("cpu"), DeviceChoice::Cpu);
        assert_eq!(DeviceChoice::of_setting("cuda:3"), DeviceChoice::Cuda(3));
        assert_eq!(DeviceChoice::of_setting("CUDA"), DeviceChoice::Cuda(0));
    }

    /// The warning names the estimate, the device's memory, what drives it
    /// and what to change; nothing is said when it fits.
    #[test]
    fn shortage_says_what_to_change() {
        let spec = BenchSpec::named("a", false).unwrap();
        let w = bench_workload(&spec, Precision::Auto, Tuning::default());
        let e = estimate(&w);
        let cpu = |available: f64| DeviceMemory {
            name: "this machine".into(),
            total_mib: 4096.0,
            available_mib: available,
        };
        assert_eq!(shortage(&w, &e, DeviceChoice::Cpu, &cpu(4000.0)), None);
        let warning = shortage(&w, &e, DeviceChoice::Cpu, &cpu(1024.0)).unwrap();
        for needle in [
            "2.9 GiB",
            "1.0 GiB available (4.0 GiB in all)",
            "perceptor activations",
            "fewer cutouts (60 now)",
            "--tune checkpoint-perceptors=on",
        ] {
            assert!(warning.contains(needle), "{needle}: {warning}");
        }
        let gpu = DeviceMemory {
            name: "Tiny GPU".into(),
            total_mib: 2048.0,
            available_mib: 2048.0,
        };
        // 1.1 GiB of tensors and the context do not fit 2 GiB.
        let warning = shortage(&w, &e, DeviceChoice::Cuda(0), &gpu).unwrap();
        assert!(warning.contains("Tiny GPU has 2.0 GiB"), "{warning}");
        assert!(warning.contains("for the CUDA context"), "{warning}");
        let big = DeviceMemory {
            total_mib: 80.0 * 1024.0,
            available_mib: 80.0 * 1024.0,
            ..gpu
        };
        assert_eq!(shortage(&w, &e, DeviceChoice::Cuda(0), &big), None);
    }
}

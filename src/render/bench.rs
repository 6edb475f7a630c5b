//! `zoetrope bench`: the speed of the full optimisation step at real
//! architecture sizes, with random weights (no weight files needed).
//!
//! The step measured is the render's own [`Guide::step`]: straight-through
//! quantisation, VQGAN decode, the exact clamp rule, one batch of cutouts per
//! perceptor, the perceptors' image towers, the prompt losses (one positive
//! prompt and two negative prompts with stops, as in the seed scene), the
//! backward pass and the Adam update of the latent. Nothing is simplified for
//! the benchmark: only the weights are random instead of trained, which does
//! not change the arithmetic.
//!
//! # Configurations
//!
//! | name | size | cutouts | perceptors | VQGAN |
//! |---|---|---|---|---|
//! | `a` (the seed scene) | 256 × 128 | 60 | ViT-B/32 | imagenet f16 16384 |
//! | `b` | 512 × 512 | 64 | ViT-B/32 | imagenet f16 16384 |
//! | `c` | 512 × 512 | 64 | ViT-B/32 + RN50 | imagenet f16 16384 |
//!
//! `small` variants keep the same structure (the same prompts, steps and
//! number of perceptors) with the tiny CLIP/VQGAN architectures of
//! [`crate::models::tiny`] (and a tiny ModifiedResNet for `c`) at a few dozen
//! pixels, so the benchmark runs in seconds on a CPU and CI keeps it working.
//!
//! # Timing
//!
//! `warmup` steps run first (allocator growth, cuDNN's algorithm choice when
//! autotuning is on, and on CUDA the two eager steps and the capture of the
//! CUDA graph), then
//! the device is synchronised, `steps` steps run without any host read-back
//! (losses stay on the device until the end), and the device is synchronised
//! again before the clock stops. The per-step losses of every step are read
//! back after the timed region for the loss curve.
//!
//! # Memory
//!
//! Two figures. The driver's: `cuMemGetInfo` (total − free) after the run,
//! minus the same figure before the models were built, which is what the
//! process holds beyond its CUDA context (libtorch's reserved memory plus
//! cuBLAS/cuDNN workspaces). And libtorch's caching allocator's own peak
//! allocated and reserved bytes, read through the C++ shim
//! ([`crate::gpu::memory_stats`]; tch exposes none). Run one configuration per
//! process: a process that ran an earlier configuration keeps that one's
//! cached blocks (`benches/run_gpu.sh` runs each configuration in its own
//! process).
//!
//! # Speed and memory switches
//!
//! [`Tuning`] holds the changes made for speed or memory alone; `--tune
//! NAME=on|off` flips one to measure what it brings, and `--breakdown` times the step's
//! phases (eager, device synchronised between phases). BENCHMARKS.md records
//! each change's predicted and measured gain.

use std::time::Instant;

use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use crate::guidance::adam::Adam;
use crate::guidance::cutouts::CutoutSampler;
use crate::guidance::guide::{Guide, Perceptor, StepWeights};
use crate::guidance::image::{ImageModel, ImageState};
use crate::guidance::loss::WeightStop;
use crate::guidance::phases::PhaseTimes;
use crate::models::clip::{Clip, ClipConfig, VisionConfig};
use crate::models::tiny::{tiny_clip_config, tiny_vqgan_config};
use crate::models::vqgan::{Vqgan, VqganConfig};
use crate::render::device::Tuning;
use crate::rng::{randomize, Rng};
use crate::scene::prompt::Prompt;
use crate::{Error, Result};

/// The prompts of every configuration: the seed scene's one positive prompt
/// and its two negative prompts with stops.
pub const PROMPTS: [&str; 3] = [
    "a photograph of a lighthouse on a rocky coast at dawn",
    "text:-1:-.9",
    "watermark:-1:-.9",
];

/// `cut_pow` of every configuration (the VQGAN+CLIP notebooks' default 1).
pub const CUT_POW: f64 = 1.0;

/// The dense bf16 tensor-core peak of an H100 SXM / H200 (989.4 TFLOP/s,
/// NVIDIA's data sheet, without sparsity): the default of `--peak-tflops`.
pub const H100_BF16_PEAK_TFLOPS: f64 = 989.4;

/// One benchmark configuration: everything that sets the step's work.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchSpec {
    /// `a`, `b` or `c`.
    pub name: String,
    /// Whether this is the small (CPU/CI) variant.
    pub small: bool,
    pub width: i64,
    pub height: i64,
    pub cutouts: usize,
    /// `(name, architecture)` of each perceptor, in order.
    pub perceptors: Vec<(String, ClipConfig)>,
    /// The VQGAN's name and architecture.
    pub vqgan_name: String,
    pub vqgan: VqganConfig,
}

/// A tiny ModifiedResNet CLIP (RN50's structure with one Bottleneck per stage
/// and stem width 8) for the small variant of configuration `c`.
fn tiny_rn_config() -> ClipConfig {
    let mut c = tiny_clip_config();
    c.vision = VisionConfig::ResNet {
        layers: [1, 1, 1, 1],
        width: 8,
        heads: 4,
    };
    c
}

impl BenchSpec {
    /// The configuration named `name` (`a`, `b`, `c`), full size or small.
    pub fn named(name: &str, small: bool) -> Result<BenchSpec> {
        let name = name.trim().to_ascii_lowercase();
        let (vit, rn, vqgan_name, vqgan) = if small {
            (
                ("tiny-ViT".to_string(), tiny_clip_config()),
                ("tiny-RN".to_string(), tiny_rn_config()),
                "tiny-vqgan".to_string(),
                tiny_vqgan_config(),
            )
        } else {
            (
                ("ViT-B/32".to_string(), ClipConfig::vit_b32()),
                ("RN50".to_string(), ClipConfig::rn50()),
                "imagenet".to_string(),
                VqganConfig::named("imagenet")?,
            )
        };
        let (w_a, h_a, n_a, side_b, n_b) = if small {
            (64, 32, 8, 64, 8)
        } else {
            (256, 128, 60, 512, 64)
        };
        let (width, height, cutouts, perceptors) = match name.as_str() {
            "a" => (w_a, h_a, n_a, vec![vit]),
            "b" => (side_b, side_b, n_b, vec![vit]),
            "c" => (side_b, side_b, n_b, vec![vit, rn]),
            other => {
                return Err(Error::input(format!(
                    "unknown bench configuration \"{other}\"; use a (the seed scene, 256×128), b (512×512) or c (512×512 with ViT-B/32 + RN50), or all"
                )))
            }
        };
        Ok(BenchSpec {
            name,
            small,
            width,
            height,
            cutouts,
            perceptors,
            vqgan_name,
            vqgan,
        })
    }
}

/// How to run a benchmark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchOptions {
    pub device: Device,
    /// The models' compute kind (`Float` or `BFloat16`); the latent and Adam
    /// stay float32 as in the render.
    pub kind: Kind,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps before the timed ones.
    pub warmup: usize,
    /// Seeds the random weights, the start and the cutouts.
    pub seed: i64,
    /// The device's peak in TFLOP/s for the share reported (CUDA only).
    pub peak_tflops: Option<f64>,
    /// The speed switches (the render's defaults unless measuring one).
    pub tuning: Tuning,
    /// Also time each phase of the step (extra synchronised steps after the
    /// timed ones; they change neither the timing nor the loss curve).
    pub breakdown: bool,
}

/// Analytic floating-point operations of one step (multiply-add = 2 FLOPs),
/// counting the matrix products and convolutions (which are > 99 % of the
/// arithmetic; norms, activations and element-wise ops are left out).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FlopCount {
    /// Forward pass of every perceptor's image tower on its cutouts.
    pub perceptors_forward: f64,
    /// Forward pass of the VQGAN decoder (post-quant conv included).
    pub decoder_forward: f64,
    /// Cutout resampling (two matrix products per crop and channel), forward.
    pub cutouts_forward: f64,
    /// Nearest-code search (`z · codebookᵀ`), forward only (no gradient).
    pub quantize: f64,
    /// The backward pass. The weights are frozen, so a weight layer's backward
    /// computes only the gradient of its input (the same FLOPs as its forward),
    /// while a product of two activations (attention's `QKᵀ` and `A·V`,
    /// the cutout matrices' image side) needs the gradient of both of its
    /// operands' activation side: for those the backward costs twice the
    /// forward. (This is why the total is not the usual 3 × forward of
    /// training, where weight gradients are computed too.)
    pub backward: f64,
    /// Everything: forward + backward + quantise.
    pub total: f64,
}

/// FLOPs of a convolution (`k×k`, `cin → cout`) producing `hw` output pixels per image.
fn conv(n: f64, cin: i64, cout: i64, k: i64, hw: f64) -> f64 {
    2.0 * n * (cin * cout * k * k) as f64 * hw
}

/// `(weight FLOPs, activation×activation FLOPs)` of CLIP's visual tower on `n` images.
///
/// ViT (`T = (R/P)² + 1` tokens, width `W`, `L` layers): patch embedding
/// `2·n·(R/P)²·3P²·W`; per layer the QKV, output and MLP projections
/// `2·n·T·12W²` and the attention products `4·n·T²·W`; the final projection
/// of the class token `2·n·W·E`.
///
/// ModifiedResNet: the three stem convolutions, then per Bottleneck
/// `1×1 (c_in→p)`, `3×3 (p→p)` at the input resolution, `1×1 (p→4p)` and the
/// down-sampling `1×1 (c_in→4p)` at the output resolution; the attention pool
/// projects all `T = (R/32)² + 1` tokens to keys and values, the class token
/// to a query, and the output to `E`.
pub fn clip_visual_flops(config: &ClipConfig, n: f64) -> (f64, f64) {
    let r = config.image_resolution;
    match &config.vision {
        VisionConfig::ViT {
            layers,
            width,
            patch_size,
            ..
        } => {
            let g = (r / patch_size) as f64;
            let t = g * g + 1.0;
            let w = *width as f64;
            let patch = conv(n, 3, *width, *patch_size, g * g);
            let per_layer_weights = 2.0 * n * t * 12.0 * w * w;
            let per_layer_attn = 4.0 * n * t * t * w;
            let proj = 2.0 * n * w * config.embed_dim as f64;
            (
                patch + *layers as f64 * per_layer_weights + proj,
                *layers as f64 * per_layer_attn,
            )
        }
        VisionConfig::ResNet { layers, width, .. } => {
            let sq = |side: i64| (side * side) as f64;
            let half = width / 2;
            let mut f = conv(n, 3, half, 3, sq(r / 2))
                + conv(n, half, half, 3, sq(r / 2))
                + conv(n, half, *width, 3, sq(r / 2));
            let mut side = r / 4;
            let mut inplanes = *width;
            for (stage, &blocks) in layers.iter().enumerate() {
                let planes = width << stage;
                for b in 0..blocks {
                    let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                    let out_side = side / stride;
                    f += conv(n, inplanes, planes, 1, sq(side));
                    f += conv(n, planes, planes, 3, sq(side));
                    f += conv(n, planes, planes * 4, 1, sq(out_side));
                    if stride > 1 || inplanes != planes * 4 {
                        f += conv(n, inplanes, planes * 4, 1, sq(out_side));
                    }
                    inplanes = planes * 4;
                    side = out_side;
                }
            }
            let c = (width * 32) as f64;
            let t = sq(side) + 1.0;
            let e = config.embed_dim as f64;
            f += 2.0 * n * (2.0 * t * c * c + c * c + c * e);
            (f, 4.0 * n * t * c)
        }
    }
}

/// FLOPs of a taming `ResnetBlock` (`cin → cout`) at `hw` pixels.
fn resnet_block(cin: i64, cout: i64, hw: f64) -> f64 {
    conv(1.0, cin, cout, 3, hw)
        + conv(1.0, cout, cout, 3, hw)
        + if cin != cout {
            conv(1.0, cin, cout, 1, hw)
        } else {
            0.0
        }
}

/// `(weight FLOPs, activation×activation FLOPs)` of a taming `AttnBlock` of `c` channels at `hw` pixels:
/// q, k, v and the output projection (1×1 convs), and the two `hw × hw` products.
fn attn_block(c: i64, hw: f64) -> (f64, f64) {
    (4.0 * conv(1.0, c, c, 1, hw), 4.0 * hw * hw * c as f64)
}

/// `(weight FLOPs, activation×activation FLOPs)` of the VQGAN decoder on a
/// `lh × lw` latent: post-quant 1×1 conv, `conv_in`, the middle (block,
/// attention, block), per level from the lowest resolution up
/// `num_res_blocks + 1` blocks (each followed by attention at the attention
/// levels) and, except at full resolution, nearest ×2 then a 3×3 conv, and
/// `conv_out` at full resolution.
pub fn decoder_flops(cfg: &VqganConfig, lh: i64, lw: i64) -> (f64, f64) {
    let levels = cfg.ch_mult.len();
    let mut hw = (lh * lw) as f64;
    let mut block_in = cfg.ch * cfg.ch_mult[levels - 1];
    let mut w = conv(1.0, cfg.embed_dim, cfg.z_channels, 1, hw)
        + conv(1.0, cfg.z_channels, block_in, 3, hw)
        + 2.0 * resnet_block(block_in, block_in, hw);
    let (aw, aa) = attn_block(block_in, hw);
    w += aw;
    let mut a = aa;
    for level in (0..levels).rev() {
        let block_out = cfg.ch * cfg.ch_mult[level];
        for _ in 0..=cfg.num_res_blocks {
            w += resnet_block(block_in, block_out, hw);
            block_in = block_out;
            if cfg.attn_levels.contains(&level) {
                let (aw, aa) = attn_block(block_in, hw);
                w += aw;
                a += aa;
            }
        }
        if level != 0 {
            hw *= 4.0;
            w += conv(1.0, block_in, block_in, 3, hw);
        }
    }
    w += conv(1.0, block_in, cfg.out_ch, 3, hw);
    (w, a)
}

/// The FLOPs of one step of `spec` (see [`FlopCount`] for what is counted).
pub fn flops_per_step(spec: &BenchSpec) -> FlopCount {
    let n = spec.cutouts as f64;
    let f = spec.vqgan.factor();
    let (lh, lw) = (spec.height / f, spec.width / f);
    let (dw, da) = decoder_flops(&spec.vqgan, lh, lw);
    let mut pw = 0.0;
    let mut pa = 0.0;
    let mut cut = 0.0;
    for (_, c) in &spec.perceptors {
        let (w, a) = clip_visual_flops(c, n);
        pw += w;
        pa += a;
        // A_y [r × H'] · img [H' × W'] · A_xᵀ [W' × r] per crop and channel
        // (H', W' the image padded by the cutout border, counted unpadded here).
        let r = c.image_resolution as f64;
        let (h, wd) = (spec.height as f64, spec.width as f64);
        cut += n * 3.0 * (2.0 * r * h * wd + 2.0 * r * wd * r);
    }
    let quantize = 2.0 * (lh * lw * spec.vqgan.n_embed * spec.vqgan.embed_dim) as f64;
    // Backward: weight layers once (input gradient only), activation products
    // twice; the cutout products' gradient reaches the image only (one side).
    let backward = pw + dw + 2.0 * (pa + da) + cut;
    let perceptors_forward = pw + pa;
    let decoder_forward = dw + da;
    FlopCount {
        perceptors_forward,
        decoder_forward,
        cutouts_forward: cut,
        quantize,
        backward,
        total: perceptors_forward + decoder_forward + cut + quantize + backward,
    }
}

/// Everything a run of the benchmark made: the guide (perceptors and
/// embedded prompts), the image state and the stores that own the weights.
struct Built {
    guide: Guide,
    state: ImageState,
    prompts: Vec<Prompt>,
    _stores: Vec<nn::VarStore>,
}

/// Builds the models of `spec` on `device` in `kind` with random weights, the
/// prompts' embeddings and a random start, exactly as the render does.
fn build(
    spec: &BenchSpec,
    device: Device,
    kind: Kind,
    tuning: Tuning,
    rng: &mut Rng,
) -> Result<Built> {
    let mut stores = Vec::new();
    let mut perceptors = Vec::new();
    for (name, config) in &spec.perceptors {
        let mut vs = nn::VarStore::new(device);
        vs.set_kind(kind);
        let clip = Clip::new(&vs.root(), config)?;
        randomize(&vs, rng)?;
        vs.freeze();
        if tuning.channels_last {
            crate::gpu::make_channels_last(&vs)?;
        }
        let sampler = CutoutSampler::new(spec.cutouts, CUT_POW, 0.25, clip.input_resolution())?;
        perceptors.push(Perceptor {
            name: name.clone(),
            clip,
            sampler,
        });
        stores.push(vs);
    }
    let mut vs = nn::VarStore::new(device);
    vs.set_kind(kind);
    let vqgan = Vqgan::new(&vs.root(), &spec.vqgan)?;
    randomize(&vs, rng)?;
    vs.freeze();
    if tuning.channels_last {
        crate::gpu::make_channels_last(&vs)?;
    }
    stores.push(vs);

    let prompts = PROMPTS
        .iter()
        .map(|p| Prompt::parse(p).map_err(|e| Error::internal(format!("bench prompt: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let mut guide = Guide::new(
        perceptors,
        std::slice::from_ref(&prompts),
        std::path::Path::new("."),
    )?;
    guide.set_tuning(tuning)?;
    let state = ImageState::random(
        ImageModel::Vqgan(vqgan),
        spec.width,
        spec.height,
        device,
        rng,
    )?;
    Ok(Built {
        guide,
        state,
        prompts,
        _stores: stores,
    })
}

/// The weights of every step: the one scene at weight 1 and each prompt's
/// own weight and stop (constants here, evaluated at t = 0).
fn step_weights(prompts: &[Prompt]) -> StepWeights<'static> {
    let ws = prompts
        .iter()
        .map(|p| WeightStop::at(&p.weight, p.stop.as_ref(), 0.0, 0.0))
        .collect();
    StepWeights {
        scene_weights: vec![1.0],
        prompt_weights: vec![ws],
        direct_init: None,
        direct_stabilization: None,
        semantic_init: None,
        semantic_stabilization: None,
    }
}

/// The result of one configuration, as printed (`--format json` prints
/// these field names; the reference script prints the same ones).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// `zoetrope` (this program) or `reference` (the Python peer).
    pub side: String,
    pub config: String,
    pub small: bool,
    pub width: i64,
    pub height: i64,
    pub cutouts: usize,
    pub perceptors: Vec<String>,
    pub vqgan: String,
    pub device: String,
    pub precision: String,
    pub steps: usize,
    pub warmup: usize,
    pub seed: i64,
    pub ms_per_step: f64,
    pub steps_per_s: f64,
    /// Driver-side device memory taken by the run, MiB (see module docs); `None` on the CPU.
    pub peak_gpu_mem_mib: Option<f64>,
    /// libtorch's caching allocator's peak allocated bytes (MiB) over the
    /// whole run, as torch's `max_memory_allocated` reports it (read through
    /// the project's C++ shim; `None` on the CPU).
    pub torch_max_allocated_mib: Option<f64>,
    /// The allocator's peak reserved bytes (MiB): what it held from the
    /// driver at its fullest, cached blocks and CUDA-graph pools included.
    pub torch_max_reserved_mib: Option<f64>,
    pub flops_per_step: f64,
    pub flops: FlopCount,
    /// `flops_per_step` / time per step, in TFLOP/s.
    pub achieved_tflops: f64,
    /// `achieved_tflops / peak_tflops` (CUDA with a known peak only).
    pub peak_share: Option<f64>,
    pub peak_tflops: Option<f64>,
    /// The loss of the last step.
    pub final_loss: f64,
    /// The speed switches, `name=on|off …`.
    pub tuning: String,
    /// With `--breakdown`: ms/step of each phase, device synchronised between phases.
    pub phases_ms: Option<Vec<(String, f64)>>,
    /// The loss of every step, warm-up steps first (not printed in JSON; see `--loss-curve`).
    #[serde(skip)]
    pub losses: Vec<f64>,
}

/// A printable name of the compute kind.
pub fn precision_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bf16",
        Kind::Half => "fp16",
        _ => "fp32",
    }
}

/// Runs `spec` under `opts`: builds everything, runs the warm-up and timed
/// steps, and reports the figures. A CUDA out-of-memory error names the
/// configuration.
pub fn run_bench(spec: &BenchSpec, opts: &BenchOptions) -> Result<BenchResult> {
    if opts.steps == 0 {
        return Err(Error::input(
            "--steps 0: the benchmark needs at least one timed step",
        ));
    }
    opts.tuning.apply_global(opts.device);
    crate::gpu::reset_peak_memory(opts.device);
    let before = gpu_mem::used_bytes(opts.device);
    let mut rng = Rng::new(opts.seed as u64)?;
    rng.seed_device(opts.device);
    let Built {
        guide,
        mut state,
        prompts,
        _stores,
    } = build(spec, opts.device, opts.kind, opts.tuning, &mut rng)
        .map_err(|e| e.context(format!("building configuration {}", spec.name)))?;
    let weights = step_weights(&prompts);
    let mut adam = Adam::new(state.param(), state.default_lr())?;
    let mut losses: Vec<Tensor> = Vec::with_capacity(opts.warmup + opts.steps);
    for _ in 0..opts.warmup {
        losses.push(guide.step(&mut state, &mut adam, &weights, &mut rng)?);
    }
    crate::gpu::synchronize(opts.device);
    let start = Instant::now();
    for _ in 0..opts.steps {
        losses.push(guide.step(&mut state, &mut adam, &weights, &mut rng)?);
    }
    crate::gpu::synchronize(opts.device);
    let elapsed = start.elapsed().as_secs_f64();
    let after = gpu_mem::used_bytes(opts.device);
    let stats = crate::gpu::memory_stats(opts.device);
    let torch_peak = stats.map(|m| m.peak_allocated_mib());
    let torch_reserved = stats.map(|m| m.peak_reserved_mib());
    let losses: Vec<f64> = losses
        .iter()
        .map(|l| l.f_double_value(&[]))
        .collect::<std::result::Result<_, _>>()?;
    let phases_ms = if opts.breakdown {
        let mut phases = PhaseTimes::default();
        for _ in 0..opts.steps {
            let _ = guide.step_profiled(&mut state, &mut adam, &weights, &mut rng, &mut phases)?;
        }
        Some(
            phases
                .totals
                .iter()
                .map(|(p, s)| (p.to_string(), s * 1000.0 / opts.steps as f64))
                .collect(),
        )
    } else {
        None
    };

    let ms = elapsed * 1000.0 / opts.steps as f64;
    let flops = flops_per_step(spec);
    let achieved = flops.total / (ms / 1000.0) / 1e12;
    let peak_tflops = if opts.device.is_cuda() {
        opts.peak_tflops
    } else {
        None
    };
    let peak_gpu_mem_mib = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / crate::gpu::MIB),
        _ => None,
    };
    Ok(BenchResult {
        side: "zoetrope".into(),
        config: spec.name.clone(),
        small: spec.small,
        width: spec.width,
        height: spec.height,
        cutouts: spec.cutouts,
        perceptors: spec.perceptors.iter().map(|(n, _)| n.clone()).collect(),
        vqgan: spec.vqgan_name.clone(),
        device: format!("{:?}", opts.device).to_ascii_lowercase(),
        precision: precision_name(opts.kind).into(),
        steps: opts.steps,
        warmup: opts.warmup,
        seed: opts.seed,
        ms_per_step: ms,
        steps_per_s: 1000.0 / ms,
        peak_gpu_mem_mib,
        torch_max_allocated_mib: torch_peak,
        torch_max_reserved_mib: torch_reserved,
        flops_per_step: flops.total,
        flops,
        achieved_tflops: achieved,
        peak_share: peak_tflops.map(|p| achieved / p),
        peak_tflops,
        final_loss: *losses.last().unwrap_or(&f64::NAN),
        tuning: opts.tuning.describe(),
        phases_ms,
        losses,
    })
}

/// Device memory in use as the CUDA driver sees it, through `cuMemGetInfo`
/// from `libcuda.so.1` opened at run time (tch exposes no allocator
/// statistics, and linking the driver would break CPU-only machines).
pub mod gpu_mem {
    use std::ffi::{c_char, c_int, c_void, CString};
    use tch::Device;

    extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }
    const RTLD_NOW: c_int = 2;
    const CUDA_ERROR_INVALID_CONTEXT: c_int = 201;

    type Init = unsafe extern "C" fn(u32) -> c_int;
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> c_int;
    type PrimaryCtxRetain = unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int;
    type CtxPush = unsafe extern "C" fn(*mut c_void) -> c_int;
    type CtxPop = unsafe extern "C" fn(*mut *mut c_void) -> c_int;
    type PrimaryCtxRelease = unsafe extern "C" fn(c_int) -> c_int;

    fn sym(handle: *mut c_void, name: &str) -> Option<*mut c_void> {
        let name = CString::new(name).ok()?;
        // SAFETY: `handle` is a live dlopen handle and `name` a C string.
        let p = unsafe { dlsym(handle, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    }

    /// `total − free` bytes of device `device`, or `None` on the CPU or
    /// when the driver cannot be asked.
    pub fn used_bytes(device: Device) -> Option<u64> {
        let Device::Cuda(index) = device else {
            return None;
        };
        let lib = CString::new("libcuda.so.1").ok()?;
        // SAFETY: dlopen with a valid C string; the handle is never closed
        // (the driver stays loaded for the process anyway).
        let handle = unsafe { dlopen(lib.as_ptr(), RTLD_NOW) };
        if handle.is_null() {
            return None;
        }
        // SAFETY: the symbols have the driver API's documented signatures.
        unsafe {
            // Idempotent; needed when libtorch has not touched the driver yet.
            let init: Init = std::mem::transmute(sym(handle, "cuInit")?);
            if init(0) != 0 {
                return None;
            }
            let get: MemGetInfo = std::mem::transmute(sym(handle, "cuMemGetInfo_v2")?);
            let (mut free, mut total) = (0usize, 0usize);
            let rc = get(&mut free, &mut total);
            if rc == 0 {
                return Some((total - free) as u64);
            }
            if rc != CUDA_ERROR_INVALID_CONTEXT {
                return None;
            }
            // No current context on this thread: use the device's primary
            // context (the one libtorch's runtime calls use).
            let retain: PrimaryCtxRetain =
                std::mem::transmute(sym(handle, "cuDevicePrimaryCtxRetain")?);
            let push: CtxPush = std::mem::transmute(sym(handle, "cuCtxPushCurrent_v2")?);
            let pop: CtxPop = std::mem::transmute(sym(handle, "cuCtxPopCurrent_v2")?);
            let release: PrimaryCtxRelease =
                std::mem::transmute(sym(handle, "cuDevicePrimaryCtxRelease_v2")?);
            let mut ctx = std::ptr::null_mut();
            if retain(&mut ctx, index as c_int) != 0 {
                return None;
            }
            let ok = push(ctx) == 0 && get(&mut free, &mut total) == 0;
            let mut popped = std::ptr::null_mut();
            pop(&mut popped);
            release(index as c_int);
            ok.then_some((total - free) as u64)
        }
    }
}

/// Writes `step,loss` rows (steps numbered from 1, warm-up steps included).
pub fn write_loss_curve(path: &std::path::Path, losses: &[f64]) -> Result<()> {
    let mut text = String::from("step,loss\n");
    for (i, l) in losses.iter().enumerate() {
        text.push_str(&format!("{},{l}\n", i + 1));
    }
    std::fs::write(path, text)
        .map_err(|e| Error::io(format!("writing the loss curve {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vit_b32_forward_flops_match_the_known_figure() {
        // ViT-B/32 image tower: 4.41 GMACs per 224 px image (timm's
        // vit_base_patch32_224 figure), i.e. 8.8 GFLOPs.
        let (w, a) = clip_visual_flops(&ClipConfig::vit_b32(), 1.0);
        let g = (w + a) / 1e9;
        assert!((8.7..8.95).contains(&g), "{g}");
    }

    #[test]
    fn rn50_forward_flops_match_the_known_figure() {
        // CLIP's ModifiedResNet-50 at 224 px: 5.4 GMACs in its convolutions
        // (open_clip's profile; more than torchvision's ResNet-50, 4.1 GMACs,
        // from the wider three-conv stem) plus 0.4 GMACs in the attention
        // pool's projections: about 11.6 GFLOPs.
        let (w, a) = clip_visual_flops(&ClipConfig::rn50(), 1.0);
        let g = (w + a) / 1e9;
        assert!((11.3..11.9).contains(&g), "{g}");
    }

    #[test]
    fn configurations_have_the_issue_sizes() {
        let a = BenchSpec::named("a", false).unwrap();
        assert_eq!((a.width, a.height, a.cutouts), (256, 128, 60));
        assert_eq!(a.vqgan.n_embed, 16384);
        assert_eq!(a.vqgan.factor(), 16);
        let c = BenchSpec::named("C", false).unwrap();
        assert_eq!((c.width, c.height, c.cutouts), (512, 512, 64));
        let names: Vec<_> = c.perceptors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ViT-B/32", "RN50"]);
        let e = BenchSpec::named("d", false).unwrap_err();
        assert!(e.message.contains("a (the seed scene"), "{e}");
        // More pixels, more work; a second perceptor adds its tower.
        let b = BenchSpec::named("b", false).unwrap();
        let (fa, fb, fc) = (
            flops_per_step(&a).total,
            flops_per_step(&b).total,
            flops_per_step(&c).total,
        );
        assert!(fa < fb && fb < fc, "{fa} {fb} {fc}");
    }

    #[test]
    fn seed_scene_count_agrees_with_torch_flop_counter() {
        // `benches/reference/notebook_loop.py --config a --steps 1 --device cpu`
        // measured 1 301 817 589 760 FLOPs for one step of the same models
        // with torch.utils.flop_counter.FlopCounterMode (2026-11-23). The
        // reference pools its cutouts (no FLOPs counted), so compare without
        // zoetrope's matrix resampling; the rest agrees to about 1 %.
        let f = flops_per_step(&BenchSpec::named("a", false).unwrap());
        let ours = f.total - 2.0 * f.cutouts_forward;
        let measured = 1_301_817_589_760.0;
        let rel = (ours - measured).abs() / measured;
        assert!(rel < 0.02, "{ours} vs {measured}: {rel}");
    }
}
#[cfg(test)]
mod precision_tests {
    use super::*;

    /// The fp32 and bf16 builds of one seed must hold the same weights (up to
    /// bf16 rounding), or the loss-curve comparison compares two different
    /// models: the variable store is a hash map, so `randomize` must not
    /// follow its iteration order.
    #[test]
    fn same_seed_gives_the_same_models_in_fp32_and_bf16() {
        let spec = BenchSpec::named("a", true).unwrap();
        let mut images = Vec::new();
        let mut texts = Vec::new();
        let mut embeds = Vec::new();
        for kind in [Kind::Float, Kind::BFloat16] {
            let mut rng = Rng::new(0).unwrap();
            let b = build(&spec, Device::Cpu, kind, Tuning::default(), &mut rng).unwrap();
            images.push(b.state.image().unwrap());
            let clip = &b.guide.perceptors()[0].clip;
            // The text tower is freed once the prompts are embedded: compare
            // the prompts' embeddings (one row per prompt).
            let rows: Vec<Tensor> = b.guide.prompts()[0]
                .iter()
                .map(|p| p.embeds[0].reshape([1, -1]).to_kind(Kind::Float))
                .collect();
            texts.push(Tensor::cat(&rows, 0));
            let r = clip.input_resolution();
            let x = Rng::new(5).unwrap().rand(&[2, 3, r, r]).unwrap();
            embeds.push(
                tch::no_grad(|| clip.encode_image(&x))
                    .unwrap()
                    .to_kind(Kind::Float),
            );
        }
        let cos = |a: &Tensor, b: &Tensor| {
            Tensor::cosine_similarity(a, b, -1, 1e-8)
                .min()
                .double_value(&[])
        };
        let image_diff = (&images[0] - &images[1])
            .abs()
            .mean(Kind::Float)
            .double_value(&[]);
        assert!(image_diff < 0.02, "{image_diff}");
        assert!(cos(&texts[0], &texts[1]) > 0.999);
        assert!(cos(&embeds[0], &embeds[1]) > 0.999);
    }
}

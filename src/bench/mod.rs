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

mod flops;
mod spec;

pub use flops::{clip_visual_flops, decoder_flops, flops_per_step, FlopCount};
pub use spec::{bench_workload, BenchSpec, CUT_POW, PROMPTS};

use std::time::Instant;

use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use crate::guidance::adam::Adam;
use crate::guidance::augment::AugmentConfig;
use crate::guidance::cutouts::CutoutSampler;
use crate::guidance::guide::{Guide, Perceptor, StepWeights};
use crate::guidance::image::{ImageModel, ImageState};
use crate::guidance::loss::WeightStop;
use crate::guidance::phases::PhaseTimes;
use crate::models::clip::Clip;
use crate::models::vqgan::Vqgan;
use crate::models::ModelOptions;
use crate::render::device::apply_device_switches;
use crate::rng::{randomize, Rng};
use crate::scene::prompt::Prompt;
use crate::tuning::Tuning;
use crate::{Error, Result};

/// The dense bf16 tensor-core peak of an H100 SXM / H200 (989.4 TFLOP/s,
/// NVIDIA's data sheet, without sparsity): the default of `--peak-tflops`.
pub const H100_BF16_PEAK_TFLOPS: f64 = 989.4;

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
    /// pytti's cutout augmentations on every batch (`cutout_augs = "pytti"`);
    /// off by default, so that the step is the reference's.
    pub augment: bool,
    /// `gradient_accumulation_steps`: the passes the cutouts go through the
    /// perceptors in (1: one pass).
    pub passes: usize,
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
fn build(spec: &BenchSpec, opts: &BenchOptions, rng: &mut Rng) -> Result<Built> {
    let (device, kind, tuning) = (opts.device, opts.kind, opts.tuning);
    let options = ModelOptions::of_tuning(&tuning);
    let mut stores = Vec::new();
    let mut perceptors = Vec::new();
    for (name, config) in &spec.perceptors {
        let mut vs = nn::VarStore::new(device);
        vs.set_kind(kind);
        let clip = Clip::new_with(&vs.root(), config, options)?;
        randomize(&vs, rng)?;
        vs.freeze();
        if tuning.channels_last {
            crate::gpu::make_channels_last(&vs)?;
        }
        let mut sampler = CutoutSampler::new(spec.cutouts, CUT_POW, 0.25, clip.input_resolution())?;
        sampler.augment = opts.augment.then(AugmentConfig::pytti_classic);
        perceptors.push(Perceptor {
            name: name.clone(),
            clip,
            sampler,
        });
        stores.push(vs);
    }
    let mut vs = nn::VarStore::new(device);
    vs.set_kind(kind);
    let vqgan = Vqgan::new_with(&vs.root(), &spec.vqgan, options)?;
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
        0,
    )?;
    guide.set_tuning(tuning)?;
    guide.set_gradient_accumulation_steps(opts.passes)?;
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
        .map(|p| WeightStop::of_prompt(p, 0.0, 0.0))
        .collect();
    StepWeights {
        scene_weights: vec![1.0],
        prompt_weights: vec![ws],
        direct_init: None,
        direct_stabilization: None,
        semantic_init: None,
        semantic_stabilization: None,
        loop_closing: None,
        smoothing: None,
        direct_images: Vec::new(),
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
    /// `pytti` with the cutout augmentations, else `none`.
    pub cutout_augs: String,
    /// The passes of `gradient_accumulation_steps`.
    pub gradient_accumulation_steps: usize,
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
    apply_device_switches(&opts.tuning, opts.device);
    crate::gpu::reset_peak_memory(opts.device);
    let before = crate::gpu::driver::used_bytes(opts.device);
    let mut rng = Rng::new(opts.seed as u64)?;
    rng.seed_device(opts.device);
    let Built {
        guide,
        mut state,
        prompts,
        _stores,
    } = build(spec, opts, &mut rng)
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
    let after = crate::gpu::driver::used_bytes(opts.device);
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
        cutout_augs: if opts.augment { "pytti" } else { "none" }.into(),
        gradient_accumulation_steps: opts.passes,
        phases_ms,
        losses,
    })
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
            let opts = BenchOptions {
                device: Device::Cpu,
                kind,
                steps: 1,
                warmup: 0,
                seed: 0,
                peak_tflops: None,
                tuning: Tuning::default(),
                breakdown: false,
                augment: false,
                passes: 1,
            };
            let b = build(&spec, &opts, &mut rng).unwrap();
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

#[cfg(test)]
mod switch_tests {
    use super::*;

    /// The loss curve of the small configuration `config` on the CPU in fp32
    /// with the extra `--tune` switches (what `bench --small --steps 6
    /// --warmup 0 --loss-curve` writes).
    fn small_curve(config: &str, tune: &[&str]) -> Vec<f64> {
        let spec = BenchSpec::named(config, true).unwrap();
        let opts = BenchOptions {
            device: Device::Cpu,
            kind: Kind::Float,
            steps: 6,
            warmup: 0,
            seed: 0,
            peak_tflops: Some(H100_BF16_PEAK_TFLOPS),
            tuning: Tuning::from_specs(tune).unwrap(),
            breakdown: false,
            augment: false,
            passes: 1,
        };
        run_bench(&spec, &opts).unwrap().losses
    }

    /// Checkpointing the perceptors and the lean decoder activations change what
    /// is kept for the backward pass, and the deterministic switch how attention
    /// is computed, not the optimisation: six steps follow the same losses (c has
    /// a ViT and a ResNet perceptor, whose attention pool is not checkpointed but
    /// takes the explicit attention too). In one process: the switches are the
    /// models' construction options, not process-wide state (this test ran
    /// `zoetrope bench` as subprocesses while they were).
    #[test]
    fn memory_and_determinism_switches_keep_the_loss_curve() {
        for config in ["a", "c"] {
            let plain = small_curve(config, &["lean-activations=off"]);
            let lean = small_curve(config, &["checkpoint-perceptors=on", "deterministic=on"]);
            assert_eq!(plain.len(), 6);
            for (step, (p, l)) in plain.iter().zip(&lean).enumerate() {
                assert!(
                    (p - l).abs() <= 1e-4 * p.abs(),
                    "config {config}, step {}: {p} vs {l}",
                    step + 1
                );
            }
            // The steps move the loss, so equal curves are not a constant.
            assert!(plain[0] != plain[5], "{plain:?}");
        }
    }
}

//! `zoetrope bench`: times the full optimisation step at real sizes with
//! random weights (see `zoetrope::bench`).

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use zoetrope::bench::{
    run_bench, write_loss_curve, BenchOptions, BenchResult, BenchSpec, H100_BF16_PEAK_TFLOPS,
};
use zoetrope::render::device::{resolve_device_flag, resolve_precision};
use zoetrope::tuning::Tuning;
use zoetrope::{Error, Result};

/// Output format of `zoetrope bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One readable line per configuration.
    Table,
    /// A JSON array of result objects (the reference script prints the same fields).
    Json,
}

/// Arguments of `zoetrope bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Configuration: a (seed scene, 256×128, 60 cutouts, ViT-B/32), b (512×512,
    /// 64 cutouts), c (b with ViT-B/32 + RN50) or all.
    #[arg(long, default_value = "all")]
    pub config: String,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// auto (bf16 on CUDA, fp32 on the CPU), fp32 or bf16.
    #[arg(long, default_value = "auto")]
    pub precision: String,
    /// Timed steps per configuration.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps before the timed ones.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Tiny models at a few dozen pixels: the CPU/CI smoke mode.
    #[arg(long)]
    pub small: bool,
    /// Seed of the random weights, the start and the cutouts.
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
    /// The GPU's peak TFLOP/s for the share reported (default: H100/H200 dense bf16).
    #[arg(long, default_value_t = H100_BF16_PEAK_TFLOPS)]
    pub peak_tflops: f64,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write every step's loss (warm-up included) as `step,loss` CSV; with
    /// several configurations the name gets `-a`, `-b`, `-c` before the extension.
    #[arg(long, value_name = "FILE.csv")]
    pub loss_curve: Option<PathBuf>,
    // The help text lists the switches of `Tuning`'s table.
    #[arg(long, value_name = "NAME=on|off", help = Tuning::help())]
    pub tune: Vec<String>,
    /// After the timed steps, run as many steps again with the device
    /// synchronised between phases and report each phase's ms/step.
    #[arg(long)]
    pub breakdown: bool,
    /// pytti's cutout augmentations on every batch (pytti) or not (none,
    /// the default: the step the reference times).
    #[arg(long, value_name = "pytti|none", default_value = "none")]
    pub cutout_augs: String,
    /// The passes each step's cutouts go through the perceptors in (the
    /// scene setting of that name; 1 to the configuration's cutouts).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub gradient_accumulation_steps: usize,
}

fn curve_path(base: &std::path::Path, config: &str, several: bool) -> PathBuf {
    if !several {
        return base.to_path_buf();
    }
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "loss".into());
    let ext = base
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    base.with_file_name(format!("{stem}-{config}{ext}"))
}

fn print_line(r: &BenchResult) {
    let mem = r
        .peak_gpu_mem_mib
        .map(|m| format!("{m:.0} MiB"))
        .unwrap_or_else(|| "n/a".into());
    let share = r
        .peak_share
        .map(|s| format!(" ({:.1} % of peak)", s * 100.0))
        .unwrap_or_default();
    println!(
        "config {} {}×{} {} cutouts [{}] + {} on {} {}: {:.2} ms/step, {:.2} steps/s, peak GPU memory {mem}, {:.1} GFLOP/step, {:.2} TFLOP/s{share}, final loss {:.4}",
        r.config,
        r.width,
        r.height,
        r.cutouts,
        r.perceptors.join(" + "),
        r.vqgan,
        r.device,
        r.precision,
        r.ms_per_step,
        r.steps_per_s,
        r.flops_per_step / 1e9,
        r.achieved_tflops,
        r.final_loss,
    );
    println!(
        "  switches: {}; cutout_augs {}, gradient_accumulation_steps {}",
        r.tuning, r.cutout_augs, r.gradient_accumulation_steps
    );
    if let Some(phases) = &r.phases_ms {
        let parts: Vec<String> = phases
            .iter()
            .map(|(p, ms)| format!("{p} {ms:.2}"))
            .collect();
        println!("  phases, ms/step (synchronised): {}", parts.join(", "));
    }
}

/// Runs the benchmark for each configuration asked for and prints the results.
pub fn run(args: &BenchArgs) -> Result<()> {
    let names: Vec<&str> = match args.config.trim().to_ascii_lowercase().as_str() {
        "all" => vec!["a", "b", "c"],
        "a" => vec!["a"],
        "b" => vec!["b"],
        "c" => vec!["c"],
        other => {
            return Err(Error::input(format!(
                "--config {other}: expected a, b, c or all"
            )))
        }
    };
    let device = resolve_device_flag(&args.device)?;
    let kind = resolve_precision(&args.precision, device).map_err(|e| e.context("--precision"))?;
    if !(args.peak_tflops.is_finite() && args.peak_tflops > 0.0) {
        return Err(Error::input(format!(
            "--peak-tflops {}: expected a positive number of TFLOP/s",
            args.peak_tflops
        )));
    }
    let tuning = Tuning::from_specs(&args.tune)?;
    let augment = match args.cutout_augs.trim().to_ascii_lowercase().as_str() {
        "pytti" => true,
        "none" => false,
        other => {
            return Err(Error::input(format!(
                "--cutout-augs {other}: expected pytti or none"
            )))
        }
    };
    if args.gradient_accumulation_steps == 0 {
        return Err(Error::input(
            "--gradient-accumulation-steps 0: a step needs at least one pass; use 1 or more",
        ));
    }
    let opts = BenchOptions {
        device,
        kind,
        steps: args.steps,
        warmup: args.warmup,
        seed: args.seed,
        peak_tflops: Some(args.peak_tflops),
        tuning,
        breakdown: args.breakdown,
        augment,
        passes: args.gradient_accumulation_steps,
    };
    let mut results = Vec::new();
    for name in &names {
        let spec = BenchSpec::named(name, args.small)?;
        if args.gradient_accumulation_steps > spec.cutouts {
            return Err(Error::input(format!(
                "--gradient-accumulation-steps {}: configuration {name} has {} cutouts; each pass needs at least one",
                args.gradient_accumulation_steps, spec.cutouts
            )));
        }
        let r = run_bench(&spec, &opts)?;
        if let Some(base) = &args.loss_curve {
            write_loss_curve(&curve_path(base, name, names.len() > 1), &r.losses)?;
        }
        if args.format == Format::Table {
            print_line(&r);
        }
        results.push(r);
    }
    if args.format == Format::Json {
        let text = serde_json::to_string_pretty(&results)
            .map_err(|e| Error::internal(format!("writing the results as JSON: {e}")))?;
        println!("{text}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Args;

    /// `bench --tune`'s help lists every switch `Tuning` knows.
    #[test]
    fn tune_help_lists_every_switch() {
        let cmd = BenchArgs::augment_args(clap::Command::new("bench"));
        let tune = cmd
            .get_arguments()
            .find(|a| a.get_id() == "tune")
            .expect("a --tune argument");
        let help = tune
            .get_long_help()
            .or(tune.get_help())
            .unwrap()
            .to_string();
        for name in Tuning::NAMES {
            assert!(help.contains(name), "--tune help lacks {name}: {help}");
        }
    }
}

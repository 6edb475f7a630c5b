//! The `zoetrope` command line: a thin layer over the library.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use zoetrope::Result;

#[derive(Parser)]
#[command(
    name = "zoetrope",
    version,
    about = "Keyframed CLIP-guided VQGAN animations, rendered to MP4"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the tch/libtorch build information (device, CUDA, threads).
    Info,
    /// Dry run: every frame's steps, t, scene weights, prompts and motion.
    /// Needs no weights and no GPU; checks the scene file as render would.
    Plan(cli::plan::PlanArgs),
    /// Render a scene to PNG frames and an MP4, or resume an interrupted render.
    Render(cli::render::RenderArgs),
    /// Model files: list, fetch, import and verify CLIP and VQGAN weights.
    Weights(cli::weights::WeightsArgs),
    /// VQGAN × perceptor comparison: one render per combination, then a
    /// tiled grid.mp4, contact sheets and an offline index.html viewer.
    Grid(cli::grid::GridArgs),
    /// CLIP similarity (100 × cosine) of images to prompts, per perceptor.
    Score(cli::score::ScoreArgs),
    /// Time the full optimisation step at real model sizes with random
    /// weights: ms/step, steps/s, peak GPU memory, FLOPs (no weight files needed).
    Bench(cli::bench::BenchArgs),
    /// Write a pytti YAML preset as a TOML scene with every value explicit.
    Convert(cli::convert::ConvertArgs),
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info => {
            println!("zoetrope {}", env!("CARGO_PKG_VERSION"));
            println!("cuda available: {}", tch::Cuda::is_available());
            println!("cuda devices: {}", tch::Cuda::device_count());
            println!("threads: {}", tch::get_num_threads());
            Ok(())
        }
        Command::Plan(args) => cli::plan::run(&args),
        Command::Render(args) => cli::render::run(&args),
        Command::Weights(args) => cli::weights::run(args),
        Command::Grid(args) => cli::grid::run(
            &args,
            &mut cli::grid::render_cell,
            &cli::grid::check_weights,
        ),
        Command::Score(args) => cli::score::run(&args),
        Command::Bench(args) => cli::bench::run(&args),
        Command::Convert(args) => cli::convert::run(&args),
    }
}

fn main() -> ExitCode {
    // A closed pipe (`zoetrope weights list | head -1`) ends the process
    // quietly, as it does any Unix tool, instead of making a print panic
    // (Rust ignores SIGPIPE, so the write fails and `println!` panics). A
    // render ended this way resumes from its last frame.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread starts;
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

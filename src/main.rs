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
    /// Model files: list, fetch, import and verify CLIP and VQGAN weights.
    Weights(cli::weights::WeightsArgs),
    /// CLIP similarity (100 × cosine) of images to prompts, per perceptor.
    Score(cli::score::ScoreArgs),
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
        Command::Weights(args) => cli::weights::run(args),
        Command::Score(args) => cli::score::run(&args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

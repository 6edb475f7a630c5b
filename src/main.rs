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
    /// VQGAN × perceptor comparison: one render per combination, then a
    /// tiled grid.mp4, contact sheets and an offline index.html viewer.
    Grid(cli::grid::GridArgs),
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
        // TODO(lead): pass the real render and weights check (see src/cli/grid.rs).
        Command::Grid(args) => cli::grid::run(
            &args,
            &mut cli::grid::unwired_render,
            &cli::grid::check_weight_paths,
        ),
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

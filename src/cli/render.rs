//! `zoetrope render SCENE` and `zoetrope render --resume DIR`.

use clap::Args;
use std::path::PathBuf;
use zoetrope::render::frameloop::{self, Progress, RenderOptions};
use zoetrope::tuning::Tuning;
use zoetrope::{Error, Result};

/// Arguments of `zoetrope render`.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The scene file (TOML) to render, or a pytti YAML preset (.yaml/.yml).
    #[arg(required_unless_present = "resume", conflicts_with = "resume")]
    pub scene: Option<PathBuf>,
    /// Continue the interrupted run in this folder (the settings and seed are read from it).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Folder that receives the run folder `<file_namespace>/`.
    #[arg(long, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Plain progress lines even on a terminal.
    #[arg(long)]
    pub log_lines: bool,
    /// Turn one speed or memory switch on or off (as `zoetrope bench --tune`), e.g.
    /// cuda-graphs=off, or deterministic=on for a seeded GPU render that repeats
    /// bit for bit; repeatable. The switches used go into metadata.json.
    #[arg(long, value_name = "NAME=on|off")]
    pub tune: Vec<String>,
}

/// Runs the render; Ctrl-C stops after the current step, closes the MP4 and
/// prints the resume command.
pub fn run(args: &RenderArgs) -> Result<()> {
    // No --tune: the defaults, or a resumed run's own switches.
    let tuning = if args.tune.is_empty() {
        None
    } else {
        Some(Tuning::from_specs(&args.tune)?)
    };
    let opts = RenderOptions {
        out_dir: args.out.clone(),
        progress: if args.quiet {
            Progress::Quiet
        } else if args.log_lines {
            Progress::Lines
        } else {
            Progress::Auto
        },
        interrupt: super::interrupt_flag(),
        tuning,
    };
    let summary = match (&args.scene, &args.resume) {
        (_, Some(dir)) => frameloop::resume(dir, &opts)?,
        (Some(scene), None) => frameloop::render_file(scene, &opts)?,
        (None, None) => return Err(Error::input("give a scene file, or --resume RUN_DIR")),
    };
    if !args.quiet {
        println!(
            "rendered {} frames into {}",
            summary.total_frames,
            summary.run_dir.display()
        );
        if let Some(v) = summary.video {
            println!("video: {}", v.display());
        }
    }
    Ok(())
}

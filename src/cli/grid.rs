//! `zoetrope grid SCENE --vqgan LIST --perceptors LIST`: the VQGAN ×
//! perceptor comparison batch (see `zoetrope::grid` and docs/grid.md).
//!
//! The renderer and the weights check are parameters of [`run`], so this
//! file compiles and `--assemble` works before the render is wired in.

use clap::Args;
use std::path::{Path, PathBuf};
use zoetrope::grid::{self, assemble, CellOutcome, GridOptions, GridSpec, Shard};
use zoetrope::scene::Scene;
use zoetrope::{Error, Result};

/// Arguments of `zoetrope grid`.
#[derive(Args, Debug)]
pub struct GridArgs {
    /// The scene file (TOML); every cell renders it with its own models.
    pub scene: PathBuf,
    /// VQGAN models, comma-separated: the grid's rows (e.g. imagenet,coco).
    #[arg(long, value_name = "LIST")]
    pub vqgan: String,
    /// Perceptor entries, comma-separated: the grid's columns. Combine
    /// models in one entry with `+` (e.g. ViT-B/32,RN50+ViT-B/16); a path to
    /// a .safetensors file also works.
    #[arg(long, value_name = "LIST")]
    pub perceptors: String,
    /// The grid folder (default: `<file_namespace>_grid`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Render only the cells whose index is I modulo N (0 ≤ I < N), e.g.
    /// `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Frames for the contact sheets grid_frame_NNNNN.png (default: first,
    /// middle and last), e.g. --sheets 1,20,40.
    #[arg(long, value_name = "LIST")]
    pub sheets: Option<String>,
    /// Render nothing: rebuild grid.mp4, the contact sheets and index.html
    /// from the cells present and list the missing ones.
    #[arg(long)]
    pub assemble: bool,
}

/// Renders one cell: `(cell scene, cell folder, resume)`; see
/// `zoetrope::grid::RenderCell` for the contract.
pub type RenderFn = dyn FnMut(&Scene, &Path, bool) -> Result<()>;

// TODO(lead): replace with the real render once `render::frameloop::render`
// lands: render `scene` into exactly `cell_dir` (file_namespace is the
// folder's name), from scratch when `resume` is false, continuing otherwise.
/// PLACEHOLDER until the frame loop is merged: the grid's render callback.
pub fn unwired_render(_scene: &Scene, _cell_dir: &Path, _resume: bool) -> Result<()> {
    Err(Error::internal(
        "render is not wired yet: this build cannot render grid cells (use --assemble to \
         rebuild the comparison from existing cells)",
    ))
}

// TODO(lead): replace the named-model branch with
// `models::weights::resolve(ModelKind::Clip | ModelKind::Vqgan, name)` once
// the weights module is merged, collecting each error's message.
/// PLACEHOLDER weights check until the weights module is merged: checks that
/// perceptors given as `.safetensors` paths exist; named models are left to
/// the render's own loading errors.
pub fn check_weight_paths(perceptors: &[String], _vqgan: &str) -> Vec<String> {
    perceptors
        .iter()
        .filter(|p| p.to_ascii_lowercase().ends_with(".safetensors"))
        .filter(|p| !Path::new(p.as_str()).is_file())
        .map(|p| format!("perceptor weights file {p} does not exist"))
        .collect()
}

/// Runs the command with the given renderer and weights check.
pub fn run(
    args: &GridArgs,
    render: &mut RenderFn,
    check_weights: &dyn Fn(&[String], &str) -> Vec<String>,
) -> Result<()> {
    let spec = GridSpec::parse(&args.vqgan, &args.perceptors)?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    let sheets = args
        .sheets
        .as_deref()
        .map(assemble::parse_sheet_list)
        .transpose()?;
    let out = match &args.out {
        Some(o) => o.clone(),
        None => {
            let scene = Scene::load(&args.scene)?;
            PathBuf::from(format!("{}_grid", scene.file_namespace))
        }
    };
    let cells = spec.cells();
    println!(
        "grid: {} VQGAN × {} perceptor entries = {} cells in {}",
        spec.rows(),
        spec.cols(),
        cells.len(),
        out.display()
    );

    let outputs = if args.assemble {
        if shard.is_some() {
            return Err(Error::input(
                "--assemble builds the outputs from every cell; leave out --shard",
            ));
        }
        grid::assemble_grid(&args.scene, &spec, &out, sheets)?
    } else {
        let opts = GridOptions {
            shard,
            sheets,
            progress: true,
        };
        let report = grid::run_grid(&args.scene, &spec, &out, &opts, check_weights, render)?;
        let count =
            |f: fn(&CellOutcome) -> bool| report.cells.iter().filter(|c| f(&c.outcome)).count();
        println!(
            "cells: {} rendered, {} resumed, {} already complete, {} in other shards",
            count(|o| *o == CellOutcome::Rendered),
            count(|o| matches!(o, CellOutcome::Resumed { .. })),
            count(|o| *o == CellOutcome::AlreadyComplete),
            count(|o| *o == CellOutcome::OtherShard),
        );
        report.outputs
    };
    for note in &outputs.notes {
        eprintln!("note: {note}");
    }
    if let Some(v) = &outputs.video {
        println!("video: {}", v.display());
    }
    for s in &outputs.sheets {
        println!("contact sheet: {}", s.display());
    }
    println!("viewer: {}", outputs.index.display());
    if outputs.missing.is_empty() {
        println!("all {} cells complete", cells.len());
    } else {
        println!(
            "{} of {} cells not complete:",
            outputs.missing.len(),
            cells.len()
        );
        for m in &outputs.missing {
            println!("  {m}");
        }
    }
    Ok(())
}

//! `zoetrope grid SCENE --vqgan LIST --perceptors LIST`: the VQGAN ×
//! perceptor comparison batch (see `zoetrope::grid` and docs/grid.md).
//!
//! The renderer and the weights check are parameters of [`run`], so this
//! file compiles and `--assemble` works before the render is wired in.

use clap::Args;
use std::path::{Path, PathBuf};
use zoetrope::grid::judge::Judge;
use zoetrope::grid::{self, assemble, CellOutcome, GridOptions, GridSpec, Shard};
use zoetrope::models::weights::{self, ModelKind};
use zoetrope::output::RunDir;
use zoetrope::render::frameloop::{self, Progress, RenderOptions};
use zoetrope::scene::Scene;
use zoetrope::{Error, Result};

/// Arguments of `zoetrope grid`.
#[derive(Args, Debug)]
pub struct GridArgs {
    /// The scene file (TOML, or a pytti YAML preset); every cell renders it
    /// with its own models.
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
    /// Rank the cells with this CLIP perceptor (e.g. ViT-B/32): at the end
    /// every complete cell's frames are scored against the scene's prompts
    /// as `zoetrope score` does, into scores.csv and the viewer.
    #[arg(long, value_name = "PERCEPTOR")]
    pub judge: Option<String>,
}

/// Renders one cell: `(cell scene, cell folder, resume)`; see
/// `zoetrope::grid::RenderCell` for the contract.
pub type RenderFn = dyn FnMut(&Scene, &Path, bool) -> Result<()>;

/// The grid's renderer: the ordinary render, into exactly `cell_dir` (whose
/// name is the cell scene's `file_namespace`), from scratch unless `resume`
/// finds the state of an interrupted render there.
pub fn render_cell(scene: &Scene, cell_dir: &Path, resume: bool) -> Result<()> {
    std::fs::create_dir_all(cell_dir)
        .map_err(|e| Error::io(format!("could not create {}", cell_dir.display()), e))?;
    let resuming = resume && cell_dir.join(frameloop::STATE_FILE).is_file();
    // Not resuming: the render removes a broken attempt's frames and state
    // before it writes its own.
    let run = RunDir::open(cell_dir)?;
    let scene_file =
        std::path::absolute(&scene.origin).unwrap_or_else(|_| PathBuf::from(&scene.origin));
    let scene_dir = scene_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let opts = RenderOptions {
        out_dir: cell_dir.parent().map(Path::to_path_buf).unwrap_or_default(),
        progress: Progress::Auto,
        interrupt: super::interrupt_flag(),
        ..RenderOptions::default()
    };
    frameloop::render_in(scene, &scene_file, &scene_dir, run, resuming, &opts)?;
    Ok(())
}

/// Every weights file a cell needs, resolved as the render resolves them;
/// the messages of those missing (each names the fetch/import command).
pub fn check_weights(perceptors: &[String], vqgan: &str) -> Vec<String> {
    let mut missing: Vec<String> = perceptors
        .iter()
        .filter_map(|p| weights::resolve(ModelKind::Clip, p).err())
        .map(|e| e.message)
        .collect();
    if let Err(e) = weights::resolve(ModelKind::Vqgan, vqgan) {
        missing.push(e.message);
    }
    missing
}

/// Runs the command with the given renderer and weights check.
pub fn run(
    args: &GridArgs,
    render: &mut RenderFn,
    check_weights: &dyn Fn(&[String], &str) -> Vec<String>,
) -> Result<()> {
    let spec = GridSpec::parse(&args.vqgan, &args.perceptors)?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    // The judge's weights are checked before anything renders.
    let judge = args.judge.as_deref().map(Judge::resolve).transpose()?;
    let sheets = args
        .sheets
        .as_deref()
        .map(assemble::parse_sheet_list)
        .transpose()?;
    let out = match &args.out {
        Some(o) => o.clone(),
        None => {
            let scene = Scene::load_with(&args.scene, &zoetrope::models::WeightsLookup)?;
            PathBuf::from(format!("{}_grid", scene.output.file_namespace))
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
        grid::assemble_grid_judged(&args.scene, &spec, &out, sheets, judge.as_ref())?
    } else {
        let opts = GridOptions {
            shard,
            sheets,
            progress: true,
            judge,
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
    if let Some(s) = &outputs.scores {
        println!("scores: {}", s.display());
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

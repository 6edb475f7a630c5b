//! The VQGAN × perceptor comparison grid (`zoetrope grid`, docs/grid.md).
//!
//! A grid renders one scene once per combination of a VQGAN model and a
//! perceptor entry (one CLIP model, or several combined with `+`). Every
//! combination is a *cell*, and every cell is an ordinary render folder
//! inside the grid folder:
//!
//! ```text
//! <grid out>/imagenet__ViT-B-32/frame_00001.png … imagenet__ViT-B-32.mp4 settings.toml …
//! <grid out>/imagenet__RN50+ViT-B-16/…
//! <grid out>/grid.mp4, grid_frame_00001.png …, index.html
//! ```
//!
//! Cells keep the scene's seed and schedule; only `vqgan_model`,
//! `perceptors` and `file_namespace` change (and the frame size, rounded so
//! that every VQGAN of the grid can render it, see [`GridSpec::cell_scene`]).
//!
//! The grid is restartable and can be split over machines: a cell whose
//! folder is complete is skipped, a partial one is resumed, and
//! `--shard I/N` picks the cells whose index is `I` modulo `N`, so a job
//! array over a shared folder renders every cell exactly once. The
//! comparison outputs ([`assemble`]) are rebuilt from whatever cells exist.
//!
//! The render itself is a callback ([`run_grid`]'s `render_cell`), so this
//! module needs no model and is tested with fake cells.
//!
//! Decisions where docs/design.md is silent:
//! - Cell order is rows = VQGANs in the order given, columns = perceptor
//!   entries in the order given; cell index = `row · columns + column`.
//! - Folder names keep `[A-Za-z0-9._+-]` and replace anything else by `-`
//!   (`ViT-L/14@336px` → `ViT-L-14-336px`); the VQGAN and perceptor parts are
//!   joined by `__`. A perceptor given as a `.safetensors` path is named by
//!   its file stem.
//! - VQGANs are named (scene files cannot point `vqgan_model` at a file);
//!   perceptors may also be paths to `.safetensors` files, since
//!   `perceptors` is a list of names or paths for the weights resolver.
//! - A cell is complete when its `complete` marker (written by [`run_grid`]
//!   after a successful render) records the scene's frame count, or when all
//!   frames and the cell's MP4 are present.

pub mod assemble;
pub mod font;
pub mod judge;
mod template;

use std::fs;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::catalog::{self, PERCEPTORS as MODEL_NAMES, VQGAN_MODEL_NAMES};
use crate::models::vqgan::VqganConfig;
use crate::models::weights::{self, Manifest, ModelKind};
use crate::output::frames::frame_file_name;
use crate::scene::{ImageModel, Scene, VqganChoice, VqganModel};
use crate::schedule::Timeline;
use crate::{Error, ErrorKind, Result};

/// Name of the marker file a finished cell holds.
pub const COMPLETE_MARKER: &str = "complete";

/// Which VQGANs and perceptor entries a grid compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GridSpec {
    /// VQGAN model names (`imagenet`, `coco`, …): the grid's rows.
    pub vqgans: Vec<String>,
    /// Perceptor entries: the grid's columns. Each entry is one or more CLIP
    /// models (canonical names or `.safetensors` paths) used together.
    pub perceptors: Vec<Vec<String>>,
}

/// One VQGAN × perceptor combination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// Position in [`GridSpec::cells`]: `row · columns + column`.
    pub index: usize,
    /// Row (VQGAN) index.
    pub row: usize,
    /// Column (perceptor entry) index.
    pub col: usize,
    /// The VQGAN model name.
    pub vqgan: String,
    /// The CLIP models of this cell.
    pub perceptors: Vec<String>,
    /// The cell's folder name (also its `file_namespace`).
    pub name: String,
}

impl Cell {
    /// The perceptor entry as people write it: `ViT-B/32+RN50` (paths shown
    /// by their file stem).
    pub fn perceptor_label(&self) -> String {
        perceptor_label(&self.perceptors)
    }

    /// `imagenet × ViT-B/32+RN50`, for messages.
    pub fn label(&self) -> String {
        format!("{} × {}", self.vqgan, self.perceptor_label())
    }

    /// The cell's folder inside the grid folder.
    pub fn dir(&self, out_dir: &Path) -> PathBuf {
        out_dir.join(&self.name)
    }

    /// The cell's MP4, `<cell>/<cell>.mp4` as a render names it.
    pub fn video_path(&self, out_dir: &Path) -> PathBuf {
        self.dir(out_dir).join(format!("{}.mp4", self.name))
    }
}

fn is_path_entry(p: &str) -> bool {
    p.to_ascii_lowercase().ends_with(".safetensors")
}

fn path_stem(p: &str) -> String {
    Path::new(p)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.to_string())
}

/// `ViT-B/32+RN50`; path entries are shown by their file stem.
pub fn perceptor_label(entry: &[String]) -> String {
    entry
        .iter()
        .map(|p| {
            if is_path_entry(p) {
                path_stem(p)
            } else {
                p.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// Keeps `[A-Za-z0-9._+-]`, replaces anything else by `-`.
fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `; did you mean "x"?` for the closest candidate, or nothing.
fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    catalog::closest(name, candidates)
        .map(|c| format!("; did you mean \"{c}\"?"))
        .unwrap_or_default()
}

/// Splits a comma-separated option value, rejecting empty items.
fn split_list<'a>(list: &'a str, option: &str, example: &str) -> Result<Vec<&'a str>> {
    if list.trim().is_empty() {
        return Err(Error::input(format!(
            "{option} is empty; give a comma-separated list, e.g. {option} {example}"
        )));
    }
    list.split(',')
        .map(|s| s.trim())
        .enumerate()
        .map(|(i, s)| {
            if s.is_empty() {
                Err(Error::input(format!(
                    "{option} \"{list}\": entry {} is empty; separate names with single \
                     commas, e.g. {option} {example}",
                    i + 1
                )))
            } else {
                Ok(s)
            }
        })
        .collect()
}

/// The canonical VQGAN entry for `name`: one of pytti's six names (case and
/// `-`/`_` insensitive), another model of the weights manifest (such as the
/// untrained `tiny-vqgan`), or a `.safetensors` path unchanged.
fn canonical_vqgan(name: &str) -> Result<String> {
    if let Some(m) = VqganModel::find(name) {
        return Ok(m.name().to_string());
    }
    if is_path_entry(name) {
        return Ok(name.to_string());
    }
    if let Some(e) = Manifest::builtin().find(Some(ModelKind::Vqgan), name) {
        return Ok(e.name.clone());
    }
    Err(Error::input(format!(
        "--vqgan: unknown VQGAN model \"{name}\"; known models: {} (or a path to a \
         .safetensors file){}",
        VQGAN_MODEL_NAMES.join(", "),
        did_you_mean(name, VQGAN_MODEL_NAMES.iter().copied())
    )))
}

/// The label of a VQGAN entry in folder names and tiles: a path's file stem.
fn vqgan_label(v: &str) -> String {
    if is_path_entry(v) {
        path_stem(v)
    } else {
        v.to_string()
    }
}

/// The canonical perceptor name for `name`, ignoring case, `-`, `/`, `_`
/// and `@` (as scene files do), or a `.safetensors` path unchanged.
fn canonical_perceptor(name: &str) -> Result<String> {
    canonical_perceptor_for(name, "--perceptors")
}

/// [`canonical_perceptor`] for the command-line option `option`, which its
/// errors name.
pub(crate) fn canonical_perceptor_for(name: &str, option: &str) -> Result<String> {
    if is_path_entry(name) {
        if name.contains('+') && option == "--perceptors" {
            return Err(Error::input(format!(
                "{option}: the path \"{name}\" contains `+`, which combines perceptors; \
                 rename the file"
            )));
        }
        return Ok(name.to_string());
    }
    catalog::canonical_perceptor(name)
        .map(str::to_string)
        .or_else(|| {
            Manifest::builtin()
                .find(Some(ModelKind::Clip), name)
                .map(|e| e.name.clone())
        })
        .ok_or_else(|| {
            Error::input(format!(
                "{option}: unknown perceptor \"{name}\"; known: {} (or a path to a \
                 .safetensors file{}){}",
                MODEL_NAMES.join(", "),
                if option == "--perceptors" {
                    "; combine models with `+`, e.g. ViT-B/32+RN50"
                } else {
                    ""
                },
                did_you_mean(name, MODEL_NAMES.iter().copied())
            ))
        })
}

impl GridSpec {
    /// Parses the `--vqgan` and `--perceptors` lists:
    /// `imagenet,coco` and `ViT-B/32,RN50+ViT-B/16`. Names are checked
    /// against the known models (with a suggestion for typos) and
    /// canonicalised; duplicates are errors.
    pub fn parse(vqgan_list: &str, perceptor_list: &str) -> Result<GridSpec> {
        let vqgans = split_list(vqgan_list, "--vqgan", "imagenet,coco")?
            .into_iter()
            .map(canonical_vqgan)
            .collect::<Result<Vec<_>>>()?;
        let mut perceptors = Vec::new();
        for entry in split_list(perceptor_list, "--perceptors", "ViT-B/32,RN50+ViT-B/16")? {
            let mut models = Vec::new();
            for part in entry.split('+') {
                let part = part.trim();
                if part.is_empty() {
                    return Err(Error::input(format!(
                        "--perceptors: \"{entry}\" has an empty model around `+`; write \
                         combinations like ViT-B/32+RN50"
                    )));
                }
                let canon = canonical_perceptor(part)?;
                if models.contains(&canon) {
                    return Err(Error::input(format!(
                        "--perceptors: \"{entry}\" names {canon} twice"
                    )));
                }
                models.push(canon);
            }
            perceptors.push(models);
        }
        GridSpec::new(vqgans, perceptors)
    }

    /// Builds a spec from already canonical names, checking that it is
    /// non-empty, has no duplicate rows or columns, and that no two cells
    /// share a folder name.
    pub fn new(vqgans: Vec<String>, perceptors: Vec<Vec<String>>) -> Result<GridSpec> {
        if vqgans.is_empty() || perceptors.is_empty() {
            return Err(Error::input(
                "a grid needs at least one VQGAN (--vqgan) and one perceptor entry (--perceptors)",
            ));
        }
        for v in &vqgans {
            canonical_vqgan(v)?;
        }
        for (i, v) in vqgans.iter().enumerate() {
            if vqgans[..i].contains(v) {
                return Err(Error::input(format!(
                    "--vqgan lists {v} twice; each VQGAN is one row of the grid"
                )));
            }
        }
        for (i, p) in perceptors.iter().enumerate() {
            if p.is_empty() {
                return Err(Error::input("--perceptors has an empty entry"));
            }
            let mut sorted = p.clone();
            sorted.sort();
            if perceptors[..i].iter().any(|q| {
                let mut q = q.clone();
                q.sort();
                q == sorted
            }) {
                return Err(Error::input(format!(
                    "--perceptors lists {} twice (the order inside a `+` combination does \
                     not matter); each entry is one column of the grid",
                    perceptor_label(p)
                )));
            }
        }
        let spec = GridSpec { vqgans, perceptors };
        let cells = spec.cells();
        for (i, c) in cells.iter().enumerate() {
            if let Some(other) = cells[..i].iter().find(|o| o.name == c.name) {
                return Err(Error::input(format!(
                    "the cells {} and {} would share the folder {}; rename one of the \
                     .safetensors files",
                    other.label(),
                    c.label(),
                    c.name
                )));
            }
        }
        Ok(spec)
    }

    /// Number of rows (VQGANs).
    pub fn rows(&self) -> usize {
        self.vqgans.len()
    }

    /// Number of columns (perceptor entries).
    pub fn cols(&self) -> usize {
        self.perceptors.len()
    }

    /// Every cell, row by row (stable: the order of the lists).
    pub fn cells(&self) -> Vec<Cell> {
        let cols = self.cols();
        let mut out = Vec::with_capacity(self.rows() * cols);
        for (row, vqgan) in self.vqgans.iter().enumerate() {
            for (col, entry) in self.perceptors.iter().enumerate() {
                let name = format!(
                    "{}__{}",
                    safe_name(&vqgan_label(vqgan)),
                    safe_name(&perceptor_label(entry))
                );
                out.push(Cell {
                    index: row * cols + col,
                    row,
                    col,
                    vqgan: vqgan.clone(),
                    perceptors: entry.clone(),
                    name,
                });
            }
        }
        out
    }

    /// The largest VQGAN downsampling factor of the grid: frame sizes are
    /// rounded down to it so every cell renders the same size.
    pub fn size_factor(&self) -> u32 {
        self.vqgans
            .iter()
            .filter_map(|v| vqgan_choice(v).ok())
            .map(|m| m.factor())
            .max()
            .unwrap_or(16)
    }

    /// The scene of one cell: the VQGAN, perceptors and `file_namespace`
    /// (the cell's folder name) replaced, width and height rounded down to
    /// [`GridSpec::size_factor`] (with a warning when that changes them) so
    /// all cells share one frame size. Seed, prompts and schedule are the
    /// scene's own, so the cells differ only in the models.
    pub fn cell_scene(&self, scene: &Scene, cell: &Cell) -> Result<Scene> {
        if scene.image.image_model != ImageModel::Vqgan {
            return Err(Error::input(format!(
                "{}: the grid compares VQGAN models, but the scene sets image_model = \
                 \"{}\"; set image_model = \"VQGAN\"",
                scene.origin,
                scene.image.image_model.name()
            )));
        }
        let mut s = scene.clone();
        s.image.vqgan_model = vqgan_choice(&cell.vqgan)?;
        s.guidance.perceptors = cell.perceptors.clone();
        s.output.file_namespace = cell.name.clone();
        let f = self.size_factor();
        for (key, v) in [
            ("width", &mut s.image.width),
            ("height", &mut s.image.height),
        ] {
            if *v % f != 0 {
                let r = *v / f * f;
                if r == 0 {
                    return Err(Error::input(format!(
                        "{}: {key} {v} is smaller than {f}, the largest VQGAN factor in this \
                         grid; use at least {f}",
                        scene.origin
                    )));
                }
                s.warnings.push(format!(
                    "{key} {v} rounded down to {r} so that every VQGAN of the grid (factor \
                     {f}) renders the same size"
                ));
                *v = r;
            }
        }
        Ok(s)
    }
}

/// The scene's `vqgan_model` value for a grid row: a named model, or another
/// file whose factor is read from its shapes (the file must exist by then;
/// `run_grid` reports missing weights before any cell renders).
fn vqgan_choice(name: &str) -> Result<VqganChoice> {
    let canon = canonical_vqgan(name)?;
    if let Some((_, m)) = VqganModel::ALL.iter().find(|(n, _)| *n == canon) {
        return Ok(VqganChoice::Named(*m));
    }
    let path = if is_path_entry(&canon) {
        PathBuf::from(&canon)
    } else {
        weights::resolve(ModelKind::Vqgan, &canon)?
    };
    let shapes = weights::read_shapes(&path)?;
    let config = VqganConfig::infer_from(&shapes, &path.display().to_string())?;
    Ok(VqganChoice::Other {
        name: canon,
        factor: config.factor() as u32,
        gumbel: config.is_gumbel(),
    })
}

/// `--shard I/N`: this process renders the cells whose index is `I` modulo
/// `N`. The choice depends only on the cell order, so every process of a job
/// array agrees on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard index, below `count`.
    pub index: u32,
    /// Number of shards, at least 1.
    pub count: u32,
}

impl Shard {
    /// Parses `I/N` (e.g. `0/4`, as `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`).
    pub fn parse(text: &str) -> Result<Shard> {
        let syntax = || {
            Error::input(format!(
                "--shard \"{text}\": expected I/N with whole numbers, 0 ≤ I < N, e.g. --shard 0/4 \
                 (the first of four shards)"
            ))
        };
        let (i, n) = text.trim().split_once('/').ok_or_else(syntax)?;
        let index: u32 = i.trim().parse().map_err(|_| syntax())?;
        let count: u32 = n.trim().parse().map_err(|_| syntax())?;
        Shard::new(index, count)
    }

    /// Checks `index < count` and `count ≥ 1`.
    pub fn new(index: u32, count: u32) -> Result<Shard> {
        if count == 0 {
            return Err(Error::input(
                "--shard I/0: the number of shards must be at least 1",
            ));
        }
        if index >= count {
            return Err(Error::input(format!(
                "--shard {index}/{count}: the shard index must be below the number of shards \
                 (0 to {}); shards are numbered from 0, like SLURM_ARRAY_TASK_ID with \
                 --array=0-{}",
                count - 1,
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// Whether the cell with this index belongs to the shard.
    pub fn contains(&self, cell_index: usize) -> bool {
        cell_index % self.count as usize == self.index as usize
    }
}

/// How far a cell's folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellStatus {
    /// No folder, or no first frame in it.
    Missing,
    /// Frames `1..=frames_done` exist (consecutively), the cell is not complete.
    Partial { frames_done: u64 },
    /// Every frame and the MP4 are there (or the marker says so).
    Complete,
}

/// The `complete` marker's content.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    cell: String,
    frames: u64,
}

/// Number of consecutive frames `1, 2, …` present in `dir` (at most `limit`).
pub fn frames_done(dir: &Path, limit: u64) -> u64 {
    let mut k = 0;
    while k < limit && dir.join(frame_file_name(k as usize + 1)).is_file() {
        k += 1;
    }
    k
}

/// Reads a cell's folder: see [`CellStatus`]. `frames` is the scene's frame
/// count ([`Timeline::frames`]).
pub fn cell_status(out_dir: &Path, cell: &Cell, frames: u64) -> CellStatus {
    let dir = cell.dir(out_dir);
    if !dir.is_dir() {
        return CellStatus::Missing;
    }
    if let Ok(text) = fs::read_to_string(dir.join(COMPLETE_MARKER)) {
        if let Ok(m) = serde_json::from_str::<Marker>(&text) {
            if m.frames == frames && m.cell == cell.name {
                return CellStatus::Complete;
            }
        }
    }
    let done = frames_done(&dir, frames);
    if done == frames && cell.video_path(out_dir).is_file() {
        CellStatus::Complete
    } else if done == 0 {
        CellStatus::Missing
    } else {
        CellStatus::Partial { frames_done: done }
    }
}

/// Options of [`run_grid`] beyond the spec.
#[derive(Debug, Clone, Default)]
pub struct GridOptions {
    /// Render only this shard's cells.
    pub shard: Option<Shard>,
    /// Frames (1-based) for contact sheets; `None`: first, middle and last.
    pub sheets: Option<Vec<u64>>,
    /// Show a progress bar over the cells on a terminal, and a line per cell
    /// on stderr (also when it is a log file).
    pub progress: bool,
    /// Rank the cells with this perceptor at the end (`--judge`): every
    /// complete cell is scored, `scores.csv` written and the viewer shows
    /// the scores ([`judge`]).
    pub judge: Option<judge::Judge>,
}

/// What happened to one cell in a [`run_grid`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellOutcome {
    /// Complete before this run; not rendered again.
    AlreadyComplete,
    /// Rendered from the start.
    Rendered,
    /// Continued after `frames_done` frames.
    Resumed { frames_done: u64 },
    /// Belongs to another shard; left alone.
    OtherShard,
}

/// A cell with its outcome.
#[derive(Debug, Clone)]
pub struct CellReport {
    pub cell: Cell,
    pub outcome: CellOutcome,
}

/// The result of [`run_grid`].
#[derive(Debug, Clone)]
pub struct GridReport {
    /// Every cell of the grid, in order.
    pub cells: Vec<CellReport>,
    /// The comparison outputs written at the end.
    pub outputs: assemble::Outputs,
}

/// Checks a cell's weights: `(perceptors, vqgan)` → one message per missing
/// or unusable weights file (empty when all are present).
pub type CheckWeights<'a> = &'a dyn Fn(&[String], &str) -> Vec<String>;

/// Renders one cell: `(cell scene, cell folder, resume)`. The callback must
/// render into exactly that folder (the scene's `file_namespace` is the
/// folder's name): with `resume = false` from the start, replacing whatever
/// the folder holds; with `resume = true` continuing after the frames
/// present. It returns once every frame and `<cell>/<cell>.mp4` are written.
pub type RenderCell<'a> = &'a mut dyn FnMut(&Scene, &Path, bool) -> Result<()>;

/// Loads the grid's scene and the per-grid numbers every step needs.
struct Prepared {
    scene: Scene,
    cells: Vec<Cell>,
    frames: u64,
    timeline: Timeline,
}

fn prepare(scene_path: &Path, spec: &GridSpec) -> Result<Prepared> {
    let scene = Scene::load_with(scene_path, &crate::models::WeightsLookup)?;
    let cells = spec.cells();
    // The timeline does not depend on the models; any cell's scene gives it.
    let first = spec.cell_scene(&scene, &cells[0])?;
    let timeline = Timeline::new(&first)?;
    crate::render::preflight::check(&first, &timeline)?;
    for w in &first.warnings {
        eprintln!("warning: {w}");
    }
    let frames = timeline.frames();
    Ok(Prepared {
        scene,
        cells,
        frames,
        timeline,
    })
}

/// What this run does with each cell: skips those of other shards and the
/// complete ones, renders the missing and resumes the partial ones.
fn plan_cells(prep: &Prepared, out_dir: &Path, opts: &GridOptions) -> Vec<(usize, CellOutcome)> {
    let mut plan: Vec<(usize, CellOutcome)> = Vec::new();
    for cell in &prep.cells {
        let outcome = if opts.shard.is_some_and(|s| !s.contains(cell.index)) {
            CellOutcome::OtherShard
        } else {
            match cell_status(out_dir, cell, prep.frames) {
                CellStatus::Complete => CellOutcome::AlreadyComplete,
                CellStatus::Missing => CellOutcome::Rendered,
                CellStatus::Partial { frames_done } => CellOutcome::Resumed { frames_done },
            }
        };
        plan.push((cell.index, outcome));
    }
    plan
}

/// Fails with one error listing every weights file missing for the cells
/// still to render.
fn check_all_weights(
    prep: &Prepared,
    plan: &[(usize, CellOutcome)],
    check_weights: CheckWeights<'_>,
) -> Result<()> {
    let mut missing: Vec<String> = Vec::new();
    for (i, outcome) in plan {
        if matches!(outcome, CellOutcome::Rendered | CellOutcome::Resumed { .. }) {
            let cell = &prep.cells[*i];
            for m in check_weights(&cell.perceptors, &cell.vqgan) {
                if !missing.contains(&m) {
                    missing.push(m);
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::weights(format!(
            "the grid cannot start: {} weights file{} missing or unusable:\n  - {}\nNothing \
             was rendered; provide the weights (`zoetrope weights fetch NAME`) and run the \
             grid again",
            missing.len(),
            if missing.len() == 1 { " is" } else { "s are" },
            missing.join("\n  - ")
        )));
    }
    Ok(())
}

/// The progress bar over the `len` cells to render (hidden unless asked).
fn cells_bar(len: usize, progress: bool) -> Result<ProgressBar> {
    let bar = if progress {
        ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("grid {bar:30} {pos}/{len} cells {wide_msg}")
            .map_err(|e| Error::internal(format!("progress bar template: {e}")))?,
    );
    Ok(bar)
}

/// The line announcing the `n`-th of `count` cells to render.
fn cell_line((n, count): (usize, usize), outcome: CellOutcome, cell: &Cell, dir: &Path) -> String {
    let what = match outcome {
        CellOutcome::Resumed { frames_done } => {
            format!("resuming after frame {frames_done}")
        }
        _ => "rendering".to_string(),
    };
    format!("[{n}/{count}] {what} {} → {}", cell.label(), dir.display())
}

/// Prints `line` above the progress bar (when progress is shown).
fn announce(bar: &ProgressBar, progress: bool, line: String) {
    if progress {
        // Off a terminal (batch logs) the bar is hidden and drops its
        // lines; the log should still say which cell is rendering.
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    }
}

/// Checks that the render left every frame and the MP4 in the cell's folder
/// `dir`, then writes its `complete` marker.
fn finish_cell(cell: &Cell, dir: &Path, out_dir: &Path, frames: u64) -> Result<()> {
    let done = frames_done(dir, frames);
    if done != frames || !cell.video_path(out_dir).is_file() {
        return Err(Error::internal(format!(
            "the render of grid cell {} returned without finishing it: {} holds {done} of \
             {} frames{}",
            cell.name,
            dir.display(),
            frames,
            if cell.video_path(out_dir).is_file() {
                ""
            } else {
                " and no MP4"
            }
        )));
    }
    crate::output::write_json_atomic(
        &dir.join(COMPLETE_MARKER),
        &Marker {
            cell: cell.name.clone(),
            frames,
        },
    )?;
    Ok(())
}

/// Creates the `what` folder `dir` (and its parents).
fn create_folder(dir: &Path, what: &str) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| {
        Error::io(
            format!("could not create the {what} folder {}", dir.display()),
            e,
        )
    })
}

/// Renders the grid (or this shard of it) and rebuilds the comparison
/// outputs.
///
/// 1. Loads the scene (and opens the files it names), works out each cell's
///    status from its folder.
/// 2. Calls `check_weights` for every cell still to render and fails with
///    one [`Error::weights`] listing every missing file, before rendering
///    anything.
/// 3. Renders the missing cells and resumes the partial ones through
///    `render_cell`, skipping complete ones, with a progress bar over the
///    cells. After each cell it checks the folder, writes the `complete`
///    marker and refreshes `index.html` and the contact sheets.
/// 4. Rebuilds `grid.mp4`, the contact sheets and `index.html` from every
///    cell present (other shards' cells included). With a shard, `grid.mp4`
///    is left to [`assemble_grid`] (`--assemble`), run once all shards end.
///
/// A failing cell stops the run with its error (the cells finished so far
/// stay complete; running again continues).
pub fn run_grid(
    scene_path: &Path,
    spec: &GridSpec,
    out_dir: &Path,
    opts: &GridOptions,
    check_weights: CheckWeights<'_>,
    render_cell: RenderCell<'_>,
) -> Result<GridReport> {
    let prep = prepare(scene_path, spec)?;
    prep.scene.check_files()?;
    let scenes: Vec<Scene> = prep
        .cells
        .iter()
        .map(|c| spec.cell_scene(&prep.scene, c))
        .collect::<Result<_>>()?;
    if let Some(sheets) = &opts.sheets {
        assemble::check_sheet_frames(sheets, prep.frames)?;
    }

    // What to do with each cell.
    let plan = plan_cells(&prep, out_dir, opts);

    // Every missing weights file at once.
    check_all_weights(&prep, &plan, check_weights)?;

    create_folder(out_dir, "grid")?;

    let todo: Vec<(usize, CellOutcome)> = plan
        .iter()
        .copied()
        .filter(|(_, o)| matches!(o, CellOutcome::Rendered | CellOutcome::Resumed { .. }))
        .collect();
    let bar = cells_bar(todo.len(), opts.progress)?;
    let sheet_opts = assemble::AssembleOptions {
        sheets: opts.sheets.clone(),
        video: false,
        scores: None,
    };
    for (n, (i, outcome)) in todo.iter().enumerate() {
        let cell = &prep.cells[*i];
        let dir = cell.dir(out_dir);
        create_folder(&dir, "cell")?;
        let resume = matches!(outcome, CellOutcome::Resumed { .. });
        bar.set_message(cell.label());
        announce(
            &bar,
            opts.progress,
            cell_line((n + 1, todo.len()), *outcome, cell, &dir),
        );
        // The render draws its own progress; keep ours out of its way.
        bar.suspend(|| render_cell(&scenes[*i], &dir, resume))
            .map_err(|e| e.context(format!("grid cell {} ({})", cell.name, cell.label())))?;
        finish_cell(cell, &dir, out_dir, prep.frames)?;
        bar.inc(1);
        // Cheap outputs follow every finished cell; the video waits for the end.
        if n + 1 < todo.len() {
            assemble::assemble_prepared(
                out_dir,
                spec,
                &prep.scene,
                &prep.cells,
                prep.frames,
                &sheet_opts,
            )?;
        }
    }
    bar.finish_and_clear();

    // A shard sees only part of the grid, and encoding the video in every
    // shard at once would waste the cluster's time: the assemble step after
    // the last shard builds it.
    let mut outputs = judge_and_assemble(
        &prep,
        spec,
        out_dir,
        assemble::AssembleOptions {
            sheets: opts.sheets.clone(),
            video: opts.shard.is_none(),
            scores: None,
        },
        opts.judge.as_ref(),
        opts.progress,
    )?;
    if let Some(s) = opts.shard {
        outputs.notes.push(format!(
            "shard {}/{}: grid.mp4 is built by `zoetrope grid … --assemble` once every shard has finished",
            s.index, s.count
        ));
    }
    let cells = plan
        .into_iter()
        .map(|(i, outcome)| CellReport {
            cell: prep.cells[i].clone(),
            outcome,
        })
        .collect();
    Ok(GridReport { cells, outputs })
}

/// With a judge: scores every complete cell and writes `scores.csv`
/// ([`judge`]); then rebuilds the comparison outputs with `opts` (and the
/// scores, shown by the viewer).
fn judge_and_assemble(
    prep: &Prepared,
    spec: &GridSpec,
    out_dir: &Path,
    mut opts: assemble::AssembleOptions,
    judge: Option<&judge::Judge>,
    progress: bool,
) -> Result<assemble::Outputs> {
    let mut scores_file = None;
    if let Some(j) = judge {
        let device = crate::render::device::resolve_device(&prep.scene.run.device)?;
        let statuses: Vec<CellStatus> = prep
            .cells
            .iter()
            .map(|c| cell_status(out_dir, c, prep.frames))
            .collect();
        let scores = judge::score_cells(
            j,
            device,
            out_dir,
            &prep.cells,
            &statuses,
            &prep.timeline,
            progress,
        )?;
        scores_file = Some(judge::write_scores(out_dir, &prep.cells, &scores)?);
        opts.scores = Some(scores);
    }
    let mut outputs =
        assemble::assemble_prepared(out_dir, spec, &prep.scene, &prep.cells, prep.frames, &opts)?;
    outputs.scores = scores_file;
    Ok(outputs)
}

/// `--assemble`: rebuilds `grid.mp4`, the contact sheets and `index.html`
/// from the cells present, rendering nothing; [`assemble::Outputs::missing`]
/// lists the cells that are not complete.
pub fn assemble_grid(
    scene_path: &Path,
    spec: &GridSpec,
    out_dir: &Path,
    sheets: Option<Vec<u64>>,
) -> Result<assemble::Outputs> {
    assemble_grid_judged(scene_path, spec, out_dir, sheets, None)
}

/// [`assemble_grid`], and with a judge (`--assemble --judge`) every
/// complete cell scored into `scores.csv` and the viewer first.
pub fn assemble_grid_judged(
    scene_path: &Path,
    spec: &GridSpec,
    out_dir: &Path,
    sheets: Option<Vec<u64>>,
    judge: Option<&judge::Judge>,
) -> Result<assemble::Outputs> {
    let prep = prepare(scene_path, spec)?;
    if !out_dir.is_dir() {
        return Err(Error::new(
            ErrorKind::Input,
            format!(
                "the grid folder {} does not exist; run `zoetrope grid` first (or pass its \
                 folder with --out)",
                out_dir.display()
            ),
        ));
    }
    judge_and_assemble(
        &prep,
        spec,
        out_dir,
        assemble::AssembleOptions {
            sheets,
            video: true,
            scores: None,
        },
        judge,
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names() {
        assert_eq!(safe_name("ViT-L/14@336px"), "ViT-L-14-336px");
        assert_eq!(safe_name("ViT-B/32+RN50"), "ViT-B-32+RN50");
    }
}

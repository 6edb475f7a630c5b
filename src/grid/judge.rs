//! `zoetrope grid --judge PERCEPTOR`: the cells ranked by CLIP.
//!
//! One CLIP model, the *judge*, scores every complete cell's frames against
//! the scene's prompts, the way `zoetrope score` scores images
//! ([`crate::guidance::score::clip_similarities`]: `100 · cos` of the image
//! and text embeddings, the image prepared like OpenAI's `clip.load`
//! preprocessing). Higher is closer to the prompts.
//!
//! What is scored (docs/grid.md, "Ranking the cells"):
//! - Frame `k` is scored against the text prompts that `zoetrope plan` lists
//!   for frame `k` with a positive effective weight (the scene's mean weight
//!   over the frame × the prompt's weight at the frame's start), so during a
//!   cross-fade both scenes' prompts count, each by its share. Image prompts
//!   and prompts with zero or negative weight are left out.
//! - The frame's score is the mean of its prompts' similarities weighted by
//!   those effective weights (the plain mean when every weight is equal; a
//!   text listed twice counts with the sum of its weights).
//! - A cell's `last_frame_score` is the score of the scene's last frame;
//!   its `mean_score` the mean of the scores of all its frames. A frame
//!   without a positive text prompt has no score and is left out of the
//!   mean (`frames_scored` counts the others).
//! - Only complete cells are scored, whoever rendered them (this run, an
//!   earlier one, another shard); the others get a row with empty scores, so
//!   a ranking never mixes finished and unfinished animations.
//!
//! `scores.csv` holds one row per cell, in grid order; see [`write_scores`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tch::Device;

use super::{perceptor_label, Cell, CellStatus};
use crate::guidance::score::clip_similarities;
use crate::models::clip::Clip;
use crate::models::weights::{self, ModelKind};
use crate::output::frames::{frame_file_name, read_rgb, rgb_to_tensor};
use crate::schedule::Timeline;
use crate::{Error, Result};

/// The file the judge writes into the grid folder.
pub const SCORES_FILE: &str = "scores.csv";

/// Frames read and embedded at once.
const BATCH: u64 = 16;

/// The perceptor that ranks the cells, with its weights file resolved and
/// checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judge {
    /// The perceptor as canonically named (`ViT-B/32`, `tiny-clip`) or the
    /// `.safetensors` path as given.
    pub name: String,
    /// Its weights file.
    pub path: PathBuf,
}

impl Judge {
    /// Resolves `--judge NAME`: one perceptor (a name matched like
    /// `--perceptors` entries, or a `.safetensors` path), whose weights file
    /// must exist and hold a CLIP model (its tensor names and shapes are
    /// checked, no weights are loaded). An unknown name is an input error,
    /// a missing or unusable file a weights error; both name `--judge`.
    pub fn resolve(name: &str) -> Result<Judge> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::input(
                "--judge is empty; name one CLIP perceptor to score the cells, e.g. \
                 --judge ViT-B/32",
            ));
        }
        if name.contains(',') || (name.contains('+') && !super::is_path_entry(name)) {
            return Err(Error::input(format!(
                "--judge \"{name}\": the judge is one perceptor (no lists, no `+` \
                 combinations); e.g. --judge ViT-B/32"
            )));
        }
        let canon = super::canonical_perceptor_for(name, "--judge")?;
        let at = |e: Error| e.context(format!("--judge {canon}"));
        let path = weights::resolve(ModelKind::Clip, &canon).map_err(at)?;
        let shapes = weights::read_shapes(&path).map_err(at)?;
        weights::full_clip_check(&shapes)
            .map_err(|e| e.context(format!("{} is not a usable CLIP model", path.display())))
            .map_err(at)?;
        Ok(Judge { name: canon, path })
    }

    /// The judge as shown in `scores.csv` and the viewer (a path by its
    /// file stem).
    pub fn label(&self) -> String {
        perceptor_label(std::slice::from_ref(&self.name))
    }
}

/// One cell's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellScore {
    /// Frames with a score (those with at least one positive text prompt).
    pub frames_scored: u64,
    /// The score of the scene's last frame (`None`: it has no positive text
    /// prompt).
    pub last_frame: Option<f64>,
    /// The mean score over the scored frames.
    pub mean: Option<f64>,
}

/// Every cell's scores under one judge, in grid order (`None`: the cell is
/// not complete and was not scored).
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// The judge's label ([`Judge::label`]).
    pub judge: String,
    /// The cells' statuses when scored, in grid order.
    pub statuses: Vec<CellStatus>,
    pub cells: Vec<Option<CellScore>>,
}

/// The text prompts that score frame `k` (1-based), with their effective
/// weights: those `plan` lists for the frame with a weight above zero; a
/// text listed more than once gets the sum of its weights.
pub fn frame_prompts(timeline: &Timeline, k: u64) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for p in timeline.frame_plan(k).prompts {
        if p.kind != "text" || p.weight <= 0.0 || p.weight.is_nan() {
            continue;
        }
        match out.iter_mut().find(|(t, _)| *t == p.text) {
            Some((_, w)) => *w += p.weight,
            None => out.push((p.text, p.weight)),
        }
    }
    out
}

/// The weighted mean `Σ wᵢ·sᵢ / Σ wᵢ`; `None` without weights.
pub fn weighted_mean(pairs: impl IntoIterator<Item = (f64, f64)>) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for (w, s) in pairs {
        num += w * s;
        den += w;
    }
    (den > 0.0).then(|| num / den)
}

/// Scores one complete cell's frames in `dir` (see the module documentation).
pub fn score_cell(clip: &Clip, dir: &Path, timeline: &Timeline) -> Result<CellScore> {
    let frames = timeline.frames();
    let (mut sum, mut scored, mut last) = (0.0, 0u64, None);
    let mut start = 1;
    while start <= frames {
        let end = (start + BATCH - 1).min(frames);
        let prompts: Vec<Vec<(String, f64)>> =
            (start..=end).map(|k| frame_prompts(timeline, k)).collect();
        let mut texts: Vec<&str> = Vec::new();
        for (t, _) in prompts.iter().flatten() {
            if !texts.contains(&t.as_str()) {
                texts.push(t);
            }
        }
        let (mut ks, mut images) = (Vec::new(), Vec::new());
        for (k, p) in (start..=end).zip(&prompts) {
            if !p.is_empty() {
                let path = dir.join(frame_file_name(k as usize));
                images.push(rgb_to_tensor(&read_rgb(&path)?)?);
                ks.push((k, p));
            }
        }
        let sims = clip_similarities(clip, &images, &texts)?;
        for ((k, p), row) in ks.into_iter().zip(sims) {
            let score = weighted_mean(p.iter().map(|(text, w)| {
                let i = texts.iter().position(|t| *t == text.as_str()).unwrap_or(0);
                (*w, row[i])
            }));
            if let Some(s) = score {
                sum += s;
                scored += 1;
                if k == frames {
                    last = Some(s);
                }
            }
        }
        start = end + 1;
    }
    Ok(CellScore {
        frames_scored: scored,
        last_frame: last,
        mean: (scored > 0).then(|| sum / scored as f64),
    })
}

/// Scores every complete cell of the grid in `out_dir` with `judge` on
/// `device`; `statuses` are the cells' statuses, in grid order. The judge
/// is loaded only when a cell is complete. With `progress`, a line per cell
/// goes to stderr.
pub fn score_cells(
    judge: &Judge,
    device: Device,
    out_dir: &Path,
    cells: &[Cell],
    statuses: &[CellStatus],
    timeline: &Timeline,
    progress: bool,
) -> Result<Scores> {
    let mut clip: Option<Clip> = None;
    let mut out = Vec::with_capacity(cells.len());
    let complete = statuses
        .iter()
        .filter(|s| **s == CellStatus::Complete)
        .count();
    let mut n = 0;
    for (cell, st) in cells.iter().zip(statuses) {
        if *st != CellStatus::Complete {
            out.push(None);
            continue;
        }
        n += 1;
        if progress {
            eprintln!(
                "[{n}/{complete}] judging {} with {}",
                cell.label(),
                judge.label()
            );
        }
        if clip.is_none() {
            clip = Some(Clip::load(&judge.path, device).map_err(|e| e.context("--judge"))?);
        }
        let model = clip
            .as_ref()
            .ok_or_else(|| Error::internal("judge not loaded"))?;
        let s = score_cell(model, &cell.dir(out_dir), timeline)
            .map_err(|e| e.context(format!("judging grid cell {}", cell.name)))?;
        out.push(Some(s));
    }
    Ok(Scores {
        judge: judge.label(),
        statuses: statuses.to_vec(),
        cells: out,
    })
}

/// The header of `scores.csv`.
pub const CSV_HEADER: &str =
    "cell,vqgan,perceptors,judge,status,frames_scored,last_frame_score,mean_score";

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A score as written: four decimals; empty when there is none.
pub fn format_score(s: Option<f64>) -> String {
    s.map(|v| format!("{v:.4}")).unwrap_or_default()
}

/// A cell's status as `scores.csv` names it: `complete`, `partial` or
/// `not rendered`.
pub fn status_name(st: &CellStatus) -> &'static str {
    match st {
        CellStatus::Complete => "complete",
        CellStatus::Partial { .. } => "partial",
        CellStatus::Missing => "not rendered",
    }
}

/// The text of `scores.csv`: [`CSV_HEADER`], then one row per cell in grid
/// order; a cell that is not complete has empty scores and
/// `frames_scored` 0.
pub fn scores_csv(cells: &[Cell], scores: &Scores) -> String {
    let mut text = format!("{CSV_HEADER}\n");
    for ((cell, st), s) in cells.iter().zip(&scores.statuses).zip(&scores.cells) {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{},{},{}",
            csv_field(&cell.name),
            csv_field(&super::vqgan_label(&cell.vqgan)),
            csv_field(&cell.perceptor_label()),
            csv_field(&scores.judge),
            status_name(st),
            s.map_or(0, |s| s.frames_scored),
            format_score(s.and_then(|s| s.last_frame)),
            format_score(s.and_then(|s| s.mean)),
        );
    }
    text
}

/// Writes `scores.csv` into the grid folder atomically; returns its path.
pub fn write_scores(out_dir: &Path, cells: &[Cell], scores: &Scores) -> Result<PathBuf> {
    let path = out_dir.join(SCORES_FILE);
    crate::atomic::write_atomic(&path, scores_csv(cells, scores).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_means() {
        assert_eq!(weighted_mean([]), None);
        assert_eq!(weighted_mean([(0.0, 5.0)]), None);
        assert_eq!(weighted_mean([(1.0, 10.0), (1.0, 20.0)]), Some(15.0));
        assert_eq!(weighted_mean([(3.0, 10.0), (1.0, 30.0)]), Some(15.0));
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("imagenet"), "imagenet");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(format_score(None), "");
        assert_eq!(format_score(Some(23.456789)), "23.4568");
    }

    #[test]
    fn frame_prompts_follow_the_plan() {
        let scene = crate::scene::Scene::from_str(
            "scenes = \"a:3 | b | c:-1 || d | b\"\nsteps_per_scene = 4\nsteps_per_frame = 2\n\
             interpolation_steps = 4\nseed = 1\n",
            "t.toml",
        )
        .unwrap();
        let tl = Timeline::new(&scene).unwrap();
        assert_eq!(tl.frames(), 4);
        // Frame 1: steps 0..2, the fade-in half of scene 0 has not begun:
        // scene 0 only; c (negative) is left out.
        assert_eq!(
            frame_prompts(&tl, 1),
            vec![("a".to_string(), 3.0), ("b".to_string(), 1.0)]
        );
        // Frame 2: steps 2..4, scene 0 fades out, scene 1 in (centered):
        // weights 0.75 and 0.25 on average; b is in both scenes.
        let f2 = frame_prompts(&tl, 2);
        let w = tl.frame_scene_weights(2);
        assert_eq!(f2.len(), 3);
        assert_eq!(f2[0], ("a".to_string(), 3.0 * w[0]));
        assert_eq!(f2[1], ("b".to_string(), w[0] + w[1]));
        assert_eq!(f2[2], ("d".to_string(), w[1]));
    }
}

//! The grid's comparison outputs, rebuilt from whatever cells exist:
//!
//! - `grid.mp4`: every cell tiled (rows = VQGANs, columns = perceptors),
//!   frame by frame in sync, each tile under a label naming its
//!   combination; a cell without that frame shows as a dark tile with its
//!   label.
//! - `grid_frame_NNNNN.png`: the same mosaic for chosen frames (contact
//!   sheets; default the first, middle and last frame).
//! - `index.html`: an offline viewer (pick a VQGAN and a perceptor, play,
//!   pause and step through the frames, read the settings). It works from
//!   `file://` with no server: frames are relative paths
//!   `<cell>/frame_NNNNN.png`, the cells' settings are embedded as JSON,
//!   the script is plain JavaScript and nothing external is loaded.
//!   `index.html?selftest=1` switches the selectors, steps a frame, waits
//!   for the image and writes `SELFTEST OK` or `SELFTEST FAIL: …` into the
//!   page (the browser test reads it back with headless Chromium).
//!   The page is built from `assets/grid/` (the `index.html` template,
//!   `viewer.css`, `errors.js`, `viewer.js`), included at build time and
//!   filled in one pass by `template::fill`.
//!
//! Everything depends only on the cells' files, the scene and the spec (no
//! dates, no absolute paths), so rebuilding from the same cells gives the
//! same bytes, whichever process renders which cell. Files are written under
//! a temporary name unique to host and process, then renamed, so shards
//! sharing a folder can rebuild at the same time.

use std::fs;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use serde::Serialize;
use serde_json::Value;

use super::font;
use super::judge::{format_score, Scores};
use super::template;
use super::{cell_status, frames_done, Cell, CellStatus, GridSpec};
use crate::output::frames::{frame_file_name, read_rgb, write_png_atomic};
use crate::scene::Scene;
use crate::{Error, Result};

/// Largest mosaic side: bigger grids are drawn with smaller tiles, keeping
/// the video within what H.264 players handle.
pub const MAX_MOSAIC_SIDE: u32 = 4096;
/// Pixels between tiles.
pub const GAP: u32 = 2;

const BACKGROUND: Rgb<u8> = Rgb([48, 48, 48]);
const LABEL_BG: Rgb<u8> = Rgb([16, 16, 16]);
const LABEL_FG: Rgb<u8> = Rgb([236, 236, 236]);
const MISSING_BG: Rgb<u8> = Rgb([28, 28, 28]);
const MISSING_FG: Rgb<u8> = Rgb([120, 120, 120]);

/// What to rebuild.
#[derive(Debug, Clone, Default)]
pub struct AssembleOptions {
    /// Contact sheet frames (1-based); `None`: first, middle and last.
    pub sheets: Option<Vec<u64>>,
    /// Also encode `grid.mp4` (the slow part).
    pub video: bool,
    /// The judge's scores (`--judge`): shown per cell, with a ranking the
    /// viewer can sort. `None` leaves the page exactly as without a judge.
    pub scores: Option<Scores>,
}

/// What [`assemble_prepared`] wrote.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// `grid.mp4`, when written.
    pub video: Option<PathBuf>,
    /// The contact sheets written.
    pub sheets: Vec<PathBuf>,
    /// `index.html`.
    pub index: PathBuf,
    /// Cells that are not complete: `name (label): status`.
    pub missing: Vec<String>,
    /// Things the user should know (outputs skipped and why).
    pub notes: Vec<String>,
    /// `scores.csv`, when a judge scored the cells.
    pub scores: Option<PathBuf>,
}

/// The mosaic's geometry: tiles of `tile_w × tile_h` under a label bar of
/// `label_h`, `GAP` pixels apart; the whole is `width × height` (even, as
/// yuv420p needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub rows: u32,
    pub cols: u32,
    pub tile_w: u32,
    pub tile_h: u32,
    /// Font scale of the labels.
    pub font_scale: u32,
    pub label_h: u32,
    pub width: u32,
    pub height: u32,
}

impl Layout {
    /// The layout for `rows × cols` frames of `frame_w × frame_h`, shrinking
    /// the tiles when the mosaic would exceed [`MAX_MOSAIC_SIDE`].
    pub fn new(rows: u32, cols: u32, frame_w: u32, frame_h: u32) -> Layout {
        let (mut tw, mut th) = (frame_w.max(1), frame_h.max(1));
        loop {
            let l = Self::exact(rows, cols, tw, th);
            if (l.width <= MAX_MOSAIC_SIDE && l.height <= MAX_MOSAIC_SIDE) || (tw <= 16 || th <= 16)
            {
                return l;
            }
            let f = (MAX_MOSAIC_SIDE as f64 / l.width as f64)
                .min(MAX_MOSAIC_SIDE as f64 / l.height as f64)
                * 0.98;
            tw = ((tw as f64 * f) as u32).max(16);
            th = ((th as f64 * f) as u32).max(16);
        }
    }

    fn exact(rows: u32, cols: u32, tile_w: u32, tile_h: u32) -> Layout {
        let font_scale = (tile_w / 128).clamp(1, 3);
        // Two lines of text (VQGAN, perceptors) with a margin around each.
        let label_h = font_scale * (2 + font::GLYPH_H + 2 + font::GLYPH_H + 2);
        let even = |v: u32| v + v % 2;
        let width = even(cols * tile_w + (cols - 1) * GAP);
        let height = even(rows * (label_h + tile_h) + (rows - 1) * GAP);
        Layout {
            rows,
            cols,
            tile_w,
            tile_h,
            font_scale,
            label_h,
            width,
            height,
        }
    }

    /// Top-left corner of a cell's label bar; its image starts `label_h` below.
    pub fn tile_origin(&self, row: u32, col: u32) -> (u32, u32) {
        (
            col * (self.tile_w + GAP),
            row * (self.label_h + self.tile_h + GAP),
        )
    }
}

/// First, middle and last frame (deduplicated) of an `n`-frame animation.
pub fn default_sheet_frames(n: u64) -> Vec<u64> {
    let mut v = vec![1, n.div_ceil(2).max(1), n.max(1)];
    v.dedup();
    v
}

/// Checks `--sheets` frames against the scene's frame count.
pub fn check_sheet_frames(sheets: &[u64], frames: u64) -> Result<()> {
    if sheets.is_empty() {
        return Err(Error::input(
            "--sheets is empty; give frame numbers such as --sheets 1,20,40",
        ));
    }
    if let Some(bad) = sheets.iter().find(|k| **k == 0 || **k > frames) {
        return Err(Error::input(format!(
            "--sheets {bad}: the scene has {frames} frames, numbered 1 to {frames}"
        )));
    }
    Ok(())
}

/// Parses `--sheets 1,20,40`.
pub fn parse_sheet_list(text: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let k: u64 = item.trim().parse().map_err(|_| {
            Error::input(format!(
                "--sheets \"{text}\": \"{}\" is not a frame number; give 1-based frame \
                 numbers separated by commas, e.g. --sheets 1,20,40",
                item.trim()
            ))
        })?;
        if !out.contains(&k) {
            out.push(k);
        }
    }
    Ok(out)
}

/// File name of the contact sheet of frame `k`: `grid_frame_00001.png`.
pub fn sheet_file_name(k: u64) -> String {
    format!("grid_{}", frame_file_name(k as usize))
}

/// Draws the mosaic of frame `k` (1-based) from the cells' folders.
pub fn mosaic(layout: &Layout, cells: &[Cell], out_dir: &Path, k: u64) -> Result<RgbImage> {
    let mut img = RgbImage::from_pixel(layout.width, layout.height, BACKGROUND);
    let s = layout.font_scale;
    for cell in cells {
        let (x0, y0) = layout.tile_origin(cell.row as u32, cell.col as u32);
        fill(&mut img, x0, y0, layout.tile_w, layout.label_h, LABEL_BG);
        let pad = 2 * s as i64;
        let max_w = layout.tile_w.saturating_sub(4 * s);
        let line2 = (2 + font::GLYPH_H + 2) as i64 * s as i64;
        font::draw_text(
            &mut img,
            x0 as i64 + pad,
            y0 as i64 + pad,
            &font::fit_text(&cell.vqgan, max_w, s),
            s,
            LABEL_FG,
        );
        font::draw_text(
            &mut img,
            x0 as i64 + pad,
            y0 as i64 + line2,
            &font::fit_text(&cell.perceptor_label(), max_w, s),
            s,
            LABEL_FG,
        );
        let iy = y0 + layout.label_h;
        let path = cell.dir(out_dir).join(frame_file_name(k as usize));
        if path.is_file() {
            let frame = read_rgb(&path)?;
            let frame = if frame.dimensions() == (layout.tile_w, layout.tile_h) {
                frame
            } else {
                image::imageops::resize(&frame, layout.tile_w, layout.tile_h, FilterType::Triangle)
            };
            image::imageops::replace(&mut img, &frame, x0 as i64, iy as i64);
        } else {
            fill(&mut img, x0, iy, layout.tile_w, layout.tile_h, MISSING_BG);
            let text = font::fit_text(&format!("no frame {k}"), max_w, s);
            let tx = x0 as i64 + (layout.tile_w as i64 - font::text_width(&text, s) as i64) / 2;
            let ty = iy as i64 + (layout.tile_h as i64 - (font::GLYPH_H * s) as i64) / 2;
            font::draw_text(&mut img, tx, ty, &text, s, MISSING_FG);
        }
    }
    Ok(img)
}

fn fill(img: &mut RgbImage, x0: u32, y0: u32, w: u32, h: u32, c: Rgb<u8>) {
    for y in y0..(y0 + h).min(img.height()) {
        for x in x0..(x0 + w).min(img.width()) {
            img.put_pixel(x, y, c);
        }
    }
}

/// Rebuilds the comparison outputs; see the module documentation. `scene`
/// is the grid's scene as loaded and `frames` its frame count.
pub fn assemble_prepared(
    out_dir: &Path,
    spec: &GridSpec,
    scene: &Scene,
    cells: &[Cell],
    frames: u64,
    opts: &AssembleOptions,
) -> Result<Outputs> {
    let sheet_frames = match &opts.sheets {
        Some(s) => {
            check_sheet_frames(s, frames)?;
            s.clone()
        }
        None => default_sheet_frames(frames),
    };
    let first_scene = spec.cell_scene(scene, &cells[0])?;
    let frame_w = first_scene.image.width * first_scene.image.pixel_size.max(1);
    let frame_h = first_scene.image.height * first_scene.image.pixel_size.max(1);
    let layout = Layout::new(spec.rows() as u32, spec.cols() as u32, frame_w, frame_h);

    let statuses: Vec<CellStatus> = cells
        .iter()
        .map(|c| cell_status(out_dir, c, frames))
        .collect();
    let mut outputs = Outputs {
        index: out_dir.join("index.html"),
        ..Outputs::default()
    };
    for (c, st) in cells.iter().zip(&statuses) {
        match st {
            CellStatus::Complete => {}
            CellStatus::Missing => {
                outputs
                    .missing
                    .push(format!("{} ({}): not rendered", c.name, c.label()))
            }
            CellStatus::Partial { frames_done } => outputs.missing.push(format!(
                "{} ({}): {frames_done} of {frames} frames",
                c.name,
                c.label()
            )),
        }
    }
    let any_frames = statuses.iter().any(|s| *s != CellStatus::Missing);

    if any_frames {
        if opts.video {
            write_video(out_dir, spec, scene, cells, frames, &layout, &mut outputs)?;
        }
        for k in &sheet_frames {
            let path = out_dir.join(sheet_file_name(*k));
            let img = mosaic(&layout, cells, out_dir, *k)?;
            write_png_atomic(&path, &img)?;
            outputs.sheets.push(path);
        }
    } else {
        outputs.notes.push(
            "no cell has frames yet, so grid.mp4 and the contact sheets were not built".into(),
        );
    }

    let mut data = view_data(out_dir, spec, scene, cells, &statuses, frames, &layout)?;
    if let Some(scores) = &opts.scores {
        add_scores(&mut data, scores);
    }
    let html = index_html(&data, &layout)?;
    crate::atomic::write_atomic(&outputs.index, html.as_bytes())?;
    Ok(outputs)
}

#[cfg(feature = "video")]
fn write_video(
    out_dir: &Path,
    spec: &GridSpec,
    scene: &Scene,
    cells: &[Cell],
    frames: u64,
    layout: &Layout,
    outputs: &mut Outputs,
) -> Result<()> {
    use crate::output::video::Mp4Writer;
    let path = out_dir.join("grid.mp4");
    let tmp = crate::atomic::temp_path(&path, ".mp4")?;
    let comment = format!(
        "zoetrope grid: rows = VQGAN ({}), columns = perceptors ({})",
        spec.vqgans.join(", "),
        spec.perceptors
            .iter()
            .map(|p| super::perceptor_label(p))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The scene's soundtrack (docs/design.md §12), cut to the grid's frames.
    let soundtrack = scene.audio.reactivity().map(|a| a.soundtrack());
    let mut writer = Mp4Writer::create_with_soundtrack(
        &tmp,
        layout.width,
        layout.height,
        scene.timing.frames_per_second,
        &[("comment", &comment), ("title", "zoetrope grid")],
        soundtrack.as_ref(),
    )?;
    let part = writer.part_path().to_path_buf();
    let encoded = (|| -> Result<PathBuf> {
        for k in 1..=frames {
            writer.push_frame(&mosaic(layout, cells, out_dir, k)?)?;
        }
        writer.finish()
    })();
    let written = match encoded {
        Ok(p) => p,
        Err(e) => {
            let _ = fs::remove_file(&part);
            return Err(e.context(format!("building {}", path.display())));
        }
    };
    fs::rename(&written, &path).map_err(|e| {
        let _ = fs::remove_file(&written);
        Error::io(format!("could not write {}", path.display()), e)
    })?;
    outputs.video = Some(path);
    Ok(())
}

#[cfg(not(feature = "video"))]
fn write_video(
    _out_dir: &Path,
    _spec: &GridSpec,
    _scene: &Scene,
    _cells: &[Cell],
    _frames: u64,
    _layout: &Layout,
    outputs: &mut Outputs,
) -> Result<()> {
    outputs.notes.push(
        "this build has no video support (built without the `video` feature), so grid.mp4 \
         was not written; run `zoetrope grid --assemble` with a video build"
            .into(),
    );
    Ok(())
}

/// One cell as the viewer sees it.
#[derive(Serialize)]
struct ViewCell {
    name: String,
    vqgan: String,
    perceptor: String,
    label: String,
    row: usize,
    col: usize,
    frames_done: u64,
    complete: bool,
    video: Option<String>,
    settings_file: Option<String>,
    metadata_file: Option<String>,
    /// `settings.toml` as the render wrote it (as JSON), or the planned cell scene.
    settings: Value,
    settings_source: &'static str,
    /// The judge's scores, on judged grids only (absent otherwise, and on
    /// cells that are not complete).
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<ViewScore>,
}

/// A judged cell's scores (see `grid::judge`).
#[derive(Serialize)]
struct ViewScore {
    last_frame: Option<f64>,
    mean: Option<f64>,
    frames_scored: u64,
}

#[derive(Serialize)]
struct ViewSheet {
    frame: u64,
    file: String,
}

#[derive(Serialize)]
struct ViewData {
    title: String,
    frames: u64,
    fps: f64,
    tile_width: u32,
    tile_height: u32,
    vqgans: Vec<String>,
    perceptors: Vec<String>,
    cells: Vec<ViewCell>,
    sheets: Vec<ViewSheet>,
    video: Option<String>,
    /// The judge's label, on judged grids only.
    #[serde(skip_serializing_if = "Option::is_none")]
    judge: Option<String>,
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn rel_if_file(out_dir: &Path, rel: String) -> Option<String> {
    out_dir.join(&rel).is_file().then_some(rel)
}

/// The viewer page's template and assets (`assets/grid/`), built in.
const PAGE_TEMPLATE: &str = include_str!("../../assets/grid/index.html");
const STYLE: &str = include_str!("../../assets/grid/viewer.css");
/// Installed before the viewer script, so that even a failure to parse or
/// start the viewer ends up in the page (`#errors`).
const ERROR_SCRIPT: &str = include_str!("../../assets/grid/errors.js");
/// The viewer script (plain ES5, no external resources).
const SCRIPT: &str = include_str!("../../assets/grid/viewer.js");
/// The ranking's style and script, added on judged grids only.
const RANKING_STYLE: &str = include_str!("../../assets/grid/ranking.css");
const RANKING_SCRIPT: &str = include_str!("../../assets/grid/ranking.js");

/// The viewer page showing `data`; see the module documentation.
fn index_html(data: &ViewData, layout: &Layout) -> Result<String> {
    // `<` never appears raw inside the script element, so no `</script>`
    // in a prompt or path can end it early.
    let json = serde_json::to_string(data)
        .map_err(|e| Error::internal(format!("viewer data as JSON: {e}")))?
        .replace('<', "\\u003c");

    let complete = data.cells.iter().filter(|c| c.complete).count();
    // Small frames are shown enlarged by a whole factor (pixelated).
    let zoom = (VIEW_WIDTH / layout.tile_w.max(1)).clamp(1, 8);
    let (vw, vh) = (layout.tile_w * zoom, layout.tile_h * zoom);
    let view_source = match data.cells.iter().find(|c| c.frames_done >= 1) {
        Some(c) => format!(
            " src=\"{}\"",
            esc(&format!("{}/{}", c.name, frame_file_name(1)))
        ),
        None => " hidden".to_string(),
    };
    let perceptor_headers: String = data
        .perceptors
        .iter()
        .map(|p| format!("<th>{}</th>", esc(p)))
        .collect();
    let mut style = STYLE.strip_suffix('\n').unwrap_or(STYLE).to_string();
    let (ranking, ranking_script) = match &data.judge {
        Some(judge) => {
            style.push_str(RANKING_STYLE.strip_suffix('\n').unwrap_or(RANKING_STYLE));
            (
                ranking(data, judge),
                format!("<script>\n{RANKING_SCRIPT}</script>\n"),
            )
        }
        None => (String::new(), String::new()),
    };
    template::fill(
        PAGE_TEMPLATE,
        &[
            ("title", &esc(&data.title)),
            ("style", &style),
            ("frames", &data.frames.to_string()),
            ("fps", &data.fps.to_string()),
            ("complete", &complete.to_string()),
            ("cell_count", &data.cells.len().to_string()),
            ("view_width", &vw.to_string()),
            ("view_height", &vh.to_string()),
            ("view_source", &view_source),
            ("perceptor_headers", &perceptor_headers),
            ("cell_rows", &cell_rows(data)),
            ("comparison", &comparison(data)),
            ("error_script", ERROR_SCRIPT),
            ("data", &json),
            ("viewer_script", SCRIPT),
            ("ranking", &ranking),
            ("ranking_script", &ranking_script),
        ],
    )
}

/// What the viewer shows, gathered from the cells' folders (embedded in the
/// page as JSON).
fn view_data(
    out_dir: &Path,
    spec: &GridSpec,
    scene: &Scene,
    cells: &[Cell],
    statuses: &[CellStatus],
    frames: u64,
    layout: &Layout,
) -> Result<ViewData> {
    let title = Path::new(&scene.origin)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| scene.origin.clone());
    let view_cells = cells
        .iter()
        .zip(statuses)
        .map(|(cell, st)| view_cell(out_dir, spec, scene, cell, st, frames))
        .collect::<Result<Vec<_>>>()?;
    let sheets: Vec<ViewSheet> = (1..=frames)
        .filter(|k| out_dir.join(sheet_file_name(*k)).is_file())
        .map(|k| ViewSheet {
            frame: k,
            file: sheet_file_name(k),
        })
        .collect();
    Ok(ViewData {
        title,
        frames,
        fps: scene.timing.frames_per_second,
        tile_width: layout.tile_w,
        tile_height: layout.tile_h,
        vqgans: spec.vqgans.clone(),
        perceptors: spec
            .perceptors
            .iter()
            .map(|p| super::perceptor_label(p))
            .collect(),
        cells: view_cells,
        sheets,
        video: rel_if_file(out_dir, "grid.mp4".to_string()),
        judge: None,
    })
}

/// One cell's entry in the viewer data: its progress, its files and its
/// settings (as rendered, else as planned).
fn view_cell(
    out_dir: &Path,
    spec: &GridSpec,
    scene: &Scene,
    cell: &Cell,
    st: &CellStatus,
    frames: u64,
) -> Result<ViewCell> {
    let dir = cell.dir(out_dir);
    let done = match st {
        CellStatus::Complete => frames_done(&dir, frames),
        CellStatus::Partial { frames_done } => *frames_done,
        CellStatus::Missing => 0,
    };
    let settings_file = rel_if_file(out_dir, format!("{}/settings.toml", cell.name));
    let parsed = settings_file
        .as_ref()
        .and_then(|f| fs::read_to_string(out_dir.join(f)).ok())
        .and_then(|t| toml::from_str::<toml::Value>(&t).ok())
        .and_then(|t| serde_json::to_value(t).ok());
    let (settings, settings_source) = match parsed {
        Some(v) => (v, "settings.toml"),
        None => {
            let planned = spec.cell_scene(scene, cell)?;
            let v = serde_json::to_value(&planned)
                .map_err(|e| Error::internal(format!("settings as JSON: {e}")))?;
            (v, "planned (the cell has no settings.toml yet)")
        }
    };
    Ok(ViewCell {
        name: cell.name.clone(),
        vqgan: cell.vqgan.clone(),
        perceptor: cell.perceptor_label(),
        label: cell.label(),
        row: cell.row,
        col: cell.col,
        frames_done: done,
        complete: *st == CellStatus::Complete,
        video: rel_if_file(out_dir, format!("{0}/{0}.mp4", cell.name)),
        settings_file,
        metadata_file: rel_if_file(out_dir, format!("{}/metadata.json", cell.name)),
        settings,
        settings_source,
        score: None,
    })
}

/// The rows of the static cell overview (one per VQGAN), with links to the
/// files that exist.
fn cell_rows(data: &ViewData) -> String {
    let mut h = String::new();
    for (r, v) in data.vqgans.iter().enumerate() {
        h.push_str(&format!("<tr><th>{}</th>", esc(v)));
        for c in data.cells.iter().filter(|c| c.row == r) {
            let state = if c.complete {
                "complete".to_string()
            } else if c.frames_done == 0 {
                "not rendered".to_string()
            } else {
                format!("{} of {} frames", c.frames_done, data.frames)
            };
            h.push_str(&format!(
                "<td><button type=\"button\" class=\"pick\" data-row=\"{}\" data-col=\"{}\">{}</button><br>{}",
                c.row,
                c.col,
                esc(&c.name),
                esc(&state)
            ));
            if data.judge.is_some() {
                h.push_str(&score_line(c.score.as_ref()));
            }
            if let Some(v) = &c.video {
                h.push_str(&format!(" <a href=\"{}\">mp4</a>", esc(v)));
            }
            if let Some(s) = &c.settings_file {
                h.push_str(&format!(" <a href=\"{}\">settings</a>", esc(s)));
            }
            if let Some(m) = &c.metadata_file {
                h.push_str(&format!(" <a href=\"{}\">metadata</a>", esc(m)));
            }
            h.push_str("</td>");
        }
        h.push_str("</tr>\n");
    }
    h
}

/// A score as the page shows it: two decimals, `–` when there is none.
fn shown_score(s: Option<f64>) -> String {
    s.map(|v| format!("{v:.2}"))
        .unwrap_or_else(|| "–".to_string())
}

/// A judged cell's line in the cell overview.
fn score_line(score: Option<&ViewScore>) -> String {
    match score {
        Some(s) => format!(
            "<br><span class=\"score\">score: last frame {}, mean {}</span>",
            shown_score(s.last_frame),
            shown_score(s.mean)
        ),
        None => "<br><span class=\"score\">not scored</span>".to_string(),
    }
}

/// Puts the judge's scores into the viewer data.
fn add_scores(data: &mut ViewData, scores: &Scores) {
    data.judge = Some(scores.judge.clone());
    for (vc, s) in data.cells.iter_mut().zip(&scores.cells) {
        vc.score = s.map(|s| ViewScore {
            last_frame: s.last_frame,
            mean: s.mean,
            frames_scored: s.frames_scored,
        });
    }
}

/// The ranking section of a judged grid: every cell with its scores, in
/// grid order, and the control that sorts them (`assets/grid/ranking.js`).
/// Each row carries its grid index and scores (as in `scores.csv`) for the
/// script.
fn ranking(data: &ViewData, judge: &str) -> String {
    let mut h = format!(
        "<h2>Ranking</h2>\n<p class=\"info\">Scored by {}: a frame's score is 100 × the \
         cosine similarity of the frame and each text prompt of the scene at that frame, \
         averaged with the prompts' weights (higher is closer to the prompts); the mean \
         is over the cell's frames. The numbers are also in \
         <a href=\"{}\">{}</a>.</p>\n",
        esc(judge),
        super::judge::SCORES_FILE,
        super::judge::SCORES_FILE
    );
    h.push_str(
        "<div class=\"controls\"><label>sort by <select id=\"rank-sort\">\
         <option value=\"grid\">grid order</option>\
         <option value=\"last\">last-frame score</option>\
         <option value=\"mean\">mean score</option></select></label></div>\n",
    );
    h.push_str(
        "<table id=\"ranking\">\n<thead><tr><th>#</th><th>cell</th><th>vqgan_model</th>\
         <th>perceptors</th><th>last-frame score</th><th>mean score</th>\
         <th>frames scored</th></tr></thead>\n<tbody>\n",
    );
    for (i, c) in data.cells.iter().enumerate() {
        let s = c.score.as_ref();
        let last = s.and_then(|s| s.last_frame);
        let mean = s.and_then(|s| s.mean);
        h.push_str(&format!(
            "<tr data-index=\"{i}\" data-cell=\"{}\" data-last=\"{}\" data-mean=\"{}\">\
             <td class=\"rank\">{}</td><td><button type=\"button\" class=\"pick\" \
             data-row=\"{}\" data-col=\"{}\">{}</button></td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            esc(&c.name),
            format_score(last),
            format_score(mean),
            i + 1,
            c.row,
            c.col,
            esc(&c.name),
            esc(&super::vqgan_label(&c.vqgan)),
            esc(&c.perceptor),
            shown_score(last),
            shown_score(mean),
            s.map_or_else(|| "–".to_string(), |s| s.frames_scored.to_string()),
        ));
    }
    h.push_str("</tbody>\n</table>\n<div id=\"ranking-selftest\"></div>\n");
    h
}

/// The comparison section: the link to grid.mp4 and the contact sheets.
fn comparison(data: &ViewData) -> String {
    let mut h = match &data.video {
        Some(v) => format!(
            "<p><a href=\"{}\">grid.mp4</a>: all cells side by side, in sync</p>\n",
            esc(v)
        ),
        None => "<p>grid.mp4 has not been built yet.</p>\n".to_string(),
    };
    for s in &data.sheets {
        h.push_str(&format!(
            "<figure><a href=\"{0}\"><img class=\"sheet\" src=\"{0}\" alt=\"frame {1}\"></a>\
             <figcaption>frame {1}</figcaption></figure>\n",
            esc(&s.file),
            s.frame
        ));
    }
    h
}

/// Frames narrower than this are shown enlarged by a whole factor.
const VIEW_WIDTH: u32 = 512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sheets_are_first_middle_last() {
        assert_eq!(default_sheet_frames(40), vec![1, 20, 40]);
        assert_eq!(default_sheet_frames(3), vec![1, 2, 3]);
        assert_eq!(default_sheet_frames(2), vec![1, 2]);
        assert_eq!(default_sheet_frames(1), vec![1]);
    }

    #[test]
    fn layout_is_even_and_shrinks_big_grids() {
        let l = Layout::new(2, 3, 129, 63);
        assert_eq!(l.width % 2, 0);
        assert_eq!(l.height % 2, 0);
        assert_eq!(l.width, 3 * 129 + 2 * GAP + 1);
        let big = Layout::new(6, 9, 1024, 576);
        assert!(big.width <= MAX_MOSAIC_SIDE && big.height <= MAX_MOSAIC_SIDE);
        assert!(big.tile_w < 1024);
    }

    #[test]
    fn sheet_lists_parse_and_check() {
        assert_eq!(parse_sheet_list("1, 20,40,20").unwrap(), vec![1, 20, 40]);
        assert!(parse_sheet_list("1,x").is_err());
        assert!(check_sheet_frames(&[41], 40).is_err());
        assert!(check_sheet_frames(&[0], 40).is_err());
        assert!(check_sheet_frames(&[40], 40).is_ok());
    }
}

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
//!
//! Everything depends only on the cells' files, the scene and the spec (no
//! dates, no absolute paths), so rebuilding from the same cells gives the
//! same bytes, whichever process renders which cell. Files are written under
//! a temporary name unique to host and process, then renamed, so shards
//! sharing a folder can rebuild at the same time.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use serde::Serialize;
use serde_json::Value;

use super::font;
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

/// A temporary name beside `path`, unique across hosts and processes that
/// share the folder: `.<name>.tmp-<host>-<pid>-<nanos>-<n><suffix>`.
fn shared_temp(path: &Path, suffix: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.tmp-{host}-{}-{nanos}-{n}{suffix}",
        std::process::id()
    ))
}

/// Writes `bytes` to `path` through a shared-folder-safe temporary file.
fn write_shared(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = shared_temp(path, "");
    let r = fs::write(&tmp, bytes).and_then(|_| fs::rename(&tmp, path));
    r.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("could not write {}", path.display()), e)
    })
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
            let tmp = shared_temp(&path, ".png");
            write_png_atomic(&tmp, &img)?;
            fs::rename(&tmp, &path).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                Error::io(format!("could not write {}", path.display()), e)
            })?;
            outputs.sheets.push(path);
        }
    } else {
        outputs.notes.push(
            "no cell has frames yet, so grid.mp4 and the contact sheets were not built".into(),
        );
    }

    let html = index_html(out_dir, spec, scene, cells, &statuses, frames, &layout)?;
    write_shared(&outputs.index, html.as_bytes())?;
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
    let tmp = shared_temp(&path, ".mp4");
    let comment = format!(
        "zoetrope grid: rows = VQGAN ({}), columns = perceptors ({})",
        spec.vqgans.join(", "),
        spec.perceptors
            .iter()
            .map(|p| super::perceptor_label(p))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut writer = Mp4Writer::create_with_metadata(
        &tmp,
        layout.width,
        layout.height,
        scene.timing.frames_per_second,
        &[("comment", &comment), ("title", "zoetrope grid")],
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

/// The viewer page; see the module documentation.
fn index_html(
    out_dir: &Path,
    spec: &GridSpec,
    scene: &Scene,
    cells: &[Cell],
    statuses: &[CellStatus],
    frames: u64,
    layout: &Layout,
) -> Result<String> {
    let title = Path::new(&scene.origin)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| scene.origin.clone());
    let mut view_cells = Vec::new();
    for (cell, st) in cells.iter().zip(statuses) {
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
        view_cells.push(ViewCell {
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
        });
    }
    let sheets: Vec<ViewSheet> = (1..=frames)
        .filter(|k| out_dir.join(sheet_file_name(*k)).is_file())
        .map(|k| ViewSheet {
            frame: k,
            file: sheet_file_name(k),
        })
        .collect();
    let data = ViewData {
        title: title.clone(),
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
    };
    // `<` never appears raw inside the script element, so no `</script>`
    // in a prompt or path can end it early.
    let json = serde_json::to_string(&data)
        .map_err(|e| Error::internal(format!("viewer data as JSON: {e}")))?
        .replace('<', "\\u003c");

    let complete = data.cells.iter().filter(|c| c.complete).count();
    let first = data.cells.iter().find(|c| c.frames_done >= 1);
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str(&format!(
        "<title>zoetrope grid: {}</title>\n<style>{}</style>\n</head>\n<body>\n",
        esc(&title),
        STYLE
    ));
    h.push_str(&format!(
        "<h1>zoetrope grid: {}</h1>\n<p class=\"info\">{} frames at {} fps; rows: VQGAN, \
         columns: perceptors; {} of {} cells complete</p>\n",
        esc(&title),
        frames,
        scene.timing.frames_per_second,
        complete,
        data.cells.len()
    ));
    h.push_str(
        "<div class=\"controls\">\n\
         <label>vqgan_model <select id=\"vqgan\"></select></label>\n\
         <label>perceptors <select id=\"perceptor\"></select></label>\n\
         <button id=\"prev\" type=\"button\" title=\"previous frame (←)\">&#9664; step</button>\n\
         <button id=\"play\" type=\"button\" title=\"play / pause (space)\">&#9654; play</button>\n\
         <button id=\"next\" type=\"button\" title=\"next frame (→)\">step &#9654;</button>\n",
    );
    h.push_str(&format!(
        "<input id=\"frame\" type=\"range\" min=\"1\" max=\"{frames}\" value=\"1\">\n\
         <span id=\"frame-label\"></span>\n</div>\n"
    ));
    // Small frames are shown enlarged by a whole factor (pixelated).
    let zoom = (VIEW_WIDTH / layout.tile_w.max(1)).clamp(1, 8);
    let (vw, vh) = (layout.tile_w * zoom, layout.tile_h * zoom);
    h.push_str(&format!(
        "<div id=\"stage\" style=\"width:{vw}px;min-height:{vh}px\">\n"
    ));
    let size = format!("width=\"{vw}\" height=\"{vh}\"");
    match first {
        Some(c) => h.push_str(&format!(
            "<img id=\"view\" alt=\"the selected cell's frame\" {size} src=\"{}\">\n",
            esc(&format!("{}/{}", c.name, frame_file_name(1)))
        )),
        None => h.push_str(&format!(
            "<img id=\"view\" alt=\"the selected cell's frame\" {size} hidden>\n"
        )),
    }
    h.push_str("<div id=\"placeholder\" hidden></div>\n</div>\n");
    h.push_str("<p id=\"cell-info\"></p>\n<div id=\"links\"></div>\n");
    h.push_str("<details open><summary>settings</summary><pre id=\"settings\"></pre></details>\n");

    // A static overview of every cell, with links to the files that exist.
    h.push_str("<h2>Cells</h2>\n<table>\n<tr><th></th>");
    for p in &data.perceptors {
        h.push_str(&format!("<th>{}</th>", esc(p)));
    }
    h.push_str("</tr>\n");
    for (r, v) in data.vqgans.iter().enumerate() {
        h.push_str(&format!("<tr><th>{}</th>", esc(v)));
        for c in data.cells.iter().filter(|c| c.row == r) {
            let state = if c.complete {
                "complete".to_string()
            } else if c.frames_done == 0 {
                "not rendered".to_string()
            } else {
                format!("{} of {} frames", c.frames_done, frames)
            };
            h.push_str(&format!(
                "<td><button type=\"button\" class=\"pick\" data-row=\"{}\" data-col=\"{}\">{}</button><br>{}",
                c.row,
                c.col,
                esc(&c.name),
                esc(&state)
            ));
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
    h.push_str("</table>\n");

    h.push_str("<h2>Comparison</h2>\n");
    match &data.video {
        Some(v) => h.push_str(&format!(
            "<p><a href=\"{}\">grid.mp4</a>: all cells side by side, in sync</p>\n",
            esc(v)
        )),
        None => h.push_str("<p>grid.mp4 has not been built yet.</p>\n"),
    }
    for s in &data.sheets {
        h.push_str(&format!(
            "<figure><a href=\"{0}\"><img class=\"sheet\" src=\"{0}\" alt=\"frame {1}\"></a>\
             <figcaption>frame {1}</figcaption></figure>\n",
            esc(&s.file),
            s.frame
        ));
    }
    h.push_str("<pre id=\"errors\" hidden></pre>\n<div id=\"selftest\"></div>\n");
    h.push_str("<script>\n");
    h.push_str(ERROR_SCRIPT);
    h.push_str("</script>\n");
    h.push_str(&format!(
        "<script type=\"application/json\" id=\"grid-data\">{json}</script>\n"
    ));
    h.push_str("<script>\n");
    h.push_str(SCRIPT);
    h.push_str("</script>\n</body>\n</html>\n");
    Ok(h)
}

/// Frames narrower than this are shown enlarged by a whole factor.
const VIEW_WIDTH: u32 = 512;

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#181818;color:#e8e8e8;\
margin:1.5em}a{color:#8cc8ff}.controls{display:flex;flex-wrap:wrap;gap:.6em;align-items:center;\
margin:.8em 0}#stage{background:#101010;display:flex;align-items:center;justify-content:center}\
#stage img{image-rendering:pixelated;max-width:100%}#placeholder{color:#888;padding:1em}\
pre{background:#101010;padding:.8em;overflow:auto;max-height:20em}table{border-collapse:collapse}\
td,th{border:1px solid #444;padding:.4em;vertical-align:top}img.sheet{max-width:100%}\
figure{margin:1em 0}#errors{color:#ff8080}";

/// Installed before the viewer script, so that even a failure to parse or
/// start the viewer ends up in the page (`#errors`).
const ERROR_SCRIPT: &str = r#"var zoetropeErrors = [];
function zoetropeRecordError(msg) {
  zoetropeErrors.push(String(msg));
  var el = document.getElementById("errors");
  el.textContent = zoetropeErrors.join("\n");
  el.hidden = false;
}
window.onerror = function (msg, src, line, col) {
  zoetropeRecordError("error: " + msg + " (" + src + ":" + line + ":" + col + ")");
  return false;
};
window.addEventListener("unhandledrejection", function (e) {
  zoetropeRecordError("unhandled rejection: " + e.reason);
});
"#;

/// The viewer script (plain ES5, no external resources).
const SCRIPT: &str = r#""use strict";
(function () {
  var errors = zoetropeErrors;
  var recordError = zoetropeRecordError;
  var data = JSON.parse(document.getElementById("grid-data").textContent);
  var vqSel = document.getElementById("vqgan");
  var peSel = document.getElementById("perceptor");
  var img = document.getElementById("view");
  var placeholder = document.getElementById("placeholder");
  var slider = document.getElementById("frame");
  var frameLabel = document.getElementById("frame-label");
  var playBtn = document.getElementById("play");
  var settingsEl = document.getElementById("settings");
  var infoEl = document.getElementById("cell-info");
  var linksEl = document.getElementById("links");
  var state = { row: 0, col: 0, frame: 1, timer: null };

  function addOptions(sel, names) {
    names.forEach(function (name, i) {
      var o = document.createElement("option");
      o.value = String(i);
      o.textContent = name;
      sel.appendChild(o);
    });
  }
  addOptions(vqSel, data.vqgans);
  addOptions(peSel, data.perceptors);

  function cellAt(row, col) {
    return data.cells[row * data.perceptors.length + col];
  }
  function pad5(n) {
    var s = String(n);
    while (s.length < 5) { s = "0" + s; }
    return s;
  }
  function framePath(cell, k) {
    return cell.name + "/frame_" + pad5(k) + ".png";
  }
  function link(href, text) {
    var a = document.createElement("a");
    a.setAttribute("href", href);
    a.textContent = text;
    return a;
  }

  function show() {
    var cell = cellAt(state.row, state.col);
    vqSel.value = String(state.row);
    peSel.value = String(state.col);
    slider.value = String(state.frame);
    frameLabel.textContent = "frame " + state.frame + " / " + data.frames;
    if (state.frame <= cell.frames_done) {
      var p = framePath(cell, state.frame);
      if (img.getAttribute("src") !== p) { img.setAttribute("src", p); }
      img.hidden = false;
      placeholder.hidden = true;
      if (state.frame < cell.frames_done) {
        new Image().src = framePath(cell, state.frame + 1);
      }
    } else {
      img.hidden = true;
      placeholder.hidden = false;
      placeholder.textContent = cell.frames_done === 0
        ? cell.label + ": not rendered yet"
        : cell.label + ": frame " + state.frame + " not rendered yet (" + cell.frames_done + " of " + data.frames + " done)";
    }
    infoEl.textContent = cell.label + " (" + cell.name + "), " +
      (cell.complete ? "complete" : cell.frames_done + " of " + data.frames + " frames") +
      "; settings from " + cell.settings_source;
    while (linksEl.firstChild) { linksEl.removeChild(linksEl.firstChild); }
    if (cell.video) { linksEl.appendChild(link(cell.video, "cell video")); linksEl.appendChild(document.createTextNode(" ")); }
    if (cell.settings_file) { linksEl.appendChild(link(cell.settings_file, "settings.toml")); linksEl.appendChild(document.createTextNode(" ")); }
    if (cell.metadata_file) { linksEl.appendChild(link(cell.metadata_file, "metadata.json")); }
    settingsEl.textContent = JSON.stringify(cell.settings, null, 2);
  }

  function step(d) {
    var n = data.frames;
    state.frame = ((state.frame - 1 + d) % n + n) % n + 1;
    show();
  }
  function setPlaying(on) {
    if (state.timer !== null) { window.clearInterval(state.timer); state.timer = null; }
    if (on) {
      var ms = Math.max(20, Math.round(1000 / (data.fps > 0 ? data.fps : 12)));
      state.timer = window.setInterval(function () { step(1); }, ms);
    }
    playBtn.innerHTML = on ? "&#10074;&#10074; pause" : "&#9654; play";
  }

  vqSel.addEventListener("change", function () { state.row = Number(vqSel.value); show(); });
  peSel.addEventListener("change", function () { state.col = Number(peSel.value); show(); });
  slider.addEventListener("input", function () { state.frame = Number(slider.value); show(); });
  document.getElementById("prev").addEventListener("click", function () { setPlaying(false); step(-1); });
  document.getElementById("next").addEventListener("click", function () { setPlaying(false); step(1); });
  playBtn.addEventListener("click", function () { setPlaying(state.timer === null); });
  document.addEventListener("keydown", function (e) {
    if (e.target && (e.target.tagName === "SELECT" || e.target.tagName === "INPUT")) { return; }
    if (e.key === "ArrowLeft") { setPlaying(false); step(-1); e.preventDefault(); }
    else if (e.key === "ArrowRight") { setPlaying(false); step(1); e.preventDefault(); }
    else if (e.key === " ") { setPlaying(state.timer === null); e.preventDefault(); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("button.pick"), function (b) {
    b.addEventListener("click", function () {
      state.row = Number(b.getAttribute("data-row"));
      state.col = Number(b.getAttribute("data-col"));
      show();
      window.scrollTo(0, 0);
    });
  });
  img.addEventListener("error", function () {
    recordError("could not load " + img.getAttribute("src"));
  });

  // Start on the first cell that has frames.
  for (var i = 0; i < data.cells.length; i++) {
    if (data.cells[i].frames_done > 0) { state.row = data.cells[i].row; state.col = data.cells[i].col; break; }
  }
  show();

  function selftest() {
    var out = document.getElementById("selftest");
    function finish(msg) {
      if (errors.length > 0 && msg === "SELFTEST OK") { msg = "SELFTEST FAIL: page errors: " + errors.join("; "); }
      out.textContent = msg;
    }
    try {
      var before = img.getAttribute("src");
      var target = null;
      for (var j = data.cells.length - 1; j >= 0; j--) {
        var c = data.cells[j];
        if (c.frames_done >= 1 && (c.row !== state.row || c.col !== state.col)) { target = c; break; }
      }
      if (target === null) { return finish("SELFTEST FAIL: needs two cells with frames"); }
      vqSel.value = String(target.row);
      vqSel.dispatchEvent(new Event("change"));
      peSel.value = String(target.col);
      peSel.dispatchEvent(new Event("change"));
      if (state.row !== target.row || state.col !== target.col) {
        return finish("SELFTEST FAIL: the selectors did not switch to " + target.name);
      }
      document.getElementById("next").click();
      var expected = framePath(target, state.frame);
      var now = img.getAttribute("src");
      if (state.frame > target.frames_done) {
        return finish("SELFTEST FAIL: frame " + state.frame + " of " + target.name + " is not rendered");
      }
      if (now === before) { return finish("SELFTEST FAIL: the image did not change from " + before); }
      if (now !== expected) { return finish("SELFTEST FAIL: showing " + now + ", expected " + expected); }
      var settled = false;
      function loaded() {
        if (settled) { return; }
        settled = true;
        if (img.naturalWidth > 0) { finish("SELFTEST OK"); }
        else { finish("SELFTEST FAIL: " + now + " loaded empty"); }
      }
      function failed() {
        if (settled) { return; }
        settled = true;
        finish("SELFTEST FAIL: could not load " + now);
      }
      img.addEventListener("load", loaded);
      img.addEventListener("error", failed);
      if (img.complete && img.naturalWidth > 0) { loaded(); }
      window.setTimeout(function () {
        if (!settled) { settled = true; finish("SELFTEST FAIL: " + now + " did not load in time"); }
      }, 5000);
    } catch (e) {
      finish("SELFTEST FAIL: " + e);
    }
  }
  if (/[?&]selftest=1(&|$)/.test(window.location.search)) {
    if (document.readyState === "complete") { selftest(); }
    else { window.addEventListener("load", selftest); }
  }
})();
"#;

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

//! `zoetrope plan SCENE --preview FILE.mp4`: the camera path without any
//! model (docs/design.md §5, §12).
//!
//! Frame 1 is the init image (resized to the frame, as `render` loads it)
//! or, without one, a built-in test pattern ([`test_pattern`]) whose grid,
//! colours and cell numbers make translation, rotation and zoom readable.
//! Every later frame is the previous one warped by the frame's motion with
//! the very function `render` uses ([`crate::render::warp::warp`], the
//! scene's `sampling_mode` and `infill_mode`), then clamped to 0..1 as a
//! rendered frame is. Each frame is written with its number, `t` and the
//! dominant scene (the scene with the largest mean weight over the frame,
//! and its first prompt) drawn on a copy, so the text is never warped into
//! later frames; `pixel_size` enlarges frames as in `render`, and the video
//! runs at `frames_per_second` with the soundtrack when the scene has one.
//!
//! Differences from a render, on purpose: nothing is optimised, so the
//! frames show only where the motion carries the image; with
//! `reencode_each_frame = false` a render warps the VQGAN latent grid, the
//! preview warps the pixels by the same continuous map.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use tch::Tensor;

use crate::grid::font;
use crate::output::frames::{load_image, rgb_to_tensor, tensor_to_rgb};
use crate::render::warp;
use crate::scene::Scene;
use crate::schedule::Timeline;
use crate::Result;

/// Grid spacing of the test pattern, in pixels.
const CELL: u32 = 32;

/// What a preview wrote.
#[derive(Debug, Clone)]
pub struct PreviewSummary {
    /// The MP4 written.
    pub path: PathBuf,
    /// Frames in it.
    pub frames: u64,
    /// Whether it carries the scene's soundtrack.
    pub soundtrack: bool,
}

/// Refuses a `--preview` path that cannot work, before anything else runs:
/// another extension than `.mp4`, or a folder that does not exist.
pub fn check_preview_path(path: &Path) -> Result<()> {
    crate::output::check_output_file(path, "--preview", "mp4", "the preview is an MP4 video")
}

/// The test pattern: a colour ramp (red grows to the right, blue
/// downwards), a checkerboard of `CELL`-pixel cells with every cell's
/// column and row number, white grid lines and a cross through the centre.
pub fn test_pattern(width: u32, height: u32) -> RgbImage {
    let mut img = RgbImage::from_fn(width, height, |x, y| {
        let fx = x as f32 / width.max(2).saturating_sub(1) as f32;
        let fy = y as f32 / height.max(2).saturating_sub(1) as f32;
        let dark = ((x / CELL) + (y / CELL)) % 2 == 0;
        let g = if dark { 60.0 } else { 150.0 };
        Rgb([
            (40.0 + 200.0 * fx) as u8,
            g as u8,
            (40.0 + 200.0 * fy) as u8,
        ])
    });
    for y in 0..height {
        for x in 0..width {
            if x % CELL == 0 || y % CELL == 0 {
                img.put_pixel(x, y, Rgb([235, 235, 235]));
            }
        }
    }
    let (cx, cy) = (width / 2, height / 2);
    for x in 0..width {
        img.put_pixel(x, cy.min(height - 1), Rgb([255, 230, 0]));
    }
    for y in 0..height {
        img.put_pixel(cx.min(width - 1), y, Rgb([255, 230, 0]));
    }
    for row in 0..height.div_ceil(CELL) {
        for col in 0..width.div_ceil(CELL) {
            let label = format!("{col},{row}");
            let (x, y) = ((col * CELL + 3) as i64, (row * CELL + 3) as i64);
            font::draw_text(&mut img, x, y, &label, 1, Rgb([255, 255, 255]));
        }
    }
    img
}

/// The line drawn on frame `k`: its number, `t` and the dominant scene.
fn caption(scene: &Scene, tl: &Timeline, k: u64) -> String {
    let t = tl.t_at(tl.frame_steps(k).start);
    let weights = tl.frame_scene_weights(k);
    let (j, _) = weights
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (j, w)| {
            if *w > best.1 {
                (j, *w)
            } else {
                best
            }
        });
    let prompt = scene.prompts[j]
        .first()
        .map(|p| p.raw.as_str())
        .unwrap_or_default();
    format!("f{k} t={t:.2}s s{}: {prompt}", j + 1)
}

/// Draws `text` at the top left with a dark band behind it, fitted to the
/// frame's width.
fn draw_caption(img: &mut RgbImage, text: &str) {
    let scale = if img.width() >= 512 { 2 } else { 1 };
    let text = font::fit_text(text, img.width().saturating_sub(4), scale);
    let band = (8 * scale + 3).min(img.height());
    let width = (font::text_width(&text, scale) + 4).min(img.width());
    for y in 0..band {
        for x in 0..width {
            let p = img.get_pixel_mut(x, y);
            *p = Rgb([p[0] / 4, p[1] / 4, p[2] / 4]);
        }
    }
    font::draw_text(img, 2, 2, &text, scale, Rgb([255, 255, 255]));
}

/// The starting image as a `[1, 3, H, W]` tensor in 0..1 on the CPU.
fn start_image(scene: &Scene) -> Result<Tensor> {
    let (w, h) = (scene.image.width, scene.image.height);
    match &scene.stabilization.init_image {
        Some(p) => load_image(p, w, h),
        None => rgb_to_tensor(&test_pattern(w, h)),
    }
}

/// Writes the preview of `scene` (compiled as `tl`) to `path`; see the
/// module documentation.
pub fn write_preview(scene: &Scene, tl: &Timeline, path: &Path) -> Result<PreviewSummary> {
    check_preview_path(path)?;
    let _no_grad = tch::no_grad_guard();
    let mut image = start_image(scene)?;
    let pixel_size = scene.image.pixel_size.max(1);
    let (w, h) = (
        scene.image.width * pixel_size,
        scene.image.height * pixel_size,
    );
    let soundtrack = scene.audio.reactivity().map(|a| a.soundtrack());
    let mut writer = crate::output::video::Mp4Writer::create_with_soundtrack(
        path,
        w,
        h,
        scene.timing.frames_per_second,
        &[("comment", "zoetrope plan --preview")],
        soundtrack.as_ref(),
    )?;
    let (sampling, infill) = (scene.motion.sampling_mode, scene.motion.infill_mode);
    for k in 1..=tl.frames() {
        let motion = tl.motion(k - 1);
        if k > 1 && !motion.is_identity() {
            image = warp::warp(&image, &motion, sampling, infill)
                .map_err(|e| e.context(format!("warping frame {} into frame {k}", k - 1)))?
                .f_clamp(0.0, 1.0)?;
        }
        let mut frame = tensor_to_rgb(&image, pixel_size)?;
        draw_caption(&mut frame, &caption(scene, tl, k));
        writer.push_frame(&frame)?;
    }
    let has_sound = writer.has_soundtrack();
    let path = writer.finish()?;
    Ok(PreviewSummary {
        path,
        frames: tl.frames(),
        soundtrack: has_sound,
    })
}

//! Test scaffolding shared by the grid tests: a tiny scene and a fake
//! renderer that writes real PNG frames, settings and an MP4 per cell (a
//! different colour per cell, a gradient that changes per frame), so the
//! grid's bookkeeping and outputs can be checked without models.

#![allow(dead_code)]

use image::{Rgb, RgbImage};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use zoetrope::grid;
use zoetrope::output::frames::{frame_file_name, write_frame};
use zoetrope::output::video::write_mp4_from_pngs;
use zoetrope::output::write_json_atomic;
use zoetrope::scene::Scene;
use zoetrope::schedule::Timeline;
use zoetrope::{Error, Result};

/// Frames of [`write_scene`]'s scene.
pub const FRAMES: u64 = 6;
/// Its frame size.
pub const W: u32 = 64;
pub const H: u32 = 32;

/// Writes a 6-frame, 64×32 two-scene file into `dir`.
pub fn write_scene(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("compare.toml");
    std::fs::write(
        &path,
        r#"scenes = "a lighthouse || a snowy lighthouse"
width = 64
height = 32
steps_per_scene = 3
steps_per_frame = 1
interpolation_steps = 2
frames_per_second = 6
cutouts = 4
seed = 1234
"#,
    )
    .unwrap();
    path
}

/// The base colour of a cell (from its folder name).
pub fn cell_colour(name: &str) -> [u8; 3] {
    let h = name
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    [
        40 + (h & 0x7f) as u8,
        40 + ((h >> 8) & 0x7f) as u8,
        40 + ((h >> 16) & 0x7f) as u8,
    ]
}

/// Frame `k` of the cell named `name`: its colour, brightening with `k`,
/// with a horizontal gradient.
pub fn fake_frame(name: &str, k: u64, w: u32, h: u32) -> RgbImage {
    let c = cell_colour(name);
    RgbImage::from_fn(w, h, |x, _| {
        let add = (k as u32 * 12 + x / 4) as u8;
        Rgb([
            c[0].saturating_add(add),
            c[1].saturating_add(add),
            c[2].saturating_add(add),
        ])
    })
}

/// One call of the fake renderer.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub cell: String,
    pub resume: bool,
    pub vqgan: String,
    pub perceptors: Vec<String>,
    pub seed: u64,
}

/// A fake renderer recording its calls; `fail_after` makes the next call
/// stop with an error after that many new frames (an interrupted render).
#[derive(Default)]
pub struct FakeRender {
    pub calls: RefCell<Vec<Call>>,
    pub fail_after: RefCell<Option<u64>>,
}

impl FakeRender {
    /// Renders `scene` into `dir` as the real render would lay it out.
    pub fn render(&self, scene: &Scene, dir: &Path, resume: bool) -> Result<()> {
        self.calls.borrow_mut().push(Call {
            cell: scene.output.file_namespace.clone(),
            resume,
            vqgan: scene.image.vqgan_model.name().to_string(),
            perceptors: scene.guidance.perceptors.clone(),
            seed: scene.optimizer.seed,
        });
        let n = Timeline::new(scene)?.frames();
        let name = &scene.output.file_namespace;
        assert_eq!(dir.file_name().unwrap().to_str().unwrap(), name);
        let start = if resume {
            grid::frames_done(dir, n) + 1
        } else {
            1
        };
        zoetrope::output::write_atomic(&dir.join("settings.toml"), scene.to_toml()?.as_bytes())?;
        let (w, h) = (
            scene.image.width * scene.image.pixel_size,
            scene.image.height * scene.image.pixel_size,
        );
        let limit = self.fail_after.borrow_mut().take();
        for k in start..=n {
            if let Some(l) = limit {
                if k >= start + l {
                    return Err(Error::new(
                        zoetrope::ErrorKind::Interrupted,
                        format!("fake render of {name} interrupted before frame {k}"),
                    ));
                }
            }
            write_frame(dir, k as usize, &fake_frame(name, k, w, h))?;
        }
        write_json_atomic(
            &dir.join("metadata.json"),
            &serde_json::json!({"renderer": "fake test render", "frames": n}),
        )?;
        let frames: Vec<PathBuf> = (1..=n)
            .map(|k| dir.join(frame_file_name(k as usize)))
            .collect();
        write_mp4_from_pngs(
            &frames,
            &dir.join(format!("{name}.mp4")),
            scene.timing.frames_per_second,
            "fake",
        )?;
        Ok(())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }
}

/// No weights are missing.
pub fn all_weights_present(_p: &[String], _v: &str) -> Vec<String> {
    Vec::new()
}

/// Every `src="…"` and `href="…"` value of an HTML page.
pub fn html_refs(html: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"(?:src|href)="([^"]*)""#).unwrap();
    re.captures_iter(html).map(|c| c[1].to_string()).collect()
}

/// The JSON embedded in index.html.
pub fn html_data(html: &str) -> serde_json::Value {
    let start = html
        .find(r#"<script type="application/json" id="grid-data">"#)
        .expect("grid data present");
    let rest = &html[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest.find("</script>").unwrap();
    serde_json::from_str(&rest[open..close]).expect("grid data is JSON")
}

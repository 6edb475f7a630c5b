//! How well a render loops, measured on its frames: the jump from the last
//! frame back to the first against the ordinary change from one frame to
//! the next (`loop_frames`, docs/design.md §6 "Seamless loops").
//!
//! ```sh
//! cargo run --example loop_jump -- out/quickstart
//! ```
//!
//! Both are mean absolute differences of the 8-bit PNGs, over every channel
//! of every pixel (0–255).

use crate::output::frames::{frame_file_name, read_rgb};
use crate::{Error, Result};
use image::RgbImage;
use std::path::Path;

/// A render's loop measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopJump {
    /// Frames read (`frame_00001.png` on, up to the first missing one).
    pub frames: usize,
    /// Mean |last − first|: the jump where the video wraps around.
    pub closing: f64,
    /// Mean over `k` of mean |frame k+1 − frame k|: a normal step.
    pub mean_step: f64,
}

impl LoopJump {
    /// `closing / mean_step`: 1 means the wrap looks like any other step.
    pub fn ratio(&self) -> f64 {
        self.closing / self.mean_step
    }
}

/// Mean absolute difference of two images of the same size, 0–255.
pub fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    if a.dimensions() != b.dimensions() {
        return Err(Error::input(format!(
            "frames of different sizes ({:?} and {:?}) cannot be compared",
            a.dimensions(),
            b.dimensions()
        )));
    }
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    Ok(sum as f64 / a.as_raw().len().max(1) as f64)
}

/// Measures the frames of the run folder `dir` (module docs); needs 2
/// frames or more.
pub fn loop_jump(dir: &Path) -> Result<LoopJump> {
    let mut frames = Vec::new();
    loop {
        let path = dir.join(frame_file_name(frames.len() + 1));
        if !path.is_file() {
            break;
        }
        frames.push(read_rgb(&path)?);
    }
    if frames.len() < 2 {
        return Err(Error::input(format!(
            "{} holds {} frame(s) (frame_00001.png, …); a loop needs 2 or more",
            dir.display(),
            frames.len()
        )));
    }
    let mut steps = 0.0;
    for pair in frames.windows(2) {
        steps += mean_abs_diff(&pair[0], &pair[1])?;
    }
    let last = &frames[frames.len() - 1];
    Ok(LoopJump {
        frames: frames.len(),
        closing: mean_abs_diff(last, &frames[0])?,
        mean_step: steps / (frames.len() - 1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: u8) -> RgbImage {
        RgbImage::from_pixel(4, 2, image::Rgb([v, v, v]))
    }

    #[test]
    fn measures_the_wrap_against_the_steps() {
        let dir = tempfile::tempdir().unwrap();
        for (k, v) in [10u8, 12, 16, 22].iter().enumerate() {
            flat(*v)
                .save(dir.path().join(frame_file_name(k + 1)))
                .unwrap();
        }
        let j = loop_jump(dir.path()).unwrap();
        assert_eq!(j.frames, 4);
        assert_eq!(j.closing, 12.0);
        assert_eq!(j.mean_step, 4.0);
        assert_eq!(j.ratio(), 3.0);
        assert!(mean_abs_diff(&flat(0), &RgbImage::new(2, 2)).is_err());
        let one = tempfile::tempdir().unwrap();
        flat(1).save(one.path().join(frame_file_name(1))).unwrap();
        assert!(loop_jump(one.path()).is_err());
    }
}

//! Seamless loops (`loop_frames`, docs/design.md §6 "Seamless loops"): the
//! target the loop-closing loss pulls the last frames toward.
//!
//! The video loops when the motion that would carry the last frame `T` into
//! a frame `T + 1` gives back the first frame. So the target of frame `k`
//! among the last `N` is the first frame carried *backwards* through the
//! motion still to come: the warps into `k + 1 … T` and the one more into
//! `T + 1` ([`crate::schedule::Timeline::motions_after`]). With `M` the
//! composed forward map of those warps (a content point at `p` in frame `k`
//! is at `M · p` in frame `T + 1`), the target's pixel `q` is the first
//! frame at `M · q`, sampled once, with the scene's `sampling_mode` and
//! `infill_mode`. Pixels whose `M · q` falls outside the frame are content
//! that leaves the picture before the loop closes; they take the infill, as
//! the warps themselves fill what they uncover.
//!
//! The first frame is taken as written to `frame_00001.png` (8 bits per
//! channel, reduced by `pixel_size`): a resumed run reads it back from
//! there and gets exactly the values the interrupted run held, so the
//! resume stays byte-identical without storing another tensor.

use crate::output::frames::{read_rgb, rgb_to_tensor};
use crate::output::run_dir::RunDir;
use crate::render::warp::{composed_forward, sample_by, InfillMode, Motion, SamplingMode};
use crate::{Error, Result};
use image::RgbImage;
use tch::{Device, Tensor};

/// The first frame `[1, 3, H, W]` in `[0, 1]` on `device`, from the frame
/// as written (`pixel_size` blocks reduced to one pixel each).
pub fn first_frame_tensor(img: &RgbImage, pixel_size: u32, device: Device) -> Result<Tensor> {
    let ps = pixel_size.max(1);
    let small = if ps == 1 {
        img.clone()
    } else {
        RgbImage::from_fn(img.width() / ps, img.height() / ps, |x, y| {
            *img.get_pixel(x * ps, y * ps)
        })
    };
    Ok(rgb_to_tensor(&small)?.f_to_device(device)?)
}

/// The first frame of the run in `run`, read back from its PNG for a
/// resumed run that loops.
pub fn read_first_frame(run: &RunDir, pixel_size: u32, device: Device) -> Result<Tensor> {
    let path = run.frame_path(1);
    if !path.is_file() {
        return Err(Error::input(format!(
            "{} is missing: the loop (loop_frames) pulls the last frames toward the first, \
             so the run cannot be resumed without it; render the scene again",
            path.display()
        )));
    }
    first_frame_tensor(&read_rgb(&path)?, pixel_size, device)
}

/// The loop-closing target image for a frame whose coming motions are
/// `motions` (module docs): the first frame `[1, 3, H, W]` sampled at the
/// composed forward map of the motions.
pub fn loop_target_image(
    first: &Tensor,
    motions: &[Motion],
    sampling: SamplingMode,
    infill: InfillMode,
) -> Result<Tensor> {
    let size = first.size();
    let [_, _, h, w] = size[..] else {
        return Err(Error::internal(format!(
            "the loop's first frame should be [1, 3, H, W], got {size:?}"
        )));
    };
    let forward = composed_forward(motions, w as f64, h as f64)?;
    sample_by(first, &forward, sampling, infill)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::warp::warp;
    use tch::Kind;

    fn motion(tx: f64, ty: f64) -> Motion {
        Motion {
            translate_x: tx,
            translate_y: ty,
            ..Motion::default()
        }
    }

    /// Whole-pixel moves with wrap-around are exact: the target, warped on
    /// through the coming motions one frame at a time, is the first frame.
    #[test]
    fn the_target_warped_on_through_the_coming_motion_is_the_first_frame() {
        let first = Tensor::rand([1, 3, 6, 8], (Kind::Float, Device::Cpu));
        let motions = [motion(1.0, 0.0), motion(2.0, -1.0), motion(-1.0, 2.0)];
        let (near, wrap) = (SamplingMode::Nearest, InfillMode::Wrap);
        let target = loop_target_image(&first, &motions, near, wrap).unwrap();
        // Net move: 2 right and 1 up, so the target is the first frame moved 2
        // left and 1 down.
        let expected = first.roll([1, -2], [2, 3]);
        assert!(target.equal(&expected));
        let mut frame = target;
        for m in &motions {
            frame = warp(&frame, m, near, wrap).unwrap();
        }
        assert!(frame.equal(&first));
        // Without motion still to come the target is the first frame.
        assert!(loop_target_image(&first, &[], near, wrap)
            .unwrap()
            .equal(&first));
    }

    #[test]
    fn the_first_frame_undoes_pixel_size() {
        let small = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 80, y as u8 * 200, 7]));
        let big = crate::output::frames::upscale_nearest(&small, 3);
        let a = first_frame_tensor(&big, 3, Device::Cpu).unwrap();
        let b = first_frame_tensor(&small, 1, Device::Cpu).unwrap();
        assert_eq!(a.size(), [1, 3, 2, 3]);
        assert!(a.equal(&b));
    }
}

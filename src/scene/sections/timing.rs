//! The timeline: steps per scene and frame, transitions, frame rate.

use super::super::reader::Reader;
use crate::Result;
use serde::Serialize;

/// The settings this section reads.
pub const KEYS: &[&str] = &[
    "steps_per_scene",
    "steps_per_frame",
    "interpolation_steps",
    "transition",
    "save_every",
    "pre_animation_steps",
    "frames_per_second",
    "loop_frames",
    "loop_weight",
];

/// `loop_weight`'s default: the weight of the loop-closing loss at the last
/// frame (docs/design.md §6, "Seamless loops").
pub const DEFAULT_LOOP_WEIGHT: f64 = 10.0;

/// The longest timeline, in steps.
const BIG: u64 = 1 << 40;

/// How consecutive scenes cross-fade (docs/design.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    /// The fade is centred on the scene boundary (the seed document's reading).
    Centered,
    /// pytti-core: the fade starts at the beginning of each later scene.
    Pytti,
}

/// How long scenes and frames last.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub steps_per_scene: u64,
    pub steps_per_frame: u64,
    pub interpolation_steps: u64,
    pub transition: Transition,
    pub save_every: u64,
    pub pre_animation_steps: u64,
    pub frames_per_second: f64,
    /// Seamless loops: over the last `loop_frames` frames a loop-closing
    /// loss pulls the image toward the first frame as the coming motion
    /// carries it (0: off). Below the number of frames.
    pub loop_frames: u64,
    /// The loop-closing loss's weight at the last frame; it ramps up
    /// linearly over the last `loop_frames` frames.
    pub loop_weight: f64,
}

impl Timing {
    /// Reads the timeline of `scene_count` scenes.
    pub(in crate::scene) fn read(r: &Reader, scene_count: usize) -> Result<Timing> {
        let steps_per_scene = r.int_or("steps_per_scene", 100, 1, BIG)?;
        let steps_per_frame = r.int_or("steps_per_frame", 50, 1, BIG)?;
        check_whole_frames(r, steps_per_scene, steps_per_frame)?;
        let interpolation_steps = r.int_or("interpolation_steps", 0, 0, steps_per_scene)?;
        let transition = r.choice(
            "transition",
            Transition::Centered,
            &[
                ("centered", Transition::Centered),
                ("pytti", Transition::Pytti),
            ],
        )?;
        let save_every = r.int_or("save_every", steps_per_frame, 1, BIG)?;
        let pre_animation_steps = r.int_or("pre_animation_steps", 0, 0, BIG)?;
        let frames_per_second = r.f64_or("frames_per_second", 12.0)?;
        if frames_per_second <= 0.0 {
            let span = r.span_of("frames_per_second");
            return Err(r.doc.err(
                span,
                "frames_per_second",
                "expected a frame rate above 0, e.g. 12",
            ));
        }
        let total = (scene_count as u64).checked_mul(steps_per_scene);
        if total.is_none_or(|t| t > BIG) {
            return Err(r.doc.err(
                r.span_of("scenes"),
                "steps_per_scene",
                "the timeline is too long (scenes × steps_per_scene over 2^40 steps)",
            ));
        }
        let frames = total.unwrap_or(0) / steps_per_frame;
        let (loop_frames, loop_weight) = read_loop(r, frames)?;
        Ok(Timing {
            steps_per_scene,
            steps_per_frame,
            interpolation_steps,
            transition,
            save_every,
            pre_animation_steps,
            frames_per_second,
            loop_frames,
            loop_weight,
        })
    }
}

/// `loop_frames` (below the video's `frames`) and `loop_weight` (a finite
/// number ≥ 0 that float32 holds, as the step's weight table keeps it).
fn read_loop(r: &Reader, frames: u64) -> Result<(u64, f64)> {
    let loop_frames = r.int_or("loop_frames", 0, 0, BIG)?;
    if loop_frames > 0 && loop_frames >= frames {
        let what = if frames >= 2 {
            format!(
                "use a number from 1 to {}, e.g. {}",
                frames - 1,
                (frames / 4).max(1)
            )
        } else {
            "a loop needs a video of 2 frames or more: remove loop_frames".to_string()
        };
        return Err(r.doc.err(
            r.span_of("loop_frames"),
            "loop_frames",
            format!(
                "{loop_frames} frames to close the loop, but the video has {frames} \
                 (scenes × steps_per_scene / steps_per_frame) and its first frame is the \
                 loop's target; {what}"
            ),
        ));
    }
    let loop_weight = r.f64_or("loop_weight", DEFAULT_LOOP_WEIGHT)?;
    if !(0.0..=f32::MAX as f64).contains(&loop_weight) {
        return Err(r.doc.err(
            r.span_of("loop_weight"),
            "loop_weight",
            format!(
                "{loop_weight} is out of range: expected a number from 0 (no pull) upward, \
                 e.g. {DEFAULT_LOOP_WEIGHT}"
            ),
        ));
    }
    Ok((loop_frames, loop_weight))
}

/// Every scene must last whole frames.
fn check_whole_frames(r: &Reader, steps_per_scene: u64, steps_per_frame: u64) -> Result<()> {
    if steps_per_scene % steps_per_frame == 0 {
        return Ok(());
    }
    let given = r.has("steps_per_scene");
    let span = if given {
        r.span_of("steps_per_scene")
    } else {
        r.span_of("steps_per_frame")
    };
    let lo = steps_per_scene / steps_per_frame * steps_per_frame;
    let hi = lo + steps_per_frame;
    let hint = if lo > 0 {
        format!("{lo} or {hi}")
    } else {
        format!("{hi}")
    };
    Err(r.doc.err(
        span,
        "steps_per_scene",
        format!(
            "{steps_per_scene}{} is not a multiple of steps_per_frame ({steps_per_frame}); \
             every scene must last whole frames: use steps_per_scene = {hint}",
            if given {
                ""
            } else {
                " (the default steps_per_scene)"
            }
        ),
    ))
}

//! The scene compiler: scenes → a per-frame, per-step prompt-weight timeline.
//!
//! [`Timeline`] turns a resolved [`Scene`] into the numbers the frame loop
//! needs (docs/design.md §3, §4): how many steps and frames, which steps make which
//! frame, the clock `t`, every scene's weight at every step under either
//! transition, the prompts' effective weights and stops, when to save
//! snapshots, and the 2D motion of every frame. Everything is computed on
//! demand in O(1) per step (no per-step tables), so a 100,000-frame plan
//! costs nothing to build.
//!
//! Decisions where docs/design.md is silent:
//! - Steps and frames: `f` seen by expressions at step `s` is the 0-based
//!   index of the frame the step belongs to, `floor(s / F)`; keyframes are
//!   interpolated on it, so keyframed prompt weights change per frame while
//!   expressions in `t` change every step.
//! - `pre_animation_steps` run with step 0's values (t = 0, f = 0, first
//!   scene only).
//! - A snapshot is due after step `s` when `(s + 1) % save_every == 0`.
//! - With `animation_mode = "off"` [`Timeline::motion`] is the identity
//!   (all zeros), so a renderer cannot warp by accident.

mod check;
pub mod plan;

pub use check::weight_rule;
pub use plan::{MemoryFields, PlanDocument};

use crate::scene::expr::AudioVars;
use crate::scene::{Param, Prompt, PromptSource, Scene, Transition};
use crate::{Error, Result};
use serde::Serialize;
use std::ops::Range;

/// 2D motion of one frame in pytti units (docs/design.md §5): pixels, degrees, and
/// zoom pixels (`W − z` source width). All zero is the identity.
/// `render::warp` turns it into the affine map it samples with.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, serde::Deserialize)]
pub struct Motion {
    /// Pixels to move content right.
    pub translate_x: f64,
    /// Pixels to move content up.
    pub translate_y: f64,
    /// Degrees to rotate content counter-clockwise.
    pub rotate_2d: f64,
    /// Pixels the horizontal source window shrinks by (positive zooms in).
    pub zoom_x_2d: f64,
    /// Pixels the vertical source window shrinks by (positive zooms in).
    pub zoom_y_2d: f64,
}

impl Motion {
    /// True when applying it changes nothing.
    pub fn is_identity(&self) -> bool {
        *self == Motion::default()
    }
}

/// One prompt's numbers at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivePrompt {
    /// 0-based scene index.
    pub scene: usize,
    /// 0-based index of the prompt in its scene.
    pub index: usize,
    /// The scene's transition weight at this step.
    pub scene_weight: f64,
    /// The prompt's own weight at this step.
    pub weight: f64,
    /// The prompt's stop at this step (−∞ when none).
    pub stop: f64,
}

impl ActivePrompt {
    /// `scene_weight × weight`: the factor on this prompt's loss.
    pub fn effective_weight(&self) -> f64 {
        self.scene_weight * self.weight
    }
}

/// The compiled schedule of a scene.
#[derive(Debug, Clone)]
pub struct Timeline {
    steps_per_scene: u64,
    steps_per_frame: u64,
    interpolation_steps: u64,
    transition: Transition,
    scene_count: usize,
    total_steps: u64,
    frames: u64,
    fps: f64,
    save_every: u64,
    pre_animation_steps: u64,
    animated: bool,
    loop_frames: u64,
    loop_weight: f64,
    motion: [Param; 5],
    prompts: Vec<Vec<Prompt>>,
    direct_images: Vec<crate::scene::DirectImagePrompt>,
    audio: Option<AudioVars>,
}

impl Timeline {
    /// Compiles a scene. The scene loader has validated the numbers; they are
    /// checked again here so a hand-built [`Scene`] cannot divide by zero.
    pub fn new(scene: &Scene) -> Result<Timeline> {
        let s = scene.timing.steps_per_scene;
        let f = scene.timing.steps_per_frame;
        let n = scene.prompts.len();
        if n == 0 || s == 0 || f == 0 || s % f != 0 || scene.timing.interpolation_steps > s {
            return Err(Error::input(format!(
                "{}: the timeline needs at least one scene, steps_per_scene ({s}) a positive \
                 multiple of steps_per_frame ({f}) and interpolation_steps ({}) ≤ steps_per_scene",
                scene.origin, scene.timing.interpolation_steps
            )));
        }
        if scene.timing.frames_per_second.is_nan()
            || scene.timing.frames_per_second <= 0.0
            || scene.timing.save_every == 0
        {
            return Err(Error::input(format!(
                "{}: frames_per_second and save_every must be above 0",
                scene.origin
            )));
        }
        let total_steps = (n as u64)
            .checked_mul(s)
            .ok_or_else(|| Error::input(format!("{}: the timeline is too long", scene.origin)))?;
        Ok(Timeline {
            steps_per_scene: s,
            steps_per_frame: f,
            interpolation_steps: scene.timing.interpolation_steps,
            transition: scene.timing.transition,
            scene_count: n,
            total_steps,
            frames: total_steps / f,
            fps: scene.timing.frames_per_second,
            save_every: scene.timing.save_every,
            pre_animation_steps: scene.timing.pre_animation_steps,
            animated: scene.is_animated(),
            loop_frames: scene.timing.loop_frames,
            loop_weight: scene.timing.loop_weight,
            motion: [
                scene.motion.translate_x.clone(),
                scene.motion.translate_y.clone(),
                scene.motion.rotate_2d.clone(),
                scene.motion.zoom_x_2d.clone(),
                scene.motion.zoom_y_2d.clone(),
            ],
            prompts: scene.prompts.clone(),
            direct_images: scene.stabilization.direct_image_prompts.clone(),
            audio: scene.audio.track.clone(),
        })
    }

    /// The audio variables' names (docs/design.md §12), in filter order;
    /// empty without `input_audio_filters`.
    pub fn audio_names(&self) -> &[String] {
        match &self.audio {
            Some(a) => a.names(),
            None => &[],
        }
    }

    /// The audio variables' values at frame index `frame_index` (0-based,
    /// the expressions' `f`), in the order of [`Timeline::audio_names`];
    /// 0 after the track's end.
    pub fn audio_values(&self, frame_index: u64) -> &[f64] {
        match &self.audio {
            Some(a) => a.values_at(frame_index as f64),
            None => &[],
        }
    }

    /// Optimisation steps of the whole timeline, `N·S` (pre-animation not included).
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// Number of video frames, `N·S / F`.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Number of scenes.
    pub fn scene_count(&self) -> usize {
        self.scene_count
    }

    /// Steps between frames (`F`).
    pub fn steps_per_frame(&self) -> u64 {
        self.steps_per_frame
    }

    /// The video frame rate, also the clock of `t`.
    pub fn frames_per_second(&self) -> f64 {
        self.fps
    }

    /// Snapshot interval in steps.
    pub fn save_every(&self) -> u64 {
        self.save_every
    }

    /// Steps on the first scene before frame 1 (not part of the timeline).
    pub fn pre_animation_steps(&self) -> u64 {
        self.pre_animation_steps
    }

    /// The parsed prompts, one list per scene.
    pub fn prompts(&self) -> &[Vec<Prompt>] {
        &self.prompts
    }

    /// The steps that make frame `k` (1-based): `[(k−1)·F, k·F)`.
    pub fn frame_steps(&self, k: u64) -> Range<u64> {
        let k = k.max(1);
        (k - 1) * self.steps_per_frame..k * self.steps_per_frame
    }

    /// The 1-based frame that step `s` belongs to.
    pub fn frame_of_step(&self, step: u64) -> u64 {
        step / self.steps_per_frame + 1
    }

    /// `t` in seconds at step `s`: `s / (F · fps)`.
    #[inline]
    pub fn t_at(&self, step: u64) -> f64 {
        step as f64 / (self.steps_per_frame as f64 * self.fps)
    }

    /// `f` (0-based frame index) at step `s`: `floor(s / F)`.
    #[inline]
    pub fn f_at(&self, step: u64) -> f64 {
        (step / self.steps_per_frame) as f64
    }

    /// Whether a snapshot PNG is due after step `s` (0-based).
    pub fn is_save_step(&self, step: u64) -> bool {
        (step + 1) % self.save_every == 0
    }

    /// The (at most two) scenes with non-zero weight at `step`, as
    /// `(scene, weight)` pairs; the weights sum to 1.
    #[inline]
    pub fn scene_mix(&self, step: u64) -> [(usize, f64); 2] {
        let s = self.steps_per_scene;
        let n = self.scene_count;
        let i = self.interpolation_steps;
        let j = ((step / s) as usize).min(n - 1);
        if i > 0 {
            match self.transition {
                Transition::Centered => {
                    let half = i as f64 / 2.0;
                    let x = step as f64;
                    // fade-out into the next scene
                    let b = ((j as u64 + 1) * s) as f64;
                    if j + 1 < n && x >= b - half {
                        let a = (x - (b - half)) / i as f64;
                        return [(j, 1.0 - a), (j + 1, a)];
                    }
                    // fade-in from the previous scene
                    let b = (j as u64 * s) as f64;
                    if j > 0 && x < b + half {
                        let a = (x - (b - half)) / i as f64;
                        return [(j - 1, 1.0 - a), (j, a)];
                    }
                }
                Transition::Pytti => {
                    let start = j as u64 * s;
                    if j > 0 && step < start + i {
                        let a = (step - start) as f64 / i as f64;
                        return [(j - 1, 1.0 - a), (j, a)];
                    }
                }
            }
        }
        [(j, 1.0), (j, 0.0)]
    }

    /// Every scene's weight at `step` (docs/design.md §3), one number per scene.
    pub fn scene_weights(&self, step: u64) -> Vec<f64> {
        let mut w = vec![0.0; self.scene_count];
        for (j, x) in self.scene_mix(step) {
            w[j] += x;
        }
        w
    }

    /// The mean of each scene's weight over the steps of frame `k` (1-based).
    ///
    /// Exact and O(1) in the frame length: the frame is cut where the
    /// transition formula changes branch (fade starts and ends); inside each
    /// piece the weights are linear in the step, so a piece's sum is its
    /// length times the mean of its first and last step's weights.
    pub fn frame_scene_weights(&self, k: u64) -> Vec<f64> {
        let mut w = vec![0.0; self.scene_count];
        let steps = self.frame_steps(k);
        let (a, b) = (steps.start, steps.end);
        let s = self.steps_per_scene;
        let i = self.interpolation_steps;
        let j = a / s; // a frame never crosses a scene boundary (S is a multiple of F)
        let mut cuts: Vec<u64> = Vec::with_capacity(4);
        if i > 0 {
            let half = i as f64 / 2.0;
            match self.transition {
                Transition::Centered => {
                    cuts.push((((j * s) as f64) + half).ceil() as u64);
                    cuts.push(((((j + 1) * s) as f64) - half).ceil() as u64);
                }
                Transition::Pytti => cuts.push(j * s + i),
            }
        }
        cuts.retain(|c| *c > a && *c < b);
        cuts.sort_unstable();
        cuts.push(b);
        let mut start = a;
        for end in cuts {
            if end <= start {
                continue;
            }
            let len = (end - start) as f64;
            for (sc, x) in self.scene_mix(start) {
                w[sc] += x * len / 2.0;
            }
            for (sc, x) in self.scene_mix(end - 1) {
                w[sc] += x * len / 2.0;
            }
            start = end;
        }
        let n = (b - a) as f64;
        for x in &mut w {
            *x /= n;
        }
        w
    }

    /// The prompts that count at `step` (scene weight > 0), with their
    /// weights and stops evaluated at the step's `t` and `f`.
    pub fn active_prompts(&self, step: u64) -> Vec<ActivePrompt> {
        let t = self.t_at(step);
        let f = self.f_at(step);
        let mut out = Vec::new();
        for (j, sw) in self.scene_mix(step) {
            if sw <= 0.0 {
                continue;
            }
            for (index, p) in self.prompts[j].iter().enumerate() {
                out.push(ActivePrompt {
                    scene: j,
                    index,
                    scene_weight: sw,
                    weight: p.weight.eval(t, f),
                    stop: p.stop_at(t, f),
                });
            }
        }
        out
    }

    /// The motion evaluated at the start of frame `frame_index` (0-based;
    /// `t = frame_index / fps`, `f = frame_index`): the warp that turns the
    /// previous frame into the starting image of this one. Frame index 0
    /// has no previous frame, so its value is reported but never applied.
    /// Identity when animation is off.
    pub fn motion(&self, frame_index: u64) -> Motion {
        if !self.animated {
            return Motion::default();
        }
        let f = frame_index as f64;
        let t = f / self.fps;
        let [tx, ty, r, zx, zy] = &self.motion;
        Motion {
            translate_x: tx.eval(t, f),
            translate_y: ty.eval(t, f),
            rotate_2d: r.eval(t, f),
            zoom_x_2d: zx.eval(t, f),
            zoom_y_2d: zy.eval(t, f),
        }
    }

    /// `loop_frames`: how many of the last frames the loop-closing loss
    /// acts on (0: no loop).
    pub fn loop_frames(&self) -> u64 {
        self.loop_frames
    }

    /// The loop-closing loss's weight for frame `k` (1-based; docs/design.md
    /// §6, "Seamless loops"): a line from 0 at frame `T − N` (the last frame
    /// without the pull) to `loop_weight` at the last frame `T`, so frame
    /// `T − N + j` weighs `loop_weight · j / N`; 0 outside the last `N`
    /// frames and when the loop is off.
    pub fn loop_weight(&self, k: u64) -> f64 {
        let (n, last) = (self.loop_frames, self.frames);
        if n == 0 || k > last || k + n <= last {
            return 0.0;
        }
        self.loop_weight * (k + n - last) as f64 / n as f64
    }

    /// The motions still to come after frame `k` (1-based) when the video
    /// loops: the warps into frames `k + 1 … T`, then the one warp more into
    /// frame `T + 1` (the first frame again), evaluated at that frame's
    /// index as if the video went on; in order. Identities when not
    /// animating.
    pub fn motions_after(&self, k: u64) -> Vec<Motion> {
        (k..=self.frames).map(|index| self.motion(index)).collect()
    }

    /// Everything `plan` shows about frame `k` (1-based).
    pub fn frame_plan(&self, k: u64) -> FramePlan {
        let steps = self.frame_steps(k);
        let scene_weights = self.frame_scene_weights(k);
        let t = self.t_at(steps.start);
        let f = self.f_at(steps.start);
        let mut prompts = Vec::new();
        for (j, w) in scene_weights.iter().enumerate() {
            if *w <= 0.0 {
                continue;
            }
            for p in &self.prompts[j] {
                let pw = p.weight.eval(t, f);
                if pw == 0.0 {
                    continue;
                }
                let stop = p.stop_at(t, f);
                let (kind, text) = match &p.source {
                    PromptSource::Text(s) => ("text", s.clone()),
                    PromptSource::Image(path) => ("image", path.display().to_string()),
                };
                prompts.push(PlanPrompt {
                    scene: j,
                    kind,
                    text,
                    weight: w * pw,
                    prompt_weight: pw,
                    stop: if stop == f64::NEG_INFINITY {
                        None
                    } else {
                        Some(stop)
                    },
                    mask: p.mask.code(),
                    mask_threshold: p.mask_threshold.as_ref().map(|m| m.eval(t, f)),
                });
            }
        }
        FramePlan {
            frame: k,
            steps: [steps.start, steps.end],
            t,
            scene_weights,
            prompts,
            motion: self.motion(k - 1),
            audio: AudioValues(
                self.audio_names()
                    .iter()
                    .cloned()
                    .zip(self.audio_values(k - 1).iter().copied())
                    .collect(),
            ),
            loop_weight: (self.loop_frames > 0).then(|| self.loop_weight(k)),
            direct_images: self
                .direct_images
                .iter()
                .map(|d| {
                    let stop = d.stop_at(t, f);
                    PlanDirectImage {
                        path: d.path.display().to_string(),
                        weight: d.weight.eval(t, f),
                        stop: (stop != f64::NEG_INFINITY).then_some(stop),
                    }
                })
                .collect(),
        }
    }
}

/// The audio variables of one frame, name and value in filter order; JSON:
/// an object `{"bass": 0.42, ...}` (empty without audio filters).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AudioValues(pub Vec<(String, f64)>);

impl AudioValues {
    /// Whether the scene has no audio variables.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `name`, if it is an audio variable.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

impl Serialize for AudioValues {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One prompt as `plan` reports it for a frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanPrompt {
    /// 0-based scene index (the position in `scene_weights`).
    pub scene: usize,
    /// `"text"` or `"image"`.
    pub kind: &'static str,
    /// The prompt text, or the image path for image prompts.
    pub text: String,
    /// Effective weight: the scene's mean weight over the frame × the
    /// prompt's weight at the frame's start.
    pub weight: f64,
    /// The prompt's own weight at the frame's start.
    pub prompt_weight: f64,
    /// The stop at the frame's start; `None` (JSON null) is −∞.
    pub stop: Option<f64>,
    /// The prompt's mask as written (`a` for none; docs/design.md §2a).
    pub mask: String,
    /// The mask threshold at the frame's start; `None` (JSON null) is
    /// pytti's default.
    pub mask_threshold: Option<f64>,
}

/// One row of the plan: frame `k`'s steps, time, weights, prompts, motion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FramePlan {
    /// 1-based frame number.
    pub frame: u64,
    /// `[start, end)` step range.
    pub steps: [u64; 2],
    /// Seconds at the frame's first step.
    pub t: f64,
    /// Mean weight of each scene over the frame's steps.
    pub scene_weights: Vec<f64>,
    /// Prompts with non-zero effective weight.
    pub prompts: Vec<PlanPrompt>,
    /// Motion evaluated at the frame's start.
    pub motion: Motion,
    /// The audio variables' values of the frame (constant within it);
    /// left out of the JSON when the scene has none.
    #[serde(skip_serializing_if = "AudioValues::is_empty")]
    pub audio: AudioValues,
    /// The loop-closing loss's weight over the frame (`loop_frames`); absent
    /// when the scene does not loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loop_weight: Option<f64>,
    /// Each `direct_image_prompts` entry's weight and stop at the frame's
    /// start; left out of the JSON when the scene has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub direct_images: Vec<PlanDirectImage>,
}

/// One `direct_image_prompts` entry in a frame's plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanDirectImage {
    /// The image's path (resolved against the scene file's folder).
    pub path: String,
    /// The weight at the frame's start.
    pub weight: f64,
    /// The stop at the frame's start; `None` (JSON null) is −∞.
    pub stop: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(extra: &str) -> Timeline {
        let text = format!("scenes = \"a || b\"\nsteps_per_scene = 1000\nsteps_per_frame = 50\ninterpolation_steps = 500\nseed = 1\n{extra}");
        Timeline::new(&Scene::from_str(&text, "t.toml").unwrap()).unwrap()
    }

    #[test]
    fn centered_weights() {
        let tl = timeline("");
        assert_eq!(tl.frames(), 40);
        assert_eq!(tl.scene_weights(749), vec![1.0, 0.0]);
        assert_eq!(tl.scene_weights(750), vec![1.0, 0.0]);
        assert_eq!(tl.scene_weights(1000), vec![0.5, 0.5]);
        assert_eq!(tl.scene_weights(1250), vec![0.0, 1.0]);
        let w = tl.scene_weights(875);
        assert!((w[0] - 0.75).abs() < 1e-12 && (w[1] - 0.25).abs() < 1e-12);
    }

    #[test]
    fn pytti_weights() {
        let tl = timeline("transition = \"pytti\"");
        assert_eq!(tl.scene_weights(999), vec![1.0, 0.0]);
        assert_eq!(tl.scene_weights(1000), vec![1.0, 0.0]);
        assert_eq!(tl.scene_weights(1250), vec![0.5, 0.5]);
        assert_eq!(tl.scene_weights(1500), vec![0.0, 1.0]);
    }

    #[test]
    fn frame_means_match_brute_force() {
        for (tr, i, f) in [
            ("centered", 500, 50),
            ("centered", 333, 50),
            ("centered", 1000, 50),
            ("centered", 7, 1),
            ("pytti", 333, 50),
            ("pytti", 1000, 250),
            ("centered", 999, 1000),
        ] {
            let text = format!("scenes = \"a || b || c\"\nsteps_per_scene = 1000\nsteps_per_frame = {f}\ninterpolation_steps = {i}\ntransition = \"{tr}\"\nseed = 1");
            let tl = Timeline::new(&Scene::from_str(&text, "t.toml").unwrap()).unwrap();
            for k in 1..=tl.frames() {
                let fast = tl.frame_scene_weights(k);
                let mut slow = vec![0.0; 3];
                for step in tl.frame_steps(k) {
                    for (x, y) in slow.iter_mut().zip(tl.scene_weights(step)) {
                        *x += y / f as f64;
                    }
                }
                for (x, y) in fast.iter().zip(&slow) {
                    assert!(
                        (x - y).abs() < 1e-9,
                        "{tr} I={i} F={f} frame {k}: {fast:?} vs {slow:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn time_and_motion() {
        let tl = timeline(
            "animation_mode = \"2D\"\nzoom_x_2d = \"t\"\ntranslate_x = \"0:(0), 10:(10)\"",
        );
        assert_eq!(tl.t_at(600), 1.0);
        assert_eq!(tl.frame_steps(3), 100..150);
        let m = tl.motion(12);
        assert_eq!(m.zoom_x_2d, 1.0);
        assert_eq!(m.translate_x, 10.0);
        assert_eq!(tl.motion(5).translate_x, 5.0);
    }

    #[test]
    fn loop_weight_ramps_over_the_last_frames() {
        // 40 frames; the last 4 weigh 2, 4, 6, 8 (loop_weight 8).
        let tl = timeline("loop_frames = 4\nloop_weight = 8");
        let w: Vec<f64> = (35..=40).map(|k| tl.loop_weight(k)).collect();
        assert_eq!(w, vec![0.0, 0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(tl.loop_weight(1), 0.0);
        assert_eq!(tl.frame_plan(40).loop_weight, Some(8.0));
        assert_eq!(tl.frame_plan(36).loop_weight, Some(0.0));
        let one = timeline("loop_frames = 1\nloop_weight = 3");
        assert_eq!((one.loop_weight(39), one.loop_weight(40)), (0.0, 3.0));
        let off = timeline("loop_weight = 3");
        assert_eq!(off.loop_weight(40), 0.0);
        assert_eq!(off.frame_plan(40).loop_weight, None);
    }

    #[test]
    fn motions_after_run_one_frame_past_the_end() {
        let tl = timeline("animation_mode = \"2D\"\ntranslate_x = \"f\"\nloop_frames = 3");
        let xs: Vec<f64> = tl.motions_after(38).iter().map(|m| m.translate_x).collect();
        // The warps into frames 39 and 40 (indices 38, 39), then into frame 41 (index 40).
        assert_eq!(xs, vec![38.0, 39.0, 40.0]);
        assert_eq!(tl.motions_after(40).len(), 1);
    }
}

//! The dry run's promise (docs/design.md §4): every number `render` would evaluate is
//! checked before anything loads, at every step and frame where `render`
//! evaluates it, so a scene that `plan` accepts never fails half-way through
//! a render on a bad value.
//!
//! What `render` refuses, and so what is checked here:
//!
//! - a prompt weight, or a `direct_*`/`semantic_*` weight, that is not a
//!   finite number (also in single precision, the precision the step's weight
//!   table holds), and a stop that is NaN — at every step where the render
//!   evaluates it ([`weight_rule`]);
//! - a motion value that is not finite, or a zoom that leaves no source
//!   window (`zoom_x_2d ≥ width`) — at every frame the motion is applied
//!   ([`Motion::check`]).
//!
//! A value is evaluated as often as it can change: once when constant, once
//! per frame when it does not read `t` (keyframes and expressions in `f`),
//! at every step otherwise; identical expressions are evaluated once. The
//! first bad step (or frame) is reported with the value.

use std::collections::HashSet;
use std::ops::Range;

use super::{Motion, Timeline};
use crate::scene::{Param, Scene, WeightSpec};
use crate::{Error, Result};

/// The rule every loss weight and stop obeys, at the step it is used:
/// the weight finite in single precision too (the step's weight table is
/// float32, where an overflowing weight would turn the loss into NaN), the
/// stop a number (±∞ allowed: −∞ is "no stop"). `Err` says what is wrong.
pub fn weight_rule(weight: f64, stop: Option<f64>) -> std::result::Result<(), String> {
    if !weight.is_finite() || !(weight as f32).is_finite() {
        return Err(format!(
            "the weight evaluated to {weight}; weights must be finite numbers (check the \
             expression for divisions by zero or overflow)"
        ));
    }
    if stop.is_some_and(f64::is_nan) {
        return Err(
            "the stop evaluated to NaN; stops must be numbers (check the expression)".into(),
        );
    }
    Ok(())
}

impl Motion {
    /// Checks that this motion can be applied to a `width × height` frame:
    /// every value finite, and each zoom leaving a source window
    /// (`size − zoom > 0`). `Err` says which setting and why.
    pub fn check(&self, width: f64, height: f64) -> Result<()> {
        for (name, v) in self.named() {
            if !v.is_finite() {
                return Err(Error::input(format!(
                    "{name} evaluated to {v}; motion values must be finite numbers"
                )));
            }
        }
        for (name, z, size) in [
            ("zoom_x_2d", self.zoom_x_2d, width),
            ("zoom_y_2d", self.zoom_y_2d, height),
        ] {
            if size - z <= 0.0 {
                return Err(Error::input(format!(
                    "{name} = {z} leaves no source window on a frame {size} pixels across \
                     (the window is {size} − {z} pixels); keep {name} below {size}"
                )));
            }
        }
        Ok(())
    }

    /// The five values with their setting names.
    pub fn named(&self) -> [(&'static str, f64); 5] {
        [
            ("translate_x", self.translate_x),
            ("translate_y", self.translate_y),
            ("rotate_2d", self.rotate_2d),
            ("zoom_x_2d", self.zoom_x_2d),
            ("zoom_y_2d", self.zoom_y_2d),
        ]
    }
}

/// One weight the render evaluates: what to call it, its weight and stop,
/// and the steps where it is evaluated.
struct Weighted<'a> {
    label: String,
    weight: &'a Param,
    stop: Option<&'a Param>,
    steps: Range<u64>,
}

impl Timeline {
    /// Checks every weight, stop and motion value of `scene` (compiled into
    /// this timeline) wherever the render evaluates it (module docs). The
    /// error names the scene file, the prompt or setting, the first frame
    /// and step where the value goes bad, and the value.
    pub fn check_values(&self, scene: &Scene) -> Result<()> {
        let mut seen = HashSet::new();
        for w in weighted(scene, self) {
            let key = (
                w.weight.source().to_string(),
                w.stop.map(|s| s.source().to_string()),
                w.steps.clone(),
            );
            if !seen.insert(key) {
                continue;
            }
            self.check_weighted(&w)
                .map_err(|e| Error::input(format!("{}: {}: {e}", scene.origin, w.label)))?;
        }
        if self.animated {
            let (width, height) = (scene.image.width as f64, scene.image.height as f64);
            // Frame k ≥ 2 starts from the previous frame warped by motion(k − 1).
            for index in 1..self.frames {
                self.motion(index).check(width, height).map_err(|e| {
                    Error::input(format!(
                        "{}: at frame {} (t = {:.3} s): {}",
                        scene.origin,
                        index + 1,
                        index as f64 / self.fps,
                        e.message
                    ))
                })?;
            }
            // A loop's target is carried back through one warp more, into the
            // frame after the last (Timeline::motions_after).
            if self.loop_frames > 0 {
                let index = self.frames;
                self.motion(index).check(width, height).map_err(|e| {
                    Error::input(format!(
                        "{}: loop_frames: the loop closes with the motion at frame {} \
                         (t = {:.3} s), the frame after the last: {}",
                        scene.origin,
                        index + 1,
                        index as f64 / self.fps,
                        e.message
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// The first step of `w.steps` where its weight or stop breaks the rule.
    fn check_weighted(&self, w: &Weighted<'_>) -> std::result::Result<(), String> {
        let at = |step: u64| {
            let (t, f) = (self.t_at(step), self.f_at(step));
            weight_rule(w.weight.eval(t, f), w.stop.map(|s| s.eval(t, f))).map_err(|e| {
                format!(
                    "at step {step} (frame {}, t = {t:.3} s): {e}",
                    self.frame_of_step(step)
                )
            })
        };
        let constant =
            w.weight.as_constant().is_some() && w.stop.is_none_or(|s| s.as_constant().is_some());
        let per_step =
            w.weight.varies_within_frame() || w.stop.is_some_and(Param::varies_within_frame);
        if w.steps.is_empty() {
            return Ok(());
        }
        if constant {
            return at(w.steps.start);
        }
        if per_step {
            return w.steps.clone().try_for_each(at);
        }
        // Once per frame: the frame's first step inside the range.
        let spf = self.steps_per_frame;
        let mut step = w.steps.start;
        while step < w.steps.end {
            at(step)?;
            step = (step / spf + 1).saturating_mul(spf);
        }
        Ok(())
    }
}

/// Every weight of `scene` with the steps where the render evaluates it:
/// the prompts of every scene at every step (pre-animation steps use step
/// 0's values); the init weights until the first frame boundary when
/// animating, else throughout; the stabilisation weights wherever a target
/// exists (from step 0 with an init image, else from frame 2 on when
/// animating).
fn weighted<'a>(scene: &'a Scene, tl: &Timeline) -> Vec<Weighted<'a>> {
    let all = 0..tl.total_steps;
    let mut out = Vec::new();
    for (j, prompts) in scene.prompts.iter().enumerate() {
        for p in prompts {
            out.push(Weighted {
                label: format!("scene {}, prompt \"{}\"", j + 1, p.raw),
                weight: &p.weight,
                stop: p.stop.as_ref(),
                steps: all.clone(),
            });
            if let Some(th) = &p.mask_threshold {
                out.push(Weighted {
                    label: format!("scene {}, prompt \"{}\", its mask threshold", j + 1, p.raw),
                    weight: th,
                    stop: None,
                    steps: all.clone(),
                });
            }
        }
    }
    let first_frame = tl.frame_steps(1);
    let init_steps = if scene.is_animated() {
        0..first_frame.end.min(tl.total_steps)
    } else {
        all.clone()
    };
    let stab_steps = match (&scene.stabilization.init_image, scene.is_animated()) {
        (Some(_), _) => all.clone(),
        (None, true) => first_frame.end.min(tl.total_steps)..tl.total_steps,
        (None, false) => 0..0,
    };
    let specs: [(&str, &Option<WeightSpec>, &Range<u64>); 5] = [
        (
            "direct_init_weight",
            &scene.stabilization.direct_init_weight,
            &init_steps,
        ),
        (
            "semantic_init_weight",
            &scene.stabilization.semantic_init_weight,
            &init_steps,
        ),
        (
            "direct_stabilization_weight",
            &scene.stabilization.direct_stabilization_weight,
            &stab_steps,
        ),
        (
            "semantic_stabilization_weight",
            &scene.stabilization.semantic_stabilization_weight,
            &stab_steps,
        ),
        (
            "smoothing_weight",
            &scene.stabilization.smoothing_weight,
            &all,
        ),
    ];
    for d in &scene.stabilization.direct_image_prompts {
        out.push(Weighted {
            label: format!("direct_image_prompts \"{}\"", d.raw),
            weight: &d.weight,
            stop: d.stop.as_ref(),
            steps: all.clone(),
        });
    }
    for (name, spec, steps) in specs {
        if let Some(spec) = spec {
            out.push(Weighted {
                label: name.to_string(),
                weight: &spec.weight,
                stop: spec.stop.as_ref(),
                steps: steps.clone(),
            });
        }
    }
    out
}

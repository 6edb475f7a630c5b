//! The plan document: what `zoetrope plan --format json` prints and what a
//! render can record as its schedule.
//!
//! It serializes straight from the [`Timeline`], one frame at a time, so a
//! 100,000-frame plan is never held in memory as a whole.

use super::{FramePlan, Timeline};
use crate::scene::Scene;
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

/// A scene's plan: run totals plus one [`FramePlan`] per frame.
///
/// JSON fields: `scene` (origin), `total_steps`, `frames`, `fps`, `width`,
/// `height`, `steps_per_frame`, `steps_per_scene`, `interpolation_steps`,
/// `transition`, `save_every`, `pre_animation_steps`, `seed`,
/// `animation_mode`, `scenes` (each scene's prompts as written), `warnings`,
/// with a memory estimate `memory_estimate_mib` (`{"cpu": MiB, "cuda":
/// MiB}`, nulls when unknown) and `memory_estimate` (its details), and
/// `timeline` (the frames).
pub struct PlanDocument<'a, M> {
    pub scene: &'a Scene,
    pub timeline: &'a Timeline,
    /// The render's peak memory, when estimated.
    pub memory: Option<&'a M>,
}

/// What a plan records of the render's estimated peak memory. The estimator
/// knows the models, which the schedule does not, so it comes in from above.
pub trait MemoryFields {
    type Mib: Serialize;
    type Details: Serialize;
    /// `{"cpu": MiB, "cuda": MiB}`, nulls when unknown.
    fn mib(&self) -> Self::Mib;
    /// How the estimate was reached.
    fn details(&self) -> Self::Details;
}

struct Frames<'a>(&'a Timeline);

impl Serialize for Frames<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((1..=self.0.frames()).map(|k| self.0.frame_plan(k)))
    }
}

impl<M> PlanDocument<'_, M> {
    /// Every frame's plan, collected (for tables, CSV and charts).
    pub fn rows(&self) -> Vec<FramePlan> {
        (1..=self.timeline.frames())
            .map(|k| self.timeline.frame_plan(k))
            .collect()
    }
}

impl<M: MemoryFields> Serialize for PlanDocument<'_, M> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sc = self.scene;
        let tl = self.timeline;
        let scenes: Vec<Vec<&str>> = sc
            .prompts
            .iter()
            .map(|p| p.iter().map(|p| p.raw.as_str()).collect())
            .collect();
        let mut st = s.serialize_struct("Plan", 19)?;
        st.serialize_field("scene", &sc.origin)?;
        st.serialize_field("total_steps", &tl.total_steps())?;
        st.serialize_field("frames", &tl.frames())?;
        st.serialize_field("fps", &sc.timing.frames_per_second)?;
        st.serialize_field("width", &sc.image.width)?;
        st.serialize_field("height", &sc.image.height)?;
        st.serialize_field("steps_per_frame", &sc.timing.steps_per_frame)?;
        st.serialize_field("steps_per_scene", &sc.timing.steps_per_scene)?;
        st.serialize_field("interpolation_steps", &sc.timing.interpolation_steps)?;
        st.serialize_field("transition", &sc.timing.transition)?;
        st.serialize_field("save_every", &tl.save_every())?;
        st.serialize_field("pre_animation_steps", &tl.pre_animation_steps())?;
        st.serialize_field("seed", &sc.optimizer.seed)?;
        st.serialize_field("animation_mode", &sc.motion.animation_mode)?;
        st.serialize_field("scenes", &scenes)?;
        st.serialize_field("warnings", &sc.warnings)?;
        if let Some(m) = self.memory {
            st.serialize_field("memory_estimate_mib", &m.mib())?;
            st.serialize_field("memory_estimate", &m.details())?;
        }
        st.serialize_field("timeline", &Frames(tl))?;
        st.end()
    }
}

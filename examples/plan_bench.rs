//! In-process timing of the plan for a 100,000-frame scene (load, compile
//! and JSON for every frame) without the process start-up, which for the
//! `zoetrope` binary is dominated by loading libtorch.
//!
//!     cargo run --example plan_bench
//!
//! The scene is `benches/plan_long.toml`, the one `benches/plan_bench.sh`
//! times: 10 scenes × 50,000 steps, 5 steps per frame, 20,000-step centred
//! fades, expression prompt weights and expression/keyframe motion. Prints
//! the best of 5, and the best of 5 of the dry run's value checks alone
//! (`render::preflight::check`: every weight at every step where it can
//! change, every motion value at every frame, every prompt's length), which
//! `zoetrope plan` runs before writing the plan.

use std::time::Instant;
use zoetrope::scene::Scene;
use zoetrope::schedule::{PlanDocument, Timeline};

fn main() -> zoetrope::Result<()> {
    let text = include_str!("../benches/plan_long.toml");
    let mut best = f64::INFINITY;
    let mut bytes = 0;
    let mut frames = 0;
    let mut best_check = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        let scene = Scene::from_str(text, "plan_long.toml")?;
        let tl = Timeline::new(&scene)?;
        let check = Instant::now();
        zoetrope::render::preflight::check(&scene, &tl)?;
        best_check = best_check.min(check.elapsed().as_secs_f64());
        let mut out = Vec::with_capacity(100 << 20);
        serde_json::to_writer(
            &mut out,
            &PlanDocument {
                scene: &scene,
                timeline: &tl,
                memory: None::<&zoetrope::render::memory::MemoryEstimate>,
            },
        )
        .map_err(|e| zoetrope::Error::internal(e.to_string()))?;
        best = best.min(start.elapsed().as_secs_f64());
        bytes = out.len();
        frames = tl.frames();
    }
    println!(
        "frames: {frames}, JSON: {bytes} bytes, best of 5: {best:.3} s \
         (of which the value checks {best_check:.3} s)"
    );
    Ok(())
}

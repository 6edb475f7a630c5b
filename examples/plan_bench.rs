//! In-process timing of the plan for a 100,000-frame scene (load, compile
//! and JSON for every frame) without the process start-up, which for the
//! `zoetrope` binary is dominated by loading libtorch.
//!
//!     cargo run --example plan_bench
//!
//! The scene is the one `benches/plan_bench.sh` writes: 10 scenes × 50,000
//! steps, 5 steps per frame, 20,000-step centred fades, expression prompt
//! weights and expression/keyframe motion. Prints the best of 5.

use std::time::Instant;
use zoetrope::scene::Scene;
use zoetrope::schedule::{PlanDocument, Timeline};

fn main() -> zoetrope::Result<()> {
    let scenes: Vec<String> = (1..=10)
        .map(|i| format!("scene number {i}, oil painting:1 + 0.5*sin(t) | detail {i}:0.3:0.1"))
        .collect();
    let text = format!(
        r#"scenes = "{}"
scene_suffix = " | text:-1:-.9 | watermark:-1:-.9"
steps_per_scene = 50000
steps_per_frame = 5
interpolation_steps = 20000
frames_per_second = 24
animation_mode = "2D"
translate_x = "2*sin(2*pi*t/10)"
zoom_x_2d = "0:(1), 50000:(3), 100000:(0)"
zoom_y_2d = "clamp(f/1000, 0, 2)"
rotate_2d = "0.1*cos(t)"
seed = 1
"#,
        scenes.join(" || ")
    );
    let mut best = f64::INFINITY;
    let mut bytes = 0;
    let mut frames = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let scene = Scene::from_str(&text, "long.toml")?;
        let tl = Timeline::new(&scene)?;
        let mut out = Vec::with_capacity(100 << 20);
        serde_json::to_writer(
            &mut out,
            &PlanDocument {
                scene: &scene,
                timeline: &tl,
            },
        )
        .map_err(|e| zoetrope::Error::internal(e.to_string()))?;
        best = best.min(start.elapsed().as_secs_f64());
        bytes = out.len();
        frames = tl.frames();
    }
    println!("frames: {frames}, JSON: {bytes} bytes, best of 5: {best:.3} s");
    Ok(())
}

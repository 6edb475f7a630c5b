//! Any text as a scene file: loading must return Ok or an input error, never
//! panic; a loaded scene must compile to a timeline, plan its first, middle
//! and last frames, pass or fail the dry run's value checks without
//! panicking (for timelines of up to a million steps, so that one input
//! stays fast), and its resolved settings must load back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zoetrope_fuzz::scene::Scene;
use zoetrope_fuzz::schedule::Timeline;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(scene) = Scene::from_str(text, "fuzz.toml") else {
        return;
    };
    let tl = Timeline::new(&scene).expect("a loaded scene compiles");
    let n = tl.frames();
    for k in [1, n / 2 + 1, n] {
        let row = tl.frame_plan(k);
        assert_eq!(row.scene_weights.len(), tl.scene_count());
        let sum: f64 = row.scene_weights.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "weights sum to {sum}");
    }
    if tl.total_steps() <= 1_000_000 {
        let _ = tl.check_values(&scene);
    }
    let written = scene.to_toml().expect("resolved settings serialize");
    let back = Scene::from_str(&written, "fuzz.toml")
        .unwrap_or_else(|e| panic!("written settings reload: {e}\n{written}"));
    assert_eq!(back.prompts.len(), scene.prompts.len());
});

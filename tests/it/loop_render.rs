//! Seamless loops (`loop_frames`, `loop_weight`) through the binary on the
//! untrained tiny models: the loop shrinks the jump from the last frame back
//! to the first, `plan` shows the ramp, and bad values are clear errors.
//! (Resuming a looped run after `kill -9` is tested in `render_e2e`.)
#![cfg(feature = "video")]

use crate::support::{render_ok, run_tiny as run, stderr, write_scene};
use std::path::{Path, PathBuf};
use zoetrope::output::loop_jump::loop_jump;

/// 8 frames of 5 steps, a zoom and a drift: without a loop the last frame
/// is far from the first. The Unlimited Palette, whose pixels move only as
/// far as the steps take them: with the tiny VQGAN every frame differs from
/// the last about as much as the last from the first (mean |Δ| ≈ 39 both,
/// loop or not), so there is no jump for a loop to close.
const SCENE: &str = r#"
scenes = "a lighthouse on a rocky coast || a red sunset over the sea"
perceptors = ["tiny-clip"]
image_model = "Unlimited Palette"
width = 64
height = 32
steps_per_scene = 20
steps_per_frame = 5
interpolation_steps = 10
frames_per_second = 6
cutouts = 6
cut_pow = 1
animation_mode = "2D"
zoom_x_2d = 2
zoom_y_2d = 1
translate_x = 1
seed = 3
"#;

fn render(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let text = format!("{SCENE}\nfile_namespace = \"{name}\"\n{extra}\n");
    let scene = write_scene(dir, &format!("{name}.toml"), &text);
    let out = dir.join("out");
    render_ok(&scene, &out);
    out.join(name)
}

#[test]
fn the_loop_shrinks_the_jump_from_the_last_frame_to_the_first() {
    let t = tempfile::tempdir().unwrap();
    let plain = loop_jump(&render(t.path(), "plain", "")).unwrap();
    let looped_dir = render(t.path(), "looped", "loop_frames = 3\nloop_weight = 20");
    let looped = loop_jump(&looped_dir).unwrap();
    // (BENCHMARKS.md, "Seamless loops", quotes this line.)
    eprintln!("without the loop: {plain:?}\nwith loop_frames = 3, loop_weight = 20: {looped:?}");
    assert_eq!((plain.frames, looped.frames), (8, 8));
    // The first frames are the same render until the loop starts (frame 6).
    for k in 1..=5 {
        let name = format!("frame_{k:05}.png");
        assert_eq!(
            std::fs::read(t.path().join("out/plain").join(&name)).unwrap(),
            std::fs::read(looped_dir.join(&name)).unwrap(),
            "{name}"
        );
    }
    // Measured: 75.7 without, 62.8 with (BENCHMARKS.md, "Seamless loops").
    assert!(
        looped.closing < 0.9 * plain.closing,
        "closing jump with the loop {looped:?}, without {plain:?}"
    );
    assert!(
        looped.ratio() < plain.ratio(),
        "with the loop {looped:?}, without {plain:?}"
    );
    // The settings record both, and the run's schedule the ramp.
    let settings = std::fs::read_to_string(looped_dir.join("settings.toml")).unwrap();
    assert!(
        settings.contains("loop_frames = 3") && settings.contains("loop_weight = 20"),
        "{settings}"
    );
}

#[test]
fn plan_shows_the_loop_weight_per_frame() {
    let t = tempfile::tempdir().unwrap();
    let text = format!("{SCENE}\nloop_frames = 4\nloop_weight = 8\n");
    let scene = write_scene(t.path(), "plan.toml", &text);
    let scene = scene.to_str().unwrap();
    let o = run(&["plan", scene, "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let weights: Vec<f64> = plan["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["loop_weight"].as_f64().unwrap())
        .collect();
    assert_eq!(weights, vec![0.0, 0.0, 0.0, 0.0, 2.0, 4.0, 6.0, 8.0]);
    let o = run(&["plan", scene, "--format", "csv"]);
    let csv = String::from_utf8(o.stdout).unwrap();
    let mut lines = csv.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = head.iter().position(|h| *h == "loop_weight").unwrap();
    let last: Vec<&str> = lines.last().unwrap().split(',').collect();
    assert_eq!(last[col], "8");
    let o = run(&["plan", scene]);
    let table = String::from_utf8(o.stdout).unwrap();
    assert!(table.contains("loop_frames = 4"), "{table}");
    let row = table.lines().last().unwrap();
    assert!(row.contains("  8.000"), "{row}");
    // Without a loop, the plan has no loop column.
    let plain = write_scene(t.path(), "plain.toml", SCENE);
    let o = run(&["plan", plain.to_str().unwrap(), "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(plan["timeline"][0].get("loop_weight").is_none());
}

#[test]
fn bad_loop_settings_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let cases = [
        ("loop_frames = 8", "loop_frames", "from 1 to 7"),
        ("loop_frames = 2.5", "loop_frames", "whole number"),
        ("loop_weight = -1", "loop_weight", "from 0"),
        // Valid on every frame, but not on the one after the last, which the
        // loop's last warp uses.
        (
            "loop_frames = 2\nzoom_x_2d = \"0:(0), 7:(0), 8:(100)\"",
            "loop_frames",
            "zoom_x_2d = 100",
        ),
    ];
    for (i, (extra, setting, says)) in cases.iter().enumerate() {
        let text = format!("{SCENE}\n{extra}\n").replace("zoom_x_2d = 2\n", "");
        let scene = write_scene(t.path(), &format!("bad{i}.toml"), &text);
        let o = run(&["plan", scene.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{extra}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(setting) && err.contains(says) && err.contains(&format!("bad{i}.toml")),
            "{extra}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

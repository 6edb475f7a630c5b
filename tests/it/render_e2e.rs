//! `zoetrope render` end to end on the untrained tiny models (`weights tiny`):
//! frames, MP4, run files, determinism, kill -9 and resume (of a looping
//! scene), Ctrl-C, stabilisation, and the errors a user hits.
#![cfg(feature = "video")]

use crate::support::{
    frames_of, has_frame, kill_when, render_ok, run_tiny as run, stderr,
    tiny_weights as weights_dir, write_scene,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zoetrope::output::frames::read_rgb;
use zoetrope::output::video::read_mp4;

fn zoetrope(args: &[&str], weights: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zoetrope"));
    c.args(args)
        .env("ZOETROPE_WEIGHTS", weights)
        // One thread: the same arithmetic whatever else the machine runs.
        .env("OMP_NUM_THREADS", "1");
    c
}

/// Two scenes, 6 frames of 4 steps, zoom + translation + rotation.
const ANIMATED: &str = r#"
scenes = "a lighthouse on a rocky coast || a red sunset over the sea"
scene_suffix = " | blurry:-0.5:-0.9"
perceptors = ["tiny-clip"]
vqgan_model = "tiny-vqgan"
width = 64
height = 32
steps_per_scene = 12
steps_per_frame = 4
interpolation_steps = 4
frames_per_second = 6
cutouts = 6
cut_pow = 1
animation_mode = "2D"
zoom_x_2d = 2
zoom_y_2d = 1
translate_x = 1
translate_y = -1
rotate_2d = "2*sin(t)"
seed = 42
"#;

#[test]
fn animated_render_writes_frames_mp4_and_run_files() {
    let t = tempfile::tempdir().unwrap();
    let scene = write_scene(t.path(), "anim.toml", ANIMATED);
    let out = t.path().join("out");
    let o = run(&[
        "render",
        scene.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--tune",
        "low-precision-cutouts=off",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = out.join("anim");
    let mp4 = read_mp4(&dir.join("anim.mp4")).unwrap();
    assert_eq!(mp4.frames.len(), 6);
    assert_eq!((mp4.width, mp4.height), (64, 32));
    assert!((mp4.fps - 6.0).abs() < 1e-6, "fps {}", mp4.fps);
    assert!(
        mp4.comment
            .as_deref()
            .unwrap_or("")
            .contains("a lighthouse on a rocky coast"),
        "{:?}",
        mp4.comment
    );
    for (k, decoded) in mp4.frames.iter().enumerate() {
        let png = read_rgb(&dir.join(format!("frame_{:05}.png", k + 1))).unwrap();
        assert_eq!(png.dimensions(), decoded.dimensions());
        let mae: f64 = png
            .as_raw()
            .iter()
            .zip(decoded.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / png.as_raw().len() as f64;
        // The tiny models' imagery is high-frequency noise, H.264's worst case.
        assert!(mae < 24.0, "frame {}: mean abs error {mae}", k + 1);
    }
    // Consecutive frames differ (the optimisation and the warp move them).
    let f = frames_of(&dir, 6);
    assert!(f.windows(2).all(|w| w[0] != w[1]));

    let settings = std::fs::read_to_string(dir.join("settings.toml")).unwrap();
    assert!(settings.contains("seed = 42"), "{settings}");
    let schedule: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("schedule.json")).unwrap()).unwrap();
    assert_eq!(schedule.as_array().unwrap().len(), 6);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["seed"], 42);
    assert_eq!(meta["frames"].as_array().unwrap().len(), 6);
    let switches = meta["speed_switches"].as_str().unwrap();
    assert!(switches.contains("low-precision-cutouts=off"), "{switches}");
    assert!(switches.contains("cuda-graphs=on"), "{switches}");
    // On the CPU there is no GPU memory to report.
    assert!(meta["gpu_peak_allocated_mib"].is_null(), "{meta}");
    assert!(
        meta["weights"][0]["sha256"].as_str().unwrap().len() == 64,
        "{meta}"
    );
    assert_eq!(meta["weights"][0]["untrained"], true, "{meta}");

    // allow_overwrite = false: a second run goes to a new folder.
    let o = run(&[
        "render",
        scene.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("anim_2/frame_00006.png").is_file());
    // Same seed, same device: the same frames.
    assert_eq!(frames_of(&dir, 6), frames_of(&out.join("anim_2"), 6));
}

#[test]
fn killed_render_resumes_to_the_same_frames() {
    let t = tempfile::tempdir().unwrap();
    // Slow enough per frame that the kill lands inside the run. pytti's
    // cutout augmentations are on (the default), the cutouts go through the
    // perceptor in two passes, there are prompt masks of each kind
    // (geometric, image, semantic) and a location-aware image prompt (its
    // cuts drawn with the render's seed): all draw from or depend on the
    // render's seeded rng and must resume exactly.
    // The scene also loops over its last 4 frames: a resumed run must
    // recover the first frame (the loop's target) exactly, from its PNG.
    let text = ANIMATED
        .replace("steps_per_scene = 12", "steps_per_scene = 24")
        .replace("steps_per_frame = 4", "steps_per_frame = 8")
        .replace("interpolation_steps = 4", "interpolation_steps = 8")
        .replace(
            "cutouts = 6",
            "cutouts = 6\ngradient_accumulation_steps = 2",
        )
        .replace(
            "blurry:-0.5:-0.9",
            "blurry:-0.5_u_0.4:-0.9 | a lamp:1_[mask.png] | waves:1_a storm | [mask.png]:0.5",
        )
        + "loop_frames = 4\nloop_weight = 20\n";
    image::RgbImage::from_fn(64, 32, |x, y| image::Rgb([((x + y) * 4) as u8; 3]))
        .save(t.path().join("mask.png"))
        .unwrap();
    let scene = write_scene(t.path(), "killed.toml", &text);
    let whole = t.path().join("whole");
    // Both runs with a switch off its default; the resume is given none and
    // must take the run's own (state.json records them).
    let o = run(&[
        "render",
        scene.to_str().unwrap(),
        "--out",
        whole.to_str().unwrap(),
        "--tune",
        "deterministic=on",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = frames_of(&whole.join("killed"), 6);
    let settings = std::fs::read_to_string(whole.join("killed").join("settings.toml")).unwrap();
    assert!(
        settings.contains("cutout_augs = \"pytti\"")
            && settings.contains("gradient_accumulation_steps = 2"),
        "{settings}"
    );

    // A pseudo-random kill point: after frame 1..=4 is on disk, plus a delay.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let after = 1 + (nanos % 4) as usize;
    let extra = Duration::from_millis(nanos % 300);
    let broken = t.path().join("broken");
    let child = zoetrope(
        &[
            "render",
            scene.to_str().unwrap(),
            "--out",
            broken.to_str().unwrap(),
            "-q",
            "--tune",
            "deterministic=on",
        ],
        weights_dir(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let dir = broken.join("killed");
    // (state.json appears just after frame 1's PNG; before it there is no
    // run to resume.) Then a little more, so the kill lands anywhere in the
    // next frame.
    let reached = std::cell::Cell::new(None);
    kill_when(child, &format!("frame {after}"), || {
        if reached.get().is_none() && has_frame(&dir, after) {
            reached.set(Some(Instant::now()));
        }
        reached.get().is_some_and(|at| at.elapsed() >= extra)
    });
    // The worst moment to die: the next frame's tensors are on disk but
    // state.json still names the last complete frame. Resume must use the
    // tensors state.json names, not the newer file.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    let done = state["frames_done"].as_u64().unwrap();
    std::fs::write(
        dir.join(format!("state_{:05}.safetensors", done + 1)),
        b"half-written",
    )
    .unwrap();
    // A recorded switch with a bad value: a clear error naming the file and
    // the way out, and the run left as it was.
    let state_text = std::fs::read_to_string(dir.join("state.json")).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&state_text).unwrap();
    let recorded = state["speed_switches"].as_str().unwrap().to_string();
    state["speed_switches"] = serde_json::json!("deterministic=on cuda-graphs=maybe");
    std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
    let o = run(&["render", "--resume", dir.to_str().unwrap(), "-q"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("state.json") && err.contains("maybe") && err.contains("--tune"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A switch this build does not have (removed since the run began): the
    // resume warns, goes on without it, and keeps the recorded others.
    state["speed_switches"] = serde_json::json!(format!("{recorded} reduced-group-norm=on"));
    std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
    let o = run(&["render", "--resume", dir.to_str().unwrap(), "-q"]);
    assert!(
        o.status.success(),
        "kill after frame {after}: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("warning") && stderr(&o).contains("reduced-group-norm"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        frames_of(&dir, 6),
        reference,
        "killed after frame {after} + {extra:?}"
    );
    let mp4 = read_mp4(&dir.join("killed.mp4")).unwrap();
    assert_eq!(mp4.frames.len(), 6);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    let switches = meta["speed_switches"].as_str().unwrap();
    assert!(switches.contains("deterministic=on"), "{switches}");
    // Resuming a finished run does nothing.
    let o = run(&["render", "--resume", dir.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("already complete"), "{}", stderr(&o));
}

#[test]
fn ctrl_c_stops_cleanly_with_a_playable_mp4_and_the_resume_command() {
    let t = tempfile::tempdir().unwrap();
    let text = ANIMATED
        .replace("steps_per_scene = 12", "steps_per_scene = 60")
        .replace("interpolation_steps = 4", "interpolation_steps = 8");
    let scene = write_scene(t.path(), "stop.toml", &text);
    let out = t.path().join("out");
    let child = zoetrope(
        &[
            "render",
            scene.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ],
        weights_dir(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let dir = out.join("stop");
    let start = Instant::now();
    while !dir.join("frame_00002.png").exists() {
        assert!(start.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("zoetrope render --resume"), "{err}");
    let mp4 = read_mp4(&dir.join("stop.mp4")).unwrap();
    assert!(mp4.frames.len() >= 2, "{} frames", mp4.frames.len());
}

/// Mean absolute change between consecutive frames from frame 2 on.
fn frame_change(dir: &Path, n: usize) -> f64 {
    let imgs: Vec<_> = (1..=n)
        .map(|k| read_rgb(&dir.join(format!("frame_{k:05}.png"))).unwrap())
        .collect();
    let mut total = 0.0;
    for w in imgs[1..].windows(2) {
        total += w[0]
            .as_raw()
            .iter()
            .zip(w[1].as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / w[0].as_raw().len() as f64;
    }
    total / (n - 2) as f64
}

#[test]
fn stabilisation_shrinks_the_change_between_frames() {
    let t = tempfile::tempdir().unwrap();
    let mut changes = Vec::new();
    for w in ["0", "2", "50"] {
        let text = format!(
            "{}\ndirect_stabilization_weight = {w}\nfile_namespace = \"stab{w}\"\n",
            ANIMATED
                .replace("zoom_x_2d = 2", "zoom_x_2d = 0")
                .replace("zoom_y_2d = 1", "zoom_y_2d = 0")
                .replace("translate_x = 1", "translate_x = 0")
                .replace("translate_y = -1", "translate_y = 0")
                .replace("rotate_2d = \"2*sin(t)\"", "rotate_2d = 0")
                .replace(
                    "vqgan_model = \"tiny-vqgan\"",
                    "image_model = \"Unlimited Palette\""
                )
        );
        let scene = write_scene(t.path(), &format!("stab{w}.toml"), &text);
        let out = t.path().join("out");
        render_ok(&scene, &out);
        changes.push(frame_change(&out.join(format!("stab{w}")), 6));
    }
    assert!(
        changes[0] > changes[1] && changes[1] > changes[2],
        "frame-to-frame change for weights 0, 2, 50: {changes:?}"
    );
}

/// allow_overwrite: a render that fails at the start leaves the earlier run
/// whole (still complete, still playable); one that runs replaces all of it.
#[test]
fn overwriting_a_run_loses_nothing_until_the_new_one_starts() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let text = format!("{ANIMATED}\nfile_namespace = \"ow\"\nallow_overwrite = true\n");
    let scene = write_scene(t.path(), "ow.toml", &text);
    let dir = out.join("ow");
    let render_into = |scene: &Path| {
        run(&[
            "render",
            scene.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ])
    };
    let o = render_into(&scene);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = frames_of(&dir, 6);
    let listing = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing(&dir);

    let bad = write_scene(
        t.path(),
        "ow-bad.toml",
        &text.replace("[\"tiny-clip\"]", "[\"missing.safetensors\"]"),
    );
    let o = render_into(&bad);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(listing(&dir), before);
    assert_eq!(frames_of(&dir, 6), first);
    let o = run(&["render", "--resume", dir.to_str().unwrap()]);
    assert!(stderr(&o).contains("already complete"), "{}", stderr(&o));

    // A shorter run in its place: 4 frames, and nothing of the 6-frame run.
    let short = write_scene(
        t.path(),
        "ow-short.toml",
        &text.replace("steps_per_scene = 12", "steps_per_scene = 8"),
    );
    let o = render_into(&short);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.join("frame_00004.png").exists());
    assert!(!dir.join("frame_00005.png").exists());
    assert_eq!(read_mp4(&dir.join("ow.mp4")).unwrap().frames.len(), 4);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["frames"].as_array().unwrap().len(), 4);
    assert!(!listing(&dir)
        .iter()
        .any(|n| n.ends_with(".part") || n.contains("00006")));
}

#[test]
fn user_errors_are_clear_messages() {
    let t = tempfile::tempdir().unwrap();
    // Missing weights: names the model, the expected file and the command.
    let scene = write_scene(t.path(), "a.toml", ANIMATED);
    let empty = t.path().join("no-weights");
    let o = zoetrope(
        &[
            "render",
            scene.to_str().unwrap(),
            "--out",
            t.path().join("o").to_str().unwrap(),
        ],
        &empty,
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("tiny-clip") && e.contains("tiny-vqgan"), "{e}");
    assert!(e.contains("zoetrope weights tiny"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    // A failed start leaves no folder behind: the next attempt takes its name.
    assert!(!t.path().join("o/a").exists());

    // An init image that is not an image.
    std::fs::write(t.path().join("broken.png"), b"not a png").unwrap();
    let scene = write_scene(
        t.path(),
        "b.toml",
        &format!("{ANIMATED}\ninit_image = \"broken.png\"\n"),
    );
    let o = run(&[
        "render",
        scene.to_str().unwrap(),
        "--out",
        t.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("broken.png"), "{}", stderr(&o));

    // An output folder that cannot be created (a file is in the way).
    std::fs::write(t.path().join("file"), b"x").unwrap();
    let o = run(&[
        "render",
        scene.to_str().unwrap().replace("b.toml", "a.toml").as_str(),
        "--out",
        t.path().join("file/sub").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("file/sub"), "{}", stderr(&o));

    // Resuming something that is not a run.
    let o = run(&["render", "--resume", t.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("state.json"), "{}", stderr(&o));

    // An unknown speed switch names the switches there are.
    let o = run(&["render", scene.to_str().unwrap(), "--tune", "turbo=on"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cuda-graphs"), "{}", stderr(&o));

    // A value the render would only meet at frame 3 is refused before
    // anything loads (no weights are needed to say so), after the scene's
    // warnings (the width rounded to the VQGAN's factor), as `plan` does.
    let scene = write_scene(
        t.path(),
        "c.toml",
        &ANIMATED
            .replace("zoom_x_2d = 2", "zoom_x_2d = \"0:(0), 2:(70)\"")
            .replace("width = 64", "width = 70"),
    );
    let o = zoetrope(
        &[
            "render",
            scene.to_str().unwrap(),
            "--out",
            t.path().join("o").to_str().unwrap(),
        ],
        &empty,
    )
    .output()
    .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("warning: width 70") && e.contains("rounded down to 64"),
        "{e}"
    );
    assert!(
        e.contains("at frame 3") && e.contains("zoom_x_2d = 70"),
        "{e}"
    );
    assert!(!t.path().join("o/c").exists());
}

#[test]
fn snapshots_and_pre_animation_steps() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    // save_every 2 with 4 steps per frame: a snapshot after steps 2, 6, 10, …
    // (those that are not also a frame's last step).
    let plain = write_scene(
        t.path(),
        "snap.toml",
        &format!("{ANIMATED}\nsave_every = 2\n"),
    );
    render_ok(&plain, &out);
    let mut snaps: Vec<String> = std::fs::read_dir(out.join("snap/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    snaps.sort();
    let want: Vec<String> = [2, 6, 10, 14, 18, 22]
        .iter()
        .map(|s| format!("step_{s:07}.png"))
        .collect();
    assert_eq!(snaps, want);

    // Steps before frame 1 change what frame 1 starts from, and are not frames.
    let pre = write_scene(
        t.path(),
        "pre.toml",
        &format!("{ANIMATED}\nsave_every = 2\npre_animation_steps = 40\n"),
    );
    render_ok(&pre, &out);
    assert_eq!(frames_of(&out.join("pre"), 6).len(), 6);
    assert!(!out.join("pre/frame_00007.png").exists());
    assert_ne!(
        frames_of(&out.join("pre"), 1),
        frames_of(&out.join("snap"), 1)
    );
}

/// Out of memory is a message with its own exit code (5), never a panic, and
/// a run folder stays resumable. At 768 × 768 the tiny models' step needs
/// about 5.2 GB of address space (the decoder's attention over 96 × 96
/// positions, the full-resolution maps kept for the backward pass) while
/// everything before it needs about 3.5 GB (libtorch maps ~2.8 GB), so a
/// 4.4 GB limit (`ulimit -v`) lets a render start and stops its first step.
#[test]
fn out_of_memory_is_a_message_and_the_run_resumes() {
    let t = tempfile::tempdir().unwrap();
    let scene = write_scene(
        t.path(),
        "big.toml",
        &ANIMATED
            .replace("width = 64", "width = 768")
            .replace("height = 32", "height = 768")
            .replace("steps_per_scene = 12", "steps_per_scene = 1")
            .replace("steps_per_frame = 4", "steps_per_frame = 1")
            .replace("interpolation_steps = 4", "interpolation_steps = 0")
            .replace("cutouts = 6", "cutouts = 2"),
    );
    let limited = |args: &[&str]| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("ulimit -v 4400000 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_zoetrope"))
            .args(args)
            .env("ZOETROPE_WEIGHTS", weights_dir())
            .env("OMP_NUM_THREADS", "1");
        c.output().unwrap()
    };
    // A new render: the message, exit code 5, and no folder left behind.
    let fresh = t.path().join("fresh");
    let o = limited(&[
        "render",
        scene.to_str().unwrap(),
        "--out",
        fresh.to_str().unwrap(),
        "-q",
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{e}");
    assert!(
        e.contains("out of memory (RAM) while step 1 (frame 1)"),
        "{e}"
    );
    assert!(
        e.contains("768×768") && e.contains("checkpoint-perceptors"),
        "{e}"
    );
    assert!(
        e.contains("nothing to resume") && !e.contains("panicked"),
        "{e}"
    );
    assert!(!fresh.join("big").exists());

    // A run killed after frame 1, resumed under the limit: frame 2's step
    // runs out; frame 1 and the state stay as they were, and the message
    // says how to go on.
    let out = t.path().join("out");
    let mut child = zoetrope(
        &[
            "render",
            scene.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ],
        weights_dir(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let dir = out.join("big");
    let start = Instant::now();
    while !(dir.join("frame_00001.png").exists() && dir.join("state.json").exists()) {
        assert!(start.elapsed() < Duration::from_secs(600), "no frame 1");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the render ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let frame1 = std::fs::read(dir.join("frame_00001.png")).unwrap();
    let state = std::fs::read(dir.join("state.json")).unwrap();
    let o = limited(&["render", "--resume", dir.to_str().unwrap(), "-q"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{e}");
    assert!(e.contains("while step 2 (frame 2)"), "{e}");
    assert!(e.contains("Frames 1–1") && e.contains("--resume"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(std::fs::read(dir.join("frame_00001.png")).unwrap(), frame1);
    assert_eq!(std::fs::read(dir.join("state.json")).unwrap(), state);
    assert!(!dir.join("frame_00002.png").exists());
    // With the memory back, the run finishes.
    let o = run(&["render", "--resume", dir.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(dir.join("frame_00001.png")).unwrap(), frame1);
    assert!(dir.join("frame_00002.png").exists() && dir.join("big.mp4").exists());
}

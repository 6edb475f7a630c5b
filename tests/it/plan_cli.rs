//! `zoetrope plan` end to end: docs/design.md §3's acceptance example for both
//! transitions, read back from the binary's JSON, plus the other formats,
//! the chart and exit codes.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zoetrope"))
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn plan(args: &[&str]) -> Output {
    bin().arg("plan").args(args).output().expect("run zoetrope")
}

fn plan_json(scene: &Path) -> Value {
    let out = plan(&[scene.to_str().unwrap(), "--format", "json"]);
    assert!(
        out.status.success(),
        "plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// The seed scene with `transition` replaced, written to a temp folder (the
/// init image path made absolute so it still resolves).
fn spring_with(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo("scenes/spring_to_winter.toml")).unwrap();
    let init = repo("scenes/init/gasworks.jpg");
    let text = text.replace(
        "init_image = \"init/gasworks.jpg\"",
        &format!("init_image = {:?}", init.to_str().unwrap()),
    );
    let p = dir.join("spring.toml");
    std::fs::write(&p, format!("{text}\n{extra}\n")).unwrap();
    p
}

fn weights(doc: &Value, frame: usize) -> (f64, f64) {
    let row = &doc["timeline"][frame - 1];
    assert_eq!(row["frame"].as_u64().unwrap() as usize, frame);
    let w = row["scene_weights"].as_array().unwrap();
    assert_eq!(w.len(), 2);
    (w[0].as_f64().unwrap(), w[1].as_f64().unwrap())
}

#[test]
fn acceptance_centered() {
    let doc = plan_json(&repo("scenes/spring_to_winter.toml"));
    assert_eq!(doc["total_steps"], 2000);
    assert_eq!(doc["frames"], 40);
    assert_eq!(doc["fps"], 12.0);
    assert_eq!(doc["width"], 256);
    assert_eq!(doc["height"], 128);
    assert_eq!(doc["timeline"].as_array().unwrap().len(), 40);
    for k in 1..=15 {
        assert_eq!(weights(&doc, k), (1.0, 0.0), "frame {k}");
    }
    for k in 16..=20 {
        let (a, b) = weights(&doc, k);
        assert!(b > 0.0 && a > b, "frame {k}: {a} {b}");
        assert!((a + b - 1.0).abs() < 1e-9);
    }
    for k in 21..=25 {
        let (a, b) = weights(&doc, k);
        assert!(a > 0.0 && b > a, "frame {k}: {a} {b}");
    }
    for k in 26..=40 {
        assert_eq!(weights(&doc, k), (0.0, 1.0), "frame {k}");
    }
    // exact means: frame 16 covers α = 0/500 … 49/500
    let (_, b) = weights(&doc, 16);
    assert!((b - 24.5 / 500.0).abs() < 1e-12, "{b}");

    let row = &doc["timeline"][19];
    assert_eq!(row["steps"], serde_json::json!([950, 1000]));
    assert!((row["t"].as_f64().unwrap() - 950.0 / 600.0).abs() < 1e-12);
    let m = &row["motion"];
    assert_eq!(m["translate_x"], -1.0);
    assert_eq!(m["translate_y"], 0.0);
    assert_eq!(m["rotate_2d"], 0.0);
    assert_eq!(m["zoom_x_2d"], 3.0);
    assert_eq!(m["zoom_y_2d"], 3.0);
    // frame 20 mixes both scenes: 3 prompts each
    let prompts = row["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 6);
    let p0 = &prompts[0];
    assert_eq!(
        p0["text"],
        "a photograph of a bright and beautiful spring day, by Trey Ratcliff"
    );
    assert_eq!(p0["scene"], 0);
    assert!(p0["stop"].is_null());
    let wm = prompts
        .iter()
        .find(|p| p["text"] == "watermark" && p["scene"] == 1)
        .unwrap();
    assert_eq!(wm["stop"], -0.9);
    let (_, b) = weights(&doc, 20);
    assert!((wm["weight"].as_f64().unwrap() + b).abs() < 1e-12);
    // frame 1: only scene 1's prompts
    assert_eq!(doc["timeline"][0]["prompts"].as_array().unwrap().len(), 3);
}

#[test]
fn acceptance_pytti() {
    let dir = tempfile::tempdir().unwrap();
    let doc = plan_json(&spring_with(dir.path(), "transition = \"pytti\""));
    assert_eq!(doc["frames"], 40);
    for k in 1..=20 {
        assert_eq!(weights(&doc, k), (1.0, 0.0), "frame {k}");
    }
    for k in 21..=30 {
        let (a, b) = weights(&doc, k);
        assert!(a > 0.0 && b > 0.0, "frame {k}: {a} {b}");
        if k <= 25 {
            assert!(a > b, "frame {k}: scene 1 heavier");
        } else {
            assert!(b > a, "frame {k}: scene 2 heavier");
        }
    }
    for k in 31..=40 {
        assert_eq!(weights(&doc, k), (0.0, 1.0), "frame {k}");
    }
}

#[test]
fn csv_table_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let scene = repo("scenes/spring_to_winter.toml");
    let out = plan(&[scene.to_str().unwrap(), "--format", "csv"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    assert_eq!(&headers[4], "scene_1_weight");
    assert_eq!(&headers[5], "scene_2_weight");
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 40);
    assert_eq!(&rows[25][0], "26");
    assert_eq!(&rows[25][4], "0");
    assert_eq!(&rows[25][5], "1");
    assert_eq!(&rows[0][6], "-1"); // translate_x

    let chart = dir.path().join("chart.png");
    let out = plan(&[scene.to_str().unwrap(), "--chart", chart.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("40 frames"));
    assert!(table.lines().any(|l| l.trim_start().starts_with("40 ")));
    let img = image::open(&chart).expect("chart is a PNG");
    assert_eq!((img.width(), img.height()), (1200, 800));
    // not blank: the weight curves put colour on the canvas
    let rgb = img.to_rgb8();
    let coloured = rgb
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            r.max(g).max(b) - r.min(g).min(b) > 80
        })
        .count();
    assert!(coloured > 2000, "{coloured} coloured pixels");
}

/// A `--chart` that cannot be written is refused before the table is
/// printed: a folder that does not exist is an I/O error (exit 4) naming
/// it, another extension than .png bad input (exit 2); nothing is created.
#[test]
fn chart_paths_are_checked_before_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let scene = repo("scenes/spring_to_winter.toml");
    let chart = dir.path().join("no such folder").join("chart.png");
    let out = plan(&[scene.to_str().unwrap(), "--chart", chart.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("--chart {}", chart.display()))
            && err.contains("does not exist; create it first or choose another path"),
        "{err}"
    );
    assert!(!err.contains("Os {"), "a debug dump: {err}");
    assert!(out.stdout.is_empty(), "the table was printed");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let jpg = dir.path().join("chart.jpg");
    let out = plan(&[scene.to_str().unwrap(), "--chart", jpg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ending in .png"), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A chart write that fails half-way (the file-size limit reached: as a
/// full disk would) leaves the earlier chart as it was and no temporary
/// file, and says which file and what to check (exit 4).
#[test]
fn failed_chart_write_keeps_the_earlier_chart() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let scene = repo("scenes/spring_to_winter.toml");
    let chart = dir.path().join("chart.png");
    let out = plan(&[scene.to_str().unwrap(), "--chart", chart.to_str().unwrap()]);
    assert!(out.status.success());
    let good = std::fs::read(&chart).unwrap();
    assert!(good.len() > 4096);

    let mut cmd = bin();
    cmd.args([
        "plan",
        scene.to_str().unwrap(),
        "--chart",
        chart.to_str().unwrap(),
    ]);
    // SAFETY: only async-signal-safe calls between fork and exec. With
    // SIGXFSZ ignored (kept across exec) a write past the limit fails with
    // EFBIG instead of killing the process.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: 4096,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&chart.display().to_string())
            && err.contains("an earlier file there is unchanged"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&chart).unwrap(),
        good,
        "the earlier chart changed"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["chart.png"], "a temporary file was left");
}

#[test]
fn bad_input_exits_2_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "scenes = \"a || b\"\nsteps_per_frme = 50\n").unwrap();
    let out = plan(&[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2:1"), "{err}");
    assert!(err.contains("did you mean `steps_per_frame`"), "{err}");

    // steps_per_scene not a multiple of steps_per_frame
    std::fs::write(
        &p,
        "scenes = \"a\"\nsteps_per_scene = 120\nsteps_per_frame = 50\n",
    )
    .unwrap();
    let out = plan(&[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a multiple of steps_per_frame"), "{err}");
    assert!(err.contains("100 or 150"), "{err}");

    // missing and undecodable files are caught by plan, as render would
    std::fs::write(&p, "scenes = \"a | [nope.png]:0.5\"\n").unwrap();
    let out = plan(&[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.png does not exist"));
    std::fs::write(dir.path().join("fake.jpg"), b"not a jpeg").unwrap();
    std::fs::write(&p, "scenes = \"a\"\ninit_image = \"fake.jpg\"\n").unwrap();
    let out = plan(&[p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("init_image") && err.contains("not a readable image"),
        "{err}"
    );

    // a missing scene file
    let out = plan(&[dir.path().join("none.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn image_prompts_resolve_next_to_the_scene() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("img")).unwrap();
    std::fs::copy(
        repo("scenes/init/gasworks.jpg"),
        dir.path().join("img/a:b.jpg"),
    )
    .unwrap();
    let p = dir.path().join("s.toml");
    std::fs::write(
        &p,
        "scenes = \"a harbour | [img/a:b.jpg]:0.5:0.1\"\nsteps_per_scene = 100\n",
    )
    .unwrap();
    let doc = plan_json(&p);
    let pr = &doc["timeline"][0]["prompts"][1];
    assert_eq!(pr["kind"], "image");
    assert!(pr["text"].as_str().unwrap().ends_with("img/a:b.jpg"));
    assert_eq!(pr["weight"], 0.5);
    assert_eq!(pr["stop"], 0.1);
}

#[test]
fn every_example_scene_plans() {
    for entry in std::fs::read_dir(repo("scenes")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let doc = plan_json(&p);
            assert!(doc["frames"].as_u64().unwrap() > 0, "{}", p.display());
        }
    }
}

/// Every value class `render` would refuse is refused by `plan` (exit 2,
/// before anything loads), naming the setting or prompt, where it first
/// goes bad, and the value.
#[test]
fn values_render_would_refuse_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let words = vec!["word"; 120].join(" ");
    let base = "steps_per_scene = 100\nsteps_per_frame = 5\nanimation_mode = \"2D\"\nwidth = 256\nheight = 128\n";
    let cases: Vec<(String, &[&str])> = vec![
        (
            "scenes = \"a cat:1/0\"".into(),
            &["prompt \"a cat:1/0\"", "inf", "step 0"],
        ),
        (
            "scenes = \"a cat:1e400\"".into(),
            &["prompt \"a cat:1e400\"", "inf", "finite"],
        ),
        (
            "scenes = \"a cat:1:sqrt(-1)\"".into(),
            &["prompt \"a cat:1:sqrt(-1)\"", "stop", "NaN"],
        ),
        (
            "scenes = \"a cat:1/(t-0.25)\"\nframes_per_second = 4".into(),
            &["prompt \"a cat:1/(t-0.25)\"", "step 5 (frame 2", "inf"],
        ),
        (
            "scenes = \"a cat\"\nzoom_x_2d = 1000".into(),
            &["zoom_x_2d = 1000", "frame 2", "no source window"],
        ),
        (
            "scenes = \"a cat\"\nzoom_y_2d = \"300*t\"".into(),
            &["zoom_y_2d = 150", "frame 7", "no source window"],
        ),
        (
            "scenes = \"a cat\"\ntranslate_x = \"1e400\"".into(),
            &["translate_x", "inf", "finite"],
        ),
        (
            "scenes = \"a cat\"\nrotate_2d = \"sqrt(-1)\"".into(),
            &["rotate_2d", "NaN", "frame 2"],
        ),
        (
            "scenes = \"a cat\"\ntranslate_y = \"0:(0), 2:(ln(-1))\"".into(),
            &["translate_y", "NaN", "frame 2"],
        ),
        (
            "scenes = \"a cat\"\ndirect_stabilization_weight = \"1/0\"\ninit_image = \"init.png\""
                .into(),
            &["direct_stabilization_weight", "inf", "step 0"],
        ),
        (
            "scenes = \"a cat\"\nsmoothing_weight = \"1/(t-0.25)\"\nframes_per_second = 4".into(),
            &["smoothing_weight", "step 5 (frame 2", "inf"],
        ),
        (
            format!("scenes = \"{words}\""),
            &["scene 1", "122 tokens", "context of 77"],
        ),
    ];
    image::RgbImage::new(256, 128)
        .save(dir.path().join("init.png"))
        .unwrap();
    for (i, (extra, wanted)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&p, format!("{base}{extra}\n")).unwrap();
        let out = plan(&[p.to_str().unwrap(), "--format", "json"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}, {extra}: {err}");
        assert!(out.stdout.is_empty(), "{extra}: printed a plan");
        assert!(!err.contains("panicked"), "{extra}: {err}");
        assert!(err.contains(&format!("case{i}.toml")), "{extra}: {err}");
        for w in *wanted {
            assert!(err.contains(w), "{extra}: wanted {w:?} in {err}");
        }
    }
}

/// pytti's `smoothing_weight` and `border_mode`: values that are not a
/// weight or not a border mode are bad input (exit 2) naming the setting;
/// good ones plan.
#[test]
fn smoothing_and_border_mode_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.toml");
    let cases: [(&str, &[&str]); 3] = [
        (
            "smoothing_weight = \"soft\"",
            &["s.toml:2", "smoothing_weight"],
        ),
        ("smoothing_weight = true", &["smoothing_weight", "weight"]),
        (
            "border_mode = \"reflect\"",
            &["border_mode", "\"reflect\" is not one of", "\"smear\""],
        ),
    ];
    for (line, wants) in cases {
        std::fs::write(&p, format!("scenes = \"a cat\"\n{line}\n")).unwrap();
        let out = plan(&[p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{line}");
        let err = String::from_utf8_lossy(&out.stderr);
        for w in wants {
            assert!(err.contains(w), "{line}: {err}");
        }
    }
    std::fs::write(
        &p,
        "scenes = \"a cat\"\nsmoothing_weight = \"0.02*t\"\nborder_mode = \"Wrap\"\n",
    )
    .unwrap();
    let out = plan(&[p.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cutout_augs` and `gradient_accumulation_steps` through the binary: bad
/// values exit 2 naming the file, line and setting; good ones plan, and the
/// memory estimate shrinks with more passes.
#[test]
fn cutout_augs_and_accumulation_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.toml");
    let cases: [(&str, &[&str]); 3] = [
        (
            "cutout_augs = \"kornia\"",
            &["a.toml:3", "cutout_augs", "\"pytti\""],
        ),
        (
            "gradient_accumulation_steps = 41",
            &["a.toml:3", "gradient_accumulation_steps", "at most 40"],
        ),
        (
            "gradient_accumulation_steps = 0",
            &["gradient_accumulation_steps"],
        ),
    ];
    for (line, wants) in cases {
        std::fs::write(&p, format!("scenes = \"a cat\"\ncutouts = 40\n{line}\n")).unwrap();
        let out = plan(&[p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{line}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{line}: {err}");
        for w in wants {
            assert!(err.contains(w), "{line}: wanted {w:?} in {err}");
        }
    }
    let cpu_mib = |extra: &str| -> f64 {
        std::fs::write(&p, format!("scenes = \"a cat\"\ncutouts = 40\n{extra}\n")).unwrap();
        let out = plan(&[p.to_str().unwrap(), "--format", "json"]);
        assert!(
            out.status.success(),
            "{extra}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["memory_estimate_mib"]["cpu"]
            .as_f64()
            .unwrap_or_else(|| panic!("no CPU estimate in {}", v["memory_estimate_mib"]))
    };
    let one = cpu_mib("");
    let four = cpu_mib("gradient_accumulation_steps = 4");
    let plain = cpu_mib("cutout_augs = \"none\"");
    assert!(four < one - 100.0, "{four} against {one}");
    assert!(plain < one, "{plain} against {one}");
}
